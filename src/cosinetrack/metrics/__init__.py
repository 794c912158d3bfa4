"""Metrics: IoU per case and class (LV-MRI)."""

from cosinetrack.metrics.iou import CaseIoU, case_iou, central_slices, class_iou, summarize

__all__ = ["CaseIoU", "case_iou", "central_slices", "class_iou", "summarize"]
