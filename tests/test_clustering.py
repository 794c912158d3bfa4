"""Clustering of embeddings into instances: synthetic embeddings of known label images, 48x64 (non-square)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from skimage.draw import disk

from cosinetrack.apps.leaf.pipeline import cluster_folder
from cosinetrack.clustering.embedding_clustering import (
    cluster_embeddings,
    estimate_background_embedding,
    filter_small_instances,
    mean_best_iou,
    relabel_consecutive,
    synthetic_embeddings,
)
from cosinetrack.clustering.handlers import EmbeddingClusteringHandler
from cosinetrack.clustering.transforms import ClusterEmbeddings, ClusterEmbeddingsd
from cosinetrack.io.png import InstancePNGWriter, read_instance_png, write_instance_png

H, W, D = 48, 64, 8
FAST = dict(min_samples=10, n_jobs=1)  # small images: m_pts = 10


def directions(n: int, dim: int = D) -> np.ndarray:
    """Row 0 = background e_1, rows 1..n-1 = e_2, e_3, ... (orthogonal)."""
    return np.eye(dim)[:n]


def two_twins_and_disc() -> np.ndarray:
    """Instances 1 and 2 far apart (will share a direction), 3 a disc between them."""
    lab = np.zeros((H, W), np.int32)
    lab[4:16, 4:20] = 1
    lab[32:44, 44:60] = 2
    rr, cc = disk((24, 32), 7, shape=(H, W))
    lab[rr, cc] = 3
    return lab


def twin_embeddings(lab: np.ndarray, noise: float = 0.01, seed: int = 0) -> np.ndarray:
    dirs = directions(4)
    dirs[2] = dirs[1]  # the twins share one direction, as the cosine loss allows for far-apart instances
    return synthetic_embeddings(lab, dim=D, directions=dirs, noise=noise, smooth=0.0, seed=seed)


def blobs(n: int = 6, seed: int = 0, frames: int = 1, shift: int = 2) -> np.ndarray:
    """``(frames, H, W)`` labels of ``n`` non-overlapping discs, moving by up to ``shift`` px per frame."""
    rng = np.random.default_rng(seed)
    centers: list[tuple[float, float, float]] = []
    for _ in range(10000):
        if len(centers) == n:
            break
        r, c, rad = rng.uniform(8, H - 8), rng.uniform(8, W - 8), rng.uniform(4, 6.5)
        if all(np.hypot(r - r2, c - c2) > rad + rad2 + 2 * shift + 2 for r2, c2, rad2 in centers):
            centers.append((r, c, rad))
    assert len(centers) == n, "cannot place the discs; use fewer"
    lab = np.zeros((frames, H, W), np.int32)
    for t in range(frames):
        for i, (r, c, rad) in enumerate(centers, 1):
            dy, dx = rng.integers(-shift, shift + 1, 2) if t else (0, 0)
            rr, cc = disk((r + dy, c + dx), rad, shape=(H, W))
            lab[t, rr, cc] = i
    return lab


# ------------------------------------------------------------------------------------------------
# core function


def test_recovers_instances_of_synthetic_embeddings():
    lab = blobs(n=6, seed=1)[0]
    emb = synthetic_embeddings(lab, dim=D, num_directions=7, neighbor_radius=1e9, noise=0.03, smooth=0.7, seed=1)
    pred = cluster_embeddings(emb, coordinate_scale=0.01, **FAST)
    assert pred.shape == (H, W) and pred.dtype == np.int32
    assert mean_best_iou(pred, lab) > 0.9 and mean_best_iou(lab, pred) > 0.9
    assert pred.max() == lab.max()


def test_coordinates_separate_far_apart_instances_with_same_embedding():
    lab = two_twins_and_disc()
    emb = twin_embeddings(lab)
    separated = cluster_embeddings(emb, coordinate_scale=0.05, **FAST)
    assert separated.max() == 3
    assert mean_best_iou(separated, lab) > 0.95
    merged = cluster_embeddings(emb, coordinate_scale=0.0, **FAST)
    assert merged.max() == 2
    twin_ids = np.unique(merged[(lab == 1) | (lab == 2)])
    assert twin_ids.size == 1 and twin_ids[0] > 0  # one instance covers both twins


def test_split_components_separates_merged_twins():
    lab = two_twins_and_disc()
    emb = twin_embeddings(lab)
    pred = cluster_embeddings(emb, coordinate_scale=0.0, split_components=True, **FAST)
    assert pred.max() == 3 and mean_best_iou(pred, lab) > 0.95


def test_output_ids_are_consecutive_in_raster_order_and_scale_invariant():
    lab = blobs(n=5, seed=2)[0]
    emb = synthetic_embeddings(lab, dim=D, num_directions=6, noise=0.02, smooth=0.0, seed=2)
    pred = cluster_embeddings(emb, coordinate_scale=0.01, **FAST)
    ids = np.unique(pred)
    np.testing.assert_array_equal(ids, np.arange(pred.max() + 1))
    first = [np.flatnonzero(pred.ravel() == i)[0] for i in ids[1:]]
    assert first == sorted(first)
    # raw (unnormalized) network output: any positive per-pixel scale gives the same labels
    scaled = emb * np.random.default_rng(0).uniform(0.1, 10, size=(1, H, W)).astype(np.float32)
    np.testing.assert_array_equal(cluster_embeddings(torch.from_numpy(scaled), coordinate_scale=0.01, **FAST), pred)


def test_pair_keeps_instance_ids_across_frames():
    lab = blobs(n=5, seed=3, frames=2)
    emb = synthetic_embeddings(lab, dim=D, num_directions=6, neighbor_radius=1e9, noise=0.02, smooth=0.5, seed=3)
    assert emb.shape == (2, D, H, W)
    pred = cluster_embeddings(emb, coordinate_scale=0.01, **FAST)
    assert pred.shape == (2, H, W) and pred.dtype == np.int32
    for i in range(1, lab.max() + 1):
        ids0 = np.bincount(pred[0][lab[0] == i]).argmax()
        ids1 = np.bincount(pred[1][lab[1] == i]).argmax()
        assert ids0 == ids1 > 0
    assert mean_best_iou(pred, lab) > 0.9  # over both frames: an id change would halve the IoU


def test_pair_split_components_links_pieces_over_frames():
    lab = np.stack([two_twins_and_disc(), np.roll(two_twins_and_disc(), (1, 2), axis=(0, 1))])
    emb = twin_embeddings(lab)
    pred = cluster_embeddings(emb, coordinate_scale=0.0, split_components=True, **FAST)
    assert pred.max() == 3
    assert mean_best_iou(pred, lab) > 0.95


def test_single_instance_is_found():
    lab = np.zeros((H, W), np.int32)
    lab[10:30, 20:40] = 1
    emb = synthetic_embeddings(lab, dim=D, noise=0.02, smooth=0.0)
    pred = cluster_embeddings(emb, **FAST)
    assert pred.max() == 1 and mean_best_iou(pred, lab) > 0.95


def test_all_background_gives_empty_labels():
    emb = synthetic_embeddings(np.zeros((H, W), np.int32), dim=D, noise=0.01)
    pred = cluster_embeddings(emb, **FAST)
    assert pred.shape == (H, W) and not pred.any()


def test_min_size_drops_small_clusters():
    lab = blobs(n=3, seed=4)[0]
    lab[-5:-1, 1:5] = 9  # 16 px, its own direction
    emb = synthetic_embeddings(lab, dim=D, num_directions=7, noise=0.01, smooth=0.0, seed=4)
    kw = dict(coordinate_scale=0.01, min_samples=5, min_cluster_size=8)
    kept = cluster_embeddings(emb, min_size=10, **kw)
    dropped = cluster_embeddings(emb, min_size=20, **kw)
    assert kept.max() == 4 and dropped.max() == 3
    assert kept[-3, 3] > 0 and dropped[-3, 3] == 0
    # default t_size = min_samples / 2 = 10 with min_samples = 20: a 16 px cluster must not form at all
    assert cluster_embeddings(emb, coordinate_scale=0.01, min_samples=20)[-3, 3] == 0


def test_filter_small_instances_counts_per_frame_and_relabel():
    lab = np.zeros((2, 6, 6), np.int64)
    lab[0, :3, :3] = 5  # 9 px in frame 0
    lab[1, :1, :2] = 5  # 2 px in frame 1 -> dropped there only
    lab[:, 4:, 4:] = 7  # 4 px per frame -> dropped (8 in total, but counted per frame)
    out = filter_small_instances(lab, min_size=5)
    assert (out[0] == 5).sum() == 9 and not (out[1] == 5).any() and not (out == 7).any()
    np.testing.assert_array_equal(relabel_consecutive(np.array([[0, 7, 3], [7, 0, 3]])), [[0, 1, 2], [1, 0, 2]])


def test_filter_small_instances_split_gives_new_id_to_second_piece():
    lab = np.zeros((1, 8, 8), np.int64)
    lab[0, :3, :3] = 4  # 9 px
    lab[0, 5:, 5:] = 4  # 9 px, same instance, disconnected
    lab[0, 0, 7] = 4  # 1 px piece -> dropped
    out = filter_small_instances(lab, min_size=5, split_components=True)
    assert set(np.unique(out)) == {0, 4, 5}
    assert out[0, 0, 7] == 0


# ------------------------------------------------------------------------------------------------
# background rules


def big_background_minority() -> tuple[np.ndarray, np.ndarray]:
    """Background 34% of the image, three instances of 22% each: the median is not the background."""
    lab = np.zeros((H, W), np.int32)
    lab[:, 22:36] = 1
    lab[:, 36:50] = 2
    lab[:, 50:64] = 3
    return lab, synthetic_embeddings(lab, dim=D, directions=directions(4), noise=0.02, smooth=0.0)


def test_dominant_background_rule_handles_background_minority():
    lab, emb = big_background_minority()
    bg = estimate_background_embedding(emb, "dominant")
    assert bg[0] > 0.99
    pred = cluster_embeddings(emb, background="dominant", coordinate_scale=0.001, **FAST)
    assert pred.max() == 3 and mean_best_iou(pred, lab) > 0.95
    np.testing.assert_array_equal(cluster_embeddings(emb, coordinate_scale=0.001, **FAST), pred)  # "auto"
    # the reference-code median rule misses this background: it becomes an instance of its own ...
    assert estimate_background_embedding(emb, "median")[0] < 0.9
    kw = dict(background="median", coordinate_scale=0.001, **FAST)
    assert cluster_embeddings(emb, max_background_similarity=None, **kw).max() == 4
    # ... unless the cluster-level rule catches it (the median still leans towards the background)
    assert cluster_embeddings(emb, **kw).max() == 3


@pytest.mark.parametrize("rule", ["median", "largest", np.eye(D)[0] * 3.0])
def test_other_background_rules_agree_when_background_dominates(rule):
    lab = two_twins_and_disc()
    emb = synthetic_embeddings(lab, dim=D, directions=directions(4), noise=0.02, smooth=0.0)
    ref = cluster_embeddings(emb, coordinate_scale=0.01, **FAST)
    assert ref.max() == 3
    pred = cluster_embeddings(emb, background=rule, coordinate_scale=0.01, **FAST)
    assert mean_best_iou(pred, ref) > 0.95 and pred.max() == 3


def test_foreground_mask_alone_and_combined():
    lab = two_twins_and_disc()
    emb = synthetic_embeddings(lab, dim=D, directions=directions(4), noise=0.02, smooth=0.0)
    mask = lab == 3
    pred = cluster_embeddings(emb, foreground_mask=torch.from_numpy(mask), coordinate_scale=0.01, **FAST)
    assert pred.max() == 1 and not pred[~mask].any()
    # no background rule, no mask: background is just one more cluster
    assert cluster_embeddings(emb, background=None, coordinate_scale=0.01, **FAST).max() == 4


def four_views(lab: np.ndarray, stray_views: int) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings ``(4 * D, H, W)`` of four views of ``lab`` (each its own direction palette, as the
    flipped views of a network are), unit length like ``merge_flip_views``; a background patch points at
    a direction of its own in the first ``stray_views`` views (noise one view reads as a cell). Also
    returns the patch's mask."""
    patch = np.zeros(lab.shape, bool)
    patch[2:12, 28:40] = True
    assert not lab[patch].any()
    views = []
    for v in range(4):
        dirs = np.roll(np.eye(D), v, axis=1)[:5]  # view v: background e_(1+v), instances further on
        view_lab = lab.copy()
        if v < stray_views:
            view_lab[patch] = 4
        emb = synthetic_embeddings(view_lab, dim=D, directions=dirs, noise=0.02, smooth=0.0, seed=v)
        views.append(emb / np.linalg.norm(emb, axis=0, keepdims=True))
    return np.concatenate(views) / 2.0, patch


