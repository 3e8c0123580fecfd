"""DocumentIndexService: the report's document API, over the same sync engine as ``reindex``.

Every call runs the blocking work (file reads, the model, SQLite) in a worker thread, so the
event loop never stalls; one lock keeps this service's writes in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.aio import settle
from indexer.config import Config, load_config
from indexer.documents.embedding import Embedder
from indexer.documents.sync import DocumentSync, SyncReport
from indexer.documents.targets import split_targets
from indexer.documents.tokenizer import TokenCounter
from indexer.errors import NotFoundError, ValidationError
from indexer.storage.sqlite import document_store as store
from indexer.storage.sqlite import search_store
from indexer.storage.sqlite.vectors import from_blob, to_blob


class DocumentIndexService:
    """``index_document``, ``update_embeddings``, ``search_documents`` (and ``sync``)."""

    def __init__(self, config: Config | None = None, *, db_path: str | Path | None = None,
                 embedder: Embedder | None = None, counter: TokenCounter | None = None) -> None:
        if config is None:
            config = load_config({"db": str(db_path)} if db_path else None)
        self.config = config.require_documents_db()
        self._sync = DocumentSync(config, embedder=embedder, counter=counter)
        self._lock = asyncio.Lock()

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn`` on a worker thread, under the lock. A cancelled caller cannot stop the thread,
        which uses the shared connection: the lock is kept until it ends (:func:`settle`), then
        the cancellation is raised; the next call never runs beside it."""
        async with self._lock:
            return await settle(asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs)))

    async def close(self) -> None:
        await self._run(self._sync.close)

    async def __aenter__(self) -> DocumentIndexService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def index_document(self, file_path: str | Path, title: str | None = None,
                             document_type: str | None = None, *, embed: bool = True) -> dict[str, Any]:
        """Index one markdown file (idempotent); returns its row. ``title``/``document_type``
        override what the file's front matter and headings say."""
        path = Path(file_path).expanduser().absolute()
        if not path.is_file():
            raise NotFoundError(f"no such file: {path}")
        path = path.resolve()
        return await self._run(self._index_blocking, path, title, document_type, embed)

    def _index_blocking(self, path: Path, title: str | None, document_type: str | None, embed: bool) -> dict[str, Any]:
        report = self._sync.reconcile([path.parent], paths=[path], full=True)
        if embed:
            self._sync.embed_pending(report=report)
        conn = self._sync.open()
        if title is not None or document_type is not None:
            with store.write(conn):
                store.override_labels(conn, str(path), title, document_type)
        row = store.document_row(conn, str(path))
        if row is None:
            raise NotFoundError(f"{path} was not indexed (excluded by the include/exclude rules?)")
        return row

    async def update_embeddings(self, file_path: str | Path,
                                embedding_blob: bytes | Sequence[float] | None = None) -> dict[str, Any]:
        """Without a blob: embed the document's pending chunks now. With one: store it as the
        document's vector (float32 little-endian, the model's dimension)."""
        return await self._run(self._update_blocking, str(Path(file_path).expanduser().absolute()), embedding_blob)

    def _update_blocking(self, path: str, blob: Any) -> dict[str, Any]:
        conn = self._sync.open()
        if store.get_doc(conn, path) is None:
            raise NotFoundError(f"document not indexed: {path}")
        if blob is None:
            self._sync.prepare()
            self._sync.embed_pending(report=SyncReport())
        else:
            vector = _as_vector(blob)
            self._sync.prepare()
            dim = int(self._sync.embedder.dim)
            if vector.shape != (dim,):
                raise ValidationError(f"embedding has {vector.size} values; the index uses {dim}")
            with store.write(conn):
                store.set_document_vector(conn, path, to_blob(vector))
        row = store.document_row(conn, path)
        assert row is not None
        return row

    async def search_documents(self, query_embedding: bytes | Sequence[float] | np.ndarray,
                               limit: int = 10) -> list[dict[str, Any]]:
        """Documents nearest to a query vector, best chunk first (cosine distance)."""
        if limit < 1:
            raise ValidationError("limit must be at least 1")
        return await self._run(self._search_blocking, _as_vector(query_embedding), limit)

    def _search_blocking(self, vector: np.ndarray, limit: int) -> list[dict[str, Any]]:
        conn = self._sync.open()
        if not store.vector_table_exists(conn):
            return []
        return search_store.nearest_documents(conn, vector, limit)

    async def sync(self, roots: Sequence[Path] | None = None, *, paths: Sequence[str | Path] | None = None,
                   full: bool = False) -> SyncReport:
        """A reconcile + embed of the configured (or given) roots; with ``paths``, of those only,
        as ``indexer reindex PATH...`` does (a root, a file or directory below one, or a
        directory outside every root, synced as a root for this call)."""
        run_roots = tuple(roots if roots is not None else self.config.roots)
        targets = None
        if paths:
            extra, targets = split_targets(paths, run_roots)
            run_roots += tuple(extra)
        return await self._run(self._sync.run, run_roots, paths=targets, full=full)


def _as_vector(value: Any) -> np.ndarray:
    if isinstance(value, (bytes, bytearray, memoryview)):
        if len(value) % 4:
            raise ValidationError("an embedding blob is float32 little-endian: its length must be a multiple of 4")
        return from_blob(bytes(value)).astype(np.float32)
    try:
        vector = np.asarray(value, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"not an embedding: {exc}") from None
    if not np.all(np.isfinite(vector)):
        raise ValidationError("the embedding holds NaN or infinite values")
    return vector
