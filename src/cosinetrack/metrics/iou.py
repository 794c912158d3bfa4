"""Intersection over union per class and per case, on the central slices as in the paper's LV protocol.

Arrays are ``(Z, T, H, W)`` integer label maps; pixels whose ground truth is ``ignore_index`` (frames
without a label) are left out of both prediction and ground truth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from ignite.engine import Engine
from ignite.metrics import Metric

from cosinetrack.labels import IGNORE_LABEL

__all__ = ["central_slices", "class_iou", "case_iou", "summarize", "CaseIoU"]


def central_slices(label: np.ndarray, classes: Sequence[int], num_slices: int = 3) -> np.ndarray:
    """Indices of the ``num_slices`` central slices among those showing every class in ``classes``.

    Args:
        label: ``(Z, T, H, W)`` ground truth.
        classes: the classes a slice must contain (in any labeled frame) to count.
        num_slices: how many central slices to keep; ``0`` or ``None`` keeps all slices.

    Returns:
        sorted slice indices; all slices when none contains every class.
    """
    z = label.shape[0]
    if not num_slices or z <= num_slices:
        return np.arange(z)
    flat = label.reshape(z, -1)
    ok = np.array([all((flat[k] == c).any() for c in classes) for k in range(z)])
    candidates = np.flatnonzero(ok) if ok.any() else np.arange(z)
    if candidates.size <= num_slices:
        return candidates
    start = (candidates.size - num_slices) // 2
    return candidates[start : start + num_slices]


def class_iou(pred: np.ndarray, label: np.ndarray, cls: int, ignore_index: int = IGNORE_LABEL) -> float:
    """IoU of class ``cls`` between ``pred`` and ``label`` over labeled pixels; NaN when both lack it."""
    valid = label != ignore_index
    p = (pred == cls) & valid
    g = label == cls
    union = np.count_nonzero(p | g)
    return float(np.count_nonzero(p & g) / union) if union else float("nan")


def case_iou(
    pred: np.ndarray, label: np.ndarray, classes: Mapping[str, int], num_central_slices: int | None = 3
) -> dict[str, float]:
    """Per-class IoU of one case ``(Z, T, H, W)``, on its central slices (see :func:`central_slices`)."""
    keep = central_slices(label, list(classes.values()), num_central_slices or 0)
    return {name: class_iou(pred[keep], label[keep], cls) for name, cls in classes.items()}


def summarize(per_case: Sequence[Mapping[str, float]], classes: Sequence[str]) -> dict[str, float]:
    """Mean and standard deviation over cases of each class's IoU (NaN cases ignored)."""
    out = {}
    for name in classes:
        values = np.array([c[name] for c in per_case], dtype=float)
        values = values[np.isfinite(values)]
        out[name] = float(values.mean()) if values.size else float("nan")
        out[f"{name}_std"] = float(values.std()) if values.size else float("nan")
    return out


class CaseIoU(Metric):
    """Ignite metric: IoU per class per case, then mean ± std over cases.

    ``update((pred, label))`` takes one case: ``pred`` logits ``(Z, T, K, H, W)`` (argmax over K) or labels
    ``(Z, T, H, W)``, and ``label`` ``(Z, T, H, W)``. ``compute()`` returns the mean over classes of the
    per-class mean IoU (the key metric); :meth:`completed` also writes ``<name>_<class>`` and
    ``<name>_<class>_std`` into ``engine.state.metrics`` and the per-case table into
    ``engine.state.case_metrics``.

    Args:
        classes: ``{"myo": 1, "cav": 2}``: names and label values of the classes scored.
        num_central_slices: score only this many central slices of 3D cases (paper: 3); 0 = all.
        output_transform: maps ``engine.state.output`` to ``(pred, label)``.
    """

    def __init__(
        self,
        classes: Mapping[str, int],
        num_central_slices: int = 3,
        output_transform=lambda output: (output["pred"], output["label"]),
        device: str | torch.device = "cpu",
    ) -> None:
        self.classes = {str(k): int(v) for k, v in classes.items()}
        self.num_central_slices = num_central_slices
        self.per_case: list[dict[str, float]] = []
        super().__init__(output_transform=output_transform, device=device)

    def reset(self) -> None:
        self.per_case = []

    def update(self, output) -> None:
        pred, label = output
        pred = torch.as_tensor(pred)
        if pred.ndim == 5:
            pred = pred.argmax(dim=2)
        self.per_case.append(
            case_iou(pred.cpu().numpy(), torch.as_tensor(label).cpu().numpy(), self.classes, self.num_central_slices)
        )

    def compute(self) -> float:
        summary = summarize(self.per_case, list(self.classes))
        return float(np.nanmean([summary[c] for c in self.classes]))

    def completed(self, engine: Engine, name: str) -> None:
        summary = summarize(self.per_case, list(self.classes))
        engine.state.metrics[name] = float(np.nanmean([summary[c] for c in self.classes]))
        for key, value in summary.items():
            engine.state.metrics[f"{name}_{key}"] = value
        engine.state.case_metrics = list(self.per_case)
