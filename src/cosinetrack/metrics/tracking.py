"""Ignite metric over tracked videos: the CTC measures of each video part, and their mean ± std."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from ignite.engine import Engine
from ignite.metrics import Metric

__all__ = ["TrackingScores", "part_metric_name"]

_METRIC_NAME_BAD = re.compile(r"[^/\w.\- :]")  # MLflow metric names: letters, digits, _ - . / : and spaces


def part_metric_name(prefix: str, part: str) -> str:
    """``<prefix>/<part>`` with the characters MLflow refuses in a metric name (``+``, ``[``, ``]``, ...) as ``_``:
    ``part_metric_name("val_SEG", "Fluo-N2DH-SIM+/01[50:65]") == "val_SEG/Fluo-N2DH-SIM_/01_50:65"``."""
    return f"{prefix}/{_METRIC_NAME_BAD.sub('_', str(part)).strip('_')}"


class TrackingScores(Metric):
    """Collect ``output["scores"]`` (SEG, TRA, DET, OP_CTB, ... of :func:`~cosinetrack.metrics.ctc_scores`)
    of every evaluated video part; ``compute()`` is the mean of ``key`` (default ``OP_CTB``).

    :meth:`completed` also writes ``<name>_<score>`` and ``<name>_<score>_std`` (mean and std over parts)
    into ``engine.state.metrics`` and the per-part rows into ``engine.state.case_metrics``; with
    ``part_metrics``, also each part's own scores as ``<name>_<score>/<part name>``
    (:func:`part_metric_name`, e.g. ``val_SEG/Fluo-N2DH-GOWT1/01_77:92``), one curve per part in MLflow.

    Args:
        key: the score that is the key metric (checkpoint selection).
        scores: which scores to report (others in ``output["scores"]`` are ignored).
        output_transform: maps ``engine.state.output`` to a 1-tuple ``(scores dict,)`` (a tuple, because
            Ignite reads a bare dict as ``{"y_pred", "y"}``).
        part_metrics: also report every part's scores under its name (``engine.state.output["name"]``),
            e.g. when the parts come from several data sets whose scores differ.
    """

    def __init__(
        self,
        key: str = "OP_CTB",
        scores: Sequence[str] = ("SEG", "TRA", "DET", "OP_CTB"),
        output_transform: Callable = lambda output: (output["scores"],),
        device: str | torch.device = "cpu",
        part_metrics: bool = False,
    ) -> None:
        self.key = key
        self.scores = tuple(scores)
        self.part_metrics = bool(part_metrics)
        self.rows: list[dict[str, float]] = []
        self.names: list[str] = []
        super().__init__(output_transform=output_transform, device=device)

    def reset(self) -> None:
        self.rows = []
        self.names = []

    def iteration_completed(self, engine: Engine) -> None:
        output = engine.state.output
        name = output.get("name") if isinstance(output, Mapping) else None
        self.names.append(str(len(self.names)) if name is None else str(name))
        super().iteration_completed(engine)

    def update(self, output) -> None:
        output = output[0] if isinstance(output, (tuple, list)) else output
        self.rows.append({s: float(output.get(s, np.nan)) for s in self.scores})

    def _mean(self, name: str) -> tuple[float, float]:
        values = np.array([r[name] for r in self.rows], dtype=float)
        values = values[np.isfinite(values)]
        return (float(values.mean()), float(values.std())) if values.size else (float("nan"), float("nan"))

    def compute(self) -> float:
        return self._mean(self.key)[0]

    def completed(self, engine: Engine, name: str) -> None:
        engine.state.metrics[name] = self.compute()
        for s in self.scores:
            mean, std = self._mean(s)
            engine.state.metrics[f"{name}_{s}"] = mean
            engine.state.metrics[f"{name}_{s}_std"] = std
        if self.part_metrics:
            for part, row in zip(self.names, self.rows):
                for s in self.scores:
                    engine.state.metrics[part_metric_name(f"{name}_{s}", part)] = row[s]
        engine.state.case_metrics = list(self.rows)
