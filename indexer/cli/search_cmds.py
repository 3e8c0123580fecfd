"""``indexer search``."""

from __future__ import annotations

import sys

import click

from indexer.cli import search_lean
from indexer.cli.app import AppContext, cli
from indexer.cli.search_lean import parse_since as parse_since
from indexer.cli.search_lean import path_filter as path_filter


@cli.command()
@click.argument("query", nargs=-1, required=True)
@click.option("--mode", type=click.Choice(list(search_lean.MODES)), default="hybrid", show_default=True)
@click.option("-k", "k", type=click.IntRange(*search_lean.K_RANGE), default=10, show_default=True, help="Number of documents.")
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
    filters = search_lean.filters_for(doc_type, path, since)
    config = app.config()
    asked = direct or search_lean.ASKED  # the lean path (search_lean.main) found no daemon already
    response = None if asked else ask(config, {"op": "search", "query": text, "mode": mode, "k": k,
                                               "filters": filters}, timeout=30)
    if response is None:
        from indexer.documents.search import SearchOptions, search_database
        from indexer.storage.sqlite.search_store import Filters

        response = search_database(config, text, SearchOptions(mode=mode, k=k, filters=Filters(**filters)))
    search_lean.render(response, as_json=as_json, as_jsonl=as_jsonl, explain=explain, out=sys.stdout, err=sys.stderr)
