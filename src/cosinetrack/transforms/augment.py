"""The paper's preprocessing and augmentation (appendix 2), built from MONAI dictionary transforms.

Items are channel-first with frames as channels (``image`` ``(L, H, W)``, ``label`` ``(L, H, W)``), so
one random draw of each transform moves every frame of a clip the same way.

* **Intensity** (:func:`robust_normalization`): map to ``[-1, 1]`` with a robust minimum and maximum,
  the median of the lowest ``i_min`` % and of the highest ``i_max`` % of the values, which are the
  ``i_min / 2`` and ``100 - i_max / 2`` percentiles. Then (training) shift by ``U(-i_shift, i_shift)``
  and scale by ``U(1 - i_scale, 1 + i_scale)``.
* **Spatial** (:func:`clip_train_transforms`): scale to fit ``image_size`` (optionally then a random
  ``crop_size`` crop of it, or ``fit="crop"``: a random ``image_size`` crop at native resolution); flip each axis with
  probability ``flip_prob``; one resampling that rotates by ``U(-rotate_deg, rotate_deg)``, scales by
  ``U(1 - scale, 1 + scale)``, translates by ``U(-translate, translate)`` px and deforms elastically
  (control points every ``elastic_spacing`` px moved by ``elastic_magnitude`` px). MONAI draws the
  control-point offsets from a normal distribution scaled by ``U(0, elastic_magnitude / 2)``, so about
  95 % of the offsets stay within ``elastic_magnitude``; the paper moves them uniformly by up to ``b``.
* Pixels outside the original image (fit padding and augmentation padding) get label ``-1`` = no loss;
  ``padding_mode`` decides only what the *image* shows there (``"zeros"``: LV-MRI, ``"reflection"``:
  the mirror padding of the leaf and cell tasks).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

from monai.transforms import (
    Compose,
    EnsureTyped,
    Rand2DElasticd,
    RandAdjustContrastd,
    RandFlipd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSpatialCropd,
    ShiftIntensityd,
    SpatialPadd,
)

from cosinetrack.errors import CosineTrackConfigError
from cosinetrack.options import check_option_names
from cosinetrack.transforms.intensity import (
    RandBackgroundTextured,
    RandGlowd,
    RandImagingNoised,
    RandInstanceContrastd,
    SmoothFramesd,
)
from cosinetrack.transforms.normalize import RobustNormalized
from cosinetrack.transforms.spatial import PAD_MODES, FitToSized

__all__ = [
    "robust_normalization",
    "clip_train_transforms",
    "clip_eval_transforms",
    "check_augmentation",
    "noise_strengths",
]

_TORCH_PAD = PAD_MODES
_NUMPY_PAD = {"zeros": "constant", "reflection": "reflect", "border": "edge"}


def robust_normalization(
    i_min: float | None = 10.0,
    i_max: float | None = 10.0,
    key: str = "image",
    per_channel: bool = False,
    upper: str = "percentile",
) -> RobustNormalized:
    """Map intensities to ``[-1, 1]`` using the medians of the lowest ``i_min`` % / highest ``i_max`` %.

    ``per_channel=True`` normalizes each leading index separately (one slice of a ``(Z, T, H, W)`` case).
    An item carrying its own ``i_min`` / ``i_max`` (a case of a data set with its own preset, see
    :func:`~cosinetrack.apps.cell.read_ctc_cases`) is normalized with those; ``None`` here means every item must
    carry them. The numbers are MONAI ``ScaleIntensityRangePercentilesd``'s (lower ``i_min / 2``, upper
    ``100 - i_max / 2``, to -1 / 1, no clipping), computed with one partial sort
    (:class:`~cosinetrack.transforms.normalize.RobustNormalized`). ``upper="foreground"`` maps the median of
    the foreground to 1 instead (:func:`~cosinetrack.transforms.normalize.foreground_level`; ``i_max`` unused).
    """
    return RobustNormalized(keys=key, i_min=i_min, i_max=i_max, per_channel=per_channel, upper=upper)


def clip_train_transforms(
    image_size: Sequence[int] = (256, 256),
    i_min: float | None = 10.0,
    i_max: float | None = 10.0,
    i_shift: float = 0.25,
    i_scale: float = 0.25,
    translate: float = 20.0,
    flip_prob: float = 0.0,
    rotate_deg: float = 15.0,
    scale: float = 0.25,
    elastic_magnitude: float = 8.0,
    elastic_spacing: float = 32.0,
    padding_mode: str = "zeros",
    augment: bool = True,
    smooth_sigma: float = 0.0,
    smooth_padding: str = "edge",
    upper: str = "percentile",
    fit: str = "scale",
    crop_size: Sequence[int] | None = None,
    noise_std: float | Mapping[str, float] = 0.0,
    noise_prob: float = 0.5,
    gamma: float = 0.0,
    instance_dim_prob: float = 0.0,
    instance_dim_min: float = 0.2,
    glow_prob: float = 0.0,
    glow_amount: float = 1.0,
    glow_sigma: float = 12.0,
    texture_prob: float = 0.0,
    texture_amount: float = 0.05,
    texture_sigma: float = 10.0,
) -> Compose:
    """The training pipeline for one clip dict ``{"image": (L, H, W), "label": (L, H, W)}``.

    Defaults are the paper's LV-MRI settings; ``augment=False`` keeps only normalization and fitting.
    ``i_min`` / ``i_max`` are the fallback of items that carry no ``i_min`` / ``i_max`` of their own
    (:func:`robust_normalization`; ``None``: every item must carry them).
    ``smooth_sigma`` > 0 smooths every frame with a Gaussian of that many pixels first (the paper's cell
    setting: 2 px), as :func:`clip_eval_transforms` does at inference; ``smooth_padding`` is what lies beyond a
    frame's edge for it (:class:`~cosinetrack.transforms.SmoothFramesd`: ``"edge"``, or ``"zeros"`` as models
    trained before it existed saw). ``upper``: what the normalization maps to 1
    (:class:`~cosinetrack.transforms.Normalization`). ``fit="scale"`` (the paper) scales
    the clip to fit ``image_size``; ``fit="crop"`` keeps the native resolution and takes a random
    ``image_size`` crop (mirror-padded when the frames are smaller), for networks that run in tiles at
    full resolution (:class:`~cosinetrack.inference.TiledPairSegmenter`). ``crop_size`` with ``fit="scale"``
    trains on random ``crop_size`` crops of the ``image_size`` canvas (objects at the canvas' scale for the
    cost of the crop; inference runs on the whole canvas).

    Beyond the paper (all off by default): ``gamma`` > 0 applies a random gamma ``exp(U(-gamma, gamma))``
    to the raw clip (dim nuclei brighter or darker relative to bright ones), and ``noise_std`` > 0 adds
    noise of up to that fraction of the clip's contrast with probability ``noise_prob``
    (:class:`~cosinetrack.transforms.intensity.RandImagingNoised`), both before the smoothing and the
    normalization, as real differences between videos arrive. ``noise_std`` may also be a mapping
    ``{data set name: strength}`` (training on several data sets, noise on some only): the items then carry
    their own strength (``noise_std``, put into each case by the data set's reader, e.g.
    :func:`~cosinetrack.apps.cell.read_ctc_cases`; an item without one gets none). ``instance_dim_prob`` > 0
    dims each labelled instance with that probability, its contrast to the background multiplied by
    ``U(instance_dim_min, 1)`` (:class:`~cosinetrack.transforms.intensity.RandInstanceContrastd`; after the gamma,
    before the noise): nuclei of one frame as unevenly bright as another video's. It needs labels that cover
    whole cells (a marker-only label dims a disc inside its nucleus). ``glow_prob`` > 0 gives a clip, with that
    probability, a dim out-of-focus halo around its bright objects (:class:`~cosinetrack.transforms.RandGlowd`:
    a Gaussian blur of about ``glow_sigma`` raw-frame px added with a weight up to ``glow_amount``; after the
    dimming, before the noise); the halo stays background. ``texture_prob`` > 0 adds, with that probability, a
    smooth random background texture to a clip (:class:`~cosinetrack.transforms.RandBackgroundTextured`: blobs of
    about ``texture_sigma`` raw-frame px, up to ``texture_amount`` of the clip's contrast; after the glow, before
    the noise); it stays background too.
    """
    if fit not in ("scale", "crop"):
        raise ValueError(f"fit must be 'scale' or 'crop', got {fit!r}")
    keys = ("image", "label")
    size = tuple(int(s) for s in image_size)
    if crop_size is not None:
        crop = tuple(int(s) for s in crop_size)
        if fit != "scale" or len(crop) != 2 or not all(0 < c <= s for c, s in zip(crop, size)):
            raise ValueError(f"crop_size must be (h, w) within image_size {size} and fit 'scale', got {crop_size!r}")
    transforms = [
        EnsureTyped(keys=keys, track_meta=False),
        *(
            _raw_intensity(
                gamma,
                noise_std,
                noise_prob,
                instance_dim_prob,
                instance_dim_min,
                glow_prob,
                glow_amount,
                glow_sigma,
                texture_prob,
                texture_amount,
                texture_sigma,
            )
            if augment
            else []
        ),
        *_smoothing(smooth_sigma, smooth_padding),
        robust_normalization(i_min, i_max, upper=upper),
        ShiftIntensityd(keys="label", offset=1),  # label -1 (no loss) becomes 0, so padding means "no loss"
    ]
    if fit == "scale":
        pad = _TORCH_PAD[padding_mode]
        transforms.append(FitToSized(keys=keys, spatial_size=size, mode=("bilinear", "nearest"), padding_mode=pad))
        if crop_size is not None:
            size = crop
            transforms.append(RandSpatialCropd(keys=keys, roi_size=size, random_size=False))
    else:
        transforms += [
            SpatialPadd(keys=keys, spatial_size=size, mode=(_NUMPY_PAD[padding_mode], "constant")),
            RandSpatialCropd(keys=keys, roi_size=size, random_size=False),
        ]
    if augment:
        transforms += [
            RandShiftIntensityd(keys="image", offsets=i_shift, prob=1.0),
            RandScaleIntensityd(keys="image", factors=i_scale, prob=1.0),
        ]
        if flip_prob > 0:
            transforms += [RandFlipd(keys=keys, prob=flip_prob, spatial_axis=axis) for axis in (0, 1)]
        transforms.append(
            Rand2DElasticd(
                keys=keys,
                spacing=(elastic_spacing, elastic_spacing),
                magnitude_range=(0.0, elastic_magnitude / 2.0),
                prob=1.0,
                rotate_range=(math.radians(rotate_deg),),
                scale_range=(scale, scale),
                translate_range=(translate, translate),
                spatial_size=size,
                mode=("bilinear", "nearest"),
                padding_mode=(padding_mode, "zeros"),
            )
        )
    transforms += [
        ShiftIntensityd(keys="label", offset=-1),
        EnsureTyped(keys="image", dtype="float32", track_meta=False),
        EnsureTyped(keys="label", dtype="int64", track_meta=False),
    ]
    return Compose(transforms)


def noise_strengths(noise_std: float | Mapping[str, float] | None) -> dict[str, float] | None:
    """``augmentation#noise_std`` given per data set (``{name: strength}``), checked; ``None`` for one number.

    Raises:
        ValueError: a strength that is not a finite number ``>= 0`` (naming its data set).
    """
    if not isinstance(noise_std, Mapping):
        return None
    out = {}
    for name, value in noise_std.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < math.inf:
            raise ValueError(f"noise_std[{name!r}]: expected a number >= 0, got {value!r}")
        out[str(name)] = float(value)
    return out


def _raw_intensity(
    gamma: float,
    noise_std: float | Mapping[str, float],
    noise_prob: float,
    instance_dim_prob: float = 0.0,
    instance_dim_min: float = 0.2,
    glow_prob: float = 0.0,
    glow_amount: float = 1.0,
    glow_sigma: float = 12.0,
    texture_prob: float = 0.0,
    texture_amount: float = 0.05,
    texture_sigma: float = 10.0,
) -> list:
    """Random gamma, dimmed instances, glow, texture and imaging noise on the raw clip (nothing when all are off)."""
    if isinstance(instance_dim_min, bool) or not 0.0 <= float(instance_dim_min) <= 1.0:
        raise ValueError(f"instance_dim_min: expected a contrast factor in [0, 1], got {instance_dim_min!r}")
    out = []
    if gamma and gamma > 0:
        out.append(RandAdjustContrastd(keys="image", prob=1.0, gamma=(math.exp(-gamma), math.exp(gamma))))
    if instance_dim_prob and instance_dim_prob > 0:
        out.append(RandInstanceContrastd(keys="image", prob=instance_dim_prob, min_factor=instance_dim_min))
    if glow_prob and glow_prob > 0:
        out.append(RandGlowd(keys="image", prob=glow_prob, max_amount=glow_amount, sigma=glow_sigma))
    if texture_prob and texture_prob > 0:
        out.append(
            RandBackgroundTextured(keys="image", prob=texture_prob, max_amount=texture_amount, sigma=texture_sigma)
        )
    per_data_set = noise_strengths(noise_std)
    if per_data_set is not None:  # each item must carry its data set's strength (0: no noise)
        if any(v > 0 for v in per_data_set.values()):
            out.append(RandImagingNoised(keys="image", prob=noise_prob, max_std=None, max_std_key="noise_std"))
    elif noise_std and noise_std > 0:
        out.append(RandImagingNoised(keys="image", prob=noise_prob, max_std=noise_std, max_std_key=None))
    return out


def _smoothing(sigma: float, padding: str) -> list:
    """Gaussian smoothing of every channel (frame) over the spatial axes (:class:`SmoothFramesd`, ``padding``
    beyond the edges), or nothing for ``sigma <= 0``."""
    return [SmoothFramesd(keys="image", sigma=float(sigma), padding=padding)] if sigma and sigma > 0 else []


def clip_eval_transforms(
    i_min: float = 10.0,
    i_max: float = 10.0,
    per_channel: bool = True,
    smooth_sigma: float = 0.0,
    smooth_padding: str = "edge",
    upper: str = "percentile",
) -> Compose:
    """Evaluation pipeline for a whole case ``{"image": (Z, T, H, W), ...}``: per-slice normalization only.

    ``per_channel=False`` normalizes the whole item at once, as training does for a clip or for the
    three color channels of a still image ``(3, H, W)``. ``smooth_sigma``, ``smooth_padding`` and ``upper`` as in
    training. Fitting to the network size happens in the inferer, which also scales predictions back.
    """
    return Compose(
        [
            EnsureTyped(keys=("image", "label"), track_meta=False, allow_missing_keys=True),
            *_smoothing(smooth_sigma, smooth_padding),
            robust_normalization(i_min, i_max, per_channel=per_channel, upper=upper),
            EnsureTyped(keys="image", dtype="float32", track_meta=False),
        ]
    )


def check_augmentation(options: Mapping[str, Any] | None, section: str = "augmentation") -> dict[str, Any]:
    """Check a bundle's ``augmentation`` section when the config is parsed; return it as a dict.

    It holds options of :func:`clip_train_transforms` other than the image size and the intensity
    normalization, which has a section of its own (``normalization``, shared by training, validation and
    inference): ``--augmentation#i_min 5`` stops with ``augmentation#i_min: moved to normalization#i_min``
    instead of reaching training only.

    Raises:
        CosineTrackConfigError: a moved, unknown or misspelt name (with the allowed ones), or a per-data-set
            ``noise_std`` strength that is not a number ``>= 0``.
    """
    for key in options or {}:
        if key in _NORMALIZATION_KEYS:
            raise CosineTrackConfigError(
                f"{section}#{key}", f"moved to normalization#{key}; set --normalization#{key} instead"
            )
    checked = check_option_names(section, options, _AUGMENTATION_KEYS)
    try:
        noise_strengths(checked.get("noise_std"))
    except ValueError as e:
        raise CosineTrackConfigError(f"{section}#noise_std", str(e)) from e
    return checked


_NORMALIZATION_KEYS = ("i_min", "i_max", "smooth_sigma", "smooth_padding")
#: the names an ``augmentation`` section may hold: clip_train_transforms' options but the size and normalization
_AUGMENTATION_KEYS = tuple(
    n for n in inspect.signature(clip_train_transforms).parameters if n not in ("image_size", *_NORMALIZATION_KEYS)
)
