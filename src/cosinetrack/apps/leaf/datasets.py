"""Plant photographs and their leaf labels as a PyTorch dataset."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from cosinetrack.apps.leaf.cvppp import read_cvppp_plant
from cosinetrack.labels import IGNORE_LABEL

__all__ = ["CVPPPDataset"]


logger = logging.getLogger(__name__)


class CVPPPDataset(torch.utils.data.Dataset):
    """Plant photographs and their leaf labels (CVPPP layout), read once into memory.

    Items are ``{"image": (3, H, W) float32 RGB in [0, 1], "label": (1, H, W) int64, "name": str}``,
    passed through ``transform`` (e.g. :func:`~cosinetrack.transforms.clip_train_transforms` with the
    three color channels in place of frames). A plant without a label file gets label ``-1``
    everywhere (no loss, no score).

    Args:
        plants: entries of :func:`~cosinetrack.apps.leaf.find_cvppp_plants` (``name``, ``image``, ``label``).
        transform: a MONAI (dictionary) transform applied to each item.
    """

    def __init__(self, plants: Sequence[Mapping[str, Any]], transform: Callable | None = None) -> None:
        self.items = []
        for plant in plants:
            image, label = read_cvppp_plant(dict(plant))
            if label is None:
                label = np.full(image.shape[1:], IGNORE_LABEL, dtype=np.int64)
            self.items.append({"name": plant["name"], "image": image, "label": label[None]})
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = dict(self.items[i])
        return self.transform(item) if self.transform is not None else item
