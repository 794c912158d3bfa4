"""Matching the instances of label images by overlap (paper §2.3 and appendix 3).

Two uses in tracking:

* :func:`greedy_iou_matching` links the instances of the shared frame of two overlapping frame pairs:
  pairs of instances are taken greedily by decreasing IoU, one-to-one, down to ``min_iou`` (0.25 in
  the authors' reference code).
* :func:`best_overlapping_instance` finds the parent of a new track: the instance of earlier frames
  that overlaps the new instance (optionally dilated) most, by IoU or by overlap fraction.

Label images are integer arrays of the same shape (usually ``(H, W)``); values ``<= 0`` are background
(``-1``, "no label", included). Only overlapping instance pairs are considered (a contingency table
of the pixels that are foreground in both images), so the cost is one pass over the pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["PARENT_MEASURES", "best_overlapping_instance", "greedy_iou_matching", "instance_overlaps", "iou_pairs"]

#: names accepted by ``measure=`` of :func:`best_overlapping_instance`.
PARENT_MEASURES = ("iou", "overlap")


def _check_same_shape(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names}: label images must have the same shape, got {a.shape} and {b.shape}")


def iou_pairs(labels_a: np.ndarray, labels_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every pair of overlapping instances of two label images.

    Args:
        labels_a: integer labels of any shape, ``<= 0`` = background.
        labels_b: integer labels of the same shape.

    Returns:
        ``(ids_a, ids_b, iou)``: int64 ``(K,)``, int64 ``(K,)`` and float64 ``(K,)`` for the ``K`` pairs
        ``(i, j)`` with at least one shared pixel, ordered by ``(i, j)``. Pairs without overlap (IoU 0)
        are left out.
    """
    _check_same_shape(np.asarray(labels_a), np.asarray(labels_b), "iou_pairs")
    ids_a, ids_b, inter, size_a, size_b = instance_overlaps(labels_a, labels_b)
    iou = inter / (size_a + size_b - inter) if inter.size else np.zeros(0)
    return ids_a, ids_b, iou.astype(np.float64)


