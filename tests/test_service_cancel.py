"""Cancelling a DocumentIndexService call: its work goes on in a worker thread on the shared
connection, so the service's lock is kept until that thread is done; only then is the
cancellation raised, and the next call never runs beside it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from indexer.config import load_config
from indexer.documents.service import DocumentIndexService
from indexer.storage.sqlite import driver
from indexer.testing import HashEmbedder, WhitespaceTokenCounter


class Watched(HashEmbedder):
    """A slow embedder that counts how many threads use it at once."""

    def __init__(self) -> None:
        super().__init__(dim=16, name="hash:16", delay_s=0.01)
        self.active = 0
        self.most = 0
        self.started = threading.Event()
        self._count = threading.Lock()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        with self._count:
            self.active += 1
            self.most = max(self.most, self.active)
        self.started.set()
        try:
            return super().embed_documents(texts)
        finally:
            with self._count:
                self.active -= 1


async def test_a_cancelled_call_holds_the_service_until_its_thread_is_done(tmp_path: Path) -> None:
    root = tmp_path / "notes"
    root.mkdir()
    for i in range(40):
        parts = "\n\n".join(f"## Part {k}\n\nnote {i} part {k} words" for k in range(4))
        (root / f"n{i}.md").write_text(f"# Note {i}\n\n{parts}")
    config = load_config({"db": str(tmp_path / "index.db"), "roots": [str(root)], "model": "hash:16", "chunk_tokens": 60})
    embedder = Watched()
    service = DocumentIndexService(config, embedder=embedder, counter=WhitespaceTokenCounter())
    try:
        task = asyncio.create_task(service.sync())
        await asyncio.to_thread(embedder.started.wait, 10)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        assert embedder.active == 0  # the cancellation was raised once the thread had finished
        report = await service.sync()  # the next call: alone on the connection
        assert report.failed == 0
        assert embedder.most == 1
    finally:
        await service.close()
    conn = driver.connect(tmp_path / "index.db")
    try:
        assert conn.execute("SELECT count(*) FROM document_chunks WHERE embedded_at IS NULL").fetchone()[0] == 0
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
