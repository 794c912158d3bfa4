"""Writer of Cell Tracking Challenge (CTC) results (masks and track table), atomically.

A result of sequence ``NN`` is a folder ``NN_RES`` (beside the data set's ``NN`` folder in the official
layout) holding::

    NN_RES/mask000.tif      one uint16 label image per frame, 0 = background, k = track k; the digit
    NN_RES/mask001.tif      count is that of the input frames (3, or 4 for long sequences)
    ...
    NN_RES/res_track.txt    one track a line: ``L B E P`` (label, first frame, last frame, parent or 0)

CTC rules the writer relies on: frames are numbered ``0 .. T-1`` with a mask for every frame; a track's
label appears in every frame ``B..E`` and in no other frame; a parent ends before its child begins.
:meth:`CTCResultWriter.close` checks the second with
:func:`~cosinetrack.apps.cell.validation.check_tracks` (the one tracks-against-masks check);
:func:`~cosinetrack.apps.cell.validate_ctc_result` checks a written folder with py-ctcmetrics. The track
table of masks (:func:`tracks_from_masks`) is core's
:func:`~cosinetrack.tracking.tracks_table_from_labels`, which the tracker uses as well.

:class:`CTCResultWriter` streams masks one frame at a time into a temporary sibling folder
(:func:`~cosinetrack.io.atomic.atomic_directory`) that is renamed to ``NN_RES`` only by
:meth:`CTCResultWriter.close`, so a crash never leaves a half-written result folder. Labels are ``(H, W)``
integer arrays (axis 0 = rows) with values in ``0 .. 65535``; the project's ``-1`` ("no label") is not a
valid result label and must be mapped to 0 before writing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

import numpy as np
import tifffile

from cosinetrack.apps.cell.layout import MAN_TRACK, MASK_RE, RES_TRACK, ctc_mask_name, numbered_files
from cosinetrack.apps.cell.reader import (
    check_tra_markers,
    find_ctc_sequences,
    read_ctc_frame,
    read_ctc_label,
    read_man_track,
    sequence_frames,
)
from cosinetrack.apps.cell.sequence import CTCSequence
from cosinetrack.apps.cell.validation import check_tracks
from cosinetrack.errors import CosineTrackDataError
from cosinetrack.io.atomic import atomic_directory, atomic_file, atomic_write_text, refuse_output_over_inputs
from cosinetrack.tracking.lineage import tracks_table_from_labels

__all__ = [
    "tracks_from_masks",
    "write_track_table",
    "relabel_ctc_masks",
    "CTCResultWriter",
    "write_ctc_result",
    "write_ctc_subsequence",
]


_MAX_LABEL = np.iinfo(np.uint16).max


#: A relabelling: per frame number an ``{old id: new id}`` dict, or a function of the frame number
#: returning one (or ``None`` to keep the frame as it is). The tracker's ``lineage()`` mappings
#: (``{t: {raw id: CTC label}}``) are of this kind.
FrameMapping = Mapping[int, Mapping[int, int]] | Callable[[int], Mapping[int, int] | None]


def _as_mask(labels: np.ndarray, what: str) -> np.ndarray:
    """``labels`` as ``(H, W)`` uint16, or ``ValueError``."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{what}: labels must be 2D (H, W), got shape {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise ValueError(f"{what}: labels must be integers, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > _MAX_LABEL):
        raise ValueError(
            f"{what}: labels must be in 0..{_MAX_LABEL} (uint16), got {labels.min()}..{labels.max()}; map the "
            "'no label' value -1 to background 0 before writing"
        )
    return labels.astype(np.uint16, copy=False)


def _write_mask(path: str, mask: np.ndarray, compression: str | None) -> None:
    tifffile.imwrite(path, mask, compression=compression)


def _frame_labels(mask: np.ndarray) -> np.ndarray:
    ids = np.unique(mask)
    return ids[ids > 0].astype(np.int64)


