"""decode_batch, bad files as error values, the streaming iterator and the thread plan."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from ivcr_engine import decode
import media


@pytest.fixture(scope="session")
def bad_files(generated, tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("bad")
    good = generated["h264_gop12.mp4"].read_bytes()
    out = {
        "empty.mp4": b"",
        "random.mp4": np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes(),
        "text.mp4": b"this is not a video\n" * 100,
        # moov (the index) is at the end of ffmpeg's mp4 output: half a file has no index.
        "truncated.mp4": good[: len(good) // 2],
        # keep the header, garble the frames
        "garbled.mp4": good[:200] + bytes(np.random.default_rng(1).integers(0, 256, len(good) - 400,
                                                                           dtype=np.uint8)) + good[-200:],
    }
    paths = {}
    for name, data in out.items():
        p = d / name
        p.write_bytes(data)
        paths[name] = p
    paths["missing.mp4"] = d / "does_not_exist.mp4"
    paths["audio_only.m4a"] = d / "audio_only.m4a"
    subprocess.run([media.FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac",
                    str(paths["audio_only.m4a"])], check=True)
    return paths


EXPECTED_WORDS = {
    "empty.mp4": "cannot open",
    "random.mp4": "cannot open",
    "text.mp4": "cannot open",
    "truncated.mp4": "cannot open",
    "missing.mp4": "no such file",
    "audio_only.m4a": "no video stream",
}


@pytest.mark.parametrize("name", sorted(EXPECTED_WORDS))
def test_bad_file_raises_clear_error(bad_files, name):
    with pytest.raises(decode.DecodeError) as e:
        decode.decode_frames(bad_files[name], decode.Uniform(4), size=32)
    msg = str(e.value).lower()
    assert EXPECTED_WORDS[name] in msg
    assert str(bad_files[name]) in str(e.value) or name == "audio_only.m4a"


def test_garbled_file_never_crashes(bad_files):
    # Either frames (the decoder conceals damage, as ffmpeg does) or a clear error, never a crash.
    try:
        got = decode.decode_frames(bad_files["garbled.mp4"], decode.Uniform(4), size=32)
        assert got.frames.shape[0] == 4
    except decode.DecodeError as e:
        assert str(e)


def test_probe_bad_files(bad_files):
    for name in ["empty.mp4", "random.mp4", "missing.mp4"]:
        with pytest.raises(decode.DecodeError):
            decode.probe(bad_files[name])
    info = decode.probe(bad_files["audio_only.m4a"])
    assert info.video is None and info.streams_of("audio")


def test_batch_with_bad_files_keeps_the_rest(generated, bad_files, shared_data):
    good = [generated["h264_gop12.mp4"], generated["vp9.webm"], shared_data / "videos" / "bikes.mp4",
            generated["mpeg2.mpg"]]
    bad = [bad_files[n] for n in sorted(EXPECTED_WORDS)]
    paths = [good[0], bad[0], good[1], bad[1], bad[2], good[2], bad[3], bad[4], good[3], bad[5]]
    sampler = decode.Uniform(5)
    results = decode.decode_batch(paths, sampler, size=(40, 56), threads=2)
    assert len(results) == len(paths)
    for p, r in zip(paths, results):
        assert r.path == str(p)
        if p in good:
            assert r.ok, r.error
            single = decode.decode_frames(p, sampler, size=(40, 56), threads=1)
            np.testing.assert_array_equal(r.frames, single.frames)
            np.testing.assert_array_equal(r.pts, single.pts)
        else:
            assert not r.ok and r.frames is None and r.error


def test_batch_float_and_empty():
    assert decode.decode_batch([], decode.Uniform(3), size=8) == []


def test_batch_float_layout(generated):
    paths = [generated["hevc.mp4"], generated["odd_vp9_177x99.webm"]]
    rs = decode.decode_batch(paths, decode.Fps(2.0), size=(24, 24), dtype=np.float32,
                             mean=decode.IMAGENET_MEAN, std=decode.IMAGENET_STD)
    for p, r in zip(paths, rs):
        assert r.ok and r.frames.dtype == np.float32 and r.frames.shape[1:] == (3, 24, 24)
        assert len(r.frames) == len(decode.sample_times(decode.Fps(2.0), r.info.start_time, r.info.duration))


def test_batch_plan_respects_budget():
    for n_videos in [1, 2, 3, 9, 100]:
        for threads in [1, 2, 4, 8]:
            workers, codec = decode.batch_plan(n_videos, threads)
            assert workers >= 1 and codec >= 1
            assert workers * codec <= threads
            assert workers <= n_videos
    assert decode.batch_plan(1, 2) == (1, 2)  # one video: all threads inside it


def test_gil_released_during_batch(generated):
    import threading
    import time

    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        decode.decode_batch([generated["h264_gop1.mp4"]] * 4, decode.AllFrames(), size=(64, 64), threads=1)
    finally:
        stop.set()
        t.join()
    assert len(ticks) > 3  # Python kept running while the native decode worked


# ------------------------------------------------------------------ streaming


@pytest.mark.parametrize("sampler", [decode.Uniform(11), decode.Timestamps([2.0, 0.5, 1.0, 0.5]),
                                     decode.AllFrames()])
def test_iter_frames_matches_decode_frames(generated, sampler):
    path = generated["h264_gop12.mp4"]
    whole = decode.decode_frames(path, sampler, size=(24, 32))
    chunks = list(decode.iter_frames(path, sampler, size=(24, 32), chunk_size=4))
    assert all(len(c.frames) <= 4 for c in chunks)
    idx = np.concatenate([c.indices for c in chunks])
    frames = np.concatenate([c.frames for c in chunks])
    pts = np.concatenate([c.pts for c in chunks])
    assert sorted(idx.tolist()) == list(range(len(whole.pts)))
    np.testing.assert_array_equal(frames, whole.frames[idx])
    np.testing.assert_array_equal(pts, whole.pts[idx])
    assert np.all(np.diff(pts) >= 0)  # chunks come in time order


def test_iter_frames_errors(bad_files):
    with pytest.raises(decode.DecodeError):
        next(decode.iter_frames(bad_files["empty.mp4"], decode.Uniform(2)))
    with pytest.raises(ValueError):
        next(decode.iter_frames(bad_files["empty.mp4"], decode.Uniform(2), chunk_size=0))


# ------------------------------------------------------------------ memory


MEMORY_SCRIPT = r"""
import resource, sys
from ivcr_engine import decode
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
r = decode.decode_frames(sys.argv[1], decode.Uniform(32), size=(224, 224))
assert r.frames.shape == (32, 224, 224, 3), r.frames.shape
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_memory_10_minute_1080p(tmp_path):
    # Low frame rate and a flat source keep generation quick; the decoder still walks a 10-minute
    # 1080p stream with 1080p frames in flight (frame threads, reference frames, scaler).
    path = tmp_path / "long1080.mp4"
    subprocess.run([media.FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=1920x1080:rate=1:duration=600", "-c:v", "libx264", "-preset", "ultrafast",
                    "-g", "50", "-threads", "2", str(path)], check=True)
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(path)], capture_output=True, text=True,
                         check=True, env={**os.environ, "IVCR_NUM_THREADS": "2"})
    before_kb, peak_kb = (int(x) for x in out.stdout.split())
    print(f"peak RSS {peak_kb / 1024:.0f} MB (after import {before_kb / 1024:.0f} MB)")
    assert peak_kb < 300 * 1024, f"peak RSS {peak_kb / 1024:.0f} MB"


@pytest.mark.parametrize("name", ["mpeg2.mpg", "h264_gop300.mkv"])
def test_truncated_stream_decodes_up_to_the_cut(generated, tmp_path, name):
    # Containers without a trailing index decode up to the cut; targets past it get the last
    # decodable frame with its true pts (never a frame claiming a later time).
    data = generated[name].read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: len(data) // 2])
    full = decode.decode_frames(generated[name], decode.AllFrames(), size=(16, 16))
    got = decode.decode_frames(cut, decode.Uniform(6), size=(16, 16))
    assert got.frames.shape == (6, 16, 16, 3)
    last = got.pts.max()
    assert last < full.pts.max()
    for p, f in zip(got.pts, got.frames):
        i = int(np.argmin(np.abs(full.pts - p)))
        assert abs(full.pts[i] - p) < 1e-6
        assert np.abs(full.frames[i].astype(int) - f).mean() < 3
