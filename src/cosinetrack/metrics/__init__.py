"""Metrics: IoU per case and class (LV-MRI); symmetric best Dice and difference in count (instances)."""

from cosinetrack.metrics.instances import (
    InstanceSegmentationMetrics,
    abs_difference_in_count,
    best_dice,
    difference_in_count,
    foreground_dice,
    symmetric_best_dice,
)
from cosinetrack.metrics.iou import CaseIoU, case_iou, central_slices, class_iou, summarize

__all__ = [
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
