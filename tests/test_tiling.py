"""Full-resolution tiled inference: tile grid, per-tile GRU state, instance stitching, end to end."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from skimage.draw import disk

from cosinetrack.clustering.embedding_clustering import mean_best_iou, synthetic_embeddings
from cosinetrack.inference.segmenter import ScaledPairSegmenter
from cosinetrack.inference.tiling import TiledPairSegmenter, TileStitcher, stitch_tile_labels, tile_grid, tile_positions
from cosinetrack.networks.stacked import RecurrentStackedHourglass

FAST = dict(min_samples=5, n_jobs=1)


pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_network(seed: int = 0) -> RecurrentStackedHourglass:
    torch.manual_seed(seed)
    return RecurrentStackedHourglass(1, 4, num_levels=2, num_filters=4).eval()


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """``a`` and ``b`` have the same instances up to renaming (0 stays background)."""
    if a.shape != b.shape or not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


# ----------------------------------------------------------------------------------------------------
# grid


@pytest.mark.parametrize(("length", "tile", "overlap"), [(100, 32, 16), (97, 32, 8), (64, 32, 16), (33, 32, 0)])
def test_tile_positions_cover_with_overlap(length, tile, overlap):
    pos = tile_positions(length, tile, overlap)
    assert pos[0] == 0 and pos[-1] + tile == length  # last tile aligned to the border
    gaps = np.diff(pos)
    assert (gaps > 0).all()
    overlaps = tile - gaps
    assert (overlaps[:-1] == overlap).all() and overlaps[-1] >= overlap
    covered = np.zeros(length, int)
    for p in pos:
        covered[p : p + tile] += 1
    assert covered.min() >= 1


def test_tile_grid_cores_partition_and_are_nearest_center():
    grid = tile_grid((70, 90), (32, 40), overlap=(8, 20))
    assert grid.padded_size == (70, 90) and grid.pad == (0, 0, 0, 0)
    assert grid.num_tiles == len(grid.rows) * len(grid.cols) == len(grid.windows) == len(grid.cores)
    window_count = np.zeros((70, 90), int)
    owner = np.full((70, 90), -1)
    for k, (win, core) in enumerate(zip(grid.windows, grid.cores)):
        window_count[win] += 1
        assert (owner[core] == -1).all()
        owner[core] = k
        # the core lies inside its window
        assert win[0].start <= core[0].start and core[0].stop <= win[0].stop
        assert win[1].start <= core[1].start and core[1].stop <= win[1].stop
    assert window_count.min() >= 1 and (owner >= 0).all()  # cores partition the image
    # each pixel is owned by a tile whose center is (one of) the nearest
    centers = np.array([(y + 16, x + 20) for y, x in grid.origins], float)
    yy, xx = np.mgrid[:70, :90] + 0.5
    d2 = (yy[..., None] - centers[:, 0]) ** 2 + (xx[..., None] - centers[:, 1]) ** 2
    own_d2 = np.take_along_axis(d2, owner[..., None], axis=-1)[..., 0]
    assert np.all(own_d2 <= d2.min(axis=-1) + 1e-9)
    # requested overlap between neighbors, in both axes
    assert np.diff(grid.rows).tolist()[:-1] == [24] * (len(grid.rows) - 2)
    assert np.diff(grid.cols).tolist()[:-1] == [20] * (len(grid.cols) - 2)


def test_tile_grid_default_overlap_and_small_image():
    grid = tile_grid((100, 100), 32)
    assert grid.overlap == (8, 8)  # default: tile // 4
    small = tile_grid((10, 45), (16, 16), overlap=4)
    assert small.padded_size == (16, 45) and small.rows == (0,)
    top, bottom, left, right = small.pad
    assert (top, bottom, left, right) == (3, 3, 0, 0)
    assert small.image_window == (slice(3, 13), slice(0, 45))
    tiny = tile_grid((5, 7), (16, 16))
    assert tiny.num_tiles == 1 and tiny.padded_size == (16, 16)
    with pytest.raises(ValueError, match="overlap"):
        tile_grid((64, 64), 16, overlap=16)


def test_small_frame_is_padded_and_cropped():
    seg = TiledPairSegmenter(tiny_network(), (16, 16), FAST)
    frame = torch.randn(1, 5, 7)  # much smaller than the tile: repeated reflections
    tiles = seg.tiles(frame)
    assert tiles.shape == (1, 1, 16, 16)
    top, _, left, _ = seg.grid.pad
    assert torch.equal(tiles[0, 0, top : top + 5, left : left + 7], frame[0])
    assert seg.push(frame) is None
    labels = seg.push(torch.randn(1, 5, 7))
    assert labels.shape == (2, 5, 7) and labels.dtype == np.int32


# ----------------------------------------------------------------------------------------------------
# stitching on hand-made per-tile labels


def tiles_of(full: np.ndarray, grid, seed: int = 0) -> list[np.ndarray]:
    """Crop ``(T, H, W)`` labels into the grid's tiles, with ids shuffled independently per tile."""
    rng = np.random.default_rng(seed)
    out = []
    for wy, wx in grid.windows:
        crop = full[:, wy, wx]
        perm = np.concatenate([[0], rng.permutation(np.arange(1, full.max() + 1)) + 100])
        out.append(perm[crop])
    return out