@pytest.mark.parametrize("mode", ["exact", "fast"])
@pytest.mark.parametrize("stray_views, patch_is_background", [(0, True), (1, True), (2, True), (3, False)])
def test_views_decide_the_background_by_majority(stray_views, patch_is_background, mode):
    lab = two_twins_and_disc()
    emb, patch = four_views(lab, stray_views)
    kw = dict(coordinate_scale=0.01, max_background_similarity=None, mode=mode, **FAST)
    pred = cluster_embeddings(emb, views=4, **kw)
    assert mean_best_iou(pred, lab) > 0.95
    assert (not pred[patch].any()) == patch_is_background
    assert pred.max() == (3 if patch_is_background else 4)
    if stray_views:  # one threshold on the views' mean similarity: a patch any view strays on is clustered
        assert cluster_embeddings(emb, **kw)[patch].all()


@pytest.mark.parametrize("mode", ["exact", "fast"])
@pytest.mark.parametrize("leaning_views, disc_is_background", [(1, False), (2, True), (4, True)])
def test_views_decide_the_cluster_background_rule_by_majority(leaning_views, disc_is_background, mode):
    """The disc points halfway to the background (cosine 0.71) in ``leaning_views`` views and away from it in
    the others: with ``views`` it becomes background when at least half of the views see it so; the mean
    similarity of one merged view would keep it up to four leaning views' 0.71."""
    lab = two_twins_and_disc()
    views = []
    for v in range(4):
        dirs = np.eye(D)[:4].copy()
        if v < leaning_views:
            dirs[3] = (dirs[0] + dirs[3]) / np.sqrt(2.0)
        emb = synthetic_embeddings(lab, dim=D, directions=dirs, noise=0.01, smooth=0.0, seed=v)
        views.append(emb / np.linalg.norm(emb, axis=0, keepdims=True))
    emb = np.concatenate(views) / 2.0
    kw = dict(coordinate_scale=0.01, max_background_similarity=0.5, mode=mode, **FAST)
    pred = cluster_embeddings(emb, views=4, **kw)
    assert (not pred[lab == 3].any()) == disc_is_background
    assert mean_best_iou(np.where(lab == 3, 0, lab), np.where(lab == 3, 0, pred)) > 0.95  # the twins stay
    merged_mean = 0.71 * leaning_views / 4
    assert (not cluster_embeddings(emb, **kw)[lab == 3].any()) == (merged_mean >= 0.5)


