"""Reader of the official Cell Tracking Challenge (CTC) layout of 2D+t sequences.

Layout of one data set folder (e.g. ``ctc/Fluo-N2DH-SIM+``), as distributed by the CTC::

    01/t000.tif                     the frames of sequence 01: 2D greyscale TIFF (uint8 or uint16, LZW)
    01_GT/SEG/man_seg002.tif        reference segmentation of some frames (every frame for SIM+, a few
                                    frames with only a few cells for GOWT1): 0 = background, k > 0 = cell
    01_GT/TRA/man_track000.tif      tracking markers of every frame: k > 0 = marker of track k
    01_GT/TRA/man_track.txt         the lineage, one track a line: ``L B E P`` (label, first frame, last
                                    frame, parent label or 0)
    02/..., 02_GT/...               further sequences

Frame numbers have 3 digits (``t000``), or 4 (``t0000``) for long sequences; the digit count is detected
per sequence (:func:`find_ctc_sequences`, key ``"digits"``) so that results can be written with the same
count (:mod:`cosinetrack.apps.cell.writer`). All names in one folder must use the same count.

Conventions
-----------
* A *sequence* is the dict returned by :func:`find_ctc_sequences`; frames are referred to by their CTC
  frame number ``t`` (the number in the file name), and stacked arrays follow ``sequence.frames``
  (or the ``frames`` argument) in increasing order, so axis-0 index ``i`` is frame ``frames[i]``.
* Images are ``(H, W)`` / ``(T, H, W)`` float32 holding the stored intensities unchanged (no scaling);
  axis 0 = image rows (top to bottom), axis 1 = columns.
* Training labels (:func:`merge_seg_tra`, :func:`read_ctc_training_video`) are int64 with ids that are
  the TRA track ids, so a cell keeps its id through the video; ``-1``
  (:data:`~cosinetrack.apps.lv_mri.IGNORE_LABEL`) means "no label here" and ``0`` background. Background
  is only given on *complete* frames (SEG exists and segments every tracked cell), as in the paper: on
  every other frame the pixels that are not labeled are ``-1`` so that they do not teach background.
* Bad input raises :class:`~cosinetrack.errors.CosineTrackDataError` naming the file (and line).
* Nothing here writes files: :mod:`cosinetrack.apps.cell.writer` writes results and renumbered copies of some frames
  with their ground truth (``write_ctc_subsequence``, e.g. a held-out part to score).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import tifffile
from scipy import ndimage

from cosinetrack.apps.cell.layout import IMAGE_RE, MAN_TRACK, SEG_RE, SEQUENCE_RE, TRA_RE, numbered_files
from cosinetrack.apps.cell.sequence import CTCSequence
from cosinetrack.errors import CosineTrackDataError
from cosinetrack.labels import IGNORE_LABEL

__all__ = [
    "find_ctc_sequences",
    "check_ctc_frames",
    "sequence_frames",
    "read_ctc_frame",
    "read_ctc_label",
    "iter_ctc_frames",
    "read_ctc_video",
    "read_man_track",
    "check_tra_markers",
    "merge_seg_tra",
    "iter_ctc_training_frames",
    "read_ctc_training_video",
]


# ----------------------------------------------------------------------------------------------------
# finding sequences
# ----------------------------------------------------------------------------------------------------


def _sequence(image_dir: str) -> CTCSequence:
    image_dir = os.path.abspath(image_dir)
    images, digits = numbered_files(image_dir, IMAGE_RE)
    name = os.path.basename(image_dir)
    root = os.path.dirname(image_dir)
    gt_dir = os.path.join(root, f"{name}_GT")
    gt_dir = gt_dir if os.path.isdir(gt_dir) else None
    seg: dict[int, str] = {}
    tra: dict[int, str] = {}
    man_track = None
    if gt_dir is not None:
        seg, _ = numbered_files(os.path.join(gt_dir, "SEG"), SEG_RE)
        tra, _ = numbered_files(os.path.join(gt_dir, "TRA"), TRA_RE)
        man_track = os.path.join(gt_dir, "TRA", MAN_TRACK)
        man_track = man_track if os.path.isfile(man_track) else None
    return CTCSequence(
        name=name,
        root=root,
        image_dir=image_dir,
        gt_dir=gt_dir,
        frames=tuple(images),
        digits=digits,
        images=images,
        seg=seg,
        tra=tra,
        man_track=man_track,
    )


def find_ctc_sequences(path: str | os.PathLike) -> list[CTCSequence]:
    """List the CTC sequences of a data set folder, or the one sequence of a sequence folder.

    Args:
        path: either a data set folder holding sequence folders named by two digits (``01``, ``02``, ...,
            each with ``tTTT.tif`` frames, optionally beside ``01_GT``, ...), e.g. ``.../Fluo-N2DH-SIM+``;
            or one sequence folder itself (a folder holding ``tTTT.tif`` files, e.g. ``.../Fluo-N2DH-SIM+/01``),
            whose ground truth is then looked for beside it (``.../Fluo-N2DH-SIM+/01_GT``).

    Returns:
        One :class:`~cosinetrack.apps.cell.sequence.CTCSequence` per sequence, sorted by name (``name``
        ``"01"``, ``root``, ``image_dir``, ``gt_dir`` or ``None``, sorted ``frames``, ``digits`` 3 or 4,
        ``images`` / ``seg`` / ``tra``: frame number -> path, ``man_track`` path or ``None``).

        All paths are absolute. ``seg``/``tra`` are empty without ground truth. Frame numbers need not
        be contiguous (a subset copy of a sequence is read as it is).

    Raises:
        CosineTrackDataError: the folder is missing, no sequence is found, or a folder mixes 3- and
            4-digit frame numbers.
    """
    folder = os.path.abspath(os.fspath(path))
    if not os.path.isdir(folder):
        raise CosineTrackDataError(folder, "CTC data folder not found")
    direct, _ = numbered_files(folder, IMAGE_RE)
    if direct:
        return [_sequence(folder)]
    sequences = []
    for name in sorted(os.listdir(folder)):
        sub = os.path.join(folder, name)
        if SEQUENCE_RE.match(name) and os.path.isdir(sub) and numbered_files(sub, IMAGE_RE)[0]:
            sequences.append(_sequence(sub))
    if not sequences:
        raise CosineTrackDataError(
            folder,
            "no CTC sequence found: expected sequence folders named 01, 02, ... holding frames t000.tif (or "
            "t0000.tif), or a sequence folder holding such frames itself",
        )
    return sequences


def check_ctc_frames(sequence: CTCSequence) -> CTCSequence:
    """Check a sequence of :func:`find_ctc_sequences` before it is tracked; return it unchanged.

    Without reading pixel data: the frame numbers must have no gap (``t000, t001, t003`` would otherwise
    be tracked as if ``t003`` followed ``t001``, and written as ``mask002``), and every frame's TIFF header
    must give the same 2D size as the first frame's.

    Raises:
        CosineTrackDataError: naming the image folder and the missing frame numbers, or the file whose
            header is unreadable or whose size differs.
    """
    frames = list(sequence.frames)
    if frames:
        missing = sorted(set(range(frames[0], frames[-1] + 1)) - set(frames))
        if missing:
            shown = ", ".join(f"t{t:0{sequence.digits or 3}d}.tif" for t in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise CosineTrackDataError(
                sequence.image_dir,
                f"frames are missing from the video: {shown}{more}. A gap would be tracked as if no time had "
                "passed; add the missing frames, or split the video into folders without gaps",
            )
    shape = None
    for t in frames:
        path = sequence.images[t]
        try:
            with tifffile.TiffFile(path) as tif:
                size = tuple(n for n in tif.series[0].shape if n != 1)
        except Exception as exc:  # tifffile raises TiffFileError, ValueError, OSError...
            raise CosineTrackDataError(path, f"cannot read the TIFF ({type(exc).__name__}: {exc})") from exc
        if shape is None:
            shape = size
        elif size != shape:
            raise CosineTrackDataError(path, f"frame size {size} differs from the first frame's {shape}")
    return sequence


def sequence_frames(sequence: CTCSequence, frames: Sequence[int] | None) -> list[int]:
    """``frames`` of ``sequence`` as ints (all of them for ``None``), each checked to exist."""
    if frames is None:
        return list(sequence.frames)
    frames = [int(t) for t in frames]
    missing = [t for t in frames if t not in sequence.images]
    if missing:
        available = sequence.frames
        span = f"{available[0]}..{available[-1]}" if available else "none"
        raise CosineTrackDataError(
            sequence.image_dir, f"frame(s) {missing} not found (frames available: {span}, {len(available)} files)"
        )
    return frames


# ----------------------------------------------------------------------------------------------------
# reading frames
# ----------------------------------------------------------------------------------------------------


def read_ctc_frame(path: str | os.PathLike) -> np.ndarray:
    """Read one CTC TIFF (image, SEG or TRA file) as stored: a 2D ``(H, W)`` array of its own dtype.

    Axes of length 1 (e.g. a ``(1, H, W)`` page stack) are dropped. Any compression tifffile and
    imagecodecs can decode (the CTC files are LZW) is accepted.

    Raises:
        CosineTrackDataError: missing or unreadable file, not a 2D single-channel image (e.g. a 3D
            stack, several pages, or RGB), an empty image, or floating-point pixels that are NaN or infinite
            or beyond the float32 range (they would poison the normalization and the GRU state for the rest
            of the video).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CosineTrackDataError(path, "file not found")
    try:
        array = tifffile.imread(path)
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, OSError, codec errors...
        raise CosineTrackDataError(path, f"cannot read the TIFF ({type(exc).__name__}: {exc})") from exc
    array = np.asarray(array)
    if array.ndim > 2:
        array = array.reshape([n for n in array.shape if n != 1] or [1, 1])
    if array.ndim != 2:
        raise CosineTrackDataError(
            path, f"expected a 2D single-channel image, got shape {array.shape}; only 2D+t CTC data is supported"
        )
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise CosineTrackDataError(path, f"unsupported pixel type {array.dtype}")
    if array.size == 0:
        raise CosineTrackDataError(path, f"the image is empty (shape {array.shape})")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int(array.size - np.isfinite(array).sum())
        raise CosineTrackDataError(path, f"{bad} pixel(s) are NaN or infinite; replace them before tracking")
    if np.issubdtype(array.dtype, np.floating) and array.dtype.itemsize > 4:
        big = int((np.abs(array) > np.finfo(np.float32).max).sum())  # would become inf in float32
        if big:
            raise CosineTrackDataError(
                path,
                f"{big} pixel(s) exceed the float32 range (largest magnitude {float(np.abs(array).max()):g}); "
                "rescale the image",
            )
    return array


