"""Clustering of pixel embeddings into instance label images (Payer et al., MICCAI 2018, §2.3).

Every foreground pixel ``p`` of the ``T`` frames of the input becomes one data point
``[e_p / ||e_p||, c * y_p, c * x_p]`` (the L2-normalized embedding followed by the pixel's row and
column scaled by the ``coordinate_scale`` ``c``; frames of a pair share coordinates, no time axis is
added). The points are grouped with HDBSCAN (``min_samples = min_cluster_size = m_pts``), clusters
smaller than ``t_size = m_pts / 2`` pixels are dropped, and the clusters become instances ``1..K``.
Background pixels are found and left out before clustering (the reference code's rule, which also
makes HDBSCAN many times faster); see :func:`cluster_embeddings` for the options and the additions
to the paper (cluster-level background rule, connected-component splitting, subsampling).
Clustering all ``T`` frames jointly gives an instance the same id in every frame, which is how the
paper links overlapping frame pairs ``(t, t + 1)``.

Shapes: the embeddings of one image are ``(D, H, W)``, those of ``T`` frames ``(T, D, H, W)``; the
labels are ``int32`` ``(H, W)`` or ``(T, H, W)`` with ``0`` = background. Coordinates are in pixels of
the embedding image.

Besides :func:`cluster_embeddings` this module has the building blocks it is made of
(:func:`normalize_embeddings`, :func:`estimate_background_embedding`, :func:`embedding_data_points`,
:func:`filter_small_instances`, :func:`relabel_consecutive`) and two helpers for tests and
benchmarks: :func:`synthetic_embeddings` (embeddings a well-trained network might output for a label image)
and :func:`mean_best_iou`.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import hdbscan
import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.measure import label as connected_components

from cosinetrack.clustering.options import (
    ASSIGN_RULES,
    BACKGROUND_RULES,
    CLUSTERING_MODES,
    OPTION_NAMES,
    ClusteringOptions,
)
from cosinetrack.errors import CosineTrackConfigError
from cosinetrack.options import check_option_names

__all__ = [
    "ASSIGN_RULES",
    "BACKGROUND_RULES",
    "CLUSTERING_MODES",
    "cluster_embeddings",
    "normalize_embeddings",
    "estimate_background_embedding",
    "embedding_data_points",
    "filter_small_instances",
    "relabel_consecutive",
    "synthetic_embeddings",
    "mean_best_iou",
]


def _to_numpy(x: Any, name: str) -> np.ndarray:
    """``x`` (array, tensor or MetaTensor, any device) as a numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if hasattr(x, "as_tensor"):  # monai MetaTensor -> plain tensor
            x = x.as_tensor()
        if x.dtype == torch.bfloat16:  # no numpy equivalent
            x = x.float()
        return x.numpy()
    try:
        return np.asarray(x)
    except Exception as e:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name}: cannot be converted to an array ({e})") from e


def _as_frames(embeddings: Any) -> tuple[np.ndarray, bool]:
    """Validate ``(D, H, W)`` / ``(T, D, H, W)`` embeddings; returns float32 ``(T, D, H, W)`` and
    whether the input had no frame axis."""
    emb = _to_numpy(embeddings, "embeddings")
    if emb.dtype == object or not (np.issubdtype(emb.dtype, np.floating) or np.issubdtype(emb.dtype, np.integer)):
        raise ValueError(f"embeddings: expected a real-valued array, got dtype {emb.dtype}")
    if emb.ndim not in (3, 4):
        raise ValueError(
            f"embeddings: expected shape (D, H, W) for one image or (T, D, H, W) for T frames clustered "
            f"jointly, got {emb.ndim} dimensions {tuple(emb.shape)}"
        )
    single = emb.ndim == 3
    if single:
        emb = emb[None]
    if min(emb.shape) == 0:
        raise ValueError(f"embeddings: every axis of (T, D, H, W) must be non-empty, got {tuple(emb.shape)}")
    emb = emb.astype(np.float32, copy=False)
    if not np.isfinite(emb).all():
        raise ValueError("embeddings: contain NaN or infinite values")
    return emb, single


def normalize_embeddings(embeddings: np.ndarray, axis: int = -3, eps: float = 1e-8) -> np.ndarray:
    """L2-normalize embeddings along ``axis`` (the embedding axis ``D``): ``e / max(||e||, eps)``.

    Args:
        embeddings: e.g. ``(D, H, W)``, ``(T, D, H, W)`` (``axis=-3``) or ``(N, D)`` (``axis=-1``).
        axis: the embedding axis.
        eps: lower bound of the norm, so all-zero embeddings stay zero instead of becoming NaN.

    Returns:
        float32 array of the same shape with unit (or zero) vectors along ``axis``.
    """
    emb = np.asarray(embeddings, dtype=np.float32)
    norm = np.sqrt(np.sum(emb * emb, axis=axis, keepdims=True))
    return emb / np.maximum(norm, eps)


