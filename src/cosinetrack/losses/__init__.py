"""Losses: softmax cross-entropy for semantic tasks, applied to every hourglass stack."""

from cosinetrack.losses.cross_entropy import ClipCrossEntropyLoss, StackedLoss

__all__ = ["ClipCrossEntropyLoss", "StackedLoss"]
