"""Hypothesis properties of the search API against the NumPy reference: several channels of
mixed dtypes with weights, allow/deny filters, every aggregation (modest example counts: this
folder runs once per SIMD level)."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from ivcr_engine.corpus import Corpus, quantize_int8

from . import reference as ref
from .test_topk import check, unit_rows


@settings(max_examples=25, deadline=None)
@given(n_videos=st.integers(1, 40), d=st.integers(1, 24), b=st.integers(1, 4), k=st.integers(1, 60),
       seed=st.integers(0, 2**31), dtypes=st.lists(st.sampled_from(["float32", "float16", "int8"]), min_size=1,
                                                   max_size=3),
       weights=st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, -1.0]), min_size=3, max_size=3),
       agg=st.sampled_from(["max", "mean", "logsumexp"]), mode=st.sampled_from([None, "allow", "deny"]))
def test_channels_weights_and_filters_match_the_reference(n_videos, d, b, k, seed, dtypes, weights, agg, mode):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 9, size=n_videos)
    off = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n = int(off[-1])
    chans, native, queries, ws = {}, [], {}, {}
    for c, dt in enumerate(dtypes):
        E = unit_rows(rng, n, d)
        data = quantize_int8(E) if dt == "int8" else E.astype(dt)
        chans[f"c{c}"] = data
        native.append(data)
        queries[f"c{c}"] = unit_rows(rng, b, d)
        ws[f"c{c}"] = weights[c]
    picked = rng.random(n_videos) < 0.5
    corpus = Corpus(chans, off)
    kw = {} if mode is None else {mode: np.flatnonzero(picked)}
    eligible = np.ones(n_videos, bool) if mode is None else (picked if mode == "allow" else ~picked)
    s = ref.clip_scores(native, list(queries.values()), list(ws.values()))
    clip_ok = ref.eligible_clips(off, eligible)
    tol = 2e-3 if len(dtypes) > 1 or dtypes[0] != "float32" else 1e-5
    check(corpus.topk_clips(queries, k, weights=ws, **kw), *ref.topk(s, min(k, n), clip_ok), tol=tol * 4,
          candidates=np.where(clip_ok, s, np.nan))
    vs = ref.video_scores(s, off, agg)
    got = corpus.topk_videos(queries, k, agg=agg, weights=ws, **kw)
    check(got, *ref.topk(vs, min(k, n_videos), eligible), tol=tol * 4, candidates=np.where(eligible, vs, np.nan))
    assert not np.isin(got.ids, np.flatnonzero(~eligible)).any()  # a filtered video never comes back
