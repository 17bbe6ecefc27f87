"""``Index``: the index protocol over one index folder, and its one-shot ``search``.

It composes the committed snapshot mapped for reading (mapped.py), the native engine over the same
folder (libivcr through native.py: the exact ranking, the lexical channel (a query text's words,
their translations and the lines that hold them), moments with their edges snapped to matching
lines, and evidence: one implementation for every host), the compact copies a large index's first
stage scans (ranking.py builds them beside the vectors; the engine scans them and re-ranks each
row's shortlist exactly), and the query encoder shared with every other index of the process
(query_encoder.py). A refresh maps the
new snapshot and opens the engine on it, swapping one reference, so a search that started before it
finishes on the view it started with (a server refreshes the index it searches from another
thread); the engine only ever sees refs of the view a call started on (``eligible``), so a commit
between the two readings shows no video the view lacks.
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .. import blas
from ..checks import as_int
from ..errors import InvalidArgument
from ..models import ClipEncoder
from ..models.registry import ModelCard, index_text_model
from ..native import NativeHit, NativeIndex
from .layout import DEFAULT_WEIGHTS, LEXICAL, PRESENCE_CHANNELS
from .mapped import Mapped, map_snapshot
from .protocol import (
    Evidence,
    Moment,
    MomentMatch,
    MomentShortcuts,
    VideoInfo,
    check_ref,
    dense,
    query_rows,
)
from .query_encoder import IndexQueries, QueryEncoder
from . import ranking as first_stages
from .ranking import Ranking
from .results import Hit
from .store import IndexStore


MOMENT_EDGES = ("lines", "snap", "grid")  # see the engine's open options (include/ivcr.h)
# How long a refresh waits for the searches still running on the view it replaced (then frees it).
RETIRE_WAIT_S = 5.0


@dataclass(frozen=True)
class _View:
    """What one snapshot serves: its rows, the first stage of its ranking, and the engine opened
    on it (swapped as one)."""
    mapped: Mapped
    ranking: Ranking
    native: NativeIndex
    native_refs: int  # videos in the engine's snapshot (opened after this view's: as many, or more)


class Index(MomentShortcuts):
    """A searchable view of an index folder (memory-mapped; opening costs no vector I/O).
    ``moment_edges``: "lines" (snap moments to matching speech/subtitle lines), "snap" or "grid"
    (see moments.MOMENT_EDGES). ``query_encoder``: the process's shared one (a new one otherwise);
    ``text_encoder``: a caller's encoder for it (see QueryEncoder).
    ``prefault``: map every row into this process up front (and again after each refresh), for a
    long-running server (see mapped.map_snapshot; ``prefaulted`` says whether it was done); the
    engine then also keeps its first stages' whole-scanned copies resident and locks their folded
    text rows in memory where it may (``ivcr_open_options_set_prefault`` in include/ivcr.h), and
    the usual searches are readied at open and at each refresh (``_warm``), not by the first ones.
    Opening an index limits numpy's BLAS to one thread in this process (blas.py)."""

    def __init__(self, root: str | Path, text_encoder=None, models_root: Path | None = None,
                 moment_edges: str = "lines", prefault: bool = False, query_encoder: QueryEncoder | None = None):
        if moment_edges not in MOMENT_EDGES:
            raise InvalidArgument(f"moment_edges must be one of {MOMENT_EDGES}, got {moment_edges!r}")
        self.moment_edges = moment_edges
        self.ranking_paths: list | None = None  # a list: each ranked row's path is appended (tests, benchmarks)
        self.ranking_times: list | None = None  # a list: each ranking call's ms per part is appended (benchmarks)
        self.prefault = bool(prefault)
        blas.for_queries()  # a turn's numpy products run on one BLAS thread (see blas.py)
        self.store = IndexStore(root)
        self._refreshing = threading.Lock()
        self.query_encoder = query_encoder or QueryEncoder(models_root, text_encoder=text_encoder)
        self._settings(self.store.settings())
        self.clip_seconds = float(self.settings.get("clip_seconds", 2.0))
        self._view = self._make_view(self.store.snapshot())
        clip_model = self.settings.get("clip_model")
        self.clip = ClipEncoder(clip_model) if clip_model and "clip" in self.channels else None
        self.queries: IndexQueries = self.query_encoder.bind(self.settings, self.channels, self.clip)
        if self.prefault:
            self._warm(self._view)

    def _settings(self, settings: dict) -> None:
        self.settings = settings
        model = index_text_model(settings)
        # the folded text copy's check scores sentences on the calibrated scale of the text model
        # (E5's unrelated sentences reach cosine ~0.79, MiniLM's ~0); its card says where chance lies
        try:
            self._chance = float(ModelCard.load(self.query_encoder.models_root / model).raw.get("chance_similarity", 0.0))
        except FileNotFoundError:
            self._chance = 0.0

    def _make_view(self, snap) -> _View:
        mapped = map_snapshot(self.store, snap, self.prefault)
        native = NativeIndex(self.store.root, model_dir=self.query_encoder.models_root, moment_edges=self.moment_edges,
                             prefault=mapped.prefaulted)
        return _View(mapped, Ranking(mapped, self.store.root / "vectors", self._chance), native, native.num_refs())

    def refresh(self) -> bool:
        """Map what was committed since this index was opened or last refreshed (new videos,
        removals); True when the view changed. Cheap when nothing was committed. Safe beside
        searches on other threads (a server's): the new view is built whole (on a prefaulted
        index, with its usual searches readied: ``_warm``) and swapped in as one reference, so a
        search finishes on the view it started with, and the view replaced is freed here once
        those searches are done; refreshes run one at a time. After ``ivcr index
        --rebuild-text`` the text model changes with the view: a query encoded just before may
        meet the new view's vectors once."""
        with self._refreshing:
            seen = self._view.mapped.snapshot
            if self.store.data_version() == seen.data_version:
                return False
            snap = self.store.snapshot()
            if snap.key == seen.key:
                return False
            settings = self.store.settings()
            if index_text_model(settings) != index_text_model(self.settings):  # `ivcr index --rebuild-text`
                self._settings(settings)
                self.queries = self.query_encoder.bind(self.settings, snap.channels, self.clip)
            view = self._make_view(snap)
            if self.prefault:
                self._warm(view)
            retired, self._view = self._view, view
            # The replaced view is freed here, not by the search that happened to hold it last:
            # closing its engine handle and unmapping its rows takes ~0.45 s at 1M clips, which
            # was one search's latency after each commit. So wait for the searches still on it
            # (their frames hold it), then free it on this thread.
            deadline = time.monotonic() + RETIRE_WAIT_S
            while sys.getrefcount(retired) > 2 and time.monotonic() < deadline:  # (this name and the argument)
                time.sleep(0.002)
            # (else a search still on the view, or a caller holding its engine handle, frees it when done)
            if sys.getrefcount(retired) <= 2 and sys.getrefcount(retired.native) <= 2:
                retired.native.close()
            return True

    def _warm(self, view: _View) -> None:
        """Readies a server's view, at open and before a refresh swaps it in (while searches go on
        on the old one): a text search and a "something like this" search ranked once on it, so
        the engine has loaded their stages and made their copies resident (and where the writer
        left a copy to grow, Python has grown it). The first searches took that time themselves:
        after a commit 0.4 s at 1M clips with the copies grown by the writer, seconds without; on
        a fresh server 0.8-2.6 s for the first text search (docs/BENCHMARKS.md)."""
        try:
            for rows, weights in self._usual_searches(view):
                self._rank_on(view, rows, 1, weights, None, None, record=False)
        except Exception:  # (no text encoder here, say): left to the searches, which say what is wrong
            pass

    @classmethod
    def open(cls, root: str | Path, **kw) -> "Index":
        return cls(root, **kw)

    # -- the mapped snapshot, as callers and tests read it ----------------------------------
    @property
    def mapped(self) -> Mapped:
        return self._view.mapped

    @property
    def ranking(self) -> Ranking:
        return self._view.ranking

    @property
    def native(self) -> NativeIndex:
        """The engine opened on this view's snapshot (libivcr)."""
        return self._view.native

    @property
    def videos(self) -> list:
        return self._view.mapped.videos

    @property
    def removed(self) -> np.ndarray:
        return self._view.mapped.removed

    @property
    def channels(self) -> dict:
        return self._view.mapped.channels

    @property
    def corpus(self):
        return self._view.mapped.corpus

    @property
    def offsets(self) -> np.ndarray:
        return self._view.mapped.offsets

    @property
    def clip_start(self) -> np.ndarray:
        return self._view.mapped.clip_start

    @property
    def clip_end(self) -> np.ndarray:
        return self._view.mapped.clip_end

    @property
    def prefaulted(self) -> bool:
        return self._view.mapped.prefaulted

    @property
    def text_encoder(self):
        return self.queries.text_encoder

    def __len__(self) -> int:
        return int((~self._view.mapped.removed).sum())

    # -- the index protocol (protocol.VideoIndex) ----------------------------------------
    def num_refs(self) -> int:
        return len(self._view.mapped.videos)

    def video(self, ref: int) -> VideoInfo:
        v = self._view.mapped.videos[check_ref(self, ref)]
        return VideoInfo(int(ref), str(v["id"]), v["path"], float(v["duration"]), bool(v["removed"]))

    def encode_queries(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return self.queries.rows(texts)

    def encode_image(self, picture) -> dict[str, np.ndarray]:
        return self.queries.image(picture)

    def encode_query(self, text: str) -> dict[str, np.ndarray]:
        """One text's rows (1, d) per channel."""
        return self.encode_queries([text])

    def _weights(self, queries: Mapping[str, np.ndarray], weights: Mapping[str, float] | None) -> dict[str, float]:
        unknown = sorted(set(queries) - set(self.channels) - {LEXICAL})
        if unknown:
            raise InvalidArgument(f"no channel {unknown} in this index; it has {sorted(self.channels)}")
        w = dict(DEFAULT_WEIGHTS if weights is None else weights)
        return {c: float(w.get(c, 0.0)) for c in queries}

    def _eligible(self, view: _View, allow: Sequence[int] | None, deny: Sequence[int] | None) -> np.ndarray:
        eligible = ~view.mapped.removed
        if allow is not None:
            mask = np.zeros(len(eligible), bool)
            mask[[check_ref(self, r) for r in allow]] = True
            eligible &= mask
        if deny is not None:
            eligible[[check_ref(self, r) for r in deny]] = False
        return eligible

    def rank_videos(self, queries: Mapping[str, np.ndarray], k: int, weights: Mapping[str, float] | None = None,
                    allow: Sequence[int] | None = None, deny: Sequence[int] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Each query row's top k eligible videos, ``(refs (B, k) padded -1, scores (B, k) padded
        -inf)``, all rows in one engine call (after the first stage's shortlists, on a large index)."""
        if as_int(k, "k") < 1:
            raise InvalidArgument("k must be >= 1")
        return self._rank_on(self._view, query_rows(queries), int(k), weights, allow, deny)

    def _rank_on(self, view: _View, queries: Mapping[str, np.ndarray], k: int, weights: Mapping[str, float] | None,
                 allow: Sequence[int] | None, deny: Sequence[int] | None, record: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
        """rank_videos on ``view``; ``record``: append to ranking_paths and ranking_times."""
        weights = self._weights(queries, weights)
        eligible = self._eligible(view, allow, deny)
        b = next(iter(queries.values())).shape[0]
        out_i, out_s = np.full((b, k), -1, np.int64), np.full((b, k), -np.inf, np.float32)
        if view.mapped.corpus.rows == 0 or not eligible.any():
            return out_i, out_s
        rows = dense(queries)
        if rows and view.mapped.corpus.rows >= first_stages.TWO_STAGE_MIN_ROWS:
            view.ranking.prepare(rows, weights)  # the compact copies the engine's first stage scans
        return view.native.rank_vectors(rows, k, weights=weights, lexical=self._lexical(queries),
                                        eligible=self._engine_mask(view, eligible), stage=first_stages.stage_sizes(),
                                        paths=self.ranking_paths if record else None,
                                        times=self.ranking_times if record else None)

    def prepare_search(self) -> list[str]:
        """Build the first-stage copies that a large index's usual searches scan, where they are
        missing: a text query's (its text channels folded under the default weights, as
        ``ivcr_search`` folds them) and a visual query's ("something like this", with its coarse
        copy and lists). Returns their tags; below ``ranking.TWO_STAGE_MIN_ROWS`` clips there is no
        first stage and nothing is built. A search builds a missing copy itself, but only in
        Python: a host on libivcr alone cannot, and scans every row exactly instead (2.3 GB of
        float16 rows a query at 1M clips), so the writer calls this after it commits."""
        view = self._view
        if view.mapped.corpus.rows < first_stages.TWO_STAGE_MIN_ROWS:
            return []
        return [tag for rows, weights in self._usual_searches(view)
                for tag in view.ranking.prepare(dense(rows), self._weights(rows, weights))]

    def _usual_searches(self, view: _View) -> list[tuple[dict, dict | None]]:
        """A query of each kind whose stages a large index keeps ready, with its weights (None:
        the defaults): a text (any text: its channels and widths decide the copy; its words take
        the lexical channel) and, where the index has frames, "something like this"."""
        out = [(self.encode_queries(["a query"]), None)]
        if "visual" in view.mapped.channels:
            out.append(({"visual": np.zeros((1, view.mapped.channels["visual"].shape[1]), np.float32)}, {"visual": 1.0}))
        return out

    @staticmethod
    def _engine_mask(view: _View, eligible: np.ndarray) -> np.ndarray | None:
        """The eligibility mask the engine needs, or None when its own (every live video) is the
        same: the engine's snapshot holds exactly this view's videos and all of them are eligible
        (handing over a 100k-video mask costs ~0.07 ms a call)."""
        return None if len(eligible) == view.native_refs and eligible.all() else eligible

    @staticmethod
    def _lexical(queries: Mapping[str, np.ndarray]) -> list[str] | None:
        """Each query row's text for the lexical channel, whose lines the engine finds (lexical.h:
        the words, their translations, the lines that hold them); None when the query has none."""
        texts = queries.get(LEXICAL)
        return None if texts is None else [str(t) for t in np.asarray(texts).reshape(-1)]

    def moments(self, queries: Mapping[str, np.ndarray], videos: Sequence[int], weights: Mapping[str, float] | None = None,
                window: tuple[float, float] | None = None, top: int = 1, evidence: bool = True
                ) -> list[list[MomentMatch]]:
        vids = [check_ref(self, v) for v in videos]
        queries = query_rows(queries)
        if any(q.shape[0] != 1 for q in queries.values()):
            raise InvalidArgument("moments take one query (one row per channel)")
        view = self._view
        lexical = self._lexical(queries)
        found = view.native.moments(dense(queries), list(dict.fromkeys(vids)), self._weights(queries, weights), window,
                                    top, evidence, lexical=None if lexical is None else lexical[0])
        by_ref: dict[int, list[NativeHit]] = {}
        for h in found:
            by_ref.setdefault(h.ref, []).append(h)
        text = _text_query(queries)
        out = []
        for v in vids:
            matches = []
            for h in by_ref.get(v, []):
                m = MomentMatch(Moment(int(v), h.start, h.end, h.moment_score))
                if evidence:
                    m.evidence = _evidence(h, text)
                matches.append(m)
            out.append(matches)
        return out

    def evidence(self, video: int, start: float, end: float, queries: Mapping[str, np.ndarray] | None = None,
                 weights: Mapping[str, float] | None = None) -> Evidence:
        video = check_ref(self, video)
        view, lexical, w = self._view, None, None
        if queries is not None:
            queries = query_rows(queries)
            w = self._weights(queries, weights)
            lexical = self._lexical(queries)
        hit = view.native.evidence(video, start, end, None if queries is None else dense(queries), w,
                                   None if lexical is None else lexical[0])
        return _evidence(hit, queries is not None and _text_query(queries))

    def moment_vector(self, video: int, start: float, end: float, channel: str = "visual") -> np.ndarray:
        video = check_ref(self, video)
        if channel not in self.channels:
            raise InvalidArgument(f"no channel {channel!r} in this index; it has {sorted(self.channels)}")
        return self._view.native.moment_vector(video, start, end, channel)

    # -- one-shot search ------------------------------------------------------------------
    def search(self, query: str | Mapping[str, np.ndarray], k: int = 10, weights: Mapping[str, float] | None = None,
               allow: Sequence[int] | None = None, deny: Sequence[int] | None = None,
               moments_per_video: int = 1, timings: dict | None = None) -> list[Hit]:
        """Top ``k`` videos for a text query (or prepared per-channel query vectors), each with its
        best moment(s) and their evidence. ``allow``/``deny`` restrict by ref. ``timings``, when
        given, receives the seconds spent in encode, search and span."""
        if as_int(k, "k") < 1:
            raise InvalidArgument("k must be >= 1")
        if len(self) == 0:
            return []
        k = min(k, self.num_refs())  # a list of hits: k beyond the index is the whole index
        t0 = time.perf_counter()
        queries = self.encode_queries([query]) if isinstance(query, str) else query_rows(query)
        t1 = time.perf_counter()
        refs, scores = self.rank_videos(queries, k, weights, allow, deny)
        t2 = time.perf_counter()
        hits = self.hits(queries, weights, refs[0], scores[0], moments_per_video)
        if timings is not None:
            for key, sec in (("encode", t1 - t0), ("search", t2 - t1), ("span", time.perf_counter() - t2)):
                timings[key] = timings.get(key, 0.0) + sec
        return hits

    def hits(self, queries, weights, refs, scores, per_video: int) -> list[Hit]:
        """The ranked videos' hits: each video's best moments with their evidence, ranked."""
        keep = [(int(r), float(s)) for r, s in zip(refs, scores) if r >= 0]
        found = self.moments(queries, [r for r, _ in keep], weights, top=per_video)
        mapped = self._view.mapped
        hits = []
        for (ref, score), matches in zip(keep, found):
            v = mapped.videos[ref]
            for m in matches:
                hits.append(Hit(rank=len(hits) + 1, video_id=int(v["id"]), video_index=ref, path=v["path"],
                                start=m.moment.start, end=m.moment.end, score=score, moment_score=m.moment.score,
                                evidence=m.evidence, aliases=list(mapped.snapshot.aliases.get(int(v["id"]), []))))
        return hits

    def locked_bytes(self) -> tuple[int, int]:
        """(locked, unlocked) bytes of a prefaulted index's first stages: kept in memory with mlock,
        and meant to be but refused by RLIMIT_MEMLOCK (NativeIndex.locked_bytes)."""
        return self._view.native.locked_bytes()

    def close(self) -> None:
        self._view.native.close()
        self.store.close()


def _text_query(queries: Mapping[str, np.ndarray]) -> bool:
    """Whether a query searches text (its lines get a match: a scene's vector has none)."""
    return any(c in queries for c in (*PRESENCE_CHANNELS, LEXICAL))


def _evidence(hit: NativeHit, text_query: bool) -> Evidence:
    return Evidence(lines=list(hit.lines), concepts=list(hit.concepts), channel_scores=dict(hit.channel_scores),
                    line_match=list(hit.line_match) if text_query else [])
