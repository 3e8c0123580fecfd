"""The command group, its global options, and the one place errors become exit codes."""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from indexer import __version__
from indexer.config import Config, load_config
from indexer.errors import IndexerError

# Sub-command modules, each registering its commands on `cli`; imported only when one of
# its commands runs (or for --help), so `indexer search` through the daemon stays light.
COMMAND_MODULES = {
    "migrate": "indexer.cli.db_cmds", "doctor": "indexer.cli.db_cmds",
    "backup": "indexer.cli.db_cmds", "restore": "indexer.cli.db_cmds",
    "reindex": "indexer.cli.doc_cmds", "status": "indexer.cli.doc_cmds",
    "search": "indexer.cli.search_cmds",
    "memory": "indexer.cli.memory_cmds", "session": "indexer.cli.session_cmds",
    "daemon": "indexer.cli.daemon_cmds", "service": "indexer.cli.daemon_cmds",
    "mcp": "indexer.cli.mcp_cmds",
    "task": "indexer.cli.task_cmds", "agent": "indexer.cli.task_cmds",
}


@dataclass
class AppContext:
    db: str | None = None
    config_file: str | None = None
    agent_db: str | None = None
    _cache: dict[Any, Config] = field(default_factory=dict)

    def config(self, *, agent: bool = False, **flags: Any) -> Config:
        """The effective config: these flags, then --db/--agent-db, env, the file, defaults.

        Commands of the document index (the default) refuse a postgresql:// --db in one
        sentence; ``agent=True`` is for commands that use the agent store (or say which)."""
        merged = dict(flags)
        if self.db:
            merged["db"] = self.db
        if self.agent_db:
            merged["agent_db"] = self.agent_db
        key = tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in merged.items()))
        if key not in self._cache:
            self._cache[key] = load_config(merged, config_file=Path(self.config_file) if self.config_file else None)
        config = self._cache[key]
        return config if agent else config.require_documents_db()


class IndexerGroup(click.Group):
    """Turns library errors into ``error: …`` on stderr and a non-zero exit; loads command
    modules on demand."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            importlib.import_module(module)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        for module in dict.fromkeys(COMMAND_MODULES.values()):
            importlib.import_module(module)
        return super().list_commands(ctx)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except IndexerError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except BrokenPipeError:
            quiet_broken_pipe()
        except OSError as exc:
            click.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
            sys.exit(1)
        except Exception as exc:
            # a database error can only come from a command that imported the driver; the
            # driver (and its binding) is not imported here, so `search` via the daemon stays light
            driver = sys.modules.get("indexer.storage.sqlite.driver")
            if driver is not None and isinstance(exc, driver.Error):
                click.echo(f"error: database: {exc}{_storage_hint(ctx, exc, driver)}", err=True)
                sys.exit(1)
            raise


def _storage_hint(ctx: click.Context, exc: Exception, driver: Any) -> str:
    """Why SQLite could not open or write the file, when its words do not say it."""
    text = str(exc).lower()
    app = ctx.find_object(AppContext)
    if app is None or not any(word in text for word in ("readonly", "read-only", "unable to open", "disk i/o")):
        return ""
    return next((hint for config in app._cache.values() if (hint := driver.location_hint(config.db))), "")


@click.group(cls=IndexerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db", metavar="PATH", help="Database file (env INDEXER_DB; default under $INDEXER_HOME or XDG data dir); "
              "postgresql://… holds the agent store only.")
@click.option("--agent-db", "agent_db", metavar="PATH|URL",
              help="Where memories live if not in --db: a file or a team's postgresql://… (env INDEXER_AGENT_DB).")
@click.option("--config", "config_file", metavar="FILE",
              help="Config file (env INDEXER_CONFIG; default config.toml under $INDEXER_HOME or XDG config dir).")
@click.version_option(__version__, prog_name="indexer")
@click.pass_context
def cli(ctx: click.Context, db: str | None, config_file: str | None, agent_db: str | None) -> None:
    """Keep an SQLite index of your markdown in sync and search it by meaning."""
    ctx.obj = AppContext(db=db, config_file=config_file, agent_db=agent_db)


SIGPIPE_EXIT = 128 + 13  # the status of a Unix tool killed by SIGPIPE


def quiet_broken_pipe() -> None:
    """The reader of our stdout went away (``indexer search … | head -1``): exit at once and
    quietly, as Unix tools do. stdout is pointed at /dev/null first, so the interpreter's own
    flush at exit finds no broken pipe to complain about."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    sys.exit(SIGPIPE_EXIT)


def main(argv: list[str] | None = None) -> None:
    # What the command creates is the user's alone, whatever the umask (as the systemd unit's
    # UMask=0077): the database, its -wal/-shm, backups, the model cache, the MCP token. The
    # library sets these modes itself too (indexer/paths.py); this covers what it does not name.
    os.umask(os.umask(0o077) | 0o077)
    try:
        cli.main(args=argv, prog_name="indexer")
    finally:
        try:
            sys.stdout.flush()  # output still buffered meets the closed pipe here, not in the interpreter's exit
        except BrokenPipeError:
            quiet_broken_pipe()
        except (OSError, ValueError):
            pass
