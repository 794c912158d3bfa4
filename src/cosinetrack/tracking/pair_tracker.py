"""Streaming tracking by merging the clusterings of overlapping frame pairs (paper §2.3, appendix 3).

The clustering labels each overlapping pair of frames ``(t, t + 1)`` jointly, so an instance has one
label in both frames of a pair, but the labels of different pairs are unrelated. :class:`PairTracker`
turns the pairs, fed one by one, into frames with track ids:

* **Shared frame.** Frame ``t + 1`` is the second frame of pair ``(t, t + 1)`` and the first frame of
  pair ``(t + 1, t + 2)``. The newer pair's clustering becomes the frame's segmentation (as in the
  paper); its instances take the track ids of the older pair's second frame by greedy one-to-one IoU
  matching (:func:`~cosinetrack.tracking.greedy_iou_matching`, ``min_iou`` 0.25 as in the reference
  code). Unmatched instances get new ids. An instance keeps its id in the newer pair's second frame,
  which is in turn the reference for the next pair.
* **Finalised frames.** ``update`` with pair ``(t, t + 1)`` returns frame ``t`` with track ids: it
  will not change any more (only the final, per-frame id remapping of the lineage step is left).
  Frame 0 is the first pair's first frame; ``finish`` returns the last frame, the last pair's second
  frame. A video of one frame is passed as a single ``(1, H, W)`` "pair"; ``finish`` then returns
  ``None``.
* **Births and parents.** A track is born in the first finalised frame that contains it (an instance
  first seen in a pair's second frame is born there if the next pair confirms it). At birth, its
  parent is the instance of the last ``max_parent_gap`` finalised frames that overlaps it most
  (:func:`~cosinetrack.tracking.best_overlapping_instance`: IoU or overlap fraction of the instance
  dilated by ``parent_dilation`` px, at least ``min_parent_score``; the reference code searched 8
  frames back). This finds both mothers of dividing cells and the earlier part of a cell that was
  missed for some frames; :func:`~cosinetrack.tracking.make_lineage_valid` sorts out which is which.
* **Daughters are smaller** (``max_daughter_ratio``, off by default). A new instance whose parent's id
  also goes on in the birth frame would make the parent divide (:func:`make_lineage_valid`, rule 2).
  With ``max_daughter_ratio > 0`` it is the parent's daughter only when it has at most
  ``max_daughter_ratio`` times the parent's pixels (in the frame the parent was found in); else it gets
  no parent. A real daughter is about half its mother; a same-sized or larger "daughter" beside a
  mother that goes on is another cell whose track was lost (e.g. after it was merged with a
  neighbor, or its id jumped away). Parents of new instances whose parent id has ended (a cell
  found again after missed frames, or both daughters new) are not checked.
* **Jumps within a pair** (``min_pair_iou``, off by default). The joint clustering of a pair may give
  one label to two distant objects, one in each frame (seen with trained models: a cell in frame
  ``t`` and another one across the image in frame ``t + 1``). The id would then jump to the other
  cell, and the cell it left is born again in the next pair, with the jumped track as its parent: a
  spurious division. With ``min_pair_iou > 0``, an instance whose parts in the two frames of a pair
  overlap with an IoU below ``min_pair_iou`` is cut in two: its part in the second frame is a new
  instance (a new track unless the next pair's matching gives it an id).
* **Merged neighbors** (``split_min_distance``, off by default). An instance covering two or more
  touching objects is split before matching, in each frame of the pair, at the maxima of its distance
  transform that are at least ``split_min_distance`` pixels apart, its parts matched across the pair's
  two frames by IoU (:func:`~cosinetrack.tracking.split_merged_instances`).
* **Linking to the previous frame** (``link="frame"``; the paper's is ``"pair"``). The shared frame is
  segmented twice, by two pairs' clusterings, and where the two disagree (a cell merged with its neighbor in
  one and not in the other, or split differently) the id carried by the older pair matches nothing or
  the wrong instance: the track breaks or switches cells. With ``"frame"``, the instances of the newer
  pair's first frame (frame ``t``) are matched by greedy one-to-one IoU to the finalised frame ``t - 1``
  itself (one segmentation against the next, as a classical IoU tracker does); an instance without
  such a match keeps the id the pair's link gives it when that id is still free. The last frame of the
  video is linked to the frame before it the same way.
* **Ids.** Raw track ids are ``1, 2, ...`` in order of birth (an instance seen only in a pending
  second frame holds a provisional id until a finalised frame contains it), so raw masks fit
  ``uint16`` as long as there are at most 65535 raw tracks.
* **Memory.** The tracker holds the pending second frame, the last ``max_parent_gap`` finalised frames
  and per-track tables (runs of frames, parent, border flag): nothing grows with the number of frames
  except the tables.

:func:`track_pairs` runs the tracker and the lineage post-processing on a whole video in memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from cosinetrack.tracking.lineage import make_lineage_valid, remap_labels
from cosinetrack.tracking.matching import best_overlapping_instance, greedy_iou_matching
from cosinetrack.tracking.settings import LineageSettings, TrackingSettings, option_names
from cosinetrack.tracking.splitting import split_merged_instances

__all__ = ["LINEAGE_OPTIONS", "TRACKING_OPTIONS", "PairTracker", "check_tracking_options", "track_pairs"]


#: ids from here on are provisional: instances of a pending frame that are not yet in a finalised one
_PROVISIONAL = 1 << 40


def _present_ids(labels: np.ndarray) -> np.ndarray:
    """Sorted distinct values of non-negative integer ``labels`` (``np.unique`` without sorting the pixels
    when the values are small: a count per value)."""
    top = int(labels.max(initial=0))
    if top <= 4 * labels.size + 1024:
        return np.flatnonzero(np.bincount(labels.ravel(), minlength=1)).astype(labels.dtype)
    return np.unique(labels)


def _replace_ids(labels: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """``labels`` with the ids ``old`` (sorted) replaced by ``new``; other values unchanged."""
    if old.size == 0:
        return labels.copy()
    if old[0] >= 0 and labels.min(initial=0) >= 0 and int(old[-1]) <= 4 * labels.size + 1024:
        # small ids: one lookup table over 0..max
        top = max(int(old[-1]), int(labels.max(initial=0)))
        if top <= 4 * labels.size + 1024:
            lut = np.arange(top + 1, dtype=np.result_type(labels.dtype, new.dtype))
            lut[old] = new
            return lut[labels]
    out = labels.copy()
    flat = out.reshape(-1)
    pos = np.flatnonzero((flat >= old[0]) & (flat <= old[-1]))
    values = flat[pos]
    idx = np.searchsorted(old, values)
    hit = old[idx] == values
    flat[pos[hit]] = new[idx[hit]]
    return out


def _border_ids(frame: np.ndarray, width: int) -> np.ndarray:
    """Ids with a pixel within ``width`` pixels of the image border."""
    if width <= 0:
        return np.zeros(0, dtype=frame.dtype)
    strips = [frame[:width].ravel(), frame[-width:].ravel(), frame[:, :width].ravel(), frame[:, -width:].ravel()]
    values = np.unique(np.concatenate(strips))
    return values[values > 0]


def _split_jumps(pair: np.ndarray, min_pair_iou: float) -> np.ndarray:
    """``pair`` ``(2, H, W)`` (non-negative int64 labels) where each label whose parts in the two frames
    have an IoU below ``min_pair_iou`` has its second-frame part relabeled to a new, unused label."""
    if int(pair.max(initial=0)) > 4 * pair.size + 1024:  # large label values: compact them first
        inverse = np.unique(np.r_[0, pair.ravel()], return_inverse=True)[1]  # 0 (background) stays 0
        pair = inverse[1:].reshape(pair.shape).astype(np.int64)
    first, second = pair[0].ravel(), pair[1].ravel()
    size = int(pair.max(initial=0)) + 1
    n0 = np.bincount(first, minlength=size)
    n1 = np.bincount(second, minlength=size)
    inter = np.bincount(first[first == second], minlength=size)
    union = n0 + n1 - inter
    iou = inter / np.maximum(union, 1)
    jumped = np.flatnonzero((n0 > 0) & (n1 > 0) & (iou < min_pair_iou))
    jumped = jumped[jumped > 0]
    if jumped.size == 0:
        return pair
    lut = np.arange(size, dtype=np.int64)
    lut[jumped] = np.arange(size, size + jumped.size, dtype=np.int64)
    return np.stack([pair[0], lut[pair[1]]])


def _remove_small(frame: np.ndarray, min_size: int) -> np.ndarray:
    """``frame`` with the instances of fewer than ``min_size`` pixels set to ``0``."""
    ids, inverse, counts = np.unique(frame, return_inverse=True, return_counts=True)
    keep = (counts >= min_size) & (ids > 0)
    return np.where(keep, ids, 0)[inverse].reshape(frame.shape)


_DEFAULTS = TrackingSettings()  # the one home of the tracking defaults


def drop_dim_instances(labels: np.ndarray, foreground: Any, min_fraction: float) -> np.ndarray:
    """``labels`` ``(T, H, W)`` with every instance that has less than ``min_fraction`` of its pixels in
    ``foreground`` (bool, same shape) set to background, frame by frame (an instance may stay in one frame
    of a pair and go in the other)."""
    fg = np.asarray(foreground, dtype=bool)
    if fg.shape != labels.shape:
        raise ValueError(f"foreground: expected the labels' shape {labels.shape}, got {fg.shape}")
    out = labels.copy()
    for k in range(labels.shape[0]):
        # ids of any size: counted over their index among the frame's ids (0 first: background)
        ids, index = np.unique(np.where(labels[k] > 0, labels[k], 0), return_inverse=True)
        index = index.reshape(labels.shape[1:])
        total = np.bincount(index.ravel(), minlength=ids.size)
        bright = np.bincount(index.ravel(), weights=fg[k].ravel(), minlength=ids.size)
        dim = (bright < min_fraction * total) & (ids > 0)
        if dim.any():
            out[k][dim[index]] = 0
    return out


#: a halo candidate has less than this share of its pixels in the bright foreground (``halo_distance``)
HALO_DIM_SHARE = 0.02
#: a nucleus that may have a halo has at least this share of its pixels in the bright foreground
HALO_BRIGHT_SHARE = 0.5


def drop_halo_instances(labels: np.ndarray, foreground: Any, distance: float) -> np.ndarray:
    """``labels`` ``(T, H, W)`` with every dim instance near a bright one set to background, frame by frame.

    An instance is *dim* with less than :data:`HALO_DIM_SHARE` of its pixels in ``foreground`` (bool, same
    shape: the frame's bright foreground), *bright* with at least :data:`HALO_BRIGHT_SHARE`. A dim instance
    whose nearest pixel lies within ``distance`` times the frame's typical diameter (the median equivalent
    diameter of its bright instances) of a bright instance's pixels is taken for that nucleus' halo.
    Frames without a bright or a dim instance are returned as they are. The distances are measured in a
    window around each dim instance reaching that far, which gives the same decision as over the whole frame.
    """
    fg = np.asarray(foreground, dtype=bool)
    if fg.shape != labels.shape:
        raise ValueError(f"foreground: expected the labels' shape {labels.shape}, got {fg.shape}")
    out = labels.copy()
    for k in range(labels.shape[0]):
        inside = labels[k] > 0
        values = labels[k][inside]
        if values.size == 0:
            continue
        ids, inverse = np.unique(values, return_inverse=True)  # ids of any size, by their index
        total = np.bincount(inverse, minlength=ids.size)
        share = np.bincount(inverse, weights=fg[k][inside], minlength=ids.size) / total
        dim, bright = share < HALO_DIM_SHARE, share >= HALO_BRIGHT_SHARE
        if not dim.any() or not bright.any():
            continue
        reach = distance * float(np.median(np.sqrt(4.0 * total[bright] / np.pi)))
        bright_pixels = np.zeros(labels.shape[1:], dtype=bool)
        bright_pixels[inside] = bright[inverse]
        dim_index = np.zeros(labels.shape[1:], dtype=np.int64)  # 1 + index of the dim instance, 0 elsewhere
        dim_index[inside] = np.where(dim[inverse], inverse + 1, 0)
        pad = int(np.ceil(reach)) + 1
        halo = np.zeros(ids.size, dtype=bool)
        for j, box in enumerate(ndi.find_objects(dim_index)):
            if box is None:
                continue
            window = tuple(slice(max(b.start - pad, 0), b.stop + pad) for b in box)
            near = bright_pixels[window]
            if near.any():
                to_bright = ndi.distance_transform_edt(~near)
                halo[j] = to_bright[dim_index[window] == j + 1].min() <= reach
        if halo.any():
            out[k][inside] = np.where(halo[inverse], 0, values)
    return out


class PairTracker:
    """Online tracking of a video from the labels of its overlapping frame pairs.

    Example::

        tracker = PairTracker(min_iou=0.25)
        for pair in pairs:                    # (2, H, W) labels of frames (t, t + 1), t = 0, 1, ...
            writer.write(tracker.update(pair))  # frame t with raw track ids
        last = tracker.finish()               # frame T - 1 (None for a one-frame video)
        if last is not None:
            writer.write(last)
        mappings, tracks = tracker.lineage()  # per-frame {raw id: CTC label}, (N, 4) "L B E P"

    Args:
        min_iou: smallest IoU at which an instance of the shared frame (``link="frame"``: of the previous
            finalised frame) passes its track id on.
        max_parent_gap: how many finalised frames back a new track's parent is searched (``0``: no
            parents).
        parent_measure: ``"iou"`` or ``"overlap"`` (fraction of the new instance covered), see
            :func:`~cosinetrack.tracking.best_overlapping_instance`.
        min_parent_score: the parent's IoU / overlap must be at least this.
        parent_dilation: the new instance is dilated by this many pixels before the parent search.
        min_size: instances with fewer pixels in a frame are removed from it before matching.
        border_width: an instance with a pixel this close (pixels) to the image border touches the
            border (``border_tracks``; the lineage step keeps such short tracks).
        max_daughter_ratio: a new instance whose parent's id goes on in the same frame is the parent's
            daughter only when it has at most this many times the parent's pixels; ``0``: off.
        min_pair_iou: an instance of a pair whose parts in the two frames overlap with a smaller IoU is
            cut in two (its second-frame part becomes a new instance); ``0``: off, the pair's labels are
            trusted as they are (see "Jumps within a pair" in the module docstring).
        split_min_distance: an instance of a pair is split in each frame at the maxima of its distance
            transform at least this many pixels apart, before anything else (see "Merged neighbors" in the
            module docstring); ``0``: off.
        link: ``"pair"`` (the paper's: a pair's first frame takes the ids of the previous pair's second
            frame) or ``"frame"`` (it takes the ids of the previous finalised frame by IoU, the pair's link
            where that finds none; see "Linking to the previous frame" in the module docstring).
        min_foreground_fraction: instances with less than this share of their pixels in the frame's bright
            foreground become background before matching (:func:`drop_dim_instances`; ``0``: off).
        halo_distance: dim instances within this many typical diameters of a bright one become background
            before matching (:func:`drop_halo_instances`; ``0``: off). Both need ``foreground`` in
            :meth:`update`; see :class:`~cosinetrack.tracking.TrackingSettings`.

    Attributes (read-only properties): ``num_frames`` (frames finalised so far), ``track_frames``,
    ``parents``, ``border_tracks`` and ``tracks`` (the raw ``(N, 4)`` table ``L B E P``, not yet CTC
    valid: an id may go on after a child was born from it).
    """

    def __init__(
        self,
        min_iou: float = _DEFAULTS.min_iou,
        max_parent_gap: int = _DEFAULTS.max_parent_gap,
        parent_measure: str = _DEFAULTS.parent_measure,
        min_parent_score: float = _DEFAULTS.min_parent_score,
        parent_dilation: int = _DEFAULTS.parent_dilation,
        min_size: int = _DEFAULTS.min_size,
        border_width: int = _DEFAULTS.border_width,
        min_pair_iou: float = _DEFAULTS.min_pair_iou,
        max_daughter_ratio: float = _DEFAULTS.max_daughter_ratio,
        split_min_distance: int = _DEFAULTS.split_min_distance,
        link: str = _DEFAULTS.link,
        min_foreground_fraction: float = _DEFAULTS.min_foreground_fraction,
        halo_distance: float = _DEFAULTS.halo_distance,
    ) -> None:
        settings = TrackingSettings(  # checks every value (ValueError naming the option)
            min_iou=min_iou,
            max_parent_gap=max_parent_gap,
            parent_measure=parent_measure,
            min_parent_score=min_parent_score,
            parent_dilation=parent_dilation,
            min_size=min_size,
            border_width=border_width,
            min_pair_iou=min_pair_iou,
            max_daughter_ratio=max_daughter_ratio,
            split_min_distance=split_min_distance,
            link=link,
            min_foreground_fraction=min_foreground_fraction,
            halo_distance=halo_distance,
        )
        self.settings = settings
        self.min_iou = settings.min_iou
        self.max_parent_gap = settings.max_parent_gap
        self.parent_measure = settings.parent_measure
        self.min_parent_score = settings.min_parent_score
        self.parent_dilation = settings.parent_dilation
        self.min_size = settings.min_size
        self.border_width = settings.border_width
        self.min_pair_iou = settings.min_pair_iou
        self.max_daughter_ratio = settings.max_daughter_ratio
        self.split_min_distance = settings.split_min_distance
        self.link = settings.link
        self.min_foreground_fraction = settings.min_foreground_fraction
        self.halo_distance = settings.halo_distance
        self._pending: np.ndarray | None = None  # second frame of the last pair, in track ids
        self._reference: np.ndarray | None = None  # the last finalised frame (link "frame")
        self._history: deque[np.ndarray] = deque(maxlen=self.max_parent_gap)  # finalised, nearest first
        self._history_sizes: deque[np.ndarray] = deque(maxlen=self.max_parent_gap)  # their instance sizes
        self._runs: dict[int, list[list[int]]] = {}  # id -> [[first, last], ...]
        self._parents: dict[int, int] = {}
        self._border: set[int] = set()
        self._next_id = 1  # raw ids 1, 2, ... in order of birth (finalisation)
        self._next_provisional = _PROVISIONAL  # ids of instances not in a finalised frame yet
        self._num_frames = 0
        self._shape: tuple[int, int] | None = None
        self._closed = False  # finish() called or a one-frame video given

    # ------------------------------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        """Number of frames finalised so far."""
        return self._num_frames

    @property
    def track_frames(self) -> dict[int, list[int]]:
        """``{track id: sorted finalised frames it occurs in}``."""
        return {i: [t for s, e in runs for t in range(s, e + 1)] for i, runs in self._runs.items()}

    @property
    def parents(self) -> dict[int, int]:
        """``{track id: parent track id}`` of the tracks that got a parent at birth."""
        return dict(self._parents)

    @property
    def border_tracks(self) -> frozenset[int]:
        """Track ids that touched the image border in some finalised frame."""
        return frozenset(self._border)

    @property
    def tracks(self) -> np.ndarray:
        """Raw int64 ``(N, 4)`` table ``L B E P`` (first and last finalised frame, parent), by id."""
        rows = [(i, r[0][0], r[-1][1], self._parents.get(i, 0)) for i, r in sorted(self._runs.items())]
        return np.array(rows, dtype=np.int64).reshape(-1, 4)

    # ------------------------------------------------------------------------------------------------
    def _as_pair(self, pair_labels: Any) -> np.ndarray:
        pair = np.asarray(pair_labels)
        if pair.ndim != 3 or pair.shape[0] not in (1, 2) or min(pair.shape) == 0:
            raise ValueError(
                f"pair_labels: expected (2, H, W) labels of a frame pair (or (1, H, W) for a video of one "
                f"frame), got shape {pair.shape}"
            )
        if not (np.issubdtype(pair.dtype, np.integer) or np.issubdtype(pair.dtype, np.bool_)):
            raise ValueError(f"pair_labels: expected integer labels, got dtype {pair.dtype}")
        if self._shape is not None and pair.shape[1:] != self._shape:
            raise ValueError(f"pair_labels: frame shape {pair.shape[1:]} differs from the earlier {self._shape}")
        pair = np.maximum(pair, 0).astype(np.int64, copy=False)
        if self.split_min_distance > 0:
            pair = split_merged_instances(pair, self.split_min_distance)
        if self.min_size > 0:
            pair = np.stack([_remove_small(f, self.min_size) for f in pair])
        return pair

    def update(self, pair_labels: Any, foreground: Any = None) -> np.ndarray:
        """Add the labels of the next frame pair and return the frame that is now final.

        Args:
            pair_labels: ``(2, H, W)`` integer labels of frames ``(t, t + 1)`` (``t`` = number of
                earlier calls), one label per instance consistent across the two frames, ``<= 0`` =
                background; ``(1, H, W)`` only as the single input of a one-frame video.
            foreground: bool, the frames' bright foreground, shaped as ``pair_labels``; needed when
                ``min_foreground_fraction > 0`` (instances mostly outside it become background first) or
                ``halo_distance > 0`` (dim instances near bright ones become background first).

        Returns:
            int32 ``(H, W)`` labels of frame ``t`` with raw track ids (``0`` = background).
        """
        if self._closed:
            raise RuntimeError("PairTracker: update() after finish() or after a one-frame video")
        pair = self._as_pair(pair_labels)
        if pair.shape[0] == 1 and self._num_frames > 0:
            raise ValueError("pair_labels: (1, H, W) is only accepted as the whole video (one frame)")
        self._shape = pair.shape[1:]
        if (self.min_foreground_fraction > 0 or self.halo_distance > 0) and foreground is None:
            needs = "min_foreground_fraction > 0 or halo_distance > 0"
            raise ValueError(f"foreground: needed with {needs} (the frames' bright foreground)")
        if self.min_foreground_fraction > 0:
            pair = drop_dim_instances(pair, foreground, self.min_foreground_fraction)
        if self.halo_distance > 0:
            pair = drop_halo_instances(pair, foreground, self.halo_distance)
        if pair.shape[0] == 2 and self.min_pair_iou > 0:
            pair = _split_jumps(pair, self.min_pair_iou)
        matched = {} if self._pending is None else self._match_pending(pair[0])
        ids = _present_ids(pair)
        new_ids = np.zeros(ids.size, dtype=np.int64)
        for k, cluster in enumerate(ids):
            if cluster > 0:
                track = matched.get(int(cluster))
                if track is None:
                    track, self._next_provisional = self._next_provisional, self._next_provisional + 1
                new_ids[k] = track
        tracked = _replace_ids(pair, ids, new_ids)
        if self.link == "frame" and self._reference is not None:
            tracked = self._link_to_reference(tracked)
        if pair.shape[0] == 2:
            out, self._pending = self._finalize(tracked[0], tracked[1])
        else:
            out, _ = self._finalize(tracked[0])
            self._closed = True
        return out

    def _match_pending(self, first: np.ndarray) -> dict[int, int]:
        """:func:`greedy_iou_matching` of the pending frame (reference) and ``first``. Provisional ids are
        renumbered above all real ids for the matching (same order, so the same result) and back."""
        reference = self._pending
        offset = self._next_id - _PROVISIONAL  # real ids are < self._next_id
        provisional = reference >= _PROVISIONAL
        if provisional.any():
            reference = np.where(provisional, reference + offset, reference)
        matched = greedy_iou_matching(reference, first, self.min_iou)
        return {n: (r - offset if r >= self._next_id else r) for n, r in matched.items()}

    def _link_to_reference(self, tracked: np.ndarray) -> np.ndarray:
        """``tracked`` ``(F, H, W)`` (track or provisional ids; frame 0 follows the last finalised frame)
        relabeled for ``link="frame"``: greedy IoU matching of its frame 0 to the last finalised frame
        gives ids; an id the matching leaves alone stays unless a matched instance took it, then it
        becomes provisional (a new track)."""
        matched = greedy_iou_matching(self._reference, tracked[0], self.min_iou)
        ids = _present_ids(tracked)
        ids = ids[ids > 0]
        taken = set(matched.values())
        new = np.empty(ids.size, dtype=np.int64)
        for k, i in enumerate(ids.tolist()):
            if i in matched:
                new[k] = matched[i]
            elif i in taken:  # the pair's link chose a track that the frame's IoU gave to another instance
                new[k], self._next_provisional = self._next_provisional, self._next_provisional + 1
            else:
                new[k] = i
        return _replace_ids(tracked, ids, new)

    def finish(self) -> np.ndarray | None:
        """End the video: the last frame (the last pair's second frame) with track ids, or ``None``.

        Returns:
            int32 ``(H, W)`` labels of frame ``T - 1``, or ``None`` when there is no pending frame (no
            pair given, a one-frame video, or ``finish`` called before).
        """
        self._closed = True
        pending, self._pending = self._pending, None
        if pending is not None and self.link == "frame" and self._reference is not None:
            pending = self._link_to_reference(pending[None])[0]
        out = None if pending is None else self._finalize(pending)[0]
        self._reference = None
        self._history.clear()
        self._history_sizes.clear()
        return out

    def _finalize(self, frame: np.ndarray, pending: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Record frame ``t`` in the tables, find parents of the tracks born in it.

        Provisional ids in ``frame`` become the next raw track ids, in ``pending`` (the frame after,
        int64) as well. Returns the int32 frame and the relabeled ``pending``.
        """
        t = self._num_frames
        provisional = np.unique(frame[frame >= _PROVISIONAL])
        if provisional.size:
            real = np.arange(self._next_id, self._next_id + provisional.size, dtype=np.int64)
            self._next_id += provisional.size
            frame = _replace_ids(frame, provisional, real)
            if pending is not None:
                pending = _replace_ids(pending, provisional, real)
        frame = frame.astype(np.int32)
        history = list(self._history)
        history_sizes = list(self._history_sizes)
        counts = np.bincount(np.maximum(frame, 0).ravel())
        for i in (int(v) for v in np.flatnonzero(counts) if v > 0):
            runs = self._runs.get(i)
            if runs is None:
                self._runs[i] = [[t, t]]
                if history:
                    parent, where, _ = best_overlapping_instance(
                        frame == i,
                        history,
                        self.parent_measure,
                        self.min_parent_score,
                        self.parent_dilation,
                        sizes=history_sizes,
                    )
                    if parent and self.max_daughter_ratio > 0 and parent < counts.size and counts[parent] > 0:
                        if counts[i] > self.max_daughter_ratio * history_sizes[where][parent]:
                            parent = 0  # as large as a mother that goes on: another cell, not a daughter
                    if parent:
                        self._parents[i] = parent
            elif runs[-1][1] == t - 1:
                runs[-1][1] = t
            else:
                runs.append([t, t])
        self._border.update(int(i) for i in _border_ids(frame, self.border_width))
        if self.link == "frame":
            self._reference = frame
        if self.max_parent_gap > 0:
            self._history.appendleft(frame)
            self._history_sizes.appendleft(counts)
        self._num_frames += 1
        return frame, pending

    def lineage(self, **kwargs: Any) -> tuple[dict[int, dict[int, int]], np.ndarray]:
        """The CTC-valid lineage of the finished video: :func:`~cosinetrack.tracking.make_lineage_valid`
        on this tracker's tables (``max_gap`` defaults to ``max_parent_gap``, at least 1).

        Returns:
            ``(mappings, tracks)``: per frame ``{raw id: CTC label}`` and the int64 ``(N, 4)`` table.
        """
        if not self._closed:
            raise RuntimeError("PairTracker: lineage() needs the whole video; call finish() first")
        kwargs.setdefault("max_gap", max(self.max_parent_gap, 1))
        return make_lineage_valid(
            self.track_frames,
            self._parents,
            num_frames=self._num_frames,
            border_tracks=self._border,
            **kwargs,
        )


#: the names a ``tracking`` config section may hold (the :class:`PairTracker` arguments)
TRACKING_OPTIONS = option_names(TrackingSettings)
#: the names a ``lineage`` config section may hold (:func:`make_lineage_valid` options the tracker
#: does not fill in itself)
LINEAGE_OPTIONS = option_names(LineageSettings)


def check_tracking_options(
    tracking: Mapping[str, Any] | None, lineage: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the ``tracking`` and ``lineage`` config sections when the config is parsed.

    Args:
        tracking: :class:`PairTracker` options (``min_iou``, ``max_parent_gap``, ...); ``None`` for none.
        lineage: :func:`make_lineage_valid` options (``min_track_length``, ``max_gap``, ...).

    Returns:
        Both sections as dicts.

    Raises:
        CosineTrackConfigError: an unknown (misspelt) name, with the allowed ones, or a value the
            tracker or the lineage step refuses, naming the section and the option.
    """
    tracking = TrackingSettings.from_mapping(tracking).as_dict() if tracking else {}
    lineage = LineageSettings.from_mapping(lineage).as_dict() if lineage else {}
    return tracking, lineage


def track_pairs(
    pair_labels: Iterable[Any],
    *,
    min_iou: float = _DEFAULTS.min_iou,
    max_parent_gap: int = _DEFAULTS.max_parent_gap,
    parent_measure: str = _DEFAULTS.parent_measure,
    min_parent_score: float = _DEFAULTS.min_parent_score,
    parent_dilation: int = _DEFAULTS.parent_dilation,
    min_size: int = _DEFAULTS.min_size,
    border_width: int = _DEFAULTS.border_width,
    min_pair_iou: float = _DEFAULTS.min_pair_iou,
    max_daughter_ratio: float = _DEFAULTS.max_daughter_ratio,
    split_min_distance: int = _DEFAULTS.split_min_distance,
    link: str = _DEFAULTS.link,
    min_foreground_fraction: float = _DEFAULTS.min_foreground_fraction,
    halo_distance: float = _DEFAULTS.halo_distance,
    foregrounds: Iterable[Any] | None = None,
    **lineage_kwargs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Track a whole (small) video in memory: :class:`PairTracker` followed by the lineage step.

    Args:
        pair_labels: the ``(2, H, W)`` labels of the pairs ``(0, 1), (1, 2), ...`` in order (a list,
            generator or ``(T - 1, 2, H, W)`` array); a one-frame video is one ``(1, H, W)`` item.
        min_iou, max_parent_gap, parent_measure, min_parent_score, parent_dilation, min_size,
            border_width, min_pair_iou, max_daughter_ratio, split_min_distance, link, min_foreground_fraction,
            halo_distance: see :class:`PairTracker`.
        foregrounds: the pairs' bright foreground (bool, one item per pair, shaped as it), needed with
            ``min_foreground_fraction > 0`` or ``halo_distance > 0``.
        **lineage_kwargs: for :func:`~cosinetrack.tracking.make_lineage_valid` (``max_gap``,
            ``min_track_length``, ``keep_border_fragments``, ``keep_fragments_at_video_ends``,
            ``min_cycle_length``, ``min_daughter_length``).

    Returns:
        ``(labels, tracks)``: int32 ``(T, H, W)`` CTC labels and the int64 ``(N, 4)`` table ``L B E P``.
    """
    tracker = PairTracker(
        min_iou=min_iou,
        max_parent_gap=max_parent_gap,
        parent_measure=parent_measure,
        min_parent_score=min_parent_score,
        parent_dilation=parent_dilation,
        min_size=min_size,
        border_width=border_width,
        min_pair_iou=min_pair_iou,
        max_daughter_ratio=max_daughter_ratio,
        split_min_distance=split_min_distance,
        link=link,
        min_foreground_fraction=min_foreground_fraction,
        halo_distance=halo_distance,
    )
    if foregrounds is None:
        frames = [tracker.update(pair) for pair in pair_labels]
    else:
        frames = [tracker.update(pair, fg) for pair, fg in zip(pair_labels, foregrounds, strict=True)]
    if not frames:
        raise ValueError("pair_labels: no frame pair given")
    last = tracker.finish()
    if last is not None:
        frames.append(last)
    mappings, tracks = tracker.lineage(**lineage_kwargs)
    labels = np.stack([remap_labels(f, mappings[t]) for t, f in enumerate(frames)])
    return labels, tracks
