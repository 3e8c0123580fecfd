"""The document tools: search, read_document, index_status, reindex.

Search, status and reindex ask the running daemon over its control socket (warm model,
vectors in memory) and answer from the database in this process when no daemon runs; every
result says which (``served_by``). These are plain ``def`` tools: the SDK runs them on worker
threads, so a socket wait or a first model load never stalls the server's event loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from indexer.mcp import reading
from indexer.mcp.common import IDEMPOTENT_WRITE, MAX_OUTPUT_CHARS, READ, ServerState, respond, tool_errors

SNIPPET_MAX = 240
NO_DAEMON = ("no daemon runs: answered from the database in this process "
             "(start one with `indexer daemon` or `indexer service install --now` for warm searches)")


class Also(BaseModel):
    heading_path: list[str]
    start_line: int
    end_line: int


class Hit(BaseModel):
    path: str
    title: str | None
    document_type: str | None
    heading_path: list[str]
    start_line: int
    end_line: int
    snippet: str
    score: float
    also: list[Also] = Field(description="other matching sections of the same document (at most 3)")


class SearchResult(BaseModel):
    query: str
    mode: str
    results: list[Hit]
    notice: str | None = None
    served_by: Literal["daemon", "direct"]
    daemon_pid: int | None = None


class Document(BaseModel):
    path: str
    title: str | None
    start_line: int
    end_line: int
    total_lines: int
    text: str
    truncated: bool
    next_start_line: int | None = Field(None, description="pass as start_line to read on")


class DaemonInfo(BaseModel):
    pid: int
    state: str
    uptime_s: float | None = None
    queued_paths: int | None = None
    chunks_to_embed: int | None = None


class FailedFile(BaseModel):
    path: str
    reason: str | None
    attempts: int | None = None
    retry_after: str | None = None


class IndexStatus(BaseModel):
    served_by: Literal["daemon", "direct"]
    database: str
    exists: bool
    documents: dict[str, int]
    chunks: int
    embedded: int
    coverage: float
    model: str | None
    backend: str | None
    roots: list[str]
    pending_migrations: list[str]
    daemon: DaemonInfo | None
    failed_files: list[FailedFile] = Field(description="at most 20")


class ReindexResult(BaseModel):
    served_by: Literal["daemon", "direct"]
    done: bool
    ticket: int | None = None
    report: dict[str, Any] | None = Field(None, description="files scanned/added/modified/moved/deleted, chunks embedded")


def _hit(raw: dict[str, Any]) -> Hit:
    snippet = raw["snippet"] if len(raw["snippet"]) <= SNIPPET_MAX else raw["snippet"][: SNIPPET_MAX - 1] + "…"
    also = [Also(heading_path=o["heading_path"], start_line=o["start_line"], end_line=o["end_line"])
            for o in raw.get("other_chunks", [])[:3]]
    return Hit(path=raw["path"], title=raw["title"], document_type=raw["document_type"],
               heading_path=raw["heading_path"], start_line=raw["start_line"], end_line=raw["end_line"],
               snippet=snippet, score=raw["score"], also=also)


def search_text(result: SearchResult) -> str:
    who = f"daemon pid {result.daemon_pid}" if result.served_by == "daemon" else "direct"
    lines = [f"{len(result.results)} result(s) for {result.query!r} ({result.mode}, served by {who})"]
    if result.notice:
        lines.append(f"note: {result.notice}")
    for rank, hit in enumerate(result.results, start=1):
        heading = " > ".join(hit.heading_path) or hit.title or ""
        lines.append(f"{rank}. {hit.path}:{hit.start_line}-{hit.end_line} [{hit.score:.4f}] {hit.title} — {heading}")
        lines.append(f"   {hit.snippet}")
        for other in hit.also:
            lines.append(f"   also: lines {other.start_line}-{other.end_line} {' > '.join(other.heading_path)}")
    return "\n".join(lines)


def daemon_roots(state: ServerState) -> list[Path]:
    """The roots the running daemon watches (none when no daemon answers)."""
    from indexer.cli.daemon_client import ask

    info = ask(state.config, {"op": "status"}, timeout=5)
    return [Path(r) for r in ((info or {}).get("daemon") or {}).get("roots", [])]


def allowed_roots(state: ServerState) -> list[Path]:
    """Where read_document may read (indexed files only): the configured roots, the running
    daemon's, and those remembered in the database (indexed by a `reindex --root` before)."""
    from indexer.documents.roots import remembered_roots

    roots = list(state.config.roots)
    for root in [*daemon_roots(state), *remembered_roots(state.config.db)]:
        if root not in roots:
            roots.append(root)
    return roots


