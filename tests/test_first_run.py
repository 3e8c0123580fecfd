"""The first run, as the README tells a new user to do it: the roots a `reindex --root`
indexed are remembered, `backup DIR/` means a directory, a wrong --db fails before the model
is touched, the exported model is shared by every database, and the errors a first user
meets say what to type."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from daemon_harness import DaemonProcess
from indexer.config import load_config
from indexer.documents.embedding import embedder_for

pytestmark = pytest.mark.process


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    root = tmp_path / "notes"
    (root / "tools").mkdir(parents=True)
    (root / "today.md").write_text("# Today\n\nPack the release files into an archive.\n")
    (root / "tools" / "tar.md").write_text("# tar\n\n> Archiving utility.\n")
    return root.resolve()


def indexer(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INDEXER_MODEL": "hash:64", **(env or {})}
    return subprocess.run([sys.executable, "-m", "indexer", *args], env=env, capture_output=True, text=True, timeout=120)


def test_a_plain_reindex_after_reindex_root_syncs_the_roots_indexed_before(notes: Path, tmp_path: Path) -> None:
    """No config file, as in the README: `reindex --root ~/notes`, later `indexer reindex`."""
    first = indexer("reindex", "--root", str(notes), "--json")
    assert first.returncode == 0, first.stderr
    other = tmp_path / "work"
    other.mkdir()
    (other / "plan.md").write_text("# Plan\n")
    assert indexer("reindex", str(other)).returncode == 0  # a directory outside every root: a root too
    (notes / "new.md").write_text("# New\n\nwords about zeppelins\n")
    (other / "more.md").write_text("# More\n")
    again = indexer("reindex", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["added"] == 2
    found = json.loads(indexer("search", "--mode", "keyword", "zeppelins", "--json").stdout)["results"]
    assert [Path(h["path"]) for h in found] == [notes / "new.md"]
    # a remembered root that is gone is passed over (its documents kept), not an error
    gone = tmp_path / "gone"
    gone.mkdir()
    assert indexer("reindex", "--root", str(gone)).returncode == 0
    gone.rmdir()
    (notes / "newer.md").write_text("# Newer\n")
    without = indexer("reindex", "--json")
    assert without.returncode == 0 and json.loads(without.stdout)["added"] == 1, without.stderr
    # a configured root replaces the remembered ones
    config = tmp_path / "config.toml"
    config.write_text(f'roots = ["{other}"]\n')
    (notes / "ignored.md").write_text("# Ignored\n")
    configured = indexer("--config", str(config), "reindex", "--json")
    assert json.loads(configured.stdout)["scanned"] == 2
    # a database that never indexed anything still says what to do
    fresh = indexer("--db", str(tmp_path / "fresh.db"), "reindex")
    assert fresh.returncode != 0 and "no roots to index" in fresh.stderr


def test_the_daemon_without_roots_watches_the_remembered_ones(notes: Path, tmp_path: Path) -> None:
    home = Path(os.environ["INDEXER_HOME"])
    assert indexer("reindex", "--root", str(notes)).returncode == 0
    d = DaemonProcess(home, [])
    try:
        d.ready(120)
        assert d.state()["roots"] == [str(notes)]
        (notes / "later.md").write_text("# Later\n\nairships and balloons\n")
        d.settle(notes)
        found = json.loads(indexer("search", "--mode", "keyword", "airships", "--json").stdout)["results"]
        assert [Path(h["path"]).name for h in found] == ["later.md"]
        assert d.stop() == 0
    finally:
        d.close()


def test_service_install_print_warns_without_roots_as_install_does(notes: Path, tmp_path: Path) -> None:
    printed = indexer("service", "install", "--print")
    assert printed.returncode == 0 and "ExecStart=" in printed.stdout
    assert "warning: no roots configured" in printed.stderr and "--root" in printed.stderr
    assert indexer("reindex", "--root", str(notes)).returncode == 0
    remembered = indexer("service", "install", "--print")
    assert "warning" not in remembered.stderr and f"the roots indexed before: {notes}" in remembered.stderr
    given = indexer("service", "install", "--print", "--root", str(notes))
    assert given.returncode == 0 and given.stderr == ""


def test_backup_to_a_path_with_a_trailing_slash_or_a_directory_makes_files_inside(tmp_path: Path) -> None:
    assert indexer("memory", "add", "user:a:p", "k", '"v"').returncode == 0
    target = tmp_path / "backups"
    names = []
    for _ in range(3):  # the same second: free names, never a refusal
        out = indexer("backup", f"{target}/", "--json")
        assert out.returncode == 0, out.stderr
        names.append(Path(json.loads(out.stdout)["target"]))
    assert target.is_dir() and stat.S_IMODE(target.stat().st_mode) == 0o700
    assert len(set(names)) == 3 and all(n.parent == target and n.is_file() for n in names)
    existing = indexer("backup", str(target), "--json")  # an existing directory, no slash
    assert Path(json.loads(existing.stdout)["target"]).parent == target
    plain = tmp_path / "one.db"  # no slash, nothing there: a file
    assert indexer("backup", str(plain)).returncode == 0 and plain.is_file()
    refused = indexer("backup", f"{plain}/")
    assert refused.returncode == 1 and "is a file, not a directory" in refused.stderr
    assert plain.is_file() and len(list(target.iterdir())) == 4


def test_a_foreign_db_is_refused_before_the_model_is_touched(notes: Path, tmp_path: Path) -> None:
    """A model that cannot load stands in for the 87 MB export: the error must be the
    database's, and nothing is exported anywhere."""
    foreign = tmp_path / "notes.txt"
    foreign.write_text("not a database at all, just text " * 50)
    before = foreign.read_bytes()
    out = indexer("--db", str(foreign), "reindex", "--root", str(notes),
                  env={"INDEXER_MODEL": str(tmp_path / "no-such-model"), "INDEXER_BACKEND": "onnx"})
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "database" in out.stderr and "model" not in out.stderr, out.stderr
    assert foreign.read_bytes() == before
    assert not (tmp_path / "models").exists() and not list(Path(os.environ["INDEXER_HOME"]).rglob("models"))


