"""Ignite post-processing: cluster the embeddings an engine outputs, and write instance images.

:class:`EmbeddingClusteringHandler` runs :func:`~cosinetrack.clustering.cluster_embeddings` on every
batch item after each iteration and can hand the labels to a ``writer`` such as
:class:`InstancePNGWriter`; :func:`write_instance_png` / :func:`read_instance_png` store one label
image as PNG, and :func:`cluster_folder` clusters a folder of saved ``.npy`` embeddings into PNGs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents

from cosinetrack.clustering.embedding_clustering import cluster_embeddings
from cosinetrack.clustering.options import check_cluster_kwargs
from cosinetrack.transforms.spatial import restore_label_size

__all__ = ["EmbeddingClusteringHandler"]


Writer = Callable[[torch.Tensor, Engine, int], Any]


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
            fitted canvas (:class:`~cosinetrack.inference.StreamingInferer` with ``restore_size=False``):
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
        event = (
            IterationEvents.MODEL_COMPLETED
            if IterationEvents.MODEL_COMPLETED in engine._allowed_events
            else (Events.ITERATION_COMPLETED)
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
            labels = [self._cluster(x, None if masks is None else masks[i], sizes[i]) for i, x in enumerate(items)]
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
