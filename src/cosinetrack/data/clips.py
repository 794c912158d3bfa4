"""Training clips of already read videos, frames as channels (one random draw moves a whole clip)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from cosinetrack.labels import IGNORE_LABEL

__all__ = ["ClipDataset"]


logger = logging.getLogger(__name__)


class ClipDataset(torch.utils.data.Dataset):
    """Clips of ``clip_length`` consecutive frames of one slice, for training.

    Every (case, slice, start frame) whose clip holds at least one labeled frame is one item. A
    sequence shorter than ``clip_length`` gives one clip of its full length (so keep ``batch_size`` 1
    then, as the paper does for recurrent training). With ``clip_length=1`` only labeled frames are
    items: this is the non-recurrent setting.

    Args:
        cases: read cases ``{"name", "image": (Z, T, H, W), "label": (Z, T, H, W)}`` (``-1`` = no label), e.g.
            from :func:`~cosinetrack.apps.lv_mri.read_cases` or :func:`~cosinetrack.apps.cell.read_ctc_cases`.
        clip_length: frames per clip (paper: 10 for recurrent networks, 1 for non-recurrent ones).
        transform: a MONAI (dictionary) transform applied to each item.
        case_keys: per-case values copied into each of the case's items when the (already read) case
            has them, e.g. the normalization percentages ``i_min`` / ``i_max`` and the imaging-noise strength
            ``noise_std`` of :func:`read_ctc_cases`.
    """

    def __init__(
        self,
        cases: Sequence[Mapping[str, Any]],
        clip_length: int = 10,
        transform: Callable | None = None,
        case_keys: Sequence[str] = ("i_min", "i_max", "noise_std"),
    ) -> None:
        if clip_length < 1:
            raise ValueError(f"clip_length must be >= 1, got {clip_length}")
        self.case_keys = tuple(case_keys)
        unread = [str(c.get("name", c.get("image"))) for c in cases if not isinstance(c.get("image"), np.ndarray)]
        if unread:
            raise ValueError(f"ClipDataset takes read cases (image and label arrays); not read: {unread[:3]}")
        self.cases = list(cases)
        self.clip_length = clip_length
        self.transform = transform
        self.index: list[tuple[int, int, int, int]] = []
        for k, case in enumerate(self.cases):
            label = case["label"]
            num_slices, num_frames = label.shape[:2]
            length = min(clip_length, num_frames)
            labeled = (label != IGNORE_LABEL).reshape(num_slices, num_frames, -1).any(-1)
            for z in range(num_slices):
                for t0 in range(num_frames - length + 1):
                    if labeled[z, t0 : t0 + length].any():
                        self.index.append((k, z, t0, length))
        if not self.index:
            raise ValueError("no clip with a labeled frame: check that the data set has label files")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        k, z, t0, length = self.index[i]
        case = self.cases[k]
        item = {
            "image": np.ascontiguousarray(case["image"][z, t0 : t0 + length]),
            "label": np.ascontiguousarray(case["label"][z, t0 : t0 + length]),
            "name": case["name"],
            "slice": z,
            "start": t0,
            **{key: case[key] for key in self.case_keys if key in case},
        }
        return self.transform(item) if self.transform is not None else item
