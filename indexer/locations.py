"""Which engine a database location names: ``postgresql://…`` (or ``postgres://…``) is a
PostgreSQL server, anything else is the path of an SQLite file."""

from __future__ import annotations

from pathlib import Path

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(location: str | Path | None) -> bool:
    """True for a PostgreSQL URL; also for one already mangled into a Path ('postgresql:/…')."""
    if location is None:
        return False
    text = str(location)
    return text.startswith(POSTGRES_SCHEMES) or text.startswith(("postgresql:/", "postgres:/"))


def engine_of(location: str | Path) -> str:
    return "postgresql" if is_postgres(location) else "sqlite"


def refuse_postgres(location: str | Path, what: str = "the document index") -> None:
    """A one-sentence error for a part that lives in SQLite only (so far)."""
    from indexer.errors import IndexerError

    if is_postgres(location):
        raise IndexerError(
            f"{what} cannot live on PostgreSQL yet (only memories, the agent store, can): give --db a file path "
            "and put the team store in --agent-db (INDEXER_AGENT_DB, config key agent_db)"
        )
