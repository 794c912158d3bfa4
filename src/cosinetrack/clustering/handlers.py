"""Ignite post-processing: cluster the embeddings an engine outputs, and write instance images.

:class:`EmbeddingClusteringHandler` runs :func:`~cosinetrack.clustering.cluster_embeddings` on every
batch item after each iteration and can hand the labels to a ``writer`` such as
:class:`InstancePNGWriter`; :func:`write_instance_png` / :func:`read_instance_png` store one label
image as PNG, and :func:`cluster_folder` clusters a folder of saved ``.npy`` embeddings into PNGs.
"""

from __future__ import annotations

import colorsys
import glob
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents
from PIL import Image

from cosinetrack.clustering.embedding_clustering import _to_numpy, cluster_embeddings
from cosinetrack.clustering.transforms import check_cluster_kwargs
from cosinetrack.io.atomic import atomic_file, refuse_output_over_inputs
from cosinetrack.transforms.spatial import fit_geometry, undo_fit

__all__ = [
    "EmbeddingClusteringHandler",
    "InstancePNGWriter",
    "cluster_folder",
    "instance_palette",
    "read_instance_png",
    "restore_label_size",
    "write_instance_png",
]

Writer = Callable[[torch.Tensor, Engine, int], Any]


def instance_palette(n: int = 256) -> np.ndarray:
    """``(n, 3)`` uint8 colours: black for background ``0``, then well-separated hues (golden ratio)."""
    colours = np.zeros((n, 3), dtype=np.uint8)
    for i in range(1, n):
        h = (i * 0.618033988749895) % 1.0
        s = 0.55 + 0.45 * ((i * 7) % 5) / 4
        v = 0.75 + 0.25 * ((i * 3) % 4) / 3
        colours[i] = np.round(np.array(colorsys.hsv_to_rgb(h, s, v)) * 255)
    return colours


