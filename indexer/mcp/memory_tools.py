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

Namespace = Annotated[str, Field(min_length=1, max_length=512, description=(
    "':'-separated segments, the first one of project, app, user, session, temp (e.g. user:alice:prefs)"))]
Key = Annotated[str, Field(min_length=1, max_length=512, description="the memory's key within its namespace")]
By = Annotated[str | None, Field(max_length=200, description="who acts (recorded in the audit row); default: the server's --by")]


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
    value_bytes: int = Field(description="the size of the stored value as JSON (memory_get reads it)")
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
            version: Annotated[int | None, Field(
                ge=1, description="this version (even a deleted one) instead of the latest")] = None,
            history: Annotated[bool, Field(description="also return the versions (newest 50), deleted ones included")] = False,
        ) -> Annotated[CallToolResult, MemoryWithHistory]:
            """Read a memory: its latest live version (or the given version), with value,
            type, metadata and who wrote it. With history=true, also its versions, so you can
            pick one for memory_restore; a deleted memory is then shown as its newest version."""
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
            prefix: Annotated[str, Field(min_length=1, max_length=512, description=(
                "a namespace; lists it and the namespaces below it (whole segments: user:al does not match user:alice)"))],
            memory_type: Annotated[Literal["semantic", "episodic", "procedural"] | None,
                                   Field(description="only this type")] = None,
            limit: Annotated[int, Field(ge=1, le=200, description="page size")] = 50,
            cursor: Annotated[str | None, Field(max_length=4096, description="next_cursor of the previous page")] = None,
        ) -> Annotated[CallToolResult, MemoryPage]:
            """List memories (latest live version of each key) under a namespace prefix, by
            namespace then key, one page at a time. This is a listing, not a text search."""
            with tool_errors():
                page = await (await service()).list_memories(prefix, memory_type, limit, cursor)
                items, next_cursor = fit_page([_memory(e) for e in page.items], page.next_cursor,
                                              lambda m: [m.namespace, m.key])
                return respond(MemoryPage(items=items, next_cursor=next_cursor))

    if "memory_write" in names:
        @server.tool(annotations=WRITE)
        async def memory_write(
            namespace: Namespace, key: Key,
            value: Annotated[Any, Field(description="any JSON value: object, array, string, number, boolean")],
            memory_type: Annotated[Literal["semantic", "episodic", "procedural"],
                                   Field(description=("used when the key is created; "
                                                      "an update keeps the key's type"))] = "semantic",
            metadata: Annotated[dict[str, Any] | None,
                                Field(description="a JSON object; on an update, replaces the metadata")] = None,
            by: By = None,
        ) -> Annotated[CallToolResult, WriteResult]:
            """Store a memory: creates the key (version 1) or writes its next version; a
            deleted key is created again with its version numbers continued. Earlier versions
            stay readable (memory_get history=true) and can be restored. The reply names the
            version written and its size, not the value."""
            with tool_errors():
                svc = await service(create=True)
                entry, created = await write_memory(svc, namespace, key, value, memory_type, metadata, by or state.by)
                return respond(WriteResult(entry=_written(entry), created=created))

    if "memory_delete" in names:
        @server.tool(annotations=DESTRUCTIVE)
        async def memory_delete(namespace: Namespace, key: Key, by: By = None) -> Annotated[CallToolResult, DeleteResult]:
            """Delete a memory: every version is hidden (a soft delete, recorded in the audit
            log). memory_restore undoes it."""
            with tool_errors():
                count = await (await service()).delete_memory(namespace, key, by or state.by)
                return respond(DeleteResult(namespace=namespace, key=key, deleted=True, versions=count))

    if "memory_restore" in names:
        @server.tool(annotations=WRITE)
        async def memory_restore(
            namespace: Namespace, key: Key,
            version: Annotated[int | None, Field(ge=1, description=(
                "roll back: write a new version holding this version's value; omit to undo a delete"))] = None,
            by: By = None,
        ) -> Annotated[CallToolResult, MemoryWritten]:
            """Undo a delete (without version), or roll a live memory back to an older
            version (with version: a new version holding that value; nothing is erased).
            The reply names the live version and its size (memory_get reads the value)."""
            with tool_errors():
                svc = await service()
                if version is None:
                    entry = await svc.restore_memory(namespace, key, by or state.by)
                else:
                    entry = await svc.rollback_memory(namespace, key, version, by or state.by)
                return respond(_written(entry))
