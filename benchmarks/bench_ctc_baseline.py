"""Classical baselines on Cell Tracking Challenge data: per-frame segmentation, IoU linking, CTC measures.

The numbers a learned method has to beat on the same frames, measured with the same scoring code
(:func:`cosinetrack.apps.cell.ctc_scores`, py-ctcmetrics) and the same tracking stage as the network
pipeline (:class:`cosinetrack.tracking.PairTracker` + its CTC-valid ``lineage()``). Two segmentations,
chosen by ``--method`` (no learning, nothing read from the ground truth):

``mad`` (default, the strong baseline; :func:`segment_nuclei_mad`):

1. Gaussian smoothing, sigma ``--sigma`` px (default 2).
2. Foreground = smoothed frame > ``median + k * 1.4826 * MAD`` (median and median absolute deviation of
   the smoothed frame; ``--k``, default 4): a robust "k standard deviations above the background" rule,
   since the background is most of the frame.
3. Connected components (4-connected) smaller than ``--min-size`` px (default 100) removed.
4. Euclidean distance transform of the foreground; its local maxima at least ``--min-distance`` px
   (default 25) apart, searched per connected component
   (``skimage.feature.peak_local_max(min_distance=25, labels=components, exclude_border=False)``), are
   the markers; a component without a maximum keeps its own label.
5. Watershed of the negated distance inside the foreground (``skimage.segmentation.watershed``).

The four values (sigma 2, k 4, min_size 100, min_distance 25) were **chosen on Fluo-N2DH-SIM+/01 itself**
(the frames the learned model is evaluated on included), so this row is optimiztic on SIM+/01; on GOWT1
they are used unchanged.

``otsu`` (the weak baseline of the first measurement, kept as a second row):

1. Gaussian smoothing, sigma ``--sigma`` px (default 2).
2. Otsu threshold of the smoothed frame (``skimage.filters.threshold_otsu``), holes filled.
3. Watershed of the negated Euclidean distance transform of the foreground
   (``skimage.segmentation.watershed``) from the local maxima of the distance transform
   (``skimage.feature.peak_local_max``, ``min_distance`` below) inside the foreground; a connected
   component without a maximum keeps its own label.
4. Objects smaller than ``min_size`` px are removed (before and after the watershed).

Rule for the Otsu ``min_distance`` and ``min_size`` (fixed before any evaluation, image-only): from the
first frame of the run, after steps 1-2, ``A`` = the pixel-weighted median area of the foreground
components (the area of the component holding the median foreground pixel, insensitive to specks of
noise), and the typical nucleus radius ``r = sqrt(A / pi)``. Then
``min_distance = max(2, round(--md-fraction * r))`` and ``min_size = max(10, round(--min-size-fraction * A))``
(default 0.1 of a typical nucleus). The default fraction 1.25 was selected, before any run on the
evaluation frames, as the best OP_CTB on the *training* frames 0-49 of Fluo-N2DH-SIM+/01 among
{0.25, 0.5, 0.75, 1, 1.25, 1.5, 2} (table in ``docs/benchmarks_ctc_baseline.md``). A maximum is kept when
no higher one lies within ``min_distance`` (Chebyshev distance): the maxima of two touching nuclei of
radius ``r`` are ``2 r`` apart and stay separate, while the several ridge maxima of an elongated or
irregular nucleus merge. (``--min-size`` and ``--min-distance`` apply to ``mad`` only.)

Tracking (both methods): each frame ``t + 1`` is relabeled to frame ``t`` by greedy one-to-one IoU
matching (``greedy_iou_matching``, IoU >= 0.25, the authors' reference value); unmatched objects get
fresh ids. The pairs ``(t, t + 1)`` thus have consistent ids and go through ``PairTracker`` (defaults: a
new track's parent = the most overlapping object, IoU >= 0.1, of the last 8 frames, which for a dividing
cell is the mother in the previous frame) and ``lineage()`` (gaps up to 8 frames linked, tracks of one
frame removed unless at the border or a video end), streamed into
:class:`cosinetrack.apps.cell.CTCResultWriter`.

Scoring: when ``--frames`` selects part of a sequence, the frames and their ground truth are copied into a
temporary data set renumbered from 0 (:func:`cosinetrack.apps.cell.write_ctc_subsequence`, tracks clipped
to the window), so the window is scored as a sequence of its own (a track cut by the window start is a
new track; its parent link, if it ended before the window, is dropped).

Usage::

    python benchmarks/bench_ctc_baseline.py --dataset ../shared/data/ctc/Fluo-N2DH-SIM+ --sequence 01 --frames 50:65
    python benchmarks/bench_ctc_baseline.py --dataset ../shared/data/ctc/Fluo-N2DH-GOWT1 --sequence 01 --method otsu
    # several runs into one table / JSON rows:
    python benchmarks/bench_ctc_baseline.py ... --json rows.json   (appends a row to rows.json)
    python benchmarks/bench_ctc_baseline.py --table rows.json      (prints the table of the rows)

The segmentation function can be used on its own (``benchmarks/`` is not a package; load the file)::

    spec = importlib.util.spec_from_file_location("bench_ctc_baseline", "benchmarks/bench_ctc_baseline.py")
    ...
    labels = module.segment_nuclei_mad(frame)   # (H, W) int32, 0 = background

Times are wall seconds per frame of segmentation + tracking + writing (reading the frame included,
scoring excluded), in one process; set ``OMP_NUM_THREADS=1`` for one thread.
"""

