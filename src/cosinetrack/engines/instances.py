"""Instance segmentation of a folder of the user's still images: normalise, network, cluster, write PNGs.

The leaf bundle's ``inference`` run. Each image goes through the same normalisation as validation,
is scaled to fit the network input, and its embeddings (last stack) are clustered on that canvas, as
the paper does; the labels are resampled to the image's own size and written as CVPPP label files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from cosinetrack.clustering import check_cluster_kwargs, cluster_embeddings, restore_label_size
from cosinetrack.data.cvppp import count_leaves, read_cvppp_image, write_cvppp_label, write_leaf_counts
from cosinetrack.engines.checkpoint import load_weights
from cosinetrack.engines.inferer import stream_frames
from cosinetrack.io.atomic import atomic_directory, refuse_output_over_inputs
from cosinetrack.transforms.augment import clip_eval_transforms

__all__ = ["segment_image_instances", "segment_plants_to_folder"]


@torch.inference_mode()
def segment_image_instances(
    network: torch.nn.Module,
    image: np.ndarray,
    image_size: Sequence[int],
    cluster_kwargs: Mapping[str, Any],
    device: str | torch.device = "cpu",
    i_min: float = 1.0,
    i_max: float = 1.0,
) -> np.ndarray:
    """Instance labels ``(H, W)`` int32 (0 = background) of one raw image ``(C, H, W)``.

    Args:
        network: a :class:`~cosinetrack.networks.RecurrentStackedHourglass` (its weights loaded).
        image: the photograph, channel first, any value range (normalised here like validation).
        image_size: network input size ``(h, w)``; clustering happens on this canvas.
        cluster_kwargs: options of :func:`~cosinetrack.clustering.cluster_embeddings` (``min_samples``,
            ``coordinate_scale``, ...).
        device: where the network runs.
        i_min, i_max: robust normalisation percentages (the bundle's augmentation values).
    """
    x = clip_eval_transforms(i_min, i_max, per_channel=False)({"image": image})["image"]
    x = torch.as_tensor(x, dtype=torch.float32)[None, None].to(device)  # (1, 1, C, H, W)
    network.eval()
    emb = stream_frames(network, x, image_size, restore_size=False)[0, 0]  # (D, h, w)
    labels = cluster_embeddings(emb.float().cpu(), **dict(cluster_kwargs))
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
) -> list[str]:
    """Segment every plant image and write ``<name>_label.png`` files plus ``leaf_counts.csv``.

    ``plants`` are entries of :func:`~cosinetrack.data.find_plant_images`. The label files are palette
    PNGs like the official CVPPP ones (index = leaf id); ``leaf_counts.csv`` is in the ``A1.csv`` format.
    ``out_dir`` appears complete or not at all (written in a temporary folder, then renamed); an
    existing ``out_dir`` is an error unless ``overwrite``. It may not be, contain or lie inside any
    input (the folder of any photo, ``ckpt_path``, ``input_paths`` such as the input folder), with or
    without ``overwrite``; this is checked before anything is read or written.

    Returns:
        the written label paths (in ``out_dir``).
    """
    cluster_kwargs = check_cluster_kwargs(dict(cluster_kwargs))
    inputs = [*input_paths, ckpt_path, *{os.path.dirname(os.path.abspath(p["image"])) for p in plants}]
    refuse_output_over_inputs(out_dir, inputs)
    if ckpt_path:
        load_weights(network, ckpt_path, map_location=device)
    written, counts = [], {}
    with atomic_directory(out_dir, overwrite=overwrite, inputs=inputs) as tmp:
        for plant in plants:
            image = read_cvppp_image(plant["image"])
            labels = segment_image_instances(network, image, image_size, cluster_kwargs, device, i_min, i_max)
            if labels.max(initial=0) > 255:
                raise ValueError(f"{plant['image']}: {int(labels.max())} instances do not fit a palette PNG")
            name = f"{plant['name']}_label.png"
            write_cvppp_label(labels.astype(np.uint8), os.path.join(tmp, name))
            counts[plant["name"]] = count_leaves(labels)
            written.append(os.path.join(out_dir, name))
            print(f"{plant['name']}: {counts[plant['name']]} leaves", flush=True)
        write_leaf_counts(counts, os.path.join(tmp, "leaf_counts.csv"))
    return written
