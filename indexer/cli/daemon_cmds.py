"""``indexer daemon`` and ``indexer service install|uninstall``."""

from __future__ import annotations

from pathlib import Path

import click

from indexer.cli.app import AppContext, cli
from indexer.cli.output import emit_json


@cli.command()
@click.option("--root", "roots", multiple=True, type=click.Path(file_okay=False),
              help="A root to watch (repeatable; replaces the configured roots).")
@click.option("--poll", is_flag=True, help="Poll for changes instead of inotify (network mounts).")
@click.option("--debounce-ms", type=int, help="Quiet period before a burst of changes is indexed (default 500).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="Log level (default info).")
@click.pass_obj
def daemon(app: AppContext, roots: tuple[str, ...], poll: bool, debounce_ms: int | None, log_level: str | None) -> None:
    """Run in the foreground: watch the roots, keep the index in sync, serve searches.

    Without --root and roots in the config, it watches the roots indexed before (remembered
    in the database by `indexer reindex --root DIR`).

    systemd-ready (Type=notify, WATCHDOG, SIGHUP reloads the config); SIGTERM or Ctrl-C stop it
    cleanly. See `indexer service install` for the user unit.
    """
    one_blas_thread()
    from indexer.config import load_config
    from indexer.daemon import logs
    from indexer.daemon.service import Daemon
    from indexer.documents.roots import with_remembered_roots

    flags = {"roots": list(roots) or None, "debounce_ms": debounce_ms, "log_level": log_level}
    if app.db:
        flags["db"] = app.db
    if app.agent_db:
        flags["agent_db"] = app.agent_db
    config_file = Path(app.config_file) if app.config_file else None

    def load():  # called again on SIGHUP: the file and the environment are re-read
        return with_remembered_roots(load_config(flags, config_file=config_file).require_documents_db())

    logs.setup(load().log_level)
    raise SystemExit(Daemon(load, poll=poll).run())


def one_blas_thread(environ: dict[str, str] | None = None) -> None:
    """numpy's BLAS on one thread in the daemon, unless the user chose: its searches are
    memory-bound matrix-vector products, where a second OpenBLAS thread only spins beside the
    first (docs/benchmarks.md, "The daemon's time per search": 22.4 -> 13.2 ms a search at 10k
    chunks on a loaded 2-core machine). The embedders use their own thread pools (onnxruntime's,
    torch's), not numpy's. Must run before numpy is imported, as here."""
    import os

    env = os.environ if environ is None else environ
    env.setdefault("OPENBLAS_NUM_THREADS", "1")


@cli.group()
def service() -> None:
    """Install or remove the systemd user unit."""


@service.command("install")
@click.option("--now", is_flag=True, help="Also start the service now (systemctl --user enable --now).")
@click.option("--root", "roots", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="Roots to pass to the daemon (default: the config's).")
@click.option("--poll", is_flag=True, help="Make the service poll instead of using inotify.")
@click.option("--print", "print_only", is_flag=True, help="Print the rendered unit and write nothing.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def service_install(app: AppContext, now: bool, roots: tuple[str, ...], poll: bool, print_only: bool, as_json: bool) -> None:
    """Write ~/.config/systemd/user/indexer.service and enable it (or print the commands)."""
    from indexer.daemon import unit

    config = app.config(roots=list(roots) or None)
    resolved = [Path(r).resolve() for r in roots]
    extra = ["--poll"] if poll else []
    _warn_without_roots(config)
    if print_only:
        click.echo(unit.render(config, roots=resolved, extra_args=extra), nl=False)
        return
    result = unit.install(config, now=now, roots=resolved, extra_args=extra)
    _report(result, as_json, "installed")


def _warn_without_roots(config) -> None:
    """The service's daemon needs roots: configured, given, or remembered from a reindex."""
    if config.roots:
        return
    from indexer.documents.roots import remembered_roots

    remembered = remembered_roots(config.db)
    if remembered:
        click.echo(f"note: no roots configured: the daemon will watch the roots indexed before: "
                   f"{', '.join(map(str, remembered))}", err=True)
    else:
        click.echo("warning: no roots configured: set `roots` in the config file, pass --root, or index one "
                   "first (indexer reindex --root DIR)", err=True)


@service.command("uninstall")
@click.option("--json", "as_json", is_flag=True)
def service_uninstall(as_json: bool) -> None:
    """Stop and disable the service, and remove its unit file."""
    from indexer.daemon import unit

    _report(unit.uninstall(), as_json, "removed")


def _report(result, as_json: bool, verb: str) -> None:
    from indexer.daemon.unit import command_line

    if as_json:
        emit_json({"unit": str(result.unit_path), "systemctl_ran": result.ran, "output": result.output,
                   "commands": [list(c) for c in result.commands]})
        return
    click.echo(f"{verb} {result.unit_path}")
    if result.ran:
        click.echo("\n".join(f"ran: {command_line(c)}" for c in result.commands))
    else:
        if result.output:
            click.echo(f"systemctl --user is not available here ({result.output.splitlines()[0]}); run:", err=True)
        else:
            click.echo("run:", err=True)
        for command in result.commands:
            click.echo(f"  {command_line(command)}")
