"""Writing ``(Z, T, H, W)`` label predictions back as NIfTI files shaped like the input files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import nibabel as nib
import numpy as np

from cosinetrack.data.cine import NIFTI_SUFFIXES, from_zthw, layout_for
from cosinetrack.io.atomic import atomic_file

__all__ = ["write_case_labels"]


def write_case_labels(
    label: np.ndarray, case: Mapping[str, Any], out_dir: str, file_layout: str = "auto", suffix: str = ""
) -> list[str]:
    """Write ``label`` ``(Z, T, H, W)`` as one uint8 NIfTI per input image file of ``case``.

    Each output has its input's shape, axis order, affine and header (as uint8), and the input's file name
    with ``suffix`` before the extension, in ``out_dir``. Files are written atomically. Returns the paths.
    """
    images = [case["image"]] if isinstance(case["image"], str) else list(case["image"])
    grouped = len(images) > 1
    written, t0 = [], 0
    for path in images:
        ref = nib.load(path)
        ndim = len(ref.shape)
        layout = layout_for(np.empty((1,) * ndim), file_layout, grouped, path)
        nt = ref.shape[3] if layout == "xyzt" else ref.shape[2] if layout == "xyt" else 1
        array = from_zthw(label[:, t0 : t0 + nt], layout, ndim).astype(np.uint8)
        t0 += nt
        name = os.path.basename(path)
        ext = next((e for e in NIFTI_SUFFIXES if name.endswith(e)), "")
        out = os.path.join(out_dir, name[: len(name) - len(ext)] + suffix + (ext or ".nii.gz"))
        header = ref.header.copy()
        header.set_data_dtype(np.uint8)
        with atomic_file(out, suffix=ext or ".nii.gz") as tmp:
            nib.save(nib.Nifti1Image(array, ref.affine, header), tmp)
        written.append(out)
    return written
