"""One-shot search over an index: text query -> ranked videos with their best moments and the
evidence behind them.

The query is embedded once by the text encoder and scored against the text-space channels
(concept, speech, subtitle) in one fused pass over the corpus (search core, ``topk_videos``);
then the clips of the top videos are re-scored and cut into moments by the span scorer on the clip
grid, and each moment's edges snap to the speech or subtitle lines inside it that match the query
(moment_edges.py), so a spoken sentence's moment starts and ends with the sentence.
"""
from __future__ import annotations

import json
import logging
import mmap
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .. import blas
from ..checks import as_int
from ..eval.metrics import temporal_iou
from ..models import ClipEncoder, TextEncoder
from ..models.text import calibrated
from ..models.registry import ModelCard, index_text_model, model_dir, query_encoder_name
from ..search import Corpus
from ..span import SpanScorer
from . import first_stage, inverted_lists
from .ingest import PRESENCE_CHANNELS, TEXT_CHANNELS
from .moment_edges import best_line, line_scores, snap_to_lines
from .protocol import Evidence, Moment, VideoInfo, check_ref, check_texts, query_rows
from .store import IndexStore

log = logging.getLogger("ivcr.index")

DEFAULT_WEIGHTS = {"concept": 1.0, "speech": 1.0, "subtitle": 1.0, "ocr": 1.0, "clip": 1.0}
# Similarity an unrelated sentence still reaches under MiniLM (on the calibrated scale, see
# TextEncoder.calibrate, for other text models): subtracted from clips that have speech,
# subtitle or on-screen text (through the presence dimension), so only evidence above chance counts.
TEXT_BASELINE = 0.15
# From this many clips on, video search runs in two stages (see Index.rank_videos).
TWO_STAGE_MIN_ROWS = 200_000
SHORTLIST = 400  # videos the exact second stage re-ranks: ~1 ms of reads, and recall to spare
# Inverted lists serve a first stage while at least this share of the videos is eligible: their
# shortlist over-fetches clips and drops ineligible videos after the scan (inverted_lists.py).
LISTS_MIN_ELIGIBLE = 0.95
# "lines": moments snap to the timed text lines matching the query, or take the one line that
# stands out (moment_edges.py); "snap": only the snapping (the engine before best_line); "grid":
# they keep the span scorer's clip edges (what every moment was before). The last two are the
# benchmark's baselines.
MOMENT_EDGES = ("lines", "snap", "grid")


def query_text_encoder(settings: dict, models_root: Path) -> TextEncoder:
    """Queries go through the int8 query encoder of the index's text model when prepared."""
    name = query_encoder_name(index_text_model(settings), models_root)
    return TextEncoder(name, root=models_root)


def encoder_fits(text_encoder, settings: dict, models_root: Path) -> bool:
    """Whether ``text_encoder`` encodes queries for an index with these settings (an encoder
    without a model card is a caller's stand-in, and fits)."""
    if text_encoder is None:
        return False
    card = getattr(text_encoder, "card", None)
    if card is None:
        return True
    model = index_text_model(settings)
    return card.name in (model, query_encoder_name(model, models_root))


def encode_text_queries(texts: Sequence[str], text_encoder: TextEncoder, channels, clip: ClipEncoder | None
                        ) -> dict[str, np.ndarray]:
    """Query rows (B, d) for every text-space channel in ``channels``, from one batched encoder
    call (the presence channels get the chance-level baseline appended)."""
    texts = check_texts(texts)
    # Calibrated scores (s - chance) / (1 - chance) as dot products: the query scaled by
    # 1 / (1 - chance), the constant in the presence dimension (which only clips with text carry);
    # in the concept channel every clip would get the same constant, which changes no ranking.
    c = text_encoder.chance
    q = np.asarray(text_encoder.encode(texts, "query"), np.float32) / np.float32(1.0 - c)
    offset = -TEXT_BASELINE - c / (1.0 - c)
    with_presence = np.concatenate([q, np.full((len(texts), 1), offset, np.float32)], axis=1)
    out = {c: (with_presence if c in PRESENCE_CHANNELS else q) for c in TEXT_CHANNELS if c in channels}
    if clip is not None:
        out["clip"] = clip.encode_texts(texts)
    return out


