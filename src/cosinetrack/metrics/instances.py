"""Instance segmentation metrics of the CVPPP leaf segmentation challenge: best Dice, |DiC|, FG-BG Dice.

Definitions (Scharr et al., MVA 2016, and the challenge's ``BestDice.m`` / ``FGBGDice.m`` /
``DiffFGLabels.m`` scoring code):

* ``best_dice(a, b)`` = mean over the instances ``i`` of ``a`` of ``max_j Dice(a_i, b_j)`` over the
  instances ``j`` of ``b`` (background excluded on both sides; one instance of ``b`` may be the best
  match of several instances of ``a``);
* ``symmetric_best_dice(gt, pred)`` (SBD) = ``min(best_dice(gt, pred), best_dice(pred, gt))``;
* ``difference_in_count(gt, pred)`` (DiC) = ``n_pred - n_gt``, and |DiC| its absolute value;
* ``foreground_dice(gt, pred)`` = Dice of the binary foreground masks (leaf vs. background).

Conventions
-----------
* Inputs are integer label images of the same shape (numpy arrays or torch tensors, any number of
  dimensions): values ``> 0`` are instance ids, every value ``<= 0`` is background; in particular the
  "no label" value ``-1`` counts as background. Instances are the distinct positive ids present (ids
  need not be consecutive; the reference code loops over ``min+1..max`` instead, which is the same for
  consecutive ids ``1..n`` with background present).
* Empty cases follow the CVPPP reference code, which scores a "trivial" label image (no instance) 0 so
  that predicting only background is never rewarded: ``best_dice(a, b) = 0`` when ``a`` has no instance
  (whatever ``b`` holds) and ``foreground_dice = 0`` when both foregrounds are empty. ``best_dice`` of an
  ``a`` with instances against an empty ``b`` is 0 as well (no match). Pass ``both_empty=1.0`` to score
  two empty images as a perfect match instead.
* Everything is computed from one contingency table of label pairs (``np.unique`` on combined ids); no
  per-pixel or per-instance-pair Python loops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from ignite.engine import Engine
from ignite.metrics import Metric

__all__ = [
    "best_dice",
    "symmetric_best_dice",
    "difference_in_count",
    "abs_difference_in_count",
    "foreground_dice",
    "instance_scores",
    "InstanceSegmentationMetrics",
]

#: Per-image scores kept by :class:`InstanceSegmentationMetrics`, summarised as mean and std.
SCORE_NAMES = ("sbd", "abs_dic", "dic", "fg_dice")


def _as_labels(x) -> np.ndarray:
    """Integer numpy array with every value ``<= 0`` set to 0 (background)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError("label images must hold integer ids, got non-integer floats")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"label images must be integer arrays, got dtype {arr.dtype}")
    return np.where(arr > 0, arr, 0).astype(np.int64, copy=False)


def _check_shapes(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"label images must have the same shape, got {a.shape} and {b.shape}")


