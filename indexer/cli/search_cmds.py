"""``indexer search``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from indexer.cli.app import AppContext, cli
from indexer.cli.output import emit_json, emit_jsonl
from indexer.errors import ValidationError


def parse_since(value: str) -> str:
    """``7d``, ``12h``, ``30m``, or an ISO date/time → canonical UTC timestamp."""
    from indexer.timeutil import format_ts, parse_ts

    match = re.fullmatch(r"(\d+)\s*([dhmw])", value.strip())
    if match:
        unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
        return format_ts(datetime.now(UTC) - timedelta(**{unit: int(match.group(1))}))
    try:
        return format_ts(parse_ts(value))
    except ValueError:
        raise ValidationError(f"--since {value!r}: use an ISO date/time or a span like 7d, 12h, 30m") from None


def path_filter(value: str) -> dict[str, str]:
    if any(ch in value for ch in "*?["):
        pattern = value if value.startswith("/") else "*" + value.lstrip("*")
        return {"path_glob": pattern}
    return {"path_prefix": str(Path(value).expanduser().absolute())}


@cli.command()
@click.argument("query", nargs=-1, required=True)
@click.option("--mode", type=click.Choice(["hybrid", "semantic", "keyword"]), default="hybrid", show_default=True)
@click.option("-k", "k", type=click.IntRange(1, 1000), default=10, show_default=True, help="Number of documents.")
@click.option("--type", "doc_type", help="Only documents of this document_type.")
@click.option("--path", "path", help="Only paths under this directory, or matching this glob (*, ?, [).")
@click.option("--since", help="Only documents changed since (ISO date/time, or 7d, 12h, 30m).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with all results.")
@click.option("--jsonl", "as_jsonl", is_flag=True, help="One JSON line per result.")
@click.option("--explain", is_flag=True, help="Show each ranker's rank and score, and BM25's weight and evidence.")
@click.option("--direct", is_flag=True, help="Search the database in this process even if the daemon runs.")
@click.pass_obj
def search(app: AppContext, query: tuple[str, ...], mode: str, k: int, doc_type: str | None, path: str | None,
           since: str | None, as_json: bool, as_jsonl: bool, explain: bool, direct: bool) -> None:
    """Search the index: BM25 and vectors fused (hybrid), or one of them.

    Served by the daemon when it runs (warm model: no start-up cost), else in this process.
    """
    from indexer.cli.daemon_client import ask

    text = " ".join(query)
    if not text.strip():
        raise click.UsageError("the query is empty")
    filters = {"document_type": doc_type, "since": parse_since(since) if since else None,
               **(path_filter(path) if path else {})}
    filters = {key: value for key, value in filters.items() if value is not None}
    config = app.config()
    response = None if direct else ask(config, {"op": "search", "query": text, "mode": mode, "k": k, "filters": filters},
                                       timeout=30)
    if response is None:
        from indexer.documents.search import SearchOptions, search_database
        from indexer.storage.search_store import Filters

        response = search_database(config, text, SearchOptions(mode=mode, k=k, filters=Filters(**filters)))
    if as_json:
        emit_json(response)
        return
    if as_jsonl:
        emit_jsonl(response["results"])
        return
    if response.get("notice"):
        click.echo(f"note: {response['notice']}", err=True)
    if not response["results"]:
        click.echo("no results")
        return
    if explain and response.get("fusion"):
        f = response["fusion"]
        evidence = f.get("evidence") or {}
        click.echo(f"fusion: BM25 weight {f['keyword_weight']} = shape {f['shape_weight']} x gate {f['gate']}"
                   + (f" (BM25's best document: IDF coverage {evidence['coverage']}, margin {evidence['margin']}, "
                      f"in semantic's top: {'yes' if evidence['agrees'] else 'no'})" if evidence else ""))
    for rank, hit in enumerate(response["results"], start=1):
        heading = " > ".join(hit["heading_path"]) or hit["title"]
        click.echo(f"{rank:>2}. {hit['path']}:{hit['start_line']}-{hit['end_line']}  [{hit['score']:.4f}]")
        click.echo(f"    {hit['title']} — {heading}")
        click.echo(f"    {hit['snippet']}")
        if explain:
            parts = [f"{name}: rank {v['rank']}, score {v['score']}" + (f", coverage {v['coverage']}" if "coverage" in v else "")
                     for name, v in sorted(hit["explain"].items())]
            click.echo(f"    explain: {'; '.join(parts) or '-'}")
        for other in hit["other_chunks"][:3]:
            click.echo(f"      also: lines {other['start_line']}-{other['end_line']} {' > '.join(other['heading_path'])}")
