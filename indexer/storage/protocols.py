"""The seam between the agent services and the storage engines: one interface per area.

A service (``indexer.agent.memory.MemoryService``…) is written once against these; each
engine implements them in plain SQL of its own: SQLite in ``indexer.storage`` (today's
modules; they move to ``storage/sqlite/`` once the other areas are behind the seam too) and
PostgreSQL in ``indexer.storage.postgres``. :mod:`indexer.storage.engines` chooses by the
database location: a path means SQLite, ``postgresql://…`` PostgreSQL.

Two levels:

* :class:`AgentDatabase`: an open store that runs ``fn(conn, *args)`` as one transaction
  (SQLite: on its connection thread under ``BEGIN IMMEDIATE``; PostgreSQL: on a pooled
  connection, retried once if the connection dies before COMMIT).
* statement sets (:class:`MemoryStatements`…): functions of that ``conn``, called inside
  such a transaction. Both engines' modules satisfy them (mypy checks the modules against the
  protocol in :func:`indexer.storage.engines.memory_statements`).

Sessions and their events (:class:`SessionStatements`) are behind the seam too; tasks/agents/
checkpoints and migrations/doctor are sketched below (not implemented on PostgreSQL yet).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class AgentDatabase(Protocol):
    """What the agent services need of an open store."""

    async def initialize(self) -> Any: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def run(self, fn: Callable[..., T], *args: Any, write: bool = True, inline: bool = False) -> T: ...


class MemoryStatements(Protocol):
    """The statements of ``memory_entries`` and its audit rows; rows support ``row["column"]``
    and hold JSON columns as text.

    Version numbers: every write of a key runs after :meth:`lock_key` of that key inside its
    transaction (SQLite: a no-op, ``BEGIN IMMEDIATE`` already serialises writers; PostgreSQL:
    ``pg_advisory_xact_lock``), so ``max(version) + 1`` is never computed twice.
    """

    def lock_key(self, conn: Any, namespace: str, key: str) -> None: ...

    def lock_keys(self, conn: Any, keys: Sequence[tuple[str, str]]) -> bool: ...

    def latest_live(self, conn: Any, namespace: str, key: str) -> Any | None: ...

    def newest(self, conn: Any, namespace: str, key: str) -> Any | None: ...

    def version(self, conn: Any, namespace: str, key: str, number: int) -> Any | None: ...

    def history(self, conn: Any, namespace: str, key: str) -> list[Any]: ...

    def insert_first(self, conn: Any, namespace: str, key: str, value_json: str, memory_type: str,
                     metadata_json: str, created_by: str | None, now: str) -> Any | None: ...

    def insert_next(self, conn: Any, namespace: str, key: str, *, value_json: str | None,
                    metadata_json: str | None, updated_by: str | None, now: str,
                    source_version: int | None = None) -> Any | None: ...

    def set_deleted(self, conn: Any, namespace: str, key: str, deleted: bool) -> int: ...

    def insert_audit(self, conn: Any, *, timestamp: str, action_type: str, operation: str,
                     namespace: str, entry_id: int | None, data: dict[str, Any]) -> None: ...

    def insert_audits(self, conn: Any, rows: Sequence[tuple[str, str, str, str, int | None, dict[str, Any]]]) -> None: ...

    def audit_rows(self, conn: Any, namespace: str) -> list[dict[str, Any]]: ...

    def prefix_page(self, conn: Any, prefix: str, after: tuple[str, str] | None, limit: int,
                    memory_type: str | None = None) -> list[Any]: ...

    def expired_episodic(self, conn: Any, cutoff: str) -> list[Any]: ...

    def delete_keys(self, conn: Any, keys: Sequence[tuple[str, str]]) -> None: ...


class SessionStatements(Protocol):
    """Sessions and their events as rows: ``(session_id, seq)`` unique, seq contiguous per
    session (an append reads ``max(seq) + 1`` only once it holds the session: SQLite's write
    lock, PostgreSQL's row lock); a state change is applied under that same hold, and a status
    change updates only where the expected status still holds (compare-and-set). Rows support
    ``row["column"]`` and hold JSON columns as text."""

    def lock(self, conn: Any, session_id: str) -> None: ...

    def exists(self, conn: Any, session_id: str) -> bool: ...

    def status(self, conn: Any, session_id: str) -> str | None: ...

    def insert(self, conn: Any, session_id: str, app_name: str, user_id: str, project_id: str | None,
               state_json: str, metadata_json: str, now: str) -> Any: ...

    def get(self, conn: Any, session_id: str) -> Any | None: ...

    def append_event(self, conn: Any, session_id: str, event_json: str, event_type: str | None,
                     ops: Sequence[tuple[str, str | None]], now: str) -> int | None: ...

    def update_state(self, conn: Any, session_id: str, ops: Sequence[tuple[str, str | None]], now: str) -> str | None: ...

    def set_status(self, conn: Any, session_id: str, old: str, new: str, now: str) -> Any | None: ...

    def page(self, conn: Any, filters: dict[str, str], after: tuple[str, str] | None, limit: int) -> list[Any]: ...

    def event_count(self, conn: Any, session_id: str) -> int: ...

    def all_events(self, conn: Any, session_id: str) -> str: ...

    def events_page(self, conn: Any, session_id: str, after: int, limit: int) -> list[Any]: ...

    def events_tail(self, conn: Any, session_id: str, limit: int) -> list[Any]: ...


# --- sketches for the next round ------------------------------------------------------------

class TaskStatements(Protocol):
    """Tasks: a claim takes one ready task exactly once (PostgreSQL: ``FOR UPDATE SKIP LOCKED``)."""

    def submit(self, conn: Any, row: dict[str, Any]) -> None: ...

    def claim(self, conn: Any, agent_id: str, now: str) -> Any | None: ...

    def finish(self, conn: Any, task_id: str, status: str, result_json: str | None, now: str) -> bool: ...


class SchemaAdmin(Protocol):
    """Migrations and doctor of one engine: numbered files recorded with checksums."""

    def migrate(self, location: str, *, dry_run: bool = False) -> Any: ...

    def doctor(self, location: str) -> list[Any]: ...