def test_stitch_instance_spanning_tiles_gets_one_id():
    grid = tile_grid((24, 40), (24, 24), overlap=8)  # two tiles side by side, overlap x in [16, 24)
    assert grid.cols == (0, 16)
    full = np.zeros((1, 24, 40), int)
    full[0, 6:14, 5:35] = 1  # a long instance across both tiles and the core boundary at x = 20
    out = stitch_tile_labels(tiles_of(full, grid), grid)
    assert np.array_equal(out, full)


def test_stitch_keeps_distinct_instances_in_overlap_distinct():
    grid = tile_grid((24, 40), (24, 24), overlap=8)
    full = np.zeros((2, 24, 40), int)
    full[:, 2:10, 14:26] = 1  # two instances inside the overlap, crossing the core boundary
    full[:, 12:20, 15:25] = 2
    full[:, 2:8, 2:6] = 3  # one only in the first tile's core
    full[1, 2:8, 34:38] = 4  # one only in the second tile, only in frame 1
    out = stitch_tile_labels(tiles_of(full, grid), grid)
    assert out.shape == (2, 24, 40) and out.dtype == np.int32
    assert same_partition(out, full)  # same instances, one id each in both frames of the pair


def test_stitch_pair_consistency_and_grid_of_tiles():
    grid = tile_grid((50, 60), (24, 24), overlap=12)
    assert grid.num_tiles > 6
    full = np.zeros((2, 50, 60), int)
    centers = [(10, 10), (12, 32), (25, 25), (38, 48), (40, 12), (24, 50)]
    for i, (cy, cx) in enumerate(centers, start=1):
        for t in range(2):
            rr, cc = disk((cy + 2 * t, cx + t), 6, shape=(50, 60))
            full[t, rr, cc] = i
    out = stitch_tile_labels(tiles_of(full, grid, seed=3), grid)
    assert same_partition(out, full)
    for i in range(1, len(centers) + 1):
        ids0, ids1 = np.unique(out[0][full[0] == i]), np.unique(out[1][full[1] == i])
        assert ids0.size == 1 and np.array_equal(ids0, ids1)


def test_stitch_does_not_merge_when_a_tile_splits_an_instance():
    grid = tile_grid((24, 40), (24, 24), overlap=8)
    full = np.zeros((1, 24, 40), int)
    full[0, 4:20, 10:30] = 1
    left, right = tiles_of(full, grid)
    right = right.copy()
    right[0, 14:, :] = np.where(right[0, 14:, :] > 0, 7, 0)  # the second tile sees two instances
    out = stitch_tile_labels([left, right], grid)
    # the larger upper part matches the first tile's instance (higher IoU); the lower part also covers
    # >= min_overlap of itself with it but the match is one to one, so it gets its own id
    assert len(np.unique(out[out > 0])) == 2
    assert np.unique(out[0, 4:14, 10:30]).tolist() == [1]
    assert np.unique(out[0, 14:20, 20:30]).tolist() == [2]


def test_stitch_one_tile_is_identity_and_crops_padding():
    grid = tile_grid((10, 12), (16, 16))
    lab = np.zeros((2, 16, 16), int)
    lab[:, 0:2, :] = 5  # only in the padding: cropped away
    lab[:, 5:9, 4:10] = 3
    out = stitch_tile_labels([lab], grid)
    assert out.shape == (2, 10, 12)
    assert np.unique(out).tolist() == [0, 1]


# ----------------------------------------------------------------------------------------------------
# the segmenter


