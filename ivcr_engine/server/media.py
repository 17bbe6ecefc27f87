"""What a browser player needs beside the bytes (those go out through Starlette's FileResponse,
which answers HTTP Range with 206): the media type, and JPEG thumbnails from the native decoder.
Only files the index names are ever opened: callers pass a video ref, the index gives the path."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import InvalidArgument

MAX_THUMB = 640
MEDIA_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
               ".mkv": "video/x-matroska", ".avi": "video/x-msvideo", ".ogv": "video/ogg"}


def media_type(path: Path) -> str:
    return MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")


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
