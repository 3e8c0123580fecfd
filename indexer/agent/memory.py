"""MemoryService: versioned, soft-deletable long-term memory in ``memory_entries``.

A memory is a (namespace, key) with a sequence of versions 1, 2, 3… Every write adds a
version (update, rollback, re-create after a delete) or flips the ``is_deleted`` flag of all
versions at once (delete, restore), and writes one ``audit`` row in the same transaction.
Version numbers are computed by the INSERT itself after the key's lock
(``MemoryStatements.lock_key``: on SQLite ``BEGIN IMMEDIATE`` is that lock already, on
PostgreSQL a transaction-scoped advisory lock), so writers in several processes or machines
serialise: no duplicate, no gap, no IntegrityError.

The rules (namespaces, memory types, JSON) are pure functions here, written once; the SQL is
the engine's, chosen by :func:`indexer.storage.engines.memory_statements`:
:mod:`indexer.storage.sqlite.memory_store` (SQLite) or :mod:`indexer.storage.postgres.memory_store`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from indexer.agent.common import DEFAULT_LIMIT, Limits, check_text, decode_cursor, keyset_page, to_json, validate_limit
from indexer.errors import ConflictError, NotFoundError, ValidationError
from indexer.storage import engines
from indexer.storage.protocols import AgentDatabase, MemoryStatements
from indexer.timeutil import format_ts, now_ts

MEMORY_TYPES = ("semantic", "episodic", "procedural")
NAMESPACE_SCOPES = ("project", "app", "user", "session", "temp")


@dataclass(frozen=True)
class MemoryEntry:
    """One version of a memory; ``value`` and ``metadata`` decoded from JSON."""

    id: int
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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MemoryPage:
    """One page of :meth:`MemoryService.list_memories`; pass ``next_cursor`` for the next
    (None: this was the last page)."""

    items: tuple[MemoryEntry, ...]
    next_cursor: str | None

    def __iter__(self) -> Iterator[MemoryEntry]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def as_dict(self) -> dict[str, Any]:
        return {"items": [item.as_dict() for item in self.items], "next_cursor": self.next_cursor}


# --- the rules, as pure functions ---------------------------------------------------------

def validate_namespace(namespace: Any) -> str:
    """``scope[:segment…]``: ':'-separated non-empty segments, the first one of
    project, app, user, session, temp."""
    check_text(namespace, "namespace")
    segments = namespace.split(":")
    if any(segment == "" for segment in segments):
        raise ValidationError(f"namespace {namespace!r} has an empty segment (segments are separated by ':')")
    if segments[0] not in NAMESPACE_SCOPES:
        raise ValidationError(
            f"namespace {namespace!r} must start with one of {', '.join(NAMESPACE_SCOPES)} (e.g. user:alice)"
        )
    return namespace


def validate_key(key: Any) -> str:
    return check_text(key, "key")


def validate_memory_type(memory_type: Any) -> str:
    if memory_type not in MEMORY_TYPES:
        raise ValidationError(f"memory_type must be one of {', '.join(MEMORY_TYPES)}, got {memory_type!r}")
    return str(memory_type)


def validate_version(version: Any) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValidationError(f"version must be a positive integer, got {version!r}")
    return version


def metadata_json(metadata: Any) -> str:
    if metadata is None:
        return "{}"
    if not isinstance(metadata, dict):
        raise ValidationError(f"metadata must be a JSON object, got {type(metadata).__name__}")
    return to_json(metadata, "metadata")


def ttl_seconds(ttl: Any) -> float:
    """A TTL given as seconds (int/float) or a timedelta, as seconds (>= 0)."""
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
        seconds = float(ttl)
    else:
        raise ValidationError(f"ttl must be seconds or a timedelta, got {ttl!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValidationError(f"ttl must be a finite, non-negative duration, got {ttl!r}")
    return seconds


def _name(namespace: str, key: str) -> str:
    return f"{key!r} in {namespace}"


def entry_from_row(row: Any) -> MemoryEntry:
    return MemoryEntry(
        id=int(row["id"]),
        namespace=row["namespace"],
        key=row["key"],
        value=json.loads(row["value"]),
        memory_type=row["memory_type"],
        version=int(row["version"]),
        is_deleted=bool(row["is_deleted"]),
        metadata=json.loads(row["metadata"]) if row["metadata"] is not None else {},
        created_by=row["created_by"],
        updated_by=row["updated_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


# --- the service ------------------------------------------------------------------------------

def _raise_not_live(conn: Any, store: MemoryStatements, namespace: str, key: str) -> NoReturn:
    if store.newest(conn, namespace, key) is None:
        raise NotFoundError(f"no memory {_name(namespace, key)}")
    raise NotFoundError(f"memory {_name(namespace, key)} is deleted (restore it first)")


def _create(conn: Any, store: MemoryStatements, namespace: str, key: str, value_json: str, memory_type: str, meta_json: str,
            created_by: str | None, now: str) -> Any:
    store.lock_key(conn, namespace, key)
    row = store.insert_first(conn, namespace, key, value_json, memory_type, meta_json, created_by, now)
    if row is None:
        live = store.latest_live(conn, namespace, key)
        version = live["version"] if live is not None else "?"
        raise ConflictError(f"memory {_name(namespace, key)} already exists (version {version}); update it instead")
    store.insert_audit(conn, timestamp=now, action_type="memory_create", operation="create",
                       namespace=namespace, entry_id=row["id"],
                       data={"key": key, "version": row["version"], "memory_type": memory_type,
                             "created_by": created_by})
    return row


def _update(conn: Any, store: MemoryStatements, namespace: str, key: str, value_json: str, meta_json: str | None,
            updated_by: str | None, now: str) -> Any:
    store.lock_key(conn, namespace, key)
    row = store.insert_next(conn, namespace, key, value_json=value_json, metadata_json=meta_json,
                            updated_by=updated_by, now=now)
    if row is None:
        _raise_not_live(conn, store, namespace, key)
    store.insert_audit(conn, timestamp=now, action_type="memory_update", operation="update",
                       namespace=namespace, entry_id=row["id"],
                       data={"key": key, "version": row["version"], "updated_by": updated_by})
    return row


def _get(conn: Any, store: MemoryStatements, namespace: str, key: str, version: int | None) -> Any:
    if version is None:
        row = store.latest_live(conn, namespace, key)
        if row is None:
            _raise_not_live(conn, store, namespace, key)
        return row
    row = store.version(conn, namespace, key, version)
    if row is None:
        raise NotFoundError(f"memory {_name(namespace, key)} has no version {version}")
    return row


def _delete(conn: Any, store: MemoryStatements, namespace: str, key: str, deleted_by: str | None, now: str) -> int:
    store.lock_key(conn, namespace, key)
    live = store.latest_live(conn, namespace, key)
    if live is None:
        _raise_not_live(conn, store, namespace, key)
    count = store.set_deleted(conn, namespace, key, True)
    store.insert_audit(conn, timestamp=now, action_type="memory_delete", operation="delete",
                       namespace=namespace, entry_id=live["id"],
                       data={"key": key, "version": live["version"], "versions_marked": count,
                             "deleted_by": deleted_by})
    return count


def _restore(conn: Any, store: MemoryStatements, namespace: str, key: str, restored_by: str | None, now: str) -> Any:
    store.lock_key(conn, namespace, key)
    newest = store.newest(conn, namespace, key)
    if newest is None:
        raise NotFoundError(f"no memory {_name(namespace, key)}")
    if not newest["is_deleted"]:
        raise ConflictError(f"memory {_name(namespace, key)} is not deleted (version {newest['version']} is live)")
    count = store.set_deleted(conn, namespace, key, False)
    store.insert_audit(conn, timestamp=now, action_type="memory_restore", operation="restore",
                       namespace=namespace, entry_id=newest["id"],
                       data={"key": key, "version": newest["version"], "versions_restored": count,
                             "restored_by": restored_by})
    return store.latest_live(conn, namespace, key)


def _rollback(conn: Any, store: MemoryStatements, namespace: str, key: str, version: int,
              updated_by: str | None, now: str) -> Any:
    store.lock_key(conn, namespace, key)
    if store.version(conn, namespace, key, version) is None:
        if store.newest(conn, namespace, key) is None:
            raise NotFoundError(f"no memory {_name(namespace, key)}")
        raise NotFoundError(f"memory {_name(namespace, key)} has no version {version}")
    row = store.insert_next(conn, namespace, key, value_json=None, metadata_json=None,
                            updated_by=updated_by, now=now, source_version=version)
    if row is None:
        _raise_not_live(conn, store, namespace, key)
    store.insert_audit(conn, timestamp=now, action_type="memory_rollback", operation="update",
                       namespace=namespace, entry_id=row["id"],
                       data={"key": key, "version": row["version"], "rolled_back_to": version,
                             "updated_by": updated_by})
    return row


def _cleanup(conn: Any, store: MemoryStatements, cutoff: str, seconds: float, now: str) -> int:
    expired = store.expired_episodic(conn, cutoff)
    keys = [(r["namespace"], r["key"]) for r in expired]
    if store.lock_keys(conn, keys):  # another engine than SQLite: what was read may have changed
        locked = set(keys)
        expired = [r for r in store.expired_episodic(conn, cutoff) if (r["namespace"], r["key"]) in locked]
    if expired:
        store.delete_keys(conn, [(r["namespace"], r["key"]) for r in expired])
        store.insert_audits(conn, [
            (now, "memory_cleanup", "delete", r["namespace"], r["id"],
             {"key": r["key"], "version": r["version"], "updated_at": r["updated_at"],
              "ttl_seconds": seconds, "cutoff": cutoff})
            for r in expired
        ])
    return len(expired)


def _history(conn: Any, store: MemoryStatements, namespace: str, key: str) -> list[Any]:
    rows = store.history(conn, namespace, key)
    if not rows:
        raise NotFoundError(f"no memory {_name(namespace, key)}")
    return rows


class MemoryService:
    """The report's memory API over a :class:`~indexer.storage.sqlite.database.Database`.

    Each method validates its arguments, then runs as one transaction (writes: ``BEGIN
    IMMEDIATE``) with its audit row; a failure anywhere leaves nothing behind. A value or
    metadata larger than ``limits`` (default :class:`~indexer.agent.common.Limits`, the
    config's defaults; pass ``Limits.from_config(config)`` for a config's) is refused.
    """

    def __init__(self, db: AgentDatabase, limits: Limits | None = None) -> None:
        self.db = db
        self.store = engines.memory_statements(db)  # the SQL of the store's engine
        self.limits = limits or Limits()

    async def create_memory(self, namespace: str, key: str, value: Any, memory_type: str,
                            created_by: str | None = None, metadata: dict[str, Any] | None = None) -> MemoryEntry:
        """Version 1 of a new key. A key that was deleted may be created again: its version
        sequence continues (max + 1). ConflictError if the key is live."""
        validate_namespace(namespace)
        validate_key(key)
        validate_memory_type(memory_type)
        value_json = self.limits.value(to_json(value))
        meta_json = self.limits.metadata(metadata_json(metadata))
        row = await self.db.run(_create, self.store, namespace, key, value_json, memory_type, meta_json,
                                    created_by, now_ts(), inline=True)
        return entry_from_row(row)

    async def update_memory(self, namespace: str, key: str, value: Any, updated_by: str | None = None,
                            *, metadata: dict[str, Any] | None = None) -> MemoryEntry:
        """A new version holding ``value``; memory_type, created_by/created_at and (unless
        ``metadata`` is given) metadata are carried from the latest version. NotFoundError if
        the key has no live version."""
        validate_namespace(namespace)
        validate_key(key)
        value_json = self.limits.value(to_json(value))
        meta_json = self.limits.metadata(metadata_json(metadata)) if metadata is not None else None
        row = await self.db.run(_update, self.store, namespace, key, value_json, meta_json, updated_by, now_ts(), inline=True)
        return entry_from_row(row)

    async def get_memory(self, namespace: str, key: str, version: int | None = None) -> MemoryEntry:
        """The latest live version, or the given version (even a deleted one: see
        ``is_deleted``). NotFoundError if there is none."""
        validate_namespace(namespace)
        validate_key(key)
        if version is not None:
            validate_version(version)
        return entry_from_row(await self.db.run(_get, self.store, namespace, key, version, write=False, inline=True))

    async def get_memory_history(self, namespace: str, key: str) -> list[MemoryEntry]:
        """Every version, oldest first, deleted ones included. NotFoundError for an unknown key."""
        validate_namespace(namespace)
        validate_key(key)
        rows = await self.db.run(_history, self.store, namespace, key, write=False)
        return [entry_from_row(r) for r in rows]

    async def list_memories(self, namespace_prefix: str, memory_type: str | None = None,
                            limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> MemoryPage:
        """The latest live version of each key in ``namespace_prefix`` or below it (whole
        segments: ``user:al`` does not match ``user:alice``), by (namespace, key), one page;
        ``next_cursor`` continues (keyset pagination: stable under concurrent writes)."""
        validate_namespace(namespace_prefix)
        if memory_type is not None:
            validate_memory_type(memory_type)
        validate_limit(limit)
        after: tuple[str, str] | None = None
        if cursor is not None:
            ns, key = decode_cursor(cursor, 2)
            if ns != namespace_prefix and not ns.startswith(namespace_prefix + ":"):
                raise ValidationError(f"cursor {cursor!r} does not belong to a listing of {namespace_prefix}")
            after = (ns, key)
        rows = await self.db.run(self.store.prefix_page, namespace_prefix, after, limit + 1, memory_type, write=False)
        items, next_cursor = keyset_page(rows, limit, entry_from_row, lambda e: [e.namespace, e.key])
        return MemoryPage(tuple(items), next_cursor)

    async def delete_memory(self, namespace: str, key: str, deleted_by: str | None = None) -> int:
        """Soft delete: every version is marked deleted (none resurfaces). Returns how many
        versions were marked. NotFoundError if the key has no live version."""
        validate_namespace(namespace)
        validate_key(key)
        return await self.db.run(_delete, self.store, namespace, key, deleted_by, now_ts(), inline=True)

    async def restore_memory(self, namespace: str, key: str, restored_by: str | None = None) -> MemoryEntry:
        """Undo a delete: every version live again; returns the latest. ConflictError if the
        key is not deleted, NotFoundError if it never existed."""
        validate_namespace(namespace)
        validate_key(key)
        return entry_from_row(await self.db.run(_restore, self.store, namespace, key, restored_by, now_ts(), inline=True))

    async def rollback_memory(self, namespace: str, key: str, version: int,
                              updated_by: str | None = None) -> MemoryEntry:
        """A new version (max + 1) holding the value of ``version`` (which may be a deleted
        version); memory_type, metadata and created_by come from the latest version. The key
        must be live (NotFoundError otherwise)."""
        validate_namespace(namespace)
        validate_key(key)
        validate_version(version)
        row = await self.db.run(_rollback, self.store, namespace, key, version, updated_by, now_ts(), inline=True)
        return entry_from_row(row)

    async def cleanup_expired(self, ttl: float | int | timedelta) -> int:
        """Soft-delete every episodic key whose latest live version was last updated more
        than ``ttl`` (seconds or a timedelta) ago; one audit row per key. Returns the count."""
        seconds = ttl_seconds(ttl)
        now_dt = datetime.now(UTC)
        try:
            cutoff = format_ts(now_dt - timedelta(seconds=seconds))
        except OverflowError:
            return 0  # a TTL reaching before year 1: nothing can be that old
        return await self.db.run(_cleanup, self.store, cutoff, seconds, format_ts(now_dt))