def tracks_from_masks(masks: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
    """Track table of a label video whose tracks have no parents: one row ``L B E 0`` per label.

    Args:
        masks: ``(T, H, W)`` non-negative integer labels, or an iterable of ``(H, W)`` frames (streamed);
            frame number = position (0-based). 0 is background.

    Returns:
        ``(N, 4)`` int64, sorted by label: ``B``/``E`` the first and last frame the label appears in
        (:func:`cosinetrack.tracking.tracks_table_from_labels` with ``contiguous=True``, on the labels
        present in each frame, so only one frame is held at a time).

    Raises:
        ValueError: a label that is absent from a frame between its first and last (CTC tracks are
            contiguous), or negative labels.
    """
    frame_labels = []
    for t, mask in enumerate(masks):
        mask = np.asarray(mask)
        if mask.size and mask.min() < 0:
            raise ValueError(f"frame {t}: negative labels")
        frame_labels.append(_frame_labels(mask))
    return tracks_table_from_labels(frame_labels, contiguous=True)


def _as_tracks(tracks: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    array = np.asarray(tracks)
    if array.size == 0:
        return np.zeros((0, 4), dtype=np.int64)
    if array.ndim != 2 or array.shape[1] != 4 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"tracks must be an (N, 4) integer array of 'L B E P' rows, got {array.dtype} {array.shape}")
    return array.astype(np.int64)


def write_track_table(path: str | os.PathLike, tracks: np.ndarray | Sequence[Sequence[int]]) -> None:
    """Write ``(N, 4)`` ``L B E P`` rows as a CTC track table (one space-separated line each), atomically.

    Rows are written sorted by label. Raises ``ValueError`` for an array that is not ``(N, 4)`` integers.
    """
    tracks = _as_tracks(tracks)
    tracks = tracks[np.argsort(tracks[:, 0], kind="stable")]
    atomic_write_text(os.fspath(path), "".join(f"{a} {b} {c} {d}\n" for a, b, c, d in tracks.tolist()))


def _apply_mapping(mask: np.ndarray, mapping: Mapping[int, int], unmapped: str, where: str) -> np.ndarray:
    if unmapped == "keep":
        lut = np.arange(_MAX_LABEL + 1, dtype=np.uint16)
    else:
        lut = np.zeros(_MAX_LABEL + 1, dtype=np.uint16)
    for old, new in mapping.items():
        old, new = int(old), int(new)
        if not (0 < old <= _MAX_LABEL and 0 <= new <= _MAX_LABEL):
            raise ValueError(f"{where}: mapping {old} -> {new} outside 1..{_MAX_LABEL} -> 0..{_MAX_LABEL}")
        lut[old] = new
    return lut[mask]


def relabel_ctc_masks(
    folder: str | os.PathLike,
    mapping: FrameMapping,
    frames: Iterable[int] | None = None,
    compression: str | None = "zlib",
    unmapped: Literal["background", "keep"] = "background",
) -> dict[int, np.ndarray]:
    """Rewrite the ``maskT.tif`` files of ``folder`` in place, one frame at a time, with per-frame id maps.

    Meant for a result folder being written (:meth:`CTCResultWriter.relabel` calls it on its temporary
    folder), never for input data. Memory is that of one frame.

    Args:
        folder: folder holding ``maskT.tif`` files (3 or 4 digits).
        mapping: per frame number ``{old id: new id}`` (dict of dicts, or a function of ``t`` returning a
            dict or ``None``). Mapping to 0 erases an instance; mapping two ids to one merges them. Frames
            without a mapping (``None``, a missing key) are left untouched; an empty dict is a mapping.
        frames: frame numbers to process (default: every mask file in ``folder``).
        compression: TIFF compression of rewritten files (``"zlib"``, ``"lzw"`` or ``None``).
        unmapped: what ids missing from a frame's dict become: ``"background"`` (0, the default, as
            :func:`cosinetrack.tracking.remap_labels`) or ``"keep"`` (their old value).

    Returns:
        ``{t: int64 array of the ids present after relabelling}`` for every processed frame.

    Raises:
        CosineTrackDataError: ``folder`` missing, mask names mixing 3 and 4 digits, a requested frame
            without a mask file, or an unreadable mask. ValueError: an id outside the uint16 range in a mapping.
    """
    folder = os.path.abspath(os.fspath(folder))
    if not os.path.isdir(folder):
        raise CosineTrackDataError(folder, "mask folder not found")
    files, _ = numbered_files(folder, MASK_RE)
    if unmapped not in ("background", "keep"):
        raise ValueError(f"unmapped must be 'background' or 'keep', got {unmapped!r}")
    frames = sorted(files) if frames is None else [int(t) for t in frames]
    get = mapping if callable(mapping) else mapping.get
    present = {}
    for t in frames:
        if t not in files:
            raise CosineTrackDataError(folder, f"no mask file for frame {t}")
        path = files[t]
        mask = read_ctc_frame(path)
        frame_map = get(t)
        if frame_map is not None:
            mask = _apply_mapping(_as_mask(mask, path), frame_map, unmapped, path)
            with atomic_file(path, suffix=".tif") as tmp:
                _write_mask(tmp, mask, compression)
        present[t] = _frame_labels(mask)
    return present


class CTCResultWriter:
    """Write a CTC result folder frame by frame; it appears under its final name only on :meth:`close`.

    Usage::

        with CTCResultWriter.for_sequence(sequence) as writer:      # or CTCResultWriter(res_dir, digits)
            for t, image in iter_ctc_frames(sequence):
                writer.write_frame(t, labels_of(image))            # (H, W) ints in 0..65535
            writer.relabel(mapping)                                 # optional: per-frame {old: new} ids
            writer.close(tracks)                                    # (N, 4) 'L B E P'; None = no parents

    An exception inside the ``with`` block (or :meth:`abort`) removes the temporary folder and leaves any
    existing result untouched. Leaving the block without :meth:`close` also discards the result and
    raises ``RuntimeError`` (a forgotten lineage should not pass silently).

    Args:
        res_dir: the final result folder, e.g. ``.../Fluo-N2DH-SIM+/01_RES``.
        digits: digits of the frame numbers in file names (use the input's, ``sequence.digits``).
        overwrite: replace an existing ``res_dir`` (only once the new one is complete); without it an
            existing folder raises ``FileExistsError`` here, before anything is written.
        input_dirs: input folders (images, ground truth); ``res_dir`` may not be, be inside, or contain
            one (:class:`~cosinetrack.errors.CosineTrackDataError`, a ``ValueError``).
        compression: TIFF compression of the masks: ``"zlib"`` (default), ``"lzw"`` or ``None``.

    Attributes:
        res_dir: the final folder. tmp_dir: the temporary folder being written (a sibling of ``res_dir``).
    """

    def __init__(
        self,
        res_dir: str | os.PathLike,
        digits: int = 3,
        *,
        overwrite: bool = False,
        input_dirs: Iterable[str | os.PathLike | None] = (),
        compression: str | None = "zlib",
    ) -> None:
        self.res_dir = os.path.abspath(os.fspath(res_dir))
        ctc_mask_name(0, digits)  # validates digits
        refuse_output_over_inputs(self.res_dir, input_dirs, key="res_dir")
        self.digits = digits
        self.compression = compression
        self._frame_labels: dict[int, np.ndarray] = {}
        self._shape: tuple[int, ...] | None = None
        self._atomic = atomic_directory(self.res_dir, overwrite=overwrite)
        self.tmp_dir: str | None = self._atomic.__enter__()

    @classmethod
    def for_sequence(
        cls,
        sequence: CTCSequence,
        out_root: str | os.PathLike | None = None,
        *,
        overwrite: bool = False,
        compression: str | None = "zlib",
    ) -> CTCResultWriter:
        """Writer of ``<out_root>/<name>_RES`` for a sequence of :func:`~cosinetrack.apps.cell.find_ctc_sequences`.

        ``out_root`` defaults to the data set folder (the official layout). The digit count is the
        sequence's, and its image and ground-truth folders are refused as outputs.
        """
        root = sequence.root if out_root is None else os.fspath(out_root)
        return cls(
            os.path.join(root, f"{sequence.name}_RES"),
            digits=sequence.digits or 3,
            overwrite=overwrite,
            input_dirs=(sequence.image_dir, sequence.gt_dir),
            compression=compression,
        )

    @property
    def closed(self) -> bool:
        """True once the result was renamed into place or discarded."""
        return self.tmp_dir is None

    @property
    def frames(self) -> list[int]:
        """Frame numbers written so far, increasing."""
        return sorted(self._frame_labels)

    def _require_open(self) -> str:
        if self.tmp_dir is None:
            raise RuntimeError(f"{self.res_dir}: the result writer is already closed")
        return self.tmp_dir

    def write_frame(self, t: int, labels: np.ndarray) -> None:
        """Write the ``(H, W)`` labels (integers in 0..65535, 0 = background) of frame ``t``.

        Raises:
            ValueError: bad labels, a size different from earlier frames, a frame number that does not
                fit the digits, or a frame written twice. RuntimeError: writer closed.
        """
        tmp = self._require_open()
        t = int(t)
        name = ctc_mask_name(t, self.digits)
        if t in self._frame_labels:
            raise ValueError(f"{self.res_dir}: frame {t} written twice")
        mask = _as_mask(labels, f"{self.res_dir}: frame {t}")
        if self._shape is None:
            self._shape = mask.shape
        elif mask.shape != self._shape:
            raise ValueError(f"{self.res_dir}: frame {t} has size {mask.shape}, earlier frames {self._shape}")
        _write_mask(os.path.join(tmp, name), mask, self.compression)
        self._frame_labels[t] = _frame_labels(mask)

    def relabel(self, mapping: FrameMapping, unmapped: Literal["background", "keep"] = "background") -> None:
        """Rewrite the masks written so far with per-frame ``{old id: new id}`` maps, one frame at a time.

        E.g. ``mappings, tracks = tracker.lineage(); writer.relabel(mappings); writer.close(tracks)``. See
        :func:`relabel_ctc_masks` for the rules (by default ids missing from a frame's dict become 0;
        frames without a dict are untouched).
        """
        tmp = self._require_open()
        self._frame_labels.update(relabel_ctc_masks(tmp, mapping, self.frames, self.compression, unmapped))

    def tracks(self) -> np.ndarray:
        """The ``(N, 4)`` parentless track table of the masks written so far (see :func:`tracks_from_masks`)."""
        return tracks_table_from_labels(self._frame_labels, contiguous=True)

    def close(self, tracks: np.ndarray | Sequence[Sequence[int]] | None = None, check: bool = True) -> str:
        """Write ``res_track.txt`` and rename the temporary folder to :attr:`res_dir`; returns that path.

        Args:
            tracks: ``(N, 4)`` ``L B E P`` rows (P = 0 for no parent); ``None`` derives parentless tracks
                from the masks (:meth:`tracks`).
            check: verify that the masks and the table agree (every track's label is in each frame
                ``B..E`` and nowhere else) and raise ``ValueError`` listing the mismatches if not.

        Raises:
            ValueError: no frame written, frames not numbered ``0..T-1``, bad or (with ``check``)
                inconsistent tracks. The writer stays open, so the caller may fix and retry or abort;
                inside a ``with`` block the exception discards the result.
        """
        tmp = self._require_open()
        frames = self.frames
        if not frames:
            raise ValueError(f"{self.res_dir}: no frame written")
        if frames != list(range(len(frames))):
            missing = sorted(set(range(frames[-1] + 1)) - set(frames))
            raise ValueError(f"{self.res_dir}: a CTC result needs a mask for every frame 0..T-1; missing {missing}")
        tracks = self.tracks() if tracks is None else _as_tracks(tracks)
        if check:
            problems = check_tracks(tracks, self._frame_labels)
            if problems:
                more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
                raise ValueError(f"{self.res_dir}: tracks disagree with the masks: {'; '.join(problems[:10])}{more}")
        write_track_table(os.path.join(tmp, RES_TRACK), tracks)
        self.tmp_dir = None
        self._atomic.__exit__(None, None, None)
        return self.res_dir

    def abort(self) -> None:
        """Discard everything written (the temporary folder); an existing result folder is untouched."""
        if self.tmp_dir is None:
            return
        self.tmp_dir = None
        error = RuntimeError("result writing aborted")
        with contextlib.suppress(RuntimeError):
            self._atomic.__exit__(RuntimeError, error, None)

    def __enter__(self) -> CTCResultWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
            return
        if not self.closed:
            self.abort()
            raise RuntimeError(f"{self.res_dir}: close(tracks) was not called; the result was discarded")

    def __del__(self) -> None:  # a writer dropped without close/abort leaves no temporary folder behind
        with contextlib.suppress(Exception):
            self.abort()


def write_ctc_result(
    res_dir: str | os.PathLike,
    masks: np.ndarray | Iterable[np.ndarray],
    tracks: np.ndarray | Sequence[Sequence[int]] | None = None,
    *,
    digits: int = 3,
    overwrite: bool = False,
    input_dirs: Iterable[str | os.PathLike | None] = (),
    compression: str | None = "zlib",
) -> str:
    """Write a whole CTC result folder at once: ``masks[t]`` → ``maskT.tif``, ``tracks`` → ``res_track.txt``.

    Args:
        res_dir: the result folder (``NN_RES``), created atomically.
        masks: ``(T, H, W)`` labels in 0..65535 or an iterable of ``(H, W)`` frames; frame ``t`` = position.
        tracks: ``(N, 4)`` ``L B E P`` rows, or ``None`` for parentless tracks derived from the masks.
        digits, overwrite, input_dirs, compression: as :class:`CTCResultWriter`.

    Returns:
        ``res_dir`` as an absolute path.

    Raises:
        As :class:`CTCResultWriter` (``FileExistsError``, ``ValueError``); nothing is left on failure.
    """
    with CTCResultWriter(
        res_dir, digits, overwrite=overwrite, input_dirs=input_dirs, compression=compression
    ) as writer:
        for t, mask in enumerate(masks):
            writer.write_frame(t, mask)
        return writer.close(tracks)


# ----------------------------------------------------------------------------------------------------
# writing a subsequence (held-out splits that py-ctcmetrics can score)
# ----------------------------------------------------------------------------------------------------


def write_ctc_subsequence(
    sequence: CTCSequence,
    frames: Sequence[int],
    out_root: str | os.PathLike,
    name: str = "01",
    *,
    overwrite: bool = False,
) -> CTCSequence:
    """Write consecutive frames of a sequence as a CTC data set of their own, renumbered from 0.

    Writes ``<out_root>/<name>/tTTT.tif`` and, when the sequence has ground truth,
    ``<out_root>/<name>_GT/TRA/man_trackTTT.tif`` + ``man_track.txt`` and ``<name>_GT/SEG/man_segTTT.tif``
    (only for the frames that have a SEG file), frame ``frames[i]`` becoming frame ``i`` with the
    sequence's digit count. The TIFF files are copied byte for byte (only their names change), so a
    held-out split (e.g. the last 15 frames of a sequence) can be scored with py-ctcmetrics.

    The track table is clipped to the window ``first..last``: tracks outside it are dropped,
    ``B = max(B, first) - first`` and ``E = min(E, last) - first``; a parent that is not kept (it ends
    before ``first``, e.g. the mother of a division that straddles the window start) becomes ``P = 0``.
    A kept parent ends before its child begins, so the clipped table stays valid. Track labels are kept.

    Args:
        sequence: a sequence of :func:`~cosinetrack.apps.cell.find_ctc_sequences`.
        frames: consecutive increasing frame numbers of the sequence (e.g. ``range(50, 65)``).
        out_root: the new data set folder (created if needed); it must not be, be inside, or contain the
            sequence's image or ground truth folder.
        name: the new sequence's folder name (default ``"01"``).
        overwrite: replace existing ``<name>`` / ``<name>_GT`` folders (else ``FileExistsError``).

    Returns:
        The new sequence, as :func:`~cosinetrack.apps.cell.find_ctc_sequences` reads it.

    Raises:
        CosineTrackDataError: a frame that the sequence lacks, or (with ground truth) a frame without its
            TRA file, no ``man_track.txt``, or a TRA marker the table lacks
            (:func:`~cosinetrack.apps.cell.check_tra_markers`).
        ValueError: empty or non-consecutive ``frames``, a bad ``name``, or an output folder that overlaps
            an input folder.
        FileExistsError: see ``overwrite``.
    """
    frames = sequence_frames(sequence, [int(t) for t in frames])
    if not frames:
        raise ValueError("frames: no frame given")
    if frames != list(range(frames[0], frames[0] + len(frames))):
        raise ValueError(
            f"frames: must be consecutive and increasing, got {frames[:10]}{'...' if len(frames) > 10 else ''}"
        )
    name = str(name)
    if not name or name in (".", "..") or os.sep in name or (os.altsep and os.altsep in name):
        raise ValueError(f"name: must be a plain folder name such as '01', got {name!r}")
    first, last = frames[0], frames[-1]
    digits = sequence.digits or 3
    out_root = os.path.abspath(os.fspath(out_root))
    image_out = os.path.join(out_root, name)
    gt_out = os.path.join(out_root, f"{name}_GT")
    inputs = [sequence.image_dir, sequence.gt_dir]
    for out in (image_out, gt_out):
        o = os.path.realpath(out)
        for inp in inputs:
            if inp is None:
                continue
            i = os.path.realpath(inp)
            if o == i or o.startswith(i + os.sep) or i.startswith(o + os.sep):
                raise ValueError(
                    f"{out}: output folder is, is inside, or contains the input folder {i}; choose another out_root"
                )

    has_gt = sequence.gt_dir is not None
    if not overwrite:  # check both before writing either, so a refusal leaves nothing half written
        for out in (image_out, gt_out) if has_gt else (image_out,):
            if os.path.exists(out):
                raise FileExistsError(f"{out}: already exists; choose another out_root or pass overwrite=True")
    tracks = None
    if has_gt:
        if sequence.man_track is None:
            raise CosineTrackDataError(
                sequence.gt_dir, f"no tracking ground truth (TRA/{MAN_TRACK}) for this sequence"
            )
        missing = [t for t in frames if t not in sequence.tra]
        if missing:
            raise CosineTrackDataError(
                os.path.join(sequence.gt_dir, "TRA"), f"TRA marker files missing for frame(s) {missing}"
            )
        table = read_man_track(sequence.man_track)
        for t in frames:  # the copies are scored as ground truth: their markers must match the table
            check_tra_markers(sequence.tra[t], read_ctc_label(sequence.tra[t]), t, table)
        inside = (table[:, 2] >= first) & (table[:, 1] <= last)
        table = table[inside].copy()
        kept = set(table[:, 0].tolist())
        table[:, 1] = np.maximum(table[:, 1], first) - first
        table[:, 2] = np.minimum(table[:, 2], last) - first
        table[~np.isin(table[:, 3], list(kept)), 3] = 0
        tracks = table

    def copy(src: str, folder: str, prefix: str, t: int) -> None:
        shutil.copyfile(src, os.path.join(folder, f"{prefix}{t - first:0{digits}d}.tif"))

    with atomic_directory(image_out, overwrite=overwrite) as tmp:
        for t in frames:
            copy(sequence.images[t], tmp, "t", t)
    if has_gt:
        with atomic_directory(gt_out, overwrite=overwrite) as tmp:
            os.makedirs(os.path.join(tmp, "TRA"))
            for t in frames:
                copy(sequence.tra[t], os.path.join(tmp, "TRA"), "man_track", t)
            write_track_table(os.path.join(tmp, "TRA", MAN_TRACK), tracks)
            seg = [t for t in frames if t in sequence.seg]
            if seg:
                os.makedirs(os.path.join(tmp, "SEG"))
                for t in seg:
                    copy(sequence.seg[t], os.path.join(tmp, "SEG"), "man_seg", t)
    return find_ctc_sequences(image_out)[0]
