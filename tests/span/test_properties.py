"""Hypothesis property of corpus-level moment ranking (``SpanScorer.rank``) against the plain
reference: every video's spans from tests/span/reference.py, shifted by the video's bias, then
the global top k (ties: lower video first, then the video's better-ranked span)."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from ivcr_engine.span import SpanScorer

from . import reference as ref
from .test_span import batch


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), n_videos=st.integers(1, 8), method=st.sampled_from(["contrast", "boundary"]),
       top_m=st.integers(1, 4), k=st.integers(1, 40), biased=st.booleans())
def test_rank_matches_the_reference(seed, n_videos, method, top_m, k, biased):
    rng = np.random.default_rng(seed)
    scores, offsets, t0, t1 = batch(rng, n_videos, 15)
    bias = (rng.integers(-4, 5, size=n_videos) / 4).astype(np.float32) if biased else None
    kw = dict(method=method, min_len=1, max_len=6, top_m=top_m, nms_iou=0.5, smooth=3)
    got = SpanScorer(**kw).rank(scores, offsets, t0, t1, video_bias=bias, k=k)
    want = []
    for v in range(n_videos):
        o, e = offsets[v], offsets[v + 1]
        for r, (a, b, sc, _, _) in enumerate(ref.spans(scores[o:e], t0[o:e], t1[o:e], **kw)):
            want.append((-(np.float32(sc) + (bias[v] if biased else 0)), v, r, a, b))
    want.sort()
    want = want[:k]
    n = len(want)
    assert len(got.video) == min(k, n_videos * top_m)
    np.testing.assert_array_equal(got.video[:n], [w[1] for w in want])
    np.testing.assert_allclose(got.score[:n], [-w[0] for w in want], atol=1e-5)
    np.testing.assert_array_equal(got.start[:n], [w[3] for w in want])
    np.testing.assert_array_equal(got.end[:n], [w[4] for w in want])
    assert np.all(got.video[n:] == -1) and np.all(np.isneginf(got.score[n:]))
