"""The factory behind the seam: a database location -> the engine's store and statements.

A path is an SQLite file (:class:`indexer.storage.sqlite.database.Database`); ``postgresql://…`` is a
PostgreSQL server (:class:`indexer.storage.postgres.connection.PostgresDatabase`, imported
only then: psycopg is an optional dependency, ``pip install 'indexer[postgres]'``).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from indexer.errors import IndexerError
from indexer.locations import engine_of, is_postgres
from indexer.storage.protocols import AgentDatabase, MemoryStatements, SessionStatements, TaskStatements


def _postgres() -> ModuleType:
    try:
        from indexer.storage.postgres import connection
    except ImportError as exc:
        raise IndexerError(f"a postgresql:// database needs psycopg: pip install 'indexer[postgres]' ({exc})") from None
    return connection


def open_agent_database(location: str | Path, *, migrate: bool = True, **settings: Any) -> AgentDatabase:
    """An (uninitialised) agent store at ``location``: ``async with open_agent_database(loc) as db``."""
    if is_postgres(location):
        connection = _postgres()
        if settings.get("min_size", 1) > settings.get("max_size", 4):
            settings["min_size"] = settings["max_size"]
        pool = connection.PoolSettings(**settings) if settings else None
        db: AgentDatabase = connection.PostgresDatabase(str(location), migrate=migrate, settings=pool)
        return db
    from indexer.storage.sqlite.database import Database

    return Database(location, migrate=migrate)


def engine(db: Any) -> str:
    """'sqlite' or 'postgresql' for an open store."""
    return str(getattr(db, "engine", "sqlite"))


def memory_statements(db: Any) -> MemoryStatements:
    """The memory statements of the store's engine."""
    if engine(db) == "postgresql":
        from indexer.storage.postgres import memory_store as pg_store

        pg: MemoryStatements = pg_store
        return pg
    from indexer.storage.sqlite import memory_store

    sqlite: MemoryStatements = memory_store
    return sqlite


def session_statements(db: Any) -> SessionStatements:
    """The session and event statements of the store's engine."""
    if engine(db) == "postgresql":
        from indexer.storage.postgres import session_store as pg_store

        pg: SessionStatements = pg_store
        return pg
    from indexer.storage.sqlite import session_store

    sqlite: SessionStatements = session_store
    return sqlite


def task_statements(db: Any) -> TaskStatements:
    """The task, agent and checkpoint statements of the store's engine."""
    if engine(db) == "postgresql":
        from indexer.storage.postgres import task_store as pg_store

        pg: TaskStatements = pg_store
        return pg
    from indexer.storage.sqlite import task_store

    sqlite: TaskStatements = task_store
    return sqlite


__all__ = ["engine", "engine_of", "memory_statements", "open_agent_database", "session_statements", "task_statements"]
