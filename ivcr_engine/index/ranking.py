"""The first stage of a large index's video ranking, as the engine (libivcr) reads it: the compact
copies of the channels, built here on the first search after the index changed and cached beside
it, which the engine scans for each row's shortlist before it re-ranks that shortlist exactly, as
FAISS's ``IndexRefine`` does (csrc/engine/first_stage.cpp; ``stage_sizes`` hands it this
module's sizes). Indexes below ``TWO_STAGE_MIN_ROWS`` clips have no first stage: the engine scans
every row exactly.

The copies (first_stage.py): int8, projected on the rows' principal directions when that cuts
the bytes, or whitened int4, with the text channels folded into one (they share the query
embedding, so sum_c w_c <q_c, e_c> = <q, sum_c w_c e_c>). A one-copy stage gets inverted lists
over its copy (inverted_lists.py) where they keep its ranking, and a coarse copy in front of it
when it is wide; the engine reads a row's lists, else ranks what the coarse copy keeps, else
scans the copy whole, and re-ranks the best ``SHORTLIST`` videos. A folded text stage also gets
the folded rows in float16 (folded_rows.py), on which the engine pre-ranks those videos so that
it reads every text channel only for the few that can still be in the top k.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..corpus import Corpus
from . import first_stage, folded_rows, inverted_lists
from .layout import LEXICAL, PRESENCE_CHANNELS, TEXT_BASELINE, TEXT_CHANNELS
from .mapped import Mapped
from .protocol import dense

# From this many clips on, video search runs in two stages.
TWO_STAGE_MIN_ROWS = 200_000
SHORTLIST = 400  # videos the exact second stage re-ranks (recall and cost in docs/BENCHMARKS.md)
# Inverted lists serve a first stage while at least this share of the videos is eligible: their
# shortlist over-fetches clips and drops ineligible videos after the scan (inverted_lists.py).
LISTS_MIN_ELIGIBLE = 0.95


def stage_sizes() -> tuple:
    """The staged ranking's sizes as the engine takes them (ivcr_search_options_set_first_stage),
    read when asked, so a caller (a benchmark, a test) may change them."""
    return (TWO_STAGE_MIN_ROWS, SHORTLIST, first_stage.COARSE_SHORTLIST, LISTS_MIN_ELIGIBLE,
            inverted_lists.CLIPS_PER_SHORTLISTED_VIDEO)


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
    """The first-stage copies of one mapped snapshot; ``folder`` holds them and ``line_chance`` is
    the text model's chance similarity (the folded text copy's check)."""

    def __init__(self, view: Mapped, folder, line_chance: float):
        self.view, self.folder, self.line_chance = view, folder, line_chance
        self._stages: dict[tuple, FirstStage] = {}

    def forget_stages(self) -> None:
        """Build the first stages again on next use (after their settings changed: benchmarks)."""
        self._stages.clear()

    def prepare(self, queries: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> list[str]:
        """The first stage the engine scans for these query channels and weights: its copies (and
        coarse copy and lists) built on first use after the index changed, and kept. Returns the
        copies' tags (copy_tag: the names they are stored under)."""
        first_q, _, folded = self.first_stage_queries(queries, weights)
        self.first_stage(tuple(sorted(first_q)), folded)
        return [copy_tag(c, folded) for c in sorted(first_q)]

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
            if len(copies) == 1 and not next(iter(copies.values())).borrowed:  # (a borrowed copy serves alone)
                (c, copy), = copies.items()
                tag = copy_tag(c, folded)
                if first_stage.coarse_width(copy) is not None:
                    cp = first_stage.load_or_build_coarse(self.folder, tag, copy)
                    coarse = (Corpus({c: (cp.values, cp.scales)}, view.offsets), {c: cp})
                if inverted_lists.wanted(len(copy.values), TWO_STAGE_MIN_ROWS):
                    lists = inverted_lists.load_or_build(self.folder, tag, copy, view.offsets, SHORTLIST)
            if channels == ("text",) and folded:
                self.folded_rows(folded)
            self._stages[key] = FirstStage(corpus, copies, coarse, lists)
        return self._stages[key]

    def first_copy(self, channel: str, folded: tuple | None) -> first_stage.FirstStageCopy:
        """A compact copy of a channel or of the folded text channels, cached beside the index and
        named by the row count and the fold (see first_stage.py)."""
        view = self.view
        dim = self._folded_dim(folded) if folded else view.channels[channel].shape[1]

        def read(sel) -> np.ndarray:
            return self._fold(folded, sel)[0] if folded else np.asarray(view.channels[channel][sel], np.float32)

        fit = (lambda: self._checked_text_encoding(read, folded)) if folded else None
        return first_stage.load_or_build(self.folder, copy_tag(channel, folded), view.snapshot.rows, dim, read, fit=fit)

    def folded_rows(self, folded: tuple) -> bool:
        """The folded text rows in float16 that the engine's exact stage pre-ranks a text query's
        shortlist with (folded_rows.py), written on first use; False when none can be."""
        return folded_rows.ensure(self.folder, copy_tag("text", folded), self.view.snapshot.rows,
                                  self._folded_dim(folded), lambda sel: self._fold(folded, sel, norms=True))

    def _folded_dim(self, folded: tuple) -> int:
        """The folded rows are as wide as the presence channels (an index may lack some, e.g. ocr)."""
        return next(self.view.channels[c].shape[1] for c, _ in folded if c in PRESENCE_CHANNELS)

    def _fold(self, folded: tuple, sel, norms: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows ``sel`` of sum_c w_c e_c (float32), and with ``norms`` each row's sum_c |w_c| |e_c|
        (the folded rows' bound factor, folded_rows.py)."""
        block = factor = None
        for c, w in folded:
            part = np.asarray(self.view.channels[c][sel], np.float32)
            if block is None:
                block = np.zeros((len(part), self._folded_dim(folded)), np.float32)
                factor = np.zeros(len(part), np.float32) if norms else None
            block[:, :part.shape[1]] += w * part
            if norms:
                factor += abs(w) * np.linalg.norm(part, axis=1)
        return block, factor

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


def copy_tag(channel: str, folded: tuple | None) -> str:
    return channel if folded is None or channel != "text" else "text-" + "-".join(f"{c}{w:g}" for c, w in folded)
