"""``indexer migrate``, ``doctor``, ``backup`` and ``restore``."""

from __future__ import annotations

import sys
from typing import Any

import click

from indexer.cli.app import AppContext, cli
from indexer.cli.output import emit_json


@cli.command()
@click.option("--dry-run", is_flag=True, help="List what would run; write nothing.")
@click.option("--no-backup", is_flag=True, help="Do not copy a legacy database aside before adopting it.")
@click.option("--to", "to", metavar="URL",
              help="Move the SQLite agent store (memories, sessions, tasks) into this (empty) postgresql:// store.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def migrate(app: AppContext, dry_run: bool, no_backup: bool, to: str | None, as_json: bool) -> None:
    """Create or upgrade the database; adopt a legacy (reference) database in place.

    With the agent store on PostgreSQL (--agent-db or --db postgresql://…), its migrations
    run too, each under an advisory lock (several processes at once: each applied once). With --to, the
    SQLite agent store (memories, sessions and their events, tasks, agents, checkpoints, audit
    rows) is copied into a PostgreSQL one (the file is only read)."""
    from indexer.storage.sqlite import migrations

    config = app.config(agent=True)
    if to is not None:
        _move_memories(config, to, dry_run, as_json)
        return
    pg_report = None
    if config.agent_engine == "postgresql":
        from indexer.storage.postgres import migrations as pg_migrations

        pg_report = pg_migrations.migrate(config.agent_location, dry_run=dry_run)
    if config.db_url is not None:  # no document index: the PostgreSQL store is the database
        assert pg_report is not None
        if as_json:
            emit_json(pg_report.as_dict())
        else:
            _print_postgres_report(pg_report)
        return
    report = migrations.migrate(config.db, dry_run=dry_run, backup=not no_backup)
    if as_json:
        emit_json({**report.as_dict(), **({"agent_store": pg_report.as_dict()} if pg_report else {})})
        return
    _print_report(report, dry_run)
    if pg_report is not None:
        _print_postgres_report(pg_report)


def _move_memories(config: Any, to: str, dry_run: bool, as_json: bool) -> None:
    from indexer.errors import ConfigError, IndexerError
    from indexer.locations import is_postgres
    from indexer.storage.sqlite import migrations

    if not is_postgres(to):
        raise ConfigError(f"--to takes a postgresql:// URL, got {to!r}")
    if config.agent_engine != "sqlite":
        raise IndexerError("--to moves an SQLite agent store to PostgreSQL; this one is already on PostgreSQL")
    if dry_run:
        raise ConfigError("--to copies at once; run it without --dry-run (the source file is only read)")
    from pathlib import Path

    from indexer.storage.postgres import migrations as pg_migrations
    from indexer.storage.postgres.transfer import copy_agent_store

    source = Path(config.agent_location)
    if not source.exists():
        raise IndexerError(f"no database at {source} to move the agent store from")
    migrations.migrate(source)  # the source's columns as this version reads them
    pg_migrations.migrate(to)
    report = copy_agent_store(source, to)
    if as_json:
        emit_json(report.as_dict())
    else:
        click.echo(f"moved {report.memory_entries} memory versions and {report.audit_rows} audit rows, "
                   f"{report.sessions} sessions with {report.session_events} events, {report.tasks} tasks, "
                   f"{report.agents} agents, {report.checkpoints} checkpoints, {report.state_rows} state rows and "
                   f"{report.metrics} metrics from {report.source} to {report.target}")


def _print_postgres_report(report: Any) -> None:
    where = f"{report.path} (PostgreSQL {report.server_version})"
    if not report.pending:
        click.echo(f"{where}: up to date, nothing pending")
    elif report.dry_run:
        click.echo(f"{where}: would apply {len(report.pending)} migration(s): {', '.join(report.pending)}")
    elif not report.applied:
        click.echo(f"{where}: another process applied them first; nothing left to do")
    else:
        click.echo(f"{where}: applied {len(report.applied)} migration(s): {', '.join(report.applied)}")


def _print_report(report: Any, dry_run: bool) -> None:
    db = report.path
    if not report.pending:
        click.echo(f"{db}: up to date, nothing pending")
        return
    kind = {"missing": "new database", "empty": "empty database", "legacy": "legacy database (reference implementation)",
            "current": "database"}[report.kind]
    if dry_run:
        click.echo(f"{db}: {kind}; would apply {len(report.pending)} migration(s):")
        for name in report.pending:
            click.echo(f"  {name}")
        if report.kind == "legacy":
            click.echo("  (adopting every legacy row in place, in one transaction, after a backup copy)")
        return
    if report.backup:
        click.echo(f"backup written: {report.backup}")
    if report.legacy:
        info = report.legacy
        rows = ", ".join(f"{t} {n}" for t, n in sorted(info["rows"].items()))
        click.echo(f"adopted legacy database ({info['variant']} variant): rows kept: {rows}")
        click.echo(f"timestamps in other formats converted: {info['timestamps_converted_other_formats']}; "
                   f"unparseable kept as-is: {info['timestamps_unparseable_kept']}")
        if info["preexisting_fk_violations"]:
            orphans = ", ".join(f"{t} {n}" for t, n in sorted(info["preexisting_fk_violations"].items()))
            click.echo(f"warning: rows that already broke a foreign key in the legacy file were kept: {orphans} "
                       "(see: indexer doctor)")
    applied = report.applied or []
    click.echo(f"{db}: applied {len(applied)} migration(s): {', '.join(applied) or '-'}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.pass_obj
def doctor(app: AppContext, as_json: bool) -> None:
    """Validate the database (PRAGMAs, integrity, FKs, indexes, plans); never modifies it.

    Exits 1 if any check fails.
    """
    from indexer.storage.sqlite.doctor import run_doctor

    config = app.config(agent=True)
    checks = [] if config.db_url is not None else run_doctor(config.db)
    where = "" if config.db_url is not None else str(config.db)
    if config.agent_engine == "postgresql":  # the agent store on a server: its own checks
        from indexer.storage.postgres.doctor import run_doctor as run_postgres_doctor
        from indexer.storage.postgres.migrations import redact

        checks += run_postgres_doctor(config.agent_location)
        where = " and ".join(filter(None, [where, redact(config.agent_location)]))
    failed = [c for c in checks if not c.ok]
    if as_json:
        emit_json({"database": where, "ok": not failed, "passed": len(checks) - len(failed),
                   "failed": len(failed), "checks": [c.as_dict() for c in checks]})
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            mark = "PASS" if c.ok else "FAIL"
            line = f"{mark}  {c.name:<{width}}  {c.observed}"
            if not c.ok and c.expected is not None:
                line += f"   (expected {c.expected})"
            click.echo(line)
        click.echo(f"{len(checks) - len(failed)} passed, {len(failed)} failed: {where}")
    if failed:
        sys.exit(1)


@cli.command()
@click.argument("path", type=click.Path(dir_okay=True))
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def backup(app: AppContext, path: str, force: bool, as_json: bool) -> None:
    """Copy the database to PATH (a file, or a directory for a timestamped name), online.

    PATH is a directory when it is one or ends with '/' (created, private, if missing).

    Uses SQLite's backup API: one consistent snapshot while the daemon keeps writing. The copy
    is checked (integrity_check) before it is renamed into place.
    """
    import os
    from pathlib import Path

    from indexer.storage.sqlite.backup import backup as run_backup

    report = run_backup(app.config().db, Path(path), overwrite=force, into_directory=path.endswith(("/", os.sep)))
    if as_json:
        emit_json(report.as_dict())
    else:
        click.echo(f"backup written: {report.target} ({report.bytes / 1e6:.1f} MB, {report.seconds:.2f} s, "
                   f"migrations {', '.join(report.migrations) or '-'})")


@cli.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def restore(app: AppContext, path: str, as_json: bool) -> None:
    """Replace the database with the backup at PATH (the daemon must be stopped).

    The replaced database is kept as <db>.before-restore. Run `indexer migrate` afterwards if the
    backup is older than this version (the daemon does it on start).
    """
    from pathlib import Path

    from indexer.storage.sqlite.backup import restore as run_restore

    report = run_restore(Path(path), app.config().db)
    if as_json:
        emit_json(report.as_dict())
    else:
        click.echo(f"restored {report.source} -> {report.target}"
                   + (f" (previous database kept as {report.kept_previous})" if report.kept_previous else ""))
