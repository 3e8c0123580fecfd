"""Document sync end to end on real files and a real database (the model faked, for speed)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from indexer.config import load_config
from indexer.documents import chunking
from indexer.documents.sync import DocumentSync
from indexer.storage.sqlite import driver
from indexer.storage.sqlite.vectors import from_blob
from indexer.testing import HashEmbedder, WhitespaceTokenCounter


def _words(stem: str) -> str:
    return " ".join(f"{stem}{i}" for i in range(30))


GUIDE = f"""# Guide

Intro paragraph about the tool. {_words("intro")}

## Install

Run the installer with care and patience. {_words("install")}

## Usage

Use the tool every day for great results. {_words("usage")}

## Troubleshooting

When things break, read the logs first. {_words("trouble")}
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "notes"
    r.mkdir()
    (r / "guide.md").write_text(GUIDE)
    (r / "sub").mkdir()
    (r / "sub" / "other.md").write_text("# Other\n\nSomething else entirely, about gardening.\n")
    return r


@pytest.fixture
def embedder() -> HashEmbedder:
    return HashEmbedder(dim=32)


def make_sync(db: Path, root: Path, embedder: HashEmbedder, **flags) -> DocumentSync:
    config = load_config({"db": str(db), "roots": [str(root)], "chunk_tokens": 60, **flags})
    return DocumentSync(config, embedder=embedder, counter=WhitespaceTokenCounter())


