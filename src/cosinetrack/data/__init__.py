"""Reading data: readers for each source format and deterministic synthetic generators, plus datasets.

* :mod:`cosinetrack.data.cine`: NIfTI cine MRI cases (2D+t, 3D, 3D+t) -> ``(Z, T, H, W)`` arrays.
* :mod:`cosinetrack.data.synthetic_cine`: the embedded synthetic cine-MRI data set.
* :mod:`cosinetrack.data.datasets`: training clips and whole validation cases; k-fold splits.
* :mod:`cosinetrack.data.cvppp`: the CVPPP leaf layout (RGBA images, palette label PNGs, counts csv).
* :mod:`cosinetrack.data.synthetic_leaves`: the embedded synthetic rosette data set (CVPPP layout).
"""

from cosinetrack.data.cine import (
    IGNORE_LABEL,
    find_msd_cases,
    load_datalist,
    read_cine_case,
    resolve_cases,
)
from cosinetrack.data.datasets import CineCaseDataset, CineClipDataset, read_cases, split_cases

__all__ = [
    "IGNORE_LABEL",
    "CineCaseDataset",
    "CineClipDataset",
    "find_msd_cases",
    "load_datalist",
    "read_cases",
    "read_cine_case",
    "resolve_cases",
    "split_cases",
]
