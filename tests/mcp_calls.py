"""Calling an MCP tool from a test through the SDK's client: the structured reply of a call
that must succeed, or the message of one that must fail (the assertion names the tool)."""

from __future__ import annotations

from typing import Any


async def call(client: Any, name: str, **args: Any) -> Any:
    """``name``'s structured content; fails the test, with the tool's message, on an error."""
    result = await client.call_tool(name, args)
    assert not result.is_error, f"{name}: {result.content[0].text}"
    return result.structured_content


async def error(client: Any, name: str, **args: Any) -> str:
    """The message of ``name``'s error reply; fails the test if the call succeeded."""
    result = await client.call_tool(name, args)
    assert result.is_error, f"{name}: {result.structured_content}"
    return str(result.content[0].text)
