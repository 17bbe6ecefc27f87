"""The reference for the engine's moment edges (csrc/engine/moment_edges.cpp), kept from the
Python path it replaced. Moment edges at sub-clip precision: snap a span found on the clip grid to the timed text lines
(speech sentences, subtitle cues) that match the query.

The span scorer works on 2 s clips, so its moments start and end on the grid (12.0-18.0 s for a
sentence spoken at 12.2-16.2 s), which caps their IoU with the truth. Speech and subtitle lines
carry their own times, and each line has its own vector in the text model's space (stored at
ingest beside the line), so the lines overlapping the chosen span can be scored against the
query exactly. When one matches clearly, the moment becomes that line's edges, widened to the
neighbouring lines of the same source that match nearly as well (a sentence Whisper split in
two, a subtitle cue broken over two screens). Otherwise the grid span stays as it was: a query
about what is seen, not said, is never cut down to an unrelated line.

This module is pure (no index, no I/O): the moment service (moments.py) hands it the lines and their scores.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ivcr_engine.errors import InvalidArgument

# A line matches the query when its calibrated similarity (TextEncoder.calibrate's scale) is this
# far above layout.TEXT_BASELINE, what an unrelated sentence still reaches under MiniLM. Quotes
# and paraphrases of a line score 0.45-0.95 under MiniLM, unrelated lines 0.0-0.2; under
# multilingual-e5-small, calibrated, matches score 0.27-0.7 (Chinese queries for English speech
# too) and unrelated lines -0.3-0.05. On bench_moments.py's paraphrases (E5), moment R@1@0.7
# inside the right video is 68.8 % with 0.15 here, 81.2 % with 0.10 and with 0.05.
MATCH_ABOVE_CHANCE = 0.10
# Neighbouring lines join the moment while they score within this of the best line.
NEAR_BEST = 0.1
# When no line in the grid span matches, the video's best line still answers a paraphrase if it
# leads every other line by this much (see best_line). On bench_moments.py's paraphrases inside
# their video (E5), the grid spans left unsnapped were 30-40 s for a sentence at 2.2-4.9 s, and
# spans of 36 s of a 40 s video where the lines scored within 0.01 of each other.
LEAD = 0.02


def line_scores(query_rows: dict[str, np.ndarray], weights: dict[str, float],
                lines: Sequence[tuple[str, float, float, str]], vectors: Sequence[np.ndarray | None]) -> np.ndarray:
    """Cosine of the query to each line (NaN where the line cannot be scored: no stored vector, or
    its source is not a channel this query searches with a positive weight). ``query_rows`` holds
    one (1, d') row per channel; a channel's first d dims are the text query (speech and subtitle
    rows carry a presence dimension after them)."""
    out = np.full(len(lines), np.nan, np.float32)
    for i, ((source, *_), vec) in enumerate(zip(lines, vectors)):
        q = query_rows.get(source)
        if vec is None or q is None or weights.get(source, 0.0) <= 0.0 or q.shape[-1] < len(vec):
            continue
        qv = np.asarray(q, np.float32).reshape(-1)[:len(vec)]
        norm = float(np.linalg.norm(qv)) * float(np.linalg.norm(vec))
        if norm > 0:
            out[i] = float(qv @ vec) / norm
    return out


def snap_to_lines(start: float, end: float, lines: Sequence[tuple[str, float, float, str]], scores: np.ndarray,
                  chance: float, bounds: tuple[float, float]) -> tuple[float, float] | None:
    """The edges of the lines matching the query, for a grid span [start, end].

    ``lines`` are (source, start, end, text) in time order, around the span (lines that only come
    near it may join a match but never start one); ``scores`` their cosines to the query (NaN:
    unscored). The best-scoring line overlapping the span must reach ``chance +
    MATCH_ABOVE_CHANCE``; its neighbours of the same source (next in time order) join while they
    reach ``best - NEAR_BEST`` and the match level. The result is clipped to ``bounds`` (the
    video, or a window the moment must stay in). None: keep the grid span.
    """
    scores = np.asarray(scores, np.float32)
    if len(lines) != len(scores):
        raise InvalidArgument(f"{len(scores)} scores for {len(lines)} lines")
    inside = [i for i, (_, a, b, _) in enumerate(lines) if a < end and b > start and np.isfinite(scores[i])]
    if not inside:
        return None
    best = max(inside, key=lambda i: (scores[i], -i))  # ties: the earlier line
    match = chance + MATCH_ABOVE_CHANCE
    if scores[best] < match:
        return None
    near = max(match, float(scores[best]) - NEAR_BEST)
    same = [i for i, l in enumerate(lines) if l[0] == lines[best][0]]  # the best line's source, in time order
    p = q = same.index(best)
    while p > 0 and scores[same[p - 1]] >= near:
        p -= 1
    while q < len(same) - 1 and scores[same[q + 1]] >= near:
        q += 1
    chosen = same[p:q + 1]
    lo = max(min(lines[i][1] for i in chosen), bounds[0])
    hi = min(max(lines[i][2] for i in chosen), bounds[1])
    return (float(lo), float(hi)) if hi > lo else None


def best_line(lines: Sequence[tuple[str, float, float, str]], scores: np.ndarray, chance: float,
              bounds: tuple[float, float]) -> tuple[float, float] | None:
    """The one line of the video that answers the query when the grid span held none that
    matches (``snap_to_lines`` gave None): a paraphrase often scores its sentence above what
    unrelated sentences reach (``chance``) without reaching the match level, while the clip grid,
    which mixes speech with what is seen, puts its span elsewhere or over most of the video.

    ``lines`` are every line within ``bounds``, ``scores`` their cosines (NaN: unscored). The best
    line must reach ``chance`` and lead every other scored line by ``LEAD``; when lines are that
    close the evidence is flat and None keeps the grid span. The result is clipped to ``bounds``."""
    scores = np.asarray(scores, np.float32)
    if len(lines) != len(scores):
        raise InvalidArgument(f"{len(scores)} scores for {len(lines)} lines")
    scored = [i for i in range(len(lines)) if np.isfinite(scores[i])]
    if not scored:
        return None
    ranked = sorted(scored, key=lambda i: (-scores[i], i))
    best = ranked[0]
    if scores[best] < chance or (len(ranked) > 1 and scores[best] - scores[ranked[1]] < LEAD):
        return None
    lo, hi = max(lines[best][1], bounds[0]), min(lines[best][2], bounds[1])
    return (float(lo), float(hi)) if hi > lo else None
