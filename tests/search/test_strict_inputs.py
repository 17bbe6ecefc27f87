"""Bad search arguments get a clear TypeError/ValueError, from the Python face and from the native
class alike: float offsets or ids are never truncated, k beyond int64 is a ValueError."""
from __future__ import annotations

import numpy as np
import pytest

from ivcr_engine import _core
from ivcr_engine.corpus import Corpus, video_bitset


def corpus_data():
    rng = np.random.default_rng(3)
    E = rng.normal(size=(11, 8)).astype(np.float32)
    return E, np.array([0, 4, 6, 11], np.int64), E[:2].copy()


def test_float_offsets_are_a_type_error_not_truncated(simd_level):
    E, _, _ = corpus_data()
    for offsets in ([0, 4.7, 6, 11], np.array([0, 4.0, 6.0, 11.0]), [0, True, 6, 11]):
        with pytest.raises(TypeError, match="offsets must be integers"):
            Corpus(E, offsets)
    with pytest.raises(TypeError, match="offsets must be integers"):
        _core.SearchCorpus([(E, None)], np.array([0, 4.7, 6, 11]))
    assert Corpus(E, [0, 4, 6, 11]).videos == 3  # plain ints stay fine


def test_k_beyond_int64_is_a_value_error_and_a_float_k_a_type_error(simd_level):
    E, off, q = corpus_data()
    c = Corpus(E, off)
    for k in (2**63, 10**30):
        with pytest.raises(ValueError, match="64-bit"):
            c.topk_clips(q, k=k)
        with pytest.raises(ValueError, match="64-bit"):
            c.topk_videos(q, k=k)
        with pytest.raises(ValueError, match="64-bit"):  # the native class itself, not only the face
            c._native.topk_clips([q], [1.0], k)
    for k in (2.0, "3", None, True):
        with pytest.raises(TypeError, match="k must be an integer"):
            c.topk_clips(q, k=k)
        with pytest.raises(TypeError, match="k must be an integer"):
            c._native.topk_videos([q], [1.0], k)
    assert c.topk_clips(q, k=np.int64(2**62)).ids.shape == (2, 11)  # huge but in range: capped


def test_float_filter_ids_are_a_type_error(simd_level):
    E, off, q = corpus_data()
    c = Corpus(E, off)
    for ids in ([1.5], np.array([1.0]), [1, "2"]):
        with pytest.raises(TypeError, match="integers"):
            c.topk_videos(q, 3, deny=ids)
        with pytest.raises(TypeError, match="integers"):
            video_bitset(ids, 3)
    with pytest.raises(ValueError, match="64-bit"):
        video_bitset([2**64], 3)
    np.testing.assert_array_equal(c.topk_videos(q, 3, deny=[1]).ids[:, -1], [-1, -1])
