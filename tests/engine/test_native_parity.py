"""The engine (libivcr through its C ABI, which ``Index`` now runs on) against the Python path it
replaced, kept in this folder as the reference (reference_*.py): the same videos with the same
scores, the same moments, the same evidence, on an index of every shared video and real
annotation queries in English and Chinese with their lexical matches."""
from __future__ import annotations


import numpy as np
import pytest

from ivcr_engine.errors import IndexDamaged, InvalidArgument, NotFound
from ivcr_engine.index import Index
from ivcr_engine.native import NativeIndex

from .native_queries import line_queries, python_rows, texts
from .reference_search import Reference


@pytest.fixture(scope="module")
def both(shared_index):
    root, _ = shared_index
    index = Index(root)
    yield root, index, Reference(index)
    index.close()


def same_lines(a, b) -> bool:
    return len(a) == len(b) and all(x[0] == y[0] and x[3] == y[3] and abs(x[1] - y[1]) < 1e-6 and abs(x[2] - y[2]) < 1e-6
                                    for x, y in zip(a, b))


def same_hits(want, got):
    """Hits of the reference and of the engine: the same videos, moments, scores and evidence."""
    assert [h.video_index for h in want] == [h.video_index for h in got]
    np.testing.assert_allclose([(h.start, h.end) for h in want], [(h.start, h.end) for h in got], atol=1e-4)
    for p, n in zip(want, got):
        assert p.score == pytest.approx(n.score, abs=1e-5)
        assert p.moment_score == pytest.approx(n.moment_score, abs=1e-4)
        assert same_lines(p.evidence.lines, n.evidence.lines)
        assert p.evidence.concepts == n.evidence.concepts
        assert len(p.evidence.line_match) == len(n.evidence.line_match)
        np.testing.assert_allclose(p.evidence.line_match, n.evidence.line_match, atol=1e-4, equal_nan=True)
        assert set(p.evidence.channel_scores) == set(n.evidence.channel_scores)
        for c, s in p.evidence.channel_scores.items():
            assert n.evidence.channel_scores[c] == pytest.approx(s, abs=1e-4), c


def test_ranking_matches_the_python_path_for_a_batch_in_one_call(both, shared_data):
    root, index, ref = both
    batch = texts(shared_data) + line_queries(index)
    dense, lexical = python_rows(index, batch)
    rows = {**dense, "lexical": np.array(batch)[:, None]}
    for k in (1, 5, 100):
        want_i, want_s = ref.rank(rows, k)
        got_i, got_s = index.rank_videos(rows, k)
        np.testing.assert_array_equal(got_i, want_i)
        np.testing.assert_allclose(got_s, want_s, atol=1e-5)
    assert any(m[0] for m in lexical), "the material should exercise the lexical channel"
    # the dense channels alone, and the words alone
    np.testing.assert_array_equal(index.rank_videos(dense, 5)[0], ref.rank(dense, 5)[0])
    words = {"lexical": np.array(batch)[:, None]}
    np.testing.assert_array_equal(index.rank_videos(words, 5)[0], ref.rank(words, 5)[0])


def test_hits_with_moments_and_evidence_match(both, shared_data):
    root, index, ref = both
    batch = texts(shared_data, 30) + line_queries(index)
    dense, lexical = python_rows(index, batch)
    for r, t in enumerate(batch):
        rows = {c: q[r:r + 1] for c, q in dense.items()} | {"lexical": np.array([[t]])}
        same_hits(ref.search(rows, k=3, moments_per_video=2), index.search(rows, k=3, moments_per_video=2))
        for v in range(0, index.num_refs(), 3):  # evidence of a span, with and without the query
            a = ref.evidence(v, 0.0, 8.0, rows)
            b = index.evidence(v, 0.0, 8.0, rows)
            assert same_lines(a.lines, b.lines) and a.concepts == b.concepts
            np.testing.assert_allclose(a.line_match, b.line_match, atol=1e-4, equal_nan=True)
    assert index.evidence(1, 0.0, 8.0).line_match == []