def test_views_must_split_the_channels():
    emb, _ = four_views(two_twins_and_disc(), 0)
    with pytest.raises(ValueError, match="views: 3 views do not split the 32 embedding channels"):
        cluster_embeddings(emb, views=3, **FAST)


def three_discs() -> np.ndarray:
    lab = np.zeros((H, W), np.int32)
    for i, center in enumerate([(13, 13), (13, 50), (34, 31)], 1):
        rr, cc = disk(center, 9.5, shape=(H, W))
        lab[rr, cc] = i
    return lab


def test_smooth_embeddings_rings_and_rims():
    """A smooth network output (mixed embeddings near borders) makes rings outside the instances and
    rims inside them; max_background_similarity drops the rings, cluster_selection_epsilon keeps rims."""
    lab = three_discs()
    emb = synthetic_embeddings(lab, dim=D, num_directions=3, neighbor_radius=1e9, noise=0.01, smooth=1.0)
    no_rule = cluster_embeddings(emb, coordinate_scale=0.01, max_background_similarity=None, **FAST)
    assert no_rule.max() > 3 + 2  # rings and rims
    rims = cluster_embeddings(emb, coordinate_scale=0.01, **FAST)  # default max_background_similarity=0.5
    assert 3 < rims.max() < no_rule.max()
    best = cluster_embeddings(emb, coordinate_scale=0.01, cluster_selection_epsilon=0.3, **FAST)
    assert best.max() == 3 and mean_best_iou(best, lab) > 0.9 and mean_best_iou(lab, best) > 0.9


