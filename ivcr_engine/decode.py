"""Video decoding for ingest: FFmpeg-based, native, batched.

Frames come back model-ready (resized, RGB, uint8 NHWC or normalised float32 NCHW) in numpy
arrays that view native memory, each with its true presentation time in seconds.

    from ivcr_engine import decode
    info = decode.probe("a.mp4")
    v = decode.decode_frames("a.mp4", decode.Uniform(32), size=(224, 224))
    v.frames.shape, v.pts            # (32, 224, 224, 3) uint8, seconds
    batch = decode.decode_batch(paths, decode.Fps(1.0), size=224, crop=True)
    [b.error for b in batch if not b.ok]
    audio = decode.decode_audio("a.mp4")                # 16 kHz mono float32
    cues = decode.read_subtitles("a.mp4")               # [(start, end, text), ...]

A sampler picks target times; for each target the decoder returns the frame shown at that time
(the last frame whose pts <= target; the first frame when the target precedes it).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ._core import decode as _d
from .checks import as_int, check_output_bytes

DecodeError = _d.DecodeError
_I32_MAX = 2**31 - 1  # counts and sizes the native decoder holds in int

# ---------------------------------------------------------------------------- samplers


@dataclass(frozen=True)
class Uniform:
    """N frames at the midpoints of N equal segments of [start, end) (TSN-style)."""

    num_frames: int
    start: Optional[float] = None
    end: Optional[float] = None


@dataclass(frozen=True)
class Fps:
    """One frame per 1/fps window of [start, end), at `offset` inside the window (0.5 = centre),
    so frame k lines up with the k-th clip window of length 1/fps."""

    fps: float
    offset: float = 0.5
    start: Optional[float] = None
    end: Optional[float] = None


@dataclass(frozen=True)
class Timestamps:
    """Explicit times in seconds (any order; results keep this order)."""

    times: Sequence[float]


@dataclass(frozen=True)
class AllFrames:
    """Every frame with start <= pts < end."""

    start: Optional[float] = None
    end: Optional[float] = None


Sampler = Union[Uniform, Fps, Timestamps, AllFrames]


def _sampler_spec(sampler: Sampler) -> "_d.SamplerSpec":
    s = _d.SamplerSpec()
    start = getattr(sampler, "start", None)
    end = getattr(sampler, "end", None)
    if start is not None and not float(start) >= 0:
        raise ValueError("start must be >= 0")
    if end is not None and not float(end) >= 0:
        raise ValueError("end must be >= 0")
    s.start = -1.0 if start is None else float(start)
    s.end = -1.0 if end is None else float(end)
    if isinstance(sampler, Uniform):
        n = as_int(sampler.num_frames, "num_frames")
        if not 0 <= n <= _I32_MAX:
            raise ValueError(f"num_frames must be in 0..{_I32_MAX}, got {n}")
        s.kind = _d.SamplerKind.uniform
        s.num_frames = n
    elif isinstance(sampler, Fps):
        if not sampler.fps > 0:
            raise ValueError("fps must be > 0")
        s.kind = _d.SamplerKind.fps
        s.fps = float(sampler.fps)
        s.window_offset = float(sampler.offset)
    elif isinstance(sampler, Timestamps):
        times = [float(t) for t in sampler.times]
        if not all(math.isfinite(t) for t in times):
            raise ValueError("timestamps must be finite")
        s.kind = _d.SamplerKind.timestamps
        s.timestamps = times
    elif isinstance(sampler, AllFrames):
        s.kind = _d.SamplerKind.all
    else:
        raise TypeError(f"unknown sampler {sampler!r}; use Uniform, Fps, Timestamps or AllFrames")
    return s


def sample_times(sampler: Sampler, start: float, duration: float) -> np.ndarray:
    """The target times `sampler` picks for a video starting at `start` lasting `duration` s."""
    return np.asarray(_d.sample_times(_sampler_spec(sampler), float(start), float(duration)))


# ---------------------------------------------------------------------------- output

Size = Union[None, int, Tuple[int, int]]
_INTERP = {
    "bilinear": _d.Interpolation.bilinear,
    "bicubic": _d.Interpolation.bicubic,
    "area": _d.Interpolation.area,
    "nearest": _d.Interpolation.nearest,
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _output_spec(size: Size, crop: bool, interpolation: str, dtype, mean, std, rotate: bool) -> "_d.OutputSpec":
    o = _d.OutputSpec()
    if size is None:
        o.resize = _d.ResizeMode.none
        if crop:
            raise ValueError("crop needs a size")
    elif isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        if not 0 < size <= _I32_MAX:
            raise ValueError(f"size must be in 1..{_I32_MAX}, got {size}")
        o.resize = _d.ResizeMode.shorter_side
        o.shorter_side = int(size)
    else:
        if isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2:
            raise TypeError(f"size must be None, an int (shorter side) or (height, width), got {size!r}")
        h, w = (as_int(x, "size") for x in size)
        if not (0 < h <= _I32_MAX and 0 < w <= _I32_MAX):
            raise ValueError(f"size must be positive (and below {_I32_MAX}), got {size}")
        o.resize = _d.ResizeMode.exact
        o.height, o.width = h, w
    o.center_crop = bool(crop)
    if interpolation not in _INTERP:
        raise ValueError(f"interpolation must be one of {sorted(_INTERP)}")
    o.interpolation = _INTERP[interpolation]
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.uint8), np.dtype(np.float32)):
        raise TypeError("dtype must be uint8 (NHWC) or float32 (normalised NCHW)")
    if (mean is not None or std is not None) and dt != np.float32:
        raise ValueError("mean/std need dtype=float32")
    o.to_float = dt == np.float32
    if o.to_float:
        o.mean = [float(x) for x in (mean if mean is not None else (0.0, 0.0, 0.0))]
        o.std = [float(x) for x in (std if std is not None else (1.0, 1.0, 1.0))]
        if any(s == 0 or not math.isfinite(s) for s in o.std):
            raise ValueError("std must be finite and non-zero")
    o.apply_rotation = bool(rotate)
    return o


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True)
class StreamInfo:
    index: int
    type: str
    codec: str
    start_time: float
    duration: float
    language: str = ""
    width: int = 0
    height: int = 0
    avg_fps: float = 0.0
    real_fps: float = 0.0
    num_frames: int = 0
    rotation: int = 0
    pix_fmt: str = ""
    sample_rate: int = 0
    channels: int = 0


@dataclass(frozen=True)
class VideoInfo:
    """What probe() reads from the headers. `video` is the stream frames are decoded from."""

    path: str
    format: str
    duration: float
    start_time: float
    bit_rate: float
    video_stream: int
    frame_count_estimate: int
    streams: Tuple[StreamInfo, ...]

    @property
    def video(self) -> Optional[StreamInfo]:
        return self.streams[self.video_stream] if self.video_stream >= 0 else None

    def streams_of(self, kind: str) -> Tuple[StreamInfo, ...]:
        return tuple(s for s in self.streams if s.type == kind)


def _info(d: Optional[dict]) -> Optional[VideoInfo]:
    if d is None:
        return None
    streams = tuple(StreamInfo(**s) for s in d["streams"])
    return VideoInfo(**{**d, "streams": streams})


@dataclass
class DecodedVideo:
    """Frames of one video: uint8 (n, H, W, 3) or float32 (n, 3, H, W); `pts[i]` is the true
    presentation time of frame i and `requested[i]` the sampled time it answers. When the video
    failed, `error` says why and frames is None."""

    path: str
    frames: Optional[np.ndarray]
    pts: np.ndarray
    requested: np.ndarray
    info: Optional[VideoInfo]
    error: str = ""
    frames_decoded: int = 0  # frames the decoder produced (sampled or not)
    seeks: int = 0  # seeks it made

    @property
    def ok(self) -> bool:
        return not self.error


class FrameChunk(NamedTuple):
    frames: np.ndarray
    pts: np.ndarray
    indices: np.ndarray  # position of each frame in the sampler's order


def _result(path: str, r: dict) -> DecodedVideo:
    return DecodedVideo(path=str(path), frames=r["frames"], pts=r["pts"], requested=r["requested"],
                        info=_info(r["info"]), error=r["error"], frames_decoded=r["frames_decoded"],
                        seeks=r["seeks"])


def _path(p: Union[str, os.PathLike]) -> str:
    return os.fspath(p)


# ---------------------------------------------------------------------------- API


def probe(path: Union[str, os.PathLike]) -> VideoInfo:
    """Duration, frame rates, frame count estimate, streams, codecs, rotation, start time.
    Reads headers only. Raises DecodeError for unreadable files."""
    return _info(_d.probe(_path(path)))


def _output_bytes(path: str, sampler: Sampler, o: "_d.OutputSpec") -> float:
    """Bytes the decoded frames of one video would take (frames x height x width x 3 x value
    size), from the sampler and the headers; 0 when the file cannot be probed (decoding then
    reports that itself)."""
    n = (as_int(sampler.num_frames, "num_frames") if isinstance(sampler, Uniform)
         else len(sampler.times) if isinstance(sampler, Timestamps) else None)
    exact = o.resize == _d.ResizeMode.exact or o.center_crop
    info = None
    if n is None or not exact:
        try:
            info = probe(path)
        except DecodeError:
            return 0.0
        if info.video is None:
            return 0.0
    if n is None:
        start = sampler.start or 0.0
        end = info.duration if sampler.end is None else min(sampler.end, info.duration)
        seconds = max(0.0, end - start)
        rate = sampler.fps if isinstance(sampler, Fps) else (info.video.avg_fps or info.video.real_fps or 30.0)
        n = math.ceil(seconds * rate) + 1
    if exact:
        pixels = o.height * o.width if o.resize == _d.ResizeMode.exact else o.shorter_side ** 2
    else:
        w, h = max(1, info.video.width), max(1, info.video.height)
        if o.resize == _d.ResizeMode.shorter_side:
            scale = o.shorter_side / min(w, h)
            w, h = w * scale, h * scale
        pixels = w * h
    return float(n) * pixels * 3 * (4 if o.to_float else 1)


def decode_frames(
    path: Union[str, os.PathLike],
    sampler: Sampler,
    size: Size = None,
    *,
    crop: bool = False,
    interpolation: str = "bilinear",
    dtype=np.uint8,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    rotate: bool = True,
    threads: int = 0,
    stream: Optional[int] = None,
) -> DecodedVideo:
    """Decode the sampled frames of one video. size: None (native), int (shorter side) or (h, w)
    (exact; with crop=True: cover then centre-crop). float32 output is (x/255 - mean)/std in NCHW.
    threads: FFmpeg threads for this video (0: all cores). Raises DecodeError on failure."""
    o = _output_spec(size, crop, interpolation, dtype, mean, std, rotate)
    spec = _sampler_spec(sampler)
    check_output_bytes(_output_bytes(_path(path), sampler, o), f"decoding {_path(path)}")
    r = _d.decode_video(_path(path), spec, o, as_int(threads, "threads"), -1 if stream is None else as_int(stream, "stream"))
    return _result(_path(path), r)


def decode_batch(
    paths: Sequence[Union[str, os.PathLike]],
    sampler: Sampler,
    size: Size = None,
    threads: int = 0,
    *,
    crop: bool = False,
    interpolation: str = "bilinear",
    dtype=np.uint8,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    rotate: bool = True,
) -> list:
    """Decode many videos in parallel on the native pool (GIL released). threads is the total
    budget (0: the native pool size), split as videos x FFmpeg threads <= budget. Returns one
    DecodedVideo per path, in order; a failed file gets `error` set and never fails the batch."""
    o = _output_spec(size, crop, interpolation, dtype, mean, std, rotate)
    ps = [_path(p) for p in paths]
    spec = _sampler_spec(sampler)
    check_output_bytes(sum(_output_bytes(p, sampler, o) for p in ps), f"decoding a batch of {len(ps)} video(s)")
    rs = _d.decode_batch(ps, spec, o, as_int(threads, "threads"))
    return [_result(p, r) for p, r in zip(ps, rs)]


def batch_plan(n_videos: int, threads: int = 0) -> Tuple[int, int]:
    """(video workers, FFmpeg threads per video) that decode_batch uses for this budget."""
    return tuple(_d.plan_batch(int(n_videos), int(threads)))


def iter_frames(
    path: Union[str, os.PathLike],
    sampler: Sampler,
    size: Size = None,
    *,
    chunk_size: int = 16,
    crop: bool = False,
    interpolation: str = "bilinear",
    dtype=np.uint8,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    rotate: bool = True,
    threads: int = 0,
    stream: Optional[int] = None,
) -> Iterator[FrameChunk]:
    """Stream the sampled frames in chunks of at most chunk_size (memory stays bounded). Chunks come
    in time order; `indices` map frames back to the sampler's order."""
    if not 0 < as_int(chunk_size, "chunk_size") <= _I32_MAX:
        raise ValueError("chunk_size must be positive")
    o = _output_spec(size, crop, interpolation, dtype, mean, std, rotate)
    spec = _sampler_spec(sampler)
    # only one chunk is held at a time: that is what the budget bounds
    check_output_bytes(_output_bytes(_path(path), Uniform(chunk_size), o), f"one chunk of {_path(path)}")
    fs = _d.FrameStream(_path(path), spec, o, as_int(threads, "threads"), int(chunk_size),
                        -1 if stream is None else as_int(stream, "stream"))
    while True:
        r = fs.next_chunk()
        if len(r["pts"]) == 0:
            return
        yield FrameChunk(r["frames"], r["pts"], r["indices"])


