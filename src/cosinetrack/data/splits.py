"""Splits of cases and frames: k folds of cases, frame ranges, consecutive runs."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["case_names", "split_cases", "consecutive_runs"]


logger = logging.getLogger(__name__)


def split_cases(
    cases: Sequence[Mapping[str, Any]], num_folds: int = 1, fold: int = 0, seed: int = 0, val_fraction: float = 0.25
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """Split cases (patients, never slices or frames) into training and validation lists.

    With ``num_folds >= 2`` this is k-fold cross-validation: the cases are shuffled with ``seed`` and
    dealt into ``num_folds`` folds of near-equal size; fold ``fold`` validates, the others train. With
    ``num_folds == 1`` a ``val_fraction`` of the shuffled cases (at least one) validates.
    """
    cases = list(cases)
    if len(cases) < 2:
        raise ValueError(f"need at least 2 cases to split into training and validation, got {len(cases)}")
    order = np.random.default_rng(seed).permutation(len(cases))
    if num_folds >= 2:
        if not 0 <= fold < num_folds:
            raise ValueError(f"fold must be in [0, {num_folds}), got {fold}")
        if num_folds > len(cases):
            raise ValueError(f"num_folds={num_folds} is more than the {len(cases)} cases")
        val_idx = set(order[fold::num_folds].tolist())
    else:
        n_val = max(1, round(val_fraction * len(cases)))
        val_idx = set(order[:n_val].tolist())
    train = [c for i, c in enumerate(cases) if i not in val_idx]
    val = [c for i, c in enumerate(cases) if i in val_idx]
    return train, val


def frame_slice(spec: str | Sequence[int] | None, frames: Sequence[int]) -> list[int]:
    """The frames picked by ``spec``: a Python slice string over ``frames`` (``"50:"``, ``"-15:"``,
    ``":40"``), an explicit list of frame numbers, or ``None`` (none)."""
    frames = list(frames)
    if spec is None:
        return []
    if isinstance(spec, str):
        parts = spec.split(":")
        if len(parts) != 2:
            raise ValueError(f"frame slice must look like 'start:stop' (e.g. '-15:' or '50:'), got {spec!r}")
        start, stop = (int(p) if p.strip() else None for p in parts)
        return frames[slice(start, stop)]
    chosen = [int(t) for t in spec]
    missing = sorted(set(chosen) - set(frames))
    if missing:
        raise ValueError(f"frames {missing} are not in the sequence (it has {frames[0]}..{frames[-1]})")
    return chosen


def consecutive_runs(frames: Sequence[int]) -> list[list[int]]:
    """Increasing frame numbers cut at every gap: ``[0, 1, 3, 4, 5] -> [[0, 1], [3, 4, 5]]``."""
    runs: list[list[int]] = []
    for t in sorted(int(t) for t in frames):
        if runs and t == runs[-1][-1] + 1:
            runs[-1].append(t)
        else:
            runs.append([t])
    return runs


def case_names(cases: Sequence[Any]) -> list[str]:
    """The names of validation cases: ``case["name"]`` of a dict, ``case.name`` of a typed case
    (e.g. a :class:`~cosinetrack.apps.cell.VideoPart`)."""
    return [str(c["name"] if isinstance(c, Mapping) else c.name) for c in cases]