def test_noise_nearest_and_subsampling():
    lab = blobs(n=5, seed=6)[0]
    emb = synthetic_embeddings(lab, dim=D, num_directions=6, neighbor_radius=1e9, noise=0.03, smooth=0.5, seed=6)
    ref = cluster_embeddings(emb, coordinate_scale=0.01, **FAST)
    assert mean_best_iou(ref, lab) > 0.9
    nearest = cluster_embeddings(emb, coordinate_scale=0.01, noise="nearest", **FAST)
    assert (nearest > 0).sum() >= (ref > 0).sum()
    assert mean_best_iou(nearest, lab) > 0.9
    sub = cluster_embeddings(emb, coordinate_scale=0.01, max_points=300, **FAST)
    assert mean_best_iou(sub, lab) > 0.85


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(embeddings=np.zeros((H, W))), r"\(D, H, W\)"),
        (dict(embeddings=np.zeros((1, 2, D, H, W))), r"\(T, D, H, W\)"),
        (dict(embeddings=np.zeros((0, H, W))), "non-empty"),
        (dict(embeddings=np.full((D, H, W), np.nan)), "NaN"),
        (dict(foreground_mask=np.ones((H + 1, W), bool)), "foreground_mask"),
        (dict(background="mode"), "background"),
        (dict(background=np.ones(D + 1)), r"shape \(8,\)"),
        (dict(min_cluster_size=1), "min_cluster_size"),
        (dict(noise="drop"), "noise"),
        (dict(coordinate_scale=-1.0), "coordinate_scale"),
    ],
)
def test_invalid_inputs_raise_clear_value_errors(kwargs, match):
    args = dict(embeddings=np.random.default_rng(0).normal(size=(D, H, W)).astype(np.float32), min_samples=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        cluster_embeddings(**args)


# ------------------------------------------------------------------------------------------------
# mode="fast": HDBSCAN on a grid sample, every pixel labeled from it


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """``a`` and ``b`` have the same background and the same instances, up to the ids."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)
    return np.unique(pairs[0]).size == pairs.shape[1] == np.unique(pairs[1]).size


def touching_pair() -> np.ndarray:
    """Two rectangles sharing a long edge (different directions) and a disc, in two frames."""
    lab = np.zeros((2, H, W), np.int32)
    for t in range(2):
        lab[t, 8 + t : 30 + t, 6:22] = 1
        lab[t, 8 + t : 30 + t, 22:40] = 2  # touches instance 1 along a 22 px edge
        rr, cc = disk((34, 52 - t), 8, shape=(H, W))
        lab[t, rr, cc] = 3
    return lab


def fast_cases() -> dict[str, tuple[np.ndarray, np.ndarray, dict]]:
    """name -> (embeddings, labels, options): synthetic cases with one unambiguous answer."""
    sep = blobs(n=6, seed=11)[0]
    pair = blobs(n=5, seed=12, frames=2)
    touch = touching_pair()
    twins = np.stack([two_twins_and_disc(), np.roll(two_twins_and_disc(), (1, 2), axis=(0, 1))])
    one = np.zeros((H, W), np.int32)
    one[10:30, 20:44] = 1
    return {
        "separated directions": (
            synthetic_embeddings(sep, dim=D, directions=directions(7), noise=0.01, smooth=0.0, seed=11),
            sep,
            dict(coordinate_scale=0.01),
        ),
        "pair of frames": (
            synthetic_embeddings(pair, dim=D, directions=directions(6), noise=0.01, smooth=0.0, seed=12),
            pair,
            dict(coordinate_scale=0.01),
        ),
        "touching instances": (
            synthetic_embeddings(touch, dim=D, directions=directions(4), noise=0.01, smooth=0.0, seed=13),
            touch,
            dict(coordinate_scale=0.001),
        ),
        "twins, split components": (twin_embeddings(twins), twins, dict(coordinate_scale=0.0, split_components=True)),
        "one instance": (synthetic_embeddings(one, dim=D, noise=0.01, smooth=0.0), one, {}),
        "background only": (synthetic_embeddings(np.zeros((H, W), np.int32), dim=D, noise=0.01), None, {}),
    }


FAST_CASES = fast_cases()


@pytest.mark.parametrize("assign", ["nearest_sample", "mean_direction", "local_direction"])
@pytest.mark.parametrize(
    "sample_points, m_pts",
    [(100000, 10), (150, 20)],  # every pixel / a grid of stride >= 2 (m_pts 20 -> 5 on the sample)
)
@pytest.mark.parametrize("case", list(FAST_CASES))
def test_fast_mode_gives_the_instances_of_the_exact_mode(case, sample_points, m_pts, assign):
    emb, lab, options = FAST_CASES[case]
    exact = cluster_embeddings(emb, **options, min_samples=m_pts)
    fast = cluster_embeddings(
        emb, mode="fast", sample_points=sample_points, assign=assign, min_samples=m_pts, **options
    )
    assert fast.shape == exact.shape and fast.dtype == np.int32
    np.testing.assert_array_equal(np.unique(fast), np.arange(fast.max() + 1))
    assert same_partition(fast, exact)
    if lab is None:
        assert not fast.any()
    else:
        assert same_partition(fast, lab) or mean_best_iou(fast, lab) > 0.98


def test_fast_mode_grid_stride():
    from cosinetrack.clustering.embedding_clustering import _grid_stride

    fg = np.zeros((2, 100, 100), bool)
    fg[:, 10:90, 10:90] = True  # 12800 px
    assert _grid_stride(fg, 100000) == 1  # few enough pixels: all of them
    assert _grid_stride(fg, 1000) == 4  # 2 * 20 * 20 = 800 <= 1000 (stride 3: 2 * 27 * 27 > 1000)
    assert _grid_stride(fg, 100) == 11  # rows and columns 16, 27, ..., 82: 2 * 7 * 7 = 98


def test_fast_mode_min_similarity_leaves_mixed_borders_as_background():
    lab = blobs(n=5, seed=14)[0]
    emb = synthetic_embeddings(lab, dim=D, directions=directions(6), noise=0.02, smooth=1.0, seed=14)
    kw = dict(mode="fast", coordinate_scale=0.01, sample_points=200, min_samples=20)
    all_pixels = cluster_embeddings(emb, min_similarity=None, **kw)
    cores = cluster_embeddings(emb, **kw)  # default 0.97
    assert (cores > 0).sum() < (all_pixels > 0).sum()
    assert ((cores > 0) <= (all_pixels > 0)).all()
    assert all_pixels.max() == cores.max() == 5
    assert mean_best_iou(all_pixels, lab) > 0.8 and mean_best_iou(cores, lab) > 0.6  # cores: rims left out


@pytest.mark.parametrize("assign, expect_kept", [("mean_direction", 0), ("local_direction", 6)])
def test_fast_mode_local_direction_keeps_the_cells_of_a_cluster_of_several_directions(monkeypatch, assign, expect_kept):
    """HDBSCAN may put cells of different directions into one cluster (a small ``c``; ``split_components``
    separates them later). ``mean_direction`` then tests ``min_similarity`` against a mean that matches none of
    them and drops them all; ``local_direction`` also tests against the cluster's grid pixels around each pixel."""
    from cosinetrack.clustering import embedding_clustering

    lab = blobs(n=6, seed=15)[0]
    emb = synthetic_embeddings(lab, dim=D, directions=directions(7), noise=0.01, smooth=0.0, seed=15)
    one_cluster = lambda points, *args, **kwargs: np.zeros(len(points), dtype=np.int64)  # noqa: E731
    monkeypatch.setattr(embedding_clustering, "_run_hdbscan", one_cluster)
    out = cluster_embeddings(
        emb, mode="fast", assign=assign, coordinate_scale=0.0, sample_points=300, min_samples=20,
        split_components=True, min_size=10,
    )  # fmt: skip
    assert out.max() == expect_kept
    if expect_kept:
        assert same_partition(out, lab) or mean_best_iou(out, lab) > 0.9


def test_fast_mode_is_a_bundle_option():
    from cosinetrack.clustering.options import check_cluster_kwargs

    assert check_cluster_kwargs({"mode": "fast", "sample_points": 500, "assign": "mean_direction"})
    cfg = ConfigParser()
    cfg.read_config(os.path.join(os.path.dirname(__file__), "..", "bundles", "cell", "train.json"))
    options = cfg.get("clustering_options")
    assert options.get("mode", "exact") in ("exact", "fast")
    check_cluster_kwargs(options)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mode="approximate"), r"mode: expected one of \('exact', 'fast'\), got 'approximate'"),
        (dict(mode=None), "mode"),
        (dict(mode="fast", assign="knn"), "assign"),
        (dict(mode="fast", sample_points=1), "sample_points"),
        (dict(mode="fast", sample_points=2.5), "sample_points"),
        (dict(mode="fast", min_similarity=1.5), "min_similarity"),
    ],
)
def test_invalid_fast_options_raise_clear_value_errors(kwargs, match):
    emb = np.random.default_rng(0).normal(size=(D, H, W)).astype(np.float32)
    with pytest.raises(ValueError, match=match):
        cluster_embeddings(emb, min_samples=10, **kwargs)