def decode_audio(
    path: Union[str, os.PathLike],
    start: Optional[float] = None,
    end: Optional[float] = None,
    *,
    sample_rate: int = 16000,
    stream: Optional[int] = None,
) -> np.ndarray:
    """Audio as mono float32 at sample_rate (16 kHz for speech recognition), optionally only
    [start, end) seconds. Raises DecodeError when the file has no audio."""
    if start is not None and start < 0:
        raise ValueError("start must be >= 0")
    if end is not None and end < 0:
        raise ValueError("end must be >= 0")
    if start is not None and end is not None and end < start:
        raise ValueError("end must not precede start")
    samples, _, _ = _d.decode_audio(_path(path), -1.0 if start is None else float(start),
                                    -1.0 if end is None else float(end), int(sample_rate),
                                    -1 if stream is None else int(stream))
    return samples


class Subtitle(NamedTuple):
    start: float
    end: float
    text: str
    source: str  # "stream:<index>" or the sidecar file name


SIDECAR_SUFFIXES = (".srt", ".vtt")


def sidecar_subtitle_files(path: Union[str, os.PathLike]) -> list:
    """Sidecar files next to a video: same stem, .srt/.vtt, optionally with a language tag
    (movie.srt, movie.en.vtt)."""
    p = Path(path)
    out = []
    for cand in sorted(p.parent.glob(p.stem + ".*")):
        if cand.suffix.lower() in SIDECAR_SUFFIXES and cand.is_file() and cand != p:
            middle = cand.name[len(p.stem):-len(cand.suffix)]
            if middle == "" or (middle.startswith(".") and "." not in middle[1:]):
                out.append(cand)
    return out