def test_the_exported_model_lives_in_the_user_cache_shared_by_every_database(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    one = embedder_for(load_config({"db": str(tmp_path / "a" / "one.db"), "backend": "onnx"}, env=env))
    two = embedder_for(load_config({"db": str(tmp_path / "b" / "two.db"), "backend": "onnx"}, env=env))
    assert one.cache_dir == two.cache_dir == tmp_path / "cache" / "indexer" / "models"
    relocated = embedder_for(load_config({"backend": "onnx"}, env={"INDEXER_HOME": str(tmp_path / "ih")}))
    assert relocated.cache_dir == tmp_path / "ih" / "cache" / "models"


def test_a_bare_word_as_a_memory_value_gets_a_quoting_hint() -> None:
    out = indexer("memory", "add", "user:alice:prefs", "theme", "dark")
    assert out.returncode != 0
    assert "VALUE is not valid JSON" in out.stderr and "'\"dark\"'" in out.stderr, out.stderr
    broken = indexer("memory", "add", "user:alice:prefs", "theme", '{"a": ')  # broken JSON: no string advice
    assert broken.returncode != 0 and "quote it" not in broken.stderr


def test_the_package_metadata_builds_without_licence_warnings(tmp_path: Path) -> None:
    """What `make install` builds: setuptools warned three times that the TOML-table licence
    is deprecated. The SPDX string and license-files give its licence without a warning."""
    from conftest import REPO_ROOT

    code = "import sys; from setuptools import build_meta; print(build_meta.prepare_metadata_for_build_wheel(sys.argv[1]))"
    out = subprocess.run([sys.executable, "-W", "always", "-c", code, str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    warnings = [line for line in (out.stdout + out.stderr).splitlines()
                if "warning" in line.lower() or "deprecat" in line.lower()]
    assert not [w for w in warnings if "licen" in w.lower()], warnings
    metadata = (tmp_path / out.stdout.strip().splitlines()[-1] / "METADATA").read_text()
    assert "License-Expression: MIT" in metadata and "License-File: LICENSE" in metadata
