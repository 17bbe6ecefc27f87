"""Span scoring on 10k videos x 150 clips (L_max = 32 clips, top 5 after NMS at IoU 0.5): the
native scorer against a vectorised NumPy implementation of the same contrast score, which must
return identical spans (checked before timing)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import best_seconds
from ivcr_engine.span import SpanScorer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.span.reference import spans_vectorised  # noqa: E402

V, T, LMAX, TOP = 10_000, 150, 32, 5
TABLE = "span scoring (10k videos x 150 clips, L_max 32, top 5, NMS 0.5)"
KW = dict(min_len=1, max_len=LMAX, top_m=TOP, nms_iou=0.5, length_weight=0.1)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    offsets = np.arange(0, V * T + 1, T, dtype=np.int64)
    # smooth random curves with bumps, like clip-query similarities
    base = rng.normal(size=(V, T)).astype(np.float32)
    kernel = np.ones(9, np.float32) / 9
    scores = np.stack([np.convolve(r, kernel, mode="same") for r in base]).ravel().astype(np.float32)
    t0 = np.tile(np.arange(T) * 2.0, V)
    return scores, offsets, t0, t0 + 2.0


_SEC = {}


@pytest.mark.parametrize("impl", ["numpy contrast", "ivcr contrast", "ivcr boundary"])
def test_span(benchmark, record, batch, impl):
    scores, offsets, t0, t1 = batch
    if impl == "numpy contrast":
        fn = lambda: spans_vectorised(scores, offsets, t0, t1, **KW)
        rounds = 1
    else:
        scorer = SpanScorer(method=impl.split()[1], **KW)
        fn = lambda: scorer.score(scores, offsets, t0, t1)
        rounds = 5
    if impl == "ivcr contrast":  # identical spans, or the ratio means nothing
        res = fn()
        want = spans_vectorised(scores[:200 * T], offsets[:201], t0[:200 * T], t1[:200 * T], **KW)
        for v, kept in enumerate(want):
            got = [(a, b) for a, b in zip(res.first_clip[v], res.last_clip[v]) if a >= 0]
            assert got == [(k[3] + offsets[v], k[4] + offsets[v]) for k in kept]
    benchmark.pedantic(fn, rounds=rounds, warmup_rounds=0 if rounds == 1 else 1)
    sec = best_seconds(benchmark)
    record.put(TABLE, impl, "videos/s", V / sec)
    _SEC[impl] = sec
    if "numpy contrast" in _SEC and impl.startswith("ivcr"):
        record.put(TABLE, impl, "x numpy contrast", _SEC["numpy contrast"] / sec)
