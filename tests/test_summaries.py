"""Document summaries (schema 0003): written with the chunks, embedded after them, kept while
their text is unchanged, back-filled for databases made before the migration, searched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.config import load_config
from indexer.documents.markdown_meta import document_summary
from indexer.documents.search import Fusion, SearchOptions, fuse_documents, run_search, semantic_documents
from indexer.documents.sync import DocumentSync
from indexer.documents.vector_matrix import SummaryMatrix
from indexer.storage.sqlite import driver
from indexer.storage.sqlite.search_store import Filters, summary_hits
from indexer.storage.sqlite.vectors import from_blob
from indexer.testing import HashEmbedder, WhitespaceTokenCounter

TAR = "# tar\n\n> Archiving utility.\n> More information: <https://example.org>.\n\n- Create an archive:\n\n`tar cf a.tar b`\n"
SS = "# ss\n\n> Utility to investigate sockets.\n\n- Show all TCP ports:\n\n`ss -t`\n"
RFC = ("- Feature Name: nll\n- Start Date: 2017-08-02\n\n## Summary\n[summary]: #summary\n\n"
       "Extend the borrow checker to non-lexical lifetimes.\n\n## Motivation\n\nMore text here.\n")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "notes"
    (r / "rfcs").mkdir(parents=True)
    (r / "tar.md").write_text(TAR)
    (r / "ss.md").write_text(SS)
    (r / "rfcs" / "2094-nll.md").write_text(RFC)
    return r


def make_sync(db: Path, root: Path, embedder: HashEmbedder) -> DocumentSync:
    config = load_config({"db": str(db), "roots": [str(root)], "chunk_tokens": 60})
    return DocumentSync(config, embedder=embedder, counter=WhitespaceTokenCounter())


def query(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    conn = driver.connect(db)
    try:
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


def summaries(db: Path) -> dict[str, tuple[str, bytes | None]]:
    return {Path(p).name: (t, e) for p, t, e in query(
        db, "SELECT d.file_path, s.text, s.embedding FROM document_summaries AS s "
            "JOIN document_index AS d ON d.id = s.document_id")}


def test_document_summary_is_the_title_and_the_first_prose_paragraph() -> None:
    assert document_summary(TAR, "tar") == "tar\nArchiving utility."
    assert document_summary(RFC, "2094-nll") == "2094 nll\nExtend the borrow checker to non-lexical lifetimes."
    assert document_summary("# Only a title\n\n- a list\n", "Only a title") == "Only a title"
    assert document_summary("```\ncode\n```\n\nProse after code.\n", "x") == "x\nProse after code."
    long = "# T\n\n" + " ".join(f"w{i}" for i in range(200)) + "\n"
    assert len(document_summary(long, "T", max_words=10).split("\n")[1].split()) == 10


def test_document_summary_follows_the_chunker_fence_rules() -> None:
    # a line with an info string inside a fence does not close it (CommonMark, as the chunker reads it)
    assert document_summary("```\n```python\nnot prose\n```\n\nProse after.\n", "x") == "x\nProse after."
    # a backtick "fence" whose info string holds a backtick is inline code, so prose
    assert document_summary("```a`b\n", "x") == "x\n```a`b"


def test_sync_writes_and_embeds_one_summary_per_document(tmp_path: Path, root: Path) -> None:
    db, embedder = tmp_path / "i.db", HashEmbedder(dim=32)
    with make_sync(db, root, embedder) as sync:
        sync.run()
    got = summaries(db)
    assert set(got) == {"tar.md", "ss.md", "2094-nll.md"}
    for name, text in (("tar.md", TAR), ("ss.md", SS), ("2094-nll.md", RFC)):
        summary, blob = got[name]
        assert summary == document_summary(text, Path(name).stem if name.startswith("2094") else Path(name).stem)
        assert np.allclose(from_blob(blob), embedder.embed_documents([summary])[0])


def test_a_summary_is_re_embedded_only_when_its_text_changes(tmp_path: Path, root: Path) -> None:
    db, embedder = tmp_path / "i.db", HashEmbedder(dim=32)
    with make_sync(db, root, embedder) as sync:
        sync.run()
    before = summaries(db)
    (root / "tar.md").write_text(TAR + "\n- List an archive:\n\n`tar tf a.tar`\n")  # summary unchanged
    (root / "ss.md").write_text(SS.replace("investigate sockets", "show open sockets"))
    calls = embedder.texts_embedded
    with make_sync(db, root, embedder) as sync:
        report = sync.run()
    after = summaries(db)
    assert after["tar.md"] == before["tar.md"]
    assert after["ss.md"][0] == "ss\nUtility to show open sockets." and after["ss.md"][1] != before["ss.md"][1]
    assert embedder.texts_embedded - calls == report.chunks_embedded + 1  # the changed chunks + one summary


def test_deleting_a_document_deletes_its_summary(tmp_path: Path, root: Path) -> None:
    db = tmp_path / "i.db"
    with make_sync(db, root, HashEmbedder(dim=32)) as sync:
        sync.run()
    (root / "ss.md").unlink()
    with make_sync(db, root, HashEmbedder(dim=32)) as sync:
        sync.run()
    assert set(summaries(db)) == {"tar.md", "2094-nll.md"}


def test_a_database_from_before_the_migration_gets_summaries_without_re_embedding_chunks(
        tmp_path: Path, root: Path) -> None:
    db, embedder = tmp_path / "i.db", HashEmbedder(dim=32)
    with make_sync(db, root, embedder) as sync:
        sync.run()
    conn = driver.connect(db)  # the database as the indexer before 0003 left it
    conn.execute("DROP TABLE document_summaries")
    conn.execute("DELETE FROM schema_migrations WHERE name = '0003_document_summaries'")
    conn.commit()
    conn.close()
    calls = embedder.texts_embedded
    with make_sync(db, root, embedder) as sync:
        report = sync.run()
    assert report.chunks_embedded == 0 and embedder.texts_embedded - calls == 3  # the three summaries only
    assert all(blob is not None for _, blob in summaries(db).values())
    assert {s for (s,) in query(db, "SELECT sync_status FROM document_index")} == {"synced"}


def test_a_model_change_clears_summary_vectors_and_re_embeds_them(tmp_path: Path, root: Path) -> None:
    db = tmp_path / "i.db"
    with make_sync(db, root, HashEmbedder(dim=32)) as sync:
        sync.run()
    with make_sync(db, root, HashEmbedder(dim=48, name="other-model")) as sync:
        sync.run()
    assert {len(from_blob(blob)) for _, blob in summaries(db).values()} == {48}


def test_summary_hits_score_every_summary_and_honour_filters(tmp_path: Path, root: Path) -> None:
    db, embedder = tmp_path / "i.db", HashEmbedder(dim=32)
    with make_sync(db, root, embedder) as sync:
        sync.run()
    vector = embedder.embed_query("archiving utility")
    conn = driver.connect(db, readonly=True)
    try:
        exact = summary_hits(conn, vector, 10, Filters())
        assert len(exact) == 3 and exact == sorted(exact, key=lambda h: -h[1])
        in_memory_matrix = SummaryMatrix()
        in_memory_matrix.refresh(conn)
        in_memory = in_memory_matrix.nearest(vector, 10)
        assert [d for d, _ in in_memory] == [d for d, _ in exact]
        assert [s for _, s in in_memory] == pytest.approx([s for _, s in exact])
        only_rfcs = summary_hits(conn, vector, 10, Filters(path_prefix=str(root / "rfcs")))
        paths = {p for (p,) in (query(db, "SELECT file_path FROM document_index WHERE id = ?", (d,))[0]
                                for d, _ in only_rfcs)}
        assert paths == {str(root / "rfcs" / "2094-nll.md")}
    finally:
        conn.close()


def test_a_document_found_by_its_summary_alone_is_shown_with_its_first_chunk(tmp_path: Path, root: Path) -> None:
    db, embedder = tmp_path / "i.db", HashEmbedder(dim=32)
    with make_sync(db, root, embedder) as sync:
        sync.run()
    conn = driver.connect(db, readonly=True)
    try:
        options = SearchOptions(mode="semantic", k=3, fusion=Fusion(summary_weight=0.99))
        response = run_search(conn, "investigate sockets", options, embedder.embed_query)
    finally:
        conn.close()
    top = response["results"][0]
    assert Path(top["path"]).name == "ss.md" and top["start_line"] == 1 and "summary" in top["explain"]


# --- the pure fusion steps, on hand-made scores ------------------------------------------

def test_semantic_documents_mixes_best_chunk_and_summary_with_floors_for_missing_ones() -> None:
    doc_of = {1: 10, 2: 10, 3: 20}
    chunk_hits = [(1, 0.8), (2, 0.6), (3, 0.5)]
    summary_hits_ = [(20, 0.9), (30, 0.4)]
    scores = semantic_documents(chunk_hits, summary_hits_, doc_of, summary_weight=0.25)
    assert scores[10] == pytest.approx(0.75 * 0.8 + 0.25 * 0.4)  # no summary hit: the lowest summary score
    assert scores[20] == pytest.approx(0.75 * 0.5 + 0.25 * 0.9)
    assert scores[30] == pytest.approx(0.75 * 0.5 + 0.25 * 0.4)  # no chunk hit: the lowest chunk score
    assert semantic_documents(chunk_hits, [], doc_of, 0.25) == {10: 0.8, 20: 0.5}
    assert semantic_documents(chunk_hits, summary_hits_, doc_of, 0.0) == {10: 0.8, 20: 0.5}


def test_score_fusion_adds_weighted_max_normalised_bm25() -> None:
    semantic, keyword = {1: 0.6, 2: 0.5}, {2: 10.0, 3: 5.0}
    scores = fuse_documents(semantic, keyword, Fusion(method="score"), keyword_weight=0.2)
    assert scores == pytest.approx({1: 0.6, 2: 0.5 + 0.2, 3: 0.5 + 0.1})


def test_rrf_fusion_and_one_sided_inputs() -> None:
    semantic, keyword = {1: 0.6, 2: 0.5}, {2: 10.0}
    scores = fuse_documents(semantic, keyword, Fusion(method="rrf", rrf_k=60), keyword_weight=0.5)
    assert scores == pytest.approx({1: 1 / 61, 2: 1 / 62 + 0.5 / 61})
    assert fuse_documents(semantic, {}, Fusion(), 0.3) == semantic
    assert fuse_documents({}, keyword, Fusion(), 0.3) == keyword


def test_keyword_weight_follows_the_query_shape() -> None:
    fusion = Fusion(keyword_weight_question=0.01, keyword_weight_keyword=0.7)
    assert fusion.keyword_weight("how do I list open ports") == 0.01
    assert fusion.keyword_weight("ss -tulpn") == 0.7