def test_allow_deny_weights_and_a_picture_like_query(both):
    root, index, ref = both
    n = index.num_refs()
    like = index.moment_vector(2, 0.0, 6.0)
    rows = np.asarray(index.channels["visual"][index.mapped.clip_rows(2, 0.0, 6.0)], np.float32).mean(0, keepdims=True)
    np.testing.assert_allclose(like, rows / np.linalg.norm(rows), atol=1e-6)
    w = {"visual": 1.0}
    for allow, deny in ((None, None), ([0, 2, 3], None), (None, [2]), (list(range(n)), [1, 4])):
        same_hits(ref.search({"visual": like}, k=n, weights=w, allow=allow, deny=deny),
                  index.search({"visual": like}, k=n, weights=w, allow=allow, deny=deny))
    assert index.search({"visual": like}, 3, weights=w, allow=[]) == []


def test_moments_in_a_window_match(both, shared_data):
    root, index, ref = both
    for text in ["a bird", *line_queries(index, 3)]:
        rows = index.encode_queries([text])
        videos = list(range(index.num_refs()))
        for window in (None, (0.0, 5.0), (3.0, 1e9)):
            for edges in ("lines",):
                want = ref.moments(rows, videos + [2], window=window, top=2)
                got = index.moments(rows, videos + [2], window=window, top=2)  # a video asked twice: twice
                assert len(want) == len(got)
                for a, b in zip(want, got):
                    assert len(a) == len(b), (text, window)
                    np.testing.assert_allclose([(m.moment.start, m.moment.end, m.moment.score) for m in a],
                                               [(m.moment.start, m.moment.end, m.moment.score) for m in b], atol=1e-4)
                    for x, y in zip(a, b):
                        assert same_lines(x.evidence.lines, y.evidence.lines)
                        assert x.evidence.concepts == y.evidence.concepts


def test_bad_input_gets_a_clear_status(both, tmp_path):
    root, index, _ = both
    nat = index.native
    dense, _ = python_rows(index, ["a bird"])
    with pytest.raises(InvalidArgument, match="k must be >= 1"):
        nat.search_vectors(dense, 0)
    with pytest.raises(InvalidArgument, match="no channel 'nope'"):
        nat.search_vectors({"nope": np.ones((1, 4), np.float32)}, 3)
    with pytest.raises(InvalidArgument, match="-d rows"):
        nat.search_vectors({"visual": np.ones((1, 7), np.float32)}, 3)
    with pytest.raises(InvalidArgument, match="NaN"):
        nat.search_vectors({"visual": np.full((1, nat.channel_dim("visual")), np.nan, np.float32)}, 3)
    with pytest.raises(InvalidArgument, match="out of range"):
        nat.search_vectors(dense, 3, allow=[10_000])
    with pytest.raises(InvalidArgument, match="out of range"):
        nat.moments(dense, [-1])
    with pytest.raises(InvalidArgument, match="no clip between"):
        nat.moment_vector(0, 1e6, 2e6)
    with pytest.raises(InvalidArgument, match="empty"):
        nat.search("   ")
    with pytest.raises(NotFound, match="meta.sqlite missing"):
        NativeIndex(tmp_path / "nowhere")
    # a huge k is the whole index, as in the Python path
    assert len(nat.search_vectors(dense, 10**9, moments=0)[0]) == len(index)


def test_a_damaged_index_is_refused_and_nothing_is_written(shared_index, tmp_path):
    import shutil

    root, _ = shared_index
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    visual = copy / "vectors" / "visual.bin"
    before = (copy / "meta.sqlite").read_bytes()
    with open(visual, "r+b") as f:
        f.truncate(visual.stat().st_size // 2)
    with pytest.raises(IndexDamaged, match="visual.bin holds"):
        NativeIndex(copy)
    assert (copy / "meta.sqlite").read_bytes() == before

