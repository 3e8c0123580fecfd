"""Fault injection: what the daemon survives. Real processes, real files, real kill -9.

The figures these tests print (run with -s) are quoted in docs/daemon.md,
"What the daemon survives" (and, briefly, in the README).
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest

from conftest import copy_sample
from daemon_harness import DaemonProcess, db_check, db_state, disk_state, run_until_settled, wait_until
from indexer.storage.sqlite import driver

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.process, pytest.mark.timeout(600)]  # real processes throughout


def fts_ok(db: Path) -> bool:
    conn = driver.connect(db)
    try:
        conn.execute("INSERT INTO chunk_fts(chunk_fts, rank) VALUES ('integrity-check', 0)")
        return True
    except driver.Error:
        return False
    finally:
        conn.close()


def consistent(db: Path) -> dict[str, int]:
    check = db_check(db)
    assert check["integrity_ok"] == 1, check
    assert check["orphan_chunks"] == check["orphan_vectors"] == 0, check
    assert check["embedded_without_vector"] == check["synced_with_unembedded"] == 0, check
    assert check["fts_rows"] == check["chunks"], check
    assert fts_ok(db)
    return check


def index_content(db: Path) -> tuple[dict[str, str], set[tuple[str, int, str]]]:
    conn = driver.connect(db, readonly=True)
    try:
        docs = {r[0]: r[1] for r in conn.execute("SELECT file_path, content_hash FROM document_index")}
        chunks = {(r[0], r[1], r[2]) for r in conn.execute(
            "SELECT d.file_path, c.chunk_index, c.chunk_hash "
            "FROM document_chunks c JOIN document_index d ON d.id = c.document_id")}
        return docs, chunks
    finally:
        conn.close()


def cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "indexer", *args], env=env, capture_output=True, text=True, timeout=timeout)


# -- crashes -------------------------------------------------------------------------------

@pytest.mark.slow
def test_kill_9_at_random_moments_never_corrupts_and_converges(tmp_path: Path) -> None:
    root = tmp_path / "notes"
    copy_sample(root, tldr=250, rfcs=20)
    home = tmp_path / "home"
    seed = int(os.environ.get("RELIABILITY_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    phases = []
    for round_no in range(6):
        d = DaemonProcess(home, [root], model="hash:64:10")  # 10 ms a chunk: embedding takes seconds
        try:
            moment = rng.uniform(0.3, 6.0)
            deadline = time.monotonic() + moment
            phase = "starting"
            while time.monotonic() < deadline:
                try:
                    phase = d.state()["state"]
                except Exception:
                    pass
                time.sleep(0.05)
            d.proc.kill()  # SIGKILL: no handler, no cleanup
            d.proc.wait(30)
            phases.append((round(moment, 2), phase))
        finally:
            d.close()
        if (home / "indexer.db").exists():  # killed before it created the database: nothing to check
            consistent(home / "indexer.db")
        # the disk moves on while the daemon is down
        victim = sorted(root.glob("*.md"))[round_no * 7]
        victim.write_text(victim.read_text() + f"\n- edited while down {round_no}\n")
        sorted(root.glob("*.md"))[round_no * 7 + 1].unlink()
    print(f"\nkill -9 seed {seed}: (seconds after start, state) {phases}")
    run_until_settled(home, root, "hash:64:10")
    check = consistent(home / "indexer.db")
    # the result equals a one-shot full reindex into a fresh database
    other = tmp_path / "fresh.db"
    env = {**os.environ, "INDEXER_HOME": str(tmp_path / "home2"), "INDEXER_MODEL": "hash:64"}
    out = cli(env, "--db", str(other), "reindex", "--full", "--root", str(root), "--json")
    assert out.returncode == 0, out.stderr
    assert index_content(home / "indexer.db") == index_content(other)
    print(f"after quiescence: {len(db_state(home / 'indexer.db'))} documents, {check['chunks']} chunks, "
          "identical to reindex --full")


# -- checkout storm ------------------------------------------------------------------------

@pytest.mark.slow
def test_checkout_storm_of_2000_changes_converges_exactly(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    for i in range(1500):
        path = root / f"dir{i % 30}" / f"page{i}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Page {i}\n\nbranch main text {i}\n")
    d = DaemonProcess(tmp_path / "home", [root], model="hash:64")
    try:
        d.ready(120)
        d.settle(root, timeout=120)
        started = time.monotonic()
        for i in range(500):  # removed
            (root / f"dir{i % 30}" / f"page{i}.md").unlink()
        for i in range(500, 1000):  # replaced, as git does: a new file renamed over the old one
            target = root / f"dir{i % 30}" / f"page{i}.md"
            tmp = target.with_name(f".page{i}.md.lock")
            tmp.write_text(f"# Page {i}\n\nbranch feature text {i}\n")
            os.replace(tmp, target)
        for i in range(1500, 2500):  # added, some in new directories
            path = root / f"new{i % 40}" / f"page{i}.md"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"# Page {i}\n\nbranch feature new {i}\n")
        storm_s = time.monotonic() - started
        d.settle(root, timeout=180)
        settle_s = time.monotonic() - started
        assert d.stop() == 0
    finally:
        d.close()
    consistent(tmp_path / "home" / "indexer.db")
    assert db_state(tmp_path / "home" / "indexer.db") == disk_state(root)
    print(f"\ncheckout storm: 2,000 changes written in {storm_s:.2f} s; index == disk {settle_s:.1f} s after the first")


# -- bad files -----------------------------------------------------------------------------

def test_bad_files_end_in_defined_states_and_the_daemon_keeps_running(tmp_path: Path) -> None:
    root = tmp_path / "notes"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\n\nclassified outside material\n")
    (root / "ok.md").write_text("# OK\n\nbaseline document\n")
    d = DaemonProcess(tmp_path / "home", [root], model="hash:64", env={"INDEXER_MAX_FILE_BYTES": "4000"})
    try:
        d.ready()
        files = {
            "utf8.md": b"# x\n\n\xff\xfe\xfd broken",
            "nul.md": b"# x\n\nnul \x00 inside",
            "binary.md": bytes(range(256)) * 4,
            "empty.md": b"",
            "big.md": b"# Big\n\n" + b"word " * 2000,
            "with space.md": b"# Spaced\n\nspaced name works\n",
            "new\nline.md": b"# Newline\n\nnewline name works\n",
            "ünïcødé 日本.md": b"# Unicode\n\nunicode name works\n",
        }
        for name, data in files.items():
            (root / name).write_bytes(data)
        os.symlink(outside / "secret.md", root / "link-out.md")      # a file link leaving the root
        os.symlink(outside, root / "dir-out")                         # a directory link leaving it
        (root / "loop").mkdir()
        os.symlink(root / "loop", root / "loop" / "again")            # a symlink loop
        unreadable = root / "locked.md"
        unreadable.write_text("# Locked\n\nno access\n")
        unreadable.chmod(0)
        for i in range(30):  # files that vanish between the event and the read
            flash = root / f"flash{i}.md"
            flash.write_text("# Flash\n\ngone soon\n")
            flash.unlink()

        expected_failed = {"utf8.md": "not valid UTF-8", "nul.md": "binary content", "binary.md": "binary content",
                           "big.md": "over the limit"}
        if os.geteuid() != 0:  # root reads any file: permission denied cannot happen to it
            expected_failed["locked.md"] = "permission denied"

        def states() -> dict[str, tuple[str, str | None]]:
            conn = driver.connect(d.db, readonly=True)
            try:
                return {Path(r[0]).name: (r[1], r[2]) for r in conn.execute(
                    "SELECT file_path, sync_status, json_extract(metadata, '$.last_error') FROM document_index")}
            finally:
                conn.close()

        def settled() -> bool:
            s = states()
            return (all(s.get(n, ("", ""))[0] == "failed" for n in expected_failed)
                    and all(s.get(n, ("", ""))[0] == "synced" for n in ("empty.md", "with space.md", "new\nline.md",
                                                                       "ünïcødé 日本.md", "ok.md"))
                    and d.idle())
        wait_until(settled, 30, what="every bad file in a defined state")
        final = states()
        for name, reason in expected_failed.items():
            assert reason in (final[name][1] or ""), (name, final[name])
        assert not any(n.startswith("flash") for n in final)
        assert "secret.md" not in final and "link-out.md" not in final
        assert all(str(outside) not in p for p in db_state(d.db, None))  # nothing outside the root
        assert not any("again" in p for p in db_state(d.db, None))
        for word, name in (("spaced", "with space.md"), ("newline", "new\nline.md"), ("unicode", "ünïcødé 日本.md")):
            assert [Path(p).name for p in d.search_paths(word)] == [name]
        status = d.call({"op": "status"})
        assert {Path(f["path"]).name for f in status["failed"]} == set(expected_failed)
        assert d.call({"op": "ping"})["pong"]
        # a failed file that gets fixed is indexed at once
        (root / "utf8.md").write_text("# Fixed\n\nrepaired text\n")
        wait_until(lambda: [Path(p).name for p in d.search_paths("repaired")] == ["utf8.md"], what="fixed file")
        assert d.stop() == 0
    finally:
        unreadable.chmod(0o644)
        d.close()
    consistent(tmp_path / "home" / "indexer.db")


# -- concurrency ---------------------------------------------------------------------------

WRITER = r"""
import asyncio, json, sys, time
from indexer import Database, MemoryService, SessionService
from indexer.errors import ConflictError, NotFoundError
async def main(db, kind, seconds):
    database = Database(db)
    await database.initialize()
    count = 0
    try:
        if kind == "memory":
            memories = MemoryService(database)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                key = f"k{count % 50}"
                try:
                    await memories.update_memory("user:bench", key, {"n": count})
                except NotFoundError:
                    try:
                        await memories.create_memory("user:bench", key, {"n": count}, "semantic")
                    except ConflictError:  # the other writer created it first
                        await memories.update_memory("user:bench", key, {"n": count})
                count += 1
        else:
            sessions = SessionService(database)
            s = await sessions.create_session("app", "user")
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                await sessions.append_event(s["id"] if isinstance(s, dict) else s.id, {"type": "tick", "n": count})
                count += 1
    finally:
        await database.close()
    print(json.dumps({"kind": kind, "ops": count}))
asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"""


@pytest.mark.slow
def test_readers_and_writers_never_see_database_locked_while_the_daemon_indexes(tmp_path: Path) -> None:
    root = tmp_path / "notes"
    copy_sample(root, tldr=250, rfcs=20)
    home = tmp_path / "home"
    d = DaemonProcess(home, [root], model="hash:64:15")  # ~10 s of embedding: writes overlap it
    seconds = 8.0
    try:
        d.ready(120)
        assert d.state()["chunks_to_embed"] > 0  # the daemon is writing throughout
        env = {**d.env, "PYTHONPATH": str(REPO)}
        env.pop("NOTIFY_SOCKET")
        writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(d.db), kind, str(seconds)], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for kind in ("memory", "memory", "session")]
        readers = 0
        end = time.monotonic() + seconds
        errors = []
        while time.monotonic() < end:
            for args in (("search", "archive files"), ("search", "--direct", "--mode", "keyword", "archive"),
                         ("status", "--direct"), ("status",)):
                out = cli(env, *args)
                readers += 1
                if out.returncode != 0 or "locked" in out.stderr.lower():
                    errors.append((args, out.returncode, out.stderr))
        results = []
        for w in writers:
            out, err = w.communicate(timeout=120)
            assert w.returncode == 0 and "locked" not in err.lower(), err
            results.append(json.loads(out.strip().splitlines()[-1]))
        assert not errors, errors
        progress = d.state()
        assert d.stop() == 0
    finally:
        d.close()
    consistent(home / "indexer.db")
    print(f"\nconcurrency: {readers} CLI reads and {sum(r['ops'] for r in results)} memory/session writes "
          f"({', '.join(str(r['kind']) + ' ' + str(r['ops']) for r in results)}) in {seconds:.0f} s during indexing "
          f"(state then: {progress['state']}), no error")


# -- bad storage ---------------------------------------------------------------------------

def _memory_rows(db: Path) -> int:
    conn = driver.connect(db, readonly=True)
    try:
        return int(conn.execute("SELECT count(*) FROM memory_entries").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.parametrize("kind", ["corrupt", "foreign", "newer", "text"])
def test_a_bad_file_at_the_database_path_is_refused_untouched(tmp_path: Path, kind: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    db = home / "indexer.db"
    env = {**os.environ, "INDEXER_HOME": str(home), "INDEXER_MODEL": "hash:16"}
    env.pop("NOTIFY_SOCKET", None)
    if kind == "corrupt":
        assert cli(env, "memory", "add", "user:a", "k", '"v"').returncode == 0
        data = bytearray(db.read_bytes())
        data[100:4096] = os.urandom(4096 - 100)  # the header survives, the schema page does not
        db.write_bytes(bytes(data))
        for side in (Path(f"{db}-wal"), Path(f"{db}-shm")):
            side.unlink(missing_ok=True)
    elif kind == "foreign":
        conn = driver.connect(db, load_vec=False)
        conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
        conn.close()
    elif kind == "newer":
        assert cli(env, "migrate").returncode == 0
        conn = driver.connect(db)
        conn.execute("INSERT INTO schema_migrations (name, checksum, applied_at) VALUES ('9999_future', 'x', 'now')")
        conn.close()
    else:
        db.write_text("these are my notes, not a database\n" * 100)
    before = db.read_bytes()
    root = tmp_path / "notes"
    root.mkdir()
    (root / "a.md").write_text("# A\n\ntext\n")
    expected = {"corrupt": "malformed|not a database|not a usable", "foreign": "another application",
                "newer": "newer indexer", "text": "not a database|not a usable|cannot open"}[kind]
    for args in (("daemon", "--root", str(root)), ("reindex", "--root", str(root)), ("memory", "get", "user:a", "k"),
                 ("search", "--mode", "keyword", "text"), ("migrate",)):
        out = cli(env, *args, timeout=60)
        assert out.returncode != 0, (args, out.stdout)
        assert "Traceback" not in out.stderr, (args, out.stderr)
        assert re.search(expected, out.stderr, re.I), (args, out.stderr)
    assert db.read_bytes() == before  # nothing was written to it


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextmanager
def tmpfs_home(tmp_path: Path, size: str, model: str):
    """A small tmpfs holding INDEXER_HOME (skips where mounting is not allowed)."""
    mount = tmp_path / "mnt"
    if not _mount_tmpfs(mount, size):
        pytest.skip("cannot mount a tmpfs here (needs CAP_SYS_ADMIN): test skipped")
    try:
        home = mount / "home"
        home.mkdir()
        env = {**os.environ, "INDEXER_HOME": str(home), "INDEXER_MODEL": model}
        env.pop("NOTIFY_SOCKET", None)
        yield mount, home, env
    finally:
        _umount(mount)


def assert_backed_off(log: str) -> None:
    """Consecutive "...; retrying in N s" lines of the log are at least N s apart (the log's
    timestamps have whole seconds: 1 s of slack)."""
    retries = [(datetime.fromisoformat(m[1]), int(m[2]))
               for m in re.finditer(r"^(\S+) ERROR: .*; retrying in (\d+) s$", log, re.M)]
    assert len(retries) >= 2, log[-3000:]
    for (at, delay), (then, _) in zip(retries, retries[1:]):
        assert (then - at).total_seconds() >= delay - 1, f"retried {then - at} after 'retrying in {delay} s'"


@pytest.mark.slow
def test_a_full_disk_loses_no_memory_rows_and_the_index_recovers(tmp_path: Path) -> None:
    with tmpfs_home(tmp_path, "3m", "hash:384") as (mount, home, env):
        for i in range(20):
            assert cli(env, "memory", "add", f"user:u{i}", "pref", json.dumps({"i": i})).returncode == 0
        root = tmp_path / "notes"
        copy_sample(root, tldr=270, rfcs=22)  # far more than 3 MB of index
        d = DaemonProcess(home, [root], model="hash:384")
        try:
            d.ready(120)
            wait_until(lambda: "database or disk is full" in d.log(), 120, what="the disk fills up")
            assert d.proc.poll() is None  # the daemon lives on, backing off:
            # each retry waits the delay its line announced (before the fix, "retrying in 5 s" was
            # followed by the next attempt a second later: the wait returned on a byte in the pipe)
            time.sleep(8)
            assert_backed_off(d.log())
            assert d.call({"op": "status"})["daemon"]["worker_errors"] >= 1
            out = cli(env, "memory", "get", "user:u7", "pref", "--json")
            assert out.returncode == 0 and json.loads(out.stdout)["value"] == {"i": 7}
            # make room: the daemon recovers on its own and finishes
            assert subprocess.run(["mount", "-o", "remount,size=200m", str(mount)], capture_output=True).returncode == 0
            d.settle(root, timeout=300)
            assert d.stop() == 0
        finally:
            d.close()
        consistent(home / "indexer.db")
        assert _memory_rows(home / "indexer.db") == 20


@pytest.mark.slow
def test_a_read_only_data_directory_gives_a_clear_error_and_keeps_rows(tmp_path: Path) -> None:
    with tmpfs_home(tmp_path, "20m", "hash:16") as (mount, home, env):
        assert cli(env, "memory", "add", "user:a", "k", '"kept"').returncode == 0
        assert subprocess.run(["mount", "-o", "remount,ro", str(mount)], capture_output=True).returncode == 0
        root = tmp_path / "notes"
        root.mkdir()
        (root / "a.md").write_text("# A\n\ntext\n")
        for args in (("daemon", "--root", str(root)), ("reindex", "--root", str(root)), ("memory", "add", "user:a", "k2", "1")):
            out = cli(env, *args, timeout=60)
            assert out.returncode != 0 and "Traceback" not in out.stderr, (args, out.stderr)
            assert re.search("read-only|readonly|unable to open", out.stderr, re.I), (args, out.stderr)
            if args[0] != "daemon":  # (the daemon stops earlier, at its lock file: "Read-only file system")
                assert "is not writable" in out.stderr and str(home) in out.stderr, (args, out.stderr)
        assert subprocess.run(["mount", "-o", "remount,rw", str(mount)], capture_output=True).returncode == 0
        out = cli(env, "memory", "get", "user:a", "k", "--json")
        assert out.returncode == 0 and json.loads(out.stdout)["value"] == "kept"


# -- rebuild and backup --------------------------------------------------------------------

def test_document_tables_can_always_be_rebuilt_with_reindex_full(tmp_path: Path) -> None:
    root = tmp_path / "notes"
    copy_sample(root, tldr=40, rfcs=2)
    env = {**os.environ, "INDEXER_HOME": str(tmp_path / "home"), "INDEXER_MODEL": "hash:64"}
    env.pop("NOTIFY_SOCKET", None)
    assert cli(env, "memory", "add", "user:a", "k", '"precious"').returncode == 0
    assert cli(env, "reindex", "--root", str(root)).returncode == 0
    db = tmp_path / "home" / "indexer.db"
    wanted = index_content(db)
    conn = driver.connect(db)  # wreck the derived tables
    conn.execute("DELETE FROM document_chunks WHERE id % 3 = 0")
    conn.execute("UPDATE document_index SET content_hash = 'garbage', sync_status = 'synced' WHERE id % 2 = 0")
    conn.execute("DROP TABLE chunk_vectors")
    conn.close()
    out = cli(env, "reindex", "--full", "--root", str(root), "--json")
    assert out.returncode == 0, out.stderr
    assert index_content(db) == wanted
    consistent(db)
    assert json.loads(cli(env, "memory", "get", "user:a", "k", "--json").stdout)["value"] == "precious"


@pytest.mark.slow
def test_online_backup_while_the_daemon_indexes_and_restore(tmp_path: Path) -> None:
    root = tmp_path / "notes"
    copy_sample(root, tldr=250, rfcs=20)
    home = tmp_path / "home"
    d = DaemonProcess(home, [root], model="hash:64:2")
    env = {**d.env}
    env.pop("NOTIFY_SOCKET")
    try:
        d.ready(120)
        assert cli(env, "memory", "add", "user:a", "k", '"before backup"').returncode == 0
        assert d.state()["chunks_to_embed"] > 0
        copies = []
        for i in range(3):  # while the daemon writes
            out = cli(env, "backup", str(tmp_path / f"copy{i}.db"), "--json")
            assert out.returncode == 0, out.stderr
            copies.append(json.loads(out.stdout))
            time.sleep(0.3)
        for c in copies:
            consistent(Path(c["target"]))  # each copy is a consistent snapshot
        assert cli(env, "backup", str(tmp_path / "copy0.db")).returncode == 1  # never overwritten silently
        d.settle(root, timeout=240)
        refused = cli(env, "restore", str(tmp_path / "copy0.db"))
        assert refused.returncode == 1 and "stop it first" in refused.stderr
        assert cli(env, "memory", "add", "user:a", "k2", '"after backup"').returncode == 0
        assert d.stop() == 0
    finally:
        d.close()
    out = cli(env, "restore", str(tmp_path / "copy2.db"))
    assert out.returncode == 0, out.stderr
    assert json.loads(cli(env, "memory", "get", "user:a", "k", "--json").stdout)["value"] == "before backup"
    assert cli(env, "memory", "get", "user:a", "k2").returncode == 1  # written after the backup
    assert Path(f"{home / 'indexer.db'}.before-restore").is_file()
    run_until_settled(home, root, "hash:64:2")  # a restored database catches up with the disk
    consistent(home / "indexer.db")


def test_permission_denied_is_a_readable_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon test above cannot see it when run as root (root reads any file): the same
    code path, with the read refused."""
    from indexer.documents.sync import FileProblem, read_markdown

    path = tmp_path / "locked.md"
    path.write_text("# Locked\n")
    if os.geteuid() != 0:
        path.chmod(0)
    else:
        def refuse(self: Path) -> bytes:
            raise PermissionError(13, "Permission denied", str(self))
        monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(FileProblem, match="permission denied"):
        read_markdown(path, 1 << 20)
