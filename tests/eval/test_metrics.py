"""Tests for ivcr_engine.eval.metrics: hand-computed cases, a brute-force IoU reference, and
parity with the official QVHighlights moment-retrieval numbers on a shared sample submission."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from ivcr_engine.eval.metrics import (
    MAP_IOU_THRESHOLDS,
    average_precision_at_iou,
    filter_by_gt_length,
    load_jsonl,
    mean_ap,
    per_turn_breakdown,
    qvhighlights_mr_metrics,
    recall_at_k,
    temporal_iou,
)

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
QVH_DIR = SHARED_DATA / "annotations" / "qvhighlights"


# ----------------------------------------------------------------------------- temporal IoU


def test_iou_hand_computed() -> None:
    pred = [[0, 10], [5, 15], [20, 30], [0, 30]]
    gt = [[0, 10], [10, 20]]
    expected = np.array(
        [
            [1.0, 0.0],  # identical; touching at a point -> 0
            [5 / 15, 5 / 15],  # overlap 5 of union 15 on both sides
            [0.0, 0.0],  # disjoint
            [10 / 30, 10 / 30],  # gt contained in pred
        ]
    )
    out = temporal_iou(pred, gt)
    assert out.shape == (4, 2)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


def test_iou_zero_length_and_empty() -> None:
    # A point inside a span has no extent -> IoU 0; two identical points are 0/0 -> 0, not NaN.
    out = temporal_iou([[5, 5], [5, 5]], [[0, 10], [5, 5]])
    np.testing.assert_array_equal(out, np.zeros((2, 2)))
    assert temporal_iou(np.zeros((0, 2)), [[0, 1]]).shape == (0, 1)
    assert temporal_iou([[0, 1]], []).shape == (1, 0)
    # A single 1-D span and a score column are both accepted.
    assert temporal_iou([2, 4, 0.9], [[3, 5]])[0, 0] == pytest.approx(1 / 3)


@pytest.mark.parametrize("pred,gt", [([[3, 1]], [[0, 1]]), ([[0, 1]], [[0, 1], [9, 2]])])
def test_iou_inverted_span_raises(pred: list, gt: list) -> None:
    with pytest.raises(ValueError, match="inverted span"):
        temporal_iou(pred, gt)


def _iou_loop(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def test_iou_matches_bruteforce_on_random_spans() -> None:
    rng = np.random.default_rng(1234)
    for _ in range(20):
        p_n, g_n = rng.integers(1, 12, size=2)
        # Integer grid so exact ties, touching ends and zero-length spans all occur.
        p = np.sort(rng.integers(0, 30, size=(p_n, 2)), axis=1).astype(float)
        g = np.sort(rng.integers(0, 30, size=(g_n, 2)), axis=1).astype(float)
        ref = np.array([[_iou_loop(a, b) for b in g] for a in p])
        np.testing.assert_allclose(temporal_iou(p, g), ref, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- recall


def test_recall_at_k_hand_made() -> None:
    gts = [[[0, 10]], [[0, 10], [20, 30]], [[50, 60]]]
    preds = [
        [[0, 8, 0.9], [0, 10, 0.1]],  # top-1 IoU 0.8
        [[20, 26, 0.9]],  # top-1 IoU 0.6 with the SECOND gt (max over gt windows)
        [[0, 5, 0.9], [50, 60, 0.8]],  # top-1 misses; top-2 is exact
    ]
    r1 = recall_at_k(preds, gts, k=1, iou_thresholds=(0.3, 0.7, 0.9))
    assert r1 == pytest.approx({0.3: 2 / 3, 0.7: 1 / 3, 0.9: 0.0})
    r2 = recall_at_k(preds, gts, k=2, iou_thresholds=(0.3, 0.7, 0.9))
    assert r2 == pytest.approx({0.3: 1.0, 0.7: 2 / 3, 0.9: 2 / 3})


def test_recall_ranks_by_score_and_uses_ge() -> None:
    # Listed second but scored highest: it is the top-1. IoU exactly 0.5 counts at thr 0.5.
    preds = [[[0, 10, 0.1], [0, 5, 0.9]]]
    assert recall_at_k(preds, [[[0, 10]]], k=1, iou_thresholds=(0.5, 0.51)) == {0.5: 1.0, 0.51: 0.0}
    # No predictions -> miss.
    assert recall_at_k([[]], [[[0, 10]]], k=1, iou_thresholds=(0.1,)) == {0.1: 0.0}


# ----------------------------------------------------------------------------- AP


def test_ap_perfect_and_empty() -> None:
    ap = average_precision_at_iou([[0, 10, 0.9], [20, 30, 0.8]], [[0, 10], [20, 30]], (0.5, 0.95))
    np.testing.assert_allclose(ap, [1.0, 1.0])
    np.testing.assert_array_equal(average_precision_at_iou([], [[0, 1]], (0.5,)), [0.0])


def test_ap_hand_made_interpolated() -> None:
    # Two gts; ranked preds: FP, TP(gt A), TP duplicate of A (-> FP, A already claimed), TP(gt B).
    gt = [[0, 10], [20, 30]]
    pred = [[40, 50, 0.9], [0, 10, 0.8], [1, 10, 0.7], [20, 30, 0.6]]
    # precision at ranks: 0, 1/2, 1/3, 2/4; recall: 0, .5, .5, 1.
    # Envelope at recall .5 is max(1/2, 1/3, 2/4) = .5 and at recall 1 it is .5 -> AP = .5.
    np.testing.assert_allclose(average_precision_at_iou(pred, gt, (0.5,)), [0.5])
    # At thr 0.95 the near-duplicate [1, 10] (IoU .9) no longer matters; the AP is unchanged.
    # At a lenient threshold 0.05 nothing changes either: [1, 10] can only claim A (taken).
    np.testing.assert_allclose(average_precision_at_iou(pred, gt, (0.05, 0.95)), [0.5, 0.5])


def test_ap_uses_precision_envelope() -> None:
    # Ranked FP, TP, TP with 2 gts: precisions 0, 1/2, 2/3 at recalls 0, .5, 1.
    # Envelope precision at recall .5 is max(1/2, 2/3) -> AP = .5*2/3 + .5*2/3 = 2/3
    # (the non-interpolated area would be .5*1/2 + .5*2/3 = 7/12).
    gt = [[0, 10], [20, 30]]
    pred = [[40, 50, 0.9], [0, 10, 0.8], [20, 30, 0.7]]
    np.testing.assert_allclose(average_precision_at_iou(pred, gt, (0.5,)), [2 / 3])


def test_ap_each_gt_matched_once_greedy_by_score() -> None:
    # The higher-scored pred takes the best-overlapping unclaimed gt; the second pred must
    # settle for the other gt only if its IoU with it passes the threshold.
    gt = [[0, 10], [8, 18]]
    pred = [[0, 10, 0.9], [0, 9, 0.8]]
    # pred1 claims gt0 (IoU 1). pred2: IoU with gt0 .9 (claimed), with gt1 1/18 -> FP at .5.
    np.testing.assert_allclose(average_precision_at_iou(pred, gt, (0.5,)), [0.5])
    # At thr 0.05, pred2 may claim gt1 (IoU 1/18 ~ .056) -> both TPs -> AP 1.
    np.testing.assert_allclose(average_precision_at_iou(pred, gt, (0.05,)), [1.0])


def test_mean_ap_averages_queries_and_truncates() -> None:
    gts = [[[0, 10]], [[0, 10]]]
    preds = [[[0, 10, 0.9]], [[50, 60, 0.9], [0, 10, 0.1]]]  # AP 1 and AP 1/2
    out = mean_ap(preds, gts, iou_thresholds=(0.5, 0.7), max_preds=10)
    assert out == pytest.approx({0.5: 0.75, 0.7: 0.75, "average": 0.75})
    # Keeping only the top-1 prediction drops the late hit of query 2.
    assert mean_ap(preds, gts, (0.5,), max_preds=1)[0.5] == pytest.approx(0.5)
    assert len(MAP_IOU_THRESHOLDS) == 10 and MAP_IOU_THRESHOLDS[-1] == 0.95


def test_length_buckets_keep_half_open_ranges_and_drop_empty_queries() -> None:
    preds = [[[0, 1, 1.0]], [[0, 1, 1.0]], [[0, 1, 1.0]]]
    gts = [[[0, 10], [0, 40]], [[0, 30]], [[5, 5.5]]]
    p, g = filter_by_gt_length(preds, gts, (10.0, 30.0))
    assert len(p) == 1 and g[0].tolist() == [[0, 30]]  # 10 is not in (10, 30], 30 is
    p, g = filter_by_gt_length(preds, gts, (0.0, 10.0))
    assert [x.tolist() for x in g] == [[[0, 10]], [[5, 5.5]]]
    p, g = filter_by_gt_length(preds, gts, None)
    assert len(g) == 3 and len(g[0]) == 2


# ----------------------------------------------------------------------------- per-turn


def test_per_turn_breakdown() -> None:
    records = [
        (1, {"video_r1": True, "moment_r1@0.5": [True, False]}),
        {"turn": 1, "video_r1": False},
        {"turn": 2, "video_r1": 1, "moment_r1@0.5": [1, 1, 0, 0]},
    ]
    out = per_turn_breakdown(records)
    assert list(out) == [1, 2]
    assert out[1]["video_r1"] == {"mean": 0.5, "count": 2}
    assert out[1]["moment_r1@0.5"] == {"mean": 0.5, "count": 2}
    assert out[2]["video_r1"] == {"mean": 1.0, "count": 1}
    assert out[2]["moment_r1@0.5"] == {"mean": 0.5, "count": 4}
    assert per_turn_breakdown([]) == {}


def test_load_jsonl(tmp_path: Path) -> None:
    f = tmp_path / "x.jsonl"
    f.write_text('{"a": 1}\n\n{"a": [2, 3]}\n', encoding="utf-8")
    assert load_jsonl(f) == [{"a": 1}, {"a": [2, 3]}]


# ----------------------------------------------------------------------------- parity


def test_qvhighlights_parity() -> None:
    files = {
        "preds": QVH_DIR / "sample_val_preds.jsonl",
        "gts": QVH_DIR / "highlight_val_release.jsonl",
        "ref": QVH_DIR / "sample_val_preds_metrics_raw.json",
    }
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        pytest.skip(f"shared QVHighlights data not found: {missing}")

    t0 = time.perf_counter()
    ours = qvhighlights_mr_metrics(load_jsonl(files["preds"]), load_jsonl(files["gts"]))
    elapsed = time.perf_counter() - t0
    ref = json.loads(files["ref"].read_text(encoding="utf-8"))

    expected: dict[str, float] = {k: v for k, v in ref["brief"].items() if k.startswith("MR-")}
    for bucket in ("full", "short", "middle", "long"):
        for metric in ("MR-mAP", "MR-R1"):
            for thr, v in ref[bucket][metric].items():
                expected[f"{bucket}/{metric}/{thr}"] = v
    assert len(expected) >= 8 + 4 * 21  # brief + 4 buckets x (10 mAP + avg + 10 R1)
    # Sanity anchors from the official file, so a silently changed reference is caught too.
    assert expected["MR-full-R1@0.5"] == 53.94 and expected["MR-full-mAP"] == 32.2

    def lookup(key: str) -> float:
        if "/" not in key:
            return ours["brief"][key]
        bucket, metric, thr = key.split("/")
        return ours[bucket][metric][thr]

    wrong = {k: (v, lookup(k)) for k, v in expected.items() if not math.isclose(lookup(k), v, abs_tol=5e-3)}
    assert not wrong, f"{len(wrong)} metric(s) differ (official, ours): {wrong}"
    assert elapsed < 10.0, f"QVHighlights MR evaluation took {elapsed:.1f}s"
