"""The reference for the engine's moments (csrc/engine/moments.cpp), kept from the Python path it
replaced, as tests/search/reference.py keeps NumPy for the kernels. Moments inside videos, with the evidence behind them: one service for a turn's moment, a
served turn's candidates and a one-shot search's hits.

``find(queries, weights, videos, window, top)`` scores the clips of all the videos for one query
in one pass and cuts spans in one span-scorer call (clip grid), then, per video, reads its timed
text lines once and uses that one read twice: each span's edges snap to the lines that match the
query (moment_edges.py), so a spoken sentence's moment starts and ends with the sentence, and the
moment's evidence (its lines, each with its match to the query, and its clips' concepts) comes
from the same lines. The concepts of every moment found come from one store query.

Lines that hold the query's words (the lexical channel, lexical.py) count as matching too: a
line's score is the better of its dense match and TEXT_BASELINE + LINE_LEXICAL x its coverage of
the query's words, so "日食" finds and cites the line about an eclipse that its vector misses.

A video's lines are read whole, once, and kept for the snapshot's life in a small LRU
(``LINES_KEPT`` videos): a turn asks about the same videos with two queries (the moment's and the
candidates'), and the next turn mostly about the same videos again. A refresh maps a new snapshot
with a new service, so kept lines are never stale.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ivcr_engine.errors import InvalidArgument
from ivcr_engine.eval.metrics import temporal_iou
from ivcr_engine.models.text import calibrated
from ivcr_engine.span import SpanScorer
from ivcr_engine.index.layout import LEXICAL, TEXT_BASELINE
from .reference_lexical import LexicalSearch
from ivcr_engine.index.mapped import Mapped
from .reference_edges import best_line, line_scores, snap_to_lines
from ivcr_engine.index.protocol import Evidence, Moment, MomentMatch, dense
from ivcr_engine.index.store import IndexStore

# "lines": moments snap to the timed text lines matching the query, or take the one line that
# stands out (moment_edges.py); "snap": only the snapping (the engine before best_line); "grid":
# they keep the span scorer's clip edges. The last two are the benchmark's baselines.
MOMENT_EDGES = ("lines", "snap", "grid")
LINES_KEPT = 256  # videos whose lines a service keeps (a turn touches ten)
LINE_LEXICAL = 0.3  # a line holding all the query's words scores this far above the baseline


def span_scorer(clip_seconds: float) -> SpanScorer:
    """Spans of 1 clip to 60 s, three per video before NMS."""
    return SpanScorer(method="contrast", min_len=1, max_len=max(1, int(round(60 / clip_seconds))),
                      top_m=3, nms_iou=0.5, length_weight=0.05)


@dataclass
class LineScale:
    """How an index's line vectors are scored: ``usable`` when they are in the queries' text
    model (a text rebuild without line vectors leaves them in another space: moments then keep
    the grid), and that model's ``chance`` similarity (lines are scored on the calibrated scale)."""
    usable: bool
    chance: float


class VideoLines:
    """A video's timed text lines overlapping [lo, hi] and their match to one query, for every use
    a turn makes of them. ``read`` is the whole video's (lines, vectors or None, rowids);
    ``coverage``: line rowid -> its lexical coverage of the query (absent: none)."""

    def __init__(self, read: tuple[list, list | None, list], lo: float, hi: float, queries, weights, scale: LineScale,
                 coverage: dict[int, float] | None = None):
        every, vectors, rowids = read
        keep = [i for i, (_, a, b, _) in enumerate(every) if a < hi and b > lo]
        self.lines = [every[i] for i in keep]
        self._text_query = bool(queries) and any(c in queries for c in ("speech", "subtitle", "ocr", LEXICAL))
        self.scored = self._text_query and scale.usable and bool(dense(queries))
        if self.scored and self.lines:
            self.scores = calibrated(line_scores(queries, weights, self.lines, [vectors[i] for i in keep]), scale.chance)
        else:
            self.scores = np.full(len(self.lines), np.nan, np.float32)
        if coverage:
            lex = np.array([coverage.get(rowids[i], 0.0) for i in keep], np.float32)
            hit = lex > 0
            self.scores[hit] = np.fmax(self.scores[hit], TEXT_BASELINE + LINE_LEXICAL * lex[hit])
            self.scored = self.scored or bool(hit.any())

    def within(self, start: float, end: float) -> tuple[list, np.ndarray]:
        """The lines overlapping [start, end] (the store's own test) and their scores."""
        keep = [i for i, (_, a, b, _) in enumerate(self.lines) if a < end and b > start]
        return [self.lines[i] for i in keep], self.scores[keep]

    def line_match(self, scores: np.ndarray) -> list:
        """Evidence's per-line match: empty for a query that searches no text (a scene's vector),
        NaN where lines cannot be scored (no vectors, or another text model's)."""
        if not self._text_query:
            return []
        return [float(x) for x in np.asarray(scores, np.float32) - TEXT_BASELINE]


