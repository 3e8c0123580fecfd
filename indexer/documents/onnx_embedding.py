"""The ONNX backends: the same sentence-transformers model run by onnxruntime, without torch.

Why: torch is most of the daemon's memory (~700 MB resident) and of every cold start (~5 s
to import, ~8 s to the first vector). onnxruntime with the tokenizer's own ``tokenizer.json``
starts in about half a second and never imports torch.

* ``onnx``: the model exported in float32. Its vectors are torch's (cosine > 0.9999), so it
  shares torch's fingerprint: switching between the two re-embeds nothing.
* ``onnx-int8``: the export with its weights quantised to int8 (per channel): ~1.3x faster to
  embed, but its vectors differ (cosine ~0.99 to torch's) and it ranks a little worse, so its
  name, and the stored fingerprint, say ``+onnx-int8``: switching re-embeds everything.

The model is exported once per user and machine from the sentence-transformers directory, in a
child process (torch and transformers, ~10 s, never enter the embedding process), into the
user's cache (``$XDG_CACHE_HOME/indexer/models/<key>/``, or ``$INDEXER_HOME/cache/models/``),
written under a temporary name and renamed into place, so concurrent processes never see half
a file; every database of the user shares it. Texts are run longest first in small batches (little
padding, small buffers). Supported: BERT-
style models with mean pooling (the default model is one); anything else is a clear error
that points back to ``backend = "torch"``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import IndexerError
from indexer.paths import PRIVATE_FILE, private_dir

ONNX_FILES = {"onnx": "model_fp32.onnx", "onnx-int8": "model_qint8.onnx"}
MAX_RUN_BATCH = 8  # texts per onnxruntime call: larger batches pad more and hold ~1 GB of buffers
EXPORT_VERSION = "1"  # bump when the export recipe changes: a new key, a new export
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
FALLBACK = 'to run the model with torch instead, set backend = "torch" in the config (or INDEXER_BACKEND=torch)'


def model_key(model_dir: Path) -> str:
    """Names an export: the model's config files, its weights' sizes and times, the recipe's version."""
    digest = hashlib.sha256(EXPORT_VERSION.encode())
    for name in ("config.json", "modules.json", "tokenizer.json", "1_Pooling/config.json"):
        path = model_dir / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"-"))
    for weights in sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("pytorch_model*.bin")):
        stat = weights.stat()  # size and mtime: weights retrained in place get a new export
        digest.update(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return f"{model_dir.name}-{digest.hexdigest()[:16]}"


def check_supported(model_dir: Path) -> None:
    """Transformer, mean pooling and (optionally) normalisation, nothing else; or an IndexerError."""
    pooling = model_dir / "1_Pooling" / "config.json"
    if not (model_dir / "tokenizer.json").is_file() or not pooling.is_file():
        raise IndexerError(f"backend 'onnx' needs a sentence-transformers directory with tokenizer.json and "
                           f"1_Pooling/config.json ({model_dir} lacks them); {FALLBACK}")
    modules = model_dir / "modules.json"
    kinds = [m.get("type", "") for m in json.loads(modules.read_text(encoding="utf-8"))] if modules.is_file() else []
    extra = [k for k in kinds if k.rsplit(".", 1)[-1] not in ("Transformer", "Pooling", "Normalize")]
    if extra:  # e.g. a Dense projection after pooling: not in the exported graph
        raise IndexerError(f"backend 'onnx' supports Transformer + Pooling (+ Normalize) models only; {model_dir} "
                           f"also has {', '.join(extra)}; {FALLBACK}")
    config = json.loads(pooling.read_text(encoding="utf-8"))
    if not config.get("pooling_mode_mean_tokens") or any(
            config.get(k) for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_lasttoken")):
        raise IndexerError(f"backend 'onnx' supports mean-pooling models only ({model_dir}); {FALLBACK}")


def export(model_dir: Path, folder: Path, backend: str) -> Path:
    """The model file of ``backend`` in ``folder``, exported (float32) and, for ``onnx-int8``,
    quantised first if missing. Written under temporary names and renamed into place."""
    target = folder / ONNX_FILES[backend]
    if target.is_file():
        return target
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import logging
    import warnings

    private_dir(folder)
    fp32 = folder / ONNX_FILES["onnx"]
    partial = folder / f".{target.name}.{os.getpid()}.partial"
    try:
        logging.disable(logging.WARNING)  # the quantiser's advice, on the root logger
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if not fp32.is_file():
                _export_fp32(model_dir, partial)
                os.chmod(partial, PRIVATE_FILE)
                os.replace(partial, fp32)
            if backend == "onnx-int8":
                from onnxruntime.quantization import QuantType, quantize_dynamic

                quantize_dynamic(str(fp32), str(partial), weight_type=QuantType.QInt8, per_channel=True)
                os.chmod(partial, PRIVATE_FILE)
                os.replace(partial, target)
    except IndexerError:
        raise
    except Exception as exc:
        raise IndexerError(f"cannot export {model_dir} to ONNX: {exc}") from exc
    finally:
        logging.disable(logging.NOTSET)
        partial.unlink(missing_ok=True)
    return target


def announce(message: str) -> None:
    """A one-time event the user should see: to the log where one is set up (the daemon),
    else on stderr (the command line, where nothing else is printed for it)."""
    import logging
    import sys

    if logging.getLogger().handlers:
        logging.getLogger(__name__).info(message)
    else:
        print(f"indexer: {message}", file=sys.stderr, flush=True)


def ensure_exported(model_dir: Path, folder: Path, backend: str) -> Path:
    """The model file of ``backend``, exported first if missing, in a child process: torch
    (~500 MB once imported) never enters the process that will embed. One export at a time
    per folder (a lock file): the daemon's two embedders, or two processes, wait for the
    first rather than export twice. The export is announced (it takes ~10 s, once); a failed
    one is an :class:`IndexerError` that says how to fall back to torch."""
    target = folder / ONNX_FILES[backend]
    if target.is_file():
        return target
    import fcntl
    import subprocess
    import sys
    import time

    private_dir(folder)
    with open(os.open(folder / ".export.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():  # exported while we waited
            return target
        for stale in folder.glob(".*.partial"):  # left by an export that was killed; we hold the lock
            stale.unlink(missing_ok=True)
        announce(f"backend {backend!r}: exporting the model to ONNX into {folder}, once (about 10 s)")
        started = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, "-m", "indexer.documents.onnx_embedding", str(model_dir), str(folder),
                                   backend], capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            raise IndexerError(f"exporting {model_dir} to ONNX took over 15 minutes; {FALLBACK}") from None
        if done.returncode != 0 or not target.is_file():
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            reason = lines[-1].removeprefix("error: ") if lines else f"cannot export {model_dir} to ONNX"
            raise IndexerError(f"{reason}; {FALLBACK}")
        announce(f"exported {target.name} in {time.perf_counter() - started:.1f} s")
    return target


def _export_fp32(model_dir: Path, target: Path) -> None:
    """torch.onnx.export of the transformer (hidden states; pooling is done in numpy)."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()

    class Hidden(torch.nn.Module):  # keyword arguments: transformers' positional order changes
        def __init__(self, base: Any) -> None:
            super().__init__()
            self.base = base

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.base(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    model = Hidden(AutoModel.from_pretrained(str(model_dir)).eval())
    ids = torch.ones(2, 16, dtype=torch.long)
    dynamic = {name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "last_hidden_state")}
    with torch.no_grad():
        torch.onnx.export(model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(target),
                          input_names=list(_INPUTS), output_names=["last_hidden_state"],
                          dynamic_axes=dynamic, opset_version=17, dynamo=False)


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the token vectors under the attention mask, L2-normalised (pure)."""
    weights = mask[..., None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    vectors = summed / np.maximum(weights.sum(axis=1), 1e-9)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (vectors / norms).astype(np.float32)


_SESSIONS: dict[tuple[str, int], Any] = {}
_SESSIONS_LOCK = threading.Lock()


class OnnxModel:
    """A tokenizer of its own and the process's onnxruntime session for the file (the daemon
    keeps one instance for queries and one for documents; they share the weights)."""

    def __init__(self, model_dir: Path, onnx_path: Path, *, max_seq_length: int, threads: int) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        with _SESSIONS_LOCK:  # one session per file and thread count: Run is thread-safe, the weights shared
            key = (str(onnx_path), threads)
            if key not in _SESSIONS:
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.log_severity_level = 3
                _SESSIONS[key] = onnxruntime.InferenceSession(str(onnx_path), options,
                                                              providers=["CPUExecutionProvider"])
            self.session = _SESSIONS[key]
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_seq_length)
        self.tokenizer.no_padding()
        self.dim = int(json.loads((model_dir / "config.json").read_text(encoding="utf-8"))["hidden_size"])
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Vectors of ``texts``, in order. Texts are run longest first in batches of at most
        :data:`MAX_RUN_BATCH`, so each batch pads little."""
        out = np.zeros((len(texts), self.dim), np.float32)
        batch_size = max(1, min(batch_size, MAX_RUN_BATCH))
        with self._lock:
            encodings_all = self.tokenizer.encode_batch(list(texts))
            order = sorted(range(len(texts)), key=lambda i: -len(encodings_all[i].ids))
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                encodings = [encodings_all[i] for i in rows]
                width = max(len(e.ids) for e in encodings)
                ids = np.zeros((len(encodings), width), np.int64)
                mask = np.zeros_like(ids)
                types = np.zeros_like(ids)
                for row, e in enumerate(encodings):
                    ids[row, :len(e.ids)] = e.ids
                    mask[row, :len(e.ids)] = 1
                    types[row, :len(e.ids)] = e.type_ids
                hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
                out[rows] = mean_pool(hidden, mask)
        return out


def main(argv: Sequence[str]) -> int:
    """``python -m indexer.documents.onnx_embedding MODEL_DIR FOLDER BACKEND``: the export, on its own."""
    os.umask(os.umask(0o077) | 0o077)  # whatever torch and onnx write on the way is private too
    try:
        export(Path(argv[0]), Path(argv[1]), argv[2])
    except (IndexerError, IndexError, KeyError) as exc:
        print(f"error: {exc}", file=__import__("sys").stderr)
        return 1
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
