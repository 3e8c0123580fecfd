"""``indexer reindex`` and ``indexer status``."""

from __future__ import annotations

import sys
from typing import Any

import click

from indexer.cli.app import AppContext, cli
from indexer.cli.output import emit_json
from indexer.documents.sync_events import ProgressEvent, Stage
from indexer.errors import ConfigError


class _Bar:
    """A rich progress display: files, then chunks with rate and ETA (stderr, TTY only)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._tasks: dict[Stage, Any] = {}

    def __enter__(self) -> _Bar:
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

    def __call__(self, event: ProgressEvent) -> None:
        if self._progress is None or event.stage not in (Stage.FILES, Stage.EMBED):
            return
        if event.stage not in self._tasks:
            label = "documents" if event.stage is Stage.FILES else "chunks"
            self._tasks[event.stage] = self._progress.add_task(label, total=event.total or 0, rate="")
        task = self._tasks[event.stage]
        elapsed = self._progress.tasks[task].elapsed or 0
        rate = f"{event.done / elapsed:.1f}/s" if elapsed > 0 and event.done else ""
        self._progress.update(task, completed=event.done, total=event.total, rate=rate)


def _reindex_by_daemon(config: Any, paths: tuple[str, ...], full: bool) -> tuple[Any, tuple[str, ...]] | None:
    """When the daemon runs it is the only writer of its roots' documents: ask it, and wait.
    Returns (its report, the PATHs outside its roots, left for this process), or None when
    no daemon answers."""
    from indexer.cli.daemon_client import reindex_by_daemon
    from indexer.documents.sync import SyncReport

    asked = reindex_by_daemon(config, paths, full=full)
    if asked is None:
        return None
    answer, rest = asked
    if answer is None:  # no PATH under its roots
        return SyncReport(), tuple(rest)
    click.echo(f"reindexed by the running daemon (pid {answer['daemon']['pid']})", err=True)
    report = SyncReport()
    for key, value in answer["report"].items():
        setattr(report, key, value)
    return report, tuple(rest)


def _reindex_here(config: Any, paths: tuple[str, ...], full: bool, as_json: bool) -> Any:
    from indexer.documents.embedding import embedder_for, prepare
    from indexer.documents.sync import DocumentSync
    from indexer.documents.targets import split_targets

    extra_roots, targets = split_targets(paths, config.roots)
    run_roots = tuple(config.roots) + tuple(extra_roots)
    if not run_roots:
        raise ConfigError("no roots to index: give --root DIR, a PATH, or set `roots` in the config")
    for root in run_roots:
        if not root.is_dir():
            raise ConfigError(f"root {root} is not a directory")
    embedder = embedder_for(config)
    show_bar = not as_json and sys.stderr.isatty()
    # the database is opened (created, migrated, or refused as not ours) before the model is
    # touched: a wrong --db fails in a moment, not after the one-time ONNX export
    with DocumentSync(config, embedder=embedder) as sync:
        prepare(embedder)  # the one-time ONNX export happens here, not in the first search
        with _Bar(show_bar) as bar:
            sync.progress = bar
            return sync.run(run_roots, paths=targets or None, full=full)


def _add(report: Any, other: Any) -> Any:
    for key, value in other.as_dict().items():
        if isinstance(value, list):
            setattr(report, key, getattr(report, key) + value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            setattr(report, key, getattr(report, key) + value)
        else:
            setattr(report, key, getattr(report, key) or value)
    return report


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--root", "roots", multiple=True, type=click.Path(file_okay=False),
              help="A root to index (repeatable; replaces the configured roots).")
@click.option("--full", is_flag=True, help="Re-read and re-hash every file, ignoring mtime and size.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def reindex(app: AppContext, paths: tuple[str, ...], roots: tuple[str, ...], full: bool, as_json: bool) -> None:
    """One-shot sync of the configured roots, or of the given PATHs, then embed what is pending.

    A PATH may be a root, a file or directory below one (looked at with that root's rules), or
    a directory outside every root (synced as a root for this run). A run deletes the row of a
    file only when it proved the file missing; what it could not read is kept, with a warning.
    When the daemon runs (and no --root is given) it does the work for the PATHs under its
    roots, and this command waits for it. With no --root and no roots configured, the roots
    indexed before (remembered in the database) are synced.
    """
    from indexer.documents.roots import with_remembered_roots

    config = with_remembered_roots(app.config(roots=list(roots) or None))
    report = None
    if not roots:  # the daemon (when it runs) owns its roots' documents: it does that work
        by_daemon = _reindex_by_daemon(config, paths, full)
        if by_daemon is not None:
            report, rest = by_daemon
            if rest:  # directories outside the daemon's roots: this process, as a root each
                _add(report, _reindex_here(config, rest, full, as_json))
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
        + (f", {report.kept} kept unverified" if report.kept else "")
    )
    click.echo(f"embedded {report.chunks_embedded} chunks ({rate:.1f}/s) in {total:.2f} s")
    for item in report.warnings[:20]:
        click.echo(f"warning: {item['path']}: {item['reason']}", err=True)
    for item in report.failures[:20]:
        click.echo(f"failed: {item['path']}: {item['reason']}", err=True)


def _agent_store_line(store: dict[str, Any]) -> str:
    where = f"agent store: {store['engine']} {store['server_version']} at {store['location']}"
    if not store["migrated"]:
        return where + " (not migrated yet: run indexer migrate)"
    held = f"{store['memory_keys']} memories, {store['memory_versions']} versions, {store['audit_rows']} audit rows"
    if "sessions" in store:
        held += f", {store['sessions']} sessions, {store.get('session_events', 0)} events, {store.get('tasks', 0)} tasks"
    if "agents" in store:
        held += (f", {store['agents']} agents, {store.get('checkpoints', 0)} checkpoints, "
                 f"{store.get('state', 0)} state rows, {store.get('metrics', 0)} metrics")
    pending = store.get("pending_migrations") or []
    if pending:
        held += f"; {len(pending)} migrations pending: run indexer migrate"
    return where + f" ({held})"


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--direct", is_flag=True, help="Read the database in this process even if the daemon runs.")
@click.pass_obj
def status(app: AppContext, as_json: bool, direct: bool) -> None:
    """Counts per sync status, failed files with reasons, model, coverage, database size;
    and the daemon's state when it runs."""
    from indexer.cli.daemon_client import ask

    config = app.config(agent=True)
    agent_store = None
    if config.agent_engine == "postgresql":  # the team's store: engine, server, what it holds
        from indexer.storage.postgres.doctor import status as postgres_status

        agent_store = postgres_status(config.agent_location)
    if config.db_url is not None:  # no document index here
        assert agent_store is not None
        if as_json:
            emit_json({"agent_store": agent_store})
        else:
            click.echo(_agent_store_line(agent_store))
        return
    info = None if direct else ask(config, {"op": "status"}, timeout=5)
    if info is None:
        from indexer.documents.status import collect_status
        from indexer.lockfile import running_pid

        info = collect_status(config.db)
        pid = running_pid(config.db)
        info["daemon"] = None if pid is None else {"pid": pid, "state": "not answering on its socket"}
        info["backend"] = config.backend  # what this process would embed with
        from indexer.documents.embedding import embedder_for

        exported = getattr(embedder_for(config), "exported", None)
        if exported is not None:  # the onnx backends: is the one-time export done?
            info["onnx_exported"] = exported()
    if agent_store is not None:
        info = {**info, "agent_store": agent_store}
    if as_json:
        emit_json(info)
        return
    if agent_store is not None:
        click.echo(_agent_store_line(agent_store))
    if not info["exists"]:
        click.echo(f"no database at {info['database']} (run: indexer reindex --root DIR)")
        return
    c = info["documents"]
    click.echo(f"database: {info['database']} ({info['size_bytes'] / 1e6:.1f} MB)")
    click.echo(f"documents: {c['total']} total, {c['synced']} synced, {c['pending']} pending, {c['stale']} stale, "
               f"{c['failed']} failed")
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
