"""Audio at 16 kHz mono (reference: the ffmpeg CLI on the same libraries) and text subtitles."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from ivcr_engine import decode
import media


def ffmpeg_audio(path, start=None, end=None, rate=16000, stream="a:0"):
    args = [media.FFMPEG, "-v", "error"]
    if start is not None:
        args += ["-ss", str(start)]
    args += ["-i", str(path)]
    if end is not None:
        args += ["-t", str(end - (start or 0))]
    args += ["-map", f"0:{stream}", "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"]
    return np.frombuffer(subprocess.run(args, capture_output=True, check=True).stdout, np.float32)


@pytest.mark.parametrize("name", ["nasa_13013.mp4", "cockatoo.mp4", "dog_walk.mp4"])
def test_audio_matches_ffmpeg(shared_data, name):
    path = shared_data / "videos" / name
    first_audio = decode.probe(path).streams_of("audio")[0].index
    got = decode.decode_audio(path, stream=first_audio)
    want = ffmpeg_audio(path, stream=first_audio)
    assert got.dtype == np.float32 and got.ndim == 1
    assert abs(len(got) - len(want)) <= 16
    n = min(len(got), len(want))
    np.testing.assert_allclose(got[:n], want[:n], atol=1e-4)


def test_audio_tone_frequency_and_rate(generated):
    a = decode.decode_audio(generated["audio_tone.mp4"])
    assert abs(len(a) - 3 * 16000) < 1600
    spectrum = np.abs(np.fft.rfft(a[4000:20000]))
    freq = np.fft.rfftfreq(16000, 1 / 16000)[np.argmax(spectrum)]
    assert abs(freq - 440) <= 2
    a8 = decode.decode_audio(generated["audio_tone.mp4"], sample_rate=8000)
    assert abs(len(a8) - len(a) / 2) <= 8


def test_audio_range(shared_data):
    path = shared_data / "videos" / "nasa_13013.mp4"
    full = decode.decode_audio(path)
    part = decode.decode_audio(path, start=3.0, end=5.5)
    assert len(part) == pytest.approx(2.5 * 16000, abs=2)
    # Same samples as the full decode over that range (resampler phase may differ slightly).
    ref = full[48000:48000 + len(part)]
    assert np.corrcoef(part, ref)[0, 1] > 0.99
    head = decode.decode_audio(path, end=1.0)
    np.testing.assert_allclose(head, full[:16000], atol=1e-6)
    assert len(decode.decode_audio(path, start=100.0)) == 0


def test_audio_errors(generated, tmp_path):
    with pytest.raises(decode.DecodeError, match="no audio"):
        decode.decode_audio(generated["h264_gop12.mp4"])
    with pytest.raises(decode.DecodeError):
        decode.decode_audio(tmp_path / "missing.wav")
    with pytest.raises(ValueError):
        decode.decode_audio(generated["audio_tone.mp4"], start=2.0, end=1.0)


# ------------------------------------------------------------------ subtitles

NASA_LINES = [
    (0.21, 4.26, "NAR: This is the optical and science segment of the Webb"),
    (4.26, 8.35, "space telescope in one of the largest cleanrooms in the world"),
    (8.35, 12.47, "at NASA\u2019s Goddard Space Flight Center in Greenbelt, Maryland."),
    (12.47, 16.57, "This half of the observatory element successfully"),
]

SRT = """1
00:00:00,500 --> 00:00:01,250
Hello <i>world</i>

2
00:00:01,500 --> 00:00:02,750
Second line
on two rows
"""
VTT = """WEBVTT

00:00.300 --> 00:01.000
From a vtt file
"""
WANT_SRT = [(0.5, 1.25, "Hello world"), (1.5, 2.75, "Second line\non two rows")]


def _same_cues(got, want):
    assert len(got) == len(want), got
    for g, (s, e, t) in zip(got, want):
        assert g.start == pytest.approx(s, abs=1e-3) and g.end == pytest.approx(e, abs=1e-3)
        assert g.text == t


def test_embedded_mov_text(shared_data):
    cues = decode.read_subtitles(shared_data / "videos" / "nasa_13013.mp4")
    _same_cues(cues, NASA_LINES)
    assert all(c.source == "stream:2" for c in cues)
    other = decode.read_subtitles(shared_data / "videos" / "nasa_13013.mp4", stream=5)
    assert [c.text for c in other] == [c.text for c in cues]
    with pytest.raises(decode.DecodeError, match="not a text subtitle"):
        decode.read_subtitles(shared_data / "videos" / "nasa_13013.mp4", stream=0)


@pytest.fixture(scope="module")
def subtitled(generated, tmp_path_factory):
    d = tmp_path_factory.mktemp("subs")
    srt = d / "input.srt"
    srt.write_text(SRT)
    video = generated["h264_gop12.mp4"]
    out = {}
    for name, codec in [("mov_text.mp4", "mov_text"), ("subrip.mkv", "srt"), ("ass.mkv", "ass"),
                        ("webvtt.webm", "webvtt")]:
        p = d / name
        vcodec = ["-c:v", "libvpx-vp9", "-deadline", "realtime"] if name.endswith("webm") else ["-c:v", "copy"]
        subprocess.run([media.FFMPEG, "-v", "error", "-y", "-i", str(video), "-i", str(srt), "-map", "0:v",
                        "-map", "1:s", *vcodec, "-c:s", codec, str(p)], check=True)
        out[codec] = p
    return out


@pytest.mark.parametrize("codec", ["mov_text", "srt", "ass", "webvtt"])
def test_embedded_text_codecs(subtitled, codec):
    cues = decode.read_subtitles(subtitled[codec])
    _same_cues(cues, WANT_SRT)


def test_sidecar_files(generated, tmp_path):
    video = tmp_path / "clip.mp4"
    shutil.copy(generated["h264_gop12.mp4"], video)
    assert decode.read_subtitles(video) == []
    (tmp_path / "clip.srt").write_text(SRT)
    (tmp_path / "clip.en.vtt").write_text(VTT)
    (tmp_path / "clipper.srt").write_text(SRT)  # another video's sidecar
    cues = decode.read_subtitles(video)
    assert {c.source for c in cues} == {"clip.srt", "clip.en.vtt"}
    _same_cues([c for c in cues if c.source == "clip.srt"], WANT_SRT)
    _same_cues([c for c in cues if c.source == "clip.en.vtt"], [(0.3, 1.0, "From a vtt file")])
    assert [c.start for c in cues] == sorted(c.start for c in cues)
    assert decode.read_subtitles(video, sidecar=False) == []
    # a sidecar read on its own
    _same_cues(decode.read_subtitles(tmp_path / "clip.srt"), WANT_SRT)


def test_ass_to_text_reference():
    from ivcr_engine._core import decode as native

    assert native.ass_to_text("0,0,Default,,0,0,0,,{\\i1}Hi{\\i0}, there\\Nnext\\hword") == "Hi, there\nnext word"
    assert native.ass_to_text("plain text") == "plain text"
    assert native.ass_to_text("0,0,Default,,0,0,0,,") == ""
