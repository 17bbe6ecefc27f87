"""The CUDA search path against the same NumPy reference as the CPU path. Skipped without a CUDA
device, except the checks that it fails cleanly when there is none."""
from __future__ import annotations

import numpy as np
import pytest

import ivcr_engine
from ivcr_engine.corpus import Corpus, cuda_available, quantize_int4, quantize_int8

from . import reference as ref
from .test_topk import check, random_offsets, unit_rows

needs_device = pytest.mark.skipif(not cuda_available(), reason="no CUDA device (or no CUDA kernels in this build)")


def test_without_a_device_the_error_is_clear():
    if cuda_available():
        pytest.skip("a CUDA device is present")
    E = np.zeros((4, 8), np.float32)
    if ivcr_engine.build_info()["cuda"]:
        with pytest.raises(RuntimeError, match="no CUDA device"):
            Corpus(E, device="cuda")
    else:
        with pytest.raises(RuntimeError, match="no CUDA kernels"):
            Corpus(E, device="cuda")
    with pytest.raises(ValueError, match="device must be"):
        Corpus(E, device="tpu")


@needs_device
@pytest.mark.parametrize("n,d,b,k", [(1, 1, 1, 1), (1000, 17, 5, 7), (5000, 384, 3, 10), (3000, 64, 33, 2500)])
def test_clips_fp32(n, d, b, k):
    rng = np.random.default_rng(n + d)
    E, Q = unit_rows(rng, n, d), unit_rows(rng, b, d)
    check(Corpus(E, device="cuda").topk_clips(Q, k), *ref.topk(ref.clip_scores([E], [Q], [1.0]), min(k, n)), tol=1e-5)


@needs_device
def test_int4_channels_are_refused_with_a_clear_error():
    """int4 is a CPU first-stage format; the CUDA corpus says so instead of misreading the bytes."""
    E = unit_rows(np.random.default_rng(2), 10, 32)
    with pytest.raises(ValueError, match="CPU only"):
        Corpus({"t": quantize_int4(E)}, device="cuda")


@needs_device
def test_chunks_and_segments_with_a_large_batch():
    rng = np.random.default_rng(1)
    off = random_offsets(rng, 4000, 12, allow_empty=True)
    E, Q = unit_rows(rng, int(off[-1]), 16), unit_rows(rng, 4096, 16)  # 16k-row chunks at B = 4096
    corpus = Corpus(E, off, device="cuda")
    s = ref.clip_scores([E], [Q], [1.0])
    check(corpus.topk_clips(Q[:64], 20), *ref.topk(s[:64], 20), tol=1e-5)
    res = corpus.topk_videos(Q, 5, agg="mean")
    rs, ri = ref.topk(ref.video_scores(s[:32], off, "mean"), 5)
    check((res.scores[:32], res.ids[:32]), rs, ri, tol=1e-5)


@needs_device
@pytest.mark.parametrize("agg", ["max", "mean", "logsumexp"])
def test_videos_filters_and_mixed_channels(agg):
    rng = np.random.default_rng(2)
    off = random_offsets(rng, 500, 20)
    n = int(off[-1])
    chans = {"a": unit_rows(rng, n, 40), "b": unit_rows(rng, n, 24).astype(np.float16), "c": quantize_int8(unit_rows(rng, n, 8))}
    q = {"a": unit_rows(rng, 4, 40), "b": unit_rows(rng, 4, 24), "c": unit_rows(rng, 4, 8)}
    w = {"a": 1.0, "b": 0.5, "c": -0.25}
    corpus = Corpus(chans, off, device="cuda")
    s = ref.clip_scores(list(chans.values()), list(q.values()), [w[c] for c in chans])
    deny = rng.choice(500, 50, replace=False)
    ok = np.ones(500, bool)
    ok[deny] = False
    check(corpus.topk_videos(q, 15, agg=agg, weights=w, deny=deny), *ref.topk(ref.video_scores(s, off, agg), 15, ok), tol=1e-4)
    check(corpus.topk_clips(q, 30, weights=w, allow=deny), *ref.topk(s, 30, ref.eligible_clips(off, ~ok)), tol=1e-4)


@needs_device
def test_cuda_matches_cpu_and_rejects_nan():
    rng = np.random.default_rng(3)
    E, Q = unit_rows(rng, 20000, 64), unit_rows(rng, 8, 64)
    a = Corpus(E).topk_clips(Q, 10)
    b = Corpus(E, device="cuda").topk_clips(Q, 10)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    Q[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        Corpus(E, device="cuda").topk_clips(Q, 10)
