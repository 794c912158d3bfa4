"""Soft Dice plus cross-entropy for clips with sparse labels (semantic tasks: LV-MRI).

Cross-entropy weighs every pixel alike, so a thin structure (the myocardium: a ring a few pixels wide)
contributes little next to the background; the soft Dice term (MONAI :class:`~monai.losses.DiceLoss`) weighs
each class by its own overlap. Pixels labeled ``ignore_index`` (unlabeled frames, padding from fitting or
augmentation) count in neither term: their probabilities and one-hot targets are zeroed before the Dice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import nn

from cosinetrack.labels import IGNORE_LABEL
from cosinetrack.losses.cross_entropy import ClipCrossEntropyLoss

__all__ = ["ClipDiceCELoss"]


class ClipDiceCELoss(nn.Module):
    """``lambda_dice * Dice + lambda_ce * cross-entropy`` over the labeled pixels of a clip.

    Args:
        lambda_dice: weight of the soft Dice loss (MONAI ``DiceLoss`` on softmax probabilities, one Dice per
            class over the whole batch, ``batch=True``, averaged over the classes).
        lambda_ce: weight of the cross-entropy (:class:`~cosinetrack.losses.ClipCrossEntropyLoss`).
        include_background: whether class 0 has a Dice term too.
        ignore_index: label of pixels without a label: no loss.

    Shapes:
        input: logits ``(B, T, K, H, W)`` (clips) or ``(B, K, H, W)`` (still images).
        target: class indices ``(B, T, H, W)`` or ``(B, H, W)``, values in ``[0, K)`` or ``ignore_index``.
        output: a scalar; ``0`` (with a gradient path) when no pixel is labeled.
    """

    def __init__(
        self,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        include_background: bool = False,
        ignore_index: int = IGNORE_LABEL,
    ) -> None:
        super().__init__()
        for name, value in (("lambda_dice", lambda_dice), ("lambda_ce", lambda_ce)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"ClipDiceCELoss: {name} must be a number >= 0, got {value!r}")
        if lambda_dice == 0 and lambda_ce == 0:
            raise ValueError("ClipDiceCELoss: lambda_dice and lambda_ce are both 0")
        self.lambda_dice = float(lambda_dice)
        self.lambda_ce = float(lambda_ce)
        self.include_background = bool(include_background)
        self.ignore_index = ignore_index
        self.ce = ClipCrossEntropyLoss(ignore_index)
        self.dice = DiceLoss(include_background=self.include_background, batch=True)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = input.flatten(0, 1) if input.ndim == 5 else input
        labels = target.flatten(0, 1) if input.ndim == 5 else target
        if labels.ndim == logits.ndim:
            labels = labels.squeeze(1)
        labels = labels.long()
        valid = labels != self.ignore_index
        k = logits.shape[1]
        if bool(valid.any()) and (int(labels[valid].max()) >= k or int(labels[valid].min()) < 0):
            raise ValueError(f"target classes must lie in [0, {k}) or be {self.ignore_index}")
        loss = self.lambda_ce * self.ce(input, target) if self.lambda_ce else input.sum() * 0.0
        if not self.lambda_dice or not bool(valid.any()):
            return loss
        mask = valid.unsqueeze(1).to(torch.float32)
        probs = torch.softmax(logits.float(), dim=1) * mask
        onehot = F.one_hot(torch.where(valid, labels, 0), k).movedim(-1, 1).to(torch.float32) * mask
        return loss + self.lambda_dice * self.dice(probs, onehot)