def test_one_tile_equals_scaled_segmenter():
    """A tile-sized frame: one tile, no scaling, so the same GRU steps and the same labels as the paper's path."""
    net = tiny_network()
    kwargs = dict(min_samples=8, n_jobs=1)
    tiled = TiledPairSegmenter(net, (16, 20), kwargs)
    scaled = ScaledPairSegmenter(net, (16, 20), kwargs)
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(1, 16, 20, generator=gen)
    for t in range(4):
        frame = base + 0.2 * torch.randn(1, 16, 20, generator=gen)
        a, b = tiled.push(frame), scaled.push(frame)
        if t == 0:
            assert a is None and b is None
        else:
            assert a.dtype == np.int32 and np.array_equal(a, b)
        torch.testing.assert_close(tiled.last_embedding, scaled.last_embedding)


def test_each_tile_has_its_own_state():
    """Batched tiles give what each tile gives when streamed alone with its own state."""
    net = tiny_network()
    seg = TiledPairSegmenter(net, (16, 16), FAST, overlap=4)
    chunked = TiledPairSegmenter(net, (16, 16), FAST, overlap=4, batch_size=2)
    gen = torch.Generator().manual_seed(1)
    frames = [torch.randn(1, 30, 40, generator=gen) for _ in range(3)]
    grid = tile_grid((30, 40), (16, 16), overlap=4)
    alone_state = [None] * grid.num_tiles
    for frame in frames:
        emb = seg.embed(frame)
        torch.testing.assert_close(chunked.embed(frame), emb, atol=1e-5, rtol=1e-5)
        for k, (wy, wx) in enumerate(grid.windows):
            with torch.inference_mode():
                out, alone_state[k] = net.step(frame[None, :, wy, wx], alone_state[k])
            torch.testing.assert_close(emb[k], out[-1][0], atol=1e-5, rtol=1e-5)


def test_state_per_tile_does_not_grow():
    seg = TiledPairSegmenter(tiny_network(), (16, 16), FAST, overlap=8)
    gen = torch.Generator().manual_seed(2)
    shapes = None
    for _ in range(4):
        seg.push(torch.randn(1, 28, 36, generator=gen))
        n = seg.grid.num_tiles
        assert n == len(seg.grid.rows) * len(seg.grid.cols) > 1
        cur = [tuple(s.shape) for per_stack in seg.state for s in per_stack]
        assert all(s[0] == n for s in cur)  # one state per tile, batched
        assert shapes is None or cur == shapes  # same size every frame
        shapes = cur
        assert seg.previous.shape == (n, 4, 16, 16)  # only the last frame's per-tile embeddings
    assert seg.last_embedding.shape == (4, 28, 36)
    with pytest.raises(ValueError, match="fixed per video"):
        seg.push(torch.randn(1, 30, 36))
    seg.reset()
    assert seg.state is None and seg.grid is None and seg.last_embedding is None


def test_end_to_end_network_full_resolution():
    seg = TiledPairSegmenter(tiny_network(), (16, 16), FAST)
    gen = torch.Generator().manual_seed(3)
    results = [seg.push(torch.randn(1, 37, 45, generator=gen)) for _ in range(3)]
    assert results[0] is None
    for labels in results[1:]:
        assert isinstance(labels, np.ndarray) and labels.shape == (2, 37, 45) and labels.dtype == np.int32
        assert labels.min() >= 0
    assert seg.timings["network"] > 0 and seg.timings["clustering"] > 0
    assert seg.cluster_last_frame().shape == (37, 45)


def moving_discs(frames: int, size=(40, 56)) -> np.ndarray:
    lab = np.zeros((frames, *size), int)
    centers = [(8, 9), (9, 30), (20, 20), (28, 44), (31, 8), (14, 48), (32, 28)]
    for t in range(frames):
        for i, (cy, cx) in enumerate(centers, start=1):
            rr, cc = disk((cy + t, cx + t), 5, shape=size)
            lab[t, rr, cc] = i
    return lab


