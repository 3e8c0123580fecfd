"""Stand-ins for tests and benchmarks of the plumbing: no model, no torch, deterministic.

Nothing in the product uses these unless asked to by name: a config's ``model = "hash:DIM"``
(or ``hash:DIM:MS``) makes :func:`indexer.documents.embedding.make_embedder` return a
:class:`HashEmbedder`, and an embedder without a tokenizer of its own (only a fake has none)
gets the :class:`WhitespaceTokenCounter`. Tests that spawn the daemon or the CLI select the
fake that way (``INDEXER_MODEL=hash:64``); in-process tests construct them directly.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence

import numpy as np

from indexer.errors import IndexerError


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    norms[norms == 0] = 1.0
    return (vectors / norms).astype(np.float32)


class HashEmbedder:
    """A bag of hashed words, normalised: texts sharing words get similar vectors, so ranking
    tests still mean something. ``delay_s`` per text emulates a slow model."""

    def __init__(self, dim: int = 64, name: str = "test-hash-embedder", max_tokens: int = 254,
                 delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.name = name
        self._dim = dim
        self._max_tokens = max_tokens
        self.query_prefix = ""
        self.document_prefix = ""
        self.calls = 0
        self.texts_embedded = 0

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def _vector(self, text: str) -> np.ndarray:
        vec = np.zeros(self._dim, dtype=np.float32)
        for word in text.lower().split():
            digest = hashlib.blake2b(word.strip(".,:;!?()[]`\"'").encode(), digest_size=8).digest()
            vec[int.from_bytes(digest[:4], "little") % self._dim] += 1.0
        vec[0] += 1e-3  # never the zero vector
        return vec

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts_embedded += len(texts)
        if self.delay_s:
            time.sleep(self.delay_s * len(texts))
        return _normalise(np.stack([self._vector(t) for t in texts])) if texts else np.zeros((0, self._dim), np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return _normalise(self._vector(text)[None, :])[0]


def hash_embedder(spec: str) -> HashEmbedder:
    """``hash:DIM`` or ``hash:DIM:MS_PER_TEXT`` as a :class:`HashEmbedder` named ``spec``."""
    try:
        parts = [int(p) for p in spec.split(":")[1:]]
        if not 1 <= len(parts) <= 2 or parts[0] < 2 or min(parts) < 0:
            raise ValueError
    except ValueError:
        raise IndexerError(f"model {spec!r}: use hash:DIM or hash:DIM:MS_PER_TEXT, e.g. hash:64") from None
    return HashEmbedder(dim=parts[0], name=spec, delay_s=(parts[1] / 1000 if len(parts) > 1 else 0.0))


_WORD = re.compile(r"\S+")


class WhitespaceTokenCounter:
    """One token per whitespace-separated word: the token counter that goes with the fake embedder."""

    def count(self, text: str) -> int:
        return len(text.split())

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    def split(self, text: str, max_tokens: int) -> list[str]:
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        starts = [m.start() for m in _WORD.finditer(text)]
        if len(starts) <= max_tokens:
            return [text]
        bounds = [0, *starts[max_tokens::max_tokens], len(text)]
        return [text[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]
