"""A CTC-valid family tree from raw tracks (paper appendix 3: "post-processing of the lineage").

The Cell Tracking Challenge (CTC) result of a video is one label image per frame (``maskTTT.tif``)
and a track table ``res_track.txt`` with one line ``L B E P`` per track: label, first frame, last
frame (zero-based, inclusive) and parent label (``0``: none). It is valid when (py-ctcmetrics'
``valid``, checked here by :func:`check_ctc_lineage`) labels are unique positive 16-bit values, a
track's label is in the mask of every frame ``B..E`` and in no other frame (tracks are contiguous in
time), every parent exists and ends before its child begins (``E_parent < B_child``).

:func:`make_lineage_valid` turns raw tracks (the frames each id occurs in and a parent per id, e.g.
from :class:`~cosinetrack.tracking.PairTracker`) into such a table plus a per-frame id remapping
``{raw id: CTC label}`` that a writer applies to each raw mask (ids missing from a frame's mapping
become background). Its rules, applied in this order:

1. **Gaps.** An id that is missing in some frames is cut into contiguous pieces. A later piece gets
   the piece before it as parent when the two are at most ``max_gap`` frames apart
   (``B_later - E_earlier <= max_gap``), else it starts a lineage of its own. A parent with a single
   daughter across missing frames is how the CTC ground truth itself encodes a cell that is missed
   for a few frames, so this is a valid link.
2. **Divisions.** A track must end before its children begin. When a child is born at frame ``b``
   while its parent's id still exists at ``b`` (the tracker matched one daughter to the mother's
   id), the parent's piece is cut at ``b``: the part from ``b`` on becomes a new track, a sister of
   the child with the same parent. A child's parent is the last piece of the parent id that ends
   before the child's birth; a parent id without frames before the birth (or the child itself) is
   dropped. Parent links given in ``parents`` are kept whatever their distance in time.
3. **Single daughters.** A track with exactly one child that starts the frame right after the track
   ends is the same cell (e.g. a new id after a failed IoU match, or a division whose other daughter
   was lost): the child is merged into the track (it keeps the earlier track's label) and the child's
   children become the track's. Single daughters across a gap stay separate (rule 1).
4. **Fragments.** Tracks shorter than ``min_track_length`` frames are removed (their pixels become
   background) and their children re-parented to the removed track's parent when that one ends at
   most ``max_gap`` frames before the child begins (else they lose their parent). Exempt, because
   they are legitimately short: tracks of an id that touches the image border (``border_tracks``;
   cells entering or leaving the field of view, ``keep_border_fragments``) and tracks that begin in
   the first or end in the last frame of the video (``keep_fragments_at_video_ends``). Tracks are
   visited by first frame, new ids before the continuation of their parent's id (rule 2), and rule 3
   is applied again after each removal: a mother that lost one of two daughters to rule 4 continues
   as the other one, which then is no short fragment any more.
5. **Short cell cycles** (``min_cycle_length``, off by default). A track born in a division (its
   parent has two or more children) that divides again fewer than ``min_cycle_length`` frames after
   its birth (``E - B + 1 < min_cycle_length``; a real cell cycle lasts tens of frames) is an
   over-segmentation or a lost neighbor, not a mitosis: the later division is undone by cutting the
   parent link of all its children but one, which rule 3 then merges into the track. The cut children
   keep their pixels and their own children (tracks of their own: when the object is a real cell,
   a missing parent link costs less than a missing cell). The child kept is the longest; on a tie
   the one continuing the track's raw id, then the one with the smaller raw id. Divisions are
   visited in time order, so a chain of quick divisions is undone from its first link.
6. **Short daughters** (``min_daughter_length``, off by default). In a division (a track with two or
   more children), a daughter shorter than ``min_daughter_length`` frames that has no children of
   its own and does not end in the last frame of the video is a fragment of the mother read as a
   daughter (over-segmentation): it is removed (its pixels become background) and rule 3 merges the
   mother with the remaining daughter. When every daughter of a division is that short, the longest
   (tie: as in rule 5) stays. Border tracks are not exempt: fragments along the frame border are a
   known artefact.
7. **Labels** are renumbered ``1..N`` in order of first frame (then of raw id).

Small instances (fewer than ``min_size`` pixels) are removed before tracking by the tracker, since
this module sees no pixels.

Helpers: :func:`track_frames_from_labels` and :func:`tracks_table_from_labels` read raw tracks / a
track table off a label video ``(T, H, W)`` (or off the ids present in each frame,
:data:`LabelsPerFrame`), :func:`remap_labels` applies one frame's mapping.

One implementation of each CTC rule on arrays, here in core: :func:`check_tracks_against_labels` is
*the* check "do the tracks agree with the masks?" (a track's label in every frame ``B..E`` and in no
other), and :func:`tracks_table_from_labels` *the* way a track table is read off labels. Core packages
never import ``cosinetrack.apps``, so the cell wing builds on these rather than the other way round:
:mod:`cosinetrack.apps.cell.validation` (``check_tracks``, ``validate_ctc_result``) runs the check on a
result writer's frames or a result folder's masks, :mod:`cosinetrack.apps.cell.writer`
(``tracks_from_masks``) derives the table of masks being written; :func:`check_ctc_lineage` adds the
table-only checks (unique labels, parents) to the same check.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "MAX_CTC_LABEL",
    "LabelsPerFrame",
    "check_ctc_lineage",
    "check_tracks_against_labels",
    "make_lineage_valid",
    "remap_labels",
    "track_frames_from_labels",
    "tracks_table_from_labels",
]

#: labels are stored as 16-bit unsigned integers in CTC masks.
MAX_CTC_LABEL = 65535

#: The masks of a video as the functions below take them: a label video ``(T, H, W)`` (``<= 0`` =
#: background); or one entry per frame ``0..T-1`` (any iterable, e.g. streamed), each an array of labels
#: (an ``(H, W)`` frame) or the ids present in the frame; or ``{frame number: array or ids}``.
LabelsPerFrame = np.ndarray | Iterable[np.ndarray | Iterable[int]] | Mapping[int, np.ndarray | Iterable[int]]


@dataclass(eq=False)
class _Piece:
    """A contiguous part of a track: raw ``(id, first, last)`` parts, its parent and children."""

    parts: list[tuple[int, int, int]]
    start: int
    end: int
    parent: _Piece | None = None
    children: list[_Piece] = field(default_factory=list)
    removed: bool = False

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def _link(child: _Piece, parent: _Piece | None) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
    child.parent = parent
    if parent is not None:
        parent.children.append(child)


def _runs(frames: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs ``(first, last)`` of sorted unique frame indices."""
    breaks = np.nonzero(np.diff(frames) > 1)[0]
    starts = frames[np.r_[0, breaks + 1]]
    ends = frames[np.r_[breaks, frames.size - 1]]
    return [(int(s), int(e)) for s, e in zip(starts, ends)]