from __future__ import annotations

import argparse
import json
import math
import numbers
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

from cosinetrack.apps.cell.reader import find_ctc_sequences, iter_ctc_frames
from cosinetrack.apps.cell.scoring import ctc_scores, format_ctc_table
from cosinetrack.apps.cell.writer import CTCResultWriter, write_ctc_subsequence
from cosinetrack.tracking.matching import greedy_iou_matching
from cosinetrack.tracking.pair_tracker import PairTracker

METHODS = ("mad", "otsu")
COLUMNS = ["method", "data set", "frames", "SEG", "TRA", "DET", "OP_CTB", "valid", "s/frame", "tracks",
           "GT tracks", "divisions", "GT divisions"]  # fmt: skip

#: MAD -> standard deviation of a normal distribution
MAD_TO_STD = 1.4826


# ----------------------------------------------------------------------------------------------------
# segmentation: shared steps
# ----------------------------------------------------------------------------------------------------


def _remove_small_components(mask: np.ndarray, min_size: int) -> np.ndarray:
    """``mask`` without its 4-connected components of fewer than ``min_size`` pixels (a new array)."""
    components, n = ndi.label(mask)
    if n == 0 or min_size <= 1:
        return mask.copy()
    return (np.bincount(components.ravel()) >= min_size)[components] & mask


