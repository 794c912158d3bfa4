"""CTC videos for training and scoring: several data sets at once, time splits, video parts."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from cosinetrack.apps.cell.presets import ctc_preset
from cosinetrack.apps.cell.reader import find_ctc_sequences, read_ctc_training_video
from cosinetrack.apps.cell.sequence import CTCSequence, VideoPart
from cosinetrack.data.splits import consecutive_runs, frame_slice
from cosinetrack.errors import CosineTrackConfigError, CosineTrackDataError
from cosinetrack.transforms.augment import noise_strengths

__all__ = [
    "ctc_dataset_name",
    "find_ctc_datasets",
    "split_video_frames",
    "whole_sequences",
    "read_ctc_cases",
    "VideoPartDataset",
]


logger = logging.getLogger(__name__)


def _parts(seq: CTCSequence, frames: Sequence[int], whole_name: bool = False) -> list[VideoPart]:
    """``frames`` of ``seq`` as parts of consecutive frames, split where frame numbers are missing.

    A gap (``t000, t001, t003``) means time passed that no frame shows: a training clip or a tracked
    part must not run across it, so each run of consecutive frames is a part of its own (with a warning).
    """
    runs = consecutive_runs(frames)
    if len(runs) > 1:
        gaps = ", ".join(f"{a[-1] + 1}..{b[0] - 1}" for a, b in zip(runs, runs[1:]))
        logger.warning(
            "%s: frame numbers %s are missing; the video is split at the gap(s) into %d parts that are "
            "trained and tracked separately",
            seq.image_dir or seq.name,
            gaps,
            len(runs),
        )
    parts = []
    for run in runs:
        name = seq.name if whole_name and len(runs) == 1 else f"{seq.name}[{run[0]}:{run[-1] + 1}]"
        parts.append(VideoPart(name, seq, tuple(run)))
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
) -> list[CTCSequence]:
    """The sequences of one CTC data set folder or of several, each carrying its data set's preset.

    Every entry is a :func:`~cosinetrack.apps.cell.find_ctc_sequences` sequence with its ``preset``: the
    :func:`~cosinetrack.apps.cell.ctc_preset` of its data set folder's name (or of ``dataset_preset`` for all,
    when given), which training (normalization) and validation (normalization, clustering) use for
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
    sequences: list[CTCSequence] = []
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
            seq = seq.replace(preset=dict(preset), dataset=name)
            if prefixed:
                seq = seq.replace(name=f"{name}/{seq.name}")
            sequences.append(seq)
    return sequences


def split_video_frames(
    sequences: Sequence[CTCSequence],
    val_frames: str | Sequence[int] | None = "-15:",
    val_sequences: Sequence[str] | None = None,
) -> tuple[list[VideoPart], list[VideoPart]]:
    """Split annotated videos into training and validation parts, in time or by sequence.

    * ``val_sequences`` given (names such as ``["02"]``): those sequences validate, the others train;
      ``val_frames`` (if not ``None``) then restricts which of their frames are scored.
    * otherwise: the frames ``val_frames`` of *every* sequence validate (default ``"-15:"``, the last
      15 frames) and the frames before them train, so no training clip reaches into the held-out part.

    Args:
        sequences: entries of :func:`~cosinetrack.apps.cell.find_ctc_sequences`.
        val_frames: a slice string over each sequence's frames, a list of frame numbers, or ``None``.
        val_sequences: names of whole validation sequences, or ``None``.

    Returns:
        ``(train, val)``: lists of :class:`~cosinetrack.apps.cell.sequence.VideoPart` (e.g. ``name``
        ``"01[0:50]"``, its ``sequence`` and ``frames``);
        the frames of every part are consecutive: a sequence with missing frame numbers is split at
        each gap (a warning says so), so no training clip and no tracked part spans a gap.
    """
    train, val = [], []
    names = {s.name for s in sequences}
    if val_sequences:
        unknown = sorted(set(val_sequences) - names)
        if unknown:
            raise ValueError(f"val_sequences {unknown} not found; the data set has {sorted(names)}")
    for seq in sequences:
        frames = list(seq.frames)
        if val_sequences:
            held = (frame_slice(val_frames, frames) or frames) if seq.name in val_sequences else []
            rest = [] if seq.name in val_sequences else frames
        else:
            held = frame_slice(val_frames, frames)
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