@dataclass
class FirstStage:
    """A two-stage ranking's first stage: a corpus over compact copies of the query's channels,
    each copy (its ``project`` maps queries into the copy's space), and, when the stage is one
    copy, a coarse copy in front of it ``(corpus, {channel: copy})`` if it is wide
    (first_stage.coarse_width), and inverted lists over it if they keep its ranking."""
    corpus: Corpus
    copies: dict[str, first_stage.FirstStageCopy]
    coarse: tuple | None
    lists: inverted_lists.InvertedLists | None


@dataclass
class Hit:
    rank: int
    video_id: int | str  # the index's id of the video ("s1:3" in a sharded index)
    video_index: int     # its ref (position in the search corpus; global in a sharded index)
    path: str
    start: float
    end: float
    score: float          # the video's retrieval score (fused channels, aggregated over clips)
    moment_score: float   # the span scorer's score of this moment inside the video
    evidence: Evidence
    aliases: list[str] = field(default_factory=list)  # other paths with the same content


class Index:
    """A searchable view of an index folder (memory-mapped; opening costs no vector I/O).
    ``moment_edges``: "lines" (snap moments to matching speech/subtitle lines), "snap" or "grid"
    (see MOMENT_EDGES).
    ``prefault``: map every row into this process up front (and again after each refresh), for a
    long-running server: the exact stage reads a shortlist's rows at random, and a row first
    touched costs a page fault (11-13 ms of a 400-video re-rank at 1M clips, against 4-5 ms).
    It takes about a second per 5 GB already in the page cache, and reads from disk what is not;
    an index larger than half the machine's memory is not prefaulted (``prefaulted`` says).
    Opening an index limits numpy's BLAS to one thread in this process (blas.py)."""

    def __init__(self, root: str | Path, text_encoder: TextEncoder | None = None, models_root: Path | None = None,
                 moment_edges: str = "lines", prefault: bool = False):
        if moment_edges not in MOMENT_EDGES:
            raise ValueError(f"moment_edges must be one of {MOMENT_EDGES}, got {moment_edges!r}")
        self.moment_edges = moment_edges
        self.prefault = bool(prefault)
        blas.for_queries()  # a turn's numpy products run on one BLAS thread (see blas.py)
        self.store = IndexStore(root)
        self._models_root = models_root or model_dir()
        self._settings(self.store.settings())
        self.clip_seconds = float(self.settings.get("clip_seconds", 2.0))
        self._map(self.store.snapshot())
        # a caller's encoder is kept only while it is the one this index's text channels need (a
        # live server hands the old index's encoder on; a text rebuild changes the model)
        self._text = text_encoder if encoder_fits(text_encoder, self.settings, self._models_root) else None
        self._query_cache: dict[str, dict[str, np.ndarray]] = {}
        clip_model = self.settings.get("clip_model")
        self.clip = ClipEncoder(clip_model) if clip_model and "clip" in self.channels else None
        self.span = SpanScorer(method="contrast", min_len=1, max_len=max(1, int(round(60 / self.clip_seconds))),
                               top_m=3, nms_iou=0.5, length_weight=0.05)

    def _settings(self, settings: dict) -> None:
        self.settings = settings
        # line vectors in another model's space than the queries (text channels re-embedded without
        # them) would score lines wrongly at the same width: then moments keep the grid
        model = index_text_model(settings)
        self._lines_usable = settings.get("line_text_model") == model
        # lines are scored on the calibrated scale of the model that embedded them (E5's unrelated
        # sentences reach cosine ~0.79, MiniLM's ~0); its card says where chance lies
        try:
            self._line_chance = float(ModelCard.load(self._models_root / model).raw.get("chance_similarity", 0.0))
        except FileNotFoundError:
            self._line_chance = 0.0

    def _map(self, snap) -> None:
        """Map exactly the rows of one committed snapshot (never by file size), then swap the view in."""
        videos = list(snap.videos)  # corpus video index (ref) -> record (removed ones stay, always denied)
        offsets = np.array([v["first_row"] for v in videos] + [snap.rows], np.int64)
        times = self.store.clip_times(snap.rows)
        channels = {name: self.store.vectors(name, snap.rows) for name in snap.channels}
        corpus = Corpus(channels, offsets)
        self.videos, self.offsets, self.channels, self.corpus = videos, offsets, channels, corpus
        self.removed = np.array([bool(v["removed"]) for v in videos], bool)
        self.clip_start, self.clip_end = times[:, 0], times[:, 1]
        self._first_stage_cache: dict[tuple, tuple] = {}
        self._snapshot = snap
        self.prefaulted = self.prefault and _fits_in_memory(sum(a.nbytes for a in (*channels.values(), times)))
        if self.prefault and not self.prefaulted:
            log.warning("index %s: not prefaulted, its rows would take more than %d %% of this machine's memory",
                        self.store.root, round(PREFAULT_MEMORY_SHARE * 100))
        if self.prefaulted:
            for rows in (*channels.values(), times):
                populate(rows)

    def refresh(self) -> bool:
        """Map what was committed since this index was opened or last refreshed (new videos,
        removals); True when the view changed. Cheap when nothing was committed. Not safe to
        run while another thread searches this same object: callers serialise the two."""
        if self.store.data_version() == self._snapshot.data_version:
            return False
        snap = self.store.snapshot()
        if snap.key == self._snapshot.key:
            self._snapshot = snap
            return False
        self._map(snap)
        settings = self.store.settings()
        if index_text_model(settings) != index_text_model(self.settings):  # `ivcr index --rebuild-text`
            self._settings(settings)
            self._text = None
            self._query_cache.clear()
        return True

    @classmethod
    def open(cls, root: str | Path, **kw) -> "Index":
        return cls(root, **kw)

    @property
    def text_encoder(self) -> TextEncoder:
        if self._text is None:
            self._text = query_text_encoder(self.settings, self._models_root)
        return self._text

    def __len__(self) -> int:
        return int((~self.removed).sum())

    # -- the index protocol (protocol.VideoIndex) ----------------------------------------
    def num_refs(self) -> int:
        return len(self.videos)

    def video(self, ref: int) -> VideoInfo:
        v = self.videos[check_ref(self, ref)]
        return VideoInfo(int(ref), str(v["id"]), v["path"], float(v["duration"]), bool(v["removed"]))

    def encode_query(self, text: str) -> dict[str, np.ndarray]:
        """One query's channel vectors (1, d), cached: a turn asks about the same text for its
        moment and its evidence."""
        cached = self._query_cache.get(text) if isinstance(text, str) else None
        if cached is not None:
            return cached
        out = self.encode_queries([text])
        if len(self._query_cache) > 256:
            self._query_cache.clear()
        self._query_cache[text] = out
        return out

    def encode_queries(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return encode_text_queries(texts, self.text_encoder, self.channels, self.clip)

    def _weights(self, queries: Mapping[str, np.ndarray], weights: Mapping[str, float] | None) -> dict[str, float]:
        unknown = sorted(set(queries) - set(self.channels))
        if unknown:
            raise ValueError(f"no channel {unknown} in this index; it has {sorted(self.channels)}")
        w = dict(DEFAULT_WEIGHTS if weights is None else weights)
        return {c: float(w.get(c, 0.0)) for c in queries}

    def _eligible(self, allow: Sequence[int] | None, deny: Sequence[int] | None) -> np.ndarray:
        eligible = ~self.removed
        if allow is not None:
            mask = np.zeros(len(self.videos), bool)
            mask[[check_ref(self, r) for r in allow]] = True
            eligible &= mask
        if deny is not None:
            eligible[[check_ref(self, r) for r in deny]] = False
        return eligible

    def rank_videos(self, queries: Mapping[str, np.ndarray], k: int, weights: Mapping[str, float] | None = None,
                    allow: Sequence[int] | None = None, deny: Sequence[int] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        if int(k) < 1:
            raise ValueError("k must be >= 1")
        queries = query_rows(queries)
        return self._rank(queries, self._weights(queries, weights), int(k), self._eligible(allow, deny))

    def _clip_rows(self, video: int, start: float = -np.inf, end: float = np.inf, overlap: bool = True) -> np.ndarray:
        """Rows of one video's clips overlapping [start, end] (or lying inside it)."""
        rows = np.arange(self.offsets[video], self.offsets[video + 1])
        a, b = self.clip_start[rows], self.clip_end[rows]
        keep = (b > start) & (a < end) if overlap else (a >= start - 1e-6) & (b <= end + 1e-6)
        return rows[keep]

    def best_moments(self, queries: Mapping[str, np.ndarray], video: int, weights: Mapping[str, float] | None = None,
                     window: tuple[float, float] | None = None, top: int = 1) -> list[Moment]:
        return self.best_moments_many(queries, [video], weights, window, top)[0]

    def best_moments_many(self, queries: Mapping[str, np.ndarray], videos: Sequence[int],
                          weights: Mapping[str, float] | None = None, window: tuple[float, float] | None = None,
                          top: int = 1) -> list[list[Moment]]:
        """``best_moments`` of each of ``videos`` for one query, in one clip scoring and one span
        scoring call over all their clips (a served turn's ten candidates)."""
        vids = [check_ref(self, v) for v in videos]
        queries = query_rows(queries)
        if any(q.shape[0] != 1 for q in queries.values()):
            raise ValueError("best_moments takes one query (one row per channel)")
        per_video = [self._clip_rows(v, *(window or (-np.inf, np.inf)), overlap=False) for v in vids]
        if not any(len(r) for r in per_video):
            return [[] for _ in vids]
        w = self._weights(queries, weights)
        rows = np.concatenate(per_video)
        offsets = np.concatenate([[0], np.cumsum([len(r) for r in per_video])]).astype(np.int64)
        scores = self.clip_scores(queries, w, rows)
        spans = self.span.score(scores, offsets, self.clip_start[rows], self.clip_end[rows])
        out: list[list[Moment]] = []
        for r, video in enumerate(vids):
            kept: list[Moment] = []
            for m in range(spans.start.shape[1]):
                if len(kept) == int(top) or len(per_video[r]) == 0:
                    break
                if spans.first_clip[r, m] < 0:
                    continue
                a, b = self._edges(queries, w, video, float(spans.start[r, m]), float(spans.end[r, m]), window)
                if not _repeats(kept, a, b, self.span.nms_iou):
                    kept.append(Moment(video, a, b, float(spans.score[r, m])))
            out.append(kept)
        return out

    def _edges(self, queries: Mapping[str, np.ndarray], weights: Mapping[str, float], video: int, start: float,
               end: float, window: tuple[float, float] | None = None) -> tuple[float, float]:
        """A grid span's edges snapped to the speech/subtitle lines that match the query (see
        moment_edges.py), kept inside the video and ``window``. Lines up to a clip beyond the span
        may join a matching line inside it. When none inside it matches, the one line of the
        window that stands out answers instead (``best_line``: a paraphrase of a sentence); the
        grid edges stay when no line does."""
        if self.moment_edges == "grid" or not self._lines_usable:
            return start, end
        margin = self.clip_seconds
        video_id = self.videos[video]["id"]
        lo, hi = 0.0, float(self.videos[video]["duration"])
        if window is not None:
            lo, hi = max(lo, float(window[0])), min(hi, float(window[1]))
        lines, vectors = self.store.text_lines(video_id, start - margin, end + margin)
        if lines:
            scores = calibrated(line_scores(queries, weights, lines, vectors), self._line_chance)
            snapped = snap_to_lines(start, end, lines, scores, TEXT_BASELINE, (lo, hi))
            if snapped:
                return snapped
        # every line of the window (read only now: most moments snap above)
        lines, vectors = self.store.text_lines(video_id, lo, hi) if self.moment_edges == "lines" else ([], [])
        if not lines:
            return start, end
        scores = calibrated(line_scores(queries, weights, lines, vectors), self._line_chance)
        return best_line(lines, scores, TEXT_BASELINE, (lo, hi)) or (start, end)

    def evidence(self, video: int, start: float, end: float, queries: Mapping[str, np.ndarray] | None = None,
                 weights: Mapping[str, float] | None = None) -> Evidence:
        video = check_ref(self, video)
        if queries is not None:
            queries = query_rows(queries)
            weights = self._weights(queries, weights)
        return self._evidence(video, self._clip_rows(video, start, end), start, end, {}, queries, weights)

    def moment_vector(self, video: int, start: float, end: float, channel: str = "visual") -> np.ndarray:
        video = check_ref(self, video)
        if channel not in self.channels:
            raise ValueError(f"no channel {channel!r} in this index; it has {sorted(self.channels)}")
        rows = self._clip_rows(video, start, end)
        if len(rows) == 0:
            raise ValueError(f"video {video} has no clip between {start}s and {end}s")
        q = np.asarray(self.channels[channel][rows], np.float32).mean(axis=0, keepdims=True)
        return q / max(float(np.linalg.norm(q)), 1e-12)

    # -- one-shot search ------------------------------------------------------------------
    def search(self, query: str | Mapping[str, np.ndarray], k: int = 10, weights: Mapping[str, float] | None = None,
               allow: Sequence[int] | None = None, deny: Sequence[int] | None = None,
               moments_per_video: int = 1, timings: dict | None = None) -> list[Hit]:
        """Top ``k`` videos for a text query (or prepared per-channel query vectors), each with its
        best moment(s). ``allow``/``deny`` restrict by corpus video index. ``timings``, when given,
        receives the seconds spent in encode, search and span."""
        if as_int(k, "k") < 1:
            raise ValueError("k must be >= 1")
        if len(self) == 0:
            return []
        k = min(k, self.num_refs())  # a list of hits: k beyond the index is the whole index
        t0 = time.perf_counter()
        queries = self.encode_query(query) if isinstance(query, str) else query_rows(query)
        t1 = time.perf_counter()
        w = self._weights(queries, weights)
        vids, vscores = self._rank(queries, w, k, self._eligible(allow, deny))
        keep = vids[0] >= 0
        t2 = time.perf_counter()
        hits = self._moments(queries, w, vids[0][keep], vscores[0][keep], moments_per_video)
        if timings is not None:
            for key, sec in (("encode", t1 - t0), ("search", t2 - t1), ("span", time.perf_counter() - t2)):
                timings[key] = timings.get(key, 0.0) + sec
        return hits

    def _rank(self, queries: Mapping[str, np.ndarray], weights: Mapping[str, float], k: int,
              eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` eligible videos of each query row by their best clip's fused score:
        ``(refs (B, k) padded -1, scores (B, k) padded -inf)``.

        Small indexes get one exact fused scan (``topk_videos``, agg max, float16 rows). From
        ``TWO_STAGE_MIN_ROWS`` clips on, a first stage runs the same max-over-clips scan on compact
        copies of the channels (first_stage.py: int8, projected on the rows' principal directions
        when that cuts the bytes), with the text channels folded into one (they share the query
        embedding, so sum_c w_c <q_c, e_c> = <q, sum_c w_c e_c>). The best ``SHORTLIST`` videos of
        each row are then re-ranked exactly by the float16 scan restricted to their rows. The copies are
        built on the first search after the index changed and cached beside it. A one-copy first
        stage reads only its query's inverted lists where the index has them (inverted_lists.py),
        else a wide copy ranks what its coarse copy keeps, else the copy is scanned whole.
        """
        b = next(iter(queries.values())).shape[0]
        out_i = np.full((b, k), -1, np.int64)
        out_s = np.full((b, k), -np.inf, np.float32)
        if self.corpus.rows == 0 or not eligible.any():
            return out_i, out_s
        if self.corpus.rows < TWO_STAGE_MIN_ROWS:
            res = self.corpus.topk_videos(queries, k, weights=weights, allow=eligible)
            n = res.ids.shape[1]
            out_i[:, :n], out_s[:, :n] = res.ids, res.scores
            out_s[out_i < 0] = -np.inf
            return out_i, out_s
        first_q, first_w, folded = self._first_stage_queries(queries, weights)
        stage = self._first_stage(tuple(sorted(first_q)), folded)
        first_q = {c: stage.copies[c].project(q) for c, q in first_q.items()}
        n_short = max(SHORTLIST, k)
        shortlists: list[np.ndarray | None] = [None] * b
        if stage.lists is not None and n_short == SHORTLIST and eligible.mean() >= LISTS_MIN_ELIGIBLE:
            # inverted lists read a few percent of the copy (inverted_lists.py); a row whose probed
            # lists hold fewer than k eligible videos falls back to the scans below
            (c, q), = first_q.items()
            for r in range(b):
                short = stage.lists.shortlist(q[r:r + 1], first_w[c], n_short, self.offsets, eligible)
                shortlists[r] = short if len(short) >= k else None
        todo = [r for r in range(b) if shortlists[r] is None]
        rest = {c: q[todo] for c, q in first_q.items()}
        if todo and stage.coarse is not None and int(eligible.sum()) > 4 * first_stage.COARSE_SHORTLIST:
            # a wide copy ranks only what its coarse copy keeps (per row: each has its own shortlist)
            (c, cp), = stage.coarse[1].items()
            wide = stage.coarse[0].topk_videos({c: cp.project(rest[c])}, max(first_stage.COARSE_SHORTLIST, n_short),
                                               weights=first_w, allow=eligible).ids
            for i, r in enumerate(todo):
                shortlists[r] = stage.corpus.topk_videos({c: rest[c][i:i + 1]}, n_short, weights=first_w,
                                                         allow=_mask(len(self.videos), wide[i])).ids[0]
        elif todo:
            ids = stage.corpus.topk_videos(rest, n_short, weights=first_w, allow=eligible).ids
            for i, r in enumerate(todo):
                shortlists[r] = ids[i]
        for r in range(b):  # second stage per row: the exact scan reads only that row's shortlist
            short = shortlists[r][shortlists[r] >= 0]
            if len(short) == 0:
                continue
            res = self.corpus.topk_videos({c: q[r:r + 1] for c, q in queries.items()}, k, weights=weights,
                                          allow=_mask(len(self.videos), short))
            ids = res.ids[0][res.ids[0] >= 0]
            out_i[r, :len(ids)], out_s[r, :len(ids)] = ids, res.scores[0][:len(ids)]
        return out_i, out_s

    def _first_stage_queries(self, queries: Mapping[str, np.ndarray], weights: Mapping[str, float]):
        """Fold the text channels of a text query into one "text" channel when they share the
        embedding (concept, and speech/subtitle with the presence baseline appended). Returns the
        first stage's queries, weights, and the folded ((channel, weight), ...) or None."""
        text = [c for c in TEXT_CHANNELS if c in queries and weights.get(c, 0.0) != 0.0]
        q = next((queries[c] for c in text if c in PRESENCE_CHANNELS), None)
        if len(text) < 2 or q is None:
            return dict(queries), dict(weights), None
        d = q.shape[1] - 1
        if not all(np.array_equal(queries[c], q if c in PRESENCE_CHANNELS else q[:, :d]) for c in text):
            return dict(queries), dict(weights), None
        # text channels weighted 0 (e.g. ocr when a caller's weights predate it) add nothing: left out
        first_q = {c: v for c, v in queries.items() if c not in TEXT_CHANNELS}
        first_w = {c: weights.get(c, 0.0) for c in first_q}
        first_q["text"], first_w["text"] = q, 1.0
        return first_q, first_w, tuple((c, float(weights[c])) for c in text)

    def _first_stage(self, channels: tuple[str, ...], folded: tuple | None) -> "FirstStage":
        """The first stage over compact copies of the channels ("text" = the folded text channels),
        built on first use after the index changed and cached beside it (see FirstStage)."""
        key = (channels, folded)
        if key not in self._first_stage_cache:
            copies = {c: self._first_copy(c, folded if c == "text" else None) for c in channels}
            corpus = Corpus({c: (cp.values, cp.scales) for c, cp in copies.items()}, self.offsets)
            coarse = lists = None
            if len(copies) == 1:
                (c, copy), = copies.items()
                folder, tag = self.store.root / "vectors", self._copy_tag(c, folded)
                if first_stage.coarse_width(copy) is not None:
                    cp = first_stage.load_or_build_coarse(folder, tag, copy)
                    coarse = (Corpus({c: (cp.values, cp.scales)}, self.offsets), {c: cp})
                if inverted_lists.wanted(len(copy.values), TWO_STAGE_MIN_ROWS):
                    lists = inverted_lists.load_or_build(folder, tag, copy, self.offsets, SHORTLIST)
            if self.prefaulted:  # behind a coarse copy or lists, copies are read at random too
                for cp in copies.values():
                    populate(cp.values)
                if lists is not None:
                    populate(lists.values)
            self._first_stage_cache[key] = FirstStage(corpus, copies, coarse, lists)
        return self._first_stage_cache[key]

    @staticmethod
    def _copy_tag(channel: str, folded: tuple | None) -> str:
        return channel if folded is None or channel != "text" else "text-" + "-".join(f"{c}{w:g}" for c, w in folded)

    def _first_copy(self, channel: str, folded: tuple | None) -> first_stage.FirstStageCopy:
        """A compact copy of a channel or of the folded text channels, cached beside the index and
        named by the row count and the fold (see first_stage.py)."""
        rows = self._snapshot.rows
        tag = self._copy_tag(channel, folded)
        # the folded copy is as wide as the presence channels (an index may lack some, e.g. ocr)
        dim = (next(self.channels[c].shape[1] for c, _ in folded if c in PRESENCE_CHANNELS) if folded
               else self.channels[channel].shape[1])

        def read(sel) -> np.ndarray:
            if not folded:
                return np.asarray(self.channels[channel][sel], np.float32)
            block = None
            for c, w in folded:
                part = w * np.asarray(self.channels[c][sel], np.float32)
                if block is None:
                    block = np.zeros((len(part), dim), np.float32)
                block[:, :part.shape[1]] += part
            return block

        fit = (lambda: self._checked_text_encoding(read, folded, dim)) if folded else None
        return first_stage.load_or_build(self.store.root / "vectors", tag, rows, dim, read, fit=fit)

    def _checked_text_encoding(self, read, folded: tuple, dim: int) -> first_stage.Encoding | None:
        """The folded text copy's encoding, checked on whole videos (first_stage.checked_encoding):
        up to TEXT_CHECK_VIDEOS evenly spaced videos, and as queries their own speech or subtitle
        rows (sentences with text present), in the form encode_text_queries gives a query."""
        n_videos = len(self.videos)
        picks = np.unique(np.linspace(0, n_videos - 1, min(n_videos, first_stage.TEXT_CHECK_VIDEOS)).astype(np.int64))
        counts = self.offsets[picks + 1] - self.offsets[picks]
        sel = np.concatenate([np.arange(self.offsets[v], self.offsets[v + 1]) for v in picks])
        rows = read(sel)
        local = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        chance = self._line_chance
        for c in (c for c, _ in folded if c in PRESENCE_CHANNELS):
            text = np.asarray(self.channels[c][sel], np.float32)
            have = np.flatnonzero(text[:, -1] > 0.5)
            if len(have) >= 8:
                break
        else:  # no clip has text: the energy rule alone
            return first_stage.Encoding(8, first_stage.principal_basis(
                rows[::max(1, len(rows) // first_stage.SAMPLE_ROWS)], first_stage.ENERGY["text"], centred=True))
        at = have[np.linspace(0, len(have) - 1, min(len(have), first_stage.TEXT_CHECK_QUERIES)).astype(np.int64)]
        queries = np.concatenate([text[at, :-1] / np.float32(1.0 - chance),
                                  np.full((len(at), 1), -TEXT_BASELINE - chance / (1.0 - chance), np.float32)], axis=1)
        own = np.searchsorted(local, at, side="right") - 1
        shortlist = max(10, round(SHORTLIST * len(picks) / n_videos))
        return first_stage.checked_encoding(rows, local, queries, own, shortlist)

    def clip_scores(self, queries: Mapping[str, np.ndarray], weights: Mapping[str, float], rows: np.ndarray,
                    per_channel: bool = False):
        """Fused scores of the given rows for one query (the few clips of the top videos: plain
        NumPy is enough)."""
        total = np.zeros(len(rows), np.float32)
        parts = {}
        for c, q in queries.items():
            wc = weights.get(c, 0.0)
            s = np.asarray(self.channels[c][rows], np.float32) @ np.asarray(q, np.float32).reshape(-1)
            parts[c] = s
            total += wc * s
        return (total, parts) if per_channel else total

    def _moments(self, queries, weights, vids: np.ndarray, vscores: np.ndarray, per_video: int) -> list[Hit]:
        if len(vids) == 0:
            return []
        rows = np.concatenate([np.arange(self.offsets[v], self.offsets[v + 1]) for v in vids])
        scores, parts = self.clip_scores(queries, weights, rows, per_channel=True)
        local_off = np.concatenate([[0], np.cumsum(self.offsets[vids + 1] - self.offsets[vids])]).astype(np.int64)
        spans = self.span.score(scores, local_off, self.clip_start[rows], self.clip_end[rows])
        hits = []
        for r, (v, vs) in enumerate(zip(vids, vscores)):
            kept: list[Moment] = []
            mine = rows[local_off[r]:local_off[r + 1]]
            for m in range(spans.start.shape[1]):
                if len(kept) == per_video:
                    break
                if spans.first_clip[r, m] < 0:
                    continue
                start, end = self._edges(queries, weights, int(v), float(spans.start[r, m]), float(spans.end[r, m]))
                if _repeats(kept, start, end, self.span.nms_iou):
                    continue
                kept.append(Moment(int(v), start, end))
                # the clips under the (possibly snapped) moment, as positions in this call's rows
                own = np.flatnonzero((self.clip_end[mine] > start) & (self.clip_start[mine] < end)) + local_off[r]
                if len(own) == 0:  # cannot happen while clips tile the video; the span's own clips then
                    own = np.arange(spans.first_clip[r, m], spans.last_clip[r, m] + 1)
                ev = self._evidence(int(v), rows[own], start, end, {c: float(p[own].max()) for c, p in parts.items()},
                                    queries, weights)
                hits.append(Hit(rank=0, video_id=int(self.videos[v]["id"]), video_index=int(v),
                                path=self.videos[v]["path"], start=start, end=end, score=float(vs),
                                moment_score=float(spans.score[r, m]), evidence=ev,
                                aliases=list(self._snapshot.aliases.get(int(self.videos[v]["id"]), []))))
        for i, h in enumerate(hits, 1):
            h.rank = i
        return hits

    def _evidence(self, v: int, rows: np.ndarray, start: float, end: float, channel_scores: dict,
                  queries: Mapping[str, np.ndarray] | None = None, weights: Mapping[str, float] | None = None
                  ) -> Evidence:
        """The lines under [start, end] and the clips' concepts; with a query, each line's match
        on the scale snapping uses (calibrated, minus TEXT_BASELINE), NaN where lines cannot be
        scored (no vectors, or vectors of another text model)."""
        concepts = [c for c in self.store.concepts(rows) if c][:3]
        video_id = self.videos[v]["id"]
        if queries is None:
            return Evidence(lines=self.store.texts(video_id, start, end), concepts=concepts, channel_scores=channel_scores)
        if not self._lines_usable:
            lines = self.store.texts(video_id, start, end)
            return Evidence(lines=lines, concepts=concepts, channel_scores=channel_scores, line_match=[float("nan")] * len(lines))
        lines, vectors = self.store.text_lines(video_id, start, end)
        match = calibrated(line_scores(queries, weights, lines, vectors), self._line_chance) - TEXT_BASELINE
        return Evidence(lines=lines, concepts=concepts, channel_scores=channel_scores,
                        line_match=[float(x) for x in match])

    def close(self) -> None:
        self.store.close()


def populate(rows: np.ndarray) -> None:
    """Fault a memory-mapped array's pages into this process now (MADV_POPULATE_READ, Linux 5.14+;
    elsewhere a read-ahead hint), so later random reads of it cost no page faults."""
    m = getattr(rows, "_mmap", None)
    if m is None:
        return
    try:
        m.madvise(_MADV_POPULATE_READ)
    except (OSError, ValueError):
        m.madvise(mmap.MADV_WILLNEED)


_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # Python < 3.13 lacks the name
# Prefault only an index whose rows take at most this share of the machine's memory: a larger one
# would push itself (and everything else) out of the page cache while it is read in.
PREFAULT_MEMORY_SHARE = 0.5


def _fits_in_memory(nbytes: int) -> bool:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return False
    return nbytes <= PREFAULT_MEMORY_SHARE * total


def _mask(n: int, refs: np.ndarray) -> np.ndarray:
    """A bool mask of ``n`` videos with ``refs`` set (padding -1 ignored)."""
    mask = np.zeros(n, bool)
    mask[refs[refs >= 0]] = True
    return mask


def _repeats(kept: Sequence[Moment], start: float, end: float, max_iou: float) -> bool:
    """True when [start, end] overlaps a kept moment by more than ``max_iou`` (two grid spans that
    snapped to the same line are one moment)."""
    return bool(kept) and float(temporal_iou([[start, end]], [[m.start, m.end] for m in kept]).max()) > max_iou


def to_qvhighlights(qid, query: str, hits: Sequence[Hit], vid: str | None = None) -> dict:
    """A QVHighlights-style prediction line: moments of the top video as pred_relevant_windows."""
    top = [h for h in hits if vid is None or Path(h.path).stem == vid]
    return {"qid": qid, "query": query, "vid": Path(top[0].path).stem if top else vid,
            "pred_relevant_windows": [[round(h.start, 2), round(h.end, 2), round(h.score, 4)] for h in top]}


def to_tvr(query_id, hits: Sequence[Hit]) -> dict:
    """A TVR-style (video corpus moment retrieval) prediction: [video, start, end, score] rows."""
    return {"desc_id": query_id,
            "predictions": [[Path(h.path).stem, round(h.start, 2), round(h.end, 2), round(h.score, 4)] for h in hits]}


def hits_to_json(hits: Sequence[Hit]) -> str:
    return json.dumps([{"video_id": h.video_id, "path": h.path, "aliases": h.aliases, "start": round(h.start, 2), "end": round(h.end, 2),
                        "score": round(h.score, 4), "rank": h.rank,
                        "evidence": {"lines": [list(l) for l in h.evidence.lines], "concepts": h.evidence.concepts,
                                     # each line's match to the query (> 0 matches; null: not scored)
                                     "line_match": [None if np.isnan(x) else round(x, 4) for x in h.evidence.line_match]}}
                       for h in hits], ensure_ascii=False, indent=2)
