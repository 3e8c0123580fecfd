"""What ``indexer status`` reports, read through a read-only connection (never migrates)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from indexer.storage.sqlite import document_store as store
from indexer.storage.sqlite import driver, migrations


def collect_status(db: Path) -> dict[str, Any]:
    info: dict[str, Any] = {"database": str(db), "exists": db.exists()}
    if not info["exists"]:
        return info
    state = migrations.read_state(db)
    pending = [m.name for m in migrations.pending_migrations(state, migrations.load_migrations())]
    info["pending_migrations"] = pending
    info["size_bytes"] = sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())
    conn = driver.connect(db, readonly=True)
    try:
        tables = migrations.user_tables(conn)
        counts = store.status_counts(conn) if "document_index" in tables else {}
        counts["total"] = sum(counts.values())
        info["documents"] = {k: counts.get(k, 0) for k in ("total", "synced", "pending", "stale", "failed")}
        has_chunks = "document_chunks" in tables
        info["chunks"] = store.chunk_totals(conn) if has_chunks else {"chunks": 0, "embedded": 0}
        info["coverage"] = counts["synced"] / counts["total"] if counts.get("total") else 0.0
        fp = store.get_fingerprint(conn) if "embedding_settings" in tables else None
        info["model"] = fp["model"] if fp else None
        info["fingerprint"] = fp
        info["failed"] = store.failed_documents(conn) if "document_index" in tables else []
    finally:
        conn.close()
    return info
