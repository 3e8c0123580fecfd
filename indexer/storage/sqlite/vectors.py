"""How vectors and their provenance are stored: the float32 blob codec and the fingerprint record.

Kept in storage (it is the on-disk format) so that the SQL layer needs nothing from the
document pipeline; the embedders build a :class:`Fingerprint` and the stores persist it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Fingerprint:
    """What the stored vectors depend on; a change means every vector must be rebuilt."""

    model: str
    dim: int
    query_prefix: str
    document_prefix: str
    chunker: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def to_blob(vector: np.ndarray) -> bytes:
    """float32 little-endian bytes: the format of vec0 and of document_index.embedding_blob."""
    return np.asarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4")


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.where(norms == 0, 1.0, norms)).astype(np.float32)


def mean_vector(vectors: np.ndarray) -> np.ndarray:
    """The normalised mean of a document's chunk vectors."""
    mean: np.ndarray = normalise(np.asarray(vectors, dtype=np.float32).mean(axis=0)[None, :])[0]
    return mean
