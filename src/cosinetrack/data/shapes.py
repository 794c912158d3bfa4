"""Drawing shapes for the synthetic data sets: signed distances and partial-volume coverage of a pixel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["ellipse_signed_distance", "soft_coverage"]


def soft_coverage(sd: np.ndarray) -> np.ndarray:
    """Partial-volume coverage of a pixel by a shape from its signed distance ``sd`` (px, < 0 inside)."""
    return np.clip(0.5 - sd, 0.0, 1.0)


def ellipse_signed_distance(
    yy: np.ndarray,
    xx: np.ndarray,
    cy: Any,
    cx: Any,
    ry: Any,
    rx: Any,
    angle: float,
    wobble: Sequence[tuple[int, float, float]] = (),
) -> np.ndarray:
    """Approximate signed distance (px, negative inside) to an ellipse, exact on the boundary to first order.

    Args:
        yy, xx: row / column coordinates (broadcastable arrays).
        cy, cx: center (scalars or arrays broadcastable with ``yy``).
        ry, rx: semi-axes (px) along the ellipse's own "row" and "column" axes.
        angle: rotation (radians) of the ellipse axes.
        wobble: ``(k, amplitude, phase)`` terms: the radius is scaled by
            ``1 + sum(amplitude * cos(k * theta - phase))`` at the elliptic angle ``theta``.
    """
    dy = yy - cy
    dx = xx - cx
    c, s = np.cos(angle), np.sin(angle)
    u = dy * c + dx * s
    v = -dy * s + dx * c
    q = np.sqrt((u / ry) ** 2 + (v / rx) ** 2)
    grad = np.sqrt((u / ry**2) ** 2 + (v / rx**2) ** 2) / np.maximum(q, 1e-9)
    scale = 1.0
    if wobble:
        theta = np.arctan2(v / rx, u / ry)
        scale = 1.0 + sum(a * np.cos(k * theta - p) for k, a, p in wobble)
    return (q - scale) / np.maximum(grad, 1e-9)
