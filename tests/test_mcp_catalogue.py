"""The MCP catalogue stays lean: ``tools/list`` is paid in every agent's context on every
session. Measured as the JSON the server sends (compact, as on the wire), through the SDK's
real client. Bad arguments come back as one plain sentence."""

from __future__ import annotations

from mcp import Client
from mcp.types import ListToolsResult

from indexer.config import load_config
from indexer.mcp.catalog import TOOLS
from indexer.mcp.schema import lean_input, lean_output, plain_validation_error
from indexer.mcp.server import build_server

# The 14 tools of the docs, memory and sessions groups fit in 12 KB (31.9 KB before the lean
# catalogue); every tool added later, in any group, keeps the catalogue's average per tool.
FIRST_GROUPS = ("docs", "memory", "sessions")
FIRST_BUDGET = 12_000
PER_TOOL = 900


async def catalogue(groups: tuple[str, ...] | None = None) -> tuple[int, ListToolsResult]:
    server = build_server(load_config(), **({"groups": groups} if groups else {}))
    async with Client(server) as client:
        listed = await client.list_tools()
    # the tools as sent (the result's _meta, the SDK's server info on every result, is not the catalogue's)
    return len(ListToolsResult(tools=listed.tools).model_dump_json(by_alias=True, exclude_none=True)), listed


async def test_the_catalogue_fits_its_budget() -> None:
    size, listed = await catalogue(FIRST_GROUPS)
    assert len(listed.tools) == 14
    assert size <= FIRST_BUDGET, f"tools/list of the first 14 tools is {size} bytes (budget {FIRST_BUDGET})"
    size, listed = await catalogue()
    assert len(listed.tools) == len(TOOLS)
    assert size <= PER_TOOL * len(listed.tools), f"tools/list is {size} bytes for {len(listed.tools)} tools"


async def test_lean_schemas_keep_types_bounds_and_required() -> None:
    _, listed = await catalogue()
    tools = {t.name: t for t in listed.tools}
    k = tools["search"].input_schema["properties"]["k"]
    assert (k["type"], k["minimum"], k["maximum"], k["default"]) == ("integer", 1, 25, 8)
    assert tools["search"].input_schema["required"] == ["query"]
    assert tools["search"].input_schema["properties"]["mode"]["enum"] == ["hybrid", "keyword", "semantic"]
    version = tools["memory_get"].input_schema["properties"]["version"]
    assert version == {"minimum": 1, "type": ["integer", "null"]}
    for tool in listed.tools:
        text = tool.model_dump_json(by_alias=True, exclude_none=True)
        assert '"title"' not in text.replace('"title":{"type"', ""), tool.name  # a field may be called title
        assert "\n" not in (tool.description or ""), tool.name
        assert tool.output_schema is not None and set(tool.output_schema) <= {"type", "properties"}


def test_lean_schema_rules() -> None:
    raw = {"title": "fArguments", "type": "object", "required": ["a"], "properties": {
        "a": {"title": "A", "type": "string", "maxLength": 5},
        "title": {"title": "Title", "anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        "meta": {"anyOf": [{"type": "object", "additionalProperties": True}, {"type": "null"}],
                 "description": "a\n   map"}}}
    assert lean_input(raw) == {"type": "object", "required": ["a"], "properties": {
        "a": {"type": "string", "maxLength": 5}, "title": {"type": ["string", "null"]},
        "meta": {"type": ["object", "null"], "description": "a map"}}}
    out = {"$defs": {"M": {"type": "object"}}, "type": "object", "required": ["m"], "properties": {
        "m": {"$ref": "#/$defs/M"}, "n": {"anyOf": [{"$ref": "#/$defs/M"}, {"type": "null"}]},
        "xs": {"type": "array", "items": {"$ref": "#/$defs/M"}}, "v": {"title": "V"}}}
    assert lean_output(out) == {"type": "object", "properties": {
        "m": {"type": "object"}, "n": {"type": ["object", "null"]}, "xs": {"type": "array"}, "v": {}}}


def test_plain_validation_sentence() -> None:
    errors = [{"loc": ("k",), "msg": "Input should be less than or equal to 25", "input": 500,
               "url": "https://errors.pydantic.dev/2/v/less_than_equal"}]
    assert plain_validation_error(errors) == "bad argument k: should be less than or equal to 25."


async def test_a_bad_argument_is_one_plain_sentence() -> None:
    async with Client(build_server(load_config())) as client:
        result = await client.call_tool("search", {"query": "x", "k": 500})
        assert result.is_error
        text = result.content[0].text
        assert text == "bad argument k: should be less than or equal to 25."
        result = await client.call_tool("memory_get", {"namespace": "user:a", "key": "k", "version": "x" * 5000})
        text = result.content[0].text
        assert result.is_error and "\n" not in text and "http" not in text and "xxxxx" not in text
        assert text.startswith("bad argument version:")
