"""Losses: softmax cross-entropy (and Dice + cross-entropy) for semantic tasks, the cosine embedding loss for instances.

Every loss takes one stack output; :class:`StackedLoss` applies it to every hourglass stack.
"""

from cosinetrack.losses.cosine_embedding import NEIGHBOR_RULES, CosineEmbeddingLoss
from cosinetrack.losses.cross_entropy import ClipCrossEntropyLoss
from cosinetrack.losses.dice_ce import ClipDiceCELoss
from cosinetrack.losses.stacked import StackedLoss

__all__ = [
    "CosineEmbeddingLoss",
    "NEIGHBOR_RULES",
    "ClipCrossEntropyLoss",
    "ClipDiceCELoss",
    "StackedLoss",
]