def whole_sequences(sequences: Sequence[CTCSequence]) -> list[VideoPart]:
    """Every frame of every sequence as parts like :func:`split_video_frames` gives (for evaluation).

    A part is named like its sequence (``"01"``); a sequence with missing frame numbers is split at each
    gap into parts ``"01[0:3]"``, ``"01[4:10]"``, ... (a warning says so).
    """
    return [part for s in sequences for part in _parts(s, s.frames, whole_name=True)]


def read_ctc_cases(
    parts: Sequence[VideoPart],
    i_min: float | None = None,
    i_max: float | None = None,
    background_margin: float | None = None,
    noise_std: float | Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Read the training parts of :func:`split_video_frames` as cases for :class:`CineClipDataset`.

    Each case: ``{"name", "image": (1, T, H, W) float32, "label": (1, T, H, W) int32}`` (one "slice",
    the ``T`` frames of the part); labels follow :func:`~cosinetrack.apps.cell.merge_seg_tra` (-1 = no label).
    A case also carries the robust-normalization percentages ``i_min`` / ``i_max`` that its clips are
    normalized with (:func:`~cosinetrack.transforms.robust_normalization`): the given value when not
    ``None`` (one value for every case), else the one of its sequence's preset (``sequence.preset``,
    see :func:`find_ctc_datasets`); a case with neither carries none (the transform's own value applies).
    ``background_margin`` (pixels): background far from every annotated cell on frames whose SEG is
    partial (:func:`~cosinetrack.apps.cell.merge_seg_tra`); ``None``: the sequence's preset's (the
    Fluo-N2DH-GOWT1 preset has one, the others none: off).
    ``noise_std`` as a mapping ``{data set name: strength}`` (the bundle's ``augmentation#noise_std``)
    gives each case its data set's imaging-noise strength as ``case["noise_std"]`` (0 for a data set not
    named), which :class:`~cosinetrack.transforms.intensity.RandImagingNoised` uses for its clips; a number
    or ``None`` adds nothing (the training pipeline's one value applies to all).

    Raises:
        CosineTrackConfigError: ``noise_std`` names a data set that none of the parts belongs to, or gives a
            bad strength.
    """
    try:
        strengths = noise_strengths(noise_std)
    except ValueError as e:
        raise CosineTrackConfigError("augmentation#noise_std", str(e)) from e
    if strengths is not None:
        names = {_dataset_name(part.sequence) for part in parts}
        unknown = sorted(set(strengths) - names)
        if unknown:
            raise CosineTrackConfigError(
                "augmentation#noise_std", f"names {unknown}, not data sets of this run: {sorted(names)}"
            )
    cases = []
    for part in parts:
        preset = part.sequence.preset or {}
        margin = preset.get("background_margin") if background_margin is None else background_margin
        video = read_ctc_training_video(part.sequence, part.frames, margin)
        label = video["label"][None].astype(np.int32)
        case = {"name": part.name, "image": video["image"][None], "label": label}
        for key, value in (("i_min", i_min), ("i_max", i_max)):
            value = preset.get(key) if value is None else value
            if value is not None:
                case[key] = float(value)
        if strengths is not None:
            case["noise_std"] = strengths.get(_dataset_name(part.sequence), 0.0)
        cases.append(case)
    return cases


def _dataset_name(sequence: CTCSequence) -> str:
    """The data set folder name of ``sequence`` (``"Fluo-N2DH-GOWT1"``)."""
    return sequence.dataset or os.path.basename(os.path.normpath(sequence.root))


class VideoPartDataset(torch.utils.data.Dataset):
    """Video parts to track and score, one per item: ``{"part": VideoPart, "name": its name}``.

    A part (from :func:`split_video_frames` or :func:`whole_sequences`) names its frames; the evaluator's
    step (:class:`~cosinetrack.apps.cell.VideoTrackingStep`) streams them from disk, so nothing of the
    video is loaded here. Batch the items with :meth:`collate_fn` (the shared validation loader does):
    a part is not a tensor, so the default collation cannot stack it.
    """

    def __init__(self, parts: Sequence[VideoPart]) -> None:
        bad = [type(p).__name__ for p in parts if not isinstance(p, VideoPart)]
        if bad:
            raise TypeError(f"VideoPartDataset takes VideoPart values (split_video_frames), got {bad[:3]}")
        self.parts = list(parts)

    def __len__(self) -> int:
        return len(self.parts)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"part": self.parts[i], "name": self.parts[i].name}

    @staticmethod
    def collate_fn(items: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
        """``{"part": [VideoPart, ...], "name": [str, ...]}`` of a list of items (no stacking)."""
        return {"part": [item["part"] for item in items], "name": [item["name"] for item in items]}
