"""PyTorch datasets over cine cases: training clips and whole validation cases, plus k-fold splits.

Items are dicts for MONAI dictionary transforms, channel-first with **frames as channels**, so that one
random spatial draw of a MONAI transform applies to every frame of a clip:

* :class:`CineClipDataset` item: ``image`` ``(L, H, W)`` float32, ``label`` ``(L, H, W)`` int64 (``-1`` =
  no label), ``name`` (case), ``slice`` (z index), ``start`` (first frame index), and the case's
  ``i_min`` / ``i_max`` when it has them (CTC data sets, each normalised with its own preset).
* :class:`CineCaseDataset` item: ``image`` ``(Z, T, H, W)`` float32, ``label`` ``(Z, T, H, W)`` int64, ``name``.
* :class:`CVPPPDataset` item (still images): ``image`` ``(3, H, W)`` float32 in [0, 1] (RGB), ``label``
  ``(1, H, W)`` int64 leaf ids (0 background), ``name`` (plant).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from cosinetrack.data.cine import read_cine_case
from cosinetrack.data.ctc import find_ctc_sequences, read_ctc_training_video
from cosinetrack.data.ctc_presets import ctc_preset
from cosinetrack.data.cvppp import read_cvppp_plant
from cosinetrack.errors import CosineTrackConfigError, CosineTrackDataError
from cosinetrack.labels import IGNORE_LABEL

logger = logging.getLogger(__name__)

__all__ = [
    "consecutive_runs",
    "ctc_dataset_name",
    "find_ctc_datasets",
    "CineClipDataset",
    "CineCaseDataset",
    "CVPPPDataset",
    "split_cases",
    "split_video_frames",
    "read_cases",
    "read_ctc_cases",
    "whole_sequences",
    "VideoPartDataset",
]


def split_cases(
    cases: Sequence[Mapping[str, Any]], num_folds: int = 1, fold: int = 0, seed: int = 0, val_fraction: float = 0.25
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """Split cases (patients, never slices or frames) into training and validation lists.

    With ``num_folds >= 2`` this is k-fold cross-validation: the cases are shuffled with ``seed`` and
    dealt into ``num_folds`` folds of near-equal size; fold ``fold`` validates, the others train. With
    ``num_folds == 1`` a ``val_fraction`` of the shuffled cases (at least one) validates.
    """
    cases = list(cases)
    if len(cases) < 2:
        raise ValueError(f"need at least 2 cases to split into training and validation, got {len(cases)}")
    order = np.random.default_rng(seed).permutation(len(cases))
    if num_folds >= 2:
        if not 0 <= fold < num_folds:
            raise ValueError(f"fold must be in [0, {num_folds}), got {fold}")
        if num_folds > len(cases):
            raise ValueError(f"num_folds={num_folds} is more than the {len(cases)} cases")
        val_idx = set(order[fold::num_folds].tolist())
    else:
        n_val = max(1, round(val_fraction * len(cases)))
        val_idx = set(order[:n_val].tolist())
    train = [c for i, c in enumerate(cases) if i not in val_idx]
    val = [c for i, c in enumerate(cases) if i in val_idx]
    return train, val


def _frame_slice(spec: str | Sequence[int] | None, frames: Sequence[int]) -> list[int]:
    """The frames picked by ``spec``: a Python slice string over ``frames`` (``"50:"``, ``"-15:"``,
    ``":40"``), an explicit list of frame numbers, or ``None`` (none)."""
    frames = list(frames)
    if spec is None:
        return []
    if isinstance(spec, str):
        parts = spec.split(":")
        if len(parts) != 2:
            raise ValueError(f"frame slice must look like 'start:stop' (e.g. '-15:' or '50:'), got {spec!r}")
        start, stop = (int(p) if p.strip() else None for p in parts)
        return frames[slice(start, stop)]
    chosen = [int(t) for t in spec]
    missing = sorted(set(chosen) - set(frames))
    if missing:
        raise ValueError(f"frames {missing} are not in the sequence (it has {frames[0]}..{frames[-1]})")
    return chosen


def consecutive_runs(frames: Sequence[int]) -> list[list[int]]:
    """Increasing frame numbers cut at every gap: ``[0, 1, 3, 4, 5] -> [[0, 1], [3, 4, 5]]``."""
    runs: list[list[int]] = []
    for t in sorted(int(t) for t in frames):
        if runs and t == runs[-1][-1] + 1:
            runs[-1].append(t)
        else:
            runs.append([t])
    return runs


def _parts(seq: Mapping[str, Any], frames: Sequence[int], whole_name: bool = False) -> list[dict[str, Any]]:
    """``frames`` of ``seq`` as parts of consecutive frames, split where frame numbers are missing.

    A gap (``t000, t001, t003``) means time passed that no frame shows: a training clip or a tracked
    part must not run across it, so each run of consecutive frames is a part of its own (with a warning).
    """
    runs = consecutive_runs(frames)
    if len(runs) > 1:
        gaps = ", ".join(f"{a[-1] + 1}..{b[0] - 1}" for a, b in zip(runs, runs[1:]))
        logger.warning(
            "%s: frame numbers %s are missing; the video is split at the gap(s) into %d parts that are "
            "trained and tracked separately", seq.get("image_dir", seq["name"]), gaps, len(runs),
        )
    parts = []
    for run in runs:
        name = seq["name"] if whole_name and len(runs) == 1 else f"{seq['name']}[{run[0]}:{run[-1] + 1}]"
        parts.append({"name": name, "sequence": seq, "frames": run})
    return parts


def _dataset_folders(dataset_dir: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """``dataset_dir`` as a list of folders (one string or path, or a list of them)."""
    if isinstance(dataset_dir, (str, os.PathLike)):
        return [os.fspath(dataset_dir)]
    folders = [os.fspath(d) for d in dataset_dir]
    if not folders:
        raise CosineTrackConfigError("dataset_dir", "an empty list; give one CTC data set folder or several")
    return folders


def ctc_dataset_name(dataset_dir: str | os.PathLike | Sequence[str | os.PathLike] | None) -> str | None:
    """The name of one data set folder (``Fluo-N2DH-SIM+``), of several joined by ``+``
    (``Fluo-N2DH-SIM++Fluo-N2DH-GOWT1``), or ``None`` without ``dataset_dir``."""
    if not dataset_dir:
        return None
    return "+".join(os.path.basename(os.path.normpath(os.path.abspath(d))) for d in _dataset_folders(dataset_dir))


def find_ctc_datasets(
    dataset_dir: str | os.PathLike | Sequence[str | os.PathLike], dataset_preset: str | None = None
) -> list[dict[str, Any]]:
    """The sequences of one CTC data set folder or of several, each carrying its data set's preset.

    Every entry is a :func:`~cosinetrack.data.find_ctc_sequences` dict plus ``"preset"``: the
    :func:`~cosinetrack.data.ctc_preset` of its data set folder's name (or of ``dataset_preset`` for all,
    when given), which training (normalisation) and validation (normalisation, clustering) use for
    that sequence. With one folder (a string, or a list of one) the sequences keep their names (``01``,
    ``02``); with several, names get the data set's folder name as prefix (``Fluo-N2DH-SIM+/01``),
    so validation parts stay unique and readable, and ``val_sequences`` takes such names.

    Raises:
        CosineTrackDataError: a folder is missing or holds no CTC sequence (the message names it), or two
            folders have the same name.
        CosineTrackConfigError: an empty list.
    """
    folders = _dataset_folders(dataset_dir)
    prefixed = len(folders) > 1
    sequences: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for folder in folders:
        name = os.path.basename(os.path.normpath(os.path.abspath(folder)))
        if name in seen:
            raise CosineTrackDataError(
                folder, f"a second data set named {name!r} (the first is {seen[name]}); names must differ"
            )
        seen[name] = folder
        preset = ctc_preset(dataset_preset, folder)
        for seq in find_ctc_sequences(folder):
            seq = dict(seq, preset=dict(preset), dataset=name)
            if prefixed:
                seq["name"] = f"{name}/{seq['name']}"
            sequences.append(seq)
    return sequences


def split_video_frames(
    sequences: Sequence[Mapping[str, Any]],
    val_frames: str | Sequence[int] | None = "-15:",
    val_sequences: Sequence[str] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split annotated videos into training and validation parts, in time or by sequence.

    * ``val_sequences`` given (names such as ``["02"]``): those sequences validate, the others train;
      ``val_frames`` (if not ``None``) then restricts which of their frames are scored.
    * otherwise: the frames ``val_frames`` of *every* sequence validate (default ``"-15:"``, the last
      15 frames) and the frames before them train, so no training clip reaches into the held-out part.

    Args:
        sequences: entries of :func:`~cosinetrack.data.find_ctc_sequences`.
        val_frames: a slice string over each sequence's frames, a list of frame numbers, or ``None``.
        val_sequences: names of whole validation sequences, or ``None``.

    Returns:
        ``(train, val)``: lists of ``{"name": "01[0:50]", "sequence": entry, "frames": [t, ...]}``;
        the frames of every part are consecutive: a sequence with missing frame numbers is split at
        each gap (a warning says so), so no training clip and no tracked part spans a gap.
    """
    train, val = [], []
    names = {s["name"] for s in sequences}
    if val_sequences:
        unknown = sorted(set(val_sequences) - names)
        if unknown:
            raise ValueError(f"val_sequences {unknown} not found; the data set has {sorted(names)}")
    for seq in sequences:
        frames = list(seq["frames"])
        if val_sequences:
            held = (_frame_slice(val_frames, frames) or frames) if seq["name"] in val_sequences else []
            rest = [] if seq["name"] in val_sequences else frames
        else:
            held = _frame_slice(val_frames, frames)
            rest = [t for t in frames if t < min(held)] if held else frames
        for part, frames_part in ((train, rest), (val, held)):
            if frames_part:
                part.extend(_parts(seq, frames_part))
    if not train or not val:
        raise ValueError(
            f"the split leaves {len(train)} training and {len(val)} validation parts: set val_frames "
            f"(e.g. '-15:') or val_sequences so that both get frames"
        )
    return train, val


