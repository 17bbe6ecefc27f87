"""The index store: round trips, crash leftovers ignored, tombstones, clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from ivcr_engine.index import ChannelSpec, IndexStore, VideoRecord


def record(name: str, n: int, dim: int = 8, seed: int = 0) -> VideoRecord:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    times = np.stack([np.arange(n) * 2.0, np.arange(n) * 2.0 + 2.0], 1)
    return VideoRecord(path=f"/videos/{name}.mp4", content_hash=f"hash-{name}", duration=2.0 * n, clip_times=times,
                       vectors={"visual": v}, texts=[("subtitle", 1.0, 2.5, f"line of {name}")],
                       top_concepts=[f"concept{i}" for i in range(n)])


def open_store(tmp_path) -> IndexStore:
    store = IndexStore(tmp_path / "idx", create=True)
    store.ensure_channel(ChannelSpec("visual", 8))
    return store


def test_round_trip(tmp_path):
    with open_store(tmp_path) as s:
        a = s.add_video(record("a", 3, seed=1))
        b = s.add_video(record("b", 5, seed=2))
    with IndexStore(tmp_path / "idx") as s:
        vids = s.videos()
        assert [v["id"] for v in vids] == [a, b] and [v["n_clips"] for v in vids] == [3, 5]
        assert [v["first_row"] for v in vids] == [0, 3]
        vec = s.vectors("visual")
        assert isinstance(vec, np.memmap) and vec.shape == (8, 8) and vec.dtype == np.float16
        np.testing.assert_allclose(vec[3:], record("b", 5, seed=2).vectors["visual"], atol=1e-3)
        times = s.clip_times()
        assert isinstance(times, np.memmap) and times.shape == (8, 2) and times[-1, 1] == 10.0
        assert s.texts(b) == [("subtitle", 1.0, 2.5, "line of b")]
        assert s.concepts([4]) == ["concept1"]
        assert s.has_hash("hash-a") and not s.has_hash("hash-z")


def test_bytes_left_by_a_killed_ingest_are_ignored_then_overwritten(tmp_path):
    with open_store(tmp_path) as s:
        s.add_video(record("a", 3))
        with open(s.vector_path("visual"), "ab") as f:  # what a kill -9 between append and commit leaves
            f.write(b"\x07" * 40)
        assert s.vectors("visual").shape == (3, 8)
        s.add_video(record("b", 2, seed=5))
        vec = s.vectors("visual")
        assert vec.shape == (5, 8)
        np.testing.assert_allclose(vec[3:], record("b", 2, seed=5).vectors["visual"], atol=1e-3)
        assert (s.root / "vectors" / "visual.bin").stat().st_size == 5 * 8 * 2
        assert (s.root / "vectors" / "clip_times.f8").stat().st_size == 5 * 16


def test_remove_and_re_add(tmp_path):
    with open_store(tmp_path) as s:
        a = s.add_video(record("a", 3))
        assert s.remove_videos([a]) == 1
        assert s.videos() == [] and len(s.videos(include_removed=True)) == 1
        assert not s.has_hash("hash-a")
        s.add_video(record("a", 3))  # the same content may come back after a removal
        assert len(s.videos()) == 1


def test_bad_records_change_nothing(tmp_path):
    with open_store(tmp_path) as s:
        s.add_video(record("a", 3))
        bad = record("b", 2)
        bad.vectors["visual"][0, 0] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            s.add_video(bad)
        with pytest.raises(ValueError, match="shape"):
            s.add_video(VideoRecord("/x.mp4", "h", 1.0, np.zeros((2, 2)), {"visual": np.zeros((3, 8), np.float32)}))
        with pytest.raises(ValueError, match="vectors for"):
            s.add_video(VideoRecord("/x.mp4", "h", 1.0, np.zeros((1, 2)), {"speech": np.zeros((1, 8), np.float32)}))
        import sqlite3

        with pytest.raises(sqlite3.IntegrityError):  # the same content twice
            s.add_video(record("a", 3))
        assert len(s.videos()) == 1 and s.vectors("visual").shape == (3, 8)
        with pytest.raises(ValueError, match="cannot join"):
            s.ensure_channel(ChannelSpec("speech", 8))
        with pytest.raises(ValueError, match="8-d float16"):
            s.ensure_channel(ChannelSpec("visual", 16))


def test_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no index"):
        IndexStore(tmp_path / "nowhere")


def test_opening_a_million_clip_index_reads_no_vectors(tmp_path):
    """100k videos x 10 clips written in bulk; opening maps the files instead of reading them."""
    import time

    from ivcr_engine.index import Index

    with IndexStore(tmp_path / "big", create=True) as s:
        s.ensure_channel(ChannelSpec("visual", 4))
        rng = np.random.default_rng(0)
        times = np.stack([np.arange(10) * 2.0, np.arange(10) * 2.0 + 2.0], 1)
        for chunk in range(10):
            recs = [VideoRecord(f"/v/{chunk}_{i}.mp4", f"h{chunk}_{i}", 20.0, times,
                                {"visual": rng.normal(size=(10, 4)).astype(np.float32)}) for i in range(10_000)]
            s.add_videos(recs)
    t0 = time.perf_counter()
    index = Index(tmp_path / "big", text_encoder=object())  # no text model needed to open
    opened = time.perf_counter() - t0
    assert index.corpus.rows == 1_000_000 and index.corpus.videos == 100_000
    assert isinstance(index.channels["visual"], np.memmap) and isinstance(index.clip_start, np.memmap)
    print(f"opened a 1M-clip index in {opened * 1000:.0f} ms")