def test_synthetic_embeddings_per_tile_spaces_stitch_to_ground_truth():
    """Each tile has its own embedding space (random rotation per tile); the stitched pair labels still
    recover every instance with one id in both frames."""
    gt = moving_discs(3)
    seg = TiledPairSegmenter(tiny_network(), (24, 24), dict(min_samples=5, coordinate_scale=0.01, n_jobs=1), overlap=12)
    grid = tile_grid(gt.shape[1:], (24, 24), overlap=12)
    dim = 10
    rng = np.random.default_rng(0)
    base = np.eye(dim)[: gt.max() + 1]
    rotations = [np.linalg.qr(rng.normal(size=(dim, dim)))[0] for _ in range(grid.num_tiles)]
    calls = {"t": 0}

    def fake_embed_chunk(tiles, state):
        assert tiles.shape[0] == grid.num_tiles  # one batch of all tiles (small frame)
        t = calls["t"]
        calls["t"] += 1
        tiles = [
            synthetic_embeddings(gt[t][wy, wx], dim=dim, directions=base @ rot, smooth=0.0, noise=0.01, seed=t)
            for (wy, wx), rot in zip(grid.windows, rotations)
        ]
        return torch.from_numpy(np.stack(tiles)).float(), None

    seg._embed_chunk = fake_embed_chunk
    for t in range(3):
        labels = seg.push(torch.zeros(1, *gt.shape[1:]))
        if t:
            assert labels.shape == (2, *gt.shape[1:])
            assert mean_best_iou(labels, gt[t - 1 : t + 1]) > 0.95
            assert same_partition(labels, gt[t - 1 : t + 1])


# ----------------------------------------------------------------------------------------------------
# bounded memory: batches of tiles, compact or on-disk per-tile storage, coarse clustering grid


def _fake_synthetic_chunks(seg, gt, grid, dim=10, seed=0):
    """Replace the network by per-tile synthetic embeddings (own random rotation per tile) of ``gt[t]``."""
    rng = np.random.default_rng(seed)
    base = np.eye(dim)[: gt.max() + 1]
    rotations = [np.linalg.qr(rng.normal(size=(dim, dim)))[0] for _ in range(grid.num_tiles)]
    calls = {"tile": 0}
    windows = grid.windows

    def fake_embed_chunk(tiles, state):
        out = []
        for _ in range(tiles.shape[0]):
            t, k = divmod(calls["tile"], grid.num_tiles)
            calls["tile"] += 1
            wy, wx = windows[k]
            emb = synthetic_embeddings(gt[t][wy, wx], dim=dim, directions=base @ rotations[k], smooth=0.0, noise=0.01)
            out.append(emb)
        return torch.from_numpy(np.stack(out)).float(), None

    seg._embed_chunk = fake_embed_chunk


