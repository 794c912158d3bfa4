"""Label images as PNG: one palette, one writer, one reader, and the Ignite-side writer of a batch."""

from __future__ import annotations

import colorsys
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine
from PIL import Image

from cosinetrack.clustering.embedding_clustering import _to_numpy
from cosinetrack.io.atomic import atomic_file

__all__ = ["instance_palette", "write_instance_png", "read_instance_png", "InstancePNGWriter"]


def instance_palette(n: int = 256) -> np.ndarray:
    """``(n, 3)`` uint8 colors: black for background ``0``, then well-separated hues (golden ratio)."""
    colors = np.zeros((n, 3), dtype=np.uint8)
    for i in range(1, n):
        h = (i * 0.618033988749895) % 1.0
        s = 0.55 + 0.45 * ((i * 7) % 5) / 4
        v = 0.75 + 0.25 * ((i * 3) % 4) / 3
        colors[i] = np.round(np.array(colorsys.hsv_to_rgb(h, s, v)) * 255)
    return colors


def write_instance_png(labels: Any, path: str | os.PathLike, mode: str = "auto") -> str:
    """Write an instance label image ``(H, W)`` as PNG, atomically (temporary file + ``os.replace``).

    Args:
        labels: ``(H, W)`` non-negative integer labels (array or tensor), ``0`` = background.
        path: the ``.png`` file; its folder is created if needed.
        mode: ``"palette"`` (8-bit indexed color image: the pixel values are the ids, viewers show
            colors; ids up to 255), ``"uint16"`` (16-bit grey, ids up to 65535) or ``"auto"``
            (palette when the ids fit, else uint16).

    Returns:
        the path written, as a string. Read it back with :func:`read_instance_png`.

    Raises:
        ValueError: labels not 2-D, negative, or too large for ``mode``.
    """
    lab = _to_numpy(labels, "labels")
    if lab.ndim != 2:
        raise ValueError(f"labels: expected a 2-D (H, W) label image, got shape {tuple(lab.shape)}")
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels: expected integer labels, got dtype {lab.dtype}")
    top = int(lab.max(initial=0))
    if lab.size and int(lab.min()) < 0:
        raise ValueError("labels: negative ids cannot be written as PNG")
    if mode == "auto":
        mode = "palette" if top <= 255 else "uint16"
    if mode == "palette":
        if top > 255:
            raise ValueError(f"labels: id {top} does not fit an 8-bit palette PNG; use mode='uint16'")
        image = Image.fromarray(np.ascontiguousarray(lab, dtype=np.uint8))
        image.putpalette(instance_palette(256).ravel().tolist())  # "L" -> "P", values kept
    elif mode == "uint16":
        if top > 65535:
            raise ValueError(f"labels: id {top} does not fit a 16-bit PNG")
        image = Image.fromarray(lab.astype(np.uint16))
    else:
        raise ValueError(f"mode: expected 'auto', 'palette' or 'uint16', got {mode!r}")
    path = os.fspath(path)
    with atomic_file(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG")
    return path


def read_instance_png(path: str | os.PathLike) -> np.ndarray:
    """Read a label PNG written by :func:`write_instance_png` as int32 ``(H, W)`` ids."""
    with Image.open(path) as image:
        if image.mode not in ("P", "L", "I;16", "I;16B", "I"):
            raise ValueError(f"{os.fspath(path)}: not a label PNG (mode {image.mode})")
        return np.asarray(image).astype(np.int32)


def _item_name(engine: Engine, index: int, name_key: str) -> str | None:
    """The name (usually an input path) of batch item ``index`` from the engine output or batch."""
    for source in (engine.state.output, engine.state.batch):
        if isinstance(source, Mapping) and name_key in source:
            names = source[name_key]
            if isinstance(names, (str, os.PathLike)):
                return os.fspath(names) if index == 0 else None
            return os.fspath(names[index])
        if isinstance(source, Sequence) and not isinstance(source, str) and index < len(source):
            item = source[index]
            if isinstance(item, Mapping) and name_key in item:
                return os.fspath(item[name_key])
    return None


def _stem(name: str) -> str:
    base = os.path.basename(name.rstrip("/\\"))
    for ext in (".nii.gz", ".npy", ".npz", ".png", ".tif", ".tiff", ".nii", ".pt"):
        if base.lower().endswith(ext):
            return base[: -len(ext)]
    return os.path.splitext(base)[0] or base


class InstancePNGWriter:
    """A ``writer`` for :class:`EmbeddingClusteringHandler` that writes label PNGs into ``output_dir``.

    The file name comes from the item's name (``name_key`` in ``engine.state.output`` or
    ``engine.state.batch``, a list with one entry per batch item, typically the input path): ``<stem>.png``
    for ``(H, W)`` labels, ``<stem>_t000.png, <stem>_t001.png, ...`` for ``(T, H, W)``. Without a name,
    ``it<iteration>_<index>``. It refuses to write next to the input: a name whose folder is
    ``output_dir`` raises ``ValueError``. The written paths are collected in :attr:`written`.

    Args:
        output_dir: folder of the PNGs (created if needed).
        name_key: key of the item names.
        mode: PNG mode, see :func:`write_instance_png`.
    """

    def __init__(self, output_dir: str | os.PathLike, name_key: str = "name", mode: str = "auto") -> None:
        self.output_dir = os.path.abspath(os.fspath(output_dir))
        self.name_key = name_key
        self.mode = mode
        self.written: list[str] = []

    def __call__(self, labels: torch.Tensor, engine: Engine, index: int) -> list[str]:
        name = _item_name(engine, index, self.name_key)
        if name is None:
            stem = f"it{engine.state.iteration:06d}_{index}"
        else:
            source_dir = os.path.dirname(os.path.abspath(name))
            if os.path.dirname(name) and os.path.realpath(source_dir) == os.path.realpath(self.output_dir):
                raise ValueError(
                    f"{name}: refusing to write instance images into the input folder {source_dir}; "
                    f"choose another output_dir"
                )
            stem = _stem(name)
        lab = _to_numpy(labels, "labels")
        if lab.ndim == 2:
            paths = [write_instance_png(lab, os.path.join(self.output_dir, f"{stem}.png"), self.mode)]
        elif lab.ndim == 3:
            paths = [
                write_instance_png(frame, os.path.join(self.output_dir, f"{stem}_t{t:03d}.png"), self.mode)
                for t, frame in enumerate(lab)
            ]
        else:
            raise ValueError(f"labels: expected (H, W) or (T, H, W), got shape {tuple(lab.shape)}")
        self.written.extend(paths)
        return paths
