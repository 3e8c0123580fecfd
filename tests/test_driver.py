"""The connection factory: PRAGMAs, sqlite-vec and FK enforcement on every connection."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from indexer.storage.sqlite import driver, migrations


def test_binding_can_load_extensions() -> None:
    conn = driver.connect(":memory:")
    try:
        assert hasattr(conn, "enable_load_extension")
        assert driver.vec_version(conn).startswith("v")
    finally:
        conn.close()


def test_every_new_connection_has_the_pragmas_and_vec(db_path: Path) -> None:
    migrations.migrate(db_path)
    for _ in range(2):  # a second, independent connection to the same file
        conn = driver.connect(db_path)
        try:
            assert driver.read_pragmas(conn) == driver.EXPECTED_PRAGMAS
            assert conn.execute("SELECT vec_length(vec_f32('[1,2,3]'))").fetchone()[0] == 3
        finally:
            conn.close()


def test_foreign_keys_enforced_on_a_second_file_connection(db_path: Path) -> None:
    migrations.migrate(db_path)
    conn = driver.connect(db_path)
    try:
        with pytest.raises(driver.IntegrityError, match="FOREIGN KEY"):
            conn.execute(
                "INSERT INTO tasks (id, prompt, status, input_data, submitted_at, last_updated_at, session_id) "
                "VALUES ('t1', 'p', 'pending', '{}', 'x', 'x', 'no-such-session')"
            )
    finally:
        conn.close()


def test_async_connection_gets_the_same_setup(db_path: Path) -> None:
    migrations.migrate(db_path)

    async def probe() -> tuple[dict, str]:
        async with driver.connect_async(db_path) as conn:
            pragmas = {}
            for name in driver.EXPECTED_PRAGMAS:
                async with conn.execute(f"PRAGMA {name}") as cur:
                    pragmas[name] = (await cur.fetchone())[0]
            async with conn.execute("SELECT vec_version()") as cur:
                version = (await cur.fetchone())[0]
        return pragmas, version

    pragmas, version = asyncio.run(probe())
    assert pragmas == driver.EXPECTED_PRAGMAS
    assert version.startswith("v")


def test_readonly_connection_cannot_write(db_path: Path) -> None:
    migrations.migrate(db_path)
    conn = driver.connect(db_path, readonly=True)
    try:
        with pytest.raises(driver.OperationalError, match="readonly"):
            conn.execute("INSERT INTO metrics (timestamp, metric_name, metric_value) VALUES ('t', 'm', 1)")
    finally:
        conn.close()


def test_one_set_of_exception_types() -> None:
    assert issubclass(driver.IntegrityError, driver.Error)
    assert issubclass(driver.OperationalError, driver.Error)
    assert driver.Error.__module__.split(".")[0] == driver.BINDING_NAME.split(".")[0]


def test_location_hint_names_a_directory_sqlite_cannot_write_in(tmp_path: Path) -> None:
    assert driver.location_hint(tmp_path / "ok.db") == ""
    assert driver.location_hint(":memory:") == ""
    assert "does not exist" in driver.location_hint(tmp_path / "missing" / "x.db")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root writes anywhere: only a read-only mount stops it
            pytest.skip("running as root: covered by the read-only tmpfs test of test_reliability")
        hint = driver.location_hint(locked / "x.db")
        assert "not writable" in hint and str(locked) in hint
    finally:
        locked.chmod(0o700)