def _merge_single_daughters(pieces: list[_Piece]) -> None:
    """Rule 3: absorb a child that is the only one and starts right after its parent ends."""
    for piece in sorted(pieces, key=lambda p: p.start):
        if piece.removed:
            continue
        while len(piece.children) == 1 and piece.children[0].start == piece.end + 1:
            child = piece.children[0]
            piece.parts.extend(child.parts)
            piece.end = child.end
            piece.children = []
            for grandchild in list(child.children):
                grandchild.parent = None
                _link(grandchild, piece)
            child.children = []
            child.removed = True


def _remove_piece(piece: _Piece, max_gap: int) -> None:
    """Remove ``piece`` (rule 4): its children go to its parent when that one ends at most ``max_gap``
    frames before them, else they lose their parent; rule 3 is applied to the parent again."""
    piece.removed = True
    grand = piece.parent
    for child in list(piece.children):
        keep = grand is not None and child.start - grand.end <= max_gap
        _link(child, grand if keep else None)
    _link(piece, None)
    if grand is not None:
        _merge_single_daughters([grand])


def _keep_order(mother: _Piece):
    """Sort key of the children of ``mother``: the one to keep first (longest, continuing the mother's
    raw id, smallest raw id)."""
    raw = mother.parts[-1][0]
    return lambda c: (-c.length, c.parts[0][0] != raw, c.parts[0][0])


def _undo_short_cycles(pieces: list[_Piece], min_cycle_length: int) -> None:
    """Rule 5: undo the division of a track born in a division fewer than ``min_cycle_length`` frames
    earlier (all children but the one to keep lose their parent link)."""
    for piece in sorted(pieces, key=lambda p: p.start):
        while (
            not piece.removed
            and len(piece.children) >= 2
            and piece.length < min_cycle_length
            and piece.parent is not None
            and len(piece.parent.children) >= 2
        ):
            for child in sorted(piece.children, key=_keep_order(piece))[1:]:
                _link(child, None)
            _merge_single_daughters([piece])


