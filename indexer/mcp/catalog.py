"""The server's tools by name, group and kind: what ``--tools`` and ``--read-only`` select,
and what ``indexer mcp --help`` lists. Pure data: no SDK import."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from indexer.errors import ConfigError

GROUPS = ("docs", "memory", "sessions", "tasks")


@dataclass(frozen=True)
class ToolInfo:
    name: str
    group: str
    writes: bool  # removed by --read-only
    summary: str


TOOLS: tuple[ToolInfo, ...] = (
    ToolInfo("search", "docs", False, "search the indexed markdown (hybrid, keyword or semantic)"),
    ToolInfo("read_document", "docs", False, "read lines of an indexed file, a page at a time"),
    ToolInfo("index_status", "docs", False, "documents, chunks, model, daemon state, failed files"),
    ToolInfo("reindex", "docs", True, "sync the roots (or some paths) now and embed what changed"),
    ToolInfo("memory_get", "memory", False, "a memory's latest (or given) version, optionally its history"),
    ToolInfo("memory_list", "memory", False, "memories under a namespace prefix, paginated"),
    ToolInfo("memory_write", "memory", True, "create a memory, or write its next version"),
    ToolInfo("memory_delete", "memory", True, "soft-delete a memory (memory_restore undoes it)"),
    ToolInfo("memory_restore", "memory", True, "undo a delete, or roll back to an older version"),
    ToolInfo("session_create", "sessions", True, "start a session (app, user, optional project and state)"),
    ToolInfo("session_get", "sessions", False, "a session's status, state and last N events, or those after a number"),
    ToolInfo("session_list", "sessions", False, "sessions by app/user/project/status, newest first"),
    ToolInfo("session_append", "sessions", True, "append an event, with an optional state delta"),
    ToolInfo("session_update", "sessions", True, "merge a state delta and/or change the status"),
    ToolInfo("task_claim", "tasks", True, "take the next runnable task and a lease on it"),
    ToolInfo("task_heartbeat", "tasks", True, "extend a claimed task's lease, save progress"),
    ToolInfo("task_complete", "tasks", True, "finish a claimed task with its result"),
    ToolInfo("task_fail", "tasks", True, "report a failed attempt (retried while retries are left)"),
)


def parse_groups(text: str | None) -> frozenset[str]:
    """``docs,memory`` → the groups; None or empty → all of them. ConfigError names a bad one."""
    if not text or not text.strip():
        return frozenset(GROUPS)
    groups = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(groups - set(GROUPS))
    if unknown:
        raise ConfigError(f"--tools: unknown group {', '.join(unknown)}; use a comma-separated list of {', '.join(GROUPS)}")
    return frozenset(groups)


def select_tools(groups: Iterable[str] = GROUPS, *, read_only: bool = False) -> tuple[ToolInfo, ...]:
    wanted = set(groups)
    return tuple(t for t in TOOLS if t.group in wanted and not (read_only and t.writes))


def help_text() -> str:
    """The tool list for ``indexer mcp --help`` (click's \\b keeps the lines as they are)."""
    lines = ["\b", "Tools (* = removed by --read-only):"]
    for group in GROUPS:
        for tool in (t for t in TOOLS if t.group == group):
            mark = "*" if tool.writes else " "
            lines.append(f"  {tool.name:<15}{mark} [{group}] {tool.summary}")
    return "\n".join(lines)
