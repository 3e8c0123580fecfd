"""The daemon's warm search path: a query embedder of its own (never shared with the document
embedder, whose tokenizer is not safe across threads), a read-only connection and the vectors
in memory (:class:`~indexer.documents.vector_matrix.SearchVectors`, updated from the vector
change log inside each search's read snapshot), and the vectors of the last
:data:`QUERY_CACHE` distinct queries (agents repeat theirs; embedding one is most of a
search's time).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from indexer.config import Config

log = logging.getLogger("indexer.documents.search")
QUERY_CACHE = 256  # query vectors kept, least recently used dropped first


class WarmSearcher:
    def __init__(self, config: Config, embedder_factory: Callable[[Config], Any]) -> None:
        self.config = config
        self._factory = embedder_factory
        self._lock = threading.Lock()
        self._conn: Any = None
        self._matrix: Any = None
        self._embedder: Any = None
        self._query_vectors: OrderedDict[tuple[str, str], Any] = OrderedDict()  # (model, text) -> vector
        self.warm_seconds: float | None = None

    def _embedder_for_queries(self) -> Any:
        if self._embedder is None:
            self._embedder = self._factory(self.config)
        return self._embedder

    def _embed_query(self, text: str) -> Any:
        """The query's vector, from the cache when this text was embedded lately (the same
        model, the same text: the same vector; kept read-only, so no caller can change it)."""
        key = (self.config.model, text)
        vector = self._query_vectors.get(key)
        if vector is not None:
            self._query_vectors.move_to_end(key)
            return vector
        vector = self._embedder_for_queries().embed_query(text).copy()
        vector.setflags(write=False)
        self._query_vectors[key] = vector
        if len(self._query_vectors) > QUERY_CACHE:
            self._query_vectors.popitem(last=False)
        return vector

    def _vectors(self) -> Any:
        if self._matrix is None:
            from indexer.documents.vector_matrix import SearchVectors

            self._matrix = SearchVectors()
        return self._matrix

    def _connection(self) -> Any:
        if self._conn is None:
            from indexer.storage.sqlite import driver

            self._conn = driver.connect(self.config.db, readonly=True)
        return self._conn

    def warm(self) -> None:
        """Load the model and the vectors now, so the first search is as fast as the rest."""
        started = time.perf_counter()
        try:
            with self._lock:
                from indexer.storage.sqlite import vector_log

                self._embedder_for_queries().embed_query("warm up")
                conn = self._connection()
                vectors = self._vectors()
                with vector_log.snapshot(conn):
                    vectors.chunks.refresh(conn)
                    vectors.summaries.refresh(conn)
        except Exception:  # a broken model is reported by the first search, with its message
            log.exception("warming the search model failed")
            return
        self.warm_seconds = time.perf_counter() - started
        log.info("search model and vectors warm in %.1f s", self.warm_seconds)

    def search(self, query: str, options: Any) -> dict[str, Any]:
        from indexer.documents.search import run_search

        with self._lock:
            return run_search(self._connection(), query, options, self._embed_query, matrix=self._vectors())

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._matrix = None
            self._query_vectors.clear()
