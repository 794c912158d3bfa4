"""Figures logged to MLflow: what a few validation frames look like, and the functions that pick them.

Two kinds of figure, each with the function that takes its frames out of an evaluator's output:

* semantic segmentation (LV-MRI): :func:`segmentation_sample` + :func:`segmentation_panel`, a row per
  frame of input | ground truth | prediction;
* embeddings (leaves, cells): :func:`embedding_sample` + :func:`embedding_panel`, a row per frame of
  input | three embedding dimensions as RGB | clustered instances | ground truth, like the paper's
  Fig. 1, 3b and 4.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from cosinetrack.viz.lineage import lineage_tree_figure  # noqa: E402

__all__ = [
    "segmentation_panel",
    "segmentation_sample",
    "embedding_panel",
    "embedding_sample",
    "embedding_rgb",
    "instance_colors",
    "tracking_sample",
    "tracking_figures",
]


def _numpy(x: Any) -> np.ndarray | None:
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def _spread(frames: Sequence[int], num_frames: int) -> list[int]:
    """Up to ``num_frames`` entries of ``frames``, evenly spread."""
    if not frames:
        return []
    idx = np.unique(np.linspace(0, len(frames) - 1, min(num_frames, len(frames))).round().astype(int))
    return [frames[i] for i in idx]


def segmentation_sample(output: Mapping[str, Any], num_frames: int = 4, title: str = "") -> dict[str, Any]:
    """Pick a slice and up to ``num_frames`` labeled frames of one evaluated case for :func:`segmentation_panel`.

    ``output`` holds ``image`` ``(Z, T, C, H, W)``, ``label`` ``(Z, T, H, W)`` or ``None`` and ``pred``
    ``(Z, T, K, H, W)`` class scores (or ``(Z, T, H, W)`` labels), as a case evaluator gives them. The
    slice with the most foreground is drawn.
    """
    image, label, pred = output["image"], output.get("label"), output["pred"]
    pred = pred.argmax(dim=2) if pred.ndim == 5 else pred
    z = image.shape[0] // 2
    if label is not None:
        fg = (label > 0).flatten(1).sum(1)
        z = int(torch.argmax(fg)) if fg.numel() else z
    labeled = (label[z] >= 0).flatten(1).all(1).nonzero().flatten().tolist() if label is not None else []
    ts = _spread(labeled or list(range(image.shape[1])), num_frames)
    return {
        "image": _numpy(image[z, ts, 0]),
        "label": None if label is None else _numpy(label[z, ts]),
        "pred": _numpy(pred[z, ts]),
        "title": f"{title}slice {z}, frames {ts}",
    }


def segmentation_panel(samples: Sequence[Mapping[str, Any]], max_label: int | None = None):
    """A grid with one row per frame: input (grey), ground truth and prediction (label colors).

    Args:
        samples: dicts with ``image`` ``(F, H, W)``, ``label`` ``(F, H, W)`` or ``None`` (``-1`` = no label),
            ``pred`` ``(F, H, W)`` integer arrays and an optional ``title``.
        max_label: the largest label value (fixes the color scale); default: the largest value seen.

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


def embedding_rgb(embeddings: np.ndarray, dims: Sequence[int] = (0, 1, 2)) -> np.ndarray:
    """Three dimensions of unit-normalized embeddings ``(D, H, W)`` as an RGB image ``(H, W, 3)`` in [0, 1].

    Each pixel's embedding is L2-normalized over ``D``; the chosen dimensions (cosines in [-1, 1]) map
    linearly to [0, 1]. Dimensions beyond ``D`` are drawn as 0.5 (grey).
    """
    e = np.asarray(embeddings, dtype=np.float32)
    if e.ndim != 3:
        raise ValueError(f"embeddings must be (D, H, W), got shape {e.shape}")
    unit = e / np.maximum(np.linalg.norm(e, axis=0, keepdims=True), 1e-8)
    rgb = np.full((3,) + e.shape[1:], 0.5, dtype=np.float32)
    for c, d in enumerate(dims[:3]):
        if d < e.shape[0]:
            rgb[c] = (unit[d] + 1.0) / 2.0
    return np.clip(rgb.transpose(1, 2, 0), 0.0, 1.0)


