"""Splitting instances that cover several touching objects, in the labels of a frame pair.

The learned cell pipeline's largest tracking error is under-segmentation: one instance covering two or
three touching nuclei (AOGM "NS" vertices, and the missing links around them; ``docs/results_cell.md``).
:func:`split_merged_instances` splits such instances by their shape alone, the way the classical
nucleus pipeline separates touching nuclei: in each frame of the pair, an instance's Euclidean distance
transform is computed; when it has two or more local maxima at least ``min_distance`` pixels apart
(``skimage.feature.peak_local_max``), the instance is cut by a watershed of the negated distance from
those maxima. Its parts in the pair's two frames are then matched one-to-one by IoU (Hungarian, SciPy's
``linear_sum_assignment``), so a split instance stays one instance per part across the pair, as the
pair tracker needs: the best-matched part keeps the old label, the others get new, unused labels.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment
from skimage.feature import peak_local_max
from skimage.segmentation import watershed

__all__ = ["split_by_distance_peaks", "split_merged_instances"]


def _check_min_distance(min_distance: int) -> int:
    if isinstance(min_distance, bool) or not isinstance(min_distance, numbers.Integral) or min_distance < 1:
        raise ValueError(f"min_distance: expected a whole number of pixels >= 1, got {min_distance!r}")
    return int(min_distance)


def split_by_distance_peaks(mask: np.ndarray, min_distance: int) -> tuple[np.ndarray, int]:
    """One object's mask cut into parts at the maxima of its distance transform.

    Args:
        mask: ``(H, W)`` boolean mask of one instance.
        min_distance: smallest distance between two maxima, in pixels (Chebyshev, as ``peak_local_max``).

    Returns:
        ``(parts, n)``: int32 ``(H, W)`` labels ``1..n`` of the parts (0 outside the mask) and their
        number (``1`` when there is at most one maximum: the mask as it is; ``0`` for an empty mask).
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask: expected a (H, W) array, got shape {mask.shape}")
    min_distance = _check_min_distance(min_distance)
    if not mask.any():
        return np.zeros(mask.shape, np.int32), 0
    distance = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]  # outside the mask (crop) is background
    peaks = peak_local_max(distance, min_distance=min_distance, labels=mask.astype(np.int32), exclude_border=False)
    if len(peaks) < 2:
        return mask.astype(np.int32), 1
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    parts = watershed(-distance, markers, mask=mask).astype(np.int32)
    return parts, int(parts.max())


def _part_ious(first: np.ndarray, n0: int, second: np.ndarray, n1: int) -> np.ndarray:
    """``(n0, n1)`` IoU of the parts ``1..n0`` of ``first`` and ``1..n1`` of ``second``."""
    joint = np.bincount(first.ravel() * (n1 + 1) + second.ravel(), minlength=(n0 + 1) * (n1 + 1))
    joint = joint.reshape(n0 + 1, n1 + 1)
    inter = joint[1:, 1:].astype(np.float64)
    size0, size1 = joint[1:].sum(1), joint[:, 1:].sum(0)
    return inter / np.maximum(size0[:, None] + size1[None, :] - inter, 1)


def split_merged_instances(pair: np.ndarray, min_distance: int) -> np.ndarray:
    """Split the instances of a frame pair's labels that cover several touching objects.

    Args:
        pair: ``(2, H, W)`` (or ``(1, H, W)``) non-negative integer labels of a frame pair, one label per
            instance in both frames, ``0`` = background.
        min_distance: two distance-transform maxima of an instance's part in one frame at least this
            many pixels apart make it two parts (see the module docstring); e.g. about the radius of the
            smallest object that should stay whole.

    Returns:
        int64 labels of the same shape: every unsplit instance unchanged; a split instance's parts in
        the two frames matched by IoU, the best-matched pair keeping the old label, every other part a
        new label above the input's largest. (Label values above ``4 * pair.size + 1024`` are first
        renumbered ``1..N`` in their order, so then only the partition is kept, not the values.)

    Raises:
        ValueError: ``pair`` is not a ``(1 or 2, H, W)`` array of non-negative integers, or
            ``min_distance`` is not a whole number ``>= 1``.
    """
    pair = np.asarray(pair)
    if pair.ndim != 3 or pair.shape[0] not in (1, 2):
        raise ValueError(f"pair: expected (2, H, W) labels of a frame pair, got shape {pair.shape}")
    if not np.issubdtype(pair.dtype, np.integer) or pair.min(initial=0) < 0:
        raise ValueError("pair: expected non-negative integer labels")
    min_distance = _check_min_distance(min_distance)
    out = pair.astype(np.int64)
    if int(out.max(initial=0)) > 4 * out.size + 1024:  # large label values: compact them for find_objects
        out = np.unique(np.r_[0, out.ravel()], return_inverse=True)[1][1:].reshape(out.shape).astype(np.int64)
    next_label = int(out.max(initial=0)) + 1
    boxes = [ndi.find_objects(frame) for frame in out]  # each label's bounding box, per frame
    for index in range(max(len(b) for b in boxes)):
        found = [b[index] for b in boxes if index < len(b) and b[index] is not None]
        if not found:
            continue
        label = index + 1
        rows = slice(min(f[0].start for f in found), max(f[0].stop for f in found))
        cols = slice(min(f[1].start for f in found), max(f[1].stop for f in found))
        parts, counts = [], []
        for frame in out:
            part, n = split_by_distance_peaks(frame[rows, cols] == label, min_distance)
            parts.append(part)
            counts.append(n)
        if max(counts) < 2:
            continue
        names = [np.zeros(n + 1, np.int64) for n in counts]  # part k of frame f -> its label
        matched = []
        if len(counts) == 2 and counts[0] and counts[1]:
            iou = _part_ious(parts[0], counts[0], parts[1], counts[1])
            matched = sorted(((i, j) for i, j in zip(*linear_sum_assignment(-iou)) if iou[i, j] > 0),
                             key=lambda ij: -iou[ij])  # fmt: skip
        for k, (i, j) in enumerate(matched):
            value = label if k == 0 else next_label
            next_label += k > 0
            names[0][i + 1] = names[1][j + 1] = value
        for names_f in names:
            for k in range(1, names_f.size):
                if names_f[k] == 0:  # unmatched: a new label (the old one for a first part when nothing matched)
                    keep = not matched and not (names_f == label).any()
                    names_f[k] = label if keep else next_label
                    next_label += not keep
        for frame, part, names_f in zip(out, parts, names):
            view = frame[rows, cols]
            inside = part > 0
            view[inside] = names_f[part[inside]]
    return out
