"""Config precedence (flag > env > file > default), XDG/INDEXER_HOME paths, bad values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from indexer.config import Config, load_config
from indexer.errors import ConfigError
from indexer.paths import state_paths


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_live_under_indexer_home(isolated_home: Path) -> None:
    cfg = load_config()
    assert cfg.db == isolated_home / "indexer.db"
    assert cfg.config_file == isolated_home / "config.toml"
    assert cfg.runtime_dir == isolated_home / "run"
    assert cfg.include == ("*.md", "*.markdown")
    assert cfg.debounce_ms == 500


def test_xdg_paths_without_indexer_home(tmp_path: Path) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "conf"),
           "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    import platformdirs  # reads os.environ; check the shape instead of the exact base
    paths = state_paths(env)
    assert paths.runtime_dir == tmp_path / "run" / "indexer"
    assert paths.default_db.name == "indexer.db"
    assert paths.default_db.parent.name == "indexer"
    assert platformdirs.user_data_dir("indexer") == str(paths.data_dir)


def test_precedence_flag_over_env_over_file(isolated_home: Path, tmp_path: Path) -> None:
    write(isolated_home / "config.toml", 'debounce_ms = 100\nmodel = "file-model"\nchunk_tokens = 120\n')
    env = {"INDEXER_HOME": str(isolated_home), "INDEXER_DEBOUNCE_MS": "200", "INDEXER_MODEL": "env-model"}
    cfg = load_config({"debounce_ms": 300}, env=env)
    assert cfg.debounce_ms == 300  # flag
    assert cfg.model == "env-model"  # env over file
    assert cfg.chunk_tokens == 120  # file over default
    assert cfg.embed_threads == Config.__dataclass_fields__["embed_threads"].default
    assert cfg.sources["debounce_ms"] == "option --debounce-ms"
    assert cfg.sources["model"] == "environment variable INDEXER_MODEL"
    assert cfg.sources["chunk_tokens"] == str(isolated_home / "config.toml")


def test_db_from_env_and_flag(isolated_home: Path, tmp_path: Path) -> None:
    env = {"INDEXER_HOME": str(isolated_home), "INDEXER_DB": str(tmp_path / "env.db")}
    assert load_config(env=env).db == tmp_path / "env.db"
    assert load_config({"db": str(tmp_path / "flag.db")}, env=env).db == tmp_path / "flag.db"


def test_roots_from_file_and_flags(isolated_home: Path, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write(isolated_home / "config.toml", f'roots = ["{tmp_path / "a"}"]\n')
    assert load_config().roots == ((tmp_path / "a").resolve(),)
    cfg = load_config({"roots": [str(tmp_path / "b")]})
    assert cfg.roots == ((tmp_path / "b").resolve(),)


@pytest.mark.parametrize(
    "text, key",
    [
        ("debounce_ms = -1\n", "debounce_ms"),
        ('debounce_ms = "soon"\n', "debounce_ms"),
        ("roots = 5\n", "roots"),
        ("log_level = \"loud\"\n", "log_level"),
        ("chunk_tokens = true\n", "chunk_tokens"),
        ("no_such_key = 1\n", "no_such_key"),
    ],
)
def test_bad_value_names_key_and_file(isolated_home: Path, text: str, key: str) -> None:
    cfg_file = write(isolated_home / "config.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config()
    assert key in str(info.value)
    assert str(cfg_file) in str(info.value)


def test_bad_env_value_names_variable(isolated_home: Path) -> None:
    with pytest.raises(ConfigError, match="INDEXER_EMBED_THREADS"):
        load_config(env={"INDEXER_HOME": str(isolated_home), "INDEXER_EMBED_THREADS": "0"})


def test_invalid_toml_is_a_config_error(isolated_home: Path) -> None:
    write(isolated_home / "config.toml", "roots = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config()


def test_explicit_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(config_file=tmp_path / "nope.toml")


def test_config_is_frozen(isolated_home: Path) -> None:
    cfg = load_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.debounce_ms = 1  # type: ignore[misc]
