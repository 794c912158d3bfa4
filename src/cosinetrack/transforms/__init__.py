"""Transforms MONAI lacks, and the paper's augmentation pipelines built from MONAI transforms."""

from cosinetrack.transforms.augment import clip_eval_transforms, clip_train_transforms, robust_normalization
from cosinetrack.transforms.intensity import RandImagingNoised
from cosinetrack.transforms.spatial import FitToSized, fit_geometry, fit_to_size, undo_fit

__all__ = [
    "FitToSized",
    "RandImagingNoised",
    "clip_eval_transforms",
    "clip_train_transforms",
    "fit_geometry",
    "fit_to_size",
    "robust_normalization",
    "undo_fit",
]
