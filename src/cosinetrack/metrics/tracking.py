"""Ignite metric over tracked videos: the CTC measures of each video part, and their mean ± std."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from ignite.engine import Engine
from ignite.metrics import Metric

__all__ = ["TrackingScores"]


class TrackingScores(Metric):
    """Collect ``output["scores"]`` (SEG, TRA, DET, OP_CTB, ... of :func:`~cosinetrack.metrics.ctc_scores`)
    of every evaluated video part; ``compute()`` is the mean of ``key`` (default ``OP_CTB``).

    :meth:`completed` also writes ``<name>_<score>`` and ``<name>_<score>_std`` (mean and std over parts)
    into ``engine.state.metrics`` and the per-part rows into ``engine.state.case_metrics``.

    Args:
        key: the score that is the key metric (checkpoint selection).
        scores: which scores to report (others in ``output["scores"]`` are ignored).
        output_transform: maps ``engine.state.output`` to a 1-tuple ``(scores dict,)`` (a tuple, because
            Ignite reads a bare dict as ``{"y_pred", "y"}``).
    """

    def __init__(
        self,
        key: str = "OP_CTB",
        scores: Sequence[str] = ("SEG", "TRA", "DET", "OP_CTB"),
        output_transform: Callable = lambda output: (output["scores"],),
        device: str | torch.device = "cpu",
    ) -> None:
        self.key = key
        self.scores = tuple(scores)
        self.rows: list[dict[str, float]] = []
        super().__init__(output_transform=output_transform, device=device)

    def reset(self) -> None:
        self.rows = []

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
        engine.state.case_metrics = list(self.rows)