def _distance_watershed(fg: np.ndarray, min_distance: int) -> np.ndarray:
    """Watershed of ``-EDT(fg)`` inside ``fg`` from the distance maxima ``min_distance`` apart, per
    connected component; a component without a maximum keeps its own label. int32, 0 = background."""
    components, n = ndi.label(fg)
    if n == 0:
        return np.zeros(fg.shape, dtype=np.int32)
    distance = ndi.distance_transform_edt(fg)
    peaks = peak_local_max(distance, min_distance=min_distance, labels=components, exclude_border=False)
    markers = np.zeros(fg.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    labels = watershed(-distance, markers, mask=fg)
    unmarked = np.setdiff1d(np.arange(1, n + 1), components[tuple(peaks.T)]) if len(peaks) else np.arange(1, n + 1)
    if unmarked.size:  # a component without a maximum (not expected for a non-empty one, kept for safety)
        extra = np.isin(components, unmarked)
        labels[extra] = components[extra] + len(peaks)
    return labels.astype(np.int32, copy=False)


def _relabel_sequential(labels: np.ndarray, min_size: int = 0) -> np.ndarray:
    """``labels`` renumbered ``1..N`` (int32), objects smaller than ``min_size`` px set to 0."""
    ids, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    keep = (ids > 0) & (counts >= min_size)
    new = np.zeros(ids.size, dtype=np.int32)
    new[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return new[inverse].reshape(labels.shape)


# ----------------------------------------------------------------------------------------------------
# segmentation: the strong baseline (median + k MAD threshold)
# ----------------------------------------------------------------------------------------------------


def _check_integer(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def segment_nuclei_mad(
    frame: np.ndarray,
    sigma: float = 2.0,
    k: float = 4.0,
    min_size: int = 100,
    min_distance: int = 25,
) -> np.ndarray:
    """Segment bright nuclei of a 2-D fluorescence frame: robust threshold + distance watershed.

    Steps: Gaussian smoothing (``sigma`` px) -> foreground where the smoothed frame exceeds
    ``median + k * 1.4826 * MAD`` (median and median absolute deviation of the smoothed frame) ->
    4-connected components smaller than ``min_size`` px removed -> Euclidean distance transform -> its
    local maxima at least ``min_distance`` px apart, per connected component, as markers (a component
    without one keeps its own label) -> watershed of the negated distance inside the foreground.

    The defaults were chosen on Fluo-N2DH-SIM+/01 (see ``docs/benchmarks_ctc_baseline.md``).

    Args:
        frame: ``(H, W)`` real-valued image, bright objects on a darker background; all values finite.
        sigma: standard deviation of the Gaussian smoothing in pixels, ``>= 0`` (``0``: none).
        k: threshold in robust standard deviations above the median, ``>= 0``.
        min_size: smallest foreground component kept, in pixels (``>= 0``).
        min_distance: smallest distance between two markers in pixels (``>= 1``; Chebyshev distance, as
            in ``peak_local_max``).

    Returns:
        ``(H, W)`` int32 labels ``1..N`` (0 = background). A constant frame has no objects.

    Raises:
        ValueError: on a frame that is not a non-empty finite real 2-D array, or a parameter out of range.
    """
    image = np.asarray(frame)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"frame: expected a non-empty (H, W) array, got shape {image.shape}")
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)
            or image.dtype == np.bool_):  # fmt: skip
        raise ValueError(f"frame: expected real numbers, got dtype {image.dtype}")
    image = image.astype(np.float32)
    if not np.isfinite(image).all():
        raise ValueError("frame: contains NaN or infinite values")
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not 0.0 <= float(sigma) < math.inf:
        raise ValueError(f"sigma: expected a finite number >= 0, got {sigma!r}")
    if isinstance(k, bool) or not isinstance(k, numbers.Real) or not 0.0 <= float(k) < math.inf:
        raise ValueError(f"k: expected a finite number >= 0, got {k!r}")
    min_size = _check_integer("min_size", min_size, 0)
    min_distance = _check_integer("min_distance", min_distance, 1)

    smooth = ndi.gaussian_filter(image, float(sigma)) if sigma > 0 else image
    median = float(np.median(smooth))
    mad = float(np.median(np.abs(smooth - median)))
    fg = smooth > median + float(k) * MAD_TO_STD * mad
    fg = _remove_small_components(fg, min_size)
    return _relabel_sequential(_distance_watershed(fg, min_distance))


# ----------------------------------------------------------------------------------------------------
# segmentation: the Otsu baseline
# ----------------------------------------------------------------------------------------------------


def foreground(image: np.ndarray, sigma: float) -> np.ndarray:
    """Otsu steps 1-2: Gaussian smoothing, Otsu threshold, holes filled. ``(H, W)`` bool."""
    smooth = ndi.gaussian_filter(image.astype(np.float32, copy=False), sigma)
    if float(smooth.max()) <= float(smooth.min()):
        return np.zeros(image.shape, dtype=bool)
    return ndi.binary_fill_holes(smooth > threshold_otsu(smooth))


def typical_area(mask: np.ndarray) -> float:
    """Pixel-weighted median area of the connected components of ``mask`` (0 when empty)."""
    labels, n = ndi.label(mask)
    if n == 0:
        return 0.0
    areas = np.bincount(labels.ravel())[1:]
    order = np.sort(areas)
    cumulative = np.cumsum(order)
    return float(order[np.searchsorted(cumulative, cumulative[-1] / 2)])


def parameters(image: np.ndarray, sigma: float, md_fraction: float, min_size_fraction: float) -> dict[str, Any]:
    """The documented Otsu rule: ``min_distance`` and ``min_size`` from the typical nucleus area of ``image``."""
    area = typical_area(foreground(image, sigma))
    radius = math.sqrt(area / math.pi)
    return {
        "sigma": sigma,
        "typical_area": area,
        "radius": radius,
        "min_distance": max(2, int(round(md_fraction * radius))),
        "min_size": max(10, int(round(min_size_fraction * area))),
    }