def estimate_background_embedding(
    embeddings: Any,
    rule: str = "dominant",
    threshold: float = 0.95,
    num_candidates: int = 32,
    max_samples: int = 16384,
    seed: int = 0,
) -> np.ndarray:
    """The unit embedding of the background, estimated from the embeddings of an image or video.

    Args:
        embeddings: ``(D, H, W)`` or ``(T, D, H, W)``, need not be normalized.
        rule: ``"median"``: the element-wise median of the normalized embeddings of all pixels,
            normalized (the rule of the authors' reference code, which computes it on the first frame
            pair of a video). It is only the background's embedding when the background covers
            clearly more than half of the pixels. ``"dominant"``: the most populated direction: among
            the median and ``num_candidates`` randomly drawn pixel embeddings, the one with the most
            pixels within cosine ``threshold`` of it, refined to the mean direction of those pixels.
            It equals ``"median"`` when the background dominates, and still finds the background when
            it covers less than half of the image (as long as no instance direction covers more).
        threshold: cosine similarity at and above which a pixel counts as "the same direction".
        num_candidates: number of random pixel embeddings tried by ``"dominant"``.
        max_samples: ``"dominant"`` counts on at most this many randomly drawn pixels.
        seed: seed of the random draws (results are deterministic for a given seed).

    Returns:
        ``(D,)`` float32 unit vector.
    """
    emb, _ = _as_frames(embeddings)
    t, d, h, w = emb.shape
    feats = normalize_embeddings(emb, axis=1).transpose(0, 2, 3, 1).reshape(-1, d)
    median = normalize_embeddings(np.median(feats, axis=0), axis=-1)
    if rule == "median":
        return median
    if rule != "dominant":
        raise ValueError(f"rule: expected 'median' or 'dominant', got {rule!r}")
    rng = np.random.default_rng(seed)
    sample = feats if feats.shape[0] <= max_samples else feats[rng.choice(feats.shape[0], max_samples, replace=False)]
    picks = sample[rng.choice(sample.shape[0], min(num_candidates, sample.shape[0]), replace=False)]
    candidates = np.concatenate([median[None], picks], axis=0)
    counts = np.count_nonzero(sample @ candidates.T >= threshold, axis=0)
    best = candidates[int(np.argmax(counts))]
    close = sample[sample @ best >= threshold]
    if close.shape[0] == 0:
        return best
    return normalize_embeddings(close.mean(axis=0), axis=-1)


def _background_by_views(
    unit: np.ndarray, source: np.ndarray, rule: str, o: ClusteringOptions
) -> tuple[np.ndarray, np.ndarray]:
    """The background of embeddings made of ``o.views`` views (:attr:`ClusteringOptions.views`).

    Args:
        unit: ``(T, V * d, H, W)`` embeddings, unit length over all channels.
        source: ``unit`` or a subsample of its pixels, ``(T, V * d, h, w)``, to estimate from.
        rule: ``"dominant"`` or ``"median"``.
        o: the options (``views``, ``background_threshold``, ``seed``).

    Returns:
        The views' unit background embeddings concatenated and scaled to unit length ``(V * d,)``, and the
        foreground ``(T, H, W)``: pixels that fewer than half of the views find background.
    """
    t, dd, h, w = unit.shape
    views = int(o.views)
    if dd % views:
        raise ValueError(f"views: {views} views do not split the {dd} embedding channels evenly")
    d = dd // views
    vectors = []
    votes = np.zeros((t, h, w), dtype=np.int32)
    for v in range(views):
        part = normalize_embeddings(unit[:, v * d : (v + 1) * d], axis=1, eps=o.eps)
        vec = estimate_background_embedding(source[:, v * d : (v + 1) * d], rule, o.background_threshold, seed=o.seed)
        votes += np.tensordot(vec, part, axes=([0], [1])) >= o.background_threshold
        vectors.append(vec)
    return np.concatenate(vectors) / views**0.5, 2 * votes < views


