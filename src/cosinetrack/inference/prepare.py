"""Turn collated dataset batches into network inputs ``(B, T, C, H, W)`` and targets.

Datasets keep frames as channels (``(B, L, H, W)`` for clips, ``(1, Z, T, H, W)`` for whole cases); the
network wants a separate time axis and a channel axis. These callables are MONAI ``PrepareBatch``
objects, usable as ``prepare_batch`` of ``SupervisedTrainer``/``SupervisedEvaluator``.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.engines.utils import PrepareBatch

__all__ = ["PrepareClipBatch", "PrepareCaseBatch"]


class PrepareClipBatch(PrepareBatch):
    """Clips: ``image`` ``(B, L, H, W)`` -> ``(B, L, C=1, H, W)``; ``label`` ``(B, L, H, W)`` int64.

    Args:
        in_channels: image channels per frame; frames-as-channels ``L*C`` are split into ``(L, C)``.
    """

    def __init__(self, in_channels: int = 1) -> None:
        self.in_channels = in_channels

    def __call__(
        self, batchdata: dict[str, torch.Tensor], device: str | torch.device | None = None,
        non_blocking: bool = False, **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.as_tensor(batchdata["image"])
        b, lc, h, w = image.shape
        image = image.reshape(b, lc // self.in_channels, self.in_channels, h, w)
        label = torch.as_tensor(batchdata["label"]).long()
        return (
            image.to(device=device, dtype=torch.float32, non_blocking=non_blocking),
            label.to(device=device, non_blocking=non_blocking),
        )


class PrepareCaseBatch(PrepareBatch):
    """Whole cases, one per batch: ``image`` ``(1, Z, T, H, W)`` -> ``(Z, T, 1, H, W)``; ``label`` ``(Z, T, H, W)``.

    The slices of the case form the network batch; the frames are streamed in time.
    """

    def __call__(
        self, batchdata: dict[str, torch.Tensor], device: str | torch.device | None = None,
        non_blocking: bool = False, **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        image = torch.as_tensor(batchdata["image"])
        if image.ndim != 5 or image.shape[0] != 1:
            raise ValueError(f"expected one case per batch, image (1, Z, T, H, W); got {tuple(image.shape)}")
        image = image[0].unsqueeze(2).to(device=device, dtype=torch.float32, non_blocking=non_blocking)
        label = batchdata.get("label")
        if label is not None:
            label = torch.as_tensor(label)[0].long().to(device=device, non_blocking=non_blocking)
        return image, label