def segment(image: np.ndarray, sigma: float, min_distance: int, min_size: int, **_: Any) -> np.ndarray:
    """Otsu steps 1-4: ``(H, W)`` int32 instance labels (0 = background)."""
    fg = _remove_small_components(foreground(image, sigma), min_size)
    return _relabel_sequential(_distance_watershed(fg, min_distance), min_size)


def consistent_pair(previous: np.ndarray, current: np.ndarray, min_iou: float) -> np.ndarray:
    """``(2, H, W)``: ``previous`` and ``current`` relabeled to it by greedy IoU (unmatched: fresh ids)."""
    matched = greedy_iou_matching(previous, current, min_iou)
    ids = np.unique(current[current > 0])
    lut = np.zeros(int(current.max()) + 1, dtype=np.int64)
    fresh = int(previous.max()) + 1
    for i in ids.tolist():
        if i in matched:
            lut[i] = matched[i]
        else:
            lut[i], fresh = fresh, fresh + 1
    return np.stack([previous.astype(np.int64), lut[current]])


# ----------------------------------------------------------------------------------------------------
# one run
# ----------------------------------------------------------------------------------------------------


def parse_frames(spec: str | None, available: list[int]) -> list[int]:
    """``"50:65"`` (Python slice of frame numbers, end excluded), ``"50:"``, or ``None``/``"all"``."""
    if spec in (None, "", "all"):
        return list(available)
    start, _, stop = spec.partition(":")
    start = int(start) if start else available[0]
    stop = int(stop) if stop else available[-1] + 1
    return [t for t in available if start <= t < stop]


