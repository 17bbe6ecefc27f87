"""Video ranking over one mapped snapshot: B queries -> each row's top k eligible videos by their
best clip's fused score, ``(refs (B, k) padded -1, scores (B, k) padded -inf)``.

Small indexes get one exact fused scan (``Corpus.topk_videos``, agg max, float16 rows). From
``TWO_STAGE_MIN_ROWS`` clips on the ranking is staged, as FAISS's ``IndexRefine`` is:

1. a first stage runs the same max-over-clips scan on compact copies of the channels
   (first_stage.py: int8, projected on the rows' principal directions when that cuts the bytes),
   with the text channels folded into one (they share the query embedding, so
   sum_c w_c <q_c, e_c> = <q, sum_c w_c e_c>). A one-copy stage reads only its query's inverted
   lists where the index has them (inverted_lists.py), else a wide copy ranks what its coarse copy
   keeps, else the copy is scanned whole;
2. the best ``SHORTLIST`` videos of each row are re-ranked exactly by the float16 scan over
   their rows, for all rows in one native call (``Corpus.topk_videos_among``).

The copies are built on the first search after the index changed and cached beside it.

The lexical channel (lexical.py) joins both: up to ``LEXICAL_JOIN`` videos whose lines hold the
query's words are scored exactly by a second, small ``topk_videos_among`` call, each with its
weighted coverage added, and compete with the dense top k (of the exact scan, or of the
shortlist's exact stage). No other video can enter the top k: without a lexical match its score
is its dense score, which the dense top k already beat.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..corpus import Corpus
from . import first_stage, inverted_lists
from .layout import LEXICAL, PRESENCE_CHANNELS, TEXT_BASELINE, TEXT_CHANNELS
from .lexical import LexicalSearch
from .mapped import Mapped, populate
from .protocol import dense

# From this many clips on, video search runs in two stages.
TWO_STAGE_MIN_ROWS = 200_000
SHORTLIST = 400  # videos the exact second stage re-ranks (recall and cost in docs/BENCHMARKS.md)
# Inverted lists serve a first stage while at least this share of the videos is eligible: their
# shortlist over-fetches clips and drops ineligible videos after the scan (inverted_lists.py).
LISTS_MIN_ELIGIBLE = 0.95
# Lexical candidates a row's exact stage takes, best coverage first: a word in many lines adds at
# most this many videos to the 400 of the shortlist (16 and 64 timed the same at 1M clips).
LEXICAL_JOIN = 16


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


class Ranking:
    """The ranking of one mapped snapshot; ``folder`` holds the cached first-stage copies and
    ``line_chance`` is the text model's chance similarity (the folded text copy's check)."""

    def __init__(self, view: Mapped, folder, line_chance: float, lexical: LexicalSearch | None = None):
        self.view, self.folder, self.line_chance, self.lexical = view, folder, line_chance, lexical
        self._stages: dict[tuple, FirstStage] = {}
        self._ref_of: dict[int, int] | None = None

    def forget_stages(self) -> None:
        """Build the first stages again on next use (after their settings changed: benchmarks)."""
        self._stages.clear()

    def rank(self, queries: Mapping[str, np.ndarray], weights: Mapping[str, float], k: int,
             eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        view = self.view
        b = next(iter(queries.values())).shape[0]
        out_i = np.full((b, k), -1, np.int64)
        out_s = np.full((b, k), -np.inf, np.float32)
        if view.corpus.rows == 0 or not eligible.any():
            return out_i, out_s
        bonus = self.lexical_bonus(queries.get(LEXICAL), float(weights.get(LEXICAL, 0.0)), eligible)
        queries, weights = dense(queries), {c: w for c, w in weights.items() if c != LEXICAL}
        if not queries:  # words alone: the lexical scores are the ranking
            return _best(bonus, k, out_i, out_s)
        if view.corpus.rows < TWO_STAGE_MIN_ROWS:
            if bonus is not None:
                base = view.corpus.topk_videos(queries, k, weights=weights, allow=eligible).ids
                return self._with_bonus(queries, weights, k, base, bonus, out_i, out_s)
            res = view.corpus.topk_videos(queries, k, weights=weights, allow=eligible)
            n = res.ids.shape[1]
            out_i[:, :n], out_s[:, :n] = res.ids, res.scores
            out_s[out_i < 0] = -np.inf
            return out_i, out_s
        shortlists = self.shortlists(queries, weights, k, eligible)
        if bonus is not None:
            return self._with_bonus(queries, weights, k, shortlists, bonus, out_i, out_s)
        res = view.corpus.topk_videos_among(queries, k, shortlists, weights=weights)
        n = res.ids.shape[1]
        out_i[:, :n], out_s[:, :n] = res.ids, res.scores
        return out_i, out_s

    def lexical_bonus(self, texts, weight: float, eligible: np.ndarray) -> list[dict[int, float]] | None:
        """Per query row, eligible ref -> weight x its best line's coverage of the row's words;
        None when no row has a lexical match (or the channel is off, weighted 0 or not built)."""
        if texts is None or weight == 0.0 or self.lexical is None or not self.lexical.ready:
            return None
        if self._ref_of is None:
            self._ref_of = {int(v["id"]): r for r, v in enumerate(self.view.videos)}
        out = []
        for text in np.asarray(texts).reshape(-1):
            found = self.lexical.videos(str(text))
            refs = [(self._ref_of.get(v), c) for v, c in found.items()]
            refs = sorted(((r, c) for r, c in refs if r is not None and eligible[r]), key=lambda x: (-x[1], x[0]))
            out.append({r: weight * c for r, c in refs[:LEXICAL_JOIN]})
        return out if any(out) else None

    def _with_bonus(self, queries, weights, k: int, base: np.ndarray, bonus: list[dict[int, float]], out_i, out_s):
        """The dense top k of each row's ``base`` candidates, and the lexical candidates scored
        exactly in a second (small) native call, each with its bonus; the best k of both (ties
        by the lower ref). The top k of dense + bonus lies in that union: any other video's
        score is its dense score, which the dense top k beat."""
        b = base.shape[0]
        top = self.view.corpus.topk_videos_among(queries, k, base, weights=weights)
        lex = np.full((b, max(len(x) for x in bonus)), -1, np.int64)
        for r in range(b):
            lex[r, :len(bonus[r])] = np.fromiter(bonus[r], np.int64, len(bonus[r]))
        got = self.view.corpus.topk_videos_among(queries, lex.shape[1], lex, weights=weights)
        fused = []
        for r in range(b):
            row = {int(i): float(s) for i, s in zip(top.ids[r], top.scores[r]) if i >= 0}
            row.update((int(i), float(s) + bonus[r][int(i)]) for i, s in zip(got.ids[r], got.scores[r]) if i >= 0)
            fused.append(row)
        return _best(fused, k, out_i, out_s)

    def shortlists(self, queries, weights, k: int, eligible: np.ndarray) -> np.ndarray:
        """The first stage: (B, max(SHORTLIST, k)) candidate refs per row, padded -1."""
        view = self.view
        b = next(iter(queries.values())).shape[0]
        first_q, first_w, folded = self.first_stage_queries(queries, weights)
        stage = self.first_stage(tuple(sorted(first_q)), folded)
        first_q = {c: stage.copies[c].project(q) for c, q in first_q.items()}
        n_short = max(SHORTLIST, k)
        out = np.full((b, n_short), -1, np.int64)
        todo = list(range(b))
        if stage.lists is not None and n_short == SHORTLIST and eligible.mean() >= LISTS_MIN_ELIGIBLE:
            # inverted lists read a few percent of the copy (inverted_lists.py); a row whose probed
            # lists hold fewer than k eligible videos falls back to the scans below
            (c, q), = first_q.items()
            todo = []
            for r in range(b):
                short = stage.lists.shortlist(q[r:r + 1], first_w[c], n_short, view.offsets, eligible)
                if len(short) >= k:
                    out[r, :len(short)] = short
                else:
                    todo.append(r)
        rest = {c: q[todo] for c, q in first_q.items()}
        if todo and stage.coarse is not None and int(eligible.sum()) > 4 * first_stage.COARSE_SHORTLIST:
            # a wide copy ranks only what its coarse copy keeps (per row: each has its own shortlist)
            (c, cp), = stage.coarse[1].items()
            wide = stage.coarse[0].topk_videos({c: cp.project(rest[c])}, max(first_stage.COARSE_SHORTLIST, n_short),
                                               weights=first_w, allow=eligible).ids
            ids = stage.corpus.topk_videos_among({c: rest[c]}, n_short, wide, weights=first_w).ids
            out[todo, :ids.shape[1]] = ids
        elif todo:
            ids = stage.corpus.topk_videos(rest, n_short, weights=first_w, allow=eligible).ids
            out[todo, :ids.shape[1]] = ids
        return out

    def first_stage_queries(self, queries: Mapping[str, np.ndarray], weights: Mapping[str, float]):
        """Fold the text channels of a text query into one "text" channel when they share the
        embedding (concept, and speech/subtitle with the presence baseline appended). Returns the
        first stage's queries, weights, and the folded ((channel, weight), ...) or None."""
        queries, weights = dense(queries), {c: w for c, w in weights.items() if c != LEXICAL}
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

    def first_stage(self, channels: tuple[str, ...], folded: tuple | None) -> FirstStage:
        """The first stage over compact copies of the channels ("text" = the folded text channels),
        built on first use after the index changed and cached beside it (see FirstStage)."""
        key = (channels, folded)
        if key not in self._stages:
            view = self.view
            copies = {c: self.first_copy(c, folded if c == "text" else None) for c in channels}
            corpus = Corpus({c: (cp.values, cp.scales) for c, cp in copies.items()}, view.offsets)
            coarse = lists = None
            if len(copies) == 1:
                (c, copy), = copies.items()
                tag = copy_tag(c, folded)
                if first_stage.coarse_width(copy) is not None:
                    cp = first_stage.load_or_build_coarse(self.folder, tag, copy)
                    coarse = (Corpus({c: (cp.values, cp.scales)}, view.offsets), {c: cp})
                if inverted_lists.wanted(len(copy.values), TWO_STAGE_MIN_ROWS):
                    lists = inverted_lists.load_or_build(self.folder, tag, copy, view.offsets, SHORTLIST)
            if view.prefaulted:  # behind a coarse copy or lists, copies are read at random too
                for cp in copies.values():
                    populate(cp.values)
                if lists is not None:
                    populate(lists.values)
            self._stages[key] = FirstStage(corpus, copies, coarse, lists)
        return self._stages[key]

    def first_copy(self, channel: str, folded: tuple | None) -> first_stage.FirstStageCopy:
        """A compact copy of a channel or of the folded text channels, cached beside the index and
        named by the row count and the fold (see first_stage.py)."""
        view = self.view
        # the folded copy is as wide as the presence channels (an index may lack some, e.g. ocr)
        dim = (next(view.channels[c].shape[1] for c, _ in folded if c in PRESENCE_CHANNELS) if folded
               else view.channels[channel].shape[1])

        def read(sel) -> np.ndarray:
            if not folded:
                return np.asarray(view.channels[channel][sel], np.float32)
            block = None
            for c, w in folded:
                part = w * np.asarray(view.channels[c][sel], np.float32)
                if block is None:
                    block = np.zeros((len(part), dim), np.float32)
                block[:, :part.shape[1]] += part
            return block

        fit = (lambda: self._checked_text_encoding(read, folded)) if folded else None
        return first_stage.load_or_build(self.folder, copy_tag(channel, folded), view.snapshot.rows, dim, read, fit=fit)

    def _checked_text_encoding(self, read, folded: tuple) -> first_stage.Encoding | None:
        """The folded text copy's encoding, checked on whole videos (first_stage.checked_encoding):
        up to TEXT_CHECK_VIDEOS evenly spaced videos, and as queries their own speech or subtitle
        rows (sentences with text present), in the form the query encoder gives a query."""
        view = self.view
        n_videos = len(view.videos)
        picks = np.unique(np.linspace(0, n_videos - 1, min(n_videos, first_stage.TEXT_CHECK_VIDEOS)).astype(np.int64))
        counts = view.offsets[picks + 1] - view.offsets[picks]
        sel = np.concatenate([np.arange(view.offsets[v], view.offsets[v + 1]) for v in picks])
        rows = read(sel)
        local = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        chance = self.line_chance
        for c in (c for c, _ in folded if c in PRESENCE_CHANNELS):
            text = np.asarray(view.channels[c][sel], np.float32)
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


def _best(scores: list[dict[int, float]] | None, k: int, out_i: np.ndarray, out_s: np.ndarray):
    """Each row's k best refs of ``scores`` (ref -> score) into the padded outputs, ties by the lower ref."""
    for r, row in enumerate(scores or []):
        top = sorted(row.items(), key=lambda x: (-x[1], x[0]))[:k]
        out_i[r, :len(top)] = [i for i, _ in top]
        out_s[r, :len(top)] = [s for _, s in top]
    return out_i, out_s


def copy_tag(channel: str, folded: tuple | None) -> str:
    return channel if folded is None or channel != "text" else "text-" + "-".join(f"{c}{w:g}" for c, w in folded)
