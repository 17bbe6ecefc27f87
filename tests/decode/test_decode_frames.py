"""Frames and timestamps against PyAV (the reference decoder), samplers, output layouts, seeking."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from ivcr_engine import decode
import media

SHARED_NAMES = ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4", "cityCC0.mpg", "cockatoo.mp4",
                "dog_walk.mp4", "movie-hello.mp4", "nasa_13013.mp4"]
VIDEO_NAMES = [n for n in media.GENERATED if n != "audio_tone.mp4"]
SIZE = (112, 112)


def _path(name, generated, shared_data):
    if name in media.GENERATED:
        return generated[name]
    p = shared_data / "videos" / name
    if not p.exists():
        pytest.skip(f"{name} missing")
    return p


def _targets(info, rng):
    """Uniform midpoints, 1 fps windows, and adversarial explicit times: before the start, exactly
    at the start, past the end, duplicates and random times, unsorted."""
    start, dur = info.start_time, info.duration
    explicit = [start - 1.0, start, start + dur + 5.0, start + dur / 3, start + dur / 3]
    explicit += list(rng.uniform(start, start + dur, size=6))
    return [decode.Uniform(8), decode.Fps(1.0), decode.Timestamps(explicit)]


def _check_against_pyav(path, rng):
    info = decode.probe(path)
    ref = media.pyav_frames(path, info.video_stream)
    rotation = info.video.rotation
    assert ref, "PyAV decoded nothing"
    ref_pts = np.array([p for p, _ in ref])
    half_frame = np.median(np.diff(ref_pts)) / 2 if len(ref) > 1 else 0.02
    for sampler in _targets(info, rng):
        got = decode.decode_frames(path, sampler, size=SIZE, threads=2)  # frame threads + skipping
        want_t = decode.sample_times(sampler, info.start_time, info.duration)
        np.testing.assert_allclose(got.requested, want_t)
        assert got.frames.shape == (len(want_t), *SIZE, 3)
        for i, t in enumerate(want_t):
            j = media.frame_at(ref, t)
            assert abs(got.pts[i] - ref_pts[j]) < half_frame, (sampler, t, got.pts[i], ref_pts[j])
            want = media.pyav_rgb(ref[j][1], SIZE, rotation)
            mad = np.abs(got.frames[i].astype(np.int16) - want).mean()
            assert mad <= 2.0, (sampler, t, mad)


@pytest.mark.parametrize("name", VIDEO_NAMES)
def test_generated_frames_match_pyav(name, generated):
    _check_against_pyav(generated[name], np.random.default_rng(len(name)))


@pytest.mark.parametrize("name", SHARED_NAMES)
def test_shared_frames_match_pyav(name, shared_data):
    _check_against_pyav(shared_data / "videos" / name, np.random.default_rng(len(name)))


@pytest.mark.parametrize("name", ["vfr.mp4", "mpeg2.mpg", "mpeg4.avi", "h264_gop300.mkv", "odd_177x99.mp4"])
def test_all_frames_match_pyav(name, generated):
    path = generated[name]
    info = decode.probe(path)
    ref = media.pyav_frames(path, info.video_stream)
    got = decode.decode_frames(path, decode.AllFrames(), size=None, threads=1)
    np.testing.assert_allclose(got.pts, [p for p, _ in ref], atol=1e-6)
    for i in range(0, len(ref), 7):
        want = media.pyav_rgb(ref[i][1], None, info.video.rotation)
        assert np.abs(got.frames[i].astype(np.int16) - want).mean() <= 2.0


def test_all_frames_range(generated):
    path = generated["h264_gop12.mp4"]
    full = decode.decode_frames(path, decode.AllFrames(), size=(32, 32))
    part = decode.decode_frames(path, decode.AllFrames(start=1.0, end=2.0), size=(32, 32))
    keep = (full.pts >= 1.0 - 1e-9) & (full.pts < 2.0)
    np.testing.assert_allclose(part.pts, full.pts[keep])
    np.testing.assert_array_equal(part.frames, full.frames[keep])


def test_vfr_timestamps_exact(generated):
    path = generated["vfr.mp4"]
    ref = media.pyav_frames(path, 0)
    pts = np.array([p for p, _ in ref])
    gaps = np.diff(pts)
    assert gaps.max() > 1.5 * gaps.min(), "the file is not variable frame rate"
    # Just before, at and just after every frame: the frame shown there.
    times = np.concatenate([pts - 1e-3, pts, pts + 1e-3])
    got = decode.decode_frames(path, decode.Timestamps(times), size=(16, 16), threads=1)
    want = [pts[media.frame_at(ref, t)] for t in times]
    np.testing.assert_allclose(got.pts, want, atol=1e-9)


# ------------------------------------------------------------------ samplers (reference: NumPy)


@pytest.mark.parametrize("n", [0, 1, 7, 32])
@pytest.mark.parametrize("start,dur", [(0.0, 10.0), (0.54, 7.6), (3.0, 0.04)])
def test_uniform_sampler_reference(n, start, dur):
    want = start + (np.arange(n) + 0.5) * dur / n if n else np.zeros(0)
    np.testing.assert_allclose(decode.sample_times(decode.Uniform(n), start, dur), want)


@pytest.mark.parametrize("fps,offset", [(1.0, 0.5), (2.0, 0.0), (0.5, 0.5), (3.0, 0.25)])
@pytest.mark.parametrize("start,dur", [(0.0, 10.0), (0.54, 7.6), (0.0, 0.3)])
def test_fps_sampler_reference(fps, offset, start, dur):
    k = np.arange(int(np.ceil(dur * fps - 1e-9)))
    want = start + (k + offset) / fps
    got = decode.sample_times(decode.Fps(fps, offset), start, dur)
    np.testing.assert_allclose(got, want)
    # frame k lies inside the k-th clip window of length 1/fps
    assert np.all(np.floor((got - start) * fps + 1e-9) == k)


def test_sampler_range_and_validation():
    got = decode.sample_times(decode.Uniform(4, start=2.0, end=6.0), 0.0, 100.0)
    np.testing.assert_allclose(got, [2.5, 3.5, 4.5, 5.5])
    got = decode.sample_times(decode.Fps(1.0, start=10.0, end=12.5), 0.0, 100.0)
    np.testing.assert_allclose(got, [10.5, 11.5, 12.5])
    with pytest.raises(ValueError):
        decode.sample_times(decode.Fps(0.0), 0, 1)
    with pytest.raises(ValueError):
        decode.sample_times(decode.Uniform(-1), 0, 1)
    with pytest.raises(ValueError):
        decode.sample_times(decode.Timestamps([0.0, float("nan")]), 0, 1)
    with pytest.raises(TypeError):
        decode.sample_times("uniform", 0, 1)


def test_order_and_duplicates_kept(generated):
    path = generated["h264_gop12.mp4"]
    times = [2.5, 0.1, 2.5, 1.0, 0.1]
    got = decode.decode_frames(path, decode.Timestamps(times), size=(32, 32))
    single = [decode.decode_frames(path, decode.Timestamps([t]), size=(32, 32)) for t in times]
    for i, s in enumerate(single):
        assert got.pts[i] == s.pts[0]
        np.testing.assert_array_equal(got.frames[i], s.frames[0])


# ------------------------------------------------------------------ output layouts


def test_float_nchw_is_normalised_uint8(generated):
    path = generated["h264_gop12.mp4"]
    s = decode.Uniform(5)
    u8 = decode.decode_frames(path, s, size=(48, 64)).frames
    f32 = decode.decode_frames(path, s, size=(48, 64), dtype=np.float32, mean=decode.IMAGENET_MEAN,
                               std=decode.IMAGENET_STD).frames
    assert f32.dtype == np.float32 and f32.shape == (5, 3, 48, 64)
    mean = np.array(decode.IMAGENET_MEAN, np.float32)[None, :, None, None]
    std = np.array(decode.IMAGENET_STD, np.float32)[None, :, None, None]
    want = (u8.transpose(0, 3, 1, 2).astype(np.float32) / 255 - mean) / std
    np.testing.assert_allclose(f32, want, rtol=1e-5, atol=1e-5)
    plain = decode.decode_frames(path, s, size=(48, 64), dtype=np.float32).frames
    np.testing.assert_allclose(plain, u8.transpose(0, 3, 1, 2) / 255.0, atol=1e-6)


def test_shorter_side_and_centre_crop(generated):
    path = generated["odd_177x99.mp4"]  # landscape, odd sizes
    s = decode.Timestamps([0.5])
    short = decode.decode_frames(path, s, size=50).frames
    assert short.shape == (1, 50, round(177 * 50 / 99), 3)
    crop = decode.decode_frames(path, s, size=50, crop=True).frames
    assert crop.shape == (1, 50, 50, 3)
    x0 = (short.shape[2] - 50) // 2
    np.testing.assert_array_equal(crop[0], short[0, :, x0:x0 + 50])
    exact_crop = decode.decode_frames(path, s, size=(40, 60), crop=True).frames
    assert exact_crop.shape == (1, 40, 60, 3)
    native = decode.decode_frames(path, s).frames
    assert native.shape == (1, 99, 177, 3)


def test_interpolations_are_close(generated):
    path = generated["h264_gop12.mp4"]
    s = decode.Timestamps([1.0])
    base = decode.decode_frames(path, s, size=(60, 80)).frames.astype(np.int16)
    for interp in ["bicubic", "area", "nearest"]:
        other = decode.decode_frames(path, s, size=(60, 80), interpolation=interp).frames
        assert np.abs(other - base).mean() < 12
    with pytest.raises(ValueError):
        decode.decode_frames(path, s, size=(60, 80), interpolation="lanczos9")


def test_rotation_matches_ffmpeg_autorotate(generated):
    path = generated["rot90.mp4"]
    assert decode.probe(path).video.rotation == 90
    got = decode.decode_frames(path, decode.Timestamps([0.0]))
    raw = subprocess.run([media.FFMPEG, "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    want = np.frombuffer(raw, np.uint8).reshape(160, 120, 3)
    assert got.frames.shape == (1, 160, 120, 3)
    assert np.abs(got.frames[0].astype(np.int16) - want).mean() <= 1.0
    unrotated = decode.decode_frames(path, decode.Timestamps([0.0]), rotate=False)
    assert unrotated.frames.shape == (1, 120, 160, 3)
    f = decode.decode_frames(path, decode.Timestamps([0.0]), size=(64, 48), dtype=np.float32).frames
    u = decode.decode_frames(path, decode.Timestamps([0.0]), size=(64, 48)).frames
    np.testing.assert_allclose(f[0], u[0].transpose(2, 0, 1) / 255.0, atol=1e-6)


def test_output_is_zero_copy_native_memory(generated):
    got = decode.decode_frames(generated["h264_gop12.mp4"], decode.Uniform(3), size=(16, 16))
    assert not got.frames.flags.owndata and got.frames.base is not None
    assert got.frames.flags.c_contiguous


def test_bad_arguments(generated):
    path = generated["h264_gop12.mp4"]
    with pytest.raises(ValueError):
        decode.decode_frames(path, decode.Uniform(2), size=(0, 10))
    with pytest.raises(ValueError):
        decode.decode_frames(path, decode.Uniform(2), size=-3)
    with pytest.raises(ValueError):
        decode.decode_frames(path, decode.Uniform(2), size=8, dtype=np.float32, std=(1, 0, 1))
    with pytest.raises(ValueError):
        decode.decode_frames(path, decode.Uniform(2), size=8, mean=(0.5, 0.5, 0.5))
    with pytest.raises(TypeError):
        decode.decode_frames(path, decode.Uniform(2), size=8, dtype=np.float64)
    with pytest.raises(ValueError):
        decode.decode_frames(path, decode.Uniform(2), crop=True)


# ------------------------------------------------------------------ seeking policy


def test_sparse_targets_seek_on_short_gops(generated):
    # All-intra: every frame is a keyframe, so far targets are reached by seeking, not decoding.
    got = decode.decode_frames(generated["h264_gop1.mp4"], decode.Timestamps([0.2, 1.5, 2.8]), size=(8, 8),
                               threads=1)
    assert got.seeks >= 2
    assert got.frames_decoded < 20


def test_no_seek_without_a_keyframe_ahead(generated):
    # One keyframe: seeking can never beat decoding forward.
    got = decode.decode_frames(generated["h264_gop300.mkv"], decode.Uniform(6), size=(8, 8), threads=1)
    assert got.seeks == 0


def test_dense_targets_decode_forward(generated):
    got = decode.decode_frames(generated["h264_gop12.mp4"], decode.Fps(10.0), size=(8, 8), threads=1)
    assert got.seeks == 0
    assert got.frames_decoded <= 75


@pytest.mark.parametrize("name", ["hevc.mp4", "h264_gop12.mp4", "mpeg2.mpg", "mpeg4.avi", "vp9.webm"])
def test_threads_do_not_change_frames(generated, name):
    path = generated[name]
    a = decode.decode_frames(path, decode.Uniform(9), size=(32, 32), threads=1)
    b = decode.decode_frames(path, decode.Uniform(9), size=(32, 32), threads=3)
    np.testing.assert_array_equal(a.pts, b.pts)
    np.testing.assert_array_equal(a.frames, b.frames)


# ------------------------------------------------------------------ probe


def test_probe_generated(generated):
    for name in VIDEO_NAMES:
        info = decode.probe(generated[name])
        ref = media.pyav_frames(generated[name], info.video_stream)
        assert info.video is not None and info.video.type == "video"
        assert abs(info.frame_count_estimate - len(ref)) <= max(2, 0.05 * len(ref)), name
        assert info.video.rotation == media.ROTATIONS.get(name, 0)
        assert info.duration > 0
    assert decode.probe(generated["mpeg2.mpg"]).video.codec == "mpeg2video"
    assert decode.probe(generated["mpeg4.avi"]).video.codec == "mpeg4"
    assert decode.probe(generated["vp9.webm"]).video.codec == "vp9"
    assert decode.probe(generated["hevc.mp4"]).video.codec == "hevc"
    vfr = decode.probe(generated["vfr.mp4"]).video
    assert vfr.real_fps != pytest.approx(vfr.avg_fps)
    tone = decode.probe(generated["audio_tone.mp4"])
    audio = tone.streams_of("audio")
    assert len(audio) == 1 and audio[0].sample_rate == 44100 and audio[0].channels == 2


def test_probe_shared(shared_data):
    import av

    nasa = decode.probe(shared_data / "videos" / "nasa_13013.mp4")
    assert [s.type for s in nasa.streams] == ["video", "audio", "subtitle", "video", "audio", "subtitle"]
    assert nasa.streams[2].codec == "mov_text"
    city = decode.probe(shared_data / "videos" / "cityCC0.mpg")
    assert city.start_time == pytest.approx(0.54) and city.video.codec == "mpeg2video"
    for p in sorted((shared_data / "videos").glob("*")):
        info = decode.probe(p)
        with av.open(str(p)) as c:
            st = c.streams[info.video_stream]
            assert info.video.width == st.codec_context.width and info.video.height == st.codec_context.height
            assert info.duration == pytest.approx(float(st.duration * st.time_base) if st.duration else
                                                  c.duration / 1e6, rel=0.02)
            assert info.video.avg_fps == pytest.approx(float(st.average_rate), rel=1e-6)
