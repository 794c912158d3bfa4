"""The Cell Tracking Challenge layout: folder and file names, in one place.

A CTC data set folder (e.g. ``ctc/Fluo-N2DH-SIM+``) holds, per sequence ``NN`` (two digits, ``01``, ``02``)::

    NN/tTTT.tif                 the frames (2D greyscale TIFF)
    NN_GT/SEG/man_segTTT.tif    reference segmentation of some frames (0 = background, k > 0 = cell)
    NN_GT/TRA/man_trackTTT.tif  tracking markers of every frame (k > 0 = marker of track k)
    NN_GT/TRA/man_track.txt     the ground truth lineage, one track a line ``L B E P`` (label, first
                                frame, last frame, parent label or 0)
    NN_RES/maskTTT.tif          a result: one uint16 label image per frame (0 = background, k = track k)
    NN_RES/res_track.txt        the result's lineage, as ``man_track.txt``

``TTT`` is the frame number with 3 digits (``t000.tif``), or 4 for long sequences (``t0000.tif``); all
files of one folder use the same count, and a result uses its input's. Frames of a result are numbered
``0 .. T-1`` with no gap.

This module only knows names: the regular expressions (group 1 = the frame number), the table names,
:func:`ctc_mask_name` and :func:`numbered_files`, the one scan of a folder's numbered files that the
reader, writer, validation and scoring use.
"""

from __future__ import annotations

import os
import re

from cosinetrack.errors import CosineTrackDataError

__all__ = [
    "IMAGE_RE",
    "SEG_RE",
    "TRA_RE",
    "MASK_RE",
    "SEQUENCE_RE",
    "MAN_TRACK",
    "RES_TRACK",
    "ctc_mask_name",
    "numbered_files",
]


#: A frame of a sequence folder ``NN``: ``t000.tif`` / ``t0000.tif`` (group 1: the frame number).
IMAGE_RE = re.compile(r"^t(\d{3,4})\.tif$")

#: A reference segmentation in ``NN_GT/SEG``: ``man_seg000.tif`` (group 1: the frame number).
SEG_RE = re.compile(r"^man_seg(\d{3,4})\.tif$")

#: The tracking markers of a frame in ``NN_GT/TRA``: ``man_track000.tif`` (group 1: the frame number).
TRA_RE = re.compile(r"^man_track(\d{3,4})\.tif$")

#: A sequence folder's name in a data set folder: two digits (``01``, ``02``, ...).
SEQUENCE_RE = re.compile(r"^\d{2}$")

#: Name of the ground truth track table (``L B E P`` lines) in ``NN_GT/TRA``.
MAN_TRACK = "man_track.txt"

#: Name of the track table in a result folder ``NN_RES`` (same format as :data:`MAN_TRACK`).
RES_TRACK = "res_track.txt"

#: A result mask in ``NN_RES``: ``mask000.tif`` / ``mask0000.tif`` (group 1: the frame number).
MASK_RE = re.compile(r"^mask(\d{3,4})\.tif$")


def ctc_mask_name(t: int, digits: int = 3) -> str:
    """``"mask007.tif"``: the result file name of frame ``t`` with ``digits`` digits (3 or 4).

    Raises:
        ValueError: ``digits`` not 3 or 4, or ``t`` negative or too large for ``digits``.
    """
    if digits not in (3, 4):
        raise ValueError(f"digits must be 3 or 4 (the CTC frame number widths), got {digits}")
    if not 0 <= int(t) < 10**digits:
        raise ValueError(f"frame number {t} does not fit {digits} digits")
    return f"mask{int(t):0{digits}d}.tif"


def numbered_files(folder: str | os.PathLike, pattern: re.Pattern) -> tuple[dict[int, str], int | None]:
    """The files of ``folder`` whose names match ``pattern`` (one of the ``*_RE`` above), by frame number.

    Args:
        folder: the folder; a missing one has no files.
        pattern: a regular expression whose group 1 is the frame number (e.g. :data:`MASK_RE`).

    Returns:
        ``({frame number: absolute path}, digit count)``, the dict sorted by frame number; the digit
        count is ``None`` when no file matches.

    Raises:
        CosineTrackDataError: names with different digit counts (``t000.tif`` next to ``t0001.tif``) in
            the folder; a CTC folder uses one count for all its files.
    """
    folder = os.path.abspath(os.fspath(folder))
    files: dict[int, str] = {}
    digits: set[int] = set()
    if not os.path.isdir(folder):
        return files, None
    for name in os.listdir(folder):
        match = pattern.match(name)
        if match is None:
            continue
        files[int(match.group(1))] = os.path.join(folder, name)
        digits.add(len(match.group(1)))
    if len(digits) > 1:
        raise CosineTrackDataError(
            folder,
            f"frame numbers with different digit counts {sorted(digits)} in one folder; a CTC folder uses one "
            "count (3, or 4 for long sequences) for all its files",
        )
    return dict(sorted(files.items())), (digits.pop() if digits else None)
