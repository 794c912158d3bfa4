"""Cine cases as PyTorch datasets: training clips and whole cases for validation."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from cosinetrack.apps.lv_mri.nifti import read_cine_case
from cosinetrack.data.clips import ClipDataset

__all__ = ["read_cases", "CineClipDataset", "CineCaseDataset"]


logger = logging.getLogger(__name__)


def read_cases(
    cases: Sequence[Mapping[str, Any]], file_layout: str = "auto", label_map: Mapping[Any, Any] | None = None
) -> list[dict[str, Any]]:
    """Read every case once: ``[{"name", "image": (Z,T,H,W), "label": (Z,T,H,W)}]``."""
    out = []
    for case in cases:
        image, label = read_cine_case(case, file_layout=file_layout, label_map=label_map)
        out.append({"name": case.get("name", str(case["image"][0])), "image": image, "label": label})
    return out


class CineClipDataset(ClipDataset):
    """:class:`~cosinetrack.data.ClipDataset` of cine cases, read first where they are file entries.

    Args:
        cases: case dicts (see :mod:`cosinetrack.apps.lv_mri.nifti`) or cases already read by :func:`read_cases`.
        clip_length, transform, case_keys: as :class:`~cosinetrack.data.ClipDataset`.
        file_layout, label_map: passed to :func:`~cosinetrack.apps.lv_mri.nifti.read_cine_case`.
    """

    def __init__(
        self,
        cases: Sequence[Mapping[str, Any]],
        clip_length: int = 10,
        transform: Callable | None = None,
        file_layout: str = "auto",
        label_map: Mapping[Any, Any] | None = None,
        case_keys: Sequence[str] = ("i_min", "i_max"),
    ) -> None:
        if not all(isinstance(c.get("image"), np.ndarray) for c in cases):
            cases = read_cases(cases, file_layout=file_layout, label_map=label_map)
        super().__init__(cases, clip_length=clip_length, transform=transform, case_keys=case_keys)


class CineCaseDataset(torch.utils.data.Dataset):
    """Whole cases, one item each, for validation and evaluation (all slices, all frames).

    Args: as :class:`CineClipDataset`, without ``clip_length``.
    """

    def __init__(
        self,
        cases: Sequence[Mapping[str, Any]],
        transform: Callable | None = None,
        file_layout: str = "auto",
        label_map: Mapping[Any, Any] | None = None,
    ) -> None:
        self.cases = read_cases(cases, file_layout=file_layout, label_map=label_map)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, i: int) -> dict[str, Any]:
        case = self.cases[i]
        item = {"image": case["image"], "label": case["label"], "name": case["name"]}
        return self.transform(item) if self.transform is not None else item
