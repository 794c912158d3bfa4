"""Metrics: IoU per case and class (LV-MRI); symmetric best Dice and difference in count (instances);
CTC measures of tracked videos (py-ctcmetrics).
"""

from cosinetrack.metrics.instances import (
    InstanceSegmentationMetrics,
    abs_difference_in_count,
    best_dice,
    difference_in_count,
    foreground_dice,
    instance_scores,
    symmetric_best_dice,
)
from cosinetrack.metrics.iou import CaseIoU, case_iou, central_slices, class_iou, summarize

__all__ = [
    "central_slices",
    "class_iou",
    "case_iou",
    "summarize",
    "CaseIoU",
    "best_dice",
    "symmetric_best_dice",
    "difference_in_count",
    "abs_difference_in_count",
    "foreground_dice",
    "instance_scores",
    "InstanceSegmentationMetrics",
]
