"""``indexer search`` answered by the daemon without click: the lean path.

With a daemon running, the work is in the daemon; the client should cost little more than
starting Python. :func:`main` (the ``indexer`` script) reads a plain ``indexer [--db P]
[--config F] search WORDS [options]`` itself, asks the daemon and prints the answer, importing
no click, no numpy and no SQLite binding. Anything else (another command, --help, --direct,
an option it does not know, a value click would refuse, no daemon) goes to the full command
line (``cli/app.py``), which then says what is wrong or searches in this process. The filters,
the rendering and the errors are this module's, shared by both paths, so they answer alike.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, TextIO

MODES = ("hybrid", "semantic", "keyword")
ASKED = False  # this process asked the daemon already and none answered: the full path searches here
K_RANGE = (1, 1000)
_VALUED = {"-k": "k", "--mode": "mode", "--type": "doc_type", "--path": "path", "--since": "since"}
_FLAGS = {"--json": "as_json", "--jsonl": "as_jsonl", "--explain": "explain"}


def parse_since(value: str) -> str:
    """``7d``, ``12h``, ``30m``, or an ISO date/time → canonical UTC timestamp."""
    from datetime import UTC, datetime, timedelta

    from indexer.errors import ValidationError
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


def filters_for(doc_type: str | None, path: str | None, since: str | None) -> dict[str, str]:
    filters = {"document_type": doc_type, "since": parse_since(since) if since else None,
               **(path_filter(path) if path else {})}
    return {key: value for key, value in filters.items() if value is not None}


def render(response: dict[str, Any], *, as_json: bool, as_jsonl: bool, explain: bool,
           out: TextIO, err: TextIO) -> None:
    """The search answer as ``indexer search`` prints it."""
    if as_json:
        out.write(json.dumps(response, indent=2, ensure_ascii=False, default=str) + "\n")
        return
    if as_jsonl:
        for row in response["results"]:
            out.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        return
    if response.get("notice"):
        err.write(f"note: {response['notice']}\n")
    if not response["results"]:
        out.write("no results\n")
        return
    lines = []
    if explain and response.get("fusion"):
        f = response["fusion"]
        evidence = f.get("evidence") or {}
        lines.append(f"fusion: BM25 weight {f['keyword_weight']} = shape {f['shape_weight']} x gate {f['gate']}"
                     + (f" [{f['gate_reason']}]" if f.get("gate_reason") else "")
                     + (f" (BM25's best document: IDF coverage {evidence['coverage']}, margin {evidence['margin']}, "
                        f"in semantic's top: {'yes' if evidence['agrees'] else 'no'})" if evidence else ""))
    for rank, hit in enumerate(response["results"], start=1):
        heading = " > ".join(hit["heading_path"]) or hit["title"]
        lines.append(f"{rank:>2}. {hit['path']}:{hit['start_line']}-{hit['end_line']}  [{hit['score']:.4f}]")
        lines.append(f"    {hit['title']} — {heading}")
        lines.append(f"    {hit['snippet']}")
        if explain:
            parts = [f"{name}: rank {v['rank']}, score {v['score']}" + (f", coverage {v['coverage']}" if "coverage" in v else "")
                     for name, v in sorted(hit["explain"].items())]
            lines.append(f"    explain: {'; '.join(parts) or '-'}")
        for other in hit["other_chunks"][:3]:
            lines.append(f"      also: lines {other['start_line']}-{other['end_line']} {' > '.join(other['heading_path'])}")
    out.write("\n".join(lines) + "\n")


def parse(argv: list[str]) -> dict[str, Any] | None:
    """The plain search command line, or None for anything the full parser must see."""
    globals_: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i] != "search":
        name, eq, value = argv[i].partition("=")
        if name not in ("--db", "--config"):
            return None
        if not eq:
            if i + 1 >= len(argv):
                return None
            i, value = i + 1, argv[i + 1]
        globals_[name[2:]] = value
        i += 1
    if i >= len(argv):
        return None
    opts: dict[str, Any] = {"k": "10", "mode": "hybrid", "doc_type": None, "path": None, "since": None,
                            "as_json": False, "as_jsonl": False, "explain": False, "words": []}
    rest = argv[i + 1:]
    j = 0
    while j < len(rest):
        token = rest[j]
        if token == "--":
            opts["words"].extend(rest[j + 1:])
            break
        if token in _FLAGS:
            opts[_FLAGS[token]] = True
        elif token.startswith("-") and token != "-":
            name, eq, value = token.partition("=")
            if name not in _VALUED and token.startswith("-k") and len(token) > 2:
                name, eq, value = "-k", "=", token[2:]
            if name not in _VALUED:
                return None
            if not eq:
                if j + 1 >= len(rest):
                    return None
                j, value = j + 1, rest[j + 1]
            opts[_VALUED[name]] = value
        else:
            opts["words"].append(token)
        j += 1
    try:
        opts["k"] = int(opts["k"])
    except ValueError:
        return None
    text = " ".join(opts["words"])
    if not K_RANGE[0] <= opts["k"] <= K_RANGE[1] or opts["mode"] not in MODES or not text.strip():
        return None
    return {**opts, "text": text, **globals_}


def main(argv: list[str] | None = None) -> None:
    """The ``indexer`` script: the lean path for a daemon-answered search, else click's."""
    args = sys.argv[1:] if argv is None else argv
    global ASKED
    parsed = parse(args) if "search" in args else None
    if parsed is None or not _search_by_daemon(parsed):
        from indexer.cli.app import main as full

        ASKED = parsed is not None
        full(argv)


def _search_by_daemon(p: dict[str, Any]) -> bool:
    from indexer.errors import IndexerError

    try:
        from indexer.cli.daemon_client import ask_at
        from indexer.daemon.control import socket_path
        from indexer.paths import daemon_locations

        where = daemon_locations(p.get("db"), p.get("config"))
        if where is None:  # a config file may move the database: the config decides
            from indexer.config import load_config

            flags = {"db": p["db"]} if p.get("db") else {}
            config = load_config(flags, config_file=Path(p["config"]) if p.get("config") else None)
            where = (config.db, config.runtime_dir)
        request = {"op": "search", "query": p["text"], "mode": p["mode"], "k": p["k"],
                   "filters": filters_for(p["doc_type"], p["path"], p["since"])}
        response = ask_at(socket_path(where[1], where[0]), request, timeout=30)
        if response is None:
            return False
        render(response, as_json=p["as_json"], as_jsonl=p["as_jsonl"], explain=p["explain"],
               out=sys.stdout, err=sys.stderr)
        sys.stdout.flush()
    except IndexerError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        from indexer.cli.app import quiet_broken_pipe

        quiet_broken_pipe()
    except OSError as exc:
        sys.stderr.write(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": ") + "\n")
        sys.exit(1)
    return True