def run(
    dataset: str,
    sequence_name: str,
    frames_spec: str | None,
    *,
    method: str = "mad",
    sigma: float = 2.0,
    k: float = 4.0,
    min_size: int = 100,
    min_distance: int = 25,
    md_fraction: float = 1.25,
    min_size_fraction: float = 0.1,
    min_iou: float = 0.25,
    workdir: str | None = None,
) -> dict[str, Any]:
    """Segment (``method`` ``"mad"`` or ``"otsu"``), track, write and score one sequence (or window);
    returns a table row with the scores. ``k``, ``min_size`` and ``min_distance`` are the ``mad``
    parameters; ``md_fraction`` and ``min_size_fraction`` the ``otsu`` rule's."""
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    sequences = {s.name: s for s in find_ctc_sequences(dataset)}
    if sequence_name not in sequences:
        raise SystemExit(f"{dataset}: no sequence {sequence_name!r} (found {sorted(sequences)})")
    sequence = sequences[sequence_name]
    frames = parse_frames(frames_spec, list(sequence.frames))
    if not frames:
        raise SystemExit(f"{sequence.image_dir}: no frame in {frames_spec!r}")
    with tempfile.TemporaryDirectory(prefix="ctc-baseline-", dir=workdir) as tmp:
        if frames != list(sequence.frames):
            sequence = write_ctc_subsequence(sequence, frames, os.path.join(tmp, "data"))
        if sequence.gt_dir is None:
            raise SystemExit(f"{sequence.image_dir}: no ground truth beside it to score against")
        res_dir = os.path.join(tmp, f"{sequence.name}_RES")
        tracker = PairTracker(min_iou=min_iou)
        params: dict[str, Any] | None = None
        start = time.perf_counter()
        with CTCResultWriter(res_dir, sequence.digits or 3) as writer:
            previous = None
            for i, (_, image) in enumerate(iter_ctc_frames(sequence)):  # result frames are numbered 0..T-1
                if method == "mad":
                    if params is None:
                        params = {"sigma": sigma, "k": k, "min_size": min_size, "min_distance": min_distance}
                    labels = segment_nuclei_mad(image, **params)
                else:
                    if params is None:
                        params = parameters(image, sigma, md_fraction, min_size_fraction)
                    labels = segment(image, **params)
                if previous is not None:
                    writer.write_frame(i - 1, tracker.update(consistent_pair(previous, labels, min_iou)))
                previous = labels
            if len(frames) == 1:
                writer.write_frame(0, tracker.update(previous[None]))
                tracker.finish()
            else:
                writer.write_frame(len(frames) - 1, tracker.finish())
            mappings, tracks = tracker.lineage()
            writer.relabel(mappings)
            writer.close(tracks)
        seconds = time.perf_counter() - start
        score_start = time.perf_counter()
        seg_dir = os.path.join(sequence.gt_dir, "SEG")
        has_seg = os.path.isdir(seg_dir) and any(n.startswith("man_seg") for n in os.listdir(seg_dir))
        if has_seg:
            scores = ctc_scores(res_dir, sequence.gt_dir, threads=1)
        else:  # e.g. the last frames of Fluo-N2DH-GOWT1/01: TRA and DET only, as the bundle's validation
            scores = ctc_scores(res_dir, sequence.gt_dir, threads=1, metrics=("TRA", "DET"))
            scores.update(SEG=float("nan"), OP_CTB=float("nan"))
        score_seconds = time.perf_counter() - score_start
    name = os.path.basename(os.path.normpath(dataset))
    rule = {"md_fraction": md_fraction, "min_size_fraction": min_size_fraction} if method == "otsu" else {}
    return {
        "method": method,
        "data set": f"{name}/{sequence_name}",
        "frames": f"{frames[0]}-{frames[-1]} ({len(frames)})",
        **{k: scores[k] for k in ("SEG", "TRA", "DET", "OP_CTB", "valid")},
        "s/frame": seconds / len(frames),
        "tracks": scores["num_tracks"],
        "GT tracks": scores["gt_tracks"],
        "divisions": scores["num_divisions"],
        "GT divisions": scores["gt_divisions"],
        "seg_frames": scores["seg_frames"],
        "score_seconds": score_seconds,
        "problems": list(scores["problems"]),
        "AOGM": {
            k: scores.get(k)
            for k in ("AOGM", "AOGM_0", "AOGM_NS", "AOGM_FN", "AOGM_FP", "AOGM_ED", "AOGM_EA", "AOGM_EC")
        },
        "parameters": {
            **(params or {}),
            **rule,
            "min_iou": min_iou,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", help="CTC data set folder, e.g. ../shared/data/ctc/Fluo-N2DH-SIM+")
    parser.add_argument("--sequence", default="01", help="sequence name (default 01)")
    parser.add_argument("--frames", default=None, help="frame numbers 'start:stop' (stop excluded); default all")
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="mad",
        help="mad: median + k MAD threshold (strong, default); otsu: Otsu threshold (weak)",
    )
    parser.add_argument("--sigma", type=float, default=2.0, help="Gaussian smoothing in px (default 2)")
    parser.add_argument("--k", type=float, default=4.0, help="mad: threshold = median + k * 1.4826 * MAD (default 4)")
    parser.add_argument("--min-size", type=int, default=100, help="mad: smallest foreground component in px (100)")
    parser.add_argument("--min-distance", type=int, default=25, help="mad: smallest marker distance in px (25)")
    parser.add_argument(
        "--md-fraction", type=float, default=1.25, help="otsu: min_distance = this x typical radius (default 1.25)"
    )
    parser.add_argument(
        "--min-size-fraction", type=float, default=0.1, help="otsu: min_size = this x typical area (default 0.1)"
    )
    parser.add_argument("--min-iou", type=float, default=0.25, help="IoU to link objects of consecutive frames")
    parser.add_argument("--workdir", default=None, help="where the temporary folders go (default: system temp)")
    parser.add_argument("--json", default=None, help="append the row to this JSON list file")
    parser.add_argument("--table", default=None, help="only print the markdown table of a JSON list file")
    args = parser.parse_args(argv)
    if args.table:
        with open(args.table, encoding="utf-8") as f:
            print(format_ctc_table(json.load(f), COLUMNS), end="")
        return 0
    if not args.dataset:
        parser.error("--dataset is required (or --table)")
    row = run(
        args.dataset,
        args.sequence,
        args.frames,
        method=args.method,
        sigma=args.sigma,
        k=args.k,
        min_size=args.min_size,
        min_distance=args.min_distance,
        md_fraction=args.md_fraction,
        min_size_fraction=args.min_size_fraction,
        min_iou=args.min_iou,
        workdir=args.workdir,
    )
    print(format_ctc_table([row], COLUMNS), end="")
    print(f"parameters: {row['parameters']}")
    print(f"AOGM: {row['AOGM']}; scoring took {row['score_seconds']:.1f} s")
    if row["problems"]:
        print("problems:", *row["problems"], sep="\n  ")
    if args.json:
        rows = []
        if os.path.isfile(args.json):
            with open(args.json, encoding="utf-8") as f:
                rows = json.load(f)
        rows.append(row)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
