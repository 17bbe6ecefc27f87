"""Native span scoring against the plain references, on random and adversarial inputs."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ivcr_engine.span import SpanScorer

from . import reference as ref


def batch(rng, n_videos, max_clips, dyadic=True, min_clips=0):
    lengths = rng.integers(min_clips, max_clips + 1, size=n_videos)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n = int(offsets[-1])
    # Multiples of 1/8: every sum is exact, so native and reference agree bit for bit and ties are real.
    scores = (rng.integers(-8, 9, size=n) / 8).astype(np.float32) if dyadic else rng.normal(size=n).astype(np.float32)
    t0 = np.zeros(n)
    t1 = np.zeros(n)
    for v in range(n_videos):
        o, T = offsets[v], lengths[v]
        step = rng.uniform(0.5, 3.0)
        t0[o:o + T] = np.arange(T) * step
        t1[o:o + T] = t0[o:o + T] + step
    return scores, offsets, t0, t1


def assert_same(res, scores, offsets, t0, t1, exact=True, **kw):
    m = kw.get("top_m", 5)
    for v in range(len(offsets) - 1):
        o, e = offsets[v], offsets[v + 1]
        want = ref.spans(scores[o:e], t0[o:e], t1[o:e], **kw)
        got_n = int(np.sum(res.first_clip[v] >= 0))
        assert got_n == len(want), (v, got_n, len(want))
        for r, (a, b, sc, i, j) in enumerate(want):
            if exact:
                assert (res.first_clip[v, r] - o, res.last_clip[v, r] - o) == (i, j), (v, r)
                assert (res.start[v, r], res.end[v, r]) == (a, b)
            assert abs(res.score[v, r] - sc) <= 1e-5
        assert np.all(np.isnan(res.start[v, got_n:])) and np.all(np.isneginf(res.score[v, got_n:]))
        assert np.all(res.first_clip[v, got_n:] == -1)
        assert res.score.shape == (len(offsets) - 1, m)


@pytest.mark.parametrize("method", ["contrast", "boundary"])
@pytest.mark.parametrize("params", [dict(min_len=1, max_len=8, top_m=5, nms_iou=0.5),
                                    dict(min_len=2, max_len=32, top_m=3, nms_iou=0.3),
                                    dict(min_len=1, max_len=1000, top_m=10, nms_iou=0.7)])
def test_matches_reference(method, params):
    rng = np.random.default_rng(hash((method, params["max_len"])) % 2**32)
    scores, offsets, t0, t1 = batch(rng, 80, 40)
    kw = dict(params, method=method)
    if method == "contrast":
        kw["length_weight"] = 0.25
    res = SpanScorer(**kw).score(scores, offsets, t0, t1)
    assert_same(res, scores, offsets, t0, t1, **kw)


@pytest.mark.parametrize("method", ["contrast", "boundary"])
def test_float_scores_match_within_tolerance(method):
    rng = np.random.default_rng(4)
    scores, offsets, t0, t1 = batch(rng, 50, 60, dyadic=False)
    res = SpanScorer(method=method, max_len=16).score(scores, offsets, t0, t1)
    assert_same(res, scores, offsets, t0, t1, exact=False, method=method, max_len=16)


def test_a_clear_peak_is_found_by_both_methods():
    s = np.zeros(60, np.float32)
    s[20:30] = 1.0  # clips 20..29 are the moment
    t0 = np.arange(60) * 2.0
    for method in ("contrast", "boundary"):
        r = SpanScorer(method=method, max_len=20, smooth=1).score_one(s, t0, t0 + 2.0)
        assert (r.start[0, 0], r.end[0, 0]) == (40.0, 60.0), method


def test_adversarial_shapes():
    scorer = SpanScorer(min_len=3, max_len=5, top_m=4)
    # empty videos, a video shorter than min_len, constant scores, a single clip
    scores = np.array([1, 1, 2, 2, 2, 2, 2, 7], np.float32)
    offsets = np.array([0, 0, 2, 7, 8], np.int64)
    t0 = np.arange(8, dtype=float)
    res = scorer.score(scores, offsets, t0, t0 + 1)
    assert np.all(res.first_clip[0] == -1) and np.all(res.first_clip[1] == -1) and np.all(res.first_clip[3] == -1)
    assert_same(res, scores, offsets, t0, t0 + 1, min_len=3, max_len=5, top_m=4)
    # no videos at all
    res = scorer.score(np.zeros(0, np.float32), np.array([0], np.int64), np.zeros(0), np.zeros(0))
    assert res.start.shape == (0, 4)
    # huge max_len is clipped to the video
    r = SpanScorer(max_len=10**6).score_one(np.array([0, 1, 1, 0], np.float32), np.arange(4.0), np.arange(4.0) + 1)
    assert r.first_clip[0, 0] == 1 and r.last_clip[0, 0] == 2


def test_bad_input_is_rejected():
    s = np.array([0.1, np.nan, 0.3], np.float32)
    t = np.arange(3.0)
    with pytest.raises(ValueError, match="NaN"):
        SpanScorer().score_one(s, t, t + 1)
    ok = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="clip_end"):
        SpanScorer().score_one(ok, t, t - 1)
    with pytest.raises(ValueError, match="min_len"):
        SpanScorer(min_len=4, max_len=2).score_one(ok, t, t + 1)
    with pytest.raises(ValueError, match="offsets"):
        SpanScorer().score(ok, np.array([0, 2], np.int64), t, t + 1)
    with pytest.raises(ValueError, match="method"):
        SpanScorer(method="peak")
    with pytest.raises(ValueError, match="same length"):
        SpanScorer().score(ok, np.array([0, 3], np.int64), t[:2], t[:2])


def test_rank_moments_is_the_global_merge():
    rng = np.random.default_rng(8)
    scores, offsets, t0, t1 = batch(rng, 30, 25, min_clips=1)
    bias = rng.normal(size=30).astype(np.float32)
    scorer = SpanScorer(top_m=3, max_len=10)
    per = scorer.score(scores, offsets, t0, t1)
    mom = scorer.rank(scores, offsets, t0, t1, video_bias=bias, k=12)
    flat = [(float(per.score[v, r] + bias[v]), v, r) for v in range(30) for r in range(3) if per.first_clip[v, r] >= 0]
    flat.sort(key=lambda x: (-np.float32(x[0]), x[1], x[2]))
    want = flat[:12]
    assert list(mom.video) == [v for _, v, _ in want]
    np.testing.assert_allclose(mom.score, [s for s, _, _ in want], atol=1e-6)
    np.testing.assert_array_equal(mom.start, [per.start[v, r] for _, v, r in want])


def test_vectorised_baseline_agrees():
    rng = np.random.default_rng(2)
    scores, offsets, t0, t1 = batch(rng, 40, 50, dyadic=False, min_clips=1)
    kw = dict(min_len=1, max_len=12, top_m=5, nms_iou=0.5, length_weight=0.1)
    fast = ref.spans_vectorised(scores, offsets, t0, t1, **kw)
    res = SpanScorer(method="contrast", **kw).score(scores, offsets, t0, t1)
    for v, kept in enumerate(fast):
        assert [(k[3] + offsets[v], k[4] + offsets[v]) for k in kept] == \
               [(a, b) for a, b in zip(res.first_clip[v], res.last_clip[v]) if a >= 0]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), method=st.sampled_from(["contrast", "boundary"]), min_len=st.integers(1, 4),
       extra=st.integers(0, 12), top_m=st.integers(1, 6), nms=st.sampled_from([0.0, 0.3, 0.5, 1.0]),
       smooth=st.integers(1, 5))
def test_property_random(seed, method, min_len, extra, top_m, nms, smooth):
    rng = np.random.default_rng(seed)
    scores, offsets, t0, t1 = batch(rng, 6, 20)
    kw = dict(method=method, min_len=min_len, max_len=min_len + extra, top_m=top_m, nms_iou=nms, smooth=smooth)
    res = SpanScorer(**kw).score(scores, offsets, t0, t1)
    assert_same(res, scores, offsets, t0, t1, **kw)


def test_every_simd_level_gives_the_same_bits():
    import ivcr_engine
    from ivcr_engine import _core

    if "avx2" not in ivcr_engine.build_info()["simd_detected"]:
        pytest.skip("no AVX2 on this CPU")
    rng = np.random.default_rng(12)
    scores, offsets, t0, t1 = batch(rng, 200, 90, dyadic=False)
    scorer = SpanScorer(method="contrast", max_len=24, length_weight=0.2)
    from ..conftest import SIMD_NAMES

    level = {name: lv for lv, name in SIMD_NAMES.items()}[_core.simd_level()]  # the folder fixture's level
    try:
        _core.set_simd_level(0)
        portable = scorer.score(scores, offsets, t0, t1)
    finally:
        _core.set_simd_level(level)
    vectorised = scorer.score(scores, offsets, t0, t1)
    np.testing.assert_array_equal(portable.score, vectorised.score)
    np.testing.assert_array_equal(portable.first_clip, vectorised.first_clip)
    np.testing.assert_array_equal(portable.last_clip, vectorised.last_clip)