def instance_overlaps(
    labels_a: np.ndarray, labels_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every overlapping pair of instances (ids > 0) of two label arrays of the same shape.

    Returns ``(ids_a, ids_b, intersection, size_a, size_b)``, one entry per overlapping pair (pixel
    counts; sizes are the whole instances' sizes in ``labels_a`` / ``labels_b``), from one contingency
    table of the shared foreground (no loop over instances).
    """
    a = np.asarray(labels_a).astype(np.int64, copy=False).ravel()
    b = np.asarray(labels_b).astype(np.int64, copy=False).ravel()
    empty = np.zeros(0, dtype=np.int64)
    small = _small_id_bound(a.size)
    if a.size:
        a_max, b_max = int(a.max()), int(b.max())
        if 0 < a_max and 0 < b_max and (a_max + 1) * (b_max + 1) <= small and min(a.min(), b.min()) >= 0:
            # small non-negative ids (the usual case): the whole contingency table in one count; same result
            table = np.bincount(a * (b_max + 1) + b, minlength=(a_max + 1) * (b_max + 1)).reshape(a_max + 1, -1)
            ka, kb = np.nonzero(table[1:, 1:])  # row-major: ordered by (id_a, id_b)
            sizes_a = table[1:].sum(axis=1)
            sizes_b = table[:, 1:].sum(axis=0)
            return ka + 1, kb + 1, table[ka + 1, kb + 1], sizes_a[ka], sizes_b[kb]
    both = (a > 0) & (b > 0)
    if not both.any():
        return empty, empty.copy(), empty.copy(), empty.copy(), empty.copy()
    if int(a.max()) <= small and int(b.max()) <= small:
        # small ids (the usual case): counts per value instead of sorting the pixels; same result
        count_a = np.bincount(np.maximum(a, 0))
        count_b = np.bincount(np.maximum(b, 0))
        ids_a = np.flatnonzero(count_a[1:]) + 1
        ids_b = np.flatnonzero(count_b[1:]) + 1
        lut_a = np.zeros(count_a.size, dtype=np.int64)
        lut_a[ids_a] = np.arange(ids_a.size)
        lut_b = np.zeros(count_b.size, dtype=np.int64)
        lut_b[ids_b] = np.arange(ids_b.size)
        keys = lut_a[a[both]] * ids_b.size + lut_b[b[both]]
        if ids_a.size * ids_b.size <= small:
            table = np.bincount(keys, minlength=ids_a.size * ids_b.size)
            keys = np.flatnonzero(table)
            inter = table[keys]
        else:
            keys, inter = np.unique(keys, return_counts=True)
        ka, kb = np.divmod(keys, ids_b.size)
        return ids_a[ka], ids_b[kb], inter, count_a[ids_a][ka], count_b[ids_b][kb]
    ids_a, sizes_a = np.unique(a[a > 0], return_counts=True)
    ids_b, sizes_b = np.unique(b[b > 0], return_counts=True)
    # contingency table of the shared foreground, on compact indices so the key never overflows
    ia = np.searchsorted(ids_a, a[both])
    ib = np.searchsorted(ids_b, b[both])
    keys, inter = np.unique(ia * ids_b.size + ib, return_counts=True)
    ka, kb = np.divmod(keys, ids_b.size)
    return ids_a[ka], ids_b[kb], inter, sizes_a[ka], sizes_b[kb]


def _small_id_bound(size: int) -> int:
    """Largest id for which a count per value (``np.bincount``) is used instead of sorting ``size`` pixels."""
    return 4 * int(size) + 1024


def greedy_iou_matching(reference: np.ndarray, labels: np.ndarray, min_iou: float = 0.25) -> dict[int, int]:
    """Match the instances of ``labels`` to those of ``reference`` greedily by highest IoU.

    The overlapping pairs are visited by decreasing IoU (ties: smaller reference id, then smaller id
    of ``labels``); a pair is matched when neither instance is matched yet and its IoU is at least
    ``min_iou``. Every instance is matched at most once.

    Args:
        reference: integer labels, e.g. ``(H, W)``, ``<= 0`` = background (the already tracked ids).
        labels: integer labels of the same shape (the new ids to be matched).
        min_iou: smallest IoU that still matches, in ``(0, 1]``.

    Returns:
        ``{id in labels: id in reference}`` for the matched instances; unmatched ones are absent.
    """
    if not 0.0 < float(min_iou) <= 1.0:
        raise ValueError(f"min_iou: must be in (0, 1], got {min_iou}")
    ids_ref, ids_new, iou = iou_pairs(reference, labels)
    order = np.lexsort((ids_new, ids_ref, -iou))
    matched: dict[int, int] = {}
    taken: set[int] = set()
    for k in order:
        if iou[k] < min_iou:
            break
        r, n = int(ids_ref[k]), int(ids_new[k])
        if n in matched or r in taken:
            continue
        matched[n] = r
        taken.add(r)
    return matched


def _disk(radius: int) -> np.ndarray:
    r = int(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy * yy + xx * xx) <= r * r


def best_overlapping_instance(
    mask: np.ndarray,
    frames: Sequence[np.ndarray],
    measure: str = "iou",
    min_score: float = 0.1,
    dilation: int = 0,
    sizes: Sequence[np.ndarray] | None = None,
) -> tuple[int, int, float]:
    """The instance of earlier frames that overlaps ``mask`` most (the parent of a new track).

    ``mask`` is first dilated by a disk of ``dilation`` pixels. Every instance of every frame of
    ``frames`` is scored against it, and the best score wins; ties go to the frame listed first
    (pass the frames nearest first), then to the smaller id.

    Args:
        mask: ``(H, W)`` bool, the new instance.
        frames: earlier label images ``(H, W)`` (``<= 0`` = background), nearest frame first.
        measure: ``"iou"``: intersection over union of the (dilated) mask and the instance;
            ``"overlap"``: the fraction of the (dilated) mask covered by the instance (robust to the
            size change of a division: a daughter lies inside its mother's last outline).
        min_score: an instance qualifies only with a score of at least this.
        dilation: radius in pixels of the dilation of ``mask`` (``0``: none).
        sizes: optional pixel counts of the instances of each frame (``sizes[k][id]``, e.g.
            ``np.bincount`` of frame ``k``), to save counting them again; same result.

    Returns:
        ``(id, frame index in frames, score)`` of the best instance, or ``(0, -1, 0.0)`` when none
        reaches ``min_score``.
    """
    if measure not in PARENT_MEASURES:
        raise ValueError(f"measure: expected one of {PARENT_MEASURES}, got {measure!r}")
    if int(dilation) < 0:
        raise ValueError(f"dilation: must be >= 0, got {dilation}")
    mask = np.asarray(mask, dtype=bool)
    best = (0, -1, 0.0)
    if not mask.any() or len(frames) == 0:
        return best
    # work on the bounding box of the dilated mask only
    rows, cols = np.nonzero(np.any(mask, axis=1))[0], np.nonzero(np.any(mask, axis=0))[0]
    r = int(dilation)
    box = (
        slice(max(rows[0] - r, 0), min(rows[-1] + r + 1, mask.shape[0])),
        slice(max(cols[0] - r, 0), min(cols[-1] + r + 1, mask.shape[1])),
    )
    crop = mask[box]
    if r > 0:
        crop = ndimage.binary_dilation(crop, structure=_disk(r))
    size = int(crop.sum())
    for index, frame in enumerate(frames):
        frame = np.asarray(frame)
        _check_same_shape(mask, frame, "best_overlapping_instance")
        inside = frame[box][crop]
        inside = inside[inside > 0]
        if inside.size == 0:
            continue
        ids, inter = np.unique(inside, return_counts=True)
        if measure == "iou":
            if sizes is not None:
                counts = np.asarray(sizes[index])[ids]
            else:
                counts = np.array([np.count_nonzero(frame == i) for i in ids])
            scores = inter / (size + counts - inter)
        else:
            scores = inter / size
        k = int(np.argmax(scores))  # first maximum: the smallest id
        score = float(scores[k])
        if score >= min_score and score > best[2]:
            best = (int(ids[k]), index, score)
    return best
