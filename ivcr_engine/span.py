"""Temporal span scoring (the native core in csrc/span): per-clip scores of a batch of videos in,
their best moments (start/end seconds) out, in one native call.

Inputs are ragged like the search corpus: ``scores`` concatenates every video's clip scores,
``offsets`` says which clips belong to which video, and ``clip_start``/``clip_end`` give each
clip's seconds (a span from clip i to clip j covers ``[clip_start[i], clip_end[j]]``).

Two scores, both over spans of ``min_len..max_len`` clips, the best span per start clip taken as
a candidate, then greedy temporal NMS (ties: earlier start, then shorter):

- ``contrast``: mean inside - mean outside + ``length_weight * len / T`` (prefix sums,
  O(T * max_len); means are sums times ``1/n``, computed in float64). The length term is how a caller says "prefer longer moments" when the evidence
  is flat; the whole video (no outside) has zero contrast.
- ``boundary``: ``st[i] + ed[j]``, the rise of the smoothed scores (moving average of ``smooth``
  clips) into the first clip plus the fall after the last, with the video's mean standing beyond
  both ends; the best end for each start comes from a sliding-window maximum, O(T).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _core
from .errors import InvalidArgument

METHODS = ("contrast", "boundary")


@dataclass(frozen=True)
class Spans:
    """Per video, ``top_m`` spans best first. Missing: start/end NaN, score -inf, clips -1."""

    start: np.ndarray       # (V, m) float64 seconds
    end: np.ndarray         # (V, m)
    score: np.ndarray       # (V, m) float32
    first_clip: np.ndarray  # (V, m) int64 global clip index
    last_clip: np.ndarray   # (V, m)


@dataclass(frozen=True)
class Moments:
    """Corpus-level ranking: the global best ``k`` moments (video index into the batch)."""

    video: np.ndarray   # (k,) int64, -1 = none
    start: np.ndarray   # (k,) float64
    end: np.ndarray
    score: np.ndarray   # (k,) float32


@dataclass(frozen=True)
class SpanScorer:
    method: str = "contrast"
    min_len: int = 1
    max_len: int = 32
    top_m: int = 5
    nms_iou: float = 0.5
    length_weight: float = 0.0
    smooth: int = 3

    def __post_init__(self):
        if self.method not in METHODS:
            raise InvalidArgument(f"method must be one of {METHODS}, got {self.method!r}")

    def _args(self):
        return (self.method, self.min_len, self.max_len, self.top_m, self.nms_iou, self.length_weight, self.smooth)

    def score(self, scores, offsets, clip_start, clip_end) -> Spans:
        return Spans(*_core.score_spans(scores, offsets, clip_start, clip_end, *self._args()))

    def rank(self, scores, offsets, clip_start, clip_end, video_bias=None, k: int = 10) -> Moments:
        """The best ``k`` moments over all videos; ``video_bias`` (one per video, e.g. its
        retrieval score times a weight) is added to each of its spans' scores."""
        return Moments(*_core.rank_moments(scores, offsets, clip_start, clip_end, *self._args(), video_bias, k))

    def score_one(self, scores, clip_start, clip_end) -> Spans:
        """One video's spans (a batch of one)."""
        n = len(scores)
        return self.score(scores, np.array([0, n], np.int64), clip_start, clip_end)
