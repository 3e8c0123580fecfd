"""``indexer migrate`` as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from indexer.cli import cli
from indexer.storage.sqlite import migrations
from legacy_fixtures import build_legacy


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_migrate_new_then_up_to_date(db_path: Path) -> None:
    code, out = run("--db", str(db_path), "migrate", "--dry-run")
    assert code == 0 and "new database; would apply" in out and "0001_initial" in out and not db_path.exists()
    code, out = run("--db", str(db_path), "migrate")
    assert code == 0 and "applied" in out and "0001_initial" in out
    code, out = run("--db", str(db_path), "migrate")
    assert code == 0 and "up to date, nothing pending" in out


def test_migrate_legacy_prints_backup_rows_and_orphans(db_path: Path) -> None:
    counts = build_legacy(db_path)
    code, out = run("--db", str(db_path), "migrate", "--dry-run")
    assert code == 0 and "legacy database" in out and "backup" in out
    code, out = run("--db", str(db_path), "migrate")
    assert code == 0, out
    assert "backup written:" in out and f"tasks {counts['tasks']}" in out
    assert "warning: rows that already broke a foreign key" in out and "agents 1" in out
    backup = Path(out.split("backup written: ")[1].split()[0])
    assert backup.exists()


def test_migrate_json_and_env_db(db_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("INDEXER_DB", str(db_path))
    code, out = run("migrate", "--json")
    report = json.loads(out)
    assert code == 0 and report["path"] == str(db_path) and report["applied"] == [m.name for m in migrations.load_migrations()]


def test_migrate_refusals_exit_1_with_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 64)
    code, out = run("--db", str(junk), "migrate")
    assert code == 1 and out.startswith("error: ") and len(out.strip().splitlines()) == 1


def test_bad_config_exits_2_naming_the_key(isolated_home: Path) -> None:
    (isolated_home / "config.toml").write_text("debounce_ms = 'x'\n")
    code, out = run("migrate")
    assert code == 2 and "debounce_ms" in out and "config.toml" in out
