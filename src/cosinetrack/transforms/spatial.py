"""Scaling images to fit the network input size, and back (the paper: "we scale the input images to fit").

:func:`fit_to_size` keeps the aspect ratio: it scales by ``min(H_out / H, W_out / W)`` and pads the
rest symmetrically, and :func:`undo_fit` crops the padding and scales back to the original size.
Both work on ``(N, C, H, W)`` tensors; :class:`FitToSized` applies the same to channel-first
``(C, H, W)`` dictionary items for MONAI pipelines.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["PAD_MODES", "FitGeometry", "fit_geometry", "fit_to_size", "undo_fit", "FitToSized", "restore_label_size"]


PAD_MODES = {"zeros": "constant", "reflection": "reflect", "border": "replicate"}
"""The augmentation's (``grid_sample``) padding names and the :func:`torch.nn.functional.pad` mode of each."""


@dataclass(frozen=True)
class FitGeometry:
    """Where a ``(H, W)`` image lies inside the fitted ``out_size`` canvas (pixels)."""

    in_size: tuple[int, int]
    out_size: tuple[int, int]
    scaled_size: tuple[int, int]
    pad_top: int
    pad_left: int


def fit_geometry(in_size: Sequence[int], out_size: Sequence[int]) -> FitGeometry:
    """The scaling and padding that fit ``in_size`` into ``out_size`` keeping the aspect ratio."""
    h, w = (int(s) for s in in_size)
    oh, ow = (int(s) for s in out_size)
    scale = min(oh / h, ow / w)
    sh, sw = min(oh, max(1, round(h * scale))), min(ow, max(1, round(w * scale)))
    return FitGeometry((h, w), (oh, ow), (sh, sw), (oh - sh) // 2, (ow - sw) // 2)


def fit_to_size(
    x: torch.Tensor, out_size: Sequence[int], mode: str = "bilinear", padding_mode: str = "constant"
) -> tuple[torch.Tensor, FitGeometry]:
    """Scale ``x`` ``(N, C, H, W)`` to fit ``out_size`` and pad; returns the result and its geometry.

    ``mode`` is ``"bilinear"`` (images; antialiased when shrinking) or ``"nearest"`` (labels);
    ``padding_mode`` is a :func:`torch.nn.functional.pad` mode (``constant`` = zeros, ``reflect``,
    ``replicate``) or the augmentation's name for it (``zeros``, ``reflection``, ``border``), so that
    inference can pad exactly as training did.
    """
    padding_mode = PAD_MODES.get(padding_mode, padding_mode)
    if padding_mode not in ("constant", "reflect", "replicate", "circular"):
        raise ValueError(f"padding_mode: expected one of {sorted(PAD_MODES)} or a torch pad mode, got {padding_mode!r}")
    geo = fit_geometry(x.shape[-2:], out_size)
    if geo.scaled_size != geo.in_size:
        if mode == "nearest":
            x = F.interpolate(x, size=geo.scaled_size, mode="nearest-exact")
        else:
            shrink = geo.scaled_size[0] < geo.in_size[0]
            x = F.interpolate(x.float(), size=geo.scaled_size, mode=mode, align_corners=False, antialias=shrink)
    pad_bottom = geo.out_size[0] - geo.scaled_size[0] - geo.pad_top
    pad_right = geo.out_size[1] - geo.scaled_size[1] - geo.pad_left
    if pad_bottom or pad_right or geo.pad_top or geo.pad_left:
        pads = (geo.pad_left, pad_right, geo.pad_top, pad_bottom)
        if padding_mode == "constant":
            x = F.pad(x, pads)
        else:
            x = F.pad(x.float(), pads, mode=padding_mode).to(x.dtype)
    return x, geo


def undo_fit(x: torch.Tensor, geo: FitGeometry, mode: str = "bilinear") -> torch.Tensor:
    """Crop the padding off ``x`` ``(N, C, *out_size)`` and scale it back to ``geo.in_size``."""
    sh, sw = geo.scaled_size
    x = x[..., geo.pad_top : geo.pad_top + sh, geo.pad_left : geo.pad_left + sw]
    if geo.scaled_size != geo.in_size:
        if mode == "nearest":
            x = F.interpolate(x, size=geo.in_size, mode="nearest-exact")
        else:
            x = F.interpolate(x, size=geo.in_size, mode=mode, align_corners=False)
    return x


class FitToSized(MapTransform):
    """Dictionary transform: scale channel-first ``(C, H, W)`` items to fit ``spatial_size`` and pad.

    Args:
        keys: keys to transform.
        spatial_size: the network input size ``(H, W)`` in pixels.
        mode: one interpolation mode or one per key (``"bilinear"`` for images, ``"nearest"`` for labels).
        padding_mode: ``"constant"`` (zeros) or ``"reflect"``/``"replicate"`` (mirror padding).
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: Sequence[int],
        mode: str | Sequence[str] = "bilinear",
        padding_mode: str = "constant",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spatial_size = tuple(int(s) for s in spatial_size)
        self.modes = [mode] * len(self.keys) if isinstance(mode, str) else list(mode)
        self.padding_mode = padding_mode

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key, mode in zip(self.key_iterator(d), self.modes):
            value = d[key]
            tensor = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
            dtype = tensor.dtype
            out, _ = fit_to_size(tensor[None].float(), self.spatial_size, mode=mode, padding_mode=self.padding_mode)
            d[key] = out[0].to(dtype) if not dtype.is_floating_point else out[0]
        return d


def restore_label_size(labels: torch.Tensor | np.ndarray, size: Sequence[int]) -> torch.Tensor:
    """Labels ``(..., h, w)`` on a network canvas back to the original image size ``(H, W)``.

    The canvas is the one :func:`~cosinetrack.transforms.fit_to_size` makes of an ``(H, W)`` image
    (scaled keeping the aspect ratio, padded symmetrically); the padding is cropped and the labels are
    resampled with nearest-neighbor interpolation. Returns int32 ``(..., H, W)``.
    """
    lab = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    lead = lab.shape[:-2]
    flat = lab.reshape(-1, 1, *lab.shape[-2:]).float()
    geo = fit_geometry(size, lab.shape[-2:])
    out = undo_fit(flat, geo, mode="nearest")
    return out.round().to(torch.int32).reshape(*lead, *out.shape[-2:])
