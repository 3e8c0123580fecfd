"""The daemon as a real subprocess: watcher, lifecycle, notify protocol, control socket."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon_harness import DaemonProcess, db_check, db_state, disk_state, wait_until
from indexer.daemon.control import DaemonError

pytestmark = [pytest.mark.process, pytest.mark.timeout(180)]  # every test runs the daemon


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def doc(title: str, body: str) -> str:
    return f"# {title}\n\n{body}\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "notes"
    write(r / "alpha.md", doc("Alpha", "apples and oranges"))
    write(r / "beta.md", doc("Beta", "bicycles and trains"))
    write(r / "deep" / "gamma.md", doc("Gamma", "glaciers and rivers"))
    return r


@pytest.fixture
def daemon(tmp_path: Path, root: Path):
    procs: list[DaemonProcess] = []

    def start(*roots: Path, **kwargs) -> DaemonProcess:
        proc = DaemonProcess(tmp_path / "home", list(roots or (root,)), **kwargs)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.close()


def test_start_reconciles_then_ready_and_stops_cleanly(daemon, root: Path) -> None:
    d = daemon()
    d.ready()
    # READY=1 comes after the first reconcile: every file has its row and content hash. Its
    # chunks are embedded by the loop after READY (a row is `synced` once they are), so the
    # synced state is waited for, not assumed: with the fake model that is milliseconds later,
    # and a test that read the database in between failed under load.
    assert db_state(d.db, None) == disk_state(root), d.log()[-3000:]
    d.settle(root)
    status_lines = [m for m in d.drain() if m.startswith("STATUS=")]
    assert status_lines, d.messages
    assert d.call({"op": "ping"})["pong"] is True
    assert d.stop() == 0
    wait_until(lambda: "STOPPING=1" in d.drain(), 5, what="STOPPING=1")
    assert not d.socket.exists()  # the socket is removed on the way out
    assert db_check(d.db)["integrity_ok"] == 1


def test_watchdog_pings_only_while_running(daemon) -> None:
    d = daemon(watchdog_usec=400_000).ready()
    first = d.wait_message("WATCHDOG=1")
    d.wait_message("WATCHDOG=1", after=first + 1)  # keeps pinging while idle
    d.signal(signal.SIGSTOP)  # a stuck loop sends nothing
    time.sleep(0.3)
    count = len(d.drain())
    time.sleep(0.6)
    assert "WATCHDOG=1" not in d.drain()[count:]
    d.signal(signal.SIGCONT)
    d.wait_message("WATCHDOG=1", after=count)
    assert d.stop() == 0


def test_edits_renames_and_deletes_are_followed(daemon, root: Path) -> None:
    d = daemon().ready()
    d.settle(root)
    # create
    write(root / "delta.md", doc("Delta", "dolphins swimming"))
    wait_until(lambda: d.search_paths("dolphins") == [str(root / "delta.md")], what="created file searchable")
    # edit in place
    write(root / "delta.md", doc("Delta", "dolphins and walruses"))
    wait_until(lambda: d.search_paths("walruses") == [str(root / "delta.md")], what="edit searchable")
    # rename
    os.rename(root / "delta.md", root / "epsilon.md")
    wait_until(lambda: d.search_paths("walruses") == [str(root / "epsilon.md")], what="renamed file")
    # editor save: write a temp file, rename it over the target
    tmp = write(root / ".epsilon.md.tmp123", doc("Delta", "narwhals only now"))
    os.replace(tmp, root / "epsilon.md")
    wait_until(lambda: d.search_paths("narwhals") == [str(root / "epsilon.md")] and not d.search_paths("walruses"),
               what="rename-over save")
    # vim-style: backup by rename, write a new file, delete the backup
    os.rename(root / "alpha.md", root / "alpha.md~")
    write(root / "alpha.md", doc("Alpha", "apricots now"))
    (root / "alpha.md~").unlink()
    wait_until(lambda: d.search_paths("apricots") == [str(root / "alpha.md")], what="backup-rename save")
    # delete + create of the same name
    (root / "beta.md").unlink()
    write(root / "beta.md", doc("Beta", "buses instead"))
    wait_until(lambda: d.search_paths("buses") == [str(root / "beta.md")], what="delete+create")
    # delete
    (root / "epsilon.md").unlink()
    wait_until(lambda: not d.search_paths("narwhals"), what="deleted file gone")
    d.settle(root)
    assert db_check(d.db)["orphan_chunks"] == 0
    assert d.stop() == 0


def test_directory_moves_deletes_and_new_subtrees(daemon, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside / "incoming" / "one.md", doc("One", "kayaks"))
    write(outside / "incoming" / "sub" / "two.md", doc("Two", "canoes"))
    d = daemon().ready()
    d.settle(root)
    shutil.move(str(outside / "incoming"), str(root / "incoming"))  # a subtree moved in
    d.settle(root)
    assert d.search_paths("canoes") == [str(root / "incoming" / "sub" / "two.md")]
    os.rename(root / "incoming", root / "renamed")  # a directory renamed
    d.settle(root)
    assert d.search_paths("kayaks") == [str(root / "renamed" / "one.md")]
    shutil.move(str(root / "renamed"), str(outside / "gone"))  # moved out
    d.settle(root)
    assert not d.search_paths("kayaks")
    for i in range(20):  # a new subtree created file by file (no `closed` events for these)
        write(root / "new" / f"level{i % 3}" / f"n{i}.md", doc(f"N{i}", f"token{i} zebras"))
    d.settle(root)
    assert len(d.search_paths("zebras", k=50)) == 20
    shutil.rmtree(root / "new")  # a subtree deleted
    shutil.rmtree(root / "deep")
    d.settle(root)
    assert set(db_state(d.db)) == {str(root / "alpha.md"), str(root / "beta.md")}
    assert d.stop() == 0


def test_ignored_and_hidden_files_stay_out(daemon, root: Path) -> None:
    write(root / ".gitignore", "drafts/\n")
    d = daemon().ready()
    write(root / "drafts" / "secret.md", doc("Secret", "hidden plans"))
    write(root / ".hidden" / "x.md", doc("X", "hidden plans"))
    write(root / "notes.txt", "hidden plans")
    write(root / "visible.md", doc("Visible", "public plans"))
    wait_until(lambda: d.search_paths("plans") == [str(root / "visible.md")], what="only the visible file")
    assert d.stop() == 0


def test_polling_observer(daemon, root: Path) -> None:
    d = daemon(args=["--poll"], env={"INDEXER_POLL_INTERVAL_S": "1"}).ready()
    assert d.state()["watcher"] == "polling every 1 s"
    write(root / "polled.md", doc("Polled", "periscopes"))
    wait_until(lambda: d.search_paths("periscopes") == [str(root / "polled.md")], timeout=30, what="polled change")
    assert d.stop() == 0


def test_second_instance_is_refused(daemon, root: Path, tmp_path: Path) -> None:
    d = daemon().ready()
    env = {**d.env}
    env.pop("NOTIFY_SOCKET")
    second = subprocess.run([sys.executable, "-m", "indexer", "daemon", "--root", str(root)], env=env,
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert "already running" in second.stderr and str(d.proc.pid) in second.stderr
    assert d.call({"op": "ping"})["pid"] == d.proc.pid  # the first one is untouched
    assert d.stop() == 0


def test_runtime_directory_and_socket_are_private(daemon) -> None:
    d = daemon().ready()
    assert stat.S_IMODE(d.socket.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(d.socket.stat().st_mode) == 0o600
    assert stat.S_ISSOCK(d.socket.stat().st_mode)
    assert d.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another uid")
def test_peer_uid_is_checked(daemon) -> None:
    d = daemon().ready()
    # open the permissions up, so that only the SO_PEERCRED check stands in the way
    os.chmod(d.socket.parent, 0o711)
    os.chmod(d.socket, 0o666)
    # the client keeps a handle on the directory, then becomes `nobody` and connects through it
    script = (
        "import ctypes, os, socket, sys\n"
        "fd = os.open(sys.argv[1], os.O_PATH)\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: /proc/self/fd stays ours\n"
        "s = socket.socket(socket.AF_UNIX); s.connect(f'/proc/self/fd/{fd}/' + sys.argv[2])\n"
        "try:\n"  # the daemon may answer and hang up before the request is sent: the answer is still there
        "    s.sendall(b'{\"op\": \"ping\"}\\n')\n"
        "except BrokenPipeError:\n"
        "    pass\n"
        "print(s.makefile().readline())\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(d.socket.parent), d.socket.name], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["ok"] is False and "permission denied" in answer["error"]
    assert d.stop() == 0


def test_bad_requests_get_errors_and_the_daemon_lives_on(daemon) -> None:
    d = daemon().ready()
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(d.socket))
        reader = s.makefile("rb")
        for raw in (b"not json\n", b"[1, 2]\n", b'{"op": "explode"}\n', b'{"op": "search"}\n',
                    b'{"op": "search", "query": "x", "mode": "fuzzy"}\n', b'{"op": "search", "query": "  "}\n'):
            s.sendall(raw)
            answer = json.loads(reader.readline())
            assert answer["ok"] is False and answer["error"], raw
    with pytest.raises(DaemonError, match="outside the daemon's roots"):
        d.call({"op": "reindex", "paths": ["/etc"]})
    assert d.call({"op": "ping"})["pong"] is True
    assert d.stop() == 0


def test_sighup_rereads_the_config(daemon, root: Path, tmp_path: Path) -> None:
    second = tmp_path / "second"
    write(second / "s.md", doc("S", "saxophones"))
    home = tmp_path / "home"
    write(home / "config.toml", f"roots = [{json.dumps(str(root))}]\n")
    d = DaemonProcess(home, [])
    try:
        d.ready()
        assert not d.search_paths("saxophones")
        write(home / "config.toml", f"roots = [{json.dumps(str(second))}]\ndebounce_ms = 50\n")
        mark = len(d.drain())
        d.signal(signal.SIGHUP)
        reloading = d.wait_message("RELOADING=1", after=mark)
        d.wait_message("READY=1", after=reloading)
        assert d.search_paths("saxophones") == [str(second / "s.md")]
        assert not d.search_paths("apples")  # the removed root's documents are forgotten
        assert d.state()["roots"] == [str(second)]
        write(home / "config.toml", "roots = 'not a list of paths\n")  # a broken config is refused
        mark = len(d.drain())
        d.signal(signal.SIGHUP)
        d.wait_message("READY=1", after=mark)
        assert d.state()["roots"] == [str(second)]
        assert "reload refused" in d.log()
        assert d.stop() == 0
    finally:
        d.close()


def test_sigterm_during_embedding_exits_cleanly_and_consistently(daemon, root: Path) -> None:
    for i in range(60):
        write(root / "bulk" / f"b{i:03}.md", "\n\n".join(f"## Part {j}\n\n" + f"word{i}x{j} " * 150 for j in range(4)))
    d = daemon(model="hash:64:20").ready()  # 20 ms per chunk: embedding takes several seconds
    wait_until(lambda: d.state()["state"] == "embedding", what="embedding under way")
    started = time.monotonic()
    assert d.stop(timeout=20) == 0
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"stop took {elapsed:.1f} s"
    check = db_check(d.db)
    assert check["integrity_ok"] == 1
    assert {k: v for k, v in check.items() if k not in ("integrity_ok", "fts_rows", "chunks")} == {
        "orphan_chunks": 0, "orphan_vectors": 0, "embedded_without_vector": 0, "synced_with_unembedded": 0}
    assert check["fts_rows"] == check["chunks"]
    assert db_state(d.db) != disk_state(root)  # it really was interrupted...
    again = daemon(model="hash:64:1").ready()  # ...and a restart finishes the job
    again.settle(root, timeout=60)
    assert again.stop() == 0


def test_cli_search_status_and_reindex_go_through_the_daemon(daemon, root: Path) -> None:
    d = daemon().ready()
    d.settle(root)
    env = {k: v for k, v in d.env.items() if k != "NOTIFY_SOCKET"}
    run = lambda *a: subprocess.run([sys.executable, "-m", "indexer", *a], env=env, capture_output=True,  # noqa: E731
                                    text=True, timeout=60)
    found = run("search", "glaciers", "--json")
    assert found.returncode == 0, found.stderr
    answer = json.loads(found.stdout)
    assert answer["served_by"]["daemon_pid"] == d.proc.pid
    assert answer["results"][0]["path"] == str(root / "deep" / "gamma.md")
    status = json.loads(run("status", "--json").stdout)
    assert status["daemon"]["pid"] == d.proc.pid and status["documents"]["synced"] == 3
    assert "daemon: pid" in run("status").stdout
    write(root / "late.md", doc("Late", "lanterns"))
    again = run("reindex", "--json")
    assert again.returncode == 0, again.stderr
    assert "reindexed by the running daemon" in again.stderr
    assert d.search_paths("lanterns") == [str(root / "late.md")]  # done when reindex returns
    direct = run("search", "glaciers", "--json", "--direct")
    assert "served_by" not in json.loads(direct.stdout)
    assert d.stop() == 0
    status = run("status")
    assert "daemon: not running" in status.stdout


def test_worker_priority_is_lowered_for_the_worker_thread_only(daemon) -> None:
    d = daemon().ready()
    nice = {}
    for task in Path(f"/proc/{d.proc.pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        nice[int(task.name)] = int(fields[16])
    inherited = os.getpriority(os.PRIO_PROCESS, 0)  # the daemon starts at the test run's niceness
    assert nice[d.proc.pid] == max(inherited, 10)  # the worker (main) thread
    # the control socket's thread serves searches at the priority the daemon was started with
    assert inherited in [value for tid, value in nice.items() if tid != d.proc.pid]
    assert d.stop() == 0


def test_failed_files_are_reported_and_the_daemon_keeps_running(daemon, root: Path) -> None:
    d = daemon().ready()
    (root / "bad.md").write_bytes(b"\xff\xfe not utf-8")
    write(root / "good.md", doc("Good", "gooseberries"))
    wait_until(lambda: d.search_paths("gooseberries") == [str(root / "good.md")], what="good file")
    failed = wait_until(lambda: d.call({"op": "status"})["failed"], what="failure recorded")
    assert failed[0]["path"] == str(root / "bad.md") and "UTF-8" in failed[0]["reason"]
    write(root / "bad.md", doc("Bad", "fixed now bananas"))
    wait_until(lambda: d.search_paths("bananas") == [str(root / "bad.md")], what="fixed file indexed")
    assert d.stop() == 0


def test_periodic_safety_reconcile_repairs_what_no_event_announced(daemon, root: Path) -> None:
    d = daemon(env={"INDEXER_RECONCILE_INTERVAL_S": "1"}).ready()
    d.settle(root)
    from indexer.storage.sqlite import driver

    conn = driver.connect(d.db)  # a change no filesystem event reports: a row lost behind the daemon's back
    conn.execute("DELETE FROM document_index WHERE file_path = ?", (str(root / "beta.md"),))
    conn.close()
    assert str(root / "beta.md") not in db_state(d.db)
    d.settle(root, timeout=15)  # the next periodic reconcile (every second here) puts it back
    assert "periodic safety reconcile" in d.state()["last_reconcile"]["reasons"]
    assert d.stop() == 0


def test_a_daemon_that_does_not_answer_is_worked_around(daemon, root: Path) -> None:
    d = daemon().ready()
    d.settle(root)
    env = {k: v for k, v in d.env.items() if k != "NOTIFY_SOCKET"}
    d.signal(signal.SIGSTOP)  # accepts connections (the kernel does), answers nothing
    try:
        out = subprocess.run([sys.executable, "-m", "indexer", "status", "--json"], env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "did not answer" in out.stderr
        info = json.loads(out.stdout)
        assert info["documents"]["synced"] == 3 and info["daemon"]["pid"] == d.proc.pid
    finally:
        d.signal(signal.SIGCONT)
    assert d.stop() == 0
