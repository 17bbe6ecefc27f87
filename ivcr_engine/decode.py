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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ._core import decode as _d

DecodeError = _d.DecodeError

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
        if int(sampler.num_frames) < 0:
            raise ValueError("num_frames must be >= 0")
        s.kind = _d.SamplerKind.uniform
        s.num_frames = int(sampler.num_frames)
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
    elif isinstance(size, (int, np.integer)):
        if size <= 0:
            raise ValueError("size must be positive")
        o.resize = _d.ResizeMode.shorter_side
        o.shorter_side = int(size)
    else:
        h, w = (int(x) for x in size)
        if h <= 0 or w <= 0:
            raise ValueError("size must be positive")
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
    r = _d.decode_video(_path(path), _sampler_spec(sampler), o, int(threads), -1 if stream is None else int(stream))
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
    rs = _d.decode_batch(ps, _sampler_spec(sampler), o, int(threads))
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
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    o = _output_spec(size, crop, interpolation, dtype, mean, std, rotate)
    fs = _d.FrameStream(_path(path), _sampler_spec(sampler), o, int(threads), int(chunk_size),
                        -1 if stream is None else int(stream))
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
