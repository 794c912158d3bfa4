"""Figures of frames: input | ground truth | prediction, as logged to MLflow."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["segmentation_panel"]


def segmentation_panel(samples: Sequence[Mapping[str, Any]], max_label: int | None = None):
    """A grid with one row per frame: input (grey), ground truth and prediction (label colours).

    Args:
        samples: dicts with ``image`` ``(F, H, W)``, ``label`` ``(F, H, W)`` or ``None`` (``-1`` = no label),
            ``pred`` ``(F, H, W)`` integer arrays and an optional ``title``.
        max_label: the largest label value (fixes the colour scale); default: the largest value seen.

    Returns:
        a matplotlib Figure (the caller saves and closes it).
    """
    rows = [(s, f) for s in samples for f in range(len(s["image"]))]
    if max_label is None:
        max_label = max(
            int(max(np.max(s["pred"]), np.max(s["label"]) if s.get("label") is not None else 0)) for s in samples
        )
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.5 * len(rows)), squeeze=False)
    for r, (s, f) in enumerate(rows):
        label = s.get("label")
        panels = [
            (s["image"][f], "gray", "input"),
            (None if label is None else np.ma.masked_less(label[f], 0), "viridis", "ground truth"),
            (s["pred"][f], "viridis", "prediction"),
        ]
        for c, (img, cmap, name) in enumerate(panels):
            ax = axes[r, c]
            ax.axis("off")
            if img is None:
                continue
            kw = {} if cmap == "gray" else {"vmin": 0, "vmax": max(1, max_label), "interpolation": "nearest"}
            ax.imshow(img, cmap=cmap, **kw)
            if r == 0 or f == 0:
                ax.set_title(f"{name}" + (f"\n{s.get('title', '')}" if c == 0 and f == 0 else ""), fontsize=7)
    fig.tight_layout()
    return fig