def read_subtitles(path: Union[str, os.PathLike], stream: Optional[int] = None, sidecar: bool = True) -> list:
    """Timed text of a video: its first text subtitle stream (or `stream`), plus sidecar .srt/.vtt
    files next to it. Returns Subtitle(start, end, text, source) tuples sorted by start."""
    p = _path(path)
    cues = []
    if Path(p).suffix.lower() not in SIDECAR_SUFFIXES:
        idx = -1 if stream is None else int(stream)
        streams = _d.text_subtitle_streams(p) if idx < 0 else [idx]
        if streams:
            for s, e, t in _d.read_subtitle_stream(p, streams[0]):
                cues.append(Subtitle(s, e, t, f"stream:{streams[0]}"))
    elif Path(p).suffix.lower() in SIDECAR_SUFFIXES:
        for s, e, t in _d.read_subtitle_stream(p, -1):
            cues.append(Subtitle(s, e, t, Path(p).name))
    if sidecar and Path(p).suffix.lower() not in SIDECAR_SUFFIXES:
        for f in sidecar_subtitle_files(p):
            for s, e, t in _d.read_subtitle_stream(str(f), -1):
                cues.append(Subtitle(s, e, t, f.name))
    cues.sort(key=lambda c: (c.start, c.source))
    return cues


