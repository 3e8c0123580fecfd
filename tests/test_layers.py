"""The import layers, read from the source (ast): a new upward edge fails here.

    core (indexer/*.py)  <-  storage  <-  documents, agent  <-  daemon  <-  cli, mcp

storage imports only core; documents and agent never import each other; the daemon serves the
documents pipeline; only cli and mcp (the two front doors) may import everything. Inside storage,
each engine is a package: the SQLite binding is imported by storage/sqlite/ alone, psycopg by
storage/postgres/ alone, and the agent services reach either only through the engine-neutral seam
(storage/protocols.py, engines.py, records.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "indexer"

ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "storage": {"core", "storage"},
    "documents": {"core", "storage", "documents"},
    "agent": {"core", "storage", "agent"},
    "daemon": {"core", "storage", "documents", "daemon"},
    "cli": {"core", "storage", "documents", "agent", "daemon", "cli", "mcp"},
    "mcp": {"core", "storage", "documents", "agent", "daemon", "cli", "mcp"},
}
SQLITE_MODULES = {"sqlite3", "sqlean", "aiosqlite", "sqlite_vec"}
POSTGRES_MODULES = {"psycopg", "psycopg_pool", "psycopg2", "asyncpg", "pgvector"}
POSTGRES_PACKAGE = "indexer.storage.postgres"
SQLITE_PACKAGE = "indexer.storage.sqlite"
NEUTRAL = {"indexer.storage", "indexer.storage.protocols", "indexer.storage.engines", "indexer.storage.records"}
# What the PostgreSQL package may take from the SQLite one: the portable SQL text written once for
# both engines (hot_queries: '?' becomes '%s'), and the driver with which `migrate --to` reads
# the source file.
PG_FROM_SQLITE = {("indexer.storage.postgres.memory_store", "indexer.storage.sqlite.hot_queries"),
                  ("indexer.storage.postgres.session_store", "indexer.storage.sqlite.hot_queries"),
                  ("indexer.storage.postgres.task_store", "indexer.storage.sqlite.hot_queries"),
                  ("indexer.storage.postgres.transfer", "indexer.storage.sqlite.driver")}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "indexer":
        raise ValueError(module)
    if len(parts) == 1 or parts[1] not in ALLOWED:
        return "core"
    return parts[1]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every module imported anywhere in the file (lazy imports inside functions included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            if node.module.split(".")[0] == "indexer":  # from indexer import documents -> indexer.documents
                found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def source_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def test_layer_of() -> None:
    assert layer_of("indexer") == "core"
    assert layer_of("indexer.config") == "core"
    assert layer_of("indexer.storage.sqlite.driver") == "storage"
    assert layer_of("indexer.documents.sync") == "documents"


def test_no_upward_or_sideways_imports() -> None:
    bad = []
    for path in source_files():
        if path.name == "__main__.py" and path.parent == PACKAGE:
            continue
        here = layer_of(module_name(path)) if module_name(path) != "indexer" else "core"
        for line, target in imports_of(path):
            if target.split(".")[0] != "indexer":
                continue
            there = layer_of(target)
            if there not in ALLOWED[here]:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {here} imports {target} ({there})")
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_sqlite_binding_only_in_storage_sqlite() -> None:
    bad = []
    for path in source_files():
        if inside(module_name(path) or "indexer", SQLITE_PACKAGE):
            continue
        for line, target in imports_of(path):
            if target.split(".")[0] in SQLITE_MODULES:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: imports {target}")
    assert not bad, "the SQLite binding outside storage/sqlite:\n" + "\n".join(bad)


def test_postgres_driver_only_in_its_implementation() -> None:
    """psycopg is imported by indexer/storage/postgres/ alone (the agent layer reaches it only
    through indexer.storage.engines), and nothing but the factory imports that package."""
    bad = []
    for path in source_files():
        name = module_name(path) or "indexer"
        inside = name == POSTGRES_PACKAGE or name.startswith(POSTGRES_PACKAGE + ".")
        for line, target in imports_of(path):
            if target.split(".")[0] in POSTGRES_MODULES and not inside:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: imports {target}")
            if target.startswith(POSTGRES_PACKAGE) and not inside and name != "indexer.storage.engines" \
                    and layer_of(name) != "cli":
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: imports {target} (use indexer.storage.engines)")
    assert not bad, "the PostgreSQL driver outside storage/postgres:\n" + "\n".join(bad)


def test_postgres_package_imports_no_sqlite_binding() -> None:
    """storage/postgres needs no SQLite binding of its own (shared pure helpers only)."""
    bad = [f"{p.relative_to(PACKAGE.parent)}:{line}: imports {t}" for p in (PACKAGE / "storage" / "postgres").rglob("*.py")
           for line, t in imports_of(p) if t.split(".")[0] in SQLITE_MODULES]
    assert not bad, bad


def test_agent_services_see_only_the_seam() -> None:
    """The agent layer is written once for both engines: it imports storage's engine-neutral
    modules only, never an engine's package."""
    bad = [f"{p.relative_to(PACKAGE.parent)}:{line}: imports {t}"
           for p in (PACKAGE / "agent").rglob("*.py") for line, t in imports_of(p)
           if t.startswith("indexer.") and layer_of(t) == "storage" and ".".join(t.split(".")[:3]) not in NEUTRAL]
    assert not bad, "the agent layer past the seam:\n" + "\n".join(bad)


def test_engine_packages_stay_apart() -> None:
    """storage/postgres imports from storage/sqlite only what PG_FROM_SQLITE names; storage/sqlite
    never imports storage/postgres; the neutral modules import no engine at module level except
    through the factory (engines.py)."""
    bad = []
    for path in (PACKAGE / "storage").rglob("*.py"):
        name = module_name(path)
        for line, target in imports_of(path):
            module = ".".join(target.split(".")[:4])
            if inside(name, POSTGRES_PACKAGE) and inside(target, SQLITE_PACKAGE) \
                    and (name, module) not in PG_FROM_SQLITE and target != SQLITE_PACKAGE:
                bad.append(f"{name}:{line}: imports {target}")
            if inside(name, SQLITE_PACKAGE) and inside(target, POSTGRES_PACKAGE):
                bad.append(f"{name}:{line}: imports {target}")
            if name in NEUTRAL - {"indexer.storage.engines"} and (
                    inside(target, SQLITE_PACKAGE) or inside(target, POSTGRES_PACKAGE)):
                bad.append(f"{name}:{line}: imports {target}")
    assert not bad, "one engine's package reaching into the other:\n" + "\n".join(bad)


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_every_layer_has_modules(layer: str) -> None:
    """The map above describes packages that exist (a renamed package cannot silently pass)."""
    names = {layer_of(module_name(p)) for p in source_files() if module_name(p)}
    assert layer in names


def test_the_in_memory_search_engine_is_not_in_storage() -> None:
    """storage holds SQL; the numpy vector engine (documents/vector_matrix.py) is search
    machinery and lives above it, reading the vectors through storage/sqlite/vector_log.py."""
    engines = []
    for path in source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(f, ast.FunctionDef) and f.name == "nearest" for f in node.body):
                engines.append(layer_of(module_name(path)))
    assert engines and "storage" not in engines