# ------------------------------------------------------------------------------------------------
# MONAI transforms


def test_monai_transforms_and_bundle_target():
    lab = blobs(n=4, seed=7, frames=2)
    emb = synthetic_embeddings(lab, dim=D, num_directions=5, neighbor_radius=1e9, noise=0.02, smooth=0.0, seed=7)
    ref = cluster_embeddings(emb, coordinate_scale=0.01, **FAST)
    t = ClusterEmbeddingsd(keys="pred", output_key="instances", coordinate_scale=0.01, **FAST)
    out = t({"pred": torch.from_numpy(emb), "image": "untouched"})
    assert out["image"] == "untouched"
    assert isinstance(out["instances"], torch.Tensor) and out["instances"].dtype == torch.int32
    np.testing.assert_array_equal(out["instances"].numpy(), ref)
    # as a bundle would build it
    parser = ConfigParser(
        {
            "post": {
                "_target_": "cosinetrack.clustering.ClusterEmbeddingsd",
                "keys": "pred",
                "coordinate_scale": 0.01,
                "min_samples": 10,
                "add_channel_dim": True,
            }
        }
    )
    meta = MetaTensor(torch.from_numpy(emb[0]), meta={"filename_or_obj": "x.nii.gz"})
    out = parser.get_parsed_content("post")({"pred": meta})
    assert isinstance(out["instances"], MetaTensor) and out["instances"].shape == (1, H, W)
    assert out["instances"].meta["filename_or_obj"] == "x.nii.gz"
    arr = ClusterEmbeddings(coordinate_scale=0.01, **FAST)(emb)
    assert isinstance(arr, np.ndarray)
    np.testing.assert_array_equal(arr, ref)
    with pytest.raises(TypeError, match="min_sample"):
        ClusterEmbeddings(min_sample=10)
    with pytest.raises(ValueError, match="one output key per key"):
        ClusterEmbeddingsd(keys=["a", "b"], output_key="instances")


