"""Losses: softmax cross-entropy for semantic tasks and the cosine embedding loss for instances.

Every loss takes one stack output; :class:`StackedLoss` applies it to every hourglass stack.
"""

from cosinetrack.losses.cosine_embedding import CosineEmbeddingLoss
from cosinetrack.losses.cross_entropy import ClipCrossEntropyLoss, StackedLoss

__all__ = ["ClipCrossEntropyLoss", "CosineEmbeddingLoss", "StackedLoss"]
