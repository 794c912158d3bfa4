"""Robust intensity normalization with per-item percentages (several data sets in one training).

:class:`RobustNormalized` maps an image to ``[-1, 1]`` with the medians of its lowest ``i_min`` % and of
its highest ``i_max`` % of values (the ``i_min / 2`` and ``100 - i_max / 2`` percentiles): MONAI's
``ScaleIntensityRangePercentilesd(lower=i_min / 2, upper=100 - i_max / 2, b_min=-1, b_max=1, clip=False,
relative=False)``, with the same numbers (see :func:`robust_scale`), two differences:

* the percentages may come from the item itself (keys ``i_min`` / ``i_max``), so that clips of
  several data sets, each with its own preset, are normalized with their own values in one pipeline;
  the constructor's values are the fallback;
* both percentiles come from one ``np.percentile`` call (one partial sort), not from ``torch.quantile``
  (a full sort): several times faster on a 690 x 628 frame, which inference normalizes for every frame.

:class:`Normalization` is a bundle's ``normalization`` section as one checked value: the percentages and
the smoothing that training, validation and inference share.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from cosinetrack.errors import CosineTrackConfigError
from cosinetrack.options import check_option_names
from cosinetrack.transforms.intensity import SMOOTH_PADDINGS

__all__ = [
    "Normalization",
    "RobustNormalized",
    "UPPER_REFERENCES",
    "bright_foreground",
    "foreground_level",
    "robust_scale",
]

#: What maps to 1 (``normalization#upper``): the median of the highest ``i_max`` % (the paper's), or the median
#: of the frame's foreground (:func:`foreground_level`; ``i_max`` unused).
UPPER_REFERENCES = ("percentile", "foreground")

#: Foreground of :func:`foreground_level`: brighter than the median by more than this many robust standard
#: deviations (1.4826 MAD), the threshold of the classical pipeline (``benchmarks/bench_ctc_baseline.py``).
FOREGROUND_MADS = 4.0


def _percentage(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected a percentage in [0, 100) or null, got {value!r}")
    if not 0.0 <= float(value) < 100.0:
        raise ValueError(f"{name}: expected a percentage in [0, 100), got {value}")
    return float(value)


@dataclass(frozen=True)
class Normalization:
    """How a frame's intensities are normalized, the same in training, validation and inference.

    Attributes:
        i_min: percentage of the lowest values whose median maps to -1 (paper: 10 for LV-MRI; the CTC
            presets' own values for cells); ``None``: each item's own (a case of a data set with its own
            preset carries it, see :func:`~cosinetrack.apps.cell.read_ctc_cases`).
        i_max: percentage of the highest values whose median maps to 1; ``None`` as for ``i_min``.
        smooth_sigma: Gaussian smoothing (pixels) before the scaling; 0 for none.
        smooth_padding: what the smoothing takes beyond a frame's edge
            (:class:`~cosinetrack.transforms.SmoothFramesd`): ``"edge"`` (the border pixels repeated) or
            ``"zeros"`` (MONAI's ``GaussianSmooth``: edges of a frame with a bright background come out
            dark; what the cell models up to 0.3.0 were trained with).
        upper: what maps to 1: ``"percentile"`` (the median of the highest ``i_max`` %, the paper's) or
            ``"foreground"`` (the median of the frame's foreground, :func:`foreground_level`; ``i_max`` is
            then unused): a frame whose objects cover less than ``i_max`` % is not stretched to its background.
    """

    i_min: float | None = 10.0
    i_max: float | None = 10.0
    smooth_sigma: float = 0.0
    smooth_padding: str = "edge"
    upper: str = "percentile"

    def __post_init__(self) -> None:
        object.__setattr__(self, "i_min", _percentage("i_min", self.i_min))
        object.__setattr__(self, "i_max", _percentage("i_max", self.i_max))
        sigma = self.smooth_sigma
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.integer, np.floating)):
            raise ValueError(f"smooth_sigma: expected a number >= 0, got {sigma!r}")
        if not (math.isfinite(float(sigma)) and float(sigma) >= 0.0):
            raise ValueError(f"smooth_sigma: expected a finite number >= 0, got {sigma}")
        object.__setattr__(self, "smooth_sigma", float(sigma))
        if self.smooth_padding not in SMOOTH_PADDINGS:
            raise ValueError(f"smooth_padding: expected one of {SMOOTH_PADDINGS}, got {self.smooth_padding!r}")
        if self.upper not in UPPER_REFERENCES:
            raise ValueError(f"upper: expected one of {UPPER_REFERENCES}, got {self.upper!r}")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | None, section: str = "normalization") -> Normalization:
        """The section ``options`` (``{"i_min", "i_max", "smooth_sigma", "smooth_padding", "upper"}``, any subset) as a
        checked value.

        Raises:
            CosineTrackConfigError: an unknown (misspelt) name or a bad value, naming the section and key.
        """
        if isinstance(options, Normalization):
            return options
        values = check_option_names(section, options, cls.__dataclass_fields__)
        try:
            return cls(**values)
        except ValueError as e:
            raise CosineTrackConfigError(section, str(e)) from e

    def as_dict(self) -> dict[str, Any]:
        """``{"i_min", "i_max", "smooth_sigma", "smooth_padding", "upper"}``, e.g. as keywords of the transforms."""
        return asdict(self)



def bright_foreground(values: np.ndarray, mads: float = FOREGROUND_MADS) -> np.ndarray:
    """The bright foreground of an image (any shape): bool, where ``values > median + mads * 1.4826 * MAD``.

    The threshold of the classical pipeline (``benchmarks/bench_ctc_baseline.py``) and of
    :func:`foreground_level`; it does not change under a linear intensity change, so it gives the same mask
    on a raw frame and on its robustly normalized network input.
    """
    arr = np.asarray(values, dtype=np.float32)
    median = float(np.median(arr))
    mad = float(np.median(np.abs(arr - median)))
    return arr > median + mads * 1.4826 * mad


def foreground_level(values: np.ndarray, mads: float = FOREGROUND_MADS) -> float:
    """The median of the foreground of ``values`` (any shape): the values above ``median + mads * 1.4826 * MAD``.

    A level that does not depend on how much of the image the objects cover (a percentile does: the median
    of the highest 10 % of a frame whose nuclei cover 4 % is background). The image's maximum when nothing is
    above the threshold (a flat image).
    """
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    above = flat[bright_foreground(flat, mads)]
    return float(np.median(above)) if above.size else float(flat.max())


def _scale(
    x: torch.Tensor, lower: float, upper: float, b_min: float, b_max: float, upper_reference: str = "percentile"
) -> torch.Tensor:
    """One image (any shape, float32) scaled so that its ``lower`` / ``upper`` percentiles map to b_min / b_max
    (``upper_reference="foreground"``: its :func:`foreground_level` maps to b_max, ``upper`` unused)."""
    array = x.detach().cpu().numpy()
    if upper_reference == "foreground":
        values = np.array([np.percentile(array, lower), foreground_level(array)])
    else:
        values = np.percentile(array, [lower, upper])  # linear interpolation, as torch.quantile
    a_min, a_max = (torch.as_tensor(v, dtype=x.dtype, device=x.device) for v in values.astype(np.float32))
    if float(a_max - a_min) == 0.0:  # a flat image: shifted only, as MONAI's ScaleIntensityRange does
        return x - a_min + b_min
    return (x - a_min) / (a_max - a_min) * (b_max - b_min) + b_min


def robust_scale(
    image: Any,
    lower: float,
    upper: float,
    b_min: float = -1.0,
    b_max: float = 1.0,
    channel_wise: bool = False,
    upper_reference: str = "percentile",
) -> torch.Tensor:
    """``image`` (array or tensor, e.g. ``(C, H, W)``) linearly mapped so that its ``lower`` and ``upper``
    percentiles become ``b_min`` and ``b_max``; no clipping. Returns float32 ``torch.Tensor`` of the same shape.

    The numbers of MONAI's ``ScaleIntensityRangePercentiles(lower, upper, b_min, b_max, clip=False,
    relative=False, channel_wise=channel_wise)`` (a flat image is shifted so that its value becomes
    ``b_min``); ``channel_wise=True`` takes the percentiles of each leading index ``image[i]`` separately.
    ``upper_reference="foreground"`` maps the :func:`foreground_level` to ``b_max`` instead of the ``upper``
    percentile.
    """
    if not 0.0 <= lower <= upper <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= lower <= upper <= 100, got {lower}, {upper}")
    if upper_reference not in UPPER_REFERENCES:
        raise ValueError(f"upper_reference: expected one of {UPPER_REFERENCES}, got {upper_reference!r}")
    x = torch.as_tensor(image)
    x = x.as_subclass(torch.Tensor).to(torch.float32)  # a MetaTensor's metadata is not needed here
    if channel_wise:
        return torch.stack([_scale(c, lower, upper, b_min, b_max, upper_reference) for c in x])
    return _scale(x, lower, upper, b_min, b_max, upper_reference)


class RobustNormalized(MapTransform):
    """Map ``keys`` to ``[-1, 1]``: the medians of the lowest ``i_min`` % and highest ``i_max`` % go to -1 and 1.

    Per item, the percentages are ``data[i_min_key]`` / ``data[i_max_key]`` when the item has them (and
    they are not ``None``), else the constructor's ``i_min`` / ``i_max``; an item with neither is an
    error. Images keep their shape (``(L, H, W)`` clip, ``(Z, T, H, W)`` case, ``(C, H, W)`` frame) and
    become float32 tensors.

    Args:
        keys: image keys to normalize.
        i_min: percentage of the lowest values whose median maps to -1 (``None``: every item must carry it).
        i_max: percentage of the highest values whose median maps to 1 (``None``: every item must carry it).
        per_channel: normalize each leading index (``image[i]``) separately, e.g. each slice of a case.
        i_min_key, i_max_key: the item keys holding per-item percentages.
        allow_missing_keys: skip ``keys`` an item lacks.
        upper: what maps to 1 (:class:`Normalization`): ``"percentile"`` (``i_max``) or ``"foreground"``
            (:func:`foreground_level`; ``i_max`` unused).
    """

    def __init__(
        self,
        keys: KeysCollection,
        i_min: float | None = 10.0,
        i_max: float | None = 10.0,
        per_channel: bool = False,
        i_min_key: str = "i_min",
        i_max_key: str = "i_max",
        allow_missing_keys: bool = False,
        upper: str = "percentile",
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if upper not in UPPER_REFERENCES:
            raise ValueError(f"upper: expected one of {UPPER_REFERENCES}, got {upper!r}")
        self.upper = upper
        for name, value in (("i_min", i_min), ("i_max", i_max)):
            if value is not None and not 0.0 <= float(value) <= 100.0:
                raise ValueError(f"{name} must be a percentage in [0, 100] or None, got {value}")
        self.i_min = None if i_min is None else float(i_min)
        self.i_max = None if i_max is None else float(i_max)
        self.per_channel = bool(per_channel)
        self.i_min_key = i_min_key
        self.i_max_key = i_max_key

    def percentages(self, data: Mapping[Hashable, Any]) -> tuple[float, float]:
        """``(i_min, i_max)`` for this item: its own values, else the constructor's."""
        out = []
        for key, fallback in ((self.i_min_key, self.i_min), (self.i_max_key, self.i_max)):
            value = data.get(key)
            value = fallback if value is None else float(torch.as_tensor(value).reshape(-1)[0])
            if value is None:
                raise ValueError(f"RobustNormalized: the item has no {key!r} and the transform no default")
            out.append(float(value))
        return out[0], out[1]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        i_min, i_max = self.percentages(d)
        for key in self.key_iterator(d):
            d[key] = robust_scale(
                d[key], i_min / 2.0, 100.0 - i_max / 2.0, channel_wise=self.per_channel, upper_reference=self.upper
            )
        return d