def instance_colors(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Instance labels ``(H, W)`` as an RGB image ``(H, W, 3)``: 0 black, -1 dark grey, ids random colors."""
    lab = np.asarray(labels).astype(np.int64)
    top = max(int(lab.max(initial=0)), 0)
    lut = np.random.default_rng(seed).uniform(0.25, 1.0, size=(top + 2, 3)).astype(np.float32)
    lut[0] = 0.0
    rgb = lut[np.clip(lab, 0, None)]
    rgb[lab < 0] = 0.2
    return rgb


def _display_image(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """``(C, H, W)`` network input (values about [-1, 1]) as something imshow draws: RGB or grey."""
    img = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(img, (1, 99)) if img.size else (0.0, 1.0)
    img = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
    if img.shape[0] == 3:
        return img.transpose(1, 2, 0), None
    return img[0], "gray"


def embedding_sample(
    output: Mapping[str, Any], num_frames: int = 4, title: str = "", instances_key: str = "instances"
) -> dict[str, Any]:
    """Pick up to ``num_frames`` frames of the first item of a batch for :func:`embedding_panel`.

    ``output`` holds ``image`` ``(B, T, C, H, W)``, ``pred`` ``(B, T, D, h, w)`` embeddings (the last
    stack; a tuple of stacks is reduced to its last element), optionally ``label`` ``(B, T, H, W)`` or
    ``(B, T, 1, H, W)`` and ``instances_key`` ``(B, T, H, W)`` clustered instances. ``T = 1`` for still
    images.
    """
    image, pred = output["image"], output["pred"]
    pred = pred[-1] if isinstance(pred, (tuple, list)) else pred
    label, inst = output.get("label"), output.get(instances_key)
    if label is not None and label.ndim == image.ndim:
        label = label[:, :, 0]
    ts = _spread(list(range(image.shape[1])), num_frames)
    return {
        "image": [_numpy(image[0, t]) for t in ts],
        "embedding": [_numpy(pred[0, t]) for t in ts],
        "instances": None if inst is None else [_numpy(inst[0, t]) for t in ts],
        "label": None if label is None else [_numpy(label[0, t]) for t in ts],
        "title": f"{title}frames {ts}" if image.shape[1] > 1 else title.rstrip(", "),
    }


def embedding_panel(samples: Sequence[Mapping[str, Any]]):
    """A grid with one row per frame: input | embedding dims 0-2 as RGB | instances | ground truth.

    Args:
        samples: dicts from :func:`embedding_sample`: lists (one entry per frame) of ``image``
            ``(C, H, W)``, ``embedding`` ``(D, h, w)``, ``instances`` ``(H, W)`` or ``None``, ``label``
            ``(H, W)`` or ``None``, and ``title``.

    Returns:
        a matplotlib Figure (the caller saves and closes it).
    """
    rows = [(s, f) for s in samples for f in range(len(s["image"]))]
    fig, axes = plt.subplots(len(rows), 4, figsize=(10, 2.6 * len(rows)), squeeze=False)
    for r, (s, f) in enumerate(rows):
        img, cmap = _display_image(s["image"][f])
        panels = [
            ("input", img, cmap),
            ("embedding dims 0-2", embedding_rgb(s["embedding"][f]), None),
            ("instances", None if s.get("instances") is None else instance_colors(s["instances"][f]), None),
            ("ground truth", None if s.get("label") is None else instance_colors(s["label"][f]), None),
        ]
        for c, (name, data, cm) in enumerate(panels):
            ax = axes[r, c]
            ax.axis("off")
            if data is None:
                continue
            ax.imshow(data, cmap=cm, interpolation="nearest")
            if r == 0 or f == 0:
                ax.set_title(name + (f"\n{s.get('title', '')}" if c == 0 and f == 0 else ""), fontsize=7)
    fig.tight_layout()
    return fig


def tracking_sample(output: Mapping[str, Any], num_frames: int = 4, title: str = "") -> dict[str, Any]:
    """The frames a video-tracking step kept (``output["sample"]``, see
    :class:`~cosinetrack.apps.cell.VideoTrackingStep`), in the format of :func:`embedding_sample`, plus the
    track table."""
    sample = dict(output.get("sample") or {})
    if not sample:
        return {"image": [], "embedding": [], "instances": None, "label": None, "title": title, "tracks": None}
    for key in ("image", "embedding", "instances"):
        if sample.get(key) is not None:
            sample[key] = list(sample[key])[:num_frames]
    sample["title"] = f"{title}{sample.get('title', '')}"
    return sample


def tracking_figures(samples: Sequence[Mapping[str, Any]]) -> list[tuple[str, Any]]:
    """Figures of tracked videos: the embedding panel of the kept frames and the lineage tree of each video.

    Returns ``[("embeddings", Figure), ("lineage_<i>", Figure), ...]`` for
    :class:`~cosinetrack.handlers.MLflowFigureHandler`.
    """

    figures = []
    drawable = [s for s in samples if s.get("image")]
    if drawable:
        figures.append(("embeddings", embedding_panel(drawable)))
    for i, s in enumerate(samples):
        if s.get("tracks") is not None:
            figures.append((f"lineage_{i}", lineage_tree_figure(s["tracks"], s.get("num_frames"), s.get("title", ""))))
    return figures


instance_colours = instance_colors  # deprecated spelling of earlier versions
