"""Moment-retrieval metrics (temporal IoU, R@k, ActivityNet-style mAP) and QVHighlights reporting.

Written from the metric definitions; numbers match the official QVHighlights evaluation
output (see tests/eval/test_metrics.py for the parity check).

Conventions:
  * a span is ``[start, end]`` in seconds, ``start <= end``;
  * a prediction is ``[start, end, score]``; higher score = more confident;
  * QVHighlights records: predictions carry ``pred_relevant_windows``, ground truth carries
    ``relevant_windows``, both keyed by ``qid``.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "DEFAULT_IOU_THRESHOLDS",
    "MAP_IOU_THRESHOLDS",
    "QVH_LENGTH_BUCKETS",
    "temporal_iou",
    "recall_at_k",
    "average_precision_at_iou",
    "mean_ap",
    "filter_by_gt_length",
    "qvhighlights_mr_metrics",
    "per_turn_breakdown",
    "load_jsonl",
]

DEFAULT_IOU_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)
# 0.5:0.95 step 0.05, built from integers so the keys print as "0.55", not "0.5500000000000002".
MAP_IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
# Ground-truth window length buckets (seconds), half-open (lo, hi]; "full" applies no filter.
QVH_LENGTH_BUCKETS: dict[str, tuple[float, float] | None] = {
    "full": None,
    "short": (0.0, 10.0),
    "middle": (10.0, 30.0),
    "long": (30.0, math.inf),
}


def _as_spans(x: ArrayLike, name: str) -> NDArray[np.float64]:
    """Coerce to a float (N, 2) array of [start, end]; extra columns (e.g. scores) are dropped."""
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] < 2:
        raise ValueError(f"{name}: expected spans of shape (N, 2) or (N, >=2), got {a.shape}")
    a = a[:, :2]
    bad = np.flatnonzero(a[:, 1] < a[:, 0])
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{name}: inverted span at index {i}: start={a[i, 0]} > end={a[i, 1]} "
            f"({bad.size} inverted span(s) in total)"
        )
    return a


def temporal_iou(pred: ArrayLike, gt: ArrayLike) -> NDArray[np.float64]:
    """Pairwise temporal IoU between P predicted and G ground-truth spans -> (P, G) matrix.

    Zero-length spans are allowed: a zero-length span has zero intersection with anything,
    and a 0/0 (two identical points) is defined as IoU 0. Inverted spans raise ValueError.
    """
    p = _as_spans(pred, "pred")
    g = _as_spans(gt, "gt")
    inter = np.clip(
        np.minimum(p[:, None, 1], g[None, :, 1]) - np.maximum(p[:, None, 0], g[None, :, 0]), 0.0, None
    )
    union = (p[:, None, 1] - p[:, None, 0]) + (g[None, :, 1] - g[None, :, 0]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _ranked_spans(pred: ArrayLike) -> NDArray[np.float64]:
    """Predictions as (N, 2) spans ordered by descending score (stable: ties keep input order).

    Rows without a score column are assumed to be already ranked.
    """
    a = np.asarray(pred, dtype=np.float64)
    if a.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if a.ndim == 2 and a.shape[1] >= 3:
        a = a[np.argsort(-a[:, 2], kind="stable")]
    return _as_spans(a, "pred")


def recall_at_k(
    preds_per_query: Sequence[ArrayLike],
    gts_per_query: Sequence[ArrayLike],
    k: int = 1,
    iou_thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS,
) -> dict[float, float]:
    """R@k: fraction of queries whose top-k predictions include one with IoU >= thr vs ANY gt.

    For k=1 this is the QVHighlights "R1@thr": max IoU of the top-1 prediction over all gt
    windows, thresholded with >=. Queries with no prediction count as misses. Returns
    {thr: fraction in [0, 1]}.
    """
    if len(preds_per_query) != len(gts_per_query):
        raise ValueError(f"{len(preds_per_query)} prediction lists vs {len(gts_per_query)} gt lists")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    thr = np.asarray(iou_thresholds, dtype=np.float64)
    if len(preds_per_query) == 0:
        return {float(t): 0.0 for t in thr}
    best = np.zeros(len(preds_per_query))
    for i, (p, g) in enumerate(zip(preds_per_query, gts_per_query)):
        iou = temporal_iou(_ranked_spans(p)[:k], g)
        best[i] = iou.max() if iou.size else 0.0
    return {float(t): float(np.mean(best >= t)) for t in thr}


def _interpolated_ap(precision: NDArray[np.float64], recall: NDArray[np.float64]) -> float:
    """Area under the precision envelope, sampled at every recall change (VOC2010+/ActivityNet)."""
    mprec = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    # Envelope: precision at recall r is the best precision at any recall >= r.
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def average_precision_at_iou(
    pred: ArrayLike,
    gt: ArrayLike,
    iou_thresholds: Sequence[float] = MAP_IOU_THRESHOLDS,
) -> NDArray[np.float64]:
    """AP of one query's ranked predictions against its gt windows, one value per IoU threshold.

    ActivityNet detection AP: predictions are visited in descending score order; each one is a
    true positive if it can claim the highest-IoU not-yet-claimed gt window with IoU >= thr
    (each gt matched at most once), otherwise a false positive. AP is the area under the
    monotone precision envelope over all recall points, recall normalised by the number of gts.
    No gt -> AP 0 (such queries are normally dropped before calling this).
    """
    thr = np.asarray(iou_thresholds, dtype=np.float64)
    p = _ranked_spans(pred)
    g = _as_spans(gt, "gt")
    ap = np.zeros(len(thr))
    if len(p) == 0 or len(g) == 0:
        return ap
    iou = temporal_iou(p, g)  # (P, G)
    claimed = np.zeros((len(thr), len(g)), dtype=bool)
    tp = np.zeros((len(thr), len(p)), dtype=bool)
    for i in range(len(p)):  # greedy in score order; vectorised over thresholds
        ok = (iou[i][None, :] >= thr[:, None]) & ~claimed
        hit = ok.any(axis=1)
        j = np.argmax(np.where(ok, iou[i][None, :], -1.0), axis=1)
        claimed[np.flatnonzero(hit), j[hit]] = True
        tp[:, i] = hit
    tp_cum = np.cumsum(tp, axis=1)
    ranks = np.arange(1, len(p) + 1)
    for t in range(len(thr)):
        ap[t] = _interpolated_ap(tp_cum[t] / ranks, tp_cum[t] / len(g))
    return ap


def mean_ap(
    preds_per_query: Sequence[ArrayLike],
    gts_per_query: Sequence[ArrayLike],
    iou_thresholds: Sequence[float] = MAP_IOU_THRESHOLDS,
    max_preds: int | None = 10,
) -> dict[float | str, float]:
    """Per-query AP averaged over queries (QVHighlights style), per threshold plus "average".

    Note this is NOT dataset-level detection mAP (pooling all predictions): every query
    weighs the same. ``max_preds`` keeps the top-scored predictions only (official: 10).
    Returns fractions in [0, 1]; "average" is the mean over thresholds of the unrounded APs.
    """
    if len(preds_per_query) != len(gts_per_query):
        raise ValueError(f"{len(preds_per_query)} prediction lists vs {len(gts_per_query)} gt lists")
    thr = [float(t) for t in iou_thresholds]
    if len(preds_per_query) == 0:
        return {**{t: 0.0 for t in thr}, "average": 0.0}
    aps = np.stack(
        [
            average_precision_at_iou(_ranked_spans(p)[:max_preds] if max_preds else p, g, thr)
            for p, g in zip(preds_per_query, gts_per_query)
        ]
    )
    per_thr = aps.mean(axis=0)
    out: dict[float | str, float] = {t: float(v) for t, v in zip(thr, per_thr)}
    out["average"] = float(per_thr.mean())
    return out


def filter_by_gt_length(
    preds_per_query: Sequence[ArrayLike],
    gts_per_query: Sequence[ArrayLike],
    length_range: tuple[float, float] | None,
) -> tuple[list[ArrayLike], list[NDArray[np.float64]]]:
    """Keep only gt windows with lo < length <= hi; drop queries left without gt.

    Predictions are NOT filtered: a query's full ranked list is scored against the bucket's
    gt windows only. ``None`` keeps everything.
    """
    preds_out: list[ArrayLike] = []
    gts_out: list[NDArray[np.float64]] = []
    for p, g in zip(preds_per_query, gts_per_query):
        g = _as_spans(g, "gt")
        if length_range is not None:
            lo, hi = length_range
            length = g[:, 1] - g[:, 0]
            g = g[(length > lo) & (length <= hi)]
        if len(g):
            preds_out.append(p)
            gts_out.append(g)
    return preds_out, gts_out


def qvhighlights_mr_metrics(
    preds: Iterable[Mapping[str, Any]],
    gts: Iterable[Mapping[str, Any]],
    max_preds: int = 10,
) -> dict[str, Any]:
    """QVHighlights moment-retrieval metrics, laid out like the official metrics json.

    ``preds``: records with ``qid`` and ``pred_relevant_windows`` ([start, end, score], ranked);
    ``gts``: records with ``qid`` and ``relevant_windows``. Only qids present in both are
    scored. Returns {"brief": {"MR-full-R1@0.5": ..., ...}, "full"|"short"|"middle"|"long":
    {"MR-mAP": {"0.5": ..., "average": ...}, "MR-R1": {"0.5": ...}}}, in percent rounded to
    2 decimals (rounding happens last, on the unrounded fractions).
    """
    pred_by_qid = {d["qid"]: d["pred_relevant_windows"] for d in preds}
    gt_by_qid = {d["qid"]: d["relevant_windows"] for d in gts}
    qids = [q for q in gt_by_qid if q in pred_by_qid]
    all_preds = [pred_by_qid[q] for q in qids]
    all_gts = [gt_by_qid[q] for q in qids]

    def pct(x: float) -> float:
        return round(100.0 * x, 2)

    out: dict[str, Any] = {}
    for bucket, length_range in QVH_LENGTH_BUCKETS.items():
        p, g = filter_by_gt_length(all_preds, all_gts, length_range)
        ap = mean_ap(p, g, MAP_IOU_THRESHOLDS, max_preds=max_preds)
        r1 = recall_at_k(p, g, k=1, iou_thresholds=MAP_IOU_THRESHOLDS)
        out[bucket] = {
            "MR-mAP": {(k if isinstance(k, str) else f"{k:g}"): pct(v) for k, v in ap.items()},
            "MR-R1": {f"{k:g}": pct(v) for k, v in r1.items()},
        }
    brief = {
        "MR-full-R1@0.5": out["full"]["MR-R1"]["0.5"],
        "MR-full-R1@0.7": out["full"]["MR-R1"]["0.7"],
        "MR-full-mAP": out["full"]["MR-mAP"]["average"],
        "MR-full-mAP@0.5": out["full"]["MR-mAP"]["0.5"],
        "MR-full-mAP@0.75": out["full"]["MR-mAP"]["0.75"],
    }
    for bucket in ("long", "middle", "short"):
        brief[f"MR-{bucket}-mAP"] = out[bucket]["MR-mAP"]["average"]
    return {"brief": brief, **out}


def per_turn_breakdown(
    records: Iterable[Mapping[str, Any] | tuple[int, Mapping[str, Any]]],
    turn_key: str = "turn",
) -> dict[int, dict[str, dict[str, float]]]:
    """Per-turn mean and sample count of each metric, for multi-turn (IVCR) evaluation.

    Each record is ``(turn_index, {metric: value})`` or a dict with ``turn_key`` and the
    metric values as the other keys. A value is a number/bool (one sample) or a sequence of
    numbers/bools (several samples, e.g. per-sample hits). Returns
    ``{turn: {metric: {"mean": m, "count": n}}}`` sorted by turn; means are fractions
    (not percent). Metrics missing from a record simply contribute no sample.
    """
    samples: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        if isinstance(rec, tuple):
            turn, metrics = rec
        else:
            turn = rec[turn_key]
            metrics = {k: v for k, v in rec.items() if k != turn_key}
        for name, value in metrics.items():
            values = np.atleast_1d(np.asarray(value, dtype=np.float64)).ravel()
            samples[int(turn)][name].extend(values.tolist())
    return {
        turn: {
            name: {"mean": float(np.mean(v)) if v else math.nan, "count": len(v)}
            for name, v in by_metric.items()
        }
        for turn, by_metric in sorted(samples.items())
    }


def load_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSON-lines file (one object per non-empty line)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