# ------------------------------------------------------------------------------------------------
# Ignite handler and PNG writing


def save_inputs(folder, frames: int = 1, n: int = 3) -> tuple[list[str], list[np.ndarray]]:
    folder.mkdir()
    paths, labels = [], []
    for k in range(n):
        lab = blobs(n=3, seed=10 + k, frames=frames)
        emb = synthetic_embeddings(
            lab if frames > 1 else lab[0], dim=D, num_directions=4, neighbor_radius=1e9, noise=0.02, smooth=0.5, seed=k
        )
        path = folder / f"case{k}.npy"
        np.save(path, emb)
        paths.append(str(path))
        labels.append(lab if frames > 1 else lab[0])
    return paths, labels


def test_ignite_handler_clusters_batches_and_writes_pngs(tmp_path):
    inputs, gts = save_inputs(tmp_path / "in")
    before = sorted(os.listdir(tmp_path / "in"))

    def process(engine, files):
        emb = torch.stack([torch.from_numpy(np.load(f)) for f in files])  # (B, D, H, W)
        return {"pred": (torch.randn_like(emb), emb), "name": list(files)}  # stack 0 is junk

    engine = Engine(process)
    writer = InstancePNGWriter(tmp_path / "out")
    handler = EmbeddingClusteringHandler(writer=writer, coordinate_scale=0.01, **FAST)
    handler.attach(engine)
    handler.attach(engine)  # attaching twice registers once
    results = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: results.append(e.state.output["instances"]))
    engine.run([inputs[:2], inputs[2:]], max_epochs=1)

    assert [tuple(r.shape) for r in results] == [(2, H, W), (1, H, W)]
    assert all(r.dtype == torch.int32 for r in results)
    labels = [lab for r in results for lab in r]
    assert [os.path.basename(p) for p in writer.written] == ["case0.png", "case1.png", "case2.png"]
    for path, lab, gt in zip(writer.written, labels, gts):
        np.testing.assert_array_equal(read_instance_png(path), lab.numpy())
        assert mean_best_iou(lab.numpy(), gt) > 0.9
    assert sorted(os.listdir(tmp_path / "in")) == before  # nothing written into the input folder
    assert sorted(os.listdir(tmp_path / "out")) == ["case0.png", "case1.png", "case2.png"]  # no temp files

    # a writer pointed at the input folder refuses
    engine2 = Engine(process)
    EmbeddingClusteringHandler(writer=InstancePNGWriter(tmp_path / "in"), coordinate_scale=0.01, **FAST).attach(engine2)
    with pytest.raises(ValueError, match="input folder"):
        engine2.run([inputs[:1]], max_epochs=1)
    assert sorted(os.listdir(tmp_path / "in")) == before


