"""Metrics: IoU per case and class (LV-MRI); symmetric best Dice and difference in count (instances);
CTC measures of tracked videos (py-ctcmetrics)."""

from cosinetrack.metrics.ctc import ctc_scores, format_ctc_table, lineage_counts
from cosinetrack.metrics.instances import (
    InstanceSegmentationMetrics,
    abs_difference_in_count,
    best_dice,
    difference_in_count,
    foreground_dice,
    symmetric_best_dice,
)
from cosinetrack.metrics.iou import CaseIoU, case_iou, central_slices, class_iou, summarize
from cosinetrack.metrics.tracking import TrackingScores

__all__ = [
    "TrackingScores",
    "ctc_scores",
    "format_ctc_table",
    "lineage_counts",
    "CaseIoU",
    "InstanceSegmentationMetrics",
    "abs_difference_in_count",
    "best_dice",
    "case_iou",
    "central_slices",
    "class_iou",
    "difference_in_count",
    "foreground_dice",
    "summarize",
    "symmetric_best_dice",
]