def _clusters_at_background(sums: np.ndarray, bg_vector: np.ndarray, threshold: float, views: int) -> np.ndarray:
    """Which clusters point at the background (``max_background_similarity``): bool ``(K,)``.

    ``sums``: ``(K, V * d)`` sums of the clusters' unit embeddings; ``bg_vector``: ``(V * d,)`` unit. One view:
    the cosine similarity of the cluster's mean direction to the background is at least ``threshold``. Several
    views: that holds for at least half of the views, each view's mean direction against its own background.
    """
    k, dd = sums.shape
    parts = sums.reshape(k, views, dd // views)
    bg = bg_vector.reshape(views, dd // views)
    sim = np.einsum("kvd,vd->kv", parts, bg)
    sim /= np.maximum(np.linalg.norm(parts, axis=2) * np.linalg.norm(bg, axis=1), 1e-12)
    return 2 * np.count_nonzero(sim >= threshold, axis=1) >= views


def embedding_data_points(unit_embeddings: np.ndarray, mask: np.ndarray, coordinate_scale: float) -> np.ndarray:
    """Data points ``[e_p, c * y_p, c * x_p]`` of the pixels in ``mask``, in raster order ``(t, y, x)``.

    Args:
        unit_embeddings: ``(T, D, H, W)`` normalized embeddings.
        mask: ``(T, H, W)`` bool, the pixels to cluster.
        coordinate_scale: ``c``, multiplies the pixel row ``y`` and column ``x``.

    Returns:
        ``(N, D + 2)`` float64 array, ``N = mask.sum()``.
    """
    _, ys, xs = np.nonzero(mask)
    feats = unit_embeddings.transpose(0, 2, 3, 1)[mask]
    coords = np.stack([ys, xs], axis=1).astype(np.float64) * float(coordinate_scale)
    return np.concatenate([feats.astype(np.float64), coords], axis=1)


def relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    """Relabel to ``0..K`` with ids in order of first appearance in raster order (``0`` stays ``0``).

    Args:
        labels: integer array of any shape; non-positive values are background.

    Returns:
        int32 array of the same shape.
    """
    labels = np.asarray(labels)
    flat = labels.ravel()
    pos = np.flatnonzero(flat > 0)
    values = flat[pos]
    ids, first = np.unique(values, return_index=True)  # first: positions within pos (raster order)
    out = np.zeros(flat.shape, dtype=np.int32)
    if ids.size:
        order = ids[np.argsort(first, kind="stable")]
        lut = np.zeros(int(ids.max()) + 1, dtype=np.int32)
        lut[order] = np.arange(1, order.size + 1, dtype=np.int32)
        out[pos] = lut[values]
    return out.reshape(labels.shape)


def filter_small_instances(
    labels: np.ndarray, min_size: float, split_components: bool = False, connectivity: int = 1
) -> np.ndarray:
    """Remove instances smaller than ``min_size`` pixels, counted per frame.

    Args:
        labels: ``(T, H, W)`` (or ``(H, W)``) integer labels, ``0`` = background.
        min_size: ``t_size``; an instance keeps a frame's pixels only if it has at least ``min_size``
            of them in that frame (with ``split_components``: only its connected pieces of at least
            ``min_size`` pixels).
        split_components: split every instance into its connected pieces per frame and give every
            piece an id of its own. The ids stay linked over the frames: a piece takes the id of the
            piece of the same instance in the previous frame that it overlaps most (greedily, largest
            overlap first), else of the nearest (centroid) still unmatched piece of the same instance
            in the previous frame, else the instance's own id if not used yet, else a new id. So a
            cluster holding two far-apart objects becomes two instances with ids consistent over the
            frames, and a piece that splits off (e.g. a dividing cell) gets a new id.
        connectivity: ``1`` (4-neighborhood) or ``2`` (8-neighborhood) for the pieces.

    Returns:
        int64 labels of the same shape (not yet consecutive; see :func:`relabel_consecutive`).
    """
    labels = np.asarray(labels)
    single = labels.ndim == 2
    lab = (labels[None] if single else labels).astype(np.int64, copy=False)
    out = np.zeros(lab.shape, dtype=np.int64)
    if not split_components:
        for t in range(lab.shape[0]):
            counts = np.bincount(lab[t].ravel())
            keep = counts >= min_size
            keep[0] = False
            out[t] = np.where(keep[lab[t]], lab[t], 0)
        return out[0] if single else out

    used: set[int] = set()
    next_id = int(lab.max(initial=0)) + 1
    prev: dict[int, tuple[int, np.ndarray]] = {}  # id in frame t-1 -> (instance, centroid)
    h, w = lab.shape[1:]
    ys, xs = np.mgrid[:h, :w]
    for t in range(lab.shape[0]):
        frame = lab[t]
        comp = connected_components(frame, background=0, connectivity=connectivity)
        sizes = np.bincount(comp.ravel())
        owner = np.zeros(sizes.size, dtype=np.int64)
        owner[comp.ravel()] = frame.ravel()
        safe = np.maximum(sizes, 1)
        centroids = np.stack(
            [np.bincount(comp.ravel(), ys.ravel()) / safe, np.bincount(comp.ravel(), xs.ravel()) / safe], axis=1
        )
        kept = [k for k in range(1, sizes.size) if sizes[k] >= min_size]
        new_id = np.zeros(sizes.size, dtype=np.int64)
        taken: set[int] = set()
        if prev and kept:
            same = (comp > 0) & (out[t - 1] > 0) & (frame == lab[t - 1])
            # (piece, previous id) pairs in lexicographic order, as one int64 key per pixel
            base = int(out[t - 1].max(initial=0)) + 1
            keys, counts = np.unique(comp[same].astype(np.int64) * base + out[t - 1][same], return_counts=True)
            pairs = np.stack(np.divmod(keys, base))
            for j in np.argsort(-counts, kind="stable"):
                k, pid = int(pairs[0, j]), int(pairs[1, j])
                if sizes[k] >= min_size and new_id[k] == 0 and pid not in taken:
                    new_id[k] = pid
                    taken.add(pid)
        for k in sorted(kept, key=lambda k: -sizes[k]):
            if new_id[k]:
                continue
            inst = int(owner[k])
            free = [pid for pid, (i, _) in prev.items() if i == inst and pid not in taken]
            if free:
                dist = [float(np.sum((prev[pid][1] - centroids[k]) ** 2)) for pid in free]
                new_id[k] = free[int(np.argmin(dist))]
            elif inst not in used and inst not in taken:
                new_id[k] = inst
            else:
                new_id[k] = next_id
                next_id += 1
            taken.add(int(new_id[k]))
        used |= taken
        prev = {int(new_id[k]): (int(owner[k]), centroids[k]) for k in kept}
        out[t] = new_id[comp]
    return out[0] if single else out


def _run_hdbscan(
    points: np.ndarray,
    min_samples: int,
    min_cluster_size: int,
    cluster_selection_epsilon: float,
    allow_single_cluster: bool | str,
    approx_min_span_tree: bool,
    algorithm: str,
    n_jobs: int,
    hdbscan_kwargs: dict[str, Any] | None,
) -> np.ndarray:
    """HDBSCAN labels (``-1`` = noise) of ``points`` ``(N, F)``; all noise when no cluster is possible."""
    n = points.shape[0]
    if n < max(min_cluster_size, 2):
        return np.full(n, -1, dtype=np.int64)

    def fit(single: bool) -> np.ndarray:
        clusterer = hdbscan.HDBSCAN(
            min_cluster_size=min_cluster_size,
            min_samples=min(min_samples, n - 1),
            algorithm=algorithm,
            approx_min_span_tree=approx_min_span_tree,
            core_dist_n_jobs=n_jobs,
            allow_single_cluster=single,
            cluster_selection_epsilon=float(cluster_selection_epsilon),
            **(hdbscan_kwargs or {}),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            return np.asarray(clusterer.fit_predict(points), dtype=np.int64)

    if allow_single_cluster == "auto":
        labels = fit(False)
        # no cluster at all: the points (all foreground by the background rule) are one instance.
        # (HDBSCAN's own allow_single_cluster=True labels only the densest few points of it.)
        return np.zeros(n, dtype=np.int64) if (labels < 0).all() else labels
    return fit(bool(allow_single_cluster))


def _nearest_labels(query: np.ndarray, ref: np.ndarray, ref_labels: np.ndarray, n_jobs: int) -> np.ndarray:
    """Label of the nearest point of ``ref`` (data-point space) for every row of ``query``."""
    if ref.shape[0] == 0:
        return np.full(query.shape[0], -1, dtype=np.int64)
    _, idx = cKDTree(ref).query(query, k=1, workers=n_jobs)
    return ref_labels[idx]


#: ``mode="fast"``: the scaled ``min_samples`` and ``min_cluster_size`` are at least this (or the unscaled
#: value when that is smaller), so that a sparse sample does not make HDBSCAN cut instances into pieces.
MIN_SAMPLED_NEIGHBORS = 5


def _grid_stride(fg: np.ndarray, sample_points: int) -> int:
    """Grid stride of ``mode="fast"``: the smallest ``s`` whose grid (rows and columns ``s // 2 + k * s``)
    keeps at most ``sample_points`` foreground pixels of ``fg`` ``(T, H, W)``."""
    n = int(np.count_nonzero(fg))
    s = max(1, int(np.floor(np.sqrt(n / sample_points))))
    while s < max(fg.shape[1:]) and np.count_nonzero(fg[:, s // 2 :: s, s // 2 :: s]) > sample_points:
        s += 1
    return s


def _cluster_sums(labels: np.ndarray, values: np.ndarray, num: int) -> np.ndarray:
    """``(num, F)`` sums of the rows of ``values`` ``(N, F)`` per label ``0..num-1`` (others ignored)."""
    keep = (labels >= 0) & (labels < num)
    lab = labels[keep]
    vals = values[keep]
    return np.stack([np.bincount(lab, vals[:, j], minlength=num) for j in range(values.shape[1])], axis=1)


def _mean_direction_labels(
    feats: np.ndarray, coords: np.ndarray, centers_dir: np.ndarray, centers_pos: np.ndarray
) -> np.ndarray:
    """Index of the nearest center ``[direction, c * position]`` for every row of ``[feats, coords]``
    (squared distance ``-2 f.g + |g|^2 + const``; one matrix product)."""
    g = np.concatenate([centers_dir, centers_pos], axis=1)
    f = np.concatenate([feats, coords], axis=1)
    score = f @ g.T - 0.5 * np.einsum("kf,kf->k", g, g)[None]
    return np.argmax(score, axis=1).astype(np.int64)


def _surrounding_grid_pixels(
    yy: np.ndarray, xx: np.ndarray, offset: int, stride: int, rows: int, cols: int
) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Grid indices ``(i, j)`` of the (up to) four grid pixels around each pixel ``(yy, xx)`` of a grid with rows
    and columns ``offset + k * stride`` (``rows`` x ``cols`` of them), clipped at the grid's edges."""
    i0 = np.clip((yy - offset) // stride, 0, rows - 1)
    j0 = np.clip((xx - offset) // stride, 0, cols - 1)
    i1 = np.minimum(i0 + 1, rows - 1)
    j1 = np.minimum(j0 + 1, cols - 1)
    return (i0, j0), (i0, j1), (i1, j0), (i1, j1)


def _fast_point_labels(
    unit: np.ndarray,
    fg: np.ndarray,
    coordinate_scale: float,
    min_samples: int,
    min_cluster_size: int,
    sample_points: int,
    assign: str,
    noise: str,
    hdbscan_args: tuple,
    hdbscan_kwargs: dict[str, Any] | None,
    bg_vector: np.ndarray | None,
    max_background_similarity: float | None,
    largest_is_background: bool,
    min_similarity: float | None = None,
    views: int = 1,
) -> np.ndarray:
    """``mode="fast"`` of :func:`cluster_embeddings`: labels (``-1`` = background) of the pixels of ``fg``
    in raster order, before the ``min_size`` filter. See :func:`cluster_embeddings` for the method."""
    t, d, h, w = unit.shape
    c = float(coordinate_scale)
    n = int(np.count_nonzero(fg))
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    s = _grid_stride(fg, sample_points)
    o = s // 2
    gy = np.arange(o, h, s)
    gx = np.arange(o, w, s)
    grid_unit = unit[:, :, o::s, o::s]  # (T, D, ni, nj)
    grid_fg = fg[:, o::s, o::s]
    gt, gi, gj = np.nonzero(grid_fg)
    m = gt.size
    sample_feats = grid_unit.transpose(0, 2, 3, 1)[grid_fg].astype(np.float64)
    sample_coords = np.stack([gy[gi], gx[gj]], axis=1).astype(np.float64) * c
    ms, mcs = min_samples, min_cluster_size
    if m < n:
        frac = m / n
        ms = max(min(min_samples, MIN_SAMPLED_NEIGHBORS), round(min_samples * frac))
        mcs = max(min(min_cluster_size, MIN_SAMPLED_NEIGHBORS), 2, round(min_cluster_size * frac))
    sample_points_ = np.concatenate([sample_feats, sample_coords], axis=1)
    sample_labels = _run_hdbscan(sample_points_, ms, mcs, *hdbscan_args, hdbscan_kwargs)
    if noise == "nearest":
        is_noise = sample_labels < 0
        if is_noise.any() and not is_noise.all():
            sample_labels = sample_labels.copy()
            sample_labels[is_noise] = _nearest_labels(
                sample_points_[is_noise], sample_points_[~is_noise], sample_labels[~is_noise], hdbscan_args[-1]
            )
    num = int(sample_labels.max(initial=-1)) + 1

    tt, yy, xx = np.nonzero(fg)
    if s == 1:
        point_labels = sample_labels
        feats = sample_feats
    else:
        feats = unit.transpose(0, 2, 3, 1)[fg].astype(np.float64)
        coords = np.stack([yy, xx], axis=1).astype(np.float64) * c
        point_labels = np.full(n, -1, dtype=np.int64)
        centers_dir = centers_pos = None
        if num > 0:
            sums = _cluster_sums(sample_labels, sample_feats, num)
            centers_dir = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
            counts = np.bincount(sample_labels[sample_labels >= 0], minlength=num)
            centers_pos = _cluster_sums(sample_labels, sample_coords, num) / np.maximum(counts, 1)[:, None]
        if assign == "nearest_sample":
            # the (up to) four grid pixels around each pixel, in the same frame
            label_grid = np.full(grid_fg.shape, -2, dtype=np.int64)  # -2: not a foreground grid pixel
            label_grid[gt, gi, gj] = sample_labels
            best = np.full(n, np.inf)
            for ii, jj in _surrounding_grid_pixels(yy, xx, o, s, gy.size, gx.size):
                lab = label_grid[tt, ii, jj]
                ref = grid_unit[tt, :, ii, jj]
                dist = -2.0 * np.einsum("nd,nd->n", feats, ref) + c * c * ((yy - gy[ii]) ** 2 + (xx - gx[jj]) ** 2)
                better = (lab > -2) & (dist < best)
                best = np.where(better, dist, best)
                point_labels = np.where(better, lab, point_labels)
            orphan = ~np.isfinite(best)
            if orphan.any() and num > 0:
                point_labels[orphan] = _mean_direction_labels(feats[orphan], coords[orphan], centers_dir, centers_pos)
        elif num > 0:
            point_labels = _mean_direction_labels(feats, coords, centers_dir, centers_pos)
            if min_similarity is not None:
                cos = np.einsum("nd,nd->n", feats, centers_dir[point_labels])
                if assign == "local_direction":  # or like a grid pixel of the same cluster around it
                    label_grid = np.full(grid_fg.shape, -2, dtype=np.int64)
                    label_grid[gt, gi, gj] = sample_labels
                    for ii, jj in _surrounding_grid_pixels(yy, xx, o, s, gy.size, gx.size):
                        same = label_grid[tt, ii, jj] == point_labels
                        local = np.einsum("nd,nd->n", feats, grid_unit[tt, :, ii, jj])
                        cos = np.where(same, np.maximum(cos, local), cos)
                point_labels = np.where(cos >= min_similarity, point_labels, -1)
    if max_background_similarity is not None and bg_vector is not None and num > 0:
        sums = _cluster_sums(point_labels, feats, num)
        at_background = _clusters_at_background(sums, bg_vector, max_background_similarity, views)
        drop = np.append(at_background, False)  # index -1: noise stays noise
        point_labels = np.where(drop[point_labels], -1, point_labels)
    if largest_is_background and (point_labels >= 0).any():
        largest = np.argmax(np.bincount(point_labels[point_labels >= 0]))
        point_labels = np.where(point_labels == largest, -1, point_labels)
    return point_labels


def _resolve_mask(mask: Any, shape: tuple[int, int, int]) -> np.ndarray:
    """``foreground_mask`` ``(H, W)`` or ``(T, H, W)`` as bool ``(T, H, W)``."""
    m = _to_numpy(mask, "foreground_mask").astype(bool)
    t, h, w = shape
    if m.shape in ((h, w), (1, h, w)):
        return np.broadcast_to(m.reshape(h, w), shape)
    if m.shape == (t, h, w):
        return m
    raise ValueError(
        f"foreground_mask: expected shape ({h}, {w}), (1, {h}, {w}) or ({t}, {h}, {w}), got {tuple(m.shape)}"
    )


def _resolve_options(options: ClusteringOptions | None, kwargs: dict[str, Any]) -> ClusteringOptions:
    """``options`` (``None``: the defaults) with the fields named in ``kwargs`` replaced, checked."""
    check_option_names("cluster_embeddings", kwargs, OPTION_NAMES)
    if options is None:
        return ClusteringOptions(**kwargs)
    if not isinstance(options, ClusteringOptions):
        raise CosineTrackConfigError(
            "cluster_embeddings#options",
            f"expected a ClusteringOptions or None, got {type(options).__name__} "
            "(a dict of options: ClusteringOptions.from_mapping(d) or **d)",
        )
    return dataclasses.replace(options, **kwargs) if kwargs else options


def cluster_embeddings(
    embeddings: Any,
    foreground_mask: Any = None,
    options: ClusteringOptions | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """Cluster pixel embeddings of one image or of ``T`` frames jointly into an instance label image.

    Steps: (1) L2-normalize the embeddings over ``D``; (2) mark background pixels (``background``,
    ``foreground_mask``) and leave them out; (3) run HDBSCAN on the data points
    ``[e_p, c * y_p, c * x_p]`` of the remaining pixels of all frames together; (4) turn HDBSCAN noise
    into background (or into the nearest cluster, ``noise="nearest"``), and clusters that point at the
    background (``max_background_similarity``) too; (5) drop instances with fewer
    than ``min_size`` pixels in a frame (optionally per connected piece, ``split_components``);
    (6) relabel ``1..K`` in order of first appearance (raster order over ``t, y, x``).

    Args:
        embeddings: ``(D, H, W)`` (one image) or ``(T, D, H, W)`` (``T >= 1`` frames clustered jointly,
            e.g. a pair of consecutive frames), numpy array or torch tensor, raw network output (it
            is normalized here).
        foreground_mask: optional bool ``(H, W)`` or ``(1, H, W)`` (all frames) or ``(T, H, W)``; pixels
            outside it are background. Combined (logical and) with a background rule other than
            ``"auto"``.
        options: the clustering options (:class:`~cosinetrack.clustering.options.ClusteringOptions`, where
            each is documented); ``None``: the defaults.
        kwargs: options by name (``coordinate_scale=0.01, min_samples=10, ...``, the fields of
            ``ClusteringOptions``); they replace those of ``options``.

    Returns:
        int32 labels ``(H, W)`` for ``(D, H, W)`` input or ``(T, H, W)`` for ``(T, D, H, W)`` input;
        ``0`` = background, instances ``1..K``; an instance has the same id in all frames.

    Raises:
        ValueError: bad shapes, non-finite embeddings or invalid options.
        CosineTrackConfigError: (a ``TypeError``) an unknown option name in ``kwargs``, or ``options`` of
            the wrong type.
    """
    o = _resolve_options(options, kwargs)
    emb, single = _as_frames(embeddings)
    t, d, h, w = emb.shape
    min_samples = int(o.min_samples)
    min_cluster_size = min_samples if o.min_cluster_size is None else int(o.min_cluster_size)
    min_size = min_samples / 2 if o.min_size is None else float(o.min_size)
    coordinate_scale = o.coordinate_scale

    unit = normalize_embeddings(emb, axis=1, eps=o.eps)
    fg = np.ones((t, h, w), dtype=bool)
    if foreground_mask is not None:
        fg = fg & _resolve_mask(foreground_mask, (t, h, w))

    rule: str | None
    bg_vector: np.ndarray | None = None
    if o.background is None or isinstance(o.background, str):
        rule = "none" if o.background is None else o.background
        if rule == "auto":
            rule = "none" if foreground_mask is not None else "dominant"
        if rule in ("dominant", "median"):
            # fast: the estimate from every fourth row and column (1/16 of the pixels)
            source = unit if o.mode == "exact" else unit[:, :, ::4, ::4]
            if o.views > 1:
                bg_vector, view_fg = _background_by_views(unit, source, rule, o)
                fg &= view_fg
            else:
                bg_vector = estimate_background_embedding(source, rule, o.background_threshold, seed=o.seed)
    else:
        rule = "vector"
        vec = _to_numpy(o.background, "background").astype(np.float32).ravel()
        if vec.shape != (d,) or not np.isfinite(vec).all() or not np.any(vec):
            raise ValueError(f"background: a vector must be finite, non-zero and of shape ({d},), got {vec.shape}")
        bg_vector = normalize_embeddings(vec, axis=-1)
    if bg_vector is not None and o.views == 1:
        if o.mode == "exact":
            fg &= np.einsum("tdhw,d->thw", unit, bg_vector) < o.background_threshold
        else:
            fg &= np.tensordot(bg_vector, unit, axes=([0], [1])) < o.background_threshold

    hdbscan_args = (
        o.cluster_selection_epsilon, o.allow_single_cluster, o.approx_min_span_tree, o.algorithm, o.n_jobs
    )  # fmt: skip
    if o.mode == "fast":
        point_labels = _fast_point_labels(
            unit, fg, coordinate_scale, min_samples, min_cluster_size, o.sample_points, o.assign, o.noise, hdbscan_args,
            o.hdbscan_kwargs, bg_vector, o.max_background_similarity, rule == "largest", o.min_similarity, o.views,
        )  # fmt: skip
        labels = np.zeros((t, h, w), dtype=np.int64)
        labels[fg] = point_labels + 1
        labels = filter_small_instances(labels, min_size, o.split_components, o.connectivity)
        labels = relabel_consecutive(labels)
        return labels[0] if single else labels

    points = embedding_data_points(unit, fg, coordinate_scale)
    n = points.shape[0]
    ms, mcs = min_samples, min_cluster_size
    sample_idx: np.ndarray | None = None
    if o.max_points is not None and n > int(o.max_points):
        frac = int(o.max_points) / n
        sample_idx = np.sort(np.random.default_rng(o.seed).choice(n, int(o.max_points), replace=False))
        ms = max(1, round(min_samples * frac))
        mcs = max(2, round(min_cluster_size * frac))
    fit_points = points if sample_idx is None else points[sample_idx]
    fit_labels = _run_hdbscan(
        fit_points,
        ms,
        mcs,
        o.cluster_selection_epsilon,
        o.allow_single_cluster,
        o.approx_min_span_tree,
        o.algorithm,
        o.n_jobs,
        o.hdbscan_kwargs,
    )
    if o.noise == "nearest":
        is_noise = fit_labels < 0
        if is_noise.any() and not is_noise.all():
            fit_labels = fit_labels.copy()
            fit_labels[is_noise] = _nearest_labels(
                fit_points[is_noise], fit_points[~is_noise], fit_labels[~is_noise], o.n_jobs
            )
    if sample_idx is None:
        point_labels = fit_labels
    else:
        point_labels = np.full(n, -1, dtype=np.int64)
        point_labels[sample_idx] = fit_labels
        rest = np.ones(n, dtype=bool)
        rest[sample_idx] = False
        point_labels[rest] = _nearest_labels(points[rest], fit_points, fit_labels, o.n_jobs)
    if o.max_background_similarity is not None and bg_vector is not None and (point_labels >= 0).any():
        ids = point_labels >= 0
        sums = np.zeros((int(point_labels.max()) + 1, d))
        np.add.at(sums, point_labels[ids], points[ids, :d])
        at_background = _clusters_at_background(sums, bg_vector, o.max_background_similarity, o.views)
        drop = ids & at_background[np.maximum(point_labels, 0)]
        point_labels = np.where(drop, -1, point_labels)
    if rule == "largest" and (point_labels >= 0).any():
        largest = np.argmax(np.bincount(point_labels[point_labels >= 0]))
        point_labels = np.where(point_labels == largest, -1, point_labels)

    labels = np.zeros((t, h, w), dtype=np.int64)
    labels[fg] = point_labels + 1
    labels = filter_small_instances(labels, min_size, o.split_components, o.connectivity)
    labels = relabel_consecutive(labels)
    return labels[0] if single else labels


# ----------------------------------------------------------------------------------------------------
# helpers for tests and benchmarks


def synthetic_embeddings(
    labels: np.ndarray,
    dim: int = 16,
    num_directions: int = 6,
    neighbor_radius: float = 2.0,
    noise: float = 0.02,
    smooth: float = 1.0,
    scale_range: tuple[float, float] = (0.5, 2.0),
    directions: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Embeddings a well-trained network might output for an instance label image (for tests).

    Background (label 0) gets direction ``e_1``; the instances get unit directions orthogonal to it,
    drawn from a palette of ``num_directions`` random directions (mutually orthogonal as far as ``dim``
    allows) by greedy graph coloring, so that instances closer than ``neighbor_radius`` pixels differ
    (the paper's neighbor set ``N_i``, the four-color idea); instances further apart may share one.
    The direction field is smoothed with a Gaussian of ``smooth`` pixels (mixed embeddings on borders,
    as a CNN produces), Gaussian noise of standard deviation ``noise`` per component is added and every
    pixel is scaled by a random factor in ``scale_range`` (the network output is not normalized).
    An instance keeps its direction in every frame.

    Args:
        labels: ``(H, W)`` or ``(T, H, W)`` non-negative integer labels.
        dim: embedding size ``D`` (``>= 2``).
        num_directions: palette size for instances.
        neighbor_radius: instances whose pixels come this close (pixels, any frame) get different
            directions when the palette allows (the paper: ``r_N = 50`` for cells, all leaves for CVPPP).
        noise: per-component noise standard deviation.
        smooth: Gaussian sigma in pixels of the direction field (``0``: none).
        scale_range: range of the random per-pixel norm.
        directions: optional ``(max_label + 1, dim)`` directions to use instead (row 0 = background).
        seed: random seed.

    Returns:
        float32 ``(D, H, W)`` or ``(T, D, H, W)``.
    """
    lab = np.asarray(labels)
    single = lab.ndim == 2
    lab3 = lab[None] if single else lab
    rng = np.random.default_rng(seed)
    n_lab = int(lab3.max(initial=0)) + 1
    if directions is None:
        # palette orthogonal to the background e_1, mutually orthogonal as far as dim allows
        palette = rng.normal(size=(num_directions, dim))
        palette[:, 0] = 0.0
        k = min(num_directions, dim - 1)
        q, _ = np.linalg.qr(palette[:k, 1:].T)
        palette[:k, 1:] = q.T
        palette /= np.linalg.norm(palette, axis=1, keepdims=True)
        # neighbors: instances closer than neighbor_radius pixels (in any frame)
        adjacency = [set() for _ in range(n_lab)]
        for frame in lab3:
            for i in np.unique(frame[frame > 0]):
                near = ndimage.distance_transform_edt(frame != i) <= neighbor_radius
                adjacency[i].update(int(v) for v in np.unique(frame[near]) if v > 0 and v != i)
        color = np.zeros(n_lab, dtype=np.int64)
        for i in rng.permutation(np.arange(1, n_lab)):
            used = {color[j] for j in adjacency[i] if color[j] > 0}
            free = [c for c in range(1, num_directions + 1) if c not in used]
            color[i] = rng.choice(free) if free else rng.integers(1, num_directions + 1)
        directions = np.zeros((n_lab, dim))
        directions[0, 0] = 1.0
        directions[1:] = palette[color[1:] - 1]
    directions = np.asarray(directions, dtype=np.float64)
    field = directions[lab3].transpose(0, 3, 1, 2)  # (T, D, H, W)
    if smooth > 0:
        field = ndimage.gaussian_filter(field, sigma=(0, 0, smooth, smooth))
    field = field + rng.normal(scale=noise, size=field.shape)
    field /= np.maximum(np.linalg.norm(field, axis=1, keepdims=True), 1e-12)
    field *= rng.uniform(*scale_range, size=(field.shape[0], 1) + field.shape[2:])
    field = field.astype(np.float32)
    return field[0] if single else field


def mean_best_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean over ground-truth instances of the best IoU with any predicted instance (``0`` = background).

    For ``(T, H, W)`` inputs an instance is the set of its pixels in all frames, so a tracked instance
    must keep one id through the frames to score 1. Returns NaN when ``gt`` has no instance.
    """
    pred = np.asarray(pred).ravel().astype(np.int64)
    gt = np.asarray(gt).ravel().astype(np.int64)
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt differ in size: {pred.size} vs {gt.size}")
    g_ids = np.unique(gt[gt > 0])
    if g_ids.size == 0:
        return float("nan")
    np_ = int(pred.max(initial=0)) + 1
    ng = int(gt.max()) + 1
    inter = np.bincount(gt * np_ + pred, minlength=ng * np_).reshape(ng, np_)
    g_size = inter.sum(axis=1)
    p_size = inter.sum(axis=0)
    union = g_size[:, None] + p_size[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    iou[:, 0] = 0.0
    return float(iou[g_ids].max(axis=1).mean())
