"""A lean tool catalogue: every agent pays ``tools/list`` in its context on every session.

Pure functions on the JSON schemas pydantic generates for the tools: input schemas keep their
types, bounds, enums, required lists and (short) descriptions, and lose what repeats the
property name (``title``), ``default: null`` and the ``anyOf [X, null]`` spelling of an
optional (``type: [X, "null"]`` says the same); output schemas keep each top-level field's
type and drop the rest (the tool's text content carries the values; ``structuredContent``
still conforms); hints that restate the defaults go. A bad argument becomes one plain
sentence instead of pydantic's dump. A bad argument becomes one plain sentence instead of pydantic's dump.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_SPACE = re.compile(r"\s+")


def lean_description(text: str | None) -> str | None:
    """A docstring as one line: its whitespace (the source's indentation) collapsed."""
    return _SPACE.sub(" ", text).strip() if text else text


def _merge_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    options = schema.get("anyOf")
    if not isinstance(options, list) or len(options) != 2 or {"type": "null"} not in options:
        return schema
    other = options[0] if options[1] == {"type": "null"} else options[1]
    if not isinstance(other.get("type"), str):
        return schema
    merged = {key: value for key, value in schema.items() if key != "anyOf"}
    merged.update(other)
    merged["type"] = [other["type"], "null"]
    return merged


def lean_input(schema: Any) -> Any:
    """An input schema without titles, null defaults and the anyOf spelling of optionals."""
    if isinstance(schema, list):
        return [lean_input(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in _merge_nullable(schema).items():
        if key == "title" and isinstance(value, str):
            continue
        if (key == "default" and value is None) or (key == "additionalProperties" and value is True):
            continue
        if key in ("properties", "$defs"):
            out[key] = {name: lean_input(sub) for name, sub in value.items()}
        elif key == "description":
            out[key] = lean_description(value)
        else:
            out[key] = lean_input(value)
    return out


def _shallow(schema: dict[str, Any]) -> dict[str, Any]:
    schema = _merge_nullable(schema)
    if "$ref" in schema:
        return {"type": "object"}
    if "type" in schema:
        return {"type": schema["type"]}
    if "anyOf" in schema:  # e.g. a model or null
        kinds: list[str] = []
        for option in schema["anyOf"]:
            kind = "object" if "$ref" in option else option.get("type")
            if isinstance(kind, str) and kind not in kinds:
                kinds.append(kind)
        return {"type": kinds} if kinds else {}
    if "enum" in schema or "const" in schema:
        return {"type": "string"}
    return {}  # any JSON value


def lean_output(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """An output schema cut to the top-level fields and their types."""
    if not schema or schema.get("type") != "object" or "properties" not in schema:
        return schema
    return {"type": "object", "properties": {name: _shallow(sub) for name, sub in schema["properties"].items()}}


def lean_annotations(hints: dict[str, Any] | None) -> dict[str, Any] | None:
    """Tool hints without those that restate what an absent hint means (readOnlyHint and
    idempotentHint false) or that mean nothing on a read-only tool (destructiveHint,
    idempotentHint); openWorldHint and a writer's destructiveHint (absent: true) are said."""
    if not hints:
        return hints
    read_only = bool(hints.get("readOnlyHint"))
    out: dict[str, Any] = {"readOnlyHint": True} if read_only else {}
    out["openWorldHint"] = bool(hints.get("openWorldHint", True))
    if not read_only:
        out["destructiveHint"] = hints.get("destructiveHint") is not False
        if hints.get("idempotentHint"):
            out["idempotentHint"] = True
    return out


def plain_validation_error(errors: Sequence[Mapping[str, Any]]) -> str:
    """Pydantic's argument errors as one sentence: which argument, what is wrong (never the
    value, which may be long or private, nor a documentation URL)."""
    parts = []
    for error in errors[:5]:
        name = ".".join(str(part) for part in error.get("loc", ())) or "arguments"
        message = str(error.get("msg", "is not valid"))
        message = message.removeprefix("Input ").removeprefix("Value error, ")
        parts.append(f"{name}: {message[0].lower() + message[1:] if message else 'is not valid'}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "bad argument " + "; ".join(parts) + more + "."
