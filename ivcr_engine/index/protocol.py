"""The index protocol: the few operations a dialogue turn, the HTTP server and a batcher need.

`Index` (one folder), `ShardedIndex` (shards in-process or on Ray actors) and wrappers such as a
micro-batching index implement it; the dialogue uses nothing else, so it runs unchanged over any
of them. Videos are named by a *ref*: an index-wide number, stable for the index's life (indexes
are append-only; a removed video keeps its ref and is never returned).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import InvalidArgument, WrongType
from .layout import LEXICAL

VideoRef = int


@dataclass(frozen=True)
class VideoInfo:
    ref: int
    video_id: str      # a stable string id: "3" in one index, "s1:3" in shard 1 of a sharded one
    path: str
    duration: float
    removed: bool


@dataclass
class Moment:
    video: int          # the video's ref
    start: float
    end: float
    score: float = 0.0

    def __str__(self) -> str:
        return f"{self.start:.1f}s-{self.end:.1f}s"


# How each source of a timed text line is named where evidence is shown to a person.
SOURCE_LABELS = {"speech": "speech", "subtitle": "subtitle", "ocr": "on screen"}


def source_label(source: str) -> str:
    return SOURCE_LABELS.get(source, source)


@dataclass
class Evidence:
    lines: list[tuple[str, float, float, str]] = field(default_factory=list)  # (source, start, end, text)
    concepts: list[str] = field(default_factory=list)                         # top classes of the moment's clips
    channel_scores: dict = field(default_factory=dict)                        # channel -> best clip score
    # with a query: each line's calibrated similarity to it minus what an unrelated sentence
    # reaches (> 0: the line matches; NaN: not scored, e.g. no vector); empty without a query
    line_match: list = field(default_factory=list)


@dataclass
class MomentMatch:
    """A moment found for a query, with what supports it (None when not asked for)."""
    moment: Moment
    evidence: Evidence | None = None


@runtime_checkable
class VideoIndex(Protocol):
    clip_seconds: float

    def __len__(self) -> int:
        """Live (not removed) videos."""

    def num_refs(self) -> int:
        """Refs 0..num_refs()-1 are valid arguments (removed videos included)."""

    def video(self, ref: int) -> VideoInfo: ...

    def encode_queries(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """channel -> (B, d) float32 query rows, from one batched encoder call."""

    def encode_image(self, picture) -> dict[str, np.ndarray]:
        """A query picture (JPEG/PNG/WebP bytes, checked and decoded safely, or (H, W, 3) uint8
        RGB) -> {"visual": (1, d)}: the frame model's features, as the clips' visual rows hold."""

    def rank_videos(self, queries: Mapping[str, np.ndarray], k: int, weights: Mapping[str, float] | None = None,
                    allow: Sequence[int] | None = None, deny: Sequence[int] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """B queries -> (refs (B, k) int64 padded -1, scores (B, k) float32 padded -inf), best first,
        ties by the lower ref; allow/deny (refs) apply to every row."""

    def moments(self, queries: Mapping[str, np.ndarray], videos: Sequence[int], weights: Mapping[str, float] | None = None,
                window: tuple[float, float] | None = None, top: int = 1, evidence: bool = True
                ) -> list[list[MomentMatch]]:
        """One query (one row per channel): the best span(s) of each video from its clips inside
        ``window`` seconds, each with its evidence (``Evidence.line_match`` scored against the
        query), in one call: one clip scoring and one read of each video's lines. One list per
        video, in order."""

    def best_moments(self, queries: Mapping[str, np.ndarray], video: int, weights: Mapping[str, float] | None = None,
                     window: tuple[float, float] | None = None, top: int = 1) -> list[Moment]:
        """``moments`` of one video, without evidence."""

    def best_moments_many(self, queries: Mapping[str, np.ndarray], videos: Sequence[int],
                          weights: Mapping[str, float] | None = None, window: tuple[float, float] | None = None,
                          top: int = 1) -> list[list[Moment]]:
        """``moments`` of each video, without evidence."""

    def evidence(self, video: int, start: float, end: float, queries: Mapping[str, np.ndarray] | None = None,
                 weights: Mapping[str, float] | None = None) -> Evidence:
        """Every timed line overlapping [start, end] and the clips' top concepts; with ``queries``
        (one row per channel, as ``best_moments`` takes) each line also gets its match to the
        query (``Evidence.line_match``)."""

    def moment_vector(self, video: int, start: float, end: float, channel: str = "visual") -> np.ndarray:
        """The unit mean feature (1, d) of the clips overlapping [start, end]."""

    def refresh(self) -> bool:
        """Map rows committed since open; True when something changed."""


class MomentShortcuts:
    """``best_moments`` and ``best_moments_many`` for an index that implements ``moments``."""

    def best_moments(self, queries, video, weights=None, window=None, top=1) -> list[Moment]:
        return self.best_moments_many(queries, [video], weights, window, top)[0]

    def best_moments_many(self, queries, videos, weights=None, window=None, top=1) -> list[list[Moment]]:
        return [[m.moment for m in ms] for ms in self.moments(queries, videos, weights, window, top, evidence=False)]


def check_ref(index: VideoIndex, ref) -> int:
    """A ref as a Python int, or a clear error."""
    if isinstance(ref, bool) or not isinstance(ref, (int, np.integer)):
        raise WrongType(f"a video ref is an int, got {type(ref).__name__}")
    if not 0 <= int(ref) < index.num_refs():
        raise InvalidArgument(f"no video with ref {int(ref)} (refs are 0..{index.num_refs() - 1})")
    return int(ref)


def check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise WrongType("encode_queries takes a sequence of strings, not one string")
    out = list(texts)
    if not out:
        raise InvalidArgument("no queries given")
    for t in out:
        if not isinstance(t, str):
            raise WrongType(f"a query is a string, got {type(t).__name__}")
        if not t.strip():
            raise InvalidArgument("the query is empty")
    return out


def lexical_rows(texts) -> np.ndarray:
    """The lexical channel's query rows: one text per row, (B, 1) str."""
    rows = np.asarray(texts)
    if rows.dtype.kind != "U":
        raise WrongType(f"the {LEXICAL!r} channel's rows are the query texts (str), not {rows.dtype}")
    return rows.reshape(-1, 1)


def dense(queries: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The channels scored by vectors (every one but the lexical)."""
    return {c: q for c, q in queries.items() if c != LEXICAL}


def query_rows(queries: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-channel queries as (B, d) float32 with the same B in every channel (the lexical
    channel's: the query texts, (B, 1) str)."""
    if not queries:
        raise InvalidArgument("no query channels given")
    out = {c: lexical_rows(q) if c == LEXICAL else np.atleast_2d(np.asarray(q, np.float32)) for c, q in queries.items()}
    sizes = {q.shape[0] for q in out.values()}
    if len(sizes) != 1:
        raise InvalidArgument(f"query channels disagree on the batch size: {sorted(sizes)}")
    return out