def read_ctc_label(path: str | os.PathLike) -> np.ndarray:
    """Read a CTC label TIFF (``man_seg``, ``man_track`` or a result ``mask``) as ``(H, W)`` int64.

    Raises:
        CosineTrackDataError: as :func:`read_ctc_frame`, or non-integer / negative values.
    """
    array = read_ctc_frame(path)
    if not np.issubdtype(array.dtype, np.integer):
        raise CosineTrackDataError(path, f"label image must hold integers, got {array.dtype}")
    labels = array.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise CosineTrackDataError(path, "negative labels in the label image")
    return labels


def iter_ctc_frames(sequence: CTCSequence, frames: Sequence[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(t, image)`` one frame at a time: image ``(H, W)`` float32, stored intensities.

    Memory stays that of one frame, so inference can stream long videos.

    Args:
        sequence: one dict of :func:`find_ctc_sequences`.
        frames: frame numbers to read, in this order; ``None`` = all, increasing.

    Raises:
        CosineTrackDataError: a missing frame (names the image folder), an unreadable file, or a frame
            whose size differs from the first one read (names that file).
    """
    shape = None
    for t in sequence_frames(sequence, frames):
        path = sequence.images[t]
        image = read_ctc_frame(path)
        if shape is None:
            shape = image.shape
        elif image.shape != shape:
            raise CosineTrackDataError(path, f"frame size {image.shape} differs from the first frame's {shape}")
        yield t, image.astype(np.float32, copy=False)


def read_ctc_video(sequence: CTCSequence, frames: Sequence[int] | None = None) -> np.ndarray:
    """Read frames of a sequence into one ``(T, H, W)`` float32 array (axis 0 follows ``frames``).

    Use :func:`iter_ctc_frames` to stream instead.

    Raises:
        CosineTrackDataError: as :func:`iter_ctc_frames`.
    """
    frames = sequence_frames(sequence, frames)
    video = None
    for i, (_, image) in enumerate(iter_ctc_frames(sequence, frames)):
        if video is None:
            video = np.empty((len(frames), *image.shape), dtype=np.float32)
        video[i] = image
    if video is None:
        raise CosineTrackDataError(sequence.image_dir, "no frames to read")
    return video


# ----------------------------------------------------------------------------------------------------
# tracks
# ----------------------------------------------------------------------------------------------------


def read_man_track(path: str | os.PathLike) -> np.ndarray:
    """Read a CTC track table (``man_track.txt`` or a result's ``res_track.txt``).

    Each non-blank line holds four integers ``L B E P`` separated by spaces or tabs: track label
    ``L > 0``, first frame ``B >= 0``, last frame ``E >= B``, parent label ``P`` (0 = no parent).

    Returns:
        ``(N, 4)`` int64, rows in file order (``(0, 4)`` for an empty file).

    Raises:
        CosineTrackDataError: missing file, or a bad line (message names the file and the 1-based line
            number): not four integers, ``L <= 0``, ``B < 0``, ``E < B``, ``P < 0``, a repeated ``L``, a
            track that is its own parent, a parent not in the table, or a parent that does not end
            before its child begins.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CosineTrackDataError(path, "track table not found")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CosineTrackDataError(path, f"cannot read the track table ({type(exc).__name__}: {exc})") from exc
    rows: list[list[int]] = []
    line_of: dict[int, int] = {}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"line {number} ({line.strip()!r})"
        try:
            values = [int(v) for v in fields]
        except ValueError:
            values = []
        if len(fields) != 4 or len(values) != 4:
            raise CosineTrackDataError(path, f"{where}: expected four integers 'L B E P'")
        label, begin, end, parent = values
        if label <= 0:
            raise CosineTrackDataError(path, f"{where}: track label L must be > 0")
        if begin < 0:
            raise CosineTrackDataError(path, f"{where}: first frame B must be >= 0")
        if end < begin:
            raise CosineTrackDataError(path, f"{where}: last frame E is before the first frame B")
        if parent < 0:
            raise CosineTrackDataError(path, f"{where}: parent P must be >= 0 (0 = no parent)")
        if parent == label:
            raise CosineTrackDataError(path, f"{where}: track is its own parent")
        if label in line_of:
            raise CosineTrackDataError(path, f"{where}: track label {label} already defined on line {line_of[label]}")
        line_of[label] = number
        rows.append(values)
    tracks = np.array(rows, dtype=np.int64).reshape(-1, 4)
    ends = {int(r[0]): int(r[2]) for r in tracks}
    for label, begin, _, parent in tracks:
        if parent == 0:
            continue
        where = f"line {line_of[int(label)]}"
        if int(parent) not in ends:
            raise CosineTrackDataError(path, f"{where}: parent {parent} of track {label} is not in the table")
        if ends[int(parent)] >= begin:
            raise CosineTrackDataError(
                path,
                f"{where}: parent {parent} ends at frame {ends[int(parent)]}, not before its child {label} begins "
                f"(frame {begin})",
            )
    return tracks


def check_tra_markers(path: str | os.PathLike, tra: np.ndarray, frame: int, tracks: np.ndarray) -> None:
    """Check that every marker of one TRA frame is a track of ``man_track.txt`` alive at that frame.

    A marker id that the track table lacks, or that is drawn outside its track's frames ``B..E``, would
    otherwise be trained on as a cell and scored as ground truth (py-ctcmetrics takes the masks as they
    are), silently: the ground truth must say what the lineage says.

    Args:
        path: the TRA file (``man_trackT.tif``), for the message.
        tra: its ``(H, W)`` non-negative integer markers (:func:`read_ctc_label`).
        frame: its CTC frame number ``T``.
        tracks: the ``(N, 4)`` table of :func:`read_man_track` (``L B E P``).

    Raises:
        CosineTrackDataError: the message starts with ``path`` and lists the offending marker ids.
    """
    ids = np.unique(tra[tra > 0]) if tra.size else np.zeros(0, dtype=np.int64)
    if not ids.size:
        return
    span = {int(label): (int(begin), int(end)) for label, begin, end, _ in np.asarray(tracks).reshape(-1, 4)}
    absent = [int(i) for i in ids if int(i) not in span]
    if absent:
        shown = ", ".join(map(str, absent[:10])) + (f" and {len(absent) - 10} more" if len(absent) > 10 else "")
        raise CosineTrackDataError(
            path,
            f"marker label(s) {shown} of frame {frame} are not in {MAN_TRACK}; every TRA marker must be a "
            f"track of {MAN_TRACK} (fix the markers or add the tracks)",
        )
    outside = [(int(i), span[int(i)]) for i in ids if not span[int(i)][0] <= frame <= span[int(i)][1]]
    if outside:
        shown = ", ".join(f"{i} (frames {b}..{e})" for i, (b, e) in outside[:10])
        raise CosineTrackDataError(
            path, f"marker label(s) drawn in frame {frame} outside their track's frames in {MAN_TRACK}: {shown}"
        )


# ----------------------------------------------------------------------------------------------------
# SEG + TRA -> training labels
# ----------------------------------------------------------------------------------------------------


def merge_seg_tra(
    seg: np.ndarray | None, tra: np.ndarray, first_fresh_id: int | None = None, background_margin: float | None = None
) -> tuple[np.ndarray, bool]:
    """Training labels of one frame from its SEG (optional) and TRA ground truth.

    Rules (paper §3: "each SEG label takes the TRA ID it overlaps most"):

    * Each SEG label takes the TRA id it overlaps with most pixels; ties go to the smallest id. Two SEG
      labels may take the same TRA id (the marker spans both): they become one instance.
    * A SEG label that overlaps no TRA marker gets a fresh id: ``first_fresh_id``, ``first_fresh_id + 1``,
      ... in increasing order of SEG label. ``first_fresh_id`` must be above every track id of the video
      (default: ``tra.max() + 1``, which is only safe for a single frame); :func:`iter_ctc_training_frames`
      passes ids above ``man_track.txt`` and never reuses one in a later frame.
    * A TRA id that no SEG label took (no SEG for the frame, SEG misses the cell, or the cell's SEG label
      went to another TRA id) is kept as a marker-only label: its marker pixels get its id, painted over
      SEG labels.
    * The frame is **complete** when SEG exists and every TRA id of the frame took a SEG label. Pixels that
      are not labeled by the rules above are background ``0`` on complete frames and ``-1`` ("no label
      here") otherwise; so a frame whose SEG misses some cells (most GOWT1 SEG frames annotate only a few
      cells) keeps its SEG labels and markers but teaches no background. Marker pixels of a SEG-covered
      cell that fall outside its SEG label follow SEG (background or unknown).
    * ``background_margin`` (off by default): on a frame that is not complete, the unlabeled pixels
      farther than ``background_margin`` pixels from every SEG label and TRA marker become background
      ``0``. The CTC tracking ground truth marks every cell of every frame, so such pixels hold no cell;
      without this, a data set whose SEG frames are all partial (Fluo-N2DH-GOWT1) teaches no background at
      all, and a model trained on it separates nothing from the background. Take a margin of about a cell
      radius where markers are smaller than the cells. The frame still counts as not complete.

    Args:
        seg: ``(H, W)`` non-negative integer SEG labels (0 = background), or ``None`` when the frame has
            no SEG file.
        tra: ``(H, W)`` non-negative integer TRA markers (0 = no marker), ids = track labels.
        first_fresh_id: first id given to SEG labels without a marker.
        background_margin: pixels; see above (``None``: off).

    Returns:
        ``(labels, complete)``: labels ``(H, W)`` int64 with values ``-1``, ``0`` or ids; complete a bool.

    Raises:
        ValueError: shapes differ, negative values or a negative ``background_margin``.
    """
    if background_margin is not None and not float(background_margin) >= 0:
        raise ValueError(f"background_margin must be >= 0 pixels or None, got {background_margin}")
    labels, complete = _merge_seg_tra(seg, tra, first_fresh_id)
    if background_margin is not None and not complete:
        unlabeled = labels == IGNORE_LABEL
        if unlabeled.any() and not unlabeled.all():
            far = ndimage.distance_transform_edt(unlabeled) > float(background_margin)
            labels[far] = 0
    return labels, complete


def _merge_seg_tra(
    seg: np.ndarray | None, tra: np.ndarray, first_fresh_id: int | None = None
) -> tuple[np.ndarray, bool]:
    """:func:`merge_seg_tra` without ``background_margin``."""
    tra = np.asarray(tra)
    if tra.ndim != 2:
        raise ValueError(f"tra must be 2D (H, W), got shape {tra.shape}")
    tra = tra.astype(np.int64, copy=False)
    if tra.size and tra.min() < 0:
        raise ValueError("tra has negative labels")
    tra_ids = np.unique(tra[tra > 0])
    if seg is None:
        labels = np.full(tra.shape, IGNORE_LABEL, dtype=np.int64)
        marked = tra > 0
        labels[marked] = tra[marked]
        return labels, False

    seg = np.asarray(seg)
    if seg.shape != tra.shape:
        raise ValueError(f"seg shape {seg.shape} differs from tra shape {tra.shape}")
    seg = seg.astype(np.int64, copy=False)
    if seg.size and seg.min() < 0:
        raise ValueError("seg has negative labels")
    if first_fresh_id is None:
        first_fresh_id = int(tra_ids[-1]) + 1 if tra_ids.size else 1
    in_seg = seg > 0
    seg_ids = np.unique(seg[in_seg])

    # Overlap counts of (SEG label, TRA id) pairs, then the winner per SEG label: most pixels, smallest id.
    both = in_seg & (tra > 0)
    lut = np.zeros(int(seg_ids[-1]) + 1 if seg_ids.size else 1, dtype=np.int64)
    if both.any():
        base = int(tra_ids[-1]) + 1
        keys, counts = np.unique(seg[both] * base + tra[both], return_counts=True)
        pair_seg, pair_tra = keys // base, keys % base
        order = np.lexsort((pair_tra, -counts, pair_seg))
        pair_seg, pair_tra = pair_seg[order], pair_tra[order]
        first = np.ones(pair_seg.size, dtype=bool)
        first[1:] = pair_seg[1:] != pair_seg[:-1]
        lut[pair_seg[first]] = pair_tra[first]
    unmarked = seg_ids[lut[seg_ids] == 0]
    lut[unmarked] = first_fresh_id + np.arange(unmarked.size, dtype=np.int64)
    taken = np.unique(lut[seg_ids])

    complete = bool(np.isin(tra_ids, taken).all())
    labels = np.full(tra.shape, 0 if complete else IGNORE_LABEL, dtype=np.int64)
    labels[in_seg] = lut[seg[in_seg]]
    marker_only = tra_ids[~np.isin(tra_ids, taken)]
    if marker_only.size:
        paint = np.isin(tra, marker_only)
        labels[paint] = tra[paint]
    return labels, complete


def iter_ctc_training_frames(
    sequence: CTCSequence, frames: Sequence[int] | None = None, background_margin: float | None = None
) -> Iterator[dict]:
    """Yield the training data of one frame at a time (see :func:`merge_seg_tra` for the label rules and
    ``background_margin``).

    Each item: ``{"frame": t, "image": (H, W) float32, "label": (H, W) int64, "complete": bool,
    "has_seg": bool}``. Fresh ids of SEG labels without a marker start above every label of
    ``man_track.txt`` and are not reused within one call (they depend on which frames are read).

    Raises:
        CosineTrackDataError: no ground truth (no ``man_track.txt``), a frame without its TRA file, bad
            files, GT and image sizes that differ (names the GT file), or a TRA marker that
            ``man_track.txt`` lacks or places in other frames (:func:`check_tra_markers`).
    """
    if sequence.man_track is None:
        where = sequence.gt_dir or f"{os.path.normpath(sequence.image_dir)}_GT"  # name may be prefixed
        raise CosineTrackDataError(where, f"no tracking ground truth (TRA/{MAN_TRACK}) for this sequence")
    tracks = read_man_track(sequence.man_track)
    next_fresh = int(tracks[:, 0].max()) + 1 if len(tracks) else 1
    frames = sequence_frames(sequence, frames)
    missing = [t for t in frames if t not in sequence.tra]
    if missing:
        raise CosineTrackDataError(
            os.path.join(sequence.gt_dir, "TRA"), f"TRA marker files missing for frame(s) {missing}"
        )
    for t, image in iter_ctc_frames(sequence, frames):
        tra = read_ctc_label(sequence.tra[t])
        if tra.shape != image.shape:
            raise CosineTrackDataError(
                sequence.tra[t], f"size {tra.shape} differs from the image size {image.shape}"
            )
        check_tra_markers(sequence.tra[t], tra, t, tracks)
        seg = None
        if t in sequence.seg:
            seg = read_ctc_label(sequence.seg[t])
            if seg.shape != image.shape:
                raise CosineTrackDataError(
                    sequence.seg[t], f"size {seg.shape} differs from the image size {image.shape}"
                )
        start = max(next_fresh, int(tra.max()) + 1 if tra.size else 1)
        label, complete = merge_seg_tra(seg, tra, first_fresh_id=start, background_margin=background_margin)
        next_fresh = max(start, int(label.max()) + 1 if label.size else start)
        yield {"frame": t, "image": image, "label": label, "complete": complete, "has_seg": seg is not None}


def read_ctc_training_video(
    sequence: CTCSequence, frames: Sequence[int] | None = None, background_margin: float | None = None
) -> dict:
    """Read a whole annotated sequence (or the given frames) for training (``background_margin``: see
    :func:`merge_seg_tra`).

    Returns:
        ``{"name": "01", "image": (T, H, W) float32, "label": (T, H, W) int64 (-1 = no label, 0 =
        background on complete frames, k = track k), "complete": (T,) bool, "has_seg": (T,) bool,
        "frames": [t, ...], "tracks": (N, 4) int64 man_track table}``; axis 0 follows ``frames``.

    Memory: 12 bytes per pixel and frame (about 1.1 GB for 92 frames of 1024²); read a subset with
    ``frames`` or stream with :func:`iter_ctc_training_frames` when that is too much.

    Raises:
        CosineTrackDataError: as :func:`iter_ctc_training_frames`.
    """
    frames = sequence_frames(sequence, frames)
    if not frames:
        raise CosineTrackDataError(sequence.image_dir, "no frames to read")
    image = label = None
    complete = np.zeros(len(frames), dtype=bool)
    has_seg = np.zeros(len(frames), dtype=bool)
    for i, item in enumerate(iter_ctc_training_frames(sequence, frames, background_margin)):
        if image is None:
            image = np.empty((len(frames), *item["image"].shape), dtype=np.float32)
            label = np.empty((len(frames), *item["image"].shape), dtype=np.int64)
        image[i], label[i] = item["image"], item["label"]
        complete[i], has_seg[i] = item["complete"], item["has_seg"]
    return {
        "name": sequence.name,
        "image": image,
        "label": label,
        "complete": complete,
        "has_seg": has_seg,
        "frames": frames,
        "tracks": read_man_track(sequence.man_track),
    }