@pytest.mark.parametrize(
    ("options", "min_iou"),
    [
        (dict(batch_size=1, storage="disk"), 0.95),
        (dict(batch_size=3, storage_dtype="bfloat16"), 0.95),
        (dict(storage="disk", storage_dtype="float16"), 0.95),
        (dict(cluster_stride=2, storage="disk", storage_dtype="bfloat16"), 0.75),
    ],
)
def test_bounded_memory_options_recover_synthetic_instances(options, min_iou):
    """Batches, compact or on-disk storage and a coarser clustering grid still find every instance with
    one id in both frames of each pair."""
    gt = moving_discs(3)
    grid = tile_grid(gt.shape[1:], (24, 24), overlap=12)
    s = options.get("cluster_stride", 1)
    kwargs = dict(min_samples=max(5, 5 // s**2), coordinate_scale=0.01 * s, n_jobs=1)
    seg = TiledPairSegmenter(tiny_network(), (24, 24), kwargs, overlap=12, **options)
    _fake_synthetic_chunks(seg, gt, grid)
    for t in range(3):
        labels = seg.push(torch.zeros(1, *gt.shape[1:]))
        if t:
            pair = gt[t - 1 : t + 1]
            assert labels.shape == pair.shape and labels.dtype == np.int32
            assert mean_best_iou(labels, pair) > min_iou
            sizes = np.bincount(labels.ravel())[1:]
            # every disc found once (a coarse grid may leave slivers of a block or two at tile seams)
            assert (sizes >= 4 * s * s).sum() == pair.max() and (s > 1 or sizes.size == pair.max())
            for i in range(1, pair.max() + 1):  # one main id per disc, the same in both frames
                main = [np.bincount(labels[f][pair[f] == i]).argmax() for f in range(2)]
                assert main[0] > 0 and main[0] == main[1]
    if s == 1:
        assert same_partition(labels, gt[1:3])
    if options.get("storage") == "disk":
        folder = seg._dir
        assert folder is not None and len(os.listdir(folder)) == -(-grid.num_tiles // seg.batch_size)
        seg.reset()
        assert not os.path.exists(folder)


def test_storage_and_batching_do_not_change_the_result():
    """On a real (tiny) network: one tile per step on disk gives the labels and states of all tiles at once."""
    net = tiny_network()
    ref = TiledPairSegmenter(net, (16, 16), FAST, overlap=4, batch_size=100)
    disk = TiledPairSegmenter(net, (16, 16), FAST, overlap=4, batch_size=1, storage="disk")
    gen = torch.Generator().manual_seed(4)
    for _ in range(3):
        frame = torch.randn(1, 30, 40, generator=gen)
        a, b = ref.push(frame), disk.push(frame)
        assert (a is None and b is None) or np.array_equal(a, b)
    for sa, sb in zip(ref.state, disk.state):
        for x, y in zip(sa, sb):
            torch.testing.assert_close(x, y)
    torch.testing.assert_close(ref.last_embedding, disk.last_embedding)
    np.testing.assert_array_equal(ref.cluster_last_frame(), disk.cluster_last_frame())


def _arrays_held(obj, seen=None) -> list:
    """Every numpy array and torch tensor reachable from ``obj``'s attributes (not the network)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, torch.nn.Module):
        return []
    seen.add(id(obj))
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return [obj]
    if isinstance(obj, dict):
        return [a for v in obj.values() for a in _arrays_held(v, seen)]
    if isinstance(obj, (list, tuple)):
        return [a for v in obj for a in _arrays_held(v, seen)]
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        return [a for v in vars(obj).values() for a in _arrays_held(v, seen)]
    return []


@pytest.mark.parametrize("storage", ["memory", "disk"])
def test_frame_much_larger_than_tile_keeps_no_full_frame_float_buffers(storage):
    """A frame of 40 tiles: the network sees one batch of tiles at a time, and between frames the
    segmenter keeps only the per-tile state and (pooled) embeddings in the storage dtype (nothing on
    disk storage), never a full-frame float buffer of D channels."""
    net = tiny_network()
    size, tile = (64, 96), (16, 16)
    seg = TiledPairSegmenter(
        net, tile, FAST, overlap=4, batch_size=4, storage=storage, storage_dtype="bfloat16", cluster_stride=2
    )
    grid = tile_grid(size, tile, overlap=4)
    assert grid.num_tiles == 40
    batches = []
    step = seg._embed_chunk

    def spy(tiles, state):
        batches.append(tiles.shape[0])
        return step(tiles, state)

    seg._embed_chunk = spy
    gen = torch.Generator().manual_seed(5)
    for _ in range(3):
        labels = seg.push(torch.randn(1, *size, generator=gen))
    assert labels.shape == (2, *size) and labels.dtype == np.int32
    assert max(batches) <= 4 and sum(batches) == 3 * grid.num_tiles
    held = _arrays_held(seg)
    floats = [a for a in held if (a.dtype.is_floating_point if isinstance(a, torch.Tensor) else a.dtype.kind == "f")]
    if storage == "disk":
        assert floats == []  # everything per tile is on disk between frames
    else:
        # per tile: GRU states (2 stacks x 2 levels: 16² + 8², 4 filters), pooled embedding (4 x 8 x 8), bf16
        per_tile = 2 * 4 * (16 * 16 + 8 * 8) + 4 * 8 * 8
        assert all(a.dtype == torch.bfloat16 for a in floats)
        assert sum(a.numel() for a in floats) == grid.num_tiles * per_tile
        assert max(a.numel() for a in floats) <= 4 * 4 * 16 * 16  # one batch, never the frame
    kept = seg.kept_bytes()
    bf16 = 2  # bytes
    assert kept == {
        "state": grid.num_tiles * bf16 * 2 * 4 * (16 * 16 + 8 * 8),
        "embedding": grid.num_tiles * bf16 * 4 * 8 * 8,
    }


def test_tile_stitcher_arrays_are_int32_frame_sized():
    grid = tile_grid((70, 90), (32, 32), overlap=8)
    stitcher = TileStitcher(grid, 2)
    assert stitcher.out.dtype == stitcher.evidence.dtype == np.int32
    assert stitcher.out.shape == stitcher.evidence.shape == (2, 70, 90)
    with pytest.raises(ValueError, match="expected"):
        stitcher.result()  # no tile added yet


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (dict(cluster_stride=3), "divide"),
        (dict(cluster_stride=0), "cluster_stride"),
        (dict(storage="cloud"), "storage"),
        (dict(storage_dtype="int8"), "storage_dtype"),
    ],
)
def test_bad_tiling_options(options, match):
    with pytest.raises(ValueError, match=match):
        TiledPairSegmenter(tiny_network(), (16, 16), FAST, **options)
