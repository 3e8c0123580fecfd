"""indexer: a local markdown indexing and semantic-search daemon, and the owner of the
Abathur session/memory schema.

Public API: ``from indexer import Database, MemoryService, SessionService, TaskService,
DocumentIndexService``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Database", "MemoryService", "SessionService", "TaskService", "DocumentIndexService", "__version__"]

_LAZY = {
    "Database": "indexer.storage.sqlite.database",
    "MemoryService": "indexer.agent.memory",
    "SessionService": "indexer.agent.sessions",
    "TaskService": "indexer.agent.tasks",
    "DocumentIndexService": "indexer.documents.service",
}


def __getattr__(name: str) -> Any:
    """Import lazily, so ``indexer --help`` never pays for what it does not use."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'indexer' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
