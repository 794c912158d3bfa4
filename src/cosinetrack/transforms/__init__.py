"""Transforms MONAI lacks, and the paper's augmentation pipelines built from MONAI transforms."""

from cosinetrack.transforms.augment import (
    check_augmentation,
    clip_eval_transforms,
    clip_train_transforms,
    noise_strengths,
    robust_normalization,
)
from cosinetrack.transforms.intensity import (
    SMOOTH_PADDINGS,
    RandBackgroundTextured,
    RandGlowd,
    RandImagingNoised,
    RandInstanceContrastd,
    SmoothFramesd,
)
from cosinetrack.transforms.normalize import Normalization, RobustNormalized, bright_foreground, robust_scale
from cosinetrack.transforms.spatial import (
    PAD_MODES,
    FitGeometry,
    FitToSized,
    fit_geometry,
    fit_to_size,
    restore_label_size,
    undo_fit,
)

__all__ = [
    "SMOOTH_PADDINGS",
    "RandImagingNoised",
    "RandBackgroundTextured",
    "RandGlowd",
    "RandInstanceContrastd",
    "SmoothFramesd",
    "Normalization",
    "RobustNormalized",
    "bright_foreground",
    "robust_scale",
    "PAD_MODES",
    "FitGeometry",
    "fit_geometry",
    "fit_to_size",
    "undo_fit",
    "FitToSized",
    "restore_label_size",
    "robust_normalization",
    "clip_train_transforms",
    "clip_eval_transforms",
    "check_augmentation",
    "noise_strengths",
]