class MomentService:
    def __init__(self, view: Mapped, store: IndexStore, clip_seconds: float, edges: str, scale: LineScale,
                 lexical: LexicalSearch | None = None):
        if edges not in MOMENT_EDGES:
            raise InvalidArgument(f"moment_edges must be one of {MOMENT_EDGES}, got {edges!r}")
        self.view, self.store, self.clip_seconds, self.edges, self.scale = view, store, clip_seconds, edges, scale
        self.lexical = lexical
        self.span = span_scorer(clip_seconds)
        # plain views of the mapped rows: indexing np.memmap's subclass costs more than these few reads
        self._rows = {c: np.asarray(a) for c, a in view.channels.items()}
        self._start, self._end = view.plain_times()
        self._kept: OrderedDict = OrderedDict()  # video id -> (lines, vectors)
        self._lock = threading.Lock()

    def lines_of(self, video: int) -> tuple[list, list, list]:
        """Every timed line of a video (source, start, end, text) in time order, their vectors
        when they can be scored (None otherwise) and rowids, read once per snapshot while kept."""
        video_id = self.view.videos[video]["id"]
        with self._lock:
            got = self._kept.get(video_id)
            if got is not None:
                self._kept.move_to_end(video_id)
                return got
        got = self.store.text_lines(video_id, vectors=self.scale.usable)
        with self._lock:
            self._kept[video_id] = got
            while len(self._kept) > LINES_KEPT:
                self._kept.popitem(last=False)
        return got

    def clip_scores(self, queries: Mapping[str, np.ndarray], weights: Mapping[str, float], rows: np.ndarray):
        """Fused scores of the given rows for one query, and each channel's (the few clips of a
        few videos: plain NumPy is enough)."""
        total = np.zeros(len(rows), np.float32)
        parts = {}
        for c, q in dense(queries).items():
            s = self._rows[c][rows].astype(np.float32) @ np.asarray(q, np.float32).reshape(-1)
            parts[c] = s
            total += weights.get(c, 0.0) * s
        return total, parts

    def find(self, queries: Mapping[str, np.ndarray], weights: Mapping[str, float], videos: Sequence[int],
             window: tuple[float, float] | None = None, top: int = 1, evidence: bool = True) -> list[list[MomentMatch]]:
        """Up to ``top`` moments of each video (refs, checked by the caller) from its clips inside
        ``window`` seconds, best first, for one query (one row per channel); with ``evidence``,
        each moment's evidence. One list per video, in order."""
        view = self.view
        lo_w, hi_w = window or (-np.inf, np.inf)
        per_video = [view.clip_rows(v, lo_w, hi_w, overlap=False) for v in videos]
        if not any(len(r) for r in per_video):
            return [[] for _ in videos]
        rows = np.concatenate(per_video)
        offsets = np.concatenate([[0], np.cumsum([len(r) for r in per_video])]).astype(np.int64)
        scores, parts = self.clip_scores(queries, weights, rows)
        starts, ends = self._start[rows], self._end[rows]
        coverage = self.coverage(queries, weights, [v for v, r in zip(videos, per_video) if len(r)])
        if coverage:
            self._add_words(scores, parts, videos, offsets, starts, ends, coverage, float(weights[LEXICAL]))
        spans = self.span.score(scores, offsets, starts, ends)
        out: list[list[MomentMatch]] = []
        for r, v in enumerate(videos):
            kept: list[MomentMatch] = []
            if len(per_video[r]) == 0:
                out.append(kept)
                continue
            lo, hi = self._bounds(v, window)
            mine = slice(offsets[r], offsets[r + 1])
            # every line the edges or the evidence may look at: the window's, and a clip around its spans
            first, last = min(lo, float(starts[mine].min())), max(hi, float(ends[mine].max()))
            lines = None if self.edges == "grid" and not evidence else VideoLines(
                self.lines_of(v), first - self.clip_seconds, last + self.clip_seconds, queries, weights, self.scale,
                coverage)
            for m in range(spans.start.shape[1]):
                if len(kept) == int(top):
                    break
                if spans.first_clip[r, m] < 0:
                    continue
                a, b = self._edges(lines, float(spans.start[r, m]), float(spans.end[r, m]), lo, hi)
                if _repeats(kept, a, b, self.span.nms_iou):
                    continue
                match = MomentMatch(Moment(int(v), a, b, float(spans.score[r, m])))
                if evidence:
                    # the clips under the (possibly snapped) moment, as positions in this call's rows
                    own = np.flatnonzero((ends[mine] > a) & (starts[mine] < b)) + offsets[r]
                    if len(own) == 0:  # cannot happen while clips tile the video; the span's own clips then
                        own = np.arange(spans.first_clip[r, m], spans.last_clip[r, m] + 1)
                    in_moment, s = lines.within(a, b)
                    # the concepts of every clip under the moment (a window may have left some out of ``rows``)
                    under = rows[own] if window is None else view.clip_rows(v, a, b)
                    match.evidence = Evidence(lines=in_moment, concepts=under.tolist(),
                                              channel_scores={c: float(p[own].max()) for c, p in parts.items()},
                                              line_match=lines.line_match(s))
                kept.append(match)
            out.append(kept)
        if evidence:
            self._name_concepts([m.evidence for ms in out for m in ms])
        return out

    def evidence(self, video: int, start: float, end: float, queries=None, weights=None) -> Evidence:
        """Every line overlapping [start, end] and the clips' top concepts; with a query, each
        line's match to it."""
        lines = VideoLines(self.lines_of(video), start, end, queries, weights, self.scale,
                           self.coverage(queries or {}, weights or {}, [video]))
        rows = self.view.clip_rows(video, start, end)
        ev = Evidence(lines=lines.lines, concepts=rows.tolist(), line_match=lines.line_match(lines.scores))
        self._name_concepts([ev])
        return ev

    def _add_words(self, scores, parts, videos, offsets, starts, ends, coverage: dict[int, float], weight: float):
        """The lexical channel in the clip scores, as in the video ranking: each clip gains
        ``weight`` x the best coverage among the lines it overlaps, so a span forms around the
        line that holds the query's words ("NASA" in one subtitle line of many)."""
        words = np.zeros(len(scores), np.float32)
        for r, v in enumerate(videos):
            lines, _, rowids = self.lines_of(v)
            mine = slice(offsets[r], offsets[r + 1])
            for (_, a, b, _), rowid in zip(lines, rowids):
                c = coverage.get(rowid)
                if c:
                    over = (ends[mine] > a) & (starts[mine] < b)
                    words[mine][over] = np.maximum(words[mine][over], c)
        scores += weight * words
        parts[LEXICAL] = words

    def coverage(self, queries: Mapping[str, np.ndarray], weights: Mapping[str, float], videos: Sequence[int]
                 ) -> dict[int, float] | None:
        """The lexical coverage of the query's words by every line of these videos (rowid ->
        coverage), from one pass over their lines; None without the query's text or the channel
        (not built, or weighted 0)."""
        text = queries.get(LEXICAL)
        if text is None or not weights.get(LEXICAL) or self.lexical is None or not self.lexical.ready:
            return None
        rowids = [r for v in dict.fromkeys(videos) for r in self.lines_of(v)[2]]
        return self.lexical.match_lines(str(np.asarray(text).reshape(-1)[0]), rowids)

    def _name_concepts(self, found: list[Evidence]) -> None:
        """Replace each evidence's clip rows by their clips' concepts (the first three that have
        any), from one store query for all of them."""
        names = iter(self.store.concepts([r for ev in found for r in ev.concepts]))
        for ev in found:
            ev.concepts = [c for c in (next(names) for _ in ev.concepts) if c][:3]

    def _bounds(self, video: int, window) -> tuple[float, float]:
        lo, hi = 0.0, float(self.view.videos[video]["duration"])
        if window is not None:
            lo, hi = max(lo, float(window[0])), min(hi, float(window[1]))
        return lo, hi

    def _edges(self, lines: VideoLines | None, start: float, end: float, lo: float, hi: float) -> tuple[float, float]:
        """A grid span's edges snapped to the speech/subtitle lines that match the query (see
        moment_edges.py), kept inside the video and the window [lo, hi]. Lines up to a clip
        beyond the span may join a matching line inside it. When none inside it matches, the one
        line of the window that stands out answers instead (``best_line``: a paraphrase of a
        sentence); the grid edges stay when no line does."""
        if self.edges == "grid" or not self.scale.usable or lines is None or not lines.scored:
            return start, end
        near, scores = lines.within(start - self.clip_seconds, end + self.clip_seconds)
        if near:
            snapped = snap_to_lines(start, end, near, scores, TEXT_BASELINE, (lo, hi))
            if snapped:
                return snapped
        if self.edges != "lines":
            return start, end
        every, scores = lines.within(lo, hi)
        if not every:
            return start, end
        return best_line(every, scores, TEXT_BASELINE, (lo, hi)) or (start, end)


def _repeats(kept: Sequence[MomentMatch], start: float, end: float, max_iou: float) -> bool:
    """True when [start, end] overlaps a kept moment by more than ``max_iou`` (two grid spans that
    snapped to the same line are one moment)."""
    return bool(kept) and float(temporal_iou([[start, end]], [[m.moment.start, m.moment.end] for m in kept]).max()) > max_iou
