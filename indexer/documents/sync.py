"""Document sync: disk → plan → rows and chunks → vectors. Used by ``reindex`` and the daemon.

The pure parts (discovery rules, change planning, metadata, chunking) live in their own
modules; this one does the I/O: it reads files, writes through
:mod:`indexer.storage.sqlite.document_store`, and runs the embedder in batches across documents,
each batch written in one transaction.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from indexer.config import Config
from indexer.documents import chunking, discovery, markdown_meta, planning
from indexer.documents.embedding import Embedder, embedder_for, fingerprint
from indexer.documents.targets import place, within

__all__ = ["DocumentSync", "FileProblem", "PrepareFailed", "Prepared", "Progress", "ProgressEvent", "Stage", "SyncReport",
           "read_markdown"]
from indexer.documents.sync_events import Progress, ProgressEvent, Stage, SyncReport
from indexer.documents.tokenizer import TokenCounter, token_counter_for
from indexer.storage.sqlite import document_store as store
from indexer.storage.sqlite import driver, migrations, settings_store
from indexer.storage.sqlite import summary_store as summaries
from indexer.timeutil import format_ts, parse_ts

APPLY_BATCH = 200  # documents per write transaction
EMBED_FETCH = 256  # chunks per embedding round (the model batches within it)
FIRST_TIMED_ROUND = 4  # chunks of the first time-bounded round, before its pace is known
RETRY_BASE_S = 30
RETRY_MAX_S = 3600



@dataclass(frozen=True)
class Prepared:
    """A file read, parsed and chunked, ready to be written."""

    meta: markdown_meta.DocMeta
    digest: str
    rows: list[store.ChunkRow]
    metadata: dict[str, Any]
    summary: str


@dataclass(frozen=True)
class PrepareFailed:
    """A file that could not be read, and why."""

    reason: str


def round_size(target_s: float, elapsed_s: float, chunks: int, most: int) -> int:
    """Chunks for the next time-bounded embedding round, from the pace of the last one. Pure."""
    per_chunk = elapsed_s / max(chunks, 1)
    if per_chunk <= 0:
        return most
    return max(1, min(most, int(target_s / per_chunk)))


class FileProblem(Exception):
    """A file that cannot be indexed, with a reason a user can act on."""


def read_markdown(path: Path, max_bytes: int) -> tuple[str, str]:
    """(text, sha256 of the bytes) or :class:`FileProblem`."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise FileProblem(f"file is {size} bytes, over the limit of {max_bytes} (max_file_bytes)")
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileProblem("file vanished before it could be read") from None
    except PermissionError:
        raise FileProblem("permission denied") from None
    except IsADirectoryError:
        raise FileProblem("is a directory") from None
    except OSError as exc:
        raise FileProblem(f"cannot read: {exc.strerror or exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    nul = data.find(b"\x00")
    if nul >= 0:
        raise FileProblem(f"binary content (NUL byte at offset {nul})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileProblem(f"not valid UTF-8 (byte offset {exc.start})") from None
    return text.removeprefix("\ufeff"), digest


def unexpected_reason(exc: BaseException, most: int = 300) -> str:
    """One line naming an unexpected failure: ``could not be indexed: TypeError: message``."""
    message = " ".join(str(exc).split())
    if len(message) > most:
        message = message[:most] + "…"
    return f"could not be indexed: {type(exc).__name__}" + (f": {message}" if message else "")


def retry_time(attempts: int, now: datetime | None = None) -> str:
    delay = min(RETRY_BASE_S * 2 ** max(attempts - 1, 0), RETRY_MAX_S)
    return format_ts((now or datetime.now(UTC)) + timedelta(seconds=delay))


class DocumentSync:
    """One database, one embedder; ``run()`` = reconcile + embed everything pending."""

    def __init__(self, config: Config, *, embedder: Embedder | None = None,
                 counter: TokenCounter | None = None, progress: Progress | None = None) -> None:
        self.config = config
        self.embedder = embedder or embedder_for(config)
        self._counter = counter
        self.progress: Progress = progress or (lambda event: None)
        self._conn: Any = None
        self._timed_round = 0  # the last time-bounded round's size: the next call starts from it

    # -- connection and fingerprint -----------------------------------------------------
    def open(self) -> Any:
        if self._conn is None:
            migrations.migrate(self.config.db)
            self._conn = driver.connect(self.config.db)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> DocumentSync:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def use_embedder(self, embedder: Embedder) -> None:
        """Switch models (a reload): the token counter follows the new model's tokenizer; the
        next reconcile sees the fingerprint change and re-embeds."""
        self.embedder = embedder
        self._counter = None
        self._timed_round = 0

    @property
    def counter(self) -> TokenCounter:
        if self._counter is None:
            self._counter = token_counter_for(self.embedder)
        return self._counter

    @property
    def max_tokens(self) -> int:
        return int(self.embedder.max_tokens)

    def prepare(self) -> bool:
        """Install the embedding fingerprint; True when every document must be re-chunked
        (a new model also re-embeds everything; a new chunker or ``chunk_tokens`` only the
        chunks it changed).

        When the stored fingerprint already names this model, prefixes and chunker, the
        model is not loaded (a no-change reindex stays fast).
        """
        conn = self.open()
        stored = store.get_fingerprint(conn)
        chunker = chunking.chunker_id(self.config.chunk_tokens)
        wanted = {"model": self.embedder.name, "query_prefix": getattr(self.embedder, "query_prefix", ""),
                  "document_prefix": getattr(self.embedder, "document_prefix", ""), "chunker": chunker}
        if stored and all(stored.get(k) == v for k, v in wanted.items()) and store.vector_table_exists(conn):
            return False
        fp = fingerprint(self.embedder, chunker)
        with store.write(conn):
            changed = store.install_fingerprint(conn, fp, rehash=chunking.embed_hash)
        return changed

    # -- reconcile ----------------------------------------------------------------------
    def reconcile(self, roots: Sequence[Path] | None = None, *, paths: Sequence[Path] | None = None,
                  full: bool = False, report: SyncReport | None = None,
                  should_stop: Callable[[], bool] = lambda: False) -> SyncReport:
        """Bring rows and chunks in line with the disk (no embedding). ``should_stop`` is asked
        between write batches; a stopped run has committed whole batches only, and deletes
        nothing (the next run finds the rest)."""
        report = report or SyncReport()
        started = time.perf_counter()
        conn = self.open()
        report.fingerprint_changed = self.prepare() or report.fingerprint_changed
        full = full or report.fingerprint_changed
        roots = tuple(roots if roots is not None else self.config.roots)
        missing = [r for r in roots if not Path(r).is_dir()]
        if missing:  # unmounted or removed: keep its rows rather than delete them all
            report.skipped += len(missing)
            report.warnings.extend({"path": str(r), "reason": "root is not a readable directory; its documents were kept"}
                                   for r in missing)
            roots = tuple(r for r in roots if r not in missing)
        if roots:  # for the commands given no roots when none are configured (documents/roots.py)
            settings_store.remember_roots(conn, [str(r) for r in roots])
        if paths:  # only what was named: the watcher's bursts never walk whole roots
            paths = [Path(place(p)) for p in paths]
            scan = discovery.scan_paths(paths, roots, include=self.config.include, exclude=self.config.exclude)
        else:
            scan = discovery.scan(roots, include=self.config.include, exclude=self.config.exclude)
        disk = scan.files
        report.skipped += len(scan.skipped)
        in_scope = _scope(roots, paths)
        if paths:
            disk = tuple(f for f in disk if in_scope(str(f.path)))
        report.scanned += len(disk)
        docs = [d for d in store.load_docs(conn) if in_scope(d.path)]
        retry_now = self.due_retries() if any(d.sync_status == "failed" for d in docs) else set()
        db_docs = [planning.DbDoc(Path(d.path), d.mtime_ns if d.path not in retry_now else None,
                                  d.size, d.content_hash, d.read_ns) for d in docs]
        planned_ns = time.time_ns()  # before the planner hashes anything
        changes = planning.plan_changes(disk, db_docs, planning.sha256_file, full=full, coverage=scan.coverage)
        report.unchanged += changes.unchanged_count
        report.kept += len(changes.kept)
        report.warnings.extend(_unproven(scan, changes.kept))
        self.progress(ProgressEvent(Stage.PLAN, changes=changes))
        with store.write(conn):
            for old, new in changes.moved:
                store.move_document(conn, str(old.path), str(new.path), new.mtime_ns, new.size)
            report.moved += len(changes.moved)
            for f in changes.touched + changes.verified:  # hashed by the planner: that is their new read time
                store.touch_document(conn, str(f.path), f.mtime_ns, f.size, planned_ns)
            report.touched += len(changes.touched)
        # a moved file is re-read too: its title and type may come from its name (no heading,
        # no front matter), and so the context of its chunks; unchanged chunks keep their vectors
        work = ([(f, "added") for f in changes.added] + [(f, "modified") for f in changes.modified]
                + [(m.new, "moved") for m in changes.moved])
        stopped = False
        for start in range(0, len(work), APPLY_BATCH):
            if should_stop():
                stopped = True
                break
            batch = work[start:start + APPLY_BATCH]
            read_ns = time.time_ns()  # before any file of the batch is read (the racily-clean rule)
            prepared = [(f, kind, self._prepare_file(f)) for f, kind in batch]
            with store.write(conn):
                for f, kind, result in prepared:
                    self._write_file(conn, f, kind, result, report, read_ns)
            self.progress(ProgressEvent(Stage.FILES, done=min(start + APPLY_BATCH, len(work)), total=len(work)))
        if changes.deleted and not stopped:  # last, so new chunks could copy the vectors of deleted ones
            with store.write(conn):
                report.deleted += store.delete_documents(conn, (str(d.path) for d in changes.deleted))
        report.seconds += time.perf_counter() - started
        return report

    def due_retries(self) -> set[str]:
        """Failed documents whose back-off has passed (reconcile re-reads them even if
        unchanged; the daemon queues them when the earliest back-off expires)."""
        due: set[str] = set()
        now = datetime.now(UTC)
        for item in store.failed_documents(self.open(), limit=-1):
            try:
                if item["retry_after"] is None or parse_ts(item["retry_after"]) <= now:
                    due.add(item["path"])
            except ValueError:
                due.add(item["path"])
        return due

    def _prepare_file(self, f: planning.DiskFile) -> Prepared | PrepareFailed:
        """Read, parse and chunk one file outside the write transaction. Whatever the file
        holds, the answer is Prepared or PrepareFailed: an unexpected exception from parsing
        or chunking fails this file (its type and message as the reason), never the batch."""
        try:
            text, digest = read_markdown(f.path, self.config.max_file_bytes)
        except FileProblem as exc:
            return PrepareFailed(str(exc))
        counter = self.counter  # a tokenizer that cannot load is the run's error, not each file's
        try:
            return self._parse_file(f, text, digest, counter)
        except Exception as exc:  # the last resort: one file's bug must not stop the others
            return PrepareFailed(unexpected_reason(exc))

    def _parse_file(self, f: planning.DiskFile, text: str, digest: str, counter: TokenCounter) -> Prepared:
        meta = markdown_meta.parse_document(text, f.path)
        chunks = chunking.chunk_markdown(text, counter, target_tokens=min(self.config.chunk_tokens, self.max_tokens),
                                         max_tokens=self.max_tokens, title=meta.title, body_start=meta.body_start_line)
        rows = [store.ChunkRow(c.index, c.chunk_hash, tuple(c.heading_path), c.start_line, c.end_line,
                               c.token_count, c.text, c.embed_text) for c in chunks]
        metadata = {"front_matter": meta.front_matter, "size": f.size, "mtime_ns": f.mtime_ns}
        if meta.front_matter_error:
            metadata["front_matter_error"] = meta.front_matter_error
        json.dumps(metadata, allow_nan=False)  # what the write will store: refused here, not in the batch
        summary = markdown_meta.document_summary(text, meta.title, body_start=meta.body_start_line)
        return Prepared(meta, digest, rows, metadata, summary)

    def _write_file(self, conn: Any, f: planning.DiskFile, kind: str, result: Prepared | PrepareFailed,
                    report: SyncReport, read_ns: int | None = None) -> None:
        path = str(f.path)
        if isinstance(result, PrepareFailed):
            attempts = store.failure_attempts(conn, path) + 1
            store.record_failure(conn, path=path, reason=result.reason, retry_after=retry_time(attempts),
                                 metadata={"size": f.size, "mtime_ns": f.mtime_ns})
            report.failed += 1
            report.failures.append({"path": path, "reason": result.reason})
            return
        store.upsert_document(conn, path=path, title=result.meta.title, document_type=result.meta.document_type,
                              content_hash=result.digest, chunks=result.rows,
                              metadata={**result.metadata, **({"read_ns": read_ns} if read_ns is not None else {})},
                              model=self.embedder.name, summary=result.summary)
        report.chunks_written += len(result.rows)
        if kind == "added":
            report.added += 1
        elif kind == "modified":
            report.modified += 1

    # -- embedding ----------------------------------------------------------------------
    def embed_pending(self, *, report: SyncReport | None = None,
                      should_stop: Callable[[], bool] = lambda: False, fetch: int = EMBED_FETCH,
                      round_s: float = 0.0) -> SyncReport:
        """Embed every chunk without a vector, each round one transaction; ``should_stop`` is
        asked before each round (the daemon's signals and new events), so stopping never leaves
        a half-written round. A round is ``fetch`` chunks, or, with ``round_s``, as many (up
        to ``fetch``) as the last round's pace says fit in ``round_s`` seconds: whoever waits
        for ``should_stop`` (a save during a long backlog) waits about that long, not a batch."""
        report = report or SyncReport()
        conn = self.open()
        started = time.perf_counter()
        total = store.count_unembedded(conn)
        done = 0
        size = min(fetch, self._timed_round or FIRST_TIMED_ROUND) if round_s > 0 else fetch
        self.progress(ProgressEvent(Stage.EMBED, done=0, total=total))
        while not should_stop():
            batch = store.unembedded_chunks(conn, size)
            if not batch:
                break
            t0 = time.perf_counter()
            vectors = self.embedder.embed_documents([c.embed_text for c in batch])
            if round_s > 0:
                size = self._timed_round = round_size(round_s, time.perf_counter() - t0, len(batch), fetch)
            with store.write(conn):  # compare-and-set: rows re-chunked meanwhile by another process are left
                written = store.store_vectors(conn, [(c.id, c.chunk_hash) for c in batch], vectors)
                store.finish_documents(conn, sorted({c.document_id for c in batch}), self.embedder.name)
            done += len(batch)
            report.chunks_embedded += len(written)
            self.progress(ProgressEvent(Stage.EMBED, done=done, total=max(total, done)))
        while not should_stop():  # then the document summaries (schema 0003), one round each
            pending = summaries.unembedded_summaries(conn, fetch)
            if not pending:
                break
            vectors = self.embedder.embed_documents([text for _, text in pending])
            with store.write(conn):
                summaries.store_summary_vectors(conn, [d for d, _ in pending], vectors)
        report.embed_seconds += time.perf_counter() - started
        return report

    def forget(self, removed: Sequence[Path], kept: Sequence[Path]) -> int:
        """Delete the documents under roots taken out of the config (not those that are also
        under a kept root). Returns how many went."""
        conn = self.open()
        gone, still = _scope(removed, None), _scope(kept, None)
        doomed = [d.path for d in store.load_docs(conn) if gone(d.path) and not still(d.path)]
        if not doomed:
            return 0
        with store.write(conn):
            return store.delete_documents(conn, doomed)

    def pending_chunks(self) -> int:
        return store.count_unembedded(self.open())

    def run(self, roots: Sequence[Path] | None = None, *, paths: Sequence[Path] | None = None,
            full: bool = False) -> SyncReport:
        report = self.reconcile(roots, paths=paths, full=full)
        self.embed_pending(report=report)
        return report


def _unproven(scan: discovery.ScanResult, kept: Sequence[planning.DbDoc]) -> list[dict[str, str]]:
    """Warnings for what the scan could not look at: each unreadable place or path outside
    the roots, with how many stored documents were kept because of it."""
    blind = set(scan.coverage.unreadable)
    out = []
    for item in scan.skipped:
        outside = item.reason == "not under any root of this run"
        if not outside and item.path not in blind:
            continue  # a symlink not followed: not a warning
        below = within([item.path])
        count = sum(1 for d in kept if below(str(d.path)))
        what = "nothing there was indexed or deleted" if outside else "nothing below it was deleted"
        out.append({"path": item.path, "reason": f"{item.reason}; {what}"
                    + (f" ({count} stored document{'s' if count != 1 else ''} kept)" if count else "")})
    return out


def _scope(roots: Sequence[Path], paths: Sequence[Path] | None) -> Callable[[str], bool]:
    """Which stored paths this run owns: under a root, or (with paths) under a given path."""
    return within(paths if paths else roots)
