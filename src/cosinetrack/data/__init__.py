"""Reading data: readers for each source format and deterministic synthetic generators, plus datasets.

* :mod:`cosinetrack.data.cine`: NIfTI cine MRI cases (2D+t, 3D, 3D+t) -> ``(Z, T, H, W)`` arrays.
* :mod:`cosinetrack.data.synthetic_cine`: the embedded synthetic cine-MRI data set.
* :mod:`cosinetrack.data.datasets`: training clips and whole validation cases; k-fold splits.
* :mod:`cosinetrack.data.cvppp`: the CVPPP leaf layout (RGBA images, palette label PNGs, counts csv).
* :mod:`cosinetrack.data.synthetic_leaves`: the embedded synthetic rosette data set (CVPPP layout).
* :mod:`cosinetrack.data.ctc`: the Cell Tracking Challenge layout (TIFF frames, SEG/TRA ground truth merged
  into one label video with consistent ids, ``man_track.txt``).
* :mod:`cosinetrack.data.synthetic_cells`: the embedded synthetic cell videos (CTC layout, divisions).
* :mod:`cosinetrack.data.generated`: bookkeeping shared by the synthetic generators (cache, CLI).
"""

from cosinetrack.data.cine import (
    IGNORE_LABEL,
    find_msd_cases,
    load_datalist,
    read_cine_case,
    resolve_cases,
)
from cosinetrack.data.ctc import (
    check_ctc_frames,
    find_ctc_sequences,
    iter_ctc_frames,
    iter_ctc_training_frames,
    merge_seg_tra,
    read_ctc_frame,
    read_ctc_label,
    read_ctc_training_video,
    read_ctc_video,
    read_man_track,
)
from cosinetrack.data.ctc_presets import (
    CTC_PRESETS,
    clustering_parameters,
    common_preset,
    ctc_preset,
    preset_value,
)
from cosinetrack.data.cvppp import find_cvppp_plants, find_plant_images, read_cvppp_plant
from cosinetrack.data.datasets import (
    CineCaseDataset,
    CineClipDataset,
    CVPPPDataset,
    VideoPartDataset,
    ctc_dataset_name,
    find_ctc_datasets,
    read_cases,
    read_ctc_cases,
    split_cases,
    split_video_frames,
    whole_sequences,
)

__all__ = [
    "CTC_PRESETS",
    "clustering_parameters",
    "common_preset",
    "ctc_dataset_name",
    "ctc_preset",
    "find_ctc_datasets",
    "preset_value",
    "read_ctc_cases",
    "split_video_frames",
    "whole_sequences",
    "VideoPartDataset",
    "check_ctc_frames",
    "find_ctc_sequences",
    "iter_ctc_frames",
    "iter_ctc_training_frames",
    "merge_seg_tra",
    "read_ctc_frame",
    "read_ctc_label",
    "read_ctc_training_video",
    "read_ctc_video",
    "read_man_track",
    "IGNORE_LABEL",
    "CineCaseDataset",
    "CineClipDataset",
    "CVPPPDataset",
    "find_cvppp_plants",
    "find_plant_images",
    "read_cvppp_plant",
    "find_msd_cases",
    "load_datalist",
    "read_cases",
    "read_cine_case",
    "resolve_cases",
    "split_cases",
]
