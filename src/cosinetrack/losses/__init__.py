"""Losses: softmax cross-entropy for semantic tasks and the cosine embedding loss for instances.

Every loss takes one stack output; :class:`StackedLoss` applies it to every hourglass stack.
"""

from cosinetrack.losses.cosine_embedding import NEIGHBOR_RULES, CosineEmbeddingLoss
from cosinetrack.losses.cross_entropy import ClipCrossEntropyLoss
from cosinetrack.losses.stacked import StackedLoss

__all__ = [
    "CosineEmbeddingLoss",
    "NEIGHBOR_RULES",
    "ClipCrossEntropyLoss",
    "StackedLoss",
]