def test_ignite_handler_pairs_in_decollated_outputs(tmp_path):
    lab = blobs(n=3, seed=20, frames=2)
    emb = synthetic_embeddings(lab, dim=D, num_directions=4, neighbor_radius=1e9, noise=0.02, smooth=0.5, seed=20)
    emb = torch.from_numpy(emb)
    engine = Engine(lambda e, b: [{"pred": emb, "name": "pair"}, {"pred": emb, "name": "pair2"}])
    written = []
    EmbeddingClusteringHandler(
        writer=lambda labels, eng, i: written.append((i, tuple(labels.shape))), coordinate_scale=0.01, **FAST
    ).attach(engine)
    state = engine.run([0], max_epochs=1)
    assert written == [(0, (2, H, W)), (1, (2, H, W))]
    assert mean_best_iou(state.output[0]["instances"].numpy(), lab) > 0.9
    bad = Engine(lambda e, b: {"pred": torch.zeros(D, H, W)})
    EmbeddingClusteringHandler(stack=None, **FAST).attach(bad)
    with pytest.raises(ValueError, match=r"\(B, D, H, W\)"):
        bad.run([0], max_epochs=1)


def test_cluster_folder_writes_frame_pngs(tmp_path):
    inputs, gts = save_inputs(tmp_path / "in", frames=2, n=2)
    written = cluster_folder(tmp_path / "in", tmp_path / "out", coordinate_scale=0.01, **FAST)
    assert [os.path.basename(p) for p in written] == [
        "case0_t000.png",
        "case0_t001.png",
        "case1_t000.png",
        "case1_t001.png",
    ]
    pred = np.stack([read_instance_png(p) for p in written[:2]])
    assert mean_best_iou(pred, gts[0]) > 0.9
    assert sorted(os.listdir(tmp_path / "in")) == ["case0.npy", "case1.npy"]
    for out in (tmp_path / "in", tmp_path / "in" / "sub", tmp_path):  # is, lies inside, contains the input
        with pytest.raises(ValueError, match="input folder"):
            cluster_folder(tmp_path / "in", out)
    assert sorted(os.listdir(tmp_path / "in")) == ["case0.npy", "case1.npy"]


