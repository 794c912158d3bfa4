"""Task-agnostic data pieces: training clips of read videos, splits, and what the synthetic generators share.

* :mod:`cosinetrack.data.clips`: :class:`ClipDataset`, clips of consecutive frames, frames as channels.
* :mod:`cosinetrack.data.splits`: k-fold splits of cases, frame slices, consecutive runs, case names.
* :mod:`cosinetrack.data.generated`: the cache, temporary folder and CLI of the synthetic data sets.
* :mod:`cosinetrack.data.shapes`: signed distances and partial-volume coverage for drawing them.

Readers, writers, synthetic generators and datasets of one task live in its wing (``cosinetrack.apps``).
"""

from cosinetrack.data.clips import ClipDataset
from cosinetrack.data.generated import (
    case_seed,
    check_image_size,
    default_cache_dir,
    ensure_generated_dataset,
    generator_main,
    generator_params,
    is_generated_by,
    move_generated_into_place,
    read_dataset_json,
    same_generator_params,
    write_generated_dataset,
)
from cosinetrack.data.shapes import ellipse_signed_distance, soft_coverage
from cosinetrack.data.splits import case_names, consecutive_runs, split_cases

__all__ = [
    "case_names",
    "split_cases",
    "consecutive_runs",
    "ClipDataset",
    "read_dataset_json",
    "is_generated_by",
    "same_generator_params",
    "generator_params",
    "check_image_size",
    "move_generated_into_place",
    "write_generated_dataset",
    "ensure_generated_dataset",
    "generator_main",
    "case_seed",
    "default_cache_dir",
    "ellipse_signed_distance",
    "soft_coverage",
]
