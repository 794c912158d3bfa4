"""Leaves end to end: a folder of photos -> embeddings -> clustered leaf label PNGs.

The leaf bundle's ``inference`` run (:func:`segment_plants_to_folder`). Each image goes through the same
normalization as validation, is scaled to fit the network input, and its embeddings (last stack) are
clustered on that canvas, as the paper does; the labels are resampled to the image's own size and written
as CVPPP label files. :func:`cluster_folder` clusters a folder of saved ``.npy`` embeddings into PNGs.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine

from cosinetrack.apps.leaf.cvppp import count_leaves, read_cvppp_image, write_cvppp_label, write_leaf_counts
from cosinetrack.clustering.embedding_clustering import cluster_embeddings
from cosinetrack.clustering.handlers import EmbeddingClusteringHandler
from cosinetrack.clustering.options import check_cluster_kwargs
from cosinetrack.distributed import init_distributed, rank_device, shard
from cosinetrack.inference.inferer import FLIP_VIEWS, resolve_amp, stream_frames
from cosinetrack.inference.progress import FrameProgress
from cosinetrack.io.atomic import refuse_output_over_inputs, shared_atomic_directory
from cosinetrack.io.png import InstancePNGWriter
from cosinetrack.networks.ensemble import embedding_views
from cosinetrack.options import as_flag
from cosinetrack.transforms.augment import clip_eval_transforms
from cosinetrack.transforms.spatial import restore_label_size
from cosinetrack.workflows.checkpoint import load_weights

__all__ = ["segment_image_instances", "segment_plants_to_folder", "cluster_folder"]


logger = logging.getLogger("cosinetrack")


@torch.inference_mode()
def segment_image_instances(
    network: torch.nn.Module,
    image: np.ndarray,
    image_size: Sequence[int],
    cluster_kwargs: Mapping[str, Any],
    device: str | torch.device = "cpu",
    i_min: float = 1.0,
    i_max: float = 1.0,
    amp: bool | str | None = False,
    test_time_flips: bool = False,
) -> np.ndarray:
    """Instance labels ``(H, W)`` int32 (0 = background) of one raw image ``(C, H, W)``.

    Args:
        network: a :class:`~cosinetrack.networks.RecurrentStackedHourglass` (its weights loaded).
        image: the photograph, channel first, any value range (normalized here like validation).
        image_size: network input size ``(h, w)``; clustering happens on this canvas.
        cluster_kwargs: options of :func:`~cosinetrack.clustering.cluster_embeddings` (``min_samples``,
            ``coordinate_scale``, ...).
        device: where the network runs.
        i_min, i_max: robust normalization percentages (the bundle's augmentation values).
        amp: bfloat16 autocast of the network on CPU (:func:`~cosinetrack.inference.resolve_amp`);
            the embeddings are clustered in float32 either way.
        test_time_flips: test-time flips (:func:`~cosinetrack.inference.stream_frames`): the four flipped views'
            embeddings concatenated, four times the network's work; the background is then decided per view
            (``views=4`` of :class:`~cosinetrack.clustering.options.ClusteringOptions`, set here).
    """
    x = clip_eval_transforms(i_min, i_max, per_channel=False)({"image": image})["image"]
    x = torch.as_tensor(x, dtype=torch.float32)[None, None].to(device)  # (1, 1, C, H, W)
    network.eval()
    emb = stream_frames(network, x, image_size, restore_size=False, amp=amp, test_time_flips=test_time_flips)
    emb = emb[0, 0]  # (D, h, w) float32; (4 * D, h, w) with test-time flips
    kwargs = dict(cluster_kwargs)
    views = (len(FLIP_VIEWS) if test_time_flips else 1) * embedding_views(network)
    if views > 1:
        kwargs["views"] = views
    labels = cluster_embeddings(emb.float().cpu(), **kwargs)
    return restore_label_size(labels, image.shape[-2:]).numpy()


def segment_plants_to_folder(
    network: torch.nn.Module,
    plants: Sequence[Mapping[str, Any]],
    out_dir: str,
    ckpt_path: str | None,
    image_size: Sequence[int],
    cluster_kwargs: Mapping[str, Any],
    i_min: float = 1.0,
    i_max: float = 1.0,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    input_paths: Sequence[str | None] = (),
    amp: bool | str | None = False,
    progress_every: int = 100,
    test_time_flips: bool | str = False,
) -> list[str]:
    """Segment every plant image and write ``<name>_label.png`` files plus ``leaf_counts.csv``.

    ``plants`` are entries of :func:`~cosinetrack.apps.leaf.find_plant_images`. The label files are palette
    PNGs like the official CVPPP ones (index = leaf id); ``leaf_counts.csv`` is in the ``A1.csv`` format.
    ``out_dir`` appears complete or not at all (written in a temporary folder, then renamed); an
    existing ``out_dir`` is an error unless ``overwrite``. It may not be, contain or lie inside any
    input (the folder of any photo, ``ckpt_path``, ``input_paths`` such as the input folder), with or
    without ``overwrite``; this is checked before anything is read or written. ``amp``: bfloat16
    autocast of the network on CPU (the bundle's ``amp``, see :func:`segment_image_instances`);
    ``test_time_flips``: the four flipped views (the bundle's ``test_time_flips``, see :func:`segment_image_instances`).
    Progress: a bar when stderr is a terminal, else a log line every ``progress_every`` photos.

    Under ``torchrun`` the photos are split over the ranks (each segments every N-th) into one shared
    temporary folder; rank 0 writes ``leaf_counts.csv`` from every rank's counts and renames the folder
    once every rank succeeded (:func:`~cosinetrack.io.atomic.shared_atomic_directory`).

    Returns:
        the written label paths (in ``out_dir``; all of them, on every rank).
    """
    init_distributed(backend="gloo")  # a no-op without torchrun; only small objects are exchanged
    cluster_kwargs = check_cluster_kwargs(dict(cluster_kwargs))
    resolve_amp(amp)  # validates before anything is read
    test_time_flips = as_flag(test_time_flips, "test_time_flips")
    inputs = [*input_paths, ckpt_path, *{os.path.dirname(os.path.abspath(p["image"])) for p in plants}]
    refuse_output_over_inputs(out_dir, inputs)
    device = rank_device(device)
    network.to(device)
    if ckpt_path:
        load_weights(network, ckpt_path, map_location=device)

    def write_counts(tmp: str, results: list[tuple[str, str, int]]) -> None:
        write_leaf_counts({name: count for name, _, count in results}, os.path.join(tmp, "leaf_counts.csv"))

    mine = shard(plants)
    progress = FrameProgress("leaf inference", len(mine), progress_every)
    with progress, shared_atomic_directory(out_dir, overwrite=overwrite, inputs=inputs, finish=write_counts) as folder:
        for plant in mine:
            image = read_cvppp_image(plant["image"])
            labels = segment_image_instances(
                network, image, image_size, cluster_kwargs, device, i_min, i_max, amp, test_time_flips
            )
            if labels.max(initial=0) > 255:
                raise ValueError(f"{plant['image']}: {int(labels.max())} instances do not fit a palette PNG")
            name = f"{plant['name']}_label.png"
            write_cvppp_label(labels.astype(np.uint8), os.path.join(folder.path, name))
            count = count_leaves(labels)
            folder.results.append((plant["name"], os.path.join(out_dir, name), count))
            progress.update()
            logger.info("%s: %d leaves", plant["name"], count)
    return [path for _, path, _ in folder.merged]


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
