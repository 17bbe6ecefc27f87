"""numpy's BLAS runs on one thread once an index is open (OpenBLAS's workers otherwise spin after
each tiny query-time product, on the cores the native scan needs next), and on every thread it had
while derived data is built; other packages' BLAS (faiss's, the baselines') keep their threads."""
from __future__ import annotations

import os

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from ivcr_engine import blas


def blas_threads(numpy_own: bool) -> set[int]:
    home = os.path.dirname(os.path.realpath(np.__file__))
    return {i["num_threads"] for i in threadpool_info()
            if i["user_api"] == "blas" and os.path.realpath(i["filepath"]).startswith(home) == numpy_own}


def test_an_open_index_runs_numpy_blas_on_one_thread_and_builds_on_all(tmp_path):
    from ivcr_engine.index import ChannelSpec, Index, IndexStore, VideoRecord

    pytest.importorskip("faiss")  # a second BLAS in the process, as in the benchmarks
    if not blas_threads(True):
        pytest.skip("numpy's BLAS is not under its own install here")
    others = blas_threads(False)
    with IndexStore(tmp_path, create=True) as store:
        store.ensure_channel(ChannelSpec("visual", 8))
        store.add_videos([VideoRecord("/v/0.mp4", "h0", 2.0, np.array([[0.0, 2.0]]), {"visual": np.ones((1, 8), np.float32)})])
    Index(tmp_path, text_encoder=object()).close()
    assert blas_threads(True) == {1}
    assert blas_threads(False) == others
    with blas.all_threads():
        assert blas_threads(True) == {blas._state["full"]}
        assert blas._state["full"] >= min(2, os.cpu_count() or 1)
    assert blas_threads(True) == {1}