def _remove_short_daughters(pieces: list[_Piece], min_daughter_length: int, num_frames: int, max_gap: int) -> None:
    """Rule 6: remove daughters of a division that end (without children) fewer than
    ``min_daughter_length`` frames after their birth, before the last frame; the longest one stays."""
    for piece in sorted(pieces, key=lambda p: p.start):
        # again after each merge: the merged daughter's own division is then the piece's
        while not piece.removed and len(piece.children) >= 2:
            daughters = sorted(piece.children, key=_keep_order(piece))
            last = num_frames - 1
            short = [d for d in daughters if d.length < min_daughter_length and not d.children and d.end != last]
            if len(short) == len(daughters):
                short = short[1:]
            if not short:
                break
            for daughter in short:
                _remove_piece(daughter, max_gap)


def _check_count(name: str, value: object, minimum: int) -> int:
    """``value`` as an int, or a ``ValueError`` naming the option when it is no integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum} (frames), got {value!r}")
    return int(value)


def make_lineage_valid(
    track_frames: Mapping[int, Iterable[int]],
    parents: Mapping[int, int] | None = None,
    *,
    num_frames: int | None = None,
    max_gap: int = 8,
    min_track_length: int = 2,
    border_tracks: Collection[int] = (),
    keep_border_fragments: bool = True,
    keep_fragments_at_video_ends: bool = True,
    min_cycle_length: int = 0,
    min_daughter_length: int = 0,
) -> tuple[dict[int, dict[int, int]], np.ndarray]:
    """Make raw tracks a valid CTC lineage (rules in the module docstring).

    Args:
        track_frames: ``{raw id: frames}``, the frame indices (any order, duplicates allowed) in which
            each raw id (``> 0``) occurs.
        parents: ``{raw id: raw parent id}``; ``0`` or absent: no parent.
        num_frames: number of frames ``T`` of the video (default: last frame of any track + 1).
        max_gap: largest frame distance ``B_later - E_earlier`` over which a reappearing id (rule 1)
            or a child of a removed fragment (rule 4) keeps a parent link (``1``: no gap allowed).
        min_track_length: tracks with fewer frames are removed (rule 4); ``1`` keeps all.
        border_tracks: raw ids that touch the image border in some frame.
        keep_border_fragments: exempt tracks of ``border_tracks`` ids from rule 4.
        keep_fragments_at_video_ends: exempt tracks that begin in frame 0 or end in frame ``T - 1``.
        min_cycle_length: a track born in a division that divides again after fewer frames loses the
            later division (rule 5); ``0`` or ``1``: off.
        min_daughter_length: a daughter with fewer frames, no children and not ending in frame
            ``T - 1`` is removed from its division (rule 6); ``0`` or ``1``: off.

    Returns:
        ``(mappings, tracks)``: ``mappings[t]`` is ``{raw id: CTC label}`` for frame ``t`` (a dict over
        ``t = 0..T-1``), with an entry for every raw id occurring in frame ``t``; label ``0`` means the
        instance is removed there. ``tracks`` is the int64 ``(N, 4)`` table ``L B E P`` sorted by
        ``L``, with ``L = 1..N``.

    Raises:
        ValueError: non-positive ids, frames outside ``0..T-1``, bad options, or more than
            65535 tracks (CTC labels are 16 bit).
    """
    parents = dict(parents or {})
    if int(max_gap) < 1:
        raise ValueError(f"max_gap: must be >= 1, got {max_gap}")
    if int(min_track_length) < 1:
        raise ValueError(f"min_track_length: must be >= 1, got {min_track_length}")
    min_cycle_length = _check_count("min_cycle_length", min_cycle_length, 0)
    min_daughter_length = _check_count("min_daughter_length", min_daughter_length, 0)
    frames_of: dict[int, np.ndarray] = {}
    for raw_id, frames in track_frames.items():
        f = np.unique(np.fromiter((int(x) for x in frames), dtype=np.int64))
        if f.size == 0:
            continue
        if int(raw_id) <= 0:
            raise ValueError(f"track_frames: ids must be > 0, got {raw_id}")
        if f[0] < 0:
            raise ValueError(f"track_frames: id {raw_id} has a negative frame index {int(f[0])}")
        frames_of[int(raw_id)] = f
    last = max((int(f[-1]) for f in frames_of.values()), default=-1)
    if num_frames is None:
        num_frames = last + 1
    num_frames = int(num_frames)
    if last >= num_frames:
        raise ValueError(f"track_frames: frame {last} is outside the video of num_frames={num_frames}")

    # rule 2, first half: the birth frame of every child whose parent id exists before it
    births_in: dict[int, set[int]] = {}
    child_parent: dict[int, int] = {}
    for child, parent in parents.items():
        child, parent = int(child), int(parent)
        if parent == 0 or child == parent or child not in frames_of or parent not in frames_of:
            continue
        birth = int(frames_of[child][0])
        if frames_of[parent][0] >= birth:
            continue
        child_parent[child] = parent
        births_in.setdefault(parent, set()).add(birth)

    # rule 1 and rule 2, second half: contiguous pieces, cut at the births of children
    pieces_of: dict[int, list[_Piece]] = {}
    for raw_id, f in frames_of.items():
        cuts = sorted(births_in.get(raw_id, ()))
        pieces: list[_Piece] = []
        for start, end in _runs(f):
            bounds = [start] + [b for b in cuts if start < b <= end] + [end + 1]
            for s, e in zip(bounds[:-1], bounds[1:]):
                piece = _Piece(parts=[(raw_id, s, e - 1)], start=s, end=e - 1)
                if pieces and piece.start - pieces[-1].end <= max_gap:
                    _link(piece, pieces[-1])
                pieces.append(piece)
        pieces_of[raw_id] = pieces
    for child, parent in child_parent.items():
        first = pieces_of[child][0]
        before = [p for p in pieces_of[parent] if p.end < first.start]
        _link(first, before[-1])  # exists: the parent id has frames before the child's birth
    all_pieces = [p for pieces in pieces_of.values() for p in pieces]

    # rule 3, rule 4, rule 3 again
    _merge_single_daughters(all_pieces)
    border = {int(i) for i in border_tracks}

    def continues_parent(p: _Piece) -> bool:  # the same raw id as the end of its parent
        return p.parent is not None and p.parent.parts[-1][0] == p.parts[0][0]

    # among short siblings, new ids go before the continuation of the parent's id, which can then
    # be merged back into the parent (rule 3 right after each removal)
    for piece in sorted(all_pieces, key=lambda p: (p.start, continues_parent(p))):
        if piece.removed or piece.length >= min_track_length:
            continue
        if keep_border_fragments and any(raw in border for raw, _, _ in piece.parts):
            continue
        if keep_fragments_at_video_ends and (piece.start == 0 or piece.end == num_frames - 1):
            continue
        _remove_piece(piece, max_gap)
    _merge_single_daughters(all_pieces)

    # rule 5, rule 6 (each followed by rule 3)
    if min_cycle_length > 1:
        _undo_short_cycles(all_pieces, min_cycle_length)
    if min_daughter_length > 1:
        _remove_short_daughters(all_pieces, min_daughter_length, num_frames, max_gap)

    # rule 7
    kept = sorted((p for p in all_pieces if not p.removed), key=lambda p: (p.start, p.parts[0][0]))
    if len(kept) > MAX_CTC_LABEL:
        raise ValueError(f"{len(kept)} tracks do not fit CTC's 16-bit labels (at most {MAX_CTC_LABEL})")
    label = {id(p): i + 1 for i, p in enumerate(kept)}
    tracks = np.zeros((len(kept), 4), dtype=np.int64)
    mappings: dict[int, dict[int, int]] = {t: {} for t in range(num_frames)}
    for raw_id, f in frames_of.items():  # removed unless a kept track claims it below
        for t in f.tolist():
            mappings[t][raw_id] = 0
    for i, piece in enumerate(kept):
        parent = label[id(piece.parent)] if piece.parent is not None else 0
        tracks[i] = (i + 1, piece.start, piece.end, parent)
        for raw_id, s, e in piece.parts:
            for t in range(s, e + 1):
                mappings[t][raw_id] = i + 1
    return mappings, tracks


def remap_labels(labels: np.ndarray, mapping: Mapping[int, int]) -> np.ndarray:
    """Apply one frame's id mapping: ``mapping[i]`` where a pixel has id ``i``, ``0`` elsewhere.

    Args:
        labels: integer labels of any shape (one frame, e.g. ``(H, W)``), ``<= 0`` = background.
        mapping: ``{raw id: new id}``; raw ids not in it become ``0``.

    Returns:
        int32 array of the same shape.
    """
    labels = np.asarray(labels)
    ids, inverse = np.unique(labels, return_inverse=True)
    new = np.array([mapping.get(int(i), 0) if i > 0 else 0 for i in ids], dtype=np.int32)
    return new[inverse].reshape(labels.shape)


def _frame_ids(frame: np.ndarray | Iterable[int]) -> set[int]:
    """The ids ``> 0`` of one frame: an array of labels (any shape) or an iterable of ids."""
    if isinstance(frame, np.ndarray):
        return {int(i) for i in np.unique(frame[frame > 0])}
    return {int(i) for i in frame if int(i) > 0}


def _ids_per_frame(labels_per_frame: LabelsPerFrame) -> dict[int, set[int]]:
    """``{frame number: ids > 0 present}`` of the forms :data:`LabelsPerFrame` allows, sorted by frame."""
    if isinstance(labels_per_frame, Mapping):
        return {int(t): _frame_ids(labels_per_frame[t]) for t in sorted(labels_per_frame, key=int)}
    if isinstance(labels_per_frame, np.ndarray) and labels_per_frame.ndim < 2:
        raise ValueError(
            f"labels: expected a label video (T, H, W) or the ids of each frame, got shape {labels_per_frame.shape}"
        )
    return {t: _frame_ids(frame) for t, frame in enumerate(labels_per_frame)}


def track_frames_from_labels(labels: LabelsPerFrame) -> dict[int, list[int]]:
    """``{id: sorted frames it occurs in}`` of a label video.

    Args:
        labels: ``(T, H, W)`` integer labels, ``<= 0`` = background; or any form of
            :data:`LabelsPerFrame` (per frame the ids present, frames streamed or by number).

    Returns:
        dict from each id ``> 0`` to the sorted list of frame indices where it has pixels.
    """
    out: dict[int, list[int]] = {}
    for t, ids in _ids_per_frame(labels).items():
        for i in sorted(ids):
            out.setdefault(i, []).append(t)
    return out


def tracks_table_from_labels(
    labels: LabelsPerFrame, parents: Mapping[int, int] | None = None, *, contiguous: bool = False
) -> np.ndarray:
    """The ``L B E P`` table of a label video: first and last frame of every id, and its parent.

    The table is a valid CTC track table only if every id is contiguous in time: ask for that with
    ``contiguous`` (or check with :func:`check_ctc_lineage`); use :func:`make_lineage_valid` to make it so.
    :func:`cosinetrack.apps.cell.writer.tracks_from_masks` (the table of a result's masks) is this function
    with ``contiguous=True``.

    Args:
        labels: ``(T, H, W)`` integer labels, ``<= 0`` = background; or any form of
            :data:`LabelsPerFrame` (e.g. per frame the ids present, frames streamed or ``{t: ids}``).
        parents: ``{id: parent id}``; absent: ``0``.
        contiguous: raise ``ValueError`` when an id is absent from a frame between its first and last.

    Returns:
        int64 ``(N, 4)`` table sorted by label.

    Raises:
        ValueError: with ``contiguous``, ids with gaps (up to five named with the frames they miss).
    """
    parents = parents or {}
    frames = track_frames_from_labels(labels)
    if contiguous:
        gaps = sorted(i for i, f in frames.items() if len(f) != f[-1] - f[0] + 1)
        if gaps:
            details = []
            for label in gaps[:5]:
                f = frames[label]
                absent = sorted(set(range(f[0], f[-1] + 1)) - set(f))
                details.append(f"label {label} (frames {f[0]}..{f[-1]}, absent from {absent[:10]})")
            raise ValueError(
                "a CTC track must appear in every frame from its first to its last; give the part after a gap a "
                f"new label: {'; '.join(details)}" + (f" and {len(gaps) - 5} more" if len(gaps) > 5 else "")
            )
    rows = [(i, f[0], f[-1], int(parents.get(i, 0))) for i, f in sorted(frames.items())]
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def check_tracks_against_labels(
    tracks: np.ndarray, labels_per_frame: LabelsPerFrame, max_problems: int | None = 50
) -> list[str]:
    """Do the tracks agree with the masks? The one check of the CTC rule "a track's label is in the mask of
    every frame ``B..E`` and in no other frame" (see the module docstring for who builds on it).

    Args:
        tracks: ``(N, 4)`` integer table ``L B E P`` (``P`` is not looked at; of two rows with one label,
            the later counts, :func:`check_ctc_lineage` reports the duplicate).
        labels_per_frame: the masks, any form of :data:`LabelsPerFrame`. With a mapping, frame numbers
            without an entry have no mask.
        max_problems: stop listing after this many problems (``None``: list all).

    Returns:
        Problems, one sentence each, ``[]`` when tracks and masks agree: a track that begins before the
        first or ends after the last mask, or spans a frame without a mask; per frame, a track whose
        label is not in the mask and a mask label that is no track or lies outside its track's frames.
    """
    tracks = np.asarray(tracks).reshape(-1, 4)
    present = _ids_per_frame(labels_per_frame)
    frames = list(present)
    first, last = (frames[0], frames[-1]) if frames else (0, -1)
    rows = {int(lab): (int(b), int(e)) for lab, b, e, _ in tracks.tolist()}
    expected: dict[int, set[int]] = {t: set() for t in frames}
    problems: list[str] = []
    for lab, (b, e) in rows.items():
        if b < first:
            problems.append(f"track {lab}: begins in frame {b}, before the first mask ({first})")
        if e > last:
            problems.append(f"track {lab}: ends in frame {e}, after the last mask ({last})")
        hole = None
        for t in range(max(b, first), min(e, last) + 1):
            if t in expected:
                expected[t].add(lab)
            elif hole is None:
                hole = t
        if hole is not None:
            problems.append(f"track {lab}: spans frame {hole}, which has no mask")
    for t in frames:
        have, want = present[t], expected[t]
        for lab in sorted(want - have):
            problems.append(f"frame {t}: track {lab} (frames {rows[lab][0]}..{rows[lab][1]}) is not in the mask")
        for lab in sorted(have - want):
            where = "is not a track" if lab not in rows else f"is outside its frames {rows[lab][0]}..{rows[lab][1]}"
            problems.append(f"frame {t}: mask label {lab} {where}")
        if max_problems is not None and len(problems) >= max_problems:
            break
    return problems if max_problems is None else problems[: max(max_problems, 0)]


def check_ctc_lineage(
    tracks: np.ndarray,
    labels_per_frame: LabelsPerFrame | None = None,
    max_problems: int = 50,
) -> list[str]:
    """The reasons why a CTC result is invalid (the checks of py-ctcmetrics' ``valid``); ``[]`` = valid.

    Args:
        tracks: ``(N, 4)`` integer table ``L B E P``.
        labels_per_frame: optional, the masks: a label video ``(T, H, W)`` or, per frame, the ids
            present in it (:data:`LabelsPerFrame`). Then every track's label must be present in exactly
            the frames ``B..E`` (:func:`check_tracks_against_labels`).
        max_problems: stop listing after this many problems.

    Returns:
        list of human-readable problems, empty when the result is valid. An empty table is a problem
        (py-ctcmetrics rejects a result without tracks).
    """
    problems: list[str] = []
    tracks = np.asarray(tracks)
    if tracks.ndim != 2 or tracks.shape[1] != 4 or not np.issubdtype(tracks.dtype, np.integer):
        if not (tracks.size == 0 and tracks.ndim >= 1):
            return [f"tracks: expected an (N, 4) integer table L B E P, got shape {tracks.shape} {tracks.dtype}"]
        tracks = tracks.reshape(0, 4).astype(np.int64)
    if tracks.shape[0] == 0:
        problems.append("no tracks")
    rows = {int(r[0]): tuple(int(v) for v in r) for r in tracks}
    labels, counts = np.unique(tracks[:, 0], return_counts=True)
    for lab in labels[counts > 1]:
        problems.append(f"label {int(lab)} is used by more than one track")
    for lab, b, e, p in (tuple(int(v) for v in r) for r in tracks):
        if not 0 < lab <= MAX_CTC_LABEL:
            problems.append(f"track {lab}: label outside 1..{MAX_CTC_LABEL}")
        if b < 0:
            problems.append(f"track {lab}: negative first frame {b}")
        if e < b:
            problems.append(f"track {lab}: ends ({e}) before it begins ({b})")
        if p < 0:
            problems.append(f"track {lab}: negative parent {p}")
        elif p == lab:
            problems.append(f"track {lab}: is its own parent")
        elif p > 0:
            if p not in rows:
                problems.append(f"track {lab}: parent {p} is not a track")
            elif rows[p][2] >= b:
                problems.append(
                    f"track {lab}: parent {p} ends in frame {rows[p][2]}, not before the child begins ({b})"
                )
    if labels_per_frame is not None:
        problems += check_tracks_against_labels(tracks, labels_per_frame, max(max_problems - len(problems), 0))
    return problems[:max_problems]
