"""One video file -> its clip rows and timed text lines, on a fixed clip grid (default 2 s):

    visual    EfficientNet-Lite0 features of the frame at each clip's centre (1280-d)
    concept   those frames' top ImageNet classes placed in the text space (384-d)
    speech    Whisper transcript lines overlapping the clip, embedded by the text model (384-d)
    subtitle  subtitle cues (embedded streams and sidecar .srt/.vtt) overlapping the clip (384-d)
    ocr       on-screen text (captions burned into the picture, slides, signs, tickers) read by
              PP-OCRv4 in the clip-centre frames, merged into timed lines (onscreen.py) and
              embedded like speech (384-d); off with ``ocr=False`` (``ivcr index --no-ocr``)

The text model (multilingual-e5-small by default, MiniLM-L6 for English-only indexes built before
it) is recorded in the index's settings; every text channel lives in its space.
    clip      (optional) a CLIP-family image embedding of the same frame, when the index is built
              with a model exported by models/export_clip.py: text queries then meet frames directly

The speech, subtitle and ocr channels carry one extra "presence" dimension (1 where the clip has text,
0 where not) so a query can subtract a chance-level baseline from clips that have text: unrelated
sentences still score ~0.1-0.2 (on MiniLM's scale), and without the baseline every talking video would
outrank silent ones on any query. A clip without text scores exactly 0 there. Decoding runs
one video ahead in a background thread (the native decoder releases the GIL) while the current
video is encoded and written, so the stages overlap.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import decode
from ..errors import InvalidArgument
from ..models import ClipEncoder, FrameEncoder, SpeechRecognizer, TextEncoder
from ..models.ocr import TextReader
from ..models.registry import DEFAULT_TEXT_MODEL, TEXT_MODELS, model_dir
from .layout import PRESENCE_CHANNELS, TEXT_CHANNELS, TEXT_SOURCES
from .onscreen import OCR_LONG_SIDE, read_video_text, timed_lines
from .store import ChannelSpec, VideoRecord


def check_text_model(name: str) -> str:
    if name not in TEXT_MODELS:
        raise InvalidArgument(f"unknown text model {name!r}; known: {', '.join(TEXT_MODELS)}")
    return name


def clip_grid(duration: float, clip_seconds: float) -> np.ndarray:
    """(n, 2) clip windows covering [0, duration]; the last one may be shorter."""
    n = max(1, math.ceil(duration / clip_seconds - 1e-9))
    starts = np.arange(n) * clip_seconds
    return np.stack([starts, np.minimum(starts + clip_seconds, duration)], axis=1)


def texts_per_clip(clips: np.ndarray, lines: Sequence[tuple[float, float, str]]) -> list[str]:
    """The text of every line overlapping each clip, joined in time order."""
    out = []
    for a, b in clips:
        hit = [t for s, e, t in lines if s < b and e > a]
        out.append(" ".join(hit))
    return out


class VideoEncoder:
    """The encoders (loaded once) and the decode + encode of one video into a `VideoRecord`; no
    index. `Ingestor` writes what it makes; on Ray, each ingest worker holds one."""

    def __init__(self, clip_seconds: float = 2.0, speech: bool = True, models_root: Path | None = None,
                 threads: int | None = None, clip_model: str | Path | None = None, ocr: bool = True,
                 ocr_long_side: int = OCR_LONG_SIDE, text_model: str | None = None):
        root = models_root or model_dir()
        self.clip_seconds = float(clip_seconds)
        text_model = check_text_model(text_model or DEFAULT_TEXT_MODEL)
        self.text = TextEncoder(text_model, root=root, threads=threads)
        self.frames = FrameEncoder(root=root, threads=threads, text_model=text_model)
        self.speech = SpeechRecognizer(root=root, threads=threads) if speech else None
        self.ocr = TextReader(root=root, threads=threads) if ocr else None
        self.ocr_long_side = int(ocr_long_side)
        self.clip = ClipEncoder(clip_model, threads=threads) if clip_model else None
        self.clip_model = str(Path(clip_model).resolve()) if clip_model else None

    def layout(self) -> tuple[dict, list[ChannelSpec]]:
        """The settings and channels an index written by this encoder has."""
        # line_text_model: the model of the text lines' own vectors (store.py texts.vec); moments snap
        # to lines only while it is the index's text model (a re-embedded index must redo them too)
        settings = {"clip_seconds": self.clip_seconds, "text_model": self.text.card.name,
                    "line_text_model": self.text.card.name,
                    "frame_model": self.frames.card.name, "speech_model": self.speech.card.name if self.speech else None,
                    "clip_model": self.clip_model, "ocr_model": self.ocr.card.name if self.ocr else None,
                    "ocr_long_side": self.ocr_long_side if self.ocr else None}
        specs = [ChannelSpec("clip", self.clip.dim, model=self.clip.card.name,
                             model_sha256=self.clip.card.raw["sha256"])] if self.clip else []
        specs += [ChannelSpec("visual", self.frames.dim, model=self.frames.card.name,
                              model_sha256=self.frames.card.raw["sha256"]),
                  *(ChannelSpec(c, self.text.dim + (c in PRESENCE_CHANNELS), model=self.text.card.name,
                                model_sha256=self.text.card.raw["sha256"])
                    for c in TEXT_CHANNELS if c != "ocr" or self.ocr)]
        return settings, specs

    def encode_file(self, path: str | Path, digest: str) -> tuple[VideoRecord, dict]:
        """Decode and encode one video: (its record, seconds per stage)."""
        stages = {"decode": 0.0, "frames": 0.0, "speech": 0.0, "ocr": 0.0, "text": 0.0}
        d = self._decode(Path(path))
        stages["decode"] = d["seconds"]
        return self._encode(Path(path), d, digest, stages), stages

    # -- stages ---------------------------------------------------------------------------
    def _decode(self, path: Path) -> dict:
        """Everything that needs the file: probe, frames, audio, subtitles (runs in a thread)."""
        t0 = time.perf_counter()
        info = decode.probe(path)
        if info.video is None:
            raise decode.DecodeError(f"{path}: no video stream")
        duration = float(info.duration) if info.duration > 0 else 0.0
        if duration <= 0:
            raise decode.DecodeError(f"{path}: unknown or zero duration")
        clips = clip_grid(duration, self.clip_seconds)
        centres = clips.mean(axis=1)
        size = self.frames.image_size
        frames = decode.decode_frames(path, decode.Timestamps(list(centres)), size=(size, size), crop=True,
                                      dtype=np.float32, mean=list(self.frames.mean / 255.0),
                                      std=list(self.frames.std / 255.0))
        clip_frames = None
        if self.clip is not None:
            cs = self.clip.image_size
            clip_frames = decode.decode_frames(path, decode.Timestamps(list(centres)), size=(cs, cs), crop=True,
                                               dtype=np.float32, mean=list(self.clip.mean / 255.0),
                                               std=list(self.clip.std / 255.0)).frames
        audio = None
        if self.speech is not None and info.streams_of("audio"):
            try:
                audio = decode.decode_audio(path)
            except decode.DecodeError:
                audio = None  # a broken audio track costs the speech channel, not the video
        subs = [(s.start, s.end, s.text) for s in decode.read_subtitles(path)]
        return {"info": info, "clips": clips, "frames": frames, "clip_frames": clip_frames, "audio": audio, "subs": subs,
                "seconds": time.perf_counter() - t0}

    def _encode(self, path: Path, d: dict, digest: str, st: dict) -> VideoRecord:
        clips, info = d["clips"], d["info"]
        t0 = time.perf_counter()
        feats, probs = self.frames.encode(d["frames"].frames)
        concepts = self.frames.concepts(probs)
        top = [", ".join(f"{n} {p:.2f}" for n, p in row) for row in self.frames.top_classes(probs, top=3)]
        t1 = time.perf_counter()
        segments = self.speech.transcribe(d["audio"]) if d["audio"] is not None and len(d["audio"]) else []
        t2 = time.perf_counter()
        ocr_lines = []
        if self.ocr is not None:
            # decoded here, in chunks, rather than one video ahead: an hour of frames at the
            # reader's size would take gigabytes (and decoding ahead bought nothing measurable on
            # 2 cores, docs/BENCHMARKS.md)
            per_clip = read_video_text(self.ocr, path, info, clips.mean(axis=1), self.ocr_long_side)
            ocr_lines = timed_lines(clips, per_clip)
        t_ocr = time.perf_counter()
        speech_lines = [(s.start, s.end, s.text) for s in segments]
        vectors = {"visual": feats, "concept": concepts}
        if self.clip is not None:
            vectors["clip"] = self.clip.encode_images(d["clip_frames"])
        text_lines = {"speech": speech_lines, "subtitle": d["subs"], "ocr": ocr_lines}
        sources = [name for name in TEXT_SOURCES if name != "ocr" or self.ocr is not None]
        texts = [(src, s, e, t) for src in TEXT_SOURCES for s, e, t in text_lines[src]]
        per_clip = {name: texts_per_clip(clips, text_lines[name]) for name in sources}
        # one encoder pass over every distinct text: the clips' joined lines and each line alone
        # (a line's own vector lets a moment snap to the lines that match a query)
        distinct = sorted({t for ts in per_clip.values() for t in ts if t} | {t for *_, t in texts})
        encoded = dict(zip(distinct, self.text.encode(distinct, "passage"))) if distinct else {}
        for name, per in per_clip.items():
            vec = np.zeros((len(clips), self.text.dim + 1), np.float32)
            for i, t in enumerate(per):
                if t:
                    vec[i, :-1], vec[i, -1] = encoded[t], 1.0
            vectors[name] = vec
        text_vectors = np.array([encoded[t] for *_, t in texts], np.float32).reshape(len(texts), self.text.dim)
        t3 = time.perf_counter()
        st["frames"] += t1 - t0
        st["speech"] += t2 - t1
        st["ocr"] = st.get("ocr", 0.0) + t_ocr - t2
        st["text"] += t3 - t_ocr
        v = info.video
        return VideoRecord(path=str(path), content_hash=digest, duration=float(clips[-1, 1]), clip_times=clips,
                           vectors=vectors, texts=texts, text_vectors=text_vectors, top_concepts=top,
                           fps=v.avg_fps or None, width=v.width, height=v.height,
                           info={"format": info.format, "codec": v.codec})
