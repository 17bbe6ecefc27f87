"""The native engine (libivcr, through its C ABI) against the Python path on the same query rows:
the same videos with the same scores, the same moments, the same evidence, on an index of every
shared video and real annotation queries in English and Chinese (with their lexical matches)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ivcr_engine.errors import IndexDamaged, InvalidArgument, NotFound
from ivcr_engine.index import Index
from ivcr_engine.native import NativeIndex

from .native_queries import line_queries, python_rows, texts


@pytest.fixture(scope="module")
def both(shared_index):
    root, _ = shared_index
    py = Index(root)
    nat = NativeIndex(root)
    yield root, py, nat
    nat.close()
    py.close()


def same_lines(a, b) -> bool:
    return len(a) == len(b) and all(x[0] == y[0] and x[3] == y[3] and abs(x[1] - y[1]) < 1e-6 and abs(x[2] - y[2]) < 1e-6
                                    for x, y in zip(a, b))


def same_hits(py_hits, nat_hits):
    assert [h.video_index for h in py_hits] == [h.ref for h in nat_hits]
    np.testing.assert_allclose([(h.start, h.end) for h in py_hits], [(h.start, h.end) for h in nat_hits], atol=1e-4)
    for p, n in zip(py_hits, nat_hits):
        assert p.score == pytest.approx(n.score, abs=1e-5)
        assert p.moment_score == pytest.approx(n.moment_score, abs=1e-4)
        assert same_lines(p.evidence.lines, n.lines)
        assert p.evidence.concepts == n.concepts
        if p.evidence.line_match:
            np.testing.assert_allclose(p.evidence.line_match, n.line_match, atol=1e-4, equal_nan=True)
        else:  # a query without text: the engine marks its lines unscored
            assert all(math.isnan(m) for m in n.line_match)
        for c, s in p.evidence.channel_scores.items():
            assert n.channel_scores[c] == pytest.approx(s, abs=1e-4), c


def test_ranking_matches_the_python_path_for_a_batch_in_one_call(both, shared_data):
    root, py, nat = both
    batch = texts(shared_data) + line_queries(py)
    dense, lexical = python_rows(py, batch)
    k = 5
    refs, scores = py.rank_videos({**dense, "lexical": np.array(batch)[:, None]}, k)
    got = nat.search_vectors(dense, k, moments=0, lexical=lexical)
    assert len(got) == len(batch)
    for r, hits in enumerate(got):
        n = int((refs[r] >= 0).sum())
        assert [h.ref for h in hits] == refs[r, :n].tolist(), batch[r]
        np.testing.assert_allclose([h.score for h in hits], scores[r, :n], atol=1e-5)
    assert any(m[0] for m in lexical), "the material should exercise the lexical channel"


def test_hits_with_moments_and_evidence_match(both, shared_data):
    root, py, nat = both
    batch = texts(shared_data, 30) + line_queries(py)
    dense, lexical = python_rows(py, batch)
    got = nat.search_vectors(dense, 3, moments=2, lexical=lexical)
    for r, t in enumerate(batch):
        rows = {c: q[r:r + 1] for c, q in dense.items()} | {"lexical": np.array([[t]])}
        same_hits(py.search(rows, k=3, moments_per_video=2), got[r])


def test_allow_deny_weights_and_a_picture_like_query(both):
    root, py, nat = both
    n = py.num_refs()
    like = py.moment_vector(2, 0.0, 6.0)
    np.testing.assert_allclose(nat.moment_vector(2, 0.0, 6.0), like, atol=1e-6)
    w = {"visual": 1.0}
    for allow, deny in ((None, None), ([0, 2, 3], None), (None, [2]), (list(range(n)), [1, 4])):
        py_hits = py.search({"visual": like}, k=n, weights=w, allow=allow, deny=deny)
        same_hits(py_hits, nat.search_vectors({"visual": like}, n, weights=w, allow=allow, deny=deny)[0])
    assert nat.search_vectors({"visual": like}, 3, weights=w, allow=[])[0] == []


def test_moments_in_a_window_match(both, shared_data):
    root, py, nat = both
    dense, lexical = python_rows(py, ["a bird"])
    for v in range(py.num_refs()):
        d = float(py.video(v).duration)
        for window in (None, (0.0, d / 2), (d / 3, d)):
            want = py.moments(dense, [v], window=window, top=2)[0]
            got = nat.moments(dense, [v], window=window, top=2, lexical=lexical[0])
            assert len(want) == len(got), (v, window)
            np.testing.assert_allclose([(m.moment.start, m.moment.end, m.moment.score) for m in want],
                                       [(h.start, h.end, h.moment_score) for h in got], atol=1e-4)
            for m, h in zip(want, got):
                assert same_lines(m.evidence.lines, h.lines)


def test_bad_input_gets_a_clear_status(both, tmp_path):
    root, py, nat = both
    dense, _ = python_rows(py, ["a bird"])
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
    assert len(nat.search_vectors(dense, 10**9, moments=0)[0]) == len(py)


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
