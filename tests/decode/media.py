"""Tiny generated test videos (ffmpeg CLI) and PyAV references for the decode tests."""
from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np

FFMPEG = shutil.which("ffmpeg")

SRC = "testsrc2=size=160x120:rate=25:duration=3"

# name -> ffmpeg arguments after "-y"; each file is tiny (2-4 s, small frames).
GENERATED = {
    "h264_gop12.mp4": ["-f", "lavfi", "-i", SRC, "-c:v", "libx264", "-g", "12", "-bf", "2"],
    "h264_gop1.mp4": ["-f", "lavfi", "-i", SRC, "-c:v", "libx264", "-g", "1"],
    "h264_gop300.mkv": ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=4", "-c:v", "libx264",
                        "-g", "300", "-bf", "3"],
    "odd_177x99.mp4": ["-f", "lavfi", "-i", "testsrc2=size=178x100:rate=25:duration=2", "-vf",
                       "scale=177:99,format=yuv444p", "-c:v", "libx264", "-g", "25"],
    "odd_vp9_177x99.webm": ["-f", "lavfi", "-i", "testsrc2=size=178x100:rate=25:duration=2", "-vf", "scale=177:99",
                            "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"],
    "hevc.mp4": ["-f", "lavfi", "-i", SRC, "-c:v", "libx265", "-x265-params", "log-level=error", "-g", "20"],
    "vp9.webm": ["-f", "lavfi", "-i", SRC, "-c:v", "libvpx-vp9", "-g", "30", "-deadline", "realtime",
                 "-cpu-used", "8"],
    "mpeg4.avi": ["-f", "lavfi", "-i", SRC, "-c:v", "mpeg4", "-g", "15", "-bf", "2", "-q:v", "4"],
    "mpeg2.mpg": ["-f", "lavfi", "-i", SRC, "-c:v", "mpeg2video", "-g", "15", "-bf", "2", "-q:v", "4", "-f", "vob"],
    # Variable frame rate: irregular gaps between frames (ms time base).
    "vfr.mp4": ["-f", "lavfi", "-i", SRC, "-vf", "settb=1/1000,setpts='(N+floor(N/5)*1.5+0.3*mod(N,3))/25/TB'",
                "-fps_mode", "vfr", "-enc_time_base", "1/1000", "-c:v", "libx264", "-g", "20"],
    "rot90.mp4": ["-f", "lavfi", "-i", SRC, "-c:v", "libx264", "-g", "25"],
    "audio_tone.mp4": ["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=3", "-f", "lavfi", "-i",
                       "sine=frequency=440:sample_rate=44100:duration=3", "-ac", "2", "-c:v", "libx264",
                       "-c:a", "aac", "-shortest"],
}
ROTATIONS = {"rot90.mp4": 90}


def set_mp4_rotation(path: Path, clockwise: int) -> None:
    """Write a display matrix into the first track header (tkhd) of an mp4 file, as a phone
    does for portrait video (ffmpeg 5.1's CLI has no option for it)."""
    data = bytearray(path.read_bytes())
    pos = data.find(b"tkhd")
    assert pos > 0, "no tkhd box"
    version = data[pos + 4]
    # fourcc, version/flags, {creation, modification, track id, reserved, duration}, then
    # reserved(8) layer(2) alternate group(2) volume(2) reserved(2), then the 3x3 matrix
    off = pos + 4 + 4 + (20 if version == 0 else 32) + 16
    one = 1 << 16
    rad = {90: (0, 1), 180: (-1, 0), 270: (0, -1)}[clockwise]
    cos, sin = rad  # rotation by -clockwise degrees in FFmpeg's convention
    m = [cos * one, sin * one, 0, -sin * one, cos * one, 0, 0, 0, 1 << 30]
    data[off:off + 36] = struct.pack(">9i", *m)
    path.write_bytes(bytes(data))


def generate(folder: Path) -> dict:
    out = {}
    for name, args in GENERATED.items():
        path = folder / name
        subprocess.run([FFMPEG, "-v", "error", "-y", *args, str(path)], check=True)
        if name in ROTATIONS:
            set_mp4_rotation(path, ROTATIONS[name])
        out[name] = path
    return out


def pyav_frames(path, stream_index: int):
    """All frames of one stream with PyAV: list of (pts seconds, av.VideoFrame)."""
    import av

    with av.open(str(path)) as c:
        st = c.streams[stream_index]
        frames = []
        for f in c.decode(st):
            t = f.time
            frames.append((float(t), f))
    return frames


def frame_at(frames, t: float) -> int:
    """Index of the frame shown at time t: last pts <= t, else the first."""
    pts = np.array([p for p, _ in frames])
    i = int(np.searchsorted(pts, t + 1e-9, side="right")) - 1
    return max(i, 0)


def pyav_rgb(frame, size=None, rotation=0):
    """PyAV's RGB picture of a frame resized with swscale bilinear, turned upright."""
    if size is None:
        img = frame.to_ndarray(format="rgb24")
    else:
        h, w = size
        if rotation in (90, 270):
            h, w = w, h
        img = frame.reformat(width=w, height=h, format="rgb24", interpolation="BILINEAR").to_ndarray()
    k = {0: 0, 90: -1, 180: 2, 270: 1}[rotation]
    return np.ascontiguousarray(np.rot90(img, k=k))
