"""What a cell video is, as typed values: a CTC sequence folder and a part of it (consecutive frames).

:func:`~cosinetrack.apps.cell.reader.find_ctc_sequences` returns :class:`CTCSequence` values;
:func:`~cosinetrack.apps.cell.datasets.split_video_frames` cuts them into :class:`VideoPart` values that
training reads and validation tracks and scores. Both are frozen: a step that needs another value
(a prefixed name, a preset) makes a new one with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CTCSequence", "VideoPart"]


@dataclass(frozen=True)
class CTCSequence:
    """One sequence folder of a CTC data set (``.../Fluo-N2DH-SIM+/01``) and its ground truth, if any.

    Attributes:
        name: the folder name (``"01"``), prefixed with the data set name (``"Fluo-N2DH-SIM+/01"``) when
            several data sets are read together (:func:`~cosinetrack.apps.cell.datasets.find_ctc_datasets`).
        root: the data set folder holding the sequence folder.
        image_dir: the sequence folder (absolute).
        gt_dir: ``<image_dir>_GT`` when it exists, else ``None``.
        frames: the sorted frame numbers of the images (need not be contiguous).
        digits: the digit count of the file names (3 or 4), ``None`` for an empty folder.
        images: frame number -> path of ``tTTT.tif``.
        seg: frame number -> path of ``SEG/man_segTTT.tif`` (only frames that have one).
        tra: frame number -> path of ``TRA/man_trackTTT.tif``.
        man_track: path of ``TRA/man_track.txt``, or ``None``.
        preset: the data set's preset (:func:`~cosinetrack.apps.cell.presets.ctc_preset`) when known.
        dataset: the data set's folder name when read by ``find_ctc_datasets``.
    """

    name: str
    root: str
    image_dir: str
    gt_dir: str | None = None
    frames: tuple[int, ...] = ()
    digits: int | None = None
    images: Mapping[int, str] = field(default_factory=dict)
    seg: Mapping[int, str] = field(default_factory=dict)
    tra: Mapping[int, str] = field(default_factory=dict)
    man_track: str | None = None
    preset: Mapping[str, Any] | None = None
    dataset: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "frames", tuple(int(t) for t in self.frames))
        if self.digits not in (None, 3, 4):
            raise ValueError(f"{self.image_dir}: digits must be 3 or 4, got {self.digits}")

    def replace(self, **changes: Any) -> CTCSequence:
        """A copy with ``changes`` (:func:`dataclasses.replace`)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class VideoPart:
    """Consecutive frames of one sequence, trained on or tracked and scored as one video.

    Attributes:
        name: ``"01[50:65]"`` (frames 50-64 of sequence ``01``), or the sequence's name for a whole one.
        sequence: the :class:`CTCSequence` the frames come from.
        frames: the frame numbers, consecutive.
    """

    name: str
    sequence: CTCSequence
    frames: tuple[int, ...]

    def __post_init__(self) -> None:
        frames = tuple(int(t) for t in self.frames)
        object.__setattr__(self, "frames", frames)
        if not frames:
            raise ValueError(f"video part {self.name!r} has no frames")
        if any(b != a + 1 for a, b in zip(frames, frames[1:])):
            raise ValueError(f"video part {self.name!r}: frames must be consecutive, got {list(frames)[:10]}")