def rows(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    conn = driver.connect(db)
    try:
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


def statuses(db: Path) -> dict[str, str]:
    return {Path(p).name: s for p, s in rows(db, "SELECT file_path, sync_status FROM document_index")}


def assert_consistent(db: Path) -> None:
    """No orphan chunk, vector or FTS row; every embedded chunk has exactly one vector."""
    assert rows(db, "SELECT count(*) FROM document_chunks WHERE document_id NOT IN (SELECT id FROM document_index)") == [(0,)]
    assert rows(db, "SELECT count(*) FROM chunk_vectors WHERE rowid NOT IN (SELECT id FROM document_chunks)") == [(0,)]
    assert rows(db, "SELECT count(*) FROM document_chunks WHERE embedded_at IS NOT NULL AND id NOT IN "
                    "(SELECT rowid FROM chunk_vectors)") == [(0,)]
    conn = driver.connect(db)
    try:
        conn.execute("INSERT INTO chunk_fts(chunk_fts, rank) VALUES ('integrity-check', 1)")
    finally:
        conn.close()


def test_new_files_go_pending_then_synced(db_path: Path, root: Path, embedder: HashEmbedder) -> None:
    with make_sync(db_path, root, embedder) as sync:
        report = sync.reconcile()
        assert report.added == 2
        assert set(statuses(db_path).values()) == {"pending"}
        sync.embed_pending(report=report)
    assert set(statuses(db_path).values()) == {"synced"}
    for title, count, blob, synced_at, model in rows(
        db_path, "SELECT title, chunk_count, embedding_blob, last_synced_at, embedding_model FROM document_index"
    ):
        assert title in ("Guide", "Other") and count >= 1 and synced_at.endswith("Z") and model == embedder.name
        vector = from_blob(blob)
        assert vector.shape == (32,) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    assert rows(db_path, "SELECT sum(chunk_count) FROM document_index") == rows(db_path, "SELECT count(*) FROM document_chunks")
    assert_consistent(db_path)


def test_second_run_changes_nothing(db_path: Path, root: Path, embedder: HashEmbedder) -> None:
    with make_sync(db_path, root, embedder) as sync:
        sync.run()
        before = rows(db_path, "SELECT id, content_hash, updated_at, sync_status FROM document_index ORDER BY id")
        calls = embedder.texts_embedded
        report = sync.run()
    assert (report.added, report.modified, report.unchanged, report.chunks_embedded) == (0, 0, 2, 0)
    assert embedder.texts_embedded == calls
    assert rows(db_path, "SELECT id, content_hash, updated_at, sync_status FROM document_index ORDER BY id") == before


def test_one_section_edit_reembeds_one_chunk(db_path: Path, root: Path, embedder: HashEmbedder) -> None:
    with make_sync(db_path, root, embedder) as sync:
        sync.run()
        chunks_before = rows(db_path, "SELECT count(*) FROM document_chunks")[0][0]
        assert chunks_before >= 4
        (root / "guide.md").write_text(GUIDE.replace("read the logs first", "read the logs and the docs first"))
        report = sync.reconcile()
        assert report.modified == 1 and statuses(db_path)["guide.md"] == "stale"
        sync.embed_pending(report=report)
    assert report.chunks_embedded == 1
    assert statuses(db_path)["guide.md"] == "synced"
    assert_consistent(db_path)


def test_touch_only_refreshes_stat(db_path: Path, root: Path, embedder: HashEmbedder) -> None:
    with make_sync(db_path, root, embedder) as sync:
        sync.run()
        os.utime(root / "guide.md", ns=(1_000_000_000, 1_000_000_000))
        report = sync.run()
    assert (report.touched, report.modified, report.chunks_embedded) == (1, 0, 0)
    assert statuses(db_path)["guide.md"] == "synced"
    query = "SELECT json_extract(metadata, '$.mtime_ns') FROM document_index WHERE file_path LIKE '%guide.md'"
    assert rows(db_path, query) == [(1_000_000_000,)]


def test_a_same_size_edit_in_the_same_timestamp_tick_is_still_read(db_path: Path, root: Path, embedder: HashEmbedder,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Racily clean (git's rule): an edit saved after the file was read, of the same size and
    (on a coarse clock) the same mtime, left the stored stat true; it was never re-read."""
    from indexer.documents import planning

    note = root / "sub" / "other.md"
    with make_sync(db_path, root, embedder) as sync:
        sync.run()
        stat = note.stat()
        edited = note.read_text().replace("gardening", "beekeepin")
        assert len(edited) == len(note.read_text())
        note.write_text(edited)
        os.utime(note, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the same tick: the stat is as stored
        report = sync.run()
        assert report.modified == 1
        assert rows(db_path, "SELECT count(*) FROM document_chunks WHERE text LIKE '%beekeepin%'") == [(1,)]
        # an unchanged racy file is hashed and its new read time recorded; once its mtime is
        # older than that (less the margin) it is not hashed again
        read_ns = "SELECT json_extract(metadata, '$.read_ns') FROM document_index WHERE file_path = ?"
        before = rows(db_path, read_ns, (str(note),))[0][0]
        hashed: list[str] = []
        real = planning.sha256_file
        monkeypatch.setattr(planning, "sha256_file", lambda path: hashed.append(str(path)) or real(path))
        monkeypatch.setattr(planning, "RACY_MARGIN_NS", 10**18)  # every file is racy: hashed
        report = sync.run()
        assert sorted(hashed) == sorted(str(p) for p in root.rglob("*.md"))
        assert (report.modified, report.touched, report.unchanged) == (0, 0, 2)
        assert rows(db_path, read_ns, (str(note),))[0][0] > before
        monkeypatch.setattr(planning, "RACY_MARGIN_NS", 0)  # none is: the stat vouches again
        hashed.clear()
        sync.run()
        assert hashed == []


def test_delete_removes_row_chunks_vectors_and_fts(db_path: Path, root: Path, embedder: HashEmbedder) -> None:
    with make_sync(db_path, root, embedder) as sync:
        sync.run()
        (root / "guide.md").unlink()
        report = sync.run()
    assert report.deleted == 1 and set(statuses(db_path)) == {"other.md"}
    assert rows(db_path, "SELECT count(*) FROM chunk_fts WHERE chunk_fts MATCH 'installer'") == [(0,)]
    assert_consistent(db_path)


def test_move_keeps_vectors_and_embeds_nothing(db_path: Path, root: Path, embedder: HashEmbedder) -> None:
    with make_sync(db_path, root, embedder) as sync:
        sync.run()
        vectors = rows(db_path, "SELECT count(*) FROM chunk_vectors")
        (root / "guide.md").rename(root / "sub" / "renamed guide.md")
        calls = embedder.texts_embedded
        report = sync.run()
    assert (report.moved, report.added, report.deleted) == (1, 0, 0)
    assert embedder.texts_embedded == calls
    assert statuses(db_path) == {"renamed guide.md": "synced", "other.md": "synced"}
    assert rows(db_path, "SELECT count(*) FROM chunk_vectors") == vectors
    assert_consistent(db_path)


def test_a_moved_file_titled_by_its_name_is_rechunked_like_a_fresh_index(tmp_path: Path, root: Path,
                                                                          embedder: HashEmbedder) -> None:
    """No heading, no front matter: the title is the file name, and it is part of the chunks'
    context. A move keeps the row and vectors, but the chunks must follow the new name (on
    c4e58b8 they kept the old one; found by the differential tests)."""
    text = "No heading: the title is the name.\n\n## Section\n\nBody of the section.\n"
    (root / "old name.md").write_text(text)
    db = tmp_path / "moved.db"
    with make_sync(db, root, embedder) as sync:
        sync.run()
        (root / "old name.md").rename(root / "sub" / "new name.md")
        report = sync.run()
    assert (report.moved, report.added, report.deleted) == (1, 0, 0)
    fresh = tmp_path / "fresh.db"
    with make_sync(fresh, root, HashEmbedder(dim=32)) as sync:
        sync.run()
    sql = ("SELECT d.title, c.chunk_hash FROM document_chunks c JOIN document_index d ON d.id = c.document_id "
           "WHERE d.file_path LIKE '%new name.md' ORDER BY c.chunk_index")
    assert rows(db, sql) == rows(fresh, sql) and rows(db, sql)[0][0] == "new name"
    assert statuses(db)["new name.md"] == "synced"
    assert_consistent(db)


def test_move_plus_edit_reuses_unchanged_chunk_vectors(db_path: Path, root: Path, embedder: HashEmbedder) -> None:
    with make_sync(db_path, root, embedder) as sync:
        sync.run()
        (root / "guide.md").unlink()
        (root / "moved.md").write_text(GUIDE + "\n## Extra\n\nA brand new section.\n")
        report = sync.run()
    assert report.added == 1 and report.deleted == 1
    assert report.chunks_embedded == 1  # only the new section; the rest copied by chunk hash
    assert_consistent(db_path)


@pytest.mark.parametrize("content, reason", [
    (b"# Bad\n\xff\xfe not utf-8\n", "not valid UTF-8"),
    (b"# Bin\x00ary\n", "binary content"),
])
def test_bad_file_fails_with_reason_then_recovers(db_path: Path, root: Path, embedder: HashEmbedder,
                                                   content: bytes, reason: str) -> None:
    (root / "bad.md").write_bytes(content)
    with make_sync(db_path, root, embedder) as sync:
        report = sync.run()
        assert report.failed == 1 and reason in report.failures[0]["reason"]
        assert statuses(db_path)["bad.md"] == "failed"
        (meta,) = rows(db_path, "SELECT json_extract(metadata, '$.last_error'), json_extract(metadata, '$.attempts') "
                                "FROM document_index WHERE sync_status = 'failed'")
        assert reason in meta[0] and meta[1] == 1
        assert statuses(db_path)["guide.md"] == "synced"  # one bad file does not stop the rest
        (root / "bad.md").write_text("# Fixed\n\nNow it is fine.\n")
        sync.run()
    assert statuses(db_path)["bad.md"] == "synced"
    query = "SELECT json_extract(metadata, '$.last_error') FROM document_index WHERE file_path LIKE '%bad.md'"
    assert rows(db_path, query) == [(None,)]


def test_oversized_file_fails_and_retry_waits_for_back_off(db_path: Path, root: Path, embedder: HashEmbedder) -> None:
    (root / "big.md").write_text("# Big\n\n" + "word " * 1000)
    with make_sync(db_path, root, embedder, max_file_bytes=3000) as sync:
        sync.run()
        assert statuses(db_path)["big.md"] == "failed"
        sync.run()  # unchanged and inside its back-off: not retried
        attempts = rows(db_path, "SELECT json_extract(metadata, '$.attempts') FROM document_index WHERE sync_status='failed'")
        assert attempts == [(1,)]
        conn = driver.connect(db_path)
        conn.execute("UPDATE document_index SET metadata = json_set(metadata, '$.retry_after', '2000-01-01T00:00:00.000Z') "
                     "WHERE sync_status = 'failed'")
        conn.close()
        sync.run()  # back-off over: retried, fails again, attempts grow
        attempts = rows(db_path, "SELECT json_extract(metadata, '$.attempts') FROM document_index WHERE sync_status='failed'")
    assert attempts == [(2,)]


def test_model_change_marks_everything_stale_and_rebuilds(db_path: Path, root: Path, embedder: HashEmbedder) -> None:
    with make_sync(db_path, root, embedder) as sync:
        sync.run()
    other = HashEmbedder(dim=48, name="another-model")
    with make_sync(db_path, root, other) as sync:
        report = sync.reconcile()
        assert report.fingerprint_changed
        assert set(statuses(db_path).values()) == {"stale"}
        sync.embed_pending(report=report)
    assert set(statuses(db_path).values()) == {"synced"}
    total = rows(db_path, "SELECT count(*) FROM document_chunks")[0][0]
    assert report.chunks_embedded == total
    (blob,) = rows(db_path, "SELECT embedding_blob FROM document_index LIMIT 1")[0]
    assert from_blob(blob).shape == (48,)
    assert rows(db_path, "SELECT embedding_model FROM document_index GROUP BY embedding_model") == [("another-model",)]
    assert_consistent(db_path)


def test_a_new_chunker_keeps_the_vectors_of_the_chunks_it_did_not_change(
        db_path: Path, root: Path, embedder: HashEmbedder) -> None:
    with make_sync(db_path, root, embedder) as sync:
        sync.run()
    before = rows(db_path, "SELECT id, chunk_hash FROM document_chunks ORDER BY id")
    vectors = dict(rows(db_path, "SELECT rowid, embedding FROM chunk_vectors"))
    # the database as an older chunker left it: another hash formula, and one chunk whose text
    # the new chunker makes differently
    conn = driver.connect(db_path)
    conn.execute("UPDATE document_chunks SET chunk_hash = 'md-2:' || id")
    changed_id = before[1][0]
    conn.execute("UPDATE document_chunks SET embed_text = embed_text || ' (old cut)' WHERE id = ?", (changed_id,))
    conn.execute("UPDATE embedding_settings SET value = json_set(value, '$.chunker', 'md-2') WHERE key = 'fingerprint'")
    conn.commit()
    conn.close()
    calls = embedder.texts_embedded
    with make_sync(db_path, root, embedder) as sync:
        report = sync.run()
    assert report.fingerprint_changed and report.modified == 2  # every document re-chunked
    assert embedder.texts_embedded - calls == 1 and report.chunks_embedded == 1  # only the changed chunk
    after = rows(db_path, "SELECT id, chunk_hash FROM document_chunks ORDER BY id")
    assert {h for _, h in after} == {h for _, h in before}
    kept = [chunk_id for chunk_id, _ in after if chunk_id in vectors]
    assert len(kept) == len(before) - 1 and changed_id not in kept
    assert all(dict(rows(db_path, "SELECT rowid, embedding FROM chunk_vectors"))[k] == vectors[k] for k in kept)
    assert set(statuses(db_path).values()) == {"synced"}
    assert rows(db_path, "SELECT json_extract(value, '$.chunker') FROM embedding_settings WHERE key = 'fingerprint'") \
        == [(chunking.chunker_id(60),)]
    assert_consistent(db_path)


def test_a_chunker_upgrade_re_chunks_every_document_even_if_the_first_run_is_limited(
        db_path: Path, root: Path, embedder: HashEmbedder) -> None:
    with make_sync(db_path, root, embedder) as sync:
        sync.run()
    conn = driver.connect(db_path)
    conn.execute("UPDATE document_chunks SET embed_text = embed_text || ' (old cut)'")  # what md-2 made
    conn.execute("UPDATE embedding_settings SET value = json_set(value, '$.chunker', 'md-2') WHERE key = 'fingerprint'")
    conn.commit()
    conn.close()
    with make_sync(db_path, root, embedder) as sync:
        first = sync.run(paths=[root / "guide.md"])  # e.g. `indexer reindex guide.md`, or a stopped run
        assert first.fingerprint_changed and first.modified == 1
        later = sync.run()
    assert not later.fingerprint_changed and later.modified == 1  # other.md, still owed its re-chunk
    assert rows(db_path, "SELECT count(*) FROM document_chunks WHERE embed_text LIKE '%(old cut)'") == [(0,)]
    assert set(statuses(db_path).values()) == {"synced"}
    with make_sync(db_path, root, embedder) as sync:
        assert sync.run().modified == 0  # and then nothing more
    assert_consistent(db_path)


def test_explicit_paths_restrict_the_run(db_path: Path, root: Path, embedder: HashEmbedder) -> None:
    with make_sync(db_path, root, embedder) as sync:
        sync.run()
        (root / "guide.md").write_text(GUIDE + "\nMore.\n")
        (root / "sub" / "other.md").unlink()
        report = sync.run(paths=[root / "guide.md"])
    assert report.modified == 1 and report.deleted == 0  # other.md is outside this run
    assert set(statuses(db_path)) == {"guide.md", "other.md"}


def test_indexing_twice_is_idempotent_with_full(db_path: Path, root: Path, embedder: HashEmbedder) -> None:
    with make_sync(db_path, root, embedder) as sync:
        sync.run()
        hashes = rows(db_path, "SELECT chunk_hash FROM document_chunks ORDER BY document_id, chunk_index")
        calls = embedder.texts_embedded
        report = sync.run(full=True)
    assert report.modified == 2 and report.chunks_embedded == 0 and embedder.texts_embedded == calls
    assert rows(db_path, "SELECT chunk_hash FROM document_chunks ORDER BY document_id, chunk_index") == hashes
    assert set(statuses(db_path).values()) == {"synced"}


def test_a_backlog_embeds_the_most_recently_changed_document_first(db_path: Path, root: Path,
                                                                    embedder: HashEmbedder) -> None:
    import time

    for i in range(30):
        (root / f"bulk{i:02}.md").write_text(f"# Bulk {i}\n\nbacklog text {i}\n")
    sync = make_sync(db_path, root, embedder)
    sync.reconcile()  # a backlog: nothing embedded yet
    time.sleep(0.01)  # timestamps have millisecond resolution
    edited = sorted(root.glob("*.md"))[15]  # neither the first nor the last id
    edited.write_text("# Edited\n\nchanged while the backlog waits\n")
    sync.reconcile(paths=[edited])
    rounds = iter([False])  # one round of one chunk, then stop (as the daemon does between rounds)
    sync.embed_pending(fetch=1, should_stop=lambda: next(rounds, True))
    (first,) = rows(db_path, "SELECT d.file_path FROM document_chunks c JOIN document_index d ON d.id = c.document_id "
                             "WHERE c.embedded_at IS NOT NULL")
    assert first == (str(edited),)
    sync.close()


def test_a_new_chunk_tokens_re_chunks_on_the_next_run_and_keeps_unchanged_vectors(
        db_path: Path, root: Path, embedder: HashEmbedder) -> None:
    with make_sync(db_path, root, embedder) as sync:  # chunk_tokens 60
        sync.run()
    before = dict(rows(db_path, "SELECT chunk_hash, embedding FROM document_chunks JOIN chunk_vectors "
                                "ON chunk_vectors.rowid = document_chunks.id"))
    sizes = rows(db_path, "SELECT max(token_count) FROM document_chunks")[0][0]
    calls = embedder.texts_embedded
    with make_sync(db_path, root, embedder, chunk_tokens=200) as sync:  # the config changed; no --full
        report = sync.run()
    assert report.fingerprint_changed and report.modified == 2  # every document re-chunked
    after = dict(rows(db_path, "SELECT chunk_hash, embedding FROM document_chunks JOIN chunk_vectors "
                               "ON chunk_vectors.rowid = document_chunks.id"))
    assert rows(db_path, "SELECT max(token_count) FROM document_chunks")[0][0] > sizes  # bigger chunks now
    kept = set(after) & set(before)
    assert kept and all(after[h] == before[h] for h in kept)  # other.md's one chunk is the same text
    assert embedder.texts_embedded - calls == report.chunks_embedded == len(set(after) - set(before))
    assert set(statuses(db_path).values()) == {"synced"}
    with make_sync(db_path, root, embedder, chunk_tokens=200) as sync:
        assert sync.run().modified == 0  # and then nothing more
    assert_consistent(db_path)


def test_chunker_id_names_the_chunk_size_unless_it_is_the_default() -> None:
    assert chunking.chunker_id(chunking.DEFAULT_TARGET_TOKENS) == chunking.CHUNKER_VERSION
    assert load_config({}).chunk_tokens == chunking.DEFAULT_TARGET_TOKENS
    assert len({chunking.chunker_id(n) for n in (60, 120, 200, 254)}) == 4
