"""The vectors in memory, for long-lived searchers (the daemon, benchmarks): an exact
brute-force KNN in numpy instead of sqlite-vec's, kept current incrementally.

:meth:`VectorMatrix.refresh` runs inside the search's read snapshot and asks the vector change
log (schema 0006, ``storage/sqlite/vector_log.py``) what changed since the last search: nothing (the
usual case, whatever else was committed: memories, session events) costs one index lookup; an
edit costs one point lookup per changed vector; only a reset (a new model), a log that was
pruned past the last position or a change larger than a quarter of the vectors reloads all.

Rows live in slots: a removed vector frees its slot (masked out of every search), a new one
takes a free slot or is appended (capacity grows geometrically), so an edit never copies the
matrix. When a quarter of the slots are free the arrays are compacted in memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from indexer.storage.sqlite import search_store, vector_log


class VectorMatrix:
    """All chunk vectors of one database in memory. One-shot commands do not use it (loading
    costs more than one KNN in sqlite-vec)."""

    KIND = vector_log.CHUNKS
    OWNERS = True  # keep each vector's document (chunks) too
    # Above this many vectors, candidates are first chosen by the Hamming distance of sign
    # bits (48 bytes a vector instead of 1,536), then re-scored exactly with the floats:
    # the best 5 % (at least 10 per result wanted). On the real-model quality index that
    # keeps 99.7 % of the exact top 10 and 93 % of the top 50 (docs/search.md, "Speed").
    PREFILTER_ABOVE = 20_000
    PREFILTER_FRACTION = 20  # 1/20 of the vectors are re-scored
    PREFILTER_FACTOR = 10

    def __init__(self) -> None:
        self._seq: int | None = None  # the log position the arrays reflect; None: never loaded
        self._ids = np.zeros(0, dtype=np.int64)  # one a slot; -1 for a free slot
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._bits = np.zeros((0, 0), dtype=np.uint64)  # (words, slots), when prefiltering
        self._size = 0  # slots in use or freed (the high-water mark)
        self._slot: dict[int, int] = {}
        self._free: list[int] = []
        # chunk id -> document id of every vector (the chunks only): fusion needs the owner of
        # every candidate; a chunk's owner never changes, and a chunk's vector is logged when it
        # is written or dropped, so the owners follow the same log as the rows
        self._owners: dict[int, int] = {}
        self.reloads = 0  # full loads so far (tests and benches read these)
        self.updates = 0  # incremental updates so far

    # --- the live arrays (free slots included; ids of free slots are -1) -------------------
    @property
    def ids(self) -> np.ndarray:
        return self._ids[:self._size]

    @property
    def matrix(self) -> np.ndarray:
        return self._matrix[:self._size]

    @property
    def bits(self) -> np.ndarray:
        return self._bits[:, :self._size]

    def __len__(self) -> int:
        return len(self._slot)

    def load(self, ids: np.ndarray, matrix: np.ndarray) -> None:
        """Replace the contents with these vectors (one row an id)."""
        self._ids = np.array(ids, dtype=np.int64)
        rows = np.array(matrix, dtype=np.float32)
        # no vectors (yet): an empty (0, d) array; reshape(0, -1) cannot infer d and raised
        width = rows.shape[-1] if rows.ndim == 2 else 0
        self._matrix = rows.reshape(len(self._ids), -1) if len(self._ids) else rows.reshape(0, width)
        self._size = len(self._ids)
        self._slot = {int(i): n for n, i in enumerate(self._ids)}
        self._free = []
        self._bits = (self._sign_bits(self._matrix) if self._size > self.PREFILTER_ABOVE
                      else np.zeros((0, 0), dtype=np.uint64))

    # --- keeping current -----------------------------------------------------------------
    def refresh(self, conn: Any) -> None:
        """Bring the vectors to the state ``conn`` sees (call inside its read snapshot)."""
        first, head = vector_log.log_bounds(conn)
        if head == self._seq:
            return
        changed: list[int] = []
        reload = self._seq is None or (first > self._seq + 1)
        if not reload:
            assert self._seq is not None
            changed, reset = vector_log.changed_since(conn, self._seq, self.KIND)
            reload = reset or len(changed) > max(1000, len(self._slot) // 4)
        if reload:
            self.load(*vector_log.all_vectors(conn, self.KIND))
            if self.OWNERS:
                self._owners = search_store.chunk_documents(conn, [int(i) for i in self.ids])
            self.reloads += 1
        elif changed:
            self._apply(changed, *vector_log.vectors_by_id(conn, self.KIND, changed))
            if self.OWNERS:
                for item in changed:
                    self._owners.pop(item, None)
                self._owners.update(search_store.chunk_documents(conn, [c for c in changed if c in self._slot]))
            self.updates += 1
        self._seq = head

    def owners(self, ids: list[int]) -> tuple[dict[int, int], list[int]]:
        """(id -> document id of those with a vector here, the ids without one); valid for the
        snapshot of the last :meth:`refresh`."""
        found: dict[int, int] = {}
        missing: list[int] = []
        owner = self._owners
        for item in ids:
            doc = owner.get(item)
            if doc is None:
                missing.append(item)
            else:
                found[item] = doc
        return found, missing

    def _apply(self, changed: list[int], ids: np.ndarray, rows: np.ndarray) -> None:
        present = {int(i): n for n, i in enumerate(ids)}
        for item in changed:
            if item not in present and item in self._slot:
                slot = self._slot.pop(item)
                self._ids[slot] = -1
                self._matrix[slot] = 0.0
                self._free.append(slot)
        if len(ids) and (not self._matrix.size or rows.shape[1] != self._matrix.shape[1]):
            if self._slot:  # a new dimension without a reset: cannot be mixed; start again
                raise RuntimeError("vector dimension changed without a reset in the change log")
            self._matrix = np.zeros((0, rows.shape[1]), dtype=np.float32)
            self._ids = np.zeros(0, dtype=np.int64)
            self._size = 0
            self._free = []
        touched: list[int] = []
        for item, n in present.items():
            found = self._slot.get(item)
            if found is None:
                slot = self._free.pop() if self._free else self._append_slot()
                self._slot[item] = slot
                self._ids[slot] = item
            else:
                slot = found
            self._matrix[slot] = rows[n]
            touched.append(slot)
        if len(self._free) > max(64, self._size // 4):
            self._compact()
        elif self._bits.size:
            if touched:
                self._bits[:, touched] = self._sign_bits(self._matrix[touched])
        elif self._size > self.PREFILTER_ABOVE:  # grown above the threshold: sign bits from now on
            self._bits = self._sign_bits(self._matrix)

    def _append_slot(self) -> int:
        if self._size == len(self._ids):
            capacity = max(64, int(len(self._ids) * 1.5))
            ids = np.full(capacity, -1, dtype=np.int64)
            ids[:self._size] = self._ids[:self._size]
            matrix = np.zeros((capacity, self._matrix.shape[1]), dtype=np.float32)
            matrix[:self._size] = self._matrix[:self._size]
            self._ids, self._matrix = ids, matrix
            if self._bits.size:
                bits = np.zeros((self._bits.shape[0], capacity), dtype=np.uint64)
                bits[:, :self._size] = self._bits[:, :self._size]
                self._bits = bits
        self._size += 1
        return self._size - 1

    def _compact(self) -> None:
        live = self._ids[:self._size] >= 0
        self.load(self._ids[:self._size][live], self._matrix[:self._size][live])

    # --- searching -----------------------------------------------------------------------
    @staticmethod
    def _sign_bits(matrix: np.ndarray) -> np.ndarray:
        """One bit a dimension (positive or not), packed into 64-bit words, one row per word
        (word-major: the Hamming distance is then a few passes over contiguous arrays)."""
        packed = np.packbits(matrix > 0, axis=-1)
        pad = (-packed.shape[-1]) % 8
        if pad:
            packed = np.pad(packed, [(0, 0), (0, pad)])
        return np.ascontiguousarray(np.ascontiguousarray(packed).view(np.uint64).T)

    def _hamming(self, vector: np.ndarray) -> np.ndarray:
        bits = self.bits
        query = self._sign_bits(vector[None, :])[:, 0]
        distance: np.ndarray = np.bitwise_count(bits[0] ^ query[0]).astype(np.uint16)
        for word in range(1, len(query)):
            distance += np.bitwise_count(bits[word] ^ query[word])
        return distance

    def nearest(self, vector: np.ndarray, limit: int) -> list[tuple[int, float]]:
        """(id, cosine), best first, of the ``limit`` nearest vectors."""
        live = len(self._slot)
        if not live:
            return []
        vector = np.asarray(vector, dtype=np.float32)
        ids, matrix = self.ids, self.matrix
        free = ids < 0 if self._free else None
        candidates = max(limit * self.PREFILTER_FACTOR, live // self.PREFILTER_FRACTION)
        if self._bits.size and candidates < live:
            distance = self._hamming(vector)
            if free is not None:
                distance[free] = np.iinfo(np.uint16).max
            rows = np.argpartition(distance, candidates - 1)[:candidates]
            scores = matrix[rows] @ vector
            if free is not None:
                scores[free[rows]] = -np.inf
        else:
            rows = None
            scores = matrix @ vector
            if free is not None:
                scores[free] = -np.inf
        limit = min(limit, live, len(scores))
        top = np.argpartition(-scores, limit - 1)[:limit]
        top = top[np.argsort(-scores[top], kind="stable")]
        index = top if rows is None else rows[top]
        return [(int(ids[i]), float(s)) for i, s in zip(index, scores[top]) if ids[i] >= 0]


class SummaryMatrix(VectorMatrix):
    """The document summary vectors (schema 0003) in memory; always scored exactly (one
    vector a document: far fewer than chunks)."""

    KIND = vector_log.SUMMARIES
    OWNERS = False  # keyed by document already
    PREFILTER_ABOVE = 1 << 62


class SearchVectors:
    """What a long-lived searcher keeps: the chunk vectors and the summary vectors."""

    def __init__(self) -> None:
        self.chunks = VectorMatrix()
        self.summaries = SummaryMatrix()
