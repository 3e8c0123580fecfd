"""``indexer memory …``: versioned long-term memory from the command line.

Values are JSON arguments, or ``-`` to read them from stdin. Every command takes ``--json``.
Errors (invalid JSON, a bad namespace, an unknown key, a conflict) are one line on stderr and
exit 1; nothing is written.
"""

from __future__ import annotations

import json
import re
from typing import Any

import click

from indexer.cli.app import AppContext, cli
from indexer.cli.common import compact, json_argument, json_object_option, limits, run_with_db
from indexer.cli.output import emit_json
from indexer.errors import ValidationError

_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_span(value: str) -> float:
    """``3600``, ``90s``, ``30m``, ``12h``, ``7d``, ``2w`` → seconds."""
    match = _SPAN.fullmatch(value.strip())
    if not match:
        raise ValidationError(f"--ttl {value!r}: use seconds or a span like 90s, 30m, 12h, 7d, 2w")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _describe(entry: Any) -> str:
    state = "  [deleted]" if entry.is_deleted else ""
    by = f" by {entry.updated_by}" if entry.updated_by else ""
    return f"{entry.namespace} {entry.key} v{entry.version} ({entry.memory_type}, {entry.updated_at}{by}){state}"


@cli.group()
def memory() -> None:
    """Versioned long-term memory (namespaces like user:alice:prefs).

    \b
    Namespaces: ':'-separated segments, the first one of project, app, user, session, temp.
    Memory types: semantic, episodic, procedural.
    VALUE and --metadata are JSON (quote strings: '"dark"'); '-' reads VALUE from stdin;
    put '--' before a VALUE that starts with '-' (e.g. -- -5).
    """


@memory.command("add")
@click.argument("namespace")
@click.argument("key")
@click.argument("value")
@click.option("--type", "memory_type", default="semantic", show_default=True, help="semantic, episodic or procedural.")
@click.option("--by", "by", help="Who creates it (created_by).")
@click.option("--metadata", help="A JSON object.")
@click.option("--json", "as_json", is_flag=True, help="Print the new version as JSON.")
@click.pass_obj
def memory_add(app: AppContext, namespace: str, key: str, value: str, memory_type: str, by: str | None,
               metadata: str | None, as_json: bool) -> None:
    """Create KEY in NAMESPACE (version 1, or the next version of a deleted key)."""
    from indexer.agent.memory import MemoryService, validate_key, validate_memory_type, validate_namespace

    validate_namespace(namespace)  # before the database file is opened (or created)
    validate_key(key)
    validate_memory_type(memory_type)
    data = json_argument(value, "VALUE")
    meta = json_object_option(metadata, "--metadata")
    entry = run_with_db(app, lambda db: MemoryService(db, limits(app)).create_memory(namespace, key, data, memory_type, by, meta))
    if as_json:
        emit_json(entry.as_dict())
    else:
        click.echo(f"created {entry.namespace} {entry.key} v{entry.version} ({entry.memory_type})")


