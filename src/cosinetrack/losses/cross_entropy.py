"""Softmax cross-entropy for clips with sparse labels, summed over the outputs of all hourglass stacks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cosinetrack.labels import IGNORE_LABEL

__all__ = ["ClipCrossEntropyLoss", "StackedLoss"]


class ClipCrossEntropyLoss(nn.Module):
    """Mean softmax cross-entropy over labelled pixels of a clip.

    Args:
        ignore_index: label value of pixels without a label (unlabelled frames, padding): no loss.

    Shapes:
        input: logits ``(B, T, K, H, W)`` (clips) or ``(B, K, H, W)`` (still images).
        target: class indices ``(B, T, H, W)`` or ``(B, H, W)`` (a singleton channel ``(B, T, 1, H, W)``
        is accepted too), values in ``[0, K)`` or ``ignore_index``.
        output: a scalar; ``0`` (with a gradient path) when no pixel is labelled.
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


class StackedLoss(nn.Module):
    """Apply one loss to every stack's output and sum (the paper applies the loss to both hourglasses).

    Args:
        loss: the loss for one output, called as ``loss(output, target)``.
        weights: one weight per stack (default: 1 each).

    Shapes: ``input`` is a tuple/list of outputs (one per stack) or one tensor; ``target`` as ``loss`` wants.
    """

    def __init__(self, loss: nn.Module, weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.loss = loss
        self.weights = None if weights is None else [float(w) for w in weights]

    def forward(self, input: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        outputs = [input] if isinstance(input, torch.Tensor) else list(input)
        weights = self.weights or [1.0] * len(outputs)
        if len(weights) != len(outputs):
            raise ValueError(f"{len(weights)} weights for {len(outputs)} stack outputs")
        return sum(w * self.loss(out, target) for w, out in zip(weights, outputs))