def test_write_instance_png_modes(tmp_path):
    lab = np.zeros((H, W), np.int32)
    lab[:10, :10] = 300
    lab[20:, 20:] = 2
    p16 = write_instance_png(lab, tmp_path / "big.png")
    np.testing.assert_array_equal(read_instance_png(p16), lab)
    small = np.where(lab == 300, 7, lab)
    p8 = write_instance_png(torch.from_numpy(small), tmp_path / "sub" / "small.png")
    np.testing.assert_array_equal(read_instance_png(p8), small)
    with pytest.raises(ValueError, match="palette"):
        write_instance_png(lab, tmp_path / "x.png", mode="palette")
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        write_instance_png(lab[None], tmp_path / "x.png")
    assert sorted(os.listdir(tmp_path)) == ["big.png", "sub"]


@pytest.mark.parametrize(
    "options, size, canvas, expected",
    [
        ({"min_samples": 50, "coordinate_scale": 1e-3}, (256, 256), (128, 128), {"min_samples": 13, "coordinate_scale": 2e-3}),  # noqa: E501
        ({"min_samples": 13, "coordinate_scale": 2e-3}, (128, 128), (128, 128), {"min_samples": 13, "coordinate_scale": 2e-3}),  # noqa: E501
        ({"min_samples": 13, "min_size": 6.5}, (128, 128), (256, 256), {"min_samples": 52, "min_size": 26.0}),
        ({"min_samples": 8, "min_size": None}, (256, 256), (64, 64), {"min_samples": 5, "min_size": None}),
        ({"min_samples": 25, "min_cluster_size": 40}, (256, 256), (128, 128), {"min_samples": 6, "min_cluster_size": 10}),  # noqa: E501
        ({"min_cluster_size": 4, "min_samples": 20}, (256, 256), (64, 64), {"min_cluster_size": 2, "min_samples": 5}),  # noqa: E501
        ({"min_cluster_size": None}, (128, 128), (256, 256), {"min_cluster_size": None}),
    ],
)  # fmt: skip
def test_clustering_for_canvas_scales_with_the_canvas(options, size, canvas, expected):
    from cosinetrack.clustering.transforms import clustering_for_canvas

    assert clustering_for_canvas(options, size, canvas) == pytest.approx(expected)


def test_clustering_for_canvas_refuses_unknown_options():
    from cosinetrack.clustering.transforms import clustering_for_canvas
    from cosinetrack.errors import CosineTrackConfigError

    with pytest.raises(CosineTrackConfigError, match="min_sample"):
        clustering_for_canvas({"min_sample": 5}, (256, 256), (128, 128))
