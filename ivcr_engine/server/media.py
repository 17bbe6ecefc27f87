"""Video bytes for a browser player (HTTP Range -> 206, so it can seek) and JPEG thumbnails from
the native decoder. Only files the index names are ever opened: callers pass a video ref, the
index gives the path."""
from __future__ import annotations

import os
import re
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import InvalidArgument

CHUNK = 256 * 1024
MAX_THUMB = 640
MEDIA_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
               ".mkv": "video/x-matroska", ".avi": "video/x-msvideo", ".ogv": "video/ogg"}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeError(ValueError):
    """An unsatisfiable or malformed Range header (answered with 416)."""


def media_type(path: Path) -> str:
    return MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` -> inclusive (first, last), or None for the whole
    file. One range only (what players send)."""
    if header is None:
        return None
    m = _RANGE.match(header.strip())
    if not m or (m.group(1) == "" and m.group(2) == ""):
        raise RangeError(f"unsupported Range {header!r} (one bytes=a-b range)")
    a, b = m.group(1), m.group(2)
    if a == "":  # suffix: the last n bytes
        n = int(b)
        if n == 0:
            raise RangeError("empty suffix range")
        return max(0, size - n), size - 1
    first = int(a)
    last = min(int(b), size - 1) if b else size - 1
    if first >= size or last < first:
        raise RangeError(f"range {header!r} outside a file of {size} bytes")
    return first, last


def iter_file(path: Path, first: int, last: int):
    with open(path, "rb") as f:
        f.seek(first)
        left = last - first + 1
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def thumbnail_jpeg(path: Path, t: float, size: int) -> bytes:
    """The frame at ``t`` seconds (native decoder), shorter side ``size`` pixels, as JPEG."""
    import av

    from ..decode import Timestamps, decode_frames

    dec = decode_frames(path, Timestamps([max(0.0, float(t))]), size=int(size), threads=1)
    if not dec.ok or dec.frames is None or len(dec.frames) == 0:
        raise InvalidArgument(f"no frame at {t:.2f}s: {dec.error or 'past the end'}")
    rgb = np.ascontiguousarray(dec.frames[0])
    h, w = rgb.shape[:2]
    rgb = rgb[: h - h % 2, : w - w % 2]  # 4:2:0 JPEG needs even sides
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = rgb.shape[1], rgb.shape[0]
    codec.pix_fmt = "yuvj420p"
    codec.time_base = Fraction(1, 25)
    codec.bit_rate = 8 * 1024 * 1024  # per-frame quality is what matters for one still
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuvj420p")
    packets = list(codec.encode(frame)) + list(codec.encode(None))
    return b"".join(bytes(p) for p in packets)


def file_size(path: Path) -> int:
    return os.stat(path).st_size
