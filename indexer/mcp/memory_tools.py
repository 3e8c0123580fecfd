"""The memory tools: memory_get, memory_list, memory_write, memory_delete, memory_restore.

They use :class:`~indexer.agent.memory.MemoryService` on the database directly (no daemon needed):
every write is one ``BEGIN IMMEDIATE`` transaction with its audit row, so several agents
(several servers, the CLI) writing the same key get consecutive versions, none lost.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from indexer.mcp.common import DESTRUCTIVE, READ, WRITE, ServerState, fit, fit_page, json_size, respond, tool_errors

HISTORY_MAX = 50

# The namespace rules and an example are in the server's instructions (once, not once a tool).
Namespace = Annotated[str, Field(min_length=1, max_length=512)]
Key = Annotated[str, Field(min_length=1, max_length=512)]
By = Annotated[str | None, Field(max_length=200, description="who acts (audit)")]


class Memory(BaseModel):
    namespace: str
    key: str
    value: Any
    memory_type: str
    version: int
    is_deleted: bool
    metadata: dict[str, Any]
    created_by: str | None
    updated_by: str | None
    created_at: str
    updated_at: str


class MemoryWithHistory(Memory):
    versions: list[Memory] | None = Field(None, description="with history=true: the newest versions, oldest first")
    versions_total: int | None = None


class MemoryWritten(BaseModel):
    """What a write answers: which version it made and how big it is, never the value."""

    namespace: str
    key: str
    memory_type: str
    version: int
    is_deleted: bool
    value_bytes: int
    metadata_bytes: int
    created_by: str | None
    updated_by: str | None
    created_at: str
    updated_at: str


class MemoryPage(BaseModel):
    items: list[Memory]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: this was the last")


class WriteResult(BaseModel):
    entry: MemoryWritten
    created: bool = Field(description="true when this write made version 1 or re-created a deleted key")


class DeleteResult(BaseModel):
    namespace: str
    key: str
    deleted: bool
    versions: int = Field(description="how many versions were hidden")


def _memory(entry: Any) -> Memory:
    data = entry.as_dict()
    data.pop("id", None)
    return Memory(**data)


def _written(entry: Any) -> MemoryWritten:
    data = entry.as_dict()
    for name in ("id", "value", "metadata"):
        data.pop(name, None)
    return MemoryWritten(**data, value_bytes=json_size(entry.value), metadata_bytes=json_size(entry.metadata))


async def write_memory(service: Any, namespace: str, key: str, value: Any, memory_type: str,
                       metadata: dict[str, Any] | None, by: str) -> tuple[Any, bool]:
    """The next version of a live key, else version 1 (or the next one of a deleted key).
    Two writers racing to create the same key: the loser's create conflicts, and it
    writes the next version instead."""
    from indexer.errors import ConflictError, NotFoundError

    for _attempt in range(5):
        try:
            return await service.update_memory(namespace, key, value, by, metadata=metadata), False
        except NotFoundError:
            pass
        try:
            return await service.create_memory(namespace, key, value, memory_type, by, metadata), True
        except ConflictError:
            continue
    raise ConflictError(f"memory {key!r} in {namespace} kept changing while being written; try again")


def register(server: MCPServer, state: ServerState, names: set[str]) -> None:
    from indexer.agent.memory import MemoryService

    async def service(create: bool = False) -> MemoryService:
        return MemoryService(await state.database(create=create), state.limits)

    if "memory_get" in names:
        @server.tool(annotations=READ)
        async def memory_get(
            namespace: Namespace, key: Key,
            version: Annotated[int | None, Field(ge=1)] = None,
            history: Annotated[bool, Field(description="also the versions (newest 50)")] = False,
        ) -> Annotated[CallToolResult, MemoryWithHistory]:
            """Read a memory (the latest live version, or the given one); history=true adds
            its versions, deleted ones too, for memory_restore."""
            from indexer.errors import NotFoundError

            with tool_errors():
                svc = await service()
                versions: list[Any] | None = None
                try:
                    entry = await svc.get_memory(namespace, key, version)
                except NotFoundError:
                    if not history or version is not None:
                        raise
                    versions = await svc.get_memory_history(namespace, key)
                    entry = versions[-1]
                result = MemoryWithHistory(**_memory(entry).model_dump())
                if history:
                    versions = versions if versions is not None else await svc.get_memory_history(namespace, key)
                    shown = [_memory(v) for v in versions[-HISTORY_MAX:]]
                    keep = fit([m.model_dump(mode="json") for m in reversed(shown)])  # newest first under budget
                    result.versions = shown[len(shown) - keep:]
                    result.versions_total = len(versions)
                return respond(result)

    if "memory_list" in names:
        @server.tool(annotations=READ)
        async def memory_list(
            prefix: Annotated[str, Field(min_length=1, max_length=512, description="a namespace and those below it")],
            memory_type: Literal["semantic", "episodic", "procedural"] | None = None,
            limit: Annotated[int, Field(ge=1, le=200)] = 50,
            cursor: Annotated[str | None, Field(max_length=4096)] = None,
        ) -> Annotated[CallToolResult, MemoryPage]:
            """List memories under a namespace prefix (latest live versions), a page at a
            time."""
            with tool_errors():
                page = await (await service()).list_memories(prefix, memory_type, limit, cursor)
                items, next_cursor = fit_page([_memory(e) for e in page.items], page.next_cursor,
                                              lambda m: [m.namespace, m.key])
                return respond(MemoryPage(items=items, next_cursor=next_cursor))

    if "memory_write" in names:
        @server.tool(annotations=WRITE)
        async def memory_write(
            namespace: Namespace, key: Key,
            value: Annotated[Any, Field(description="any JSON value")],
            memory_type: Annotated[Literal["semantic", "episodic", "procedural"],
                                   Field(description="on creation only")] = "semantic",
            metadata: dict[str, Any] | None = None,
            by: By = None,
        ) -> Annotated[CallToolResult, WriteResult]:
            """Create a memory or write its next version (earlier ones stay restorable)."""
            with tool_errors():
                svc = await service(create=True)
                entry, created = await write_memory(svc, namespace, key, value, memory_type, metadata, by or state.by)
                return respond(WriteResult(entry=_written(entry), created=created))

    if "memory_delete" in names:
        @server.tool(annotations=DESTRUCTIVE)
        async def memory_delete(namespace: Namespace, key: Key, by: By = None) -> Annotated[CallToolResult, DeleteResult]:
            """Delete a memory: every version is hidden (a soft delete); memory_restore
            undoes it."""
            with tool_errors():
                count = await (await service()).delete_memory(namespace, key, by or state.by)
                return respond(DeleteResult(namespace=namespace, key=key, deleted=True, versions=count))

    if "memory_restore" in names:
        @server.tool(annotations=WRITE)
        async def memory_restore(
            namespace: Namespace, key: Key,
            version: Annotated[int | None, Field(ge=1, description="roll back to it; omit to undelete")] = None,
            by: By = None,
        ) -> Annotated[CallToolResult, MemoryWritten]:
            """Undo a delete, or roll a memory back to an older version (as a new version)."""
            with tool_errors():
                svc = await service()
                if version is None:
                    entry = await svc.restore_memory(namespace, key, by or state.by)
                else:
                    entry = await svc.rollback_memory(namespace, key, version, by or state.by)
                return respond(_written(entry))
