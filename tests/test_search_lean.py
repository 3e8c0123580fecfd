"""The lean ``indexer search`` (cli/search_lean.py): a daemon-answered search imports no click,
numpy or SQLite binding, answers exactly as the full command does, and hands everything it
does not know to the full command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon_harness import DaemonProcess
from indexer.cli.search_lean import parse


def test_plain_searches_are_parsed_and_the_rest_left_to_click() -> None:
    got = parse(["--db", "/x.db", "search", "tar", "-k", "3", "archive", "--mode=keyword", "--json"])
    assert got is not None
    assert (got["text"], got["k"], got["mode"], got["as_json"], got["db"]) == ("tar archive", 3, "keyword", True, "/x.db")
    assert parse(["search", "-k5", "--type", "design", "--since", "7d", "--path", "/n", "x"])["k"] == 5
    assert parse(["search", "--", "-k", "x"])["text"] == "-k x"
    for argv in (["search", "--help"], ["search", "--direct", "x"], ["search", "-k", "0", "x"], ["search", "-k", "many", "x"],
                 ["search", "--mode", "fuzzy", "x"], ["search"], ["search", "  "], ["--verbose", "search", "x"],
                 ["memory", "add", "user:a", "search", '"v"'], ["search", "x", "--bogus"], ["search", "x", "-k"]):
        assert parse(argv) is None, argv


@pytest.mark.process
@pytest.mark.timeout(180)
def test_a_daemon_answered_search_is_lean_and_answers_as_the_full_command(tmp_path: Path) -> None:
    root = tmp_path / "notes"
    root.mkdir()
    for name, text in {"tar.md": "# tar\n\nArchive files: `tar cf a.tar b`\n",
                       "ssh.md": "# ssh\n\nRemote login over a secure shell\n"}.items():
        (root / name).write_text(text)
    daemon = DaemonProcess(tmp_path / "home", [root])
    try:
        daemon.ready(120)
        daemon.settle(root)
        env = {**daemon.env}
        env.pop("NOTIFY_SOCKET")

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-X", "importtime", "-m", "indexer", *args], env=env,
                                  capture_output=True, text=True, timeout=120)

        lean = run("search", "archive", "files", "-k", "2", "--explain")
        assert lean.returncode == 0, lean.stderr
        imported = {line.split("|")[-1].strip() for line in lean.stderr.splitlines() if line.startswith("import time:")}
        heavy = {m for m in imported if m.split(".")[0] in ("click", "numpy", "sqlean", "sqlite3", "sqlite_vec", "pydantic")}
        assert not heavy, sorted(heavy)
        assert "indexer.cli.app" not in imported
        full = run("search", "archive", "files", "-k", "2", "--explain", "--unknown-to-lean")
        assert full.returncode == 2 and "No such option" in full.stderr  # click's answer, as before
        via_click = subprocess.run([sys.executable, "-c", "from indexer.cli.app import main; main()", "search", "archive",
                                    "files", "-k", "2", "--explain"], env=env, capture_output=True, text=True, timeout=120)
        assert via_click.returncode == 0, via_click.stderr
        assert lean.stdout == via_click.stdout and "tar.md" in lean.stdout and "explain: " in lean.stdout
        bad = run("search", "--since", "someday", "x")
        assert bad.returncode == 1 and bad.stderr.splitlines()[-1].startswith("error: --since 'someday'")
    finally:
        daemon.stop()
        daemon.close()
    assert os.path.exists(daemon.db)


@pytest.mark.parametrize("case", ["home", "home+db env", "home+db flag", "xdg", "xdg+db flag ~", "config file",
                                  "config env", "empty db"])
def test_the_lean_daemon_address_agrees_with_the_config(case: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from indexer.config import load_config
    from indexer.paths import daemon_locations

    for key in [k for k in os.environ if k.startswith("INDEXER_") or k.startswith("XDG_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.chdir(tmp_path)
    flag = None
    if case.startswith("home"):
        monkeypatch.setenv("INDEXER_HOME", str(tmp_path / "home"))
    else:
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg-run"))
    if "db env" in case:
        monkeypatch.setenv("INDEXER_DB", "rel/env.db")
    if "db flag" in case:
        flag = "~/flag.db" if "~" in case else "flag.db"
    if case == "empty db":
        flag = ""
    if case == "config file":
        monkeypatch.setenv("INDEXER_HOME", str(tmp_path / "home"))
        (tmp_path / "home").mkdir()
        (tmp_path / "home" / "config.toml").write_text(f'db = "{tmp_path / "moved.db"}"\n')
    if case == "config env":
        (tmp_path / "c.toml").write_text("")
        monkeypatch.setenv("INDEXER_CONFIG", str(tmp_path / "c.toml"))
    quick = daemon_locations(flag, None)
    if case in ("config file", "config env", "empty db"):
        assert quick is None  # the full config decides (and reports a bad value)
        return
    config = load_config({"db": flag} if flag else {})
    assert quick == (config.db.resolve(), config.runtime_dir)
