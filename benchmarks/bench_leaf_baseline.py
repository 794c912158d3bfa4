"""Classical leaf-instance baseline on CVPPP A1: color threshold + distance-transform watershed, 3-fold CV.

The number a learned leaf segmentation has to beat, on the same 96 plants, with the same folds and the
same scoring code as the leaf bundle's cross-validation (``bundles/leaf/crossval.json``):

* folds: :func:`cosinetrack.data.split_cases` on :func:`cosinetrack.apps.leaf.find_cvppp_plants` with 3 folds
  and seed 0, exactly what the bundle's ``split`` draws (fold ``k`` of the tables = ``--fold k-1``);
* scores: :func:`cosinetrack.metrics.instances.instance_scores` (SBD, DiC, |DiC|, FG Dice), the function
  behind the bundle's ``InstanceSegmentationMetrics``, at the photo's size (530 x 500).

Segmentation (:func:`segment_leaves`; plain scikit-image / SciPy, nothing learned, nothing read from the
ground truth):

1. Excess green ``2G - R - B`` of the RGB photo (``[0, 1]``), Gaussian-smoothed (1 px).
2. Plant foreground: excess green above Otsu's threshold (``skimage.filters.threshold_otsu``) or above a
   fixed ``threshold``; holes filled; connected components smaller than ``component_fraction`` times the
   largest one removed (moss, algae and other green specks on the soil; 0 keeps every component).
3. Leaf-center height ``h = distance / max(distance) + brightness_weight * green'``: the Euclidean distance
   transform of the foreground, Gaussian-smoothed with ``sigma`` px, plus the green channel smoothed with
   ``brightness_sigma`` px and scaled to ``[0, 1]`` over the foreground (leaf blades are lit, the gaps
   and shadows between overlapping leaves darker; ``brightness_weight`` 0: the distance alone).
4. Markers: local maxima of ``h`` at least ``min_distance`` px apart, per connected component
   (``skimage.feature.peak_local_max``); a component without a maximum keeps its own label.
5. Watershed (``skimage.segmentation.watershed``) inside the foreground of the surface
   ``-h + edge_weight * sobel(green) / max(sobel(green))`` (``edge_weight`` > 0: leaf margins, where the
   green channel changes, also separate leaves).
6. Leaves smaller than ``min_size`` px dropped (to background); labels renumbered ``1..N``.

Protocol (no tuning on the plants that are reported): for each fold, ``threshold`` (Otsu, 0.4 or 0.5),
``component_fraction``, ``min_distance``, ``brightness_weight``, ``edge_weight`` and ``min_size`` are chosen
from a small grid (:data:`GRID`, 144 sets; ``sigma`` 2 and ``brightness_sigma`` 4 fixed) as the best mean
SBD on that fold's 64 *training* plants; then the fold's 32 held-out plants are segmented once with that set
and scored. To keep the grid within a few CPU-minutes it is scored on photos and labels downscaled by
``--grid-scale`` (default 0.5; lengths in the grid are scaled with it, areas with its square); the held-out
plants are always segmented and scored at the photo's size. A last row scores one fixed set
(:data:`DEFAULT_PARAMS`, the set every fold chose) on all 96 plants; it is **not** held out. The grid's
ranges (and the fixed thresholds 0.4 and 0.5 in it) were picked after looking at a 12-plant subset of A1
(every 8th plant) and at earlier runs; see ``docs/results_leaf.md``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_leaf_baseline.py --dataset ../shared/data/cvppp/A1 \
        [--json results.json] [--grid-scale 0.5] [--no-default]

Times are wall seconds per plant of segmentation alone at the photo's size (reading and scoring
excluded), in one process; set ``OMP_NUM_THREADS=1`` for one thread.

The segmentation function can be used on its own (``benchmarks/`` is not a package; load the file with
``importlib.util.spec_from_file_location``)::

    labels = module.segment_leaves(image)   # image (3, H, W) in [0, 1] -> (H, W) int32, 0 = background
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import numbers
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import sobel, threshold_otsu
from skimage.segmentation import watershed
from skimage.transform import resize

from cosinetrack.apps.leaf.cvppp import find_cvppp_plants, read_cvppp_plant
from cosinetrack.data.splits import split_cases
from cosinetrack.io.atomic import atomic_write_text
from cosinetrack.metrics.instances import instance_scores

#: The parameter grid searched on each fold's training plants (lengths in px at the photo's size).
GRID: dict[str, tuple] = {
    "threshold": (None, 0.4, 0.5),
    "component_fraction": (0.0, 0.1),
    "sigma": (2.0,),
    "brightness_sigma": (4.0,),
    "min_distance": (8, 12, 16),
    "brightness_weight": (0.0, 1.0),
    "edge_weight": (0.0, 1.0),
    "min_size": (30, 100),
}

#: The names of the parameters (keyword arguments of :func:`segment_leaves` a grid may set).
PARAM_NAMES = ("threshold", "component_fraction", "sigma", "brightness_sigma", "min_distance", "brightness_weight",
               "edge_weight", "min_size")  # fmt: skip

#: The defaults of :func:`segment_leaves`: the set that each of the three folds chose on its training plants
#: (``docs/results_leaf.md``); also scored on all 96 plants as a reference row (not held out).
DEFAULT_PARAMS: dict[str, Any] = {
    "threshold": 0.5,
    "component_fraction": 0.1,
    "sigma": 2.0,
    "brightness_sigma": 4.0,
    "min_distance": 8,
    "brightness_weight": 1.0,
    "edge_weight": 1.0,
    "min_size": 100,
}

NUM_FOLDS = 3
SEED = 0
SCORES = ("sbd", "abs_dic", "dic", "fg_dice")


# ----------------------------------------------------------------------------------------------------
# segmentation
# ----------------------------------------------------------------------------------------------------


def _check_real(name: str, value: Any, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not minimum <= float(value) < math.inf:
        raise ValueError(f"{name}: expected a finite number >= {minimum}, got {value!r}")
    return float(value)


def _check_integer(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_image(image: Any) -> np.ndarray:
    """``(3, H, W)`` finite float32 copy-free view of a photo in ``[0, 1]`` (as ``read_cvppp_image`` gives)."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[0] != 3 or arr.shape[1] < 2 or arr.shape[2] < 2:
        raise ValueError(f"image: expected a (3, H, W) RGB array with H, W >= 2, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"image: expected real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError("image: contains NaN or infinite values")
    return arr


def excess_green(image: np.ndarray) -> np.ndarray:
    """``2G - R - B`` of a ``(3, H, W)`` RGB photo, smoothed with a 1 px Gaussian: ``(H, W)`` float32."""
    r, g, b = image
    return ndi.gaussian_filter(2.0 * g - r - b, 1.0)


def plant_foreground(image: np.ndarray, threshold: float | None = None, component_fraction: float = 0.0) -> np.ndarray:
    """Plant mask of a ``(3, H, W)`` RGB photo in ``[0, 1]``: excess green above Otsu's threshold (or the
    given ``threshold``), holes filled, components smaller than ``component_fraction`` times the largest
    removed. ``(H, W)`` bool."""
    image = _check_image(image)
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not math.isfinite(threshold):
            raise ValueError(f"threshold: expected a finite number or None (Otsu), got {threshold!r}")
        threshold = float(threshold)
    component_fraction = _check_real("component_fraction", component_fraction)
    if component_fraction > 1.0:
        raise ValueError(f"component_fraction: expected a number in [0, 1], got {component_fraction!r}")
    index = excess_green(image)
    if threshold is None:
        if float(index.max()) <= float(index.min()):
            return np.zeros(index.shape, dtype=bool)
        threshold = float(threshold_otsu(index))
    fg = ndi.binary_fill_holes(index > threshold)
    components, n = ndi.label(fg)
    if n <= 1 or component_fraction == 0.0:
        return fg
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return (sizes >= component_fraction * sizes.max())[components] & fg


def _relabel_sequential(labels: np.ndarray, min_size: int) -> np.ndarray:
    """``labels`` renumbered ``1..N`` (int32), objects smaller than ``min_size`` px set to 0."""
    ids, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    keep = (ids > 0) & (counts >= min_size)
    new = np.zeros(ids.size, dtype=np.int32)
    new[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return new[inverse.reshape(labels.shape)]


def _watershed_from_foreground(
    image: np.ndarray,
    fg: np.ndarray,
    sigma: float,
    brightness_sigma: float,
    min_distance: int,
    brightness_weight: float,
    edge_weight: float,
) -> np.ndarray:
    """Steps 3-5 of :func:`segment_leaves` on a given foreground; raw int32 labels (0 = background)."""
    components, n = ndi.label(fg)
    if n == 0:
        return np.zeros(fg.shape, dtype=np.int32)
    distance = ndi.distance_transform_edt(fg)
    if sigma > 0:
        distance = ndi.gaussian_filter(distance, sigma)
    height = distance / max(float(distance.max()), 1e-6)
    if brightness_weight > 0:
        green = ndi.gaussian_filter(image[1], brightness_sigma) if brightness_sigma > 0 else image[1]
        low, high = float(green[fg].min()), float(green[fg].max())
        height = height + brightness_weight * np.clip(green - low, 0.0, None) / max(high - low, 1e-6)
    peaks = peak_local_max(height, min_distance=min_distance, labels=components, exclude_border=False)
    markers = np.zeros(fg.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    unmarked = np.setdiff1d(np.arange(1, n + 1), components[tuple(peaks.T)])
    if unmarked.size:  # a component without a maximum (e.g. flat after smoothing) keeps its own label
        extra = np.isin(components, unmarked)
        markers[extra] = components[extra] + len(peaks)
    surface = -height
    if edge_weight > 0:
        edges = sobel(ndi.gaussian_filter(image[1], 1.0))
        surface = surface + edge_weight * edges / max(float(edges.max()), 1e-6)
    return watershed(surface, markers, mask=fg).astype(np.int32, copy=False)


def segment_leaves(
    image: np.ndarray,
    sigma: float = DEFAULT_PARAMS["sigma"],
    min_distance: int = DEFAULT_PARAMS["min_distance"],
    edge_weight: float = DEFAULT_PARAMS["edge_weight"],
    min_size: int = DEFAULT_PARAMS["min_size"],
    threshold: float | None = DEFAULT_PARAMS["threshold"],
    brightness_weight: float = DEFAULT_PARAMS["brightness_weight"],
    brightness_sigma: float = DEFAULT_PARAMS["brightness_sigma"],
    component_fraction: float = DEFAULT_PARAMS["component_fraction"],
) -> np.ndarray:
    """Leaf instances of a top-view rosette photo: excess-green threshold + distance-transform watershed.

    Args:
        image: ``(3, H, W)`` RGB photo, values in ``[0, 1]`` (what ``read_cvppp_image`` returns).
        sigma: Gaussian smoothing of the distance transform in px, ``>= 0`` (0: none).
        min_distance: smallest distance between two markers (leaf centers) in px, ``>= 1`` (Chebyshev,
            as in ``peak_local_max``).
        edge_weight: weight of the Sobel edges of the green channel in the watershed surface, ``>= 0``.
        min_size: smallest leaf kept, in px, ``>= 0``.
        threshold: fixed excess-green threshold (``2G - R - B`` in ``[-2, 2]``), or ``None`` for Otsu's.
        brightness_weight: weight of the smoothed, ``[0, 1]``-scaled green channel added to the scaled
            distance transform to find and grow leaf centers, ``>= 0`` (0: the distance alone).
        brightness_sigma: Gaussian smoothing of that green channel in px, ``>= 0``.
        component_fraction: plant components smaller than this fraction of the largest are dropped, in
            ``[0, 1]`` (0: keep all).

    Returns:
        ``(H, W)`` int32 leaf labels ``1..N`` (0 = background). A photo without green has no leaf.

    Raises:
        ValueError: on an image that is not a finite ``(3, H, W)`` real array, or a parameter out of range.
    """
    image = _check_image(image)
    sigma = _check_real("sigma", sigma)
    min_distance = _check_integer("min_distance", min_distance, 1)
    edge_weight = _check_real("edge_weight", edge_weight)
    min_size = _check_integer("min_size", min_size, 0)
    brightness_weight = _check_real("brightness_weight", brightness_weight)
    brightness_sigma = _check_real("brightness_sigma", brightness_sigma)
    fg = plant_foreground(image, threshold, component_fraction)
    raw = _watershed_from_foreground(image, fg, sigma, brightness_sigma, min_distance, brightness_weight, edge_weight)
    return _relabel_sequential(raw, min_size)


# ----------------------------------------------------------------------------------------------------
# grid search on training plants, held-out scoring
# ----------------------------------------------------------------------------------------------------


def grid_params(grid: Mapping[str, Sequence] = GRID) -> list[dict[str, Any]]:
    """Every parameter set of ``grid`` (its keys are :func:`segment_leaves` arguments), in a fixed order."""
    unknown = set(grid) - set(PARAM_NAMES)
    if unknown:
        raise ValueError(f"grid: unknown parameters {sorted(unknown)}")
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def scaled_params(params: Mapping[str, Any], scale: float) -> dict[str, Any]:
    """``params`` for a photo resized by ``scale``: lengths times ``scale``, areas times ``scale**2``."""
    out = {**DEFAULT_PARAMS, **params}
    out["sigma"] = float(out["sigma"]) * scale
    out["brightness_sigma"] = float(out["brightness_sigma"]) * scale
    out["min_distance"] = max(1, int(round(int(out["min_distance"]) * scale)))
    out["min_size"] = int(round(int(out["min_size"]) * scale**2))
    return out


def downscale(image: np.ndarray, label: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Photo (anti-aliased linear) and labels (nearest) resized by ``scale``."""
    h, w = (max(2, int(round(s * scale))) for s in label.shape)
    small = resize(image, (3, h, w), order=1, anti_aliasing=True, preserve_range=True).astype(np.float32)
    small_label = resize(label, (h, w), order=0, anti_aliasing=False, preserve_range=True).astype(np.int64)
    return small, small_label


def grid_scores(
    plants: Sequence[Mapping[str, Any]], params_list: Sequence[Mapping[str, Any]], scale: float
) -> np.ndarray:
    """SBD of every plant (rows) under every parameter set (columns), photos resized by ``scale``.

    The foreground is computed once per (plant, ``threshold``, ``component_fraction``) and the watershed once per plant
    and set of the other parameters but ``min_size``; only the leaf-size filter and the scoring run per set."""
    sbd = np.zeros((len(plants), len(params_list)))
    for i, plant in enumerate(plants):
        image, label = read_cvppp_plant(plant)
        if label is None:
            raise SystemExit(f"{plant['image']}: no label file beside it to score against")
        if scale != 1.0:
            image, label = downscale(image, label, scale)
        foregrounds: dict[tuple, np.ndarray] = {}
        raw: dict[tuple, np.ndarray] = {}
        for j, params in enumerate(params_list):
            p = scaled_params(params, scale)
            fraction = (p["threshold"], p["component_fraction"])
            if fraction not in foregrounds:
                foregrounds[fraction] = plant_foreground(image, *fraction)
            key = tuple(p[k] for k in PARAM_NAMES if k != "min_size")
            if key not in raw:
                raw[key] = _watershed_from_foreground(
                    image, foregrounds[fraction], p["sigma"], p["brightness_sigma"], p["min_distance"],
                    p["brightness_weight"], p["edge_weight"],
                )  # fmt: skip
            sbd[i, j] = instance_scores(label, _relabel_sequential(raw[key], p["min_size"]))["sbd"]
        print(f"grid: {plant['name']} ({i + 1}/{len(plants)}) best SBD {sbd[i].max():.3f}", file=sys.stderr, flush=True)
    return sbd


def score_plants(plants: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Segment each plant at the photo's size with ``params`` and score it; per-plant rows with seconds."""
    rows = []
    for plant in plants:
        image, label = read_cvppp_plant(plant)
        if label is None:
            raise SystemExit(f"{plant['image']}: no label file beside it to score against")
        start = time.perf_counter()
        pred = segment_leaves(image, **params)
        seconds = time.perf_counter() - start
        rows.append({"plant": plant["name"], **instance_scores(label, pred), "seconds": seconds})
    return rows


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Mean and std over plants of each score, mean leaves found / true, mean seconds per plant."""
    out: dict[str, float] = {"plants": len(rows)}
    for name in (*SCORES, "n_pred", "n_gt", "seconds"):
        values = np.array([r[name] for r in rows], dtype=float)
        out[name] = float(values.mean())
        out[f"{name}_std"] = float(values.std())
    return out


def format_table(table_rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of the summary rows (fold, plants, SBD, |DiC|, DiC, FG Dice, leaves, s/plant, params)."""
    lines = [
        "| fold | plants | SBD | \\|DiC\\| | DiC | FG Dice | leaves found / true | s/plant | parameters |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table_rows:
        p = r["parameters"]
        shown = {**p, "threshold": "Otsu" if p.get("threshold") is None else p["threshold"]} if p else {}
        params = ", ".join(f"{k} {shown[k]}" for k in PARAM_NAMES if k in p) if p else "per fold"
        lines.append(
            f"| {r['fold']} | {r['plants']} | {r['sbd']:.3f} ± {r['sbd_std']:.3f} | {r['abs_dic']:.2f} ± "
            f"{r['abs_dic_std']:.2f} | {r['dic']:+.2f} | {r['fg_dice']:.3f} ± {r['fg_dice_std']:.3f} | "
            f"{r['n_pred']:.1f} / {r['n_gt']:.1f} | {r['seconds']:.3f} | {params} |"
        )
    return "\n".join(lines) + "\n"


def run(dataset: str, grid_scale: float = 0.5, default_row: bool = True) -> dict[str, Any]:
    """The whole protocol; returns ``{"table": [...summary rows], "per_plant": {...}, "grid": ...}``."""
    grid_scale = _check_real("grid_scale", grid_scale)
    if not 0.0 < grid_scale <= 1.0:
        raise ValueError(f"grid_scale: expected a number in (0, 1], got {grid_scale!r}")
    plants = find_cvppp_plants(dataset)
    params_list = grid_params(GRID)
    start = time.process_time()
    sbd = grid_scores(plants, params_list, grid_scale)
    grid_cpu = time.process_time() - start
    index = {p["name"]: i for i, p in enumerate(plants)}
    table, per_plant, pooled = [], {}, []
    for fold in range(NUM_FOLDS):
        train, val = split_cases(plants, NUM_FOLDS, fold, SEED)
        train_sbd = sbd[[index[p["name"]] for p in train]].mean(axis=0)
        best = int(np.argmax(train_sbd))  # first of the best in grid order
        params = params_list[best]
        rows = score_plants(val, params)
        pooled += rows
        per_plant[f"fold{fold + 1}"] = rows
        table.append({"fold": str(fold + 1), **summarize(rows), "parameters": params,
                      "train_sbd": float(train_sbd[best])})  # fmt: skip
        print(f"fold {fold + 1}: chosen {params} (training SBD {train_sbd[best]:.3f} at scale {grid_scale}), "
              f"held-out SBD {table[-1]['sbd']:.3f}", file=sys.stderr, flush=True)  # fmt: skip
    table.append({"fold": "**all (pooled)**", **summarize(pooled), "parameters": {}})
    if default_row:
        rows = score_plants(plants, DEFAULT_PARAMS)
        per_plant["default"] = rows
        table.append({"fold": "fixed set, all plants (not held out)", **summarize(rows), "parameters": DEFAULT_PARAMS})
    return {
        "dataset": dataset,
        "grid": GRID,
        "grid_scale": grid_scale,
        "grid_cpu_seconds": grid_cpu,
        "grid_train_sbd": {
            f"fold{f + 1}": sbd[[index[p["name"]] for p in split_cases(plants, NUM_FOLDS, f, SEED)[0]]].mean(0).tolist()
            for f in range(NUM_FOLDS)
        },
        "table": table,
        "per_plant": per_plant,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset", required=True, help="CVPPP folder of plantNNN_rgb/label.png, e.g. ../shared/data/cvppp/A1"
    )
    parser.add_argument("--grid-scale", type=float, default=0.5, help="photo scale of the grid search (default 0.5)")
    parser.add_argument("--no-default", action="store_true", help="skip the fixed-set row on all plants")
    parser.add_argument(
        "--json", default=None, help="write the results (table, per-plant scores, grid) to this JSON file"
    )
    args = parser.parse_args(argv)
    start, cpu = time.perf_counter(), time.process_time()
    result = run(args.dataset, args.grid_scale, not args.no_default)
    result["wall_seconds"] = time.perf_counter() - start
    result["cpu_seconds"] = time.process_time() - cpu
    print(format_table(result["table"]), end="")
    print(
        f"\ngrid search: {len(grid_params(GRID))} sets, {result['grid_cpu_seconds']:.0f} CPU-s at scale "
        f"{result['grid_scale']}; whole run {result['wall_seconds']:.0f} s wall, {result['cpu_seconds']:.0f} CPU-s"
    )
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
