"""The command group, its global options, and the one place errors become exit codes."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from indexer import __version__
from indexer.config import Config, load_config
from indexer.errors import IndexerError

# Sub-command modules, imported when the group is built; each registers on `cli`.
COMMAND_MODULES = ("indexer.cli.db_cmds", "indexer.cli.doc_cmds", "indexer.cli.search_cmds",
                   "indexer.cli.memory_cmds", "indexer.cli.session_cmds")


@dataclass
class AppContext:
    db: str | None = None
    config_file: str | None = None
    _cache: dict[Any, Config] = field(default_factory=dict)

    def config(self, **flags: Any) -> Config:
        """The effective config: these flags, then --db, env, the file, defaults."""
        merged = dict(flags)
        if self.db:
            merged["db"] = self.db
        key = tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in merged.items()))
        if key not in self._cache:
            self._cache[key] = load_config(merged, config_file=Path(self.config_file) if self.config_file else None)
        return self._cache[key]


class IndexerGroup(click.Group):
    """Turns library errors into ``error: …`` on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        from indexer.storage import driver

        try:
            return super().invoke(ctx)
        except IndexerError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except driver.Error as exc:
            click.echo(f"error: database: {exc}", err=True)
            sys.exit(1)
        except OSError as exc:
            click.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
            sys.exit(1)


@click.group(cls=IndexerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db", metavar="PATH", help="Database file (env INDEXER_DB; default under $INDEXER_HOME or XDG data dir).")
@click.option("--config", "config_file", metavar="FILE", help="Config file (env INDEXER_CONFIG; default config.toml under $INDEXER_HOME or XDG config dir).")
@click.version_option(__version__, prog_name="indexer")
@click.pass_context
def cli(ctx: click.Context, db: str | None, config_file: str | None) -> None:
    """Keep an SQLite index of your markdown in sync and search it by meaning."""
    ctx.obj = AppContext(db=db, config_file=config_file)


for _name in COMMAND_MODULES:
    importlib.import_module(_name)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="indexer")