def is_indexed(state: ServerState) -> Any:
    from indexer.storage.sqlite import document_store, driver

    def check(path: str) -> bool:
        if not Path(state.config.db).exists():
            return False
        conn = driver.connect(state.config.db, readonly=True)
        try:
            return document_store.document_row(conn, path) is not None
        finally:
            conn.close()

    return check


def register(server: MCPServer, state: ServerState, names: set[str]) -> None:
    if "search" in names:
        @server.tool(annotations=READ)
        def search(
            query: Annotated[str, Field(min_length=1, max_length=1000)],
            mode: Annotated[Literal["hybrid", "keyword", "semantic"],
                            Field(description="keyword: BM25 only")] = "hybrid",
            k: Annotated[int, Field(ge=1, le=25, description="documents")] = 8,
            document_type: Annotated[str | None, Field(max_length=200)] = None,
            path: Annotated[str | None, Field(max_length=4096, description="a directory or a glob")] = None,
            since: Annotated[str | None, Field(max_length=64, description="ISO date/time, or 7d, 12h, 30m")] = None,
        ) -> Annotated[CallToolResult, SearchResult]:
            """Search the user's markdown notes by meaning and keywords: the best documents,
            each with path, lines, heading and snippet of its best section."""
            with tool_errors():
                return respond(*_search(state, query, mode, k, document_type, path, since))

    if "read_document" in names:
        @server.tool(annotations=READ)
        def read_document(
            path: Annotated[str, Field(min_length=1, max_length=4096, description="a hit's path, or relative to a root")],
            start_line: Annotated[int, Field(ge=1)] = 1,
            max_lines: Annotated[int, Field(ge=1, le=2000)] = 200,
        ) -> Annotated[CallToolResult, Document]:
            """Read lines of an indexed file (at most max_lines, 40,000 characters);
            next_start_line continues."""
            with tool_errors():
                real = reading.resolve_indexed(path, allowed_roots(state), is_indexed(state))
                text = reading.read_text(real, state.config.max_file_bytes)
                title = _title(state, str(real))
                p = reading.page(text, start_line, max_lines, MAX_OUTPUT_CHARS)
                doc = Document(path=str(real), title=title, **p.__dict__)
                return respond(doc, reading.numbered(p, str(real), title))

    if "index_status" in names:
        @server.tool(annotations=READ)
        def index_status() -> Annotated[CallToolResult, IndexStatus]:
            """The index: documents per status, chunks embedded, model, roots, daemon state,
            failed files."""
            with tool_errors():
                return respond(_status(state))

    if "reindex" in names:
        @server.tool(annotations=IDEMPOTENT_WRITE)
        def reindex(
            paths: Annotated[list[Annotated[str, Field(min_length=1, max_length=4096)]] | None,
                             Field(max_length=100, description="only these, under the roots")] = None,
            full: Annotated[bool, Field(description="re-hash every file")] = False,
            wait: Annotated[bool, Field(description="wait for the sync to finish")] = True,
        ) -> Annotated[CallToolResult, ReindexResult]:
            """Sync the roots (or some paths) with the disk now and embed what changed (the
            daemon does this by itself as files change)."""
            with tool_errors():
                return respond(_reindex(state, paths or [], full, wait))


def _title(state: ServerState, path: str) -> str | None:
    from indexer.storage.sqlite import document_store, driver

    conn = driver.connect(state.config.db, readonly=True)
    try:
        row = document_store.document_row(conn, path)
        return row["title"] if row else None
    finally:
        conn.close()


