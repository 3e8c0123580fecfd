"""Search: fusion, filters without post-filtering, safe query syntax, CLI output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from indexer.cli import cli
from indexer.config import load_config
from indexer.documents.search import ChunkHit, SearchOptions, fuse, group_by_document, run_search
from indexer.documents.sync import DocumentSync
from indexer.errors import ValidationError
from indexer.storage.sqlite import driver
from indexer.storage.sqlite.search_store import Filters, bounded_fts_query, fts_query
from indexer.testing import HashEmbedder, WhitespaceTokenCounter

EMBEDDER = HashEmbedder(dim=64)


def build(tmp_path: Path, files: dict[str, str], embed: bool = True) -> Path:
    root = tmp_path / "root"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    db = tmp_path / "search.db"
    config = load_config({"db": str(db), "roots": [str(root)]})
    with DocumentSync(config, embedder=EMBEDDER, counter=WhitespaceTokenCounter()) as sync:
        sync.reconcile()
        if embed:
            sync.embed_pending()
    return db


def search(db: Path, query: str, **options) -> dict:
    conn = driver.connect(db, readonly=True)
    try:
        return run_search(conn, query, SearchOptions(**options), EMBEDDER.embed_query)
    finally:
        conn.close()


CORPUS = {
    "tar.md": "# tar\n\n> Archiving utility.\n\n- Create an archive from files:\n\n`tar cf target.tar file1 file2`\n",
    "ssh.md": "# ssh\n\n> Secure shell client for remote login.\n\n- Connect to a remote server:\n\n`ssh user@host`\n",
    "grep.md": "# grep\n\n> Find patterns in files.\n\n- Search for a pattern within a file:\n\n`grep pattern file`\n",
    "design/cache.md": "---\ntype: design\n---\n# Cache design\n\nThe cache stores archive entries for remote hosts.\n",
}


def test_keyword_work_is_bounded_by_dropping_the_commonest_terms(tmp_path: Path) -> None:
    files = {f"common{i}.md": f"# Note {i}\n\nthe shared word everywhere, item {i}\n" for i in range(30)}
    files["rare.md"] = "# Rare\n\nthe shared word and a zeppelin\n"
    db = build(tmp_path, files)
    conn = driver.connect(db, readonly=True)
    try:
        assert bounded_fts_query(conn, "shared zeppelin", budget=10_000) == '"shared" OR "zeppelin"'
        assert bounded_fts_query(conn, "shared zeppelin", budget=10) == '"zeppelin"'  # 31 chunks > budget
        assert bounded_fts_query(conn, "shared", budget=1) == '"shared"'  # one term: always kept
        assert bounded_fts_query(conn, "shared everywhere", budget=1) in ('"shared"', '"everywhere"')
        assert bounded_fts_query(conn, "!!!") is None
    finally:
        conn.close()


def test_fuse_weights_and_ranks() -> None:
    fused = fuse({"semantic": [(1, 0.9), (2, 0.8)], "keyword": [(2, 7.0), (3, 5.0)]},
                 {"semantic": 1.0, "keyword": 0.5}, rrf_k=60)
    order = [c for c, _, _ in fused]
    assert order == [2, 1, 3]  # in both lists beats first in one
    assert fused[0][2] == {"semantic": {"rank": 2, "score": 0.8}, "keyword": {"rank": 1, "score": 7.0}}
    assert fused[0][1] == pytest.approx(1.0 / 62 + 0.5 / 61)


def test_group_by_document_keeps_best_chunk_first() -> None:
    fused = [ChunkHit(10, 0.5, {}), ChunkHit(11, 0.4, {}), ChunkHit(20, 0.3, {}), ChunkHit(12, 0.2, {})]
    groups = group_by_document(fused, {10: 1, 11: 1, 12: 1, 20: 2}, k=5)
    assert [doc for doc, _ in groups] == [1, 2]
    assert [c for c, _, _ in groups[0][1]] == [10, 11, 12]


@pytest.mark.parametrize("text", ['"unbalanced', "a*", "NEAR(x y)", "-foo", "AND", "(a OR", "über ñandú 東京", "col:value",
                                  "^x", "a + b"])
def test_any_text_is_a_safe_fts_query(tmp_path: Path, text: str) -> None:
    db = build(tmp_path, CORPUS)
    result = search(db, text, mode="keyword")
    assert isinstance(result["results"], list)


def test_fts_query_quotes_every_word_and_drops_stopwords() -> None:
    assert fts_query('say "hi" NEAR me') == '"say" OR "hi" OR "near"'
    assert fts_query("how to") == '"how" OR "to"'  # only stopwords: kept
    assert fts_query("!!! ???") is None


def test_empty_query_is_a_usage_error(tmp_path: Path) -> None:
    db = build(tmp_path, CORPUS)
    with pytest.raises(ValidationError):
        search(db, "   ")
    result = CliRunner().invoke(cli, ["--db", str(db), "search", " "])
    assert result.exit_code == 2


def test_keyword_mode_never_embeds(tmp_path: Path) -> None:
    db = build(tmp_path, CORPUS)

    def forbidden(_: str) -> np.ndarray:
        raise AssertionError("keyword mode must not load or call the model")

    conn = driver.connect(db, readonly=True)
    try:
        result = run_search(conn, "archive", SearchOptions(mode="keyword"), forbidden)
    finally:
        conn.close()
    assert Path(result["results"][0]["path"]).name in ("tar.md", "cache.md")


def test_modes_and_one_result_per_document(tmp_path: Path) -> None:
    db = build(tmp_path, CORPUS)
    for mode in ("hybrid", "semantic", "keyword"):
        result = search(db, "remote login to a server", mode=mode, k=10)
        paths = [r["path"] for r in result["results"]]
        assert len(paths) == len(set(paths))
        assert Path(paths[0]).name == "ssh.md", mode
        top = result["results"][0]
        assert {"path", "title", "heading_path", "start_line", "end_line", "snippet", "score", "explain"} <= set(top)
        if mode == "hybrid":
            assert set(top["explain"]) == {"semantic", "keyword", "summary"}


def test_filters_never_return_fewer_than_k_when_more_match(tmp_path: Path) -> None:
    files = {f"noise/n{i}.md": f"# Noise {i}\n\nremote server login shell connect {i}\n" for i in range(60)}
    files.update({f"wanted/w{i}.md": f"# Wanted {i}\n\nbaking bread with flour and yeast {i}\n" for i in range(8)})
    db = build(tmp_path, files)
    root = (tmp_path / "root").resolve()
    for mode in ("semantic", "hybrid", "keyword"):
        result = search(db, "remote server login", mode=mode, k=5, filters=Filters(path_prefix=str(root / "wanted")))
        if mode == "keyword":  # BM25 only matches documents containing a query word
            assert result["results"] == []
            continue
        paths = [r["path"] for r in result["results"]]
        assert len(paths) == 5 and all("/wanted/" in p for p in paths), mode
    globbed = search(db, "bread", mode="semantic", k=3, filters=Filters(path_glob="*/wanted/w[0-3].md"))
    assert len(globbed["results"]) == 3


def test_type_and_since_filters(tmp_path: Path) -> None:
    db = build(tmp_path, CORPUS)
    only_design = search(db, "archive remote", mode="hybrid", k=10, filters=Filters(document_type="design"))
    assert [Path(r["path"]).name for r in only_design["results"]] == ["cache.md"]
    future = search(db, "archive", mode="hybrid", filters=Filters(since="2999-01-01T00:00:00.000Z"))
    assert future["results"] == []


def test_empty_and_syncing_index_say_so(tmp_path: Path) -> None:
    empty = build(tmp_path / "a", {})
    assert "empty" in search(empty, "anything")["notice"]
    syncing = build(tmp_path / "b", CORPUS, embed=False)
    result = search(syncing, "archive", mode="hybrid")
    assert "still syncing" in result["notice"] and "0 of" in result["notice"]
    assert result["results"]  # keyword hits still come back


def test_cli_json_jsonl_explain(tmp_path: Path) -> None:
    db = build(tmp_path, CORPUS)
    runner = CliRunner()
    out = runner.invoke(cli, ["--db", str(db), "search", "--mode", "keyword", "--json", "pattern", "file"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert Path(data["results"][0]["path"]).name == "grep.md"
    lines = runner.invoke(cli, ["--db", str(db), "search", "--mode", "keyword", "--jsonl", "archive"]).output.splitlines()
    assert lines and all("path" in json.loads(line) for line in lines)
    text = runner.invoke(cli, ["--db", str(db), "search", "--mode", "keyword", "--explain", "archive"]).output
    assert "explain: keyword: rank 1" in text
    typed = runner.invoke(cli, ["--db", str(db), "search", "--mode", "keyword", "--type", "design", "--since", "30d", "archive"])
    assert typed.exit_code == 0 and "cache.md" in typed.output and "tar.md" not in typed.output
    bad = runner.invoke(cli, ["--db", str(db), "search", "--mode", "keyword", "--since", "last tuesday", "x"])
    assert bad.exit_code == 1 and "--since" in bad.output
    missing = runner.invoke(cli, ["--db", str(tmp_path / "none.db"), "search", "x"])
    assert missing.exit_code == 1 and "no database" in missing.output


def test_in_memory_vector_matrix_matches_sqlite_vec_and_follows_commits(tmp_path: Path) -> None:
    from indexer.documents.vector_matrix import VectorMatrix
    from indexer.storage.sqlite.search_store import vector_hits

    db = build(tmp_path, CORPUS)
    query = EMBEDDER.embed_query("remote archive pattern")
    conn = driver.connect(db, readonly=True)
    matrix = VectorMatrix()

    def cached_hits() -> list[tuple[int, float]]:
        matrix.refresh(conn)
        return matrix.nearest(query, 5)

    try:
        exact = vector_hits(conn, query, 5, Filters())
        cached = cached_hits()
        assert [c for c, _ in cached] == [c for c, _ in exact]
        assert [round(s, 5) for _, s in cached] == [round(s, 5) for _, s in exact]
        before = len(matrix.ids)
        (tmp_path / "root" / "new.md").write_text("# New\n\nremote archive pattern all together\n")
        config = load_config({"db": str(db), "roots": [str(tmp_path / "root")]})
        with DocumentSync(config, embedder=EMBEDDER, counter=WhitespaceTokenCounter()) as sync:
            sync.run()  # another connection commits new vectors
        hits = cached_hits()
        assert len(matrix.ids) > before
        assert [c for c, _ in hits] == [c for c, _ in vector_hits(conn, query, 5, Filters())]
    finally:
        conn.close()


def test_vector_matrix_prefilter_keeps_the_exact_top_hits() -> None:
    from indexer.documents.vector_matrix import VectorMatrix

    rng = np.random.default_rng(3)
    centres = rng.standard_normal((40, 64)).astype(np.float32)
    vectors = centres[rng.integers(0, 40, 4000)] + 0.5 * rng.standard_normal((4000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    exact, filtered = VectorMatrix(), VectorMatrix()
    filtered.PREFILTER_ABOVE = 1000  # type: ignore[misc]  # sign bits from 1,000 vectors on
    for m in (exact, filtered):
        m.load(np.arange(100, 4100, dtype=np.int64), vectors)
    assert not exact.bits.size
    assert filtered.bits.shape == (1, 4000)  # 64 dims: one 64-bit word per vector
    hits = 0
    for c in range(20):
        query = centres[c] + 0.5 * rng.standard_normal(64).astype(np.float32)
        query /= np.linalg.norm(query)
        want, got = exact.nearest(query, 10), filtered.nearest(query, 10)
        assert got == sorted(got, key=lambda h: -h[1])  # best first, exact cosine scores
        assert all(abs(s - float(vectors[i - 100] @ query)) < 1e-5 for i, s in got)
        hits += len({i for i, _ in want} & {i for i, _ in got})
    assert hits / 200 >= 0.95


class _RechunkBetweenReads:
    """A real read connection that lets another connection re-chunk every note just before the
    search reads its results' details (what a daemon's sync can do between two reads)."""

    def __init__(self, conn: driver.Connection, rechunk) -> None:
        self._conn, self._rechunk, self.fired = conn, rechunk, False

    def execute(self, sql: str, *args):
        if "c.chunk_index, c.heading_path" in sql and not self.fired:
            self.fired = True
            self._rechunk()
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


def test_a_rechunk_during_a_search_does_not_break_it(tmp_path: Path) -> None:
    """Issue 19: run_search made about ten autocommit reads; a re-chunk between them gave a
    KeyError ("internal error"). Now every read is in one snapshot."""
    db = build(tmp_path, CORPUS)
    root = tmp_path / "root"

    def rechunk() -> None:
        for path in root.rglob("*.md"):
            path.write_text(path.read_text() + "\n## Added\n\nnew words change every chunk\n")
        config = load_config({"db": str(db), "roots": [str(root)]})
        with DocumentSync(config, embedder=EMBEDDER, counter=WhitespaceTokenCounter()) as sync:
            sync.run()

    conn = driver.connect(db, readonly=True)
    try:
        wrapped = _RechunkBetweenReads(conn, rechunk)
        response = run_search(wrapped, "remote archive", SearchOptions(mode="hybrid", k=4), EMBEDDER.embed_query)
        assert wrapped.fired and not conn.in_transaction
        assert {Path(r["path"]).name for r in response["results"]} == {"tar.md", "ssh.md", "grep.md", "cache.md"}
        assert all("new words" not in r["snippet"] for r in response["results"])  # the snapshot's state
        after = run_search(conn, "new words", SearchOptions(mode="keyword", k=4), EMBEDDER.embed_query)
        assert len(after["results"]) == 4  # the next search sees the re-chunked notes
    finally:
        conn.close()


def test_hybrid_ranks_as_semantic_when_bm25_has_no_evidence_and_explains_why(tmp_path: Path) -> None:
    # the query shares only one common word ("file") with most pages: BM25's best document
    # holds a small share of its IDF mass, the gate stays shut, hybrid = semantic
    files = {f"tool{i}.md": f"# tool{i}\n\n> Does thing {i} to a file.\n\n- Use it on a file:\n\n`tool{i} file`\n"
             for i in range(12)}
    files["locker.md"] = "# locker\n\n> Put a lock on a file.\n\n- Lock a file:\n\n`locker file`\n"
    db = build(tmp_path, files)
    query = "how do I keep my screen from going dark while a file downloads"
    semantic = [r["path"] for r in search(db, query, mode="semantic", k=10)["results"]]
    hybrid = search(db, query, mode="hybrid", k=10)
    assert [r["path"] for r in hybrid["results"]] == semantic
    assert hybrid["fusion"]["gate"] == 0.0 and hybrid["fusion"]["keyword_weight"] == 0.0
    assert hybrid["fusion"]["evidence"]["coverage"] < 0.6
    assert "IDF mass" in hybrid["fusion"]["gate_reason"] or "semantic does not rank" in hybrid["fusion"]["gate_reason"]
    # a keyword query whose words the best page holds: the gate opens and BM25 counts
    sure = search(db, "locker lock", mode="hybrid", k=3)
    assert sure["fusion"]["gate"] > 0 and Path(sure["results"][0]["path"]).name == "locker.md"
    assert sure["results"][0]["explain"]["keyword"]["coverage"] == 1.0
    config = tmp_path / "config.toml"
    config.write_text(f'db = "{db}"\nmodel = "hash:64"\n')
    out = CliRunner().invoke(cli, ["--config", str(config), "search", "--direct", "--explain", "locker", "lock"])
    assert out.exit_code == 0, out.output
    text = out.output
    assert "fusion: BM25 weight" in text and "IDF coverage 1.0" in text and "coverage 1.0" in text
    assert f"[{sure['fusion']['gate_reason']}]" in text
