"""A loss on every stack of a stacked network's output."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["StackedLoss"]


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
