"""The reference for the engine's ranking (csrc/engine/ranking.cpp), kept from the Python path it
replaced (index/ranking.py's exact stage and its lexical candidates): each row's top k eligible
videos by their best clip's fused score, from one exact scan or among a first stage's shortlists,
with up to LEXICAL_JOIN lexical candidates scored exactly and their weighted coverage added."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ivcr_engine.index import first_stage
from ivcr_engine.index import ranking as ranking_module
from ivcr_engine.index.layout import LEXICAL
from ivcr_engine.index.protocol import dense

LEXICAL_JOIN = 16


def reference_rank(view, lexical, queries: Mapping[str, np.ndarray], weights: Mapping[str, float], k: int,
                   eligible: np.ndarray, shortlists: np.ndarray | None = None, ref_of: dict | None = None):
    """``ref_of``: video id -> ref, kept per snapshot as the Python path kept it (made here when absent)."""
    b = next(iter(queries.values())).shape[0]
    out_i = np.full((b, k), -1, np.int64)
    out_s = np.full((b, k), -np.inf, np.float32)
    if view.corpus.rows == 0 or not eligible.any():
        return out_i, out_s
    bonus = lexical_bonus(view, lexical, queries.get(LEXICAL), float(weights.get(LEXICAL, 0.0)), eligible, ref_of)
    queries, weights = dense(queries), {c: w for c, w in weights.items() if c != LEXICAL}
    if not queries:
        return _best(bonus, k, out_i, out_s)
    if shortlists is None:
        if bonus is not None:
            base = view.corpus.topk_videos(queries, k, weights=weights, allow=eligible).ids
            return _with_bonus(view, queries, weights, k, base, bonus, out_i, out_s)
        res = view.corpus.topk_videos(queries, k, weights=weights, allow=eligible)
        n = res.ids.shape[1]
        out_i[:, :n], out_s[:, :n] = res.ids, res.scores
        out_s[out_i < 0] = -np.inf
        return out_i, out_s
    if bonus is not None:
        return _with_bonus(view, queries, weights, k, shortlists, bonus, out_i, out_s)
    res = view.corpus.topk_videos_among(queries, k, shortlists, weights=weights)
    n = res.ids.shape[1]
    out_i[:, :n], out_s[:, :n] = res.ids, res.scores
    return out_i, out_s


def lexical_bonus(view, lexical, texts, weight: float, eligible: np.ndarray, ref_of: dict | None = None):
    if texts is None or weight == 0.0 or lexical is None or not lexical.ready:
        return None
    if ref_of is None:
        ref_of = {int(v["id"]): r for r, v in enumerate(view.videos)}
    out = []
    for text in np.asarray(texts).reshape(-1):
        found = lexical.videos(str(text))
        refs = [(ref_of.get(v), c) for v, c in found.items()]
        refs = sorted(((r, c) for r, c in refs if r is not None and eligible[r]), key=lambda x: (-x[1], x[0]))
        out.append({r: weight * c for r, c in refs[:LEXICAL_JOIN]})
    return out if any(out) else None


def _with_bonus(view, queries, weights, k, base, bonus, out_i, out_s):
    b = base.shape[0]
    top = view.corpus.topk_videos_among(queries, k, base, weights=weights)
    lex = np.full((b, max(len(x) for x in bonus)), -1, np.int64)
    for r in range(b):
        lex[r, :len(bonus[r])] = np.fromiter(bonus[r], np.int64, len(bonus[r]))
    got = view.corpus.topk_videos_among(queries, lex.shape[1], lex, weights=weights)
    fused = []
    for r in range(b):
        row = {int(i): float(s) for i, s in zip(top.ids[r], top.scores[r]) if i >= 0}
        row.update((int(i), float(s) + bonus[r][int(i)]) for i, s in zip(got.ids[r], got.scores[r]) if i >= 0)
        fused.append(row)
    return _best(fused, k, out_i, out_s)


def _best(scores, k, out_i, out_s):
    for r, row in enumerate(scores or []):
        top = sorted(row.items(), key=lambda x: (-x[1], x[0]))[:k]
        out_i[r, :len(top)] = [i for i, _ in top]
        out_s[r, :len(top)] = [s for _, s in top]
    return out_i, out_s


def reference_shortlists(ranking, queries, weights, k: int, eligible: np.ndarray) -> np.ndarray:
    """The first stage as the Python path ran it (index/ranking.py before the engine took it over):
    (B, max(SHORTLIST, k)) candidate refs per row, padded -1."""
    view = ranking.view
    b = next(iter(queries.values())).shape[0]
    first_q, first_w, folded = ranking.first_stage_queries(queries, weights)
    stage = ranking.first_stage(tuple(sorted(first_q)), folded)
    first_q = {c: stage.copies[c].project(q) for c, q in first_q.items()}
    n_short = max(ranking_module.SHORTLIST, k)
    out = np.full((b, n_short), -1, np.int64)
    todo = list(range(b))
    lists_serve = eligible.mean() >= ranking_module.LISTS_MIN_ELIGIBLE
    if stage.lists is not None and n_short == ranking_module.SHORTLIST and lists_serve:
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
