"""Edits made while the daemon embeds a long backlog are reconciled within about one (short,
time-bounded) embedding round, not after a batch or the whole backlog."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from daemon_harness import DaemonProcess, db_state, wait_until
from indexer.documents.sync import round_size
from indexer.storage.sqlite import driver

SLOW_MODEL = "hash:64:100"  # 100 ms per chunk: a fixed round of 32 chunks would take 3.2 s


def test_round_size_follows_the_pace_of_the_last_round() -> None:
    assert round_size(0.25, 0.5, 10, 32) == 5         # 50 ms a chunk: 5 fit in 250 ms
    assert round_size(0.25, 4.0, 4, 32) == 1          # a model load in the first round: never 0
    assert round_size(0.25, 0.001, 100, 32) == 32     # a fast model: capped by the fetch size
    assert round_size(0.25, 0.0, 3, 32) == 32         # an unmeasurably fast round


@pytest.mark.process
@pytest.mark.timeout(180)
def test_an_edit_during_a_backlog_is_searchable_within_a_round(tmp_path: Path) -> None:
    root = tmp_path / "notes"
    root.mkdir()
    for i in range(150):
        body = "\n\n".join(f"## Part {p}\n\n" + " ".join(f"word{i}x{p}x{w}" for w in range(120)) for p in range(2))
        (root / f"page{i:03}.md").write_text(f"# Page {i}\n\n{body}\n", encoding="utf-8")
    d = DaemonProcess(tmp_path / "home", [root], model=SLOW_MODEL, debounce_ms=100)
    try:
        d.ready(120)
        backlog = d.state()["chunks_to_embed"]
        assert backlog >= 200, backlog  # >= 20 s of embedding ahead
        keyword_s = []
        for i in range(4):
            target = root / f"page{i * 37:03}.md"
            word = f"zqxsaved{i}"
            text = target.read_text(encoding="utf-8") + f"\nA line saved during the backlog: {word}\n"
            target.write_text(text, encoding="utf-8")
            started = time.monotonic()
            wait_until(lambda: d.search_paths(word) == [str(target)], 30, interval=0.02, what=f"{word} searchable")
            keyword_s.append(time.monotonic() - started)
            # debounce 0.1 s + one round of ~0.25 s + the reconcile; a fixed round of 32 chunks is 3.2 s
            assert keyword_s[-1] < 1.5, f"edit {i} waited {keyword_s[-1]:.2f} s for the embedding under way"
            # semantically searchable in the next round: its chunks go first, long before the backlog ends
            digest = hashlib.sha256(text.encode()).hexdigest()
            wait_until(lambda: db_state(d.db).get(str(target)) == digest, 10, interval=0.05,
                       what=f"{target.name} embedded")
            left = d.state()["chunks_to_embed"]
            assert left > 100, f"the edit waited for the backlog ({left} chunks left)"
        print(f"edit -> keyword-searchable during a backlog: {[round(s, 2) for s in keyword_s]} s")
        assert d.stop() == 0
    finally:
        d.close()


def rows_so_far(db: Path) -> dict[str, str]:
    try:
        return db_state(db, None)
    except driver.OperationalError:  # the daemon is still creating the schema
        return {}


@pytest.mark.process
@pytest.mark.timeout(240)
def test_an_edit_during_a_long_first_reconcile_is_searchable_before_it_ends(tmp_path: Path) -> None:
    """The start-up reconcile of a large tree yields to a save between its write batches, then
    goes on: READY=1 still comes only once everything is reconciled."""
    root = tmp_path / "notes"
    for d in range(8):
        (root / f"dir{d}").mkdir(parents=True)
        for i in range(500):
            (root / f"dir{d}" / f"note{i:03}.md").write_text(
                f"# Note {d}-{i}\n\nSome text about item {i} of directory {d}.\n\n## More\n\nA second section.\n",
                encoding="utf-8")
    d = DaemonProcess(tmp_path / "home", [root], model="hash:64", debounce_ms=100)
    try:
        indexed = wait_until(lambda: sorted(rows_so_far(d.db)), 120, interval=0.02, what="a first write batch")
        assert not any(m.startswith("READY=1") for m in d.drain()), "the reconcile ended before the test could edit"
        target = Path(indexed[0])
        target.write_text(target.read_text(encoding="utf-8") + "\nsaved during the first index: zqxfirstindex\n",
                          encoding="utf-8")
        started = time.monotonic()
        wait_until(lambda: d.search_paths("zqxfirstindex") == [str(target)], 60, interval=0.02, what="the edit")
        took = time.monotonic() - started
        still_reconciling = not any(m.startswith("READY=1") for m in d.drain())
        print(f"edit -> keyword-searchable during the first reconcile: {took:.2f} s "
              f"({len(db_state(d.db, None))} of 4000 documents indexed then)")
        assert still_reconciling, f"the edit waited for the whole first reconcile ({took:.2f} s)"
        assert took < 1.5
        d.ready(120)
        d.settle(root, timeout=120)  # and the reconcile went on to the end: index == disk
        assert d.stop() == 0
    finally:
        d.close()
