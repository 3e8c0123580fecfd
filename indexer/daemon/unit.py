"""``indexer service install|uninstall``: render the user unit and hand it to systemd.

The template (``systemd/indexer.service``) is shipped in the package. Rendering fills in the
real executable, the directories the daemon writes (its database's directory, its runtime
directory and the model cache: everything else is read-only under ``ProtectSystem=strict``) and the environment
that selected them, so the service sees the same database as the shell that installed it.
"""

from __future__ import annotations

import importlib.resources
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from indexer.config import Config
from indexer.errors import IndexerError
from indexer.paths import private_dir, write_private

UNIT_NAME = "indexer.service"
ENV_KEYS = ("INDEXER_HOME", "INDEXER_CONFIG", "INDEXER_DB", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")


def template() -> str:
    return importlib.resources.files("indexer.systemd").joinpath(UNIT_NAME).read_text(encoding="utf-8")


def unit_dir(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "systemd" / "user"


def executable() -> list[str]:
    """How to start this installation's ``indexer``: its console script, else ``python -m``."""
    beside = Path(sys.executable).parent / "indexer"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside.absolute())]
    found = shutil.which("indexer")
    if found:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "indexer"]


def _quote(arg: str) -> str:
    """systemd's ExecStart quoting: double quotes, backslash escapes; % doubled (specifiers)."""
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}"' if any(c in arg for c in " \t\"'\\;$%") else escaped


def render(config: Config, *, roots: Sequence[Path] = (), extra_args: Sequence[str] = (),
           env: dict[str, str] | None = None) -> str:
    env = dict(os.environ) if env is None else env
    args = [*executable(), "daemon", *extra_args]
    for root in roots:
        args += ["--root", str(root)]
    writable = dict.fromkeys([str(config.db.parent), str(config.runtime_dir), str(config.cache_dir)])
    environment = "\n".join(f"Environment={_quote(f'{key}={env[key]}')}" for key in ENV_KEYS if env.get(key))
    text = template()
    text = text.replace("@EXEC_START@", " ".join(_quote(a) for a in args))
    text = text.replace("@READ_WRITE_PATHS@", " ".join(_quote(p) for p in writable))
    return text.replace("@ENVIRONMENT@\n", environment + "\n" if environment else "")


@dataclass(frozen=True)
class InstallResult:
    unit_path: Path
    commands: tuple[tuple[str, ...], ...]
    ran: bool
    output: str


def _systemctl(commands: Sequence[Sequence[str]]) -> tuple[bool, str]:
    """Run ``systemctl --user …`` commands where a user manager answers; (ran, output)."""
    if shutil.which("systemctl") is None:
        return False, "systemctl not found"
    lines = []
    for command in commands:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
        lines.append((proc.stdout + proc.stderr).strip())
        if proc.returncode != 0:
            return False, "\n".join(filter(None, lines)) or f"{' '.join(command)} exited {proc.returncode}"
    return True, "\n".join(filter(None, lines))


def install(config: Config, *, now: bool, roots: Sequence[Path] = (), extra_args: Sequence[str] = (),
            run_systemctl: bool = True) -> InstallResult:
    text = render(config, roots=roots, extra_args=extra_args)
    # ProtectSystem=strict can only grant write access to directories that exist
    for folder in (config.db.parent, config.runtime_dir, config.cache_dir):
        private_dir(folder)
    target = unit_dir() / UNIT_NAME
    target.parent.mkdir(parents=True, exist_ok=True)  # systemd's directory, not ours: the umask's mode
    write_private(target, text)
    commands = [("systemctl", "--user", "daemon-reload"),
                ("systemctl", "--user", "enable", *(["--now"] if now else []), UNIT_NAME)]
    ran, output = _systemctl(commands) if run_systemctl else (False, "")
    return InstallResult(target, tuple(tuple(c) for c in commands), ran, output)


def uninstall(*, run_systemctl: bool = True) -> InstallResult:
    target = unit_dir() / UNIT_NAME
    commands = [("systemctl", "--user", "disable", "--now", UNIT_NAME), ("systemctl", "--user", "daemon-reload")]
    if not target.exists():
        raise IndexerError(f"no unit installed at {target}")
    ran, output = _systemctl(commands[:1]) if run_systemctl else (False, "")
    target.unlink()
    if ran:
        ran, more = _systemctl(commands[1:])
        output = "\n".join(filter(None, [output, more]))
    return InstallResult(target, tuple(tuple(c) for c in commands), ran, output)


def command_line(command: Sequence[str]) -> str:
    return " ".join(shlex.quote(c) for c in command)
