"""Issue 19 item 1 end to end: hostile notes beside 20 good ones, through ``indexer reindex
--root`` as a user runs it and through the daemon. Every good note is synced, every hostile
one synced or failed with a one-line reason, no traceback, and the daemon stays quiet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import EXAMPLES_SCALE
from daemon_harness import DaemonProcess, wait_until
from indexer.storage.sqlite import driver
from test_hostile_notes import hostile_note

pytestmark = [pytest.mark.process, pytest.mark.timeout(300)]

LAUGHS = ("---\nl0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
          + "".join(f"l{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)) + "---\n# Laughs\n")
HOSTILE: dict[str, bytes] = {
    "recursive.md": b"---\na: &x [*x]\n---\n# Recursive\n\nbody\n",
    "laughs.md": LAUGHS.encode(),
    "deep.md": ("---\na: " + "[" * 3000 + "]" * 3000 + "\n---\n# Deep\n").encode(),
    "tag.md": b"---\nx: !!python/object/apply:os.system [touch /tmp/pwned]\n---\n# Tag\n",
    "inf.md": b"---\nx: .inf\nn: 0x" + b"f" * 3000 + b"\n---\n# Inf\n",
    "headings.md": b"# h\n" * 20000,
    "fences.md": b"    ```\n" * 8000,
    "nul.md": b"# Nul\n\x00\n",
    "latin1.md": "# Caf\u00e9\n".encode("latin-1"),
    "mixed.md": b"# Mixed\r\n\rtext\r\n```\r\nunclosed\n",
}
# a note that needs no good text to sync must still be in one of the two states
EXPECTED_FAILED = {"nul.md": "binary content (NUL byte at offset 6)", "latin1.md": "not valid UTF-8 (byte offset 5)"}


def notes(root: Path) -> None:
    root.mkdir(parents=True)
    for i in range(20):
        (root / f"good{i:02d}.md").write_text(f"# Good {i}\n\nA good note about topic{i}.\n", encoding="utf-8")
    for name, data in HOSTILE.items():
        (root / name).write_bytes(data)


def rows(db: Path) -> dict[str, tuple[str, dict]]:
    conn = driver.connect(db, readonly=True)
    try:
        return {Path(r[0]).name: (r[1], json.loads(r[2])) for r in
                conn.execute("SELECT file_path, sync_status, metadata FROM document_index")}
    finally:
        conn.close()


def check(got: dict[str, tuple[str, dict]]) -> None:
    assert set(got) == {f"good{i:02d}.md" for i in range(20)} | set(HOSTILE), sorted(got)
    for name, (status, metadata) in got.items():
        if name.startswith("good"):
            assert status == "synced", (name, status, metadata)
        elif name in EXPECTED_FAILED:
            assert status == "failed" and metadata["last_error"] == EXPECTED_FAILED[name]
        else:
            assert status == "synced", (name, status, metadata)
    assert got["recursive.md"][1]["front_matter_error"].startswith("front matter has a recursive alias *x")
    assert "expands to more than" in got["laughs.md"][1]["front_matter_error"]
    assert "nests deeper than 32 levels" in got["deep.md"][1]["front_matter_error"]
    assert "python/object/apply:os.system" in got["tag.md"][1]["front_matter_error"]
    assert got["inf.md"][1]["front_matter"]["x"] == "inf"


def test_reindex_indexes_the_good_notes_beside_hostile_ones(tmp_path: Path) -> None:
    """Before: a RecursionError traceback, and none of the 20 good notes indexed."""
    root = tmp_path / "notes"
    notes(root)
    env = {**os.environ, "INDEXER_HOME": str(tmp_path / "home"), "INDEXER_MODEL": "hash:64"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "indexer", "reindex", "--root", str(root)], env=env,
                          capture_output=True, text=True, timeout=240)
    assert time.monotonic() - started < 120
    assert "Traceback" not in done.stderr, done.stderr
    assert "28 added" in done.stdout and "2 failed" in done.stdout, (done.stdout, done.stderr)
    check(rows(tmp_path / "home" / "indexer.db"))
    again = subprocess.run([sys.executable, "-m", "indexer", "reindex", "--root", str(root)], env=env,
                           capture_output=True, text=True, timeout=240)
    assert "Traceback" not in again.stderr and "30 unchanged" in again.stdout, (again.stdout, again.stderr)


def test_the_daemon_indexes_the_good_notes_and_stays_quiet(tmp_path: Path) -> None:
    """Before: the daemon indexed nothing and logged a traceback three times a second."""
    root = tmp_path / "notes"
    notes(root)
    d = DaemonProcess(tmp_path / "home", [root])
    try:
        d.ready(120)
        wait_until(lambda: d.idle() and len(rows(d.db)) == 30
                   and all(s in ("synced", "failed") for s, _ in rows(d.db).values()),
                   90, interval=0.2, what="every note synced or failed")
        check(rows(d.db))
        size = len(d.log())
        (root / "good00.md").write_text("# Good 0\n\nedited while hostile notes sit beside it\n", encoding="utf-8")
        wait_until(lambda: any(p.endswith("good00.md") for p in d.search_paths("edited")), 30, what="the edit indexed")
        time.sleep(2)
        log = d.log()
        assert "Traceback" not in log, log[-3000:]
        assert len(log) - size < 4000, log[size:][-3000:]  # no retry loop filling the log
        assert d.proc.poll() is None
    finally:
        assert d.stop() == 0
        d.close()


@settings(max_examples=3 * EXAMPLES_SCALE, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(hostile=st.lists(hostile_note(), min_size=4, max_size=8))
def test_fuzz_reindex_as_a_process_beside_good_notes(hostile: list[bytes]) -> None:
    """Fuzzed notes, each with a good note beside it, through ``indexer reindex --root``."""
    import tempfile

    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        root = Path(tmp) / "notes"
        root.mkdir()
        for i, data in enumerate(hostile):
            (root / f"hostile{i}.md").write_bytes(data)
            (root / f"good{i}.md").write_text(f"# Good {i}\n\nbeside hostile note {i}\n", encoding="utf-8")
        env = {**os.environ, "INDEXER_HOME": str(Path(tmp) / "home"), "INDEXER_MODEL": "hash:64"}
        done = subprocess.run([sys.executable, "-m", "indexer", "reindex", "--root", str(root)], env=env,
                              capture_output=True, text=True, timeout=240)
        assert done.returncode == 0 and "Traceback" not in done.stderr, (done.stdout, done.stderr)
        got = rows(Path(tmp) / "home" / "indexer.db")
        assert len(got) == 2 * len(hostile)
        for name, (status, metadata) in got.items():
            assert status == "synced" if name.startswith("good") else status in ("synced", "failed"), (name, status)
            assert status == "synced" or "\n" not in metadata["last_error"]
