"""Evaluation metrics for moment retrieval and multi-turn IVCR evaluation."""

from .metrics import (
    DEFAULT_IOU_THRESHOLDS,
    MAP_IOU_THRESHOLDS,
    QVH_LENGTH_BUCKETS,
    average_precision_at_iou,
    filter_by_gt_length,
    load_jsonl,
    mean_ap,
    per_turn_breakdown,
    qvhighlights_mr_metrics,
    recall_at_k,
    temporal_iou,
)

__all__ = [
    "DEFAULT_IOU_THRESHOLDS",
    "MAP_IOU_THRESHOLDS",
    "QVH_LENGTH_BUCKETS",
    "average_precision_at_iou",
    "filter_by_gt_length",
    "load_jsonl",
    "mean_ap",
    "per_turn_breakdown",
    "qvhighlights_mr_metrics",
    "recall_at_k",
    "temporal_iou",
]