def _search(state: ServerState, query: str, mode: str, k: int, document_type: str | None, path: str | None,
            since: str | None) -> tuple[SearchResult, str]:
    from indexer.cli.daemon_client import ask
    from indexer.cli.search_lean import parse_since, path_filter

    filters: dict[str, Any] = {"document_type": document_type, "since": parse_since(since) if since else None,
                               **(path_filter(path) if path else {})}
    filters = {key: value for key, value in filters.items() if value is not None}
    response = ask(state.config, {"op": "search", "query": query, "mode": mode, "k": k, "filters": filters}, timeout=30)
    if response is not None:
        served: dict[str, Any] = {"served_by": "daemon", "daemon_pid": (response.get("served_by") or {}).get("daemon_pid")}
    else:
        from indexer.documents.search import SearchOptions, search_database
        from indexer.storage.sqlite.search_store import Filters

        response = search_database(state.config, query, SearchOptions(mode=mode, k=k, filters=Filters(**filters)),
                                   embedder=state)
        served = {"served_by": "direct"}
    notices = [n for n in (response.get("notice"), None if served["served_by"] == "daemon" else NO_DAEMON) if n]
    result = SearchResult(query=query, mode=mode, results=[_hit(r) for r in response["results"]],
                          notice="; ".join(notices) or None, **served)
    return result, search_text(result)


def _status(state: ServerState) -> IndexStatus:
    from indexer.cli.daemon_client import ask

    info = ask(state.config, {"op": "status"}, timeout=5)
    served: Literal["daemon", "direct"] = "daemon" if info is not None else "direct"
    if info is None:
        from indexer.documents.status import collect_status
        from indexer.lockfile import running_pid

        info = collect_status(state.config.db)
        pid = running_pid(state.config.db)
        info["daemon"] = None if pid is None else {"pid": pid, "state": "not answering on its socket"}
        info["backend"] = state.config.backend
    daemon = info.get("daemon")
    if not (roots := (daemon or {}).get("roots")):
        from indexer.documents.roots import effective_roots

        roots = [str(r) for r in effective_roots(state.config)]
    chunks = info.get("chunks") or {}
    return IndexStatus(
        served_by=served, database=info["database"], exists=info["exists"],
        documents=info.get("documents") or {}, chunks=chunks.get("chunks", 0), embedded=chunks.get("embedded", 0),
        coverage=round(info.get("coverage", 0.0), 4), model=info.get("model"), backend=info.get("backend"),
        roots=roots, pending_migrations=info.get("pending_migrations", []),
        daemon=DaemonInfo(**{k: daemon.get(k) for k in DaemonInfo.model_fields if k in daemon}) if daemon else None,
        failed_files=[FailedFile(**f) for f in info.get("failed", [])[:20]],
    )


def _reindex(state: ServerState, paths: list[str], full: bool, wait: bool) -> ReindexResult:
    from indexer.cli.daemon_client import reindex_by_daemon
    from indexer.errors import ConfigError, ValidationError

    asked = reindex_by_daemon(state.config, paths, full=full, wait=wait, timeout=None if wait else 30)
    if asked is not None:
        answer, rest = asked
        if rest:  # a server has no roots of its own beside the daemon's: one writer per root
            raise ValidationError(f"{rest[0]} is outside the daemon's roots")
        assert answer is not None
        report = answer.get("report")
        if report is not None:
            report = {**report, "failures": report.get("failures", [])[:20]}
        return ReindexResult(served_by="daemon", done=bool(answer.get("done")), ticket=answer.get("ticket"),
                             report=report)
    from indexer.documents.roots import effective_roots
    from indexer.documents.sync import DocumentSync
    from indexer.documents.targets import partition

    roots = effective_roots(state.config)
    if not roots:
        raise ConfigError("no daemon runs and no roots are configured or indexed yet: set `roots` in the config, "
                          "run `indexer reindex --root DIR`, or start `indexer daemon --root DIR`")
    targets, outside = partition(paths, roots)
    if outside:
        raise ValidationError(f"{outside[0]} is outside the configured roots ({', '.join(map(str, roots))})")
    with DocumentSync(state.config) as sync:
        report = sync.run(roots, paths=targets or None, full=full).as_dict()
    report["failures"] = report["failures"][:20]
    return ReindexResult(served_by="direct", done=True, report=report)
