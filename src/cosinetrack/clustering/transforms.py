"""MONAI transforms that cluster embeddings into instance labels (post-processing of a bundle).

:class:`ClusterEmbeddings` is the array transform, :class:`ClusterEmbeddingsd` its dictionary version;
both take the keyword arguments of :func:`~cosinetrack.clustering.cluster_embeddings`, so a bundle
can write e.g.::

    {"_target_": "cosinetrack.clustering.ClusterEmbeddingsd", "keys": "pred", "output_key": "instances",
     "coordinate_scale": 0.001, "min_samples": 50}
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

from cosinetrack.clustering.embedding_clustering import cluster_embeddings
from cosinetrack.clustering.options import check_cluster_kwargs

__all__ = ["clustering_for_canvas", "scale_size_options", "ClusterEmbeddings", "ClusterEmbeddingsd"]


def clustering_for_canvas(
    options: Mapping[str, Any], options_size: Sequence[int], canvas: Sequence[int]
) -> dict[str, Any]:
    """Clustering options chosen for an ``options_size`` canvas, converted to a ``canvas`` of another size.

    With pixels ``k`` times larger in each direction an object covers ``k**2`` times more pixels and
    its coordinates grow ``k`` times: ``min_samples``, a given ``min_cluster_size`` and a numeric ``min_size``
    scale by ``k**2`` (``min_samples`` at least 5, ``min_cluster_size`` at least 2) and ``coordinate_scale``
    by ``1 / k``. E.g. the leaf bundle's
    ``min_samples`` 50 at 256 x 256 becomes 13 for a model trained at 128 x 128.

    Args:
        options: :func:`cluster_embeddings` options (checked).
        options_size: ``(h, w)`` the options were chosen for.
        canvas: ``(h, w)`` the embeddings will have.
    """
    options = check_cluster_kwargs(options, "clustering")
    k = (float(canvas[0]) * float(canvas[1]) / (float(options_size[0]) * float(options_size[1]))) ** 0.5
    if "min_samples" in options:
        options["min_samples"] = max(5, math.floor(float(options["min_samples"]) * k * k + 0.5))  # 12.5 -> 13
    if options.get("coordinate_scale") is not None:
        options["coordinate_scale"] = float(options["coordinate_scale"]) / k
    return scale_size_options(options, k)


def scale_size_options(options: Mapping[str, Any], k: float) -> dict[str, Any]:
    """``options`` with a given ``min_cluster_size`` and a numeric ``min_size`` (both pixel counts) scaled by
    ``k**2`` for pixels ``k`` times smaller in each direction (``min_cluster_size`` rounded, at least 2);
    every other option as it is."""
    options = dict(options)
    if isinstance(options.get("min_cluster_size"), (int, float)) and not isinstance(options["min_cluster_size"], bool):
        options["min_cluster_size"] = max(2, math.floor(float(options["min_cluster_size"]) * k * k + 0.5))
    if isinstance(options.get("min_size"), (int, float)) and not isinstance(options["min_size"], bool):
        options["min_size"] = float(options["min_size"]) * k * k
    return options


def _labels_like(labels: np.ndarray, img: Any) -> NdarrayOrTensor:
    """``labels`` as the container type of ``img`` (numpy, tensor on its device, MetaTensor with its meta)."""
    if isinstance(img, MetaTensor):
        out = MetaTensor(torch.from_numpy(labels).to(img.device))
        out.copy_meta_from(img, copy_attr=False)
        return out
    if isinstance(img, torch.Tensor):
        return torch.from_numpy(labels).to(img.device)
    return labels


class ClusterEmbeddings(Transform):
    """Cluster a channel-first embedding image ``(D, H, W)`` or frames ``(T, D, H, W)`` into instances.

    Args:
        add_channel_dim: add a leading channel axis to the labels, ``(1, H, W)`` / ``(1, T, H, W)``,
            for MONAI writers that expect channel-first images. Default ``False``: ``(H, W)`` /
            ``(T, H, W)`` as returned by :func:`cluster_embeddings`.
        cluster_kwargs: options of :func:`~cosinetrack.clustering.cluster_embeddings`
            (``coordinate_scale``, ``min_samples``, ``background``, ...).

    Returns (when called):
        int32 labels, ``0`` = background, of the input's type (numpy array, tensor on the input's
        device, or MetaTensor with the input's meta data).
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(self, add_channel_dim: bool = False, **cluster_kwargs: Any) -> None:
        self.add_channel_dim = add_channel_dim
        self.cluster_kwargs = check_cluster_kwargs(cluster_kwargs)

    def __call__(self, img: NdarrayOrTensor, foreground_mask: NdarrayOrTensor | None = None) -> NdarrayOrTensor:
        """Labels of ``img``; ``foreground_mask`` (``(H, W)`` / ``(T, H, W)``) overrides the configured one."""
        kwargs = dict(self.cluster_kwargs)
        if foreground_mask is not None:
            kwargs["foreground_mask"] = foreground_mask
        labels = cluster_embeddings(img, **kwargs)
        if self.add_channel_dim:
            labels = labels[None]
        return _labels_like(labels, img)


class ClusterEmbeddingsd(MapTransform):
    """Dictionary version of :class:`ClusterEmbeddings`: clusters ``data[key]`` into ``data[output_key]``.

    Args:
        keys: key(s) of the embeddings, each ``(D, H, W)`` or ``(T, D, H, W)``.
        output_key: where to put the labels; one name per key. ``None``: ``"<key>_instances"``.
            The default ``"instances"`` needs a single key.
        mask_key: optional key of a foreground mask ``(H, W)`` / ``(T, H, W)`` (e.g. a semantic
            segmentation) passed as ``foreground_mask``.
        add_channel_dim: see :class:`ClusterEmbeddings`.
        allow_missing_keys: skip keys that are not in the data.
        cluster_kwargs: options of :func:`~cosinetrack.clustering.cluster_embeddings`.
    """

    backend = ClusterEmbeddings.backend

    def __init__(
        self,
        keys: KeysCollection = "pred",
        output_key: str | Sequence[str] | None = "instances",
        mask_key: str | None = None,
        add_channel_dim: bool = False,
        allow_missing_keys: bool = False,
        **cluster_kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if output_key is None:
            self.output_keys: tuple[Hashable, ...] = tuple(f"{k}_instances" for k in self.keys)
        elif isinstance(output_key, str):
            self.output_keys = (output_key,)
        else:
            self.output_keys = tuple(output_key)
        if len(self.output_keys) != len(self.keys):
            raise ValueError(
                f"output_key: need one output key per key, got keys {list(self.keys)} and output keys "
                f"{list(self.output_keys)} (output_key=None names them '<key>_instances')"
            )
        self.mask_key = mask_key
        self.cluster = ClusterEmbeddings(add_channel_dim=add_channel_dim, **cluster_kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        mask = None if self.mask_key is None else d[self.mask_key]
        for key, out_key in self.key_iterator(d, self.output_keys):
            d[out_key] = self.cluster(d[key], foreground_mask=mask)
        return d
