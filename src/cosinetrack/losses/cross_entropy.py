"""Softmax cross-entropy for clips with sparse labels, summed over the outputs of all hourglass stacks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cosinetrack.labels import IGNORE_LABEL

__all__ = ["ClipCrossEntropyLoss"]


class ClipCrossEntropyLoss(nn.Module):
    """Mean softmax cross-entropy over labeled pixels of a clip.

    Args:
        ignore_index: label value of pixels without a label (unlabeled frames, padding): no loss.

    Shapes:
        input: logits ``(B, T, K, H, W)`` (clips) or ``(B, K, H, W)`` (still images).
        target: class indices ``(B, T, H, W)`` or ``(B, H, W)`` (a singleton channel ``(B, T, 1, H, W)``
        is accepted too), values in ``[0, K)`` or ``ignore_index``.
        output: a scalar; ``0`` (with a gradient path) when no pixel is labeled.
    """

    def __init__(self, ignore_index: int = IGNORE_LABEL) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.ndim == 5:
            input = input.flatten(0, 1)
            target = target.flatten(0, 1)
        if target.ndim == input.ndim:
            target = target.squeeze(1)
        if target.shape != input.shape[:1] + input.shape[2:]:
            raise ValueError(f"target shape {tuple(target.shape)} does not fit logits {tuple(input.shape)}")
        target = target.long()
        valid = target != self.ignore_index
        if not bool(valid.any()):
            return input.sum() * 0.0
        loss = F.cross_entropy(input.float(), target, ignore_index=self.ignore_index, reduction="sum")
        return loss / valid.sum()