# ---------------------------------------------------------------------------- GPU conversion


def cuda_available() -> bool:
    """True when the CUDA kernels are compiled in and a device is visible."""
    from . import _core

    return hasattr(_core, "decode_cuda") and _core.build_info().get("cuda_device_count", 0) > 0


def _cuda():
    from . import _core

    if not hasattr(_core, "decode_cuda"):
        raise RuntimeError("this build has no CUDA kernels (nvcc was not found at build time)")
    return _core.decode_cuda


def rgb_to_batch_cuda(rgb: np.ndarray, size: Tuple[int, int], mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)) -> np.ndarray:
    """(n, H, W, 3) uint8 RGB frames -> (n, 3, h, w) float32 (x/255 - mean)/std, resized bilinearly
    (half-pixel centres) on the GPU. For device-resident frames use _core.decode_cuda.*_device."""
    return _cuda().rgb_to_batch(np.ascontiguousarray(rgb), tuple(size), tuple(mean), tuple(std))


def nv12_to_batch_cuda(y: np.ndarray, uv: np.ndarray, size: Tuple[int, int], mean=(0.0, 0.0, 0.0),
                       std=(1.0, 1.0, 1.0), matrix: str = "bt601", full_range: bool = False) -> np.ndarray:
    """NV12 frames (y: (n, H, W), uv: (n, H/2, W) interleaved) -> (n, 3, h, w) normalised float32
    RGB on the GPU, same resize as rgb_to_batch_cuda."""
    return _cuda().nv12_to_batch(np.ascontiguousarray(y), np.ascontiguousarray(uv), tuple(size), tuple(mean),
                                 tuple(std), matrix, bool(full_range))


__all__ = [
    "AllFrames", "DecodeError", "DecodedVideo", "Fps", "FrameChunk", "IMAGENET_MEAN", "IMAGENET_STD",
    "Sampler", "StreamInfo", "Subtitle", "Timestamps", "Uniform", "VideoInfo", "batch_plan",
    "cuda_available", "decode_audio", "decode_batch", "nv12_to_batch_cuda", "rgb_to_batch_cuda", "decode_frames", "iter_frames", "probe", "read_subtitles",
    "sample_times", "sidecar_subtitle_files",
]