@memory.command("get")
@click.argument("namespace")
@click.argument("key")
@click.option("--version", "version", type=int, help="This version (even a deleted one) instead of the latest live.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
@click.pass_obj
def memory_get(app: AppContext, namespace: str, key: str, version: int | None, as_json: bool) -> None:
    """Show the latest live version of KEY (or --version N)."""
    from indexer.agent.memory import MemoryService

    entry = run_with_db(app, lambda db: MemoryService(db, limits(app)).get_memory(namespace, key, version), create=False)
    if as_json:
        emit_json(entry.as_dict())
        return
    click.echo(_describe(entry))
    click.echo(json.dumps(entry.value, ensure_ascii=False, indent=2))
    if entry.metadata:
        click.echo(f"metadata: {compact(entry.metadata)}")


@memory.command("update")
@click.argument("namespace")
@click.argument("key")
@click.argument("value")
@click.option("--by", "by", help="Who updates it (updated_by).")
@click.option("--metadata", help="Replace the metadata (a JSON object); default: carried over.")
@click.option("--json", "as_json", is_flag=True, help="Print the new version as JSON.")
@click.pass_obj
def memory_update(app: AppContext, namespace: str, key: str, value: str, by: str | None, metadata: str | None,
                  as_json: bool) -> None:
    """Write a new version of KEY holding VALUE (type, metadata, created_by carried over)."""
    from indexer.agent.memory import MemoryService

    data = json_argument(value, "VALUE")
    meta = json_object_option(metadata, "--metadata")
    entry = run_with_db(app, lambda db: MemoryService(db, limits(app)).update_memory(namespace, key, data, by, metadata=meta),
                        create=False)
    if as_json:
        emit_json(entry.as_dict())
    else:
        click.echo(f"updated {entry.namespace} {entry.key} to v{entry.version}")


@memory.command("delete")
@click.argument("namespace")
@click.argument("key")
@click.option("--by", "by", help="Who deletes it (recorded in the audit row).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def memory_delete(app: AppContext, namespace: str, key: str, by: str | None, as_json: bool) -> None:
    """Soft-delete KEY: every version is hidden (restore undoes it)."""
    from indexer.agent.memory import MemoryService

    count = run_with_db(app, lambda db: MemoryService(db, limits(app)).delete_memory(namespace, key, by), create=False)
    if as_json:
        emit_json({"namespace": namespace, "key": key, "deleted": True, "versions": count})
    else:
        click.echo(f"deleted {namespace} {key} ({count} version{'s' if count != 1 else ''})")


@memory.command("restore")
@click.argument("namespace")
@click.argument("key")
@click.option("--by", "by", help="Who restores it (recorded in the audit row).")
@click.option("--json", "as_json", is_flag=True, help="Print the restored latest version as JSON.")
@click.pass_obj
def memory_restore(app: AppContext, namespace: str, key: str, by: str | None, as_json: bool) -> None:
    """Undo the delete of KEY."""
    from indexer.agent.memory import MemoryService

    entry = run_with_db(app, lambda db: MemoryService(db, limits(app)).restore_memory(namespace, key, by), create=False)
    if as_json:
        emit_json(entry.as_dict())
    else:
        click.echo(f"restored {entry.namespace} {entry.key} (latest v{entry.version})")


@memory.command("rollback")
@click.argument("namespace")
@click.argument("key")
@click.argument("version", type=int)
@click.option("--by", "by", help="Who rolls back (updated_by).")
@click.option("--json", "as_json", is_flag=True, help="Print the new version as JSON.")
@click.pass_obj
def memory_rollback(app: AppContext, namespace: str, key: str, version: int, by: str | None, as_json: bool) -> None:
    """Write a new version of KEY holding the value of VERSION."""
    from indexer.agent.memory import MemoryService

    entry = run_with_db(app, lambda db: MemoryService(db, limits(app)).rollback_memory(namespace, key, version, by), create=False)
    if as_json:
        emit_json(entry.as_dict())
    else:
        click.echo(f"rolled back {entry.namespace} {entry.key} to the value of v{version}: now v{entry.version}")


@memory.command("history")
@click.argument("namespace")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def memory_history(app: AppContext, namespace: str, key: str, as_json: bool) -> None:
    """Every version of KEY, oldest first, deleted ones included."""
    from indexer.agent.memory import MemoryService

    entries = run_with_db(app, lambda db: MemoryService(db, limits(app)).get_memory_history(namespace, key), create=False)
    if as_json:
        emit_json([e.as_dict() for e in entries])
        return
    for e in entries:
        mark = " [deleted]" if e.is_deleted else ""
        click.echo(f"v{e.version:<4} {e.updated_at}  {e.updated_by or '-':<12} {compact(e.value, 60)}{mark}")


@memory.command("list")
@click.argument("prefix")
@click.option("--type", "memory_type", help="Only this memory type.")
@click.option("--limit", type=int, default=50, show_default=True, help="Page size (1-1000).")
@click.option("--cursor", help="Continue after the page that printed this cursor.")
@click.option("--all", "all_pages", is_flag=True, help="Every page.")
@click.option("--json", "as_json", is_flag=True, help='{"items": [...], "next_cursor": ...}')
@click.pass_obj
def memory_list(app: AppContext, prefix: str, memory_type: str | None, limit: int, cursor: str | None,
                all_pages: bool, as_json: bool) -> None:
    """The latest live version of each key in PREFIX and below it (whole segments:
    user:al does not match user:alice)."""
    from indexer.agent.memory import MemoryPage, MemoryService

    async def pages(db: Any) -> MemoryPage:
        service = MemoryService(db, limits(app))
        page = await service.list_memories(prefix, memory_type, limit, cursor)
        items = list(page.items)
        while all_pages and page.next_cursor:
            page = await service.list_memories(prefix, memory_type, limit, page.next_cursor)
            items.extend(page.items)
        return MemoryPage(tuple(items), page.next_cursor)

    result = run_with_db(app, pages, create=False)
    if as_json:
        emit_json(result.as_dict())
        return
    for e in result.items:
        click.echo(f"{e.namespace}  {e.key}  v{e.version}  {e.memory_type}  {compact(e.value, 60)}")
    if not result.items:
        click.echo(f"no memories under {prefix}")
    if result.next_cursor:
        click.echo(f"more: --cursor {result.next_cursor}")


@memory.command("cleanup")
@click.option("--ttl", required=True, help="Age limit: seconds, or 90s, 30m, 12h, 7d, 2w.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def memory_cleanup(app: AppContext, ttl: str, as_json: bool) -> None:
    """Soft-delete episodic memories not updated within --ttl."""
    from indexer.agent.memory import MemoryService

    seconds = parse_span(ttl)
    count = run_with_db(app, lambda db: MemoryService(db, limits(app)).cleanup_expired(seconds), create=False)
    if as_json:
        emit_json({"deleted": count, "ttl_seconds": seconds})
    else:
        click.echo(f"soft-deleted {count} expired episodic memor{'y' if count == 1 else 'ies'}")