def write_instance_png(labels: Any, path: str | os.PathLike, mode: str = "auto") -> str:
    """Write an instance label image ``(H, W)`` as PNG, atomically (temporary file + ``os.replace``).

    Args:
        labels: ``(H, W)`` non-negative integer labels (array or tensor), ``0`` = background.
        path: the ``.png`` file; its folder is created if needed.
        mode: ``"palette"`` (8-bit indexed colour image: the pixel values are the ids, viewers show
            colours; ids up to 255), ``"uint16"`` (16-bit grey, ids up to 65535) or ``"auto"``
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


def restore_label_size(labels: torch.Tensor | np.ndarray, size: Sequence[int]) -> torch.Tensor:
    """Labels ``(..., h, w)`` on a network canvas back to the original image size ``(H, W)``.

    The canvas is the one :func:`~cosinetrack.transforms.fit_to_size` makes of an ``(H, W)`` image
    (scaled keeping the aspect ratio, padded symmetrically); the padding is cropped and the labels are
    resampled with nearest-neighbour interpolation. Returns int32 ``(..., H, W)``.
    """
    lab = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    lead = lab.shape[:-2]
    flat = lab.reshape(-1, 1, *lab.shape[-2:]).float()
    geo = fit_geometry(size, lab.shape[-2:])
    out = undo_fit(flat, geo, mode="nearest")
    return out.round().to(torch.int32).reshape(*lead, *out.shape[-2:])


def _is_batched_array(x: Any) -> bool:
    return isinstance(x, (torch.Tensor, np.ndarray))


class EmbeddingClusteringHandler:
    """Ignite handler: after every iteration, cluster the output embeddings of each batch item.

    ``engine.state.output`` is a dict (or a list of per-item dicts, MONAI's decollated form).
    ``output[output_key]`` holds the embeddings, possibly as a tuple/list of stack outputs, of which
    element ``stack`` is used (the paper clusters the last stack). Batched embeddings are
    ``(B, D, H, W)`` (one image per item) or ``(B, T, D, H, W)`` (``T`` frames per item, clustered
    jointly so that an instance keeps its id in all of them); per-item dicts hold ``(D, H, W)`` /
    ``(T, D, H, W)``. The labels (int32 tensors on the CPU, ``(H, W)`` / ``(T, H, W)`` per item) are put
    into ``output[result_key]``: a stacked tensor ``(B, H, W)`` / ``(B, T, H, W)`` for batched input, a
    list for a list of items, and per item for per-item dicts. If a ``writer`` is given it is called as
    ``writer(labels, engine, index)`` for every item (``index`` = position in the batch), e.g. an
    :class:`InstancePNGWriter`.

    Args:
        output_key: key of the embeddings in the output.
        result_key: key for the labels.
        stack: which element to use when the embeddings are a tuple/list of stack outputs; ``None``
            means such a list is a list of per-item embeddings instead.
        writer: optional callable ``writer(labels, engine, index)``.
        mask_key: optional key of foreground masks ``(B, H, W)`` / ``(B, T, H, W)`` (or per item) in the
            output, passed as ``foreground_mask``.
        restore_size_key: optional key (e.g. ``"image"``) of an output whose last two axes give the size
            ``(H, W)`` of the original input. The embeddings are then taken to lie on the network's
            fitted canvas (:class:`~cosinetrack.engines.StreamingInferer` with ``restore_size=False``):
            they are clustered there, as the paper does, and the labels are cropped and resampled
            (nearest) to ``(H, W)`` with :func:`~cosinetrack.transforms.undo_fit`. ``t_size`` is then in
            canvas pixels. ``None``: labels have the embeddings' size.
        clustering: options of :func:`~cosinetrack.clustering.cluster_embeddings` as one dict (a bundle's
            ``clustering`` section); ``cluster_kwargs`` given as keywords are added to (and replace) them.
        cluster_kwargs: options of :func:`~cosinetrack.clustering.cluster_embeddings`.
    """

    def __init__(
        self,
        output_key: str = "pred",
        result_key: str = "instances",
        stack: int | None = -1,
        writer: Writer | None = None,
        mask_key: str | None = None,
        restore_size_key: str | None = None,
        clustering: Mapping[str, Any] | None = None,
        **cluster_kwargs: Any,
    ) -> None:
        self.restore_size_key = restore_size_key
        self.output_key = output_key
        self.result_key = result_key
        self.stack = stack
        self.writer = writer
        self.mask_key = mask_key
        self.cluster_kwargs = check_cluster_kwargs({**check_cluster_kwargs(clustering, "clustering"), **cluster_kwargs})

    def attach(self, engine: Engine) -> None:
        """Run this handler after the model of every iteration of ``engine``.

        On MONAI engines that is ``IterationEvents.MODEL_COMPLETED``, so the instances exist before the
        metrics (which update on ``ITERATION_COMPLETED``) read them; on plain Ignite engines it is
        ``Events.ITERATION_COMPLETED``.
        """
        event = IterationEvents.MODEL_COMPLETED if IterationEvents.MODEL_COMPLETED in engine._allowed_events else (
            Events.ITERATION_COMPLETED
        )
        if not engine.has_event_handler(self, event):
            engine.add_event_handler(event, self)

    def _select(self, value: Any) -> Any:
        if isinstance(value, (tuple, list)) and self.stack is not None:
            if not value:
                raise ValueError(f"output[{self.output_key!r}]: empty tuple of stack outputs")
            return value[self.stack]
        return value

    def _cluster(self, embeddings: Any, mask: Any, size: Sequence[int] | None = None) -> torch.Tensor:
        kwargs = dict(self.cluster_kwargs)
        if mask is not None:
            kwargs["foreground_mask"] = mask
        labels = torch.from_numpy(cluster_embeddings(embeddings, **kwargs))
        if size is not None:
            labels = restore_label_size(labels, size)
        return labels

    def __call__(self, engine: Engine) -> None:
        output = engine.state.output
        if isinstance(output, Mapping):
            if self.output_key not in output:
                raise KeyError(f"engine output has no {self.output_key!r}; keys: {sorted(map(str, output))}")
            value = self._select(output[self.output_key])
            masks = output[self.mask_key] if self.mask_key is not None else None
            if _is_batched_array(value):
                if value.ndim not in (4, 5):
                    raise ValueError(
                        f"output[{self.output_key!r}]: expected batched embeddings (B, D, H, W) or "
                        f"(B, T, D, H, W), got shape {tuple(value.shape)}"
                    )
                items = list(value)
            elif isinstance(value, (tuple, list)):
                items = list(value)
            else:
                raise ValueError(f"output[{self.output_key!r}]: expected a tensor/array or a list, got {type(value)}")
            sizes = [None] * len(items)
            if self.restore_size_key is not None:
                sizes = [tuple(output[self.restore_size_key][i].shape[-2:]) for i in range(len(items))]
            labels = [
                self._cluster(x, None if masks is None else masks[i], sizes[i]) for i, x in enumerate(items)
            ]
            if _is_batched_array(value):
                output[self.result_key] = torch.stack(labels) if labels else torch.zeros((0,), dtype=torch.int32)
            else:
                output[self.result_key] = labels
        elif isinstance(output, Sequence) and all(isinstance(o, Mapping) for o in output):
            labels = []
            for item in output:
                size = None if self.restore_size_key is None else tuple(item[self.restore_size_key].shape[-2:])
                lab = self._cluster(
                    self._select(item[self.output_key]), None if self.mask_key is None else item[self.mask_key], size
                )
                item[self.result_key] = lab
                labels.append(lab)
        else:
            raise ValueError(
                f"engine.state.output: expected a dict or a list of dicts holding {self.output_key!r}, "
                f"got {type(output)}"
            )
        if self.writer is not None:
            for i, lab in enumerate(labels):
                self.writer(lab, engine, i)


def cluster_folder(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    pattern: str = "*.npy",
    mode: str = "auto",
    **cluster_kwargs: Any,
) -> list[str]:
    """Cluster every saved embedding file ``input_dir/<pattern>`` into label PNGs in ``output_dir``.

    Each ``.npy`` file holds ``(D, H, W)`` embeddings (written as ``<stem>.png``) or ``(T, D, H, W)``
    frames clustered jointly (written as ``<stem>_t000.png``, ...). Runs an Ignite engine with an
    :class:`EmbeddingClusteringHandler` and an :class:`InstancePNGWriter`; nothing is written into
    ``input_dir``.

    Args:
        input_dir: folder of the embedding files.
        output_dir: folder of the PNGs; must not be, contain or lie inside ``input_dir``.
        pattern: glob pattern of the files within ``input_dir``.
        mode: PNG mode, see :func:`write_instance_png`.
        cluster_kwargs: options of :func:`~cosinetrack.clustering.cluster_embeddings`.

    Returns:
        the written PNG paths, in input order.
    """
    input_dir, output_dir = os.fspath(input_dir), os.fspath(output_dir)
    if not os.path.isdir(input_dir):
        raise FileNotFoundError(f"{input_dir}: input folder does not exist")
    refuse_output_over_inputs(output_dir, [input_dir])  # not inside, not around the input folder
    files = sorted(glob.glob(os.path.join(glob.escape(input_dir), pattern)))
    if not files:
        raise FileNotFoundError(f"{input_dir}: no files match {pattern!r}")

    def load(_: Engine, path: str) -> dict[str, Any]:
        return {"pred": torch.from_numpy(np.load(path))[None], "name": [path]}

    engine = Engine(load)
    writer = InstancePNGWriter(output_dir, name_key="name", mode=mode)
    EmbeddingClusteringHandler(output_key="pred", writer=writer, **cluster_kwargs).attach(engine)
    engine.run(files, max_epochs=1)
    return writer.written
