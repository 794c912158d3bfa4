"""Is a CTC result valid? Masks, track table and lineage checked against each other.

Where the checks live. "Do the tracks agree with the masks?" (a track's label is in the mask of every
frame ``B..E`` and of no other frame) is implemented once, on arrays:
:func:`cosinetrack.tracking.check_tracks_against_labels`. It lives in core because the tracker's own
check (:func:`cosinetrack.tracking.check_ctc_lineage`) needs it and core packages never import
``cosinetrack.apps``; this module applies it to the cell wing's results and adds nothing to the rule:

* :func:`check_tracks`: on the labels present in each frame (the result writer's check on close);
* :func:`check_ctc_result_files`: the layout of a result folder (``maskT.tif`` names, ``res_track.txt``),
  also run by :func:`~cosinetrack.apps.cell.scoring.ctc_scores` before py-ctcmetrics;
* :func:`validate_ctc_result`: both on a result folder's masks, then py-ctcmetrics' validity check.

File names come from :mod:`cosinetrack.apps.cell.layout` (:func:`~cosinetrack.apps.cell.layout.numbered_files`).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from dataclasses import dataclass

import numpy as np

from cosinetrack.apps.cell.layout import MASK_RE, RES_TRACK, numbered_files
from cosinetrack.apps.cell.reader import read_ctc_label, read_man_track
from cosinetrack.errors import CosineTrackDataError
from cosinetrack.tracking.lineage import LabelsPerFrame, check_tracks_against_labels

__all__ = ["check_tracks", "check_ctc_result_files", "CTCValidation", "validate_ctc_result"]


def check_tracks(tracks: np.ndarray, frame_labels: LabelsPerFrame, max_problems: int | None = None) -> list[str]:
    """Problems of a track table against the labels present in each frame (empty list = consistent).

    The single tracks-against-masks check, :func:`cosinetrack.tracking.check_tracks_against_labels`.

    Args:
        tracks: ``(N, 4)`` ``L B E P`` rows.
        frame_labels: the masks: ``{frame number: labels present}`` (as the result writer keeps them), a
            label video ``(T, H, W)`` or per frame the ids present; frames missing from a dict have no mask.
        max_problems: stop after this many problems (``None``: all).
    """
    return check_tracks_against_labels(tracks, frame_labels, max_problems)


def check_ctc_result_files(res_dir: str | os.PathLike) -> tuple[dict[int, str], np.ndarray | None, list[str]]:
    """The files of a CTC result folder, and what is wrong with their layout (not yet with their content).

    The layout py-ctcmetrics relies on without checking it: mask files are ``maskT.tif`` numbered
    ``0..T-1`` with one digit count and no other ``.tif`` file beside them (py-ctcmetrics takes every
    ``.tif`` as a frame, in name order), and ``res_track.txt`` exists and parses
    (:func:`~cosinetrack.apps.cell.read_man_track`). Whether the table agrees with the masks is
    :func:`check_tracks` (:func:`validate_ctc_result` runs both).

    Args:
        res_dir: the result folder (``NN_RES``).

    Returns:
        ``(masks, tracks, problems)``: ``{frame number: mask path}`` sorted by frame (empty when the
        names mix digit counts), the ``(N, 4)`` table or ``None`` when it is missing or does not parse,
        and one sentence per problem (empty when the layout is right).
    """
    res_dir = os.path.abspath(os.fspath(res_dir))
    if not os.path.isdir(res_dir):
        return {}, None, [f"{res_dir}: result folder not found"]
    problems = [
        f"{os.path.join(res_dir, name)}: not a maskT.tif file; remove it from the result folder"
        for name in sorted(os.listdir(res_dir))
        if name.lower().endswith(".tif") and MASK_RE.match(name) is None
    ]
    try:
        masks, _ = numbered_files(res_dir, MASK_RE)
    except CosineTrackDataError as exc:
        masks = {}
        problems.append(str(exc))
    else:
        frames = list(masks)
        if not frames:
            problems.append(f"{res_dir}: no mask files (maskT.tif)")
        elif frames != list(range(len(frames))):
            missing = sorted(set(range(frames[-1] + 1)) - set(frames))
            problems.append(f"{res_dir}: mask files must cover frames 0..T-1 without gaps; missing {missing[:20]}")
    tracks = None
    try:
        tracks = read_man_track(os.path.join(res_dir, RES_TRACK))
    except CosineTrackDataError as exc:
        problems.append(str(exc))
    return masks, tracks, problems


# ----------------------------------------------------------------------------------------------------
# validity (py-ctcmetrics)
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CTCValidation:
    """Outcome of :func:`validate_ctc_result`; truthy when the result is valid.

    Attributes:
        valid: True when py-ctcmetrics' check passes and the layout checks found nothing.
        problems: one sentence per problem found (empty when valid).
        notes: py-ctcmetrics' remarks on a valid result that do not make it invalid (e.g. an empty frame).
    """

    valid: bool
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.valid

    @property
    def explanation(self) -> str:
        """``"valid"`` or the problems, one per line."""
        return "valid" if self.valid else "\n".join(self.problems) or "invalid"


def validate_ctc_result(res_dir: str | os.PathLike, max_problems: int = 50) -> CTCValidation:
    """Check a CTC result folder with py-ctcmetrics' validity check (its ``validate`` script's ``Valid``).

    Before calling py-ctcmetrics, the layout is checked (:func:`check_ctc_result_files`: the folder and
    ``res_track.txt`` exist and parse, mask files are ``maskT.tif`` numbered ``0..T-1`` with no other
    ``.tif`` file beside them, since py-ctcmetrics takes every ``.tif`` as a frame, in name order), and the
    table against the labels of the masks (:func:`check_tracks`: every label is in the masks of exactly the
    frames ``B..E`` of its track, and no track ends after the last mask, which py-ctcmetrics does not
    see). An empty table with empty masks is a valid empty result (py-ctcmetrics cannot parse it).
    py-ctcmetrics then checks that parents are valid and end before their children, labels are unique,
    and the masks agree with the table; its warnings become problems (or the notes, when it still finds
    the result valid). It runs in this process (one thread) with its progress printing suppressed.

    Args:
        res_dir: the result folder (``NN_RES``).
        max_problems: at most this many problems (and notes) are kept (a count of the rest is appended).

    Returns:
        :class:`CTCValidation` (truthy when valid; ``.explanation`` says why not).
    """
    res_dir = os.path.abspath(os.fspath(res_dir))
    if not os.path.isdir(res_dir):
        return CTCValidation(False, (f"{res_dir}: result folder not found",))
    masks, tracks, problems = check_ctc_result_files(res_dir)
    notes: list[str] = []
    track_path = os.path.join(res_dir, RES_TRACK)
    if tracks is not None and masks:
        try:
            frame_labels = {t: np.unique(read_ctc_label(path)) for t, path in masks.items()}
        except CosineTrackDataError as exc:
            problems.append(str(exc))
        else:
            problems += [f"{res_dir}: {p}" for p in check_tracks(tracks, frame_labels, max_problems)]

    ctc_valid = 0
    if tracks is not None and not len(tracks) and masks and not problems:
        # an empty result (nothing found, no label in any mask): valid for the CTC, but py-ctcmetrics
        # cannot parse it
        return CTCValidation(True, (), ("empty result: no cell in any frame",))
    if masks and os.path.isfile(track_path):
        try:
            from ctc_metrics.scripts.validate import validate_sequence

            with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("always")
                ctc_valid = int(validate_sequence(res_dir, threads=1)["Valid"])
            messages = list(dict.fromkeys(f"py-ctcmetrics: {w.message}" for w in caught))
            # Its warnings explain an invalid result; on a valid one they are remarks (e.g. an empty frame).
            (notes if ctc_valid else problems).extend(messages)
        except Exception as exc:  # py-ctcmetrics asserts / fails to parse on some invalid inputs
            problems.append(f"{res_dir}: py-ctcmetrics failed ({type(exc).__name__}: {exc})")
            ctc_valid = 0
        if not ctc_valid and not problems:
            problems.append(f"{res_dir}: py-ctcmetrics reports the result as invalid")

    def cap(items: list[str]) -> tuple[str, ...]:
        if len(items) > max_problems:
            items = items[:max_problems] + [f"... and {len(items) - max_problems} more"]
        return tuple(items)

    return CTCValidation(bool(ctc_valid) and not problems, cap(problems), cap(notes))
