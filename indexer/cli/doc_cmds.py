"""``indexer reindex`` and ``indexer status``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from indexer.cli.app import AppContext, cli
from indexer.cli.output import emit_json
from indexer.errors import ConfigError


def _split_targets(paths: tuple[str, ...], roots: tuple[Path, ...]) -> tuple[list[Path], list[Path]]:
    """Given PATH arguments: (extra roots for this run, paths to restrict the run to)."""
    from indexer.sync import within

    under_roots = within(roots)
    extra_roots: list[Path] = []
    targets: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser().absolute()
        if not path.exists() and not path.is_symlink():
            # a deleted file under a root is still a valid target: its row must go
            if not under_roots(str(path)):
                raise ConfigError(f"no such file or directory: {raw}")
        else:
            path = path.resolve()
        if not under_roots(str(path)):
            if not path.is_dir():
                raise ConfigError(f"{raw} is outside the configured roots; give its directory to index it as a root")
            extra_roots.append(path)
        targets.append(path)
    return extra_roots, targets


class _Bar:
    """A rich progress display: files, then chunks with rate and ETA (stderr, TTY only)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> "_Bar":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                      console=Console(stderr=True), transient=False)
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, event: str, **info: Any) -> None:
        if self._progress is None or event not in ("files", "embed"):
            return
        label = "documents" if event == "files" else "chunks"
        if event not in self._tasks:
            self._tasks[event] = self._progress.add_task(label, total=info.get("total") or 0, rate="")
        task = self._tasks[event]
        elapsed = self._progress.tasks[task].elapsed or 0
        rate = f"{info['done'] / elapsed:.1f}/s" if elapsed > 0 and info["done"] else ""
        self._progress.update(task, completed=info["done"], total=info.get("total"), rate=rate)


def _reindex_by_daemon(config: Any, targets: list[Path], full: bool) -> Any:
    """When the daemon runs it is the only writer of the document tables: ask it, and wait."""
    from indexer.cli.daemon_client import ask
    from indexer.sync import SyncReport

    answer = ask(config, {"op": "reindex", "paths": [str(t) for t in targets], "full": full, "wait": True},
                 timeout=None)
    if answer is None:
        return None
    click.echo(f"reindexed by the running daemon (pid {answer['daemon']['pid']})", err=True)
    report = SyncReport()
    for key, value in answer["report"].items():
        setattr(report, key, value)
    return report


def _reindex_here(config: Any, paths: tuple[str, ...], full: bool, as_json: bool) -> Any:
    from indexer.embedding import embedder_for, prepare
    from indexer.sync import DocumentSync

    extra_roots, targets = _split_targets(paths, config.roots)
    run_roots = tuple(config.roots) + tuple(extra_roots)
    if not run_roots:
        raise ConfigError("no roots to index: give --root DIR, a PATH, or set `roots` in the config")
    for root in run_roots:
        if not root.is_dir():
            raise ConfigError(f"root {root} is not a directory")
    embedder = embedder_for(config)
    prepare(embedder)  # the one-time ONNX export happens here, not in the first search
    show_bar = not as_json and sys.stderr.isatty()
    with _Bar(show_bar) as bar, DocumentSync(config, embedder=embedder, progress=bar) as sync:
        return sync.run(run_roots, paths=targets or None, full=full)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--root", "roots", multiple=True, type=click.Path(file_okay=False), help="A root to index (repeatable; replaces the configured roots).")
@click.option("--full", is_flag=True, help="Re-read and re-hash every file, ignoring mtime and size.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def reindex(app: AppContext, paths: tuple[str, ...], roots: tuple[str, ...], full: bool, as_json: bool) -> None:
    """One-shot sync of the configured roots, or of the given PATHs, then embed what is pending.

    A directory outside the configured roots is synced as a root for this run. When the daemon
    runs (and no --root is given) it does the work, and this command waits for it.
    """
    config = app.config(roots=list(roots) or None)
    report = None
    if not roots:  # the daemon (when it runs) owns the document tables: it does the work
        absolute = [Path(p).expanduser().absolute() for p in paths]
        report = _reindex_by_daemon(config, [p.resolve() if p.exists() else p for p in absolute], full)
    if report is None:
        report = _reindex_here(config, paths, full, as_json)
    if as_json:
        emit_json(report.as_dict())
        return
    total = report.seconds + report.embed_seconds
    rate = report.chunks_embedded / report.embed_seconds if report.embed_seconds > 0 else 0.0
    click.echo(
        f"scanned {report.scanned} files: {report.added} added, {report.modified} modified, {report.moved} moved, "
        f"{report.deleted} deleted, {report.unchanged + report.touched} unchanged, {report.failed} failed"
    )
    click.echo(f"embedded {report.chunks_embedded} chunks ({rate:.1f}/s) in {total:.2f} s")
    for item in report.failures[:20]:
        click.echo(f"failed: {item['path']}: {item['reason']}", err=True)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--direct", is_flag=True, help="Read the database in this process even if the daemon runs.")
@click.pass_obj
def status(app: AppContext, as_json: bool, direct: bool) -> None:
    """Counts per sync status, failed files with reasons, model, coverage, database size;
    and the daemon's state when it runs."""
    from indexer.cli.daemon_client import ask

    config = app.config()
    info = None if direct else ask(config, {"op": "status"}, timeout=5)
    if info is None:
        from indexer.daemon.lock import running_pid
        from indexer.status import collect_status

        info = collect_status(config.db)
        pid = running_pid(config.db)
        info["daemon"] = None if pid is None else {"pid": pid, "state": "not answering on its socket"}
        info["backend"] = config.backend  # what this process would embed with
        from indexer.embedding import embedder_for

        exported = getattr(embedder_for(config), "exported", None)
        if exported is not None:  # the onnx backends: is the one-time export done?
            info["onnx_exported"] = exported()
    if as_json:
        emit_json(info)
        return
    if not info["exists"]:
        click.echo(f"no database at {info['database']} (run: indexer reindex --root DIR)")
        return
    c = info["documents"]
    click.echo(f"database: {info['database']} ({info['size_bytes'] / 1e6:.1f} MB)")
    click.echo(f"documents: {c['total']} total, {c['synced']} synced, {c['pending']} pending, {c['stale']} stale, {c['failed']} failed")
    click.echo(f"chunks: {info['chunks']['chunks']} ({info['chunks']['embedded']} embedded); coverage {info['coverage']:.1%}")
    click.echo(f"model: {info['model'] or '-'}" + (f" (backend {info['backend']})" if info.get("backend") else "")
               + (": not exported yet (the next reindex or daemon start exports it, about 10 s)"
                  if info.get("onnx_exported") is False else ""))
    daemon = info.get("daemon")
    if daemon:
        progress = daemon.get("progress") or {}
        detail = f" ({progress['stage']} {progress['done']}/{progress['total']})" if progress.get("stage") else ""
        click.echo(f"daemon: pid {daemon['pid']}, {daemon['state']}{detail}"
                   + (f", {daemon['chunks_to_embed']} chunks to embed" if "chunks_to_embed" in daemon else ""))
    else:
        click.echo("daemon: not running")
    for item in info["failed"]:
        click.echo(f"failed: {item['path']}: {item['reason']} (attempts {item['attempts']}, retry after {item['retry_after']})")