def whole_sequences(sequences: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every frame of every sequence as parts like :func:`split_video_frames` gives (for evaluation).

    A part is named like its sequence (``"01"``); a sequence with missing frame numbers is split at each
    gap into parts ``"01[0:3]"``, ``"01[4:10]"``, ... (a warning says so).
    """
    return [part for s in sequences for part in _parts(s, s["frames"], whole_name=True)]


def read_ctc_cases(
    parts: Sequence[Mapping[str, Any]],
    i_min: float | None = None,
    i_max: float | None = None,
    background_margin: float | None = None,
) -> list[dict[str, Any]]:
    """Read the training parts of :func:`split_video_frames` as cases for :class:`CineClipDataset`.

    Each case: ``{"name", "image": (1, T, H, W) float32, "label": (1, T, H, W) int32}`` (one "slice",
    the ``T`` frames of the part); labels follow :func:`~cosinetrack.data.merge_seg_tra` (-1 = no label).
    A case also carries the robust-normalisation percentages ``i_min`` / ``i_max`` that its clips are
    normalised with (:func:`~cosinetrack.transforms.robust_normalization`): the given value when not
    ``None`` (one value for every case), else the one of its sequence's preset (``sequence["preset"]``,
    see :func:`find_ctc_datasets`); a case with neither carries none (the transform's own value applies).
    ``background_margin`` (pixels): background far from every annotated cell on frames whose SEG is
    partial (:func:`~cosinetrack.data.merge_seg_tra`); ``None``: the sequence's preset's (the
    Fluo-N2DH-GOWT1 preset has one, the others none: off).
    """
    cases = []
    for part in parts:
        preset = part["sequence"].get("preset") or {}
        margin = preset.get("background_margin") if background_margin is None else background_margin
        video = read_ctc_training_video(dict(part["sequence"]), part["frames"], margin)
        label = video["label"][None].astype(np.int32)
        case = {"name": part["name"], "image": video["image"][None], "label": label}
        for key, value in (("i_min", i_min), ("i_max", i_max)):
            value = preset.get(key) if value is None else value
            if value is not None:
                case[key] = float(value)
        cases.append(case)
    return cases


def read_cases(
    cases: Sequence[Mapping[str, Any]], file_layout: str = "auto", label_map: Mapping[Any, Any] | None = None
) -> list[dict[str, Any]]:
    """Read every case once: ``[{"name", "image": (Z,T,H,W), "label": (Z,T,H,W)}]``."""
    out = []
    for case in cases:
        image, label = read_cine_case(case, file_layout=file_layout, label_map=label_map)
        out.append({"name": case.get("name", str(case["image"][0])), "image": image, "label": label})
    return out


class CineClipDataset(torch.utils.data.Dataset):
    """Clips of ``clip_length`` consecutive frames of one slice, for training.

    Every (case, slice, start frame) whose clip holds at least one labelled frame is one item. A
    sequence shorter than ``clip_length`` gives one clip of its full length (so keep ``batch_size`` 1
    then, as the paper does for recurrent training). With ``clip_length=1`` only labelled frames are
    items: this is the non-recurrent setting.

    Args:
        cases: case dicts (see :mod:`cosinetrack.data.cine`) or already read cases from :func:`read_cases`.
        clip_length: frames per clip (paper: 10 for recurrent networks, 1 for non-recurrent ones).
        transform: a MONAI (dictionary) transform applied to each item.
        file_layout, label_map: passed to :func:`~cosinetrack.data.cine.read_cine_case`.
        case_keys: per-case values copied into each of the case's items when the (already read) case
            has them, e.g. the normalisation percentages ``i_min`` / ``i_max`` of :func:`read_ctc_cases`.
    """

    def __init__(
        self,
        cases: Sequence[Mapping[str, Any]],
        clip_length: int = 10,
        transform: Callable | None = None,
        file_layout: str = "auto",
        label_map: Mapping[Any, Any] | None = None,
        case_keys: Sequence[str] = ("i_min", "i_max"),
    ) -> None:
        if clip_length < 1:
            raise ValueError(f"clip_length must be >= 1, got {clip_length}")
        self.case_keys = tuple(case_keys)
        self.cases = [c if isinstance(c.get("image"), np.ndarray) else None for c in cases]
        if any(c is None for c in self.cases):
            self.cases = read_cases(cases, file_layout=file_layout, label_map=label_map)
        self.clip_length = clip_length
        self.transform = transform
        self.index: list[tuple[int, int, int, int]] = []
        for k, case in enumerate(self.cases):
            label = case["label"]
            num_slices, num_frames = label.shape[:2]
            length = min(clip_length, num_frames)
            labelled = (label != IGNORE_LABEL).reshape(num_slices, num_frames, -1).any(-1)
            for z in range(num_slices):
                for t0 in range(num_frames - length + 1):
                    if labelled[z, t0 : t0 + length].any():
                        self.index.append((k, z, t0, length))
        if not self.index:
            raise ValueError("no clip with a labelled frame: check that the data set has label files")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        k, z, t0, length = self.index[i]
        case = self.cases[k]
        item = {
            "image": np.ascontiguousarray(case["image"][z, t0 : t0 + length]),
            "label": np.ascontiguousarray(case["label"][z, t0 : t0 + length]),
            "name": case["name"],
            "slice": z,
            "start": t0,
            **{key: case[key] for key in self.case_keys if key in case},
        }
        return self.transform(item) if self.transform is not None else item


class CineCaseDataset(torch.utils.data.Dataset):
    """Whole cases, one item each, for validation and evaluation (all slices, all frames).

    Args: as :class:`CineClipDataset`, without ``clip_length``.
    """

    def __init__(
        self,
        cases: Sequence[Mapping[str, Any]],
        transform: Callable | None = None,
        file_layout: str = "auto",
        label_map: Mapping[Any, Any] | None = None,
    ) -> None:
        self.cases = read_cases(cases, file_layout=file_layout, label_map=label_map)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, i: int) -> dict[str, Any]:
        case = self.cases[i]
        item = {"image": case["image"], "label": case["label"], "name": case["name"]}
        return self.transform(item) if self.transform is not None else item


class CVPPPDataset(torch.utils.data.Dataset):
    """Plant photographs and their leaf labels (CVPPP layout), read once into memory.

    Items are ``{"image": (3, H, W) float32 RGB in [0, 1], "label": (1, H, W) int64, "name": str}``,
    passed through ``transform`` (e.g. :func:`~cosinetrack.transforms.clip_train_transforms` with the
    three colour channels in place of frames). A plant without a label file gets label ``-1``
    everywhere (no loss, no score).

    Args:
        plants: entries of :func:`~cosinetrack.data.find_cvppp_plants` (``name``, ``image``, ``label``).
        transform: a MONAI (dictionary) transform applied to each item.
    """

    def __init__(self, plants: Sequence[Mapping[str, Any]], transform: Callable | None = None) -> None:
        self.items = []
        for plant in plants:
            image, label = read_cvppp_plant(dict(plant))
            if label is None:
                label = np.full(image.shape[1:], IGNORE_LABEL, dtype=np.int64)
            self.items.append({"name": plant["name"], "image": image, "label": label[None]})
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = dict(self.items[i])
        return self.transform(item) if self.transform is not None else item


class VideoPartDataset(torch.utils.data.Dataset):
    """Video parts to track and score, one per item: ``{"index": i, "name": part name}``.

    The parts themselves (from :func:`split_video_frames` or :func:`whole_sequences`) stay with the
    evaluator's step (:class:`~cosinetrack.engines.VideoTrackingStep`), which streams their frames from
    disk; the item only says which one is next, so nothing of the video is loaded here.
    """

    def __init__(self, parts: Sequence[Mapping[str, Any]]) -> None:
        self.names = [p["name"] for p in parts]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"index": i, "name": self.names[i]}
