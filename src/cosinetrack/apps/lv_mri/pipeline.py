"""Prediction over a folder of the user's cine images: read, normalize, stream, argmax, write NIfTI."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from cosinetrack.apps.lv_mri.nifti import read_cine_case, write_case_labels
from cosinetrack.distributed import init_distributed, rank_device, shard
from cosinetrack.inference.inferer import resolve_amp, stream_frames
from cosinetrack.inference.progress import FrameProgress
from cosinetrack.io.atomic import refuse_output_over_inputs, shared_atomic_directory
from cosinetrack.transforms.augment import clip_eval_transforms
from cosinetrack.workflows.checkpoint import load_weights

logger = logging.getLogger("cosinetrack")

__all__ = ["predict_case", "predict_to_folder", "case_input_folders"]


def case_input_folders(cases: Sequence[Mapping[str, Any]]) -> list[str]:
    """The folders of every image and label file of ``cases`` (``{"image": path or [paths], "label": ...}``)."""
    folders = set()
    for case in cases:
        for key in ("image", "label"):
            paths = case.get(key)
            paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths or [])
            folders.update(os.path.dirname(os.path.abspath(os.fspath(p))) for p in paths if p)
    return sorted(folders)


@torch.inference_mode()
def predict_case(
    network: torch.nn.Module, image: np.ndarray, image_size: Sequence[int], device: str | torch.device = "cpu",
    i_min: float = 10.0, i_max: float = 10.0, amp: bool | str | None = False,
    progress: FrameProgress | None = None,
) -> np.ndarray:
    """Class labels ``(Z, T, H, W)`` for a raw image ``(Z, T, H, W)``; slices are the batch, frames streamed.

    ``amp``: bfloat16 autocast of the network on CPU (:func:`~cosinetrack.inference.resolve_amp`).
    ``progress``: counts each time frame (all slices) predicted.
    """
    x = clip_eval_transforms(i_min, i_max)({"image": image})["image"]  # the validation normalization, per slice
    x = torch.as_tensor(x).unsqueeze(2).to(device)
    network.eval()
    labels = np.empty(image.shape, dtype=np.uint8)

    def keep(t: int, out: torch.Tensor) -> None:
        labels[:, t] = out.argmax(dim=1).cpu().numpy()
        if progress is not None:
            progress.update()

    stream_frames(network, x, image_size, on_frame=keep, amp=amp)
    return labels


def predict_to_folder(
    network: torch.nn.Module,
    cases: Sequence[Mapping[str, Any]],
    out_dir: str,
    ckpt_path: str | None = None,
    image_size: Sequence[int] = (256, 256),
    file_layout: str = "auto",
    i_min: float = 10.0,
    i_max: float = 10.0,
    output_label_map: Mapping[Any, Any] | None = None,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    input_paths: Sequence[str | None] = (),
    amp: bool | str | None = False,
    progress_every: int = 100,
) -> list[str]:
    """Predict every case and write ``<input name>_pred.nii.gz`` files into ``out_dir``.

    ``out_dir`` appears complete or not at all (written in a temporary folder, then renamed); an existing
    ``out_dir`` is an error unless ``overwrite``. It may not be, contain or lie inside any input: the
    folder of any image or label, ``ckpt_path``, or ``input_paths`` (the input folder, the datalist),
    with or without ``overwrite`` (checked before anything is read or written). ``output_label_map``
    maps predicted classes to the values written (e.g. ``{"1": 2, "2": 3}`` for ACDC's convention).
    ``amp``: bfloat16 autocast of the network on CPU (the bundle's ``amp``, see :func:`predict_case`).
    Progress: a bar when stderr is a terminal, else a log line every ``progress_every`` frames.

    Under ``torchrun`` the cases are split over the ranks (each predicts every N-th case) into one
    shared temporary folder that rank 0 renames once every rank succeeded
    (:func:`~cosinetrack.io.atomic.shared_atomic_directory`); every rank returns all files.
    """
    init_distributed(backend="gloo")  # a no-op without torchrun; only small objects are exchanged
    resolve_amp(amp)  # validates before anything is read
    inputs = [*input_paths, ckpt_path, *case_input_folders(cases)]
    refuse_output_over_inputs(out_dir, inputs)
    device = rank_device(device)
    network.to(device)
    if ckpt_path:
        load_weights(network, ckpt_path, map_location=device)
    lut = None
    if output_label_map:
        lut = np.arange(256, dtype=np.uint8)
        for k, v in dict(output_label_map).items():
            lut[int(k)] = int(v)
    progress = FrameProgress("lv_mri prediction", None, progress_every)
    with progress, shared_atomic_directory(out_dir, overwrite=overwrite, inputs=inputs) as folder:
        for case in shard(cases):
            image, _ = read_cine_case({"image": case["image"]}, file_layout=file_layout)
            labels = predict_case(network, image, image_size, device, i_min, i_max, amp=amp, progress=progress)
            if lut is not None:
                labels = lut[labels]
            names = write_case_labels(labels, case, folder.path, file_layout, suffix="_pred")
            folder.results.append([os.path.join(out_dir, os.path.basename(p)) for p in names])
            logger.info("%s: %d file(s)", case.get("name", case["image"][0]), len(names))
    return [path for paths in folder.merged for path in paths]