def _pair_table(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sparse contingency table of two background-cleaned label images.

    Returns:
        ``(ids_a, size_a, ids_b, size_b, pairs)``: the distinct values of each image (0 included when
        present) with their pixel counts, and ``pairs`` an ``(P, 3)`` int64 array of ``(index into ids_a,
        index into ids_b, overlap pixels)`` for every co-occurring pair.
    """
    ids_a, inv_a = np.unique(a.ravel(), return_inverse=True)
    ids_b, inv_b = np.unique(b.ravel(), return_inverse=True)
    key = inv_a.astype(np.int64) * len(ids_b) + inv_b
    keys, overlap = np.unique(key, return_counts=True)
    pairs = np.stack([keys // len(ids_b), keys % len(ids_b), overlap], axis=1)
    size_a = np.bincount(inv_a.ravel(), minlength=len(ids_a))
    size_b = np.bincount(inv_b.ravel(), minlength=len(ids_b))
    return ids_a, size_a, ids_b, size_b, pairs


def _best_dice_from_table(ids_a, size_a, ids_b, size_b, pairs, both_empty: float) -> float:
    fg_a = ids_a > 0
    n_a = int(np.count_nonzero(fg_a))
    if n_a == 0:
        return float(both_empty) if not np.any(ids_b > 0) else 0.0
    ia, ib, ov = pairs[:, 0], pairs[:, 1], pairs[:, 2]
    keep = fg_a[ia] & (ids_b[ib] > 0)
    ia, ib, ov = ia[keep], ib[keep], ov[keep]
    dice = 2.0 * ov / (size_a[ia] + size_b[ib])
    best = np.zeros(len(ids_a))
    np.maximum.at(best, ia, dice)
    return float(best[fg_a].mean())


def best_dice(a, b, both_empty: float = 0.0) -> float:
    """CVPPP best Dice of ``a`` against ``b``: mean over instances of ``a`` of the best Dice with ``b``.

    Args:
        a: label image (any shape; ``> 0`` instance ids, ``<= 0`` background).
        b: label image of the same shape.
        both_empty: the score when neither image has an instance (CVPPP: 0).

    Returns:
        A float in ``[0, 1]``; 0 when ``a`` has no instance and ``b`` has some, or when ``a`` has some and
        ``b`` none.
    """
    a, b = _as_labels(a), _as_labels(b)
    _check_shapes(a, b)
    return _best_dice_from_table(*_pair_table(a, b), both_empty=both_empty)


def symmetric_best_dice(gt, pred, both_empty: float = 0.0) -> float:
    """Symmetric best Dice (SBD): ``min(best_dice(gt, pred), best_dice(pred, gt))``, in ``[0, 1]``."""
    gt, pred = _as_labels(gt), _as_labels(pred)
    _check_shapes(gt, pred)
    ids_g, size_g, ids_p, size_p, pairs = _pair_table(gt, pred)
    bd_gp = _best_dice_from_table(ids_g, size_g, ids_p, size_p, pairs, both_empty)
    bd_pg = _best_dice_from_table(ids_p, size_p, ids_g, size_g, pairs[:, [1, 0, 2]], both_empty)
    return min(bd_gp, bd_pg)


def _count(labels: np.ndarray) -> int:
    return int(np.count_nonzero(np.unique(labels) > 0))


def difference_in_count(gt, pred) -> int:
    """Difference in count (DiC): number of predicted instances minus number of true instances."""
    gt, pred = _as_labels(gt), _as_labels(pred)
    _check_shapes(gt, pred)
    return _count(pred) - _count(gt)


def abs_difference_in_count(gt, pred) -> int:
    """Absolute difference in count, ``|n_pred - n_gt|``."""
    return abs(difference_in_count(gt, pred))


def foreground_dice(gt, pred, both_empty: float = 0.0) -> float:
    """FG-BG Dice: Dice of the foreground masks (``> 0``) of ``gt`` and ``pred``; ``both_empty`` (CVPPP: 0)
    when neither has foreground."""
    gt, pred = _as_labels(gt), _as_labels(pred)
    _check_shapes(gt, pred)
    fg_g, fg_p = gt > 0, pred > 0
    total = int(np.count_nonzero(fg_g)) + int(np.count_nonzero(fg_p))
    if total == 0:
        return float(both_empty)
    return 2.0 * int(np.count_nonzero(fg_g & fg_p)) / total


def instance_scores(gt, pred, both_empty: float = 0.0) -> dict[str, float]:
    """All scores of one image from a single contingency table.

    Returns:
        ``{"sbd", "bd_gt_pred", "bd_pred_gt", "dic", "abs_dic", "fg_dice", "n_gt", "n_pred"}``; the counts
        and DiC are ints, the rest floats.
    """
    gt, pred = _as_labels(gt), _as_labels(pred)
    _check_shapes(gt, pred)
    ids_g, size_g, ids_p, size_p, pairs = _pair_table(gt, pred)
    bd_gp = _best_dice_from_table(ids_g, size_g, ids_p, size_p, pairs, both_empty)
    bd_pg = _best_dice_from_table(ids_p, size_p, ids_g, size_g, pairs[:, [1, 0, 2]], both_empty)
    n_g, n_p = int(np.count_nonzero(ids_g > 0)), int(np.count_nonzero(ids_p > 0))
    fg_g = int(size_g[ids_g > 0].sum())
    fg_p = int(size_p[ids_p > 0].sum())
    both = (ids_g[pairs[:, 0]] > 0) & (ids_p[pairs[:, 1]] > 0)
    fg_total = fg_g + fg_p
    fg_dice = 2.0 * int(pairs[both, 2].sum()) / fg_total if fg_total else float(both_empty)
    return {
        "sbd": min(bd_gp, bd_pg),
        "bd_gt_pred": bd_gp,
        "bd_pred_gt": bd_pg,
        "dic": n_p - n_g,
        "abs_dic": abs(n_p - n_g),
        "fg_dice": fg_dice,
        "n_gt": n_g,
        "n_pred": n_p,
    }


def _summarize(per_image: Sequence[dict], names: Sequence[str] = SCORE_NAMES) -> dict[str, float]:
    out = {}
    for name in names:
        values = np.array([c[name] for c in per_image], dtype=float)
        out[name] = float(values.mean()) if values.size else float("nan")
        out[f"{name}_std"] = float(values.std()) if values.size else float("nan")
    return out


class InstanceSegmentationMetrics(Metric):
    """Ignite metric: CVPPP scores per image (SBD, DiC, |DiC|, FG-BG Dice), then mean ± std over images.

    ``update((pred_labels, gt_labels))`` takes one image ``(H, W)`` or a batch ``(B, H, W)`` (a singleton
    channel, ``(B, 1, H, W)``, is squeezed) of instance label images, tensors or arrays; ground truth
    ``-1`` ("no label") and every other value ``<= 0`` count as background. ``compute()`` returns the mean
    SBD (the key metric); :meth:`completed` also writes ``<name>_sbd``, ``<name>_abs_dic``, ``<name>_dic``,
    ``<name>_fg_dice`` (means over images) and the same with ``_std`` into ``engine.state.metrics``, and
    the per-image list of :func:`instance_scores` dicts into ``engine.state.case_metrics``.

    Args:
        output_transform: maps ``engine.state.output`` to ``(pred_labels, gt_labels)``.
        both_empty: score of SBD / FG Dice when an image and its prediction are both empty (CVPPP: 0).
        device: unused (scores are computed on the CPU); kept for the Ignite signature.
    """

    def __init__(
        self,
        output_transform: Callable = lambda output: (output["pred"], output["label"]),
        both_empty: float = 0.0,
        device: str | torch.device = "cpu",
    ) -> None:
        self.both_empty = float(both_empty)
        self.per_image: list[dict] = []
        super().__init__(output_transform=output_transform, device=device)

    def reset(self) -> None:
        self.per_image = []

    @staticmethod
    def _batch(x) -> np.ndarray:
        arr = _as_labels(x)
        if arr.ndim == 2:
            return arr[None]
        if arr.ndim == 4 and arr.shape[1] == 1:
            return arr[:, 0]
        if arr.ndim != 3:
            raise ValueError(f"label images must be (H, W), (B, H, W) or (B, 1, H, W), got shape {arr.shape}")
        return arr

    def update(self, output) -> None:
        pred, gt = output
        pred, gt = self._batch(pred), self._batch(gt)
        _check_shapes(pred, gt)
        for p, g in zip(pred, gt):
            self.per_image.append(instance_scores(g, p, self.both_empty))

    def compute(self) -> float:
        return _summarize(self.per_image, ("sbd",))["sbd"]

    def completed(self, engine: Engine, name: str) -> None:
        summary = _summarize(self.per_image, list(self.per_image[0]) if self.per_image else SCORE_NAMES)
        engine.state.metrics[name] = summary["sbd"]
        for key, value in summary.items():
            engine.state.metrics[f"{name}_{key}"] = value
        engine.state.case_metrics = list(self.per_image)
