"""Span scoring refuses fractional offsets and out-of-range k instead of truncating them."""
from __future__ import annotations

import numpy as np
import pytest

from ivcr_engine import _core
from ivcr_engine.span import SpanScorer


def inputs():
    s = np.linspace(0, 1, 11).astype(np.float32)
    t0 = np.arange(11) * 2.0
    return s, t0, t0 + 2.0


def test_float_offsets_are_a_type_error(simd_level):
    s, t0, t1 = inputs()
    for offsets in ([0, 4.7, 6, 11], np.array([0.0, 4.0, 6.0, 11.0])):
        with pytest.raises(TypeError, match="offsets must be integers"):
            SpanScorer().score(s, offsets, t0, t1)
        with pytest.raises(TypeError, match="offsets must be integers"):
            _core.rank_moments(s, offsets, t0, t1)
    assert SpanScorer().score(s, [0, 4, 6, 11], t0, t1).score.shape == (3, 5)


def test_k_beyond_int64_is_a_value_error(simd_level):
    s, t0, t1 = inputs()
    off = np.array([0, 4, 6, 11])
    with pytest.raises(ValueError, match="64-bit"):
        SpanScorer().rank(s, off, t0, t1, k=2**63)
    with pytest.raises(TypeError, match="k must be an integer"):
        SpanScorer().rank(s, off, t0, t1, k=2.5)
    assert len(SpanScorer().rank(s, off, t0, t1, k=2**62).video) == 15  # capped at every kept span
