"""Full-resolution tiled inference: a pair segmenter that never rescales the frame.

The paper scales every frame to fit the network input (:class:`~cosinetrack.inference.ScaledPairSegmenter`),
which costs the small cells of large images (Fluo-HeLa, Fluo-SIM+) their detail; it names tiling as
the fix, and the journal version (MedIA'19) tiles 256² windows with stride 128.
:class:`TiledPairSegmenter` does that, with the same interface as the scaled segmenter
(``push(frame) -> (2, H, W) | None``, ``reset()``, ``timings``, ``last_embedding``, ``cluster_kwargs``).

**Grid.** A frame ``(H, W)`` is covered by a fixed grid of tiles of ``tile_size = (h, w)`` (see
:func:`tile_grid`). Per axis the tiles start every ``h - overlap`` pixels and the last row (column)
is aligned to the image border, so consecutive tiles overlap by ``overlap`` pixels, the last pair by
at least that. An axis shorter than the tile is padded (reflection, split evenly between both sides)
to the tile size, and the padding is cropped from the labels. The grid is computed from the first
frame and fixed for the whole video (a frame of another size raises; ``reset()`` starts a new video).

**Overlap.** Default ``tile_size // 4`` per axis (64 px for 256² tiles). Every pixel that a tile
writes is then at least ``overlap / 2`` pixels away from that tile's border (except at the image
border), so its embedding was computed with some context on all sides. The journal version's
``tile_size // 2`` (MedIA'19: 256² tiles, stride 128) needs about twice as many tiles: on a 1024²
GOWT1 frame 49 tiles instead of 25, 24.6 x the downscaled frame's CPU time instead of 11.6 x, and it
scored no better there (``docs/benchmarks_cell_inference.md``, issue 9 goal 2); pass ``overlap`` to
get it.

**Per-tile state.** Each tile is a video of its own: it has its own ConvGRU state, carried from frame
to frame. The tiles of a frame go through ``network.step`` in batches of ``batch_size`` tiles (default:
as many as fit in :data:`TILE_BATCH_PIXELS`, one 256² tile), each batch with its own slice of the
state; per frame the cost is ``num_tiles`` tile steps. Between frames only each tile's GRU state and
its last embedding are kept (in ``storage_dtype``, in memory or on disk, see ``storage``); a tile's
pair is clustered and stitched as soon as its batch has run, so no full-frame float buffer of ``D``
channels and no list of all tiles' labels is ever held (issue 11: memory bounded by the tile, apart
from the per-tile data, which :meth:`TiledPairSegmenter.kept_bytes` reports, and int32 label arrays of
the frame).

**Clustering grid.** ``cluster_stride = s > 1`` clusters each tile pair on ``s x s`` average-pooled
embeddings and repeats the labels back to native pixels: ``s**2`` fewer points per tile and ``s**2``
less memory for the kept embeddings; with ``s`` the factor by which the scaled path shrinks the frame,
``m_pts`` and ``c`` are those of the scaled path.

**Stitching.** Embedding directions are arbitrary per tile (the loss only asks neighboring instances
to be orthogonal within a window), so embeddings are never blended across tiles. Each tile's pair
``(2, D, h, w)`` is clustered alone (:func:`~cosinetrack.clustering.cluster_embeddings` with
``cluster_kwargs``; coordinates and ``t_size`` are native pixels), and the per-tile labels are
stitched by :func:`stitch_tile_labels`:

* Tiles are visited in raster order (:class:`TileStitcher` adds them one at a time). Each tile
  *owns* its core: the pixels closer to its center than to any other tile's center (per axis,
  overlaps are split in the middle). Output pixels are written from the owning tile's core only, so
  each pixel comes from exactly one tile.
* A tile instance is compared with the instances already placed, restricted to the tile's *overlap
  region* (its pixels covered by earlier tiles, where the earlier tiles' full labels are kept), with
  both frames of the pair taken together. A pair (tile instance, placed instance) qualifies when its
  IoU there is ``>= min_iou`` (default 0.5) or the intersection covers ``>= min_overlap`` (default 0.8)
  of the smaller of the two there. Qualifying pairs are taken greedily by decreasing IoU (then overlap
  fraction), one to one: the tile instance takes the placed instance's id. Unmatched tile instances
  get new ids. An instance that crosses core boundaries thus keeps one id, and two instances of a tile
  never get the same id.
* Restricting to the overlap region makes the comparison insensitive to an instance being cut by a
  tile border. Taking both frames together gives one decision per instance of the pair, so ids stay
  consistent between the two frames (the tracker relies on that). Finally the ids are relabeled
  ``1..K`` in order of first appearance (raster order over ``t, y, x``).

**Training.** The network must have been trained at native resolution: random crops of ``tile_size``
(or similar) of unscaled frames, not scale-to-fit (the cell bundle's ``resolution: "tiled"`` mode
trains that way). A network trained on scaled-to-fit images sees objects of the wrong size here.

Limitations: a tile lying entirely inside one instance shows no background, and the ``"dominant"``
background rule of the clustering then removes that instance in that tile (pick ``tile_size`` larger
than the objects). ``timings["clustering"]`` counts the per-tile clustering and the stitching.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cosinetrack.clustering.embedding_clustering import cluster_embeddings, relabel_consecutive
from cosinetrack.clustering.options import check_cluster_kwargs
from cosinetrack.inference.amp import Amp
from cosinetrack.inference.segmenter import PairSegmenter
from cosinetrack.inference.stepping import State, cast_state, concat_states, state_nbytes
from cosinetrack.networks.ensemble import embedding_views
from cosinetrack.tracking.matching import instance_overlaps

__all__ = [
    "TILE_BATCH_PIXELS",
    "TILE_STORAGE",
    "TileGrid",
    "TileStitcher",
    "TiledPairSegmenter",
    "stitch_tile_labels",
    "tile_grid",
    "tile_positions",
]


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    vals = tuple(int(v) for v in value)
    if len(vals) != 2:
        raise ValueError(f"{name}: expected an int or (h, w), got {value!r}")
    return vals  # type: ignore[return-value]


def tile_positions(length: int, tile: int, overlap: int) -> tuple[int, ...]:
    """Start positions of the tiles along one axis of ``length`` pixels.

    Tiles start every ``tile - overlap`` pixels and the last one ends at ``length`` (aligned to the
    border), so consecutive tiles overlap by ``overlap`` pixels, the last two by at least that. An axis
    not longer than ``tile`` has one tile at 0 (the caller pads the axis to ``tile``).
    """
    length, tile, overlap = int(length), int(tile), int(overlap)
    if tile < 1 or length < 1:
        raise ValueError(f"tile_positions: length and tile must be >= 1, got {length} and {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"tile_positions: overlap must be in [0, {tile}), got {overlap}")
    if length <= tile:
        return (0,)
    stride = tile - overlap
    n = math.ceil((length - tile) / stride) + 1
    return tuple(min(i * stride, length - tile) for i in range(n))


def _core_bounds(positions: Sequence[int], tile: int, length: int) -> tuple[tuple[int, int], ...]:
    """``(start, stop)`` of each tile's core along one axis: overlaps split in the middle."""
    cuts = [0] + [(a + tile + b) // 2 for a, b in zip(positions[:-1], positions[1:])] + [length]
    return tuple((cuts[i], cuts[i + 1]) for i in range(len(positions)))


@dataclass(frozen=True)
class TileGrid:
    """A fixed grid of overlapping tiles over an image (all coordinates on the padded image).

    Attributes:
        image_size: the frame ``(H, W)``.
        tile_size: ``(h, w)``.
        overlap: requested overlap ``(oy, ox)`` of consecutive tiles (the last pair may overlap more).
        padded_size: ``(max(H, h), max(W, w))``.
        pad: ``(top, bottom, left, right)`` reflection padding of the frame (non-zero only for an axis
            shorter than the tile).
        rows, cols: tile start positions per axis.
        row_cores, col_cores: ``(start, stop)`` of each row's / column's core.
    """

    image_size: tuple[int, int]
    tile_size: tuple[int, int]
    overlap: tuple[int, int]
    padded_size: tuple[int, int]
    pad: tuple[int, int, int, int]
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    row_cores: tuple[tuple[int, int], ...]
    col_cores: tuple[tuple[int, int], ...]

    @property
    def num_tiles(self) -> int:
        return len(self.rows) * len(self.cols)

    @property
    def origins(self) -> list[tuple[int, int]]:
        """``(y, x)`` of each tile's top-left corner, raster order (the tile order everywhere)."""
        return [(y, x) for y in self.rows for x in self.cols]

    @property
    def windows(self) -> list[tuple[slice, slice]]:
        """Each tile's pixels on the padded image, raster order."""
        h, w = self.tile_size
        return [(slice(y, y + h), slice(x, x + w)) for y, x in self.origins]

    @property
    def cores(self) -> list[tuple[slice, slice]]:
        """Each tile's core on the padded image, raster order; the cores partition the padded image."""
        return [(slice(*ry), slice(*rx)) for ry in self.row_cores for rx in self.col_cores]

    @property
    def image_window(self) -> tuple[slice, slice]:
        """Where the frame lies in the padded image (crops the padding off)."""
        top, _, left, _ = self.pad
        return slice(top, top + self.image_size[0]), slice(left, left + self.image_size[1])


def tile_grid(
    image_size: Sequence[int], tile_size: int | Sequence[int], overlap: int | Sequence[int] | None = None
) -> TileGrid:
    """The tile grid of an ``image_size`` frame; ``overlap`` defaults to ``tile_size // 4`` per axis."""
    hh, ww = _pair(image_size, "image_size")
    th, tw = _pair(tile_size, "tile_size")
    if min(hh, ww, th, tw) < 1:
        raise ValueError(f"tile_grid: image and tile sizes must be >= 1, got {(hh, ww)} and {(th, tw)}")
    oy, ox = (th // 4, tw // 4) if overlap is None else _pair(overlap, "overlap")
    if not (0 <= oy < th and 0 <= ox < tw):
        raise ValueError(f"tile_grid: overlap must be in [0, tile_size) per axis, got {(oy, ox)} for tile {(th, tw)}")
    hp, wp = max(hh, th), max(ww, tw)
    top, left = (hp - hh) // 2, (wp - ww) // 2
    rows, cols = tile_positions(hp, th, oy), tile_positions(wp, tw, ox)
    return TileGrid(
        image_size=(hh, ww),
        tile_size=(th, tw),
        overlap=(oy, ox),
        padded_size=(hp, wp),
        pad=(top, hp - hh - top, left, wp - ww - left),
        rows=rows,
        cols=cols,
        row_cores=_core_bounds(rows, th, hp),
        col_cores=_core_bounds(cols, tw, wp),
    )


# ----------------------------------------------------------------------------------------------------
# stitching


def _core_in_tile(window: tuple[slice, slice], core: tuple[slice, slice]) -> tuple[slice, slice]:
    """The core of a tile in the tile's own coordinates."""
    y0, x0 = window[0].start, window[1].start
    return slice(core[0].start - y0, core[0].stop - y0), slice(core[1].start - x0, core[1].stop - x0)


def _match_in_overlap(
    tile_labels: np.ndarray, placed: np.ndarray, min_iou: float, min_overlap: float | None
) -> dict[int, int]:
    """``{tile id: placed id}``: greedy one-to-one matching of the overlap-region pixels (1-D arrays)."""
    ids_a, ids_b, inter, sa, sb = instance_overlaps(tile_labels, placed)
    if not inter.size:
        return {}
    iou = inter / (sa + sb - inter)
    frac = inter / np.minimum(sa, sb)
    ok = iou >= min_iou
    if min_overlap is not None:
        ok |= frac >= min_overlap
    order = np.lexsort((ids_a, ids_b, -frac, -iou))
    matched: dict[int, int] = {}
    taken: set[int] = set()
    for k in order:
        if not ok[k]:
            continue
        i, g = int(ids_a[k]), int(ids_b[k])
        if i in matched or g in taken:
            continue
        matched[i] = g
        taken.add(g)
    return matched


class TileStitcher:
    """Incremental :func:`stitch_tile_labels`: tiles are added one at a time in grid order.

    Holds only full-frame integer arrays of the frame's size (int32 output and evidence ``(T, Hp, Wp)``
    and a bool coverage mask ``(Hp, Wp)``), never the labels of all tiles at once, so tiled inference
    can cluster a tile and forget it.

    Args:
        grid: the :class:`TileGrid` the tiles were cut with.
        num_frames: ``T``, frames per tile label array (``2`` for a pair).
        min_iou, min_overlap: see :func:`stitch_tile_labels`.
    """

    def __init__(
        self, grid: TileGrid, num_frames: int = 1, min_iou: float = 0.5, min_overlap: float | None = 0.8
    ) -> None:
        if not 0.0 < float(min_iou) <= 1.0:
            raise ValueError(f"min_iou: must be in (0, 1], got {min_iou}")
        if min_overlap is not None and not 0.0 < float(min_overlap) <= 1.0:
            raise ValueError(f"min_overlap: must be in (0, 1] or None, got {min_overlap}")
        if int(num_frames) < 1:
            raise ValueError(f"num_frames: must be >= 1, got {num_frames}")
        self.grid = grid
        self.num_frames = int(num_frames)
        self.min_iou = float(min_iou)
        self.min_overlap = None if min_overlap is None else float(min_overlap)
        hp, wp = grid.padded_size
        self.out = np.zeros((self.num_frames, hp, wp), dtype=np.int32)
        self.evidence = np.zeros((self.num_frames, hp, wp), dtype=np.int32)  # full labels of placed tiles
        self.covered = np.zeros((hp, wp), dtype=bool)
        self.next_tile = 0
        self.next_id = 1

    def add(self, labels: np.ndarray) -> None:
        """Place the next tile's ``(T, h, w)`` integer labels (``0`` = background, ids local to the tile)."""
        grid, k = self.grid, self.next_tile
        if k >= grid.num_tiles:
            raise ValueError(f"TileStitcher: all {grid.num_tiles} tiles were already added")
        lab = np.asarray(labels)
        if lab.shape != (self.num_frames, *grid.tile_size):
            raise ValueError(
                f"stitch_tile_labels: tile {k} has shape {lab.shape}, expected {(self.num_frames, *grid.tile_size)}"
            )
        window, core = grid.windows[k], grid.cores[k]
        seen = self.covered[window]
        mapping = {}
        if seen.any():
            placed = self.evidence[(slice(None), *window)][:, seen]
            mapping = _match_in_overlap(lab[:, seen], placed, self.min_iou, self.min_overlap)
        lut = np.zeros(int(lab.max(initial=0)) + 1, dtype=np.int32)
        for i in np.unique(lab[lab > 0]):
            i = int(i)
            if i in mapping:
                lut[i] = mapping[i]
            else:
                lut[i] = self.next_id
                self.next_id += 1
        glob = lut[np.maximum(lab, 0)]
        self.evidence[(slice(None), *window)] = glob
        self.covered[window] = True
        self.out[(slice(None), *core)] = glob[(slice(None), *_core_in_tile(window, core))]
        self.next_tile += 1

    def result(self) -> np.ndarray:
        """int32 ``(T, H, W)`` labels of the frame (padding cropped), ``1..K`` in order of first appearance."""
        if self.next_tile != self.grid.num_tiles:
            raise ValueError(f"stitch_tile_labels: expected {self.grid.num_tiles} tiles, got {self.next_tile}")
        self.evidence = self.covered = None  # type: ignore[assignment]  # free before the relabelling
        return relabel_consecutive(self.out[(slice(None), *self.grid.image_window)])


def stitch_tile_labels(
    tile_labels: Sequence[np.ndarray] | np.ndarray,
    grid: TileGrid,
    min_iou: float = 0.5,
    min_overlap: float | None = 0.8,
) -> np.ndarray:
    """Full-frame labels from per-tile labels whose ids are unrelated between tiles (module docstring).

    Args:
        tile_labels: per tile, in ``grid`` order, ``(T, h, w)`` (or ``(h, w)``) integer labels, ``0`` =
            background; ids need only be consistent within a tile (across its ``T`` frames).
        grid: the :class:`TileGrid` the tiles were cut with.
        min_iou: a tile instance and a placed instance qualify for matching with an IoU of at least
            this, both restricted to the tile's overlap with earlier tiles (all ``T`` frames together).
        min_overlap: ... or when their intersection covers at least this fraction of the smaller of the
            two (same restriction); ``None``: IoU only.

    Returns:
        int32 ``(T, H, W)`` (``(H, W)`` for ``(h, w)`` tiles) labels of the frame (padding cropped),
        ``1..K`` in order of first appearance; an instance has one id in all ``T`` frames.
    """
    if len(tile_labels) != grid.num_tiles:
        raise ValueError(f"stitch_tile_labels: expected {grid.num_tiles} tiles, got {len(tile_labels)}")
    first = np.asarray(tile_labels[0])
    single = first.ndim == 2
    stitcher = TileStitcher(grid, 1 if single else first.shape[0], min_iou, min_overlap)
    for lab in tile_labels:
        lab = np.asarray(lab)
        stitcher.add(lab[None] if single and lab.ndim == 2 else lab)
    out = stitcher.result()
    return out[0] if single else out


def _assemble_cores(tiles: torch.Tensor, grid: TileGrid) -> torch.Tensor:
    """A full-frame image ``(D, H, W)`` from per-tile ``(N, D, h, w)``: each pixel from its owning tile."""
    hp, wp = grid.padded_size
    out = tiles.new_zeros((tiles.shape[1], hp, wp))
    for k, (window, core) in enumerate(zip(grid.windows, grid.cores)):
        ly, lx = _core_in_tile(window, core)
        out[:, core[0], core[1]] = tiles[k, :, ly, lx]
    return out[:, grid.image_window[0], grid.image_window[1]]


def _pad_reflect(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflection padding of ``(N, C, H, W)`` by any amount (repeated reflections; replicate for size 1)."""
    while top or bottom or left or right:
        h, w = x.shape[-2:]
        step = (min(left, w - 1), min(right, w - 1), min(top, h - 1), min(bottom, h - 1))
        if not any(step):
            return F.pad(x, (left, right, top, bottom), mode="replicate")
        x = F.pad(x, step, mode="reflect")
        left, right, top, bottom = left - step[0], right - step[1], top - step[2], bottom - step[3]
    return x


# ----------------------------------------------------------------------------------------------------
# the pair segmenter


#: default pixel budget of one ``network.step`` call in :class:`TiledPairSegmenter` (``batch_size=None``):
#: as many tiles as fit in this many pixels, at least one (one tile of 256² or larger, four of 128²).
#: One 256² tile per step was also the cheapest per tile on CPU (cell model 5 x 16, one thread: 0.12 s
#: CPU per tile alone, 0.17 s in batches of 4 or 8), and the step's working memory grows with the batch
#: (about 90 MiB per 256² tile with 2 x 5 x 16 filters).
TILE_BATCH_PIXELS = 1 << 16

#: names accepted by ``storage=`` of :class:`TiledPairSegmenter`.
TILE_STORAGE = ("auto", "memory", "disk")
#: ``storage="auto"`` keeps the per-tile data in memory up to this many bytes, else on disk
TILE_MEMORY_BUDGET = 1 << 30

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _storage_dtype(value: str | torch.dtype) -> torch.dtype:
    if isinstance(value, torch.dtype) and value in _DTYPES.values():
        return value
    if isinstance(value, str) and value in _DTYPES:
        return _DTYPES[value]
    raise ValueError(f"storage_dtype: expected one of {tuple(_DTYPES)}, got {value!r}")


class TiledPairSegmenter(PairSegmenter):
    """Pair segmenter at full resolution: overlapping tiles, per-tile GRU state, instance stitching.

    Args:
        network: a :class:`~cosinetrack.networks.RecurrentStackedHourglass` in eval mode, trained on
            native-resolution crops (see the module docstring).
        tile_size: network input ``(h, w)`` (or one int); frames are cut into tiles of this size.
        cluster_kwargs: options of :func:`~cosinetrack.clustering.cluster_embeddings`, applied to every
            tile's pair; coordinates, ``min_samples`` and ``t_size`` are in pixels of the clustering grid
            (native pixels for ``cluster_stride=1``, ``cluster_stride`` native pixels otherwise).
        device: where the network runs.
        stack: which stack's output is clustered (the paper: the last).
        overlap: overlap of consecutive tiles in pixels, int or ``(oy, ox)``; ``None`` (default) =
            ``tile_size // 4`` (MedIA'19 used ``tile_size // 2``: stride 128 for 256² tiles).
        min_iou, min_overlap: the matching rule of :func:`stitch_tile_labels`.
        batch_size: tiles per ``network.step`` call; ``None`` (default): as many as fit in
            :data:`TILE_BATCH_PIXELS` pixels (at least one), so the network's working memory is bounded
            by the tile, not the frame. The result does not depend on it.
        amp: run the network under :func:`~cosinetrack.inference.autocast_context` (bfloat16 on
            CPU; ``"auto"``: where the CPU has native bfloat16, see
            :func:`~cosinetrack.inference.resolve_amp`); the embeddings handed to clustering are
            float32 either way.
        cluster_stride: ``s``: cluster every tile's pair on a grid ``s`` times coarser per axis (the
            embeddings average-pooled over ``s x s`` pixels, the labels repeated back to native
            pixels). ``1`` (default): native pixels, the exact behavior. ``s`` must divide the tile
            size. With ``s`` = the factor by which the scaled path shrinks the frame, a tile is
            clustered at the scaled path's pixel size (``s**2`` fewer points per tile).
        storage_dtype: dtype in which the per-tile GRU states and the previous frame's per-tile
            embeddings are kept between frames: ``"float32"`` (default, exact), ``"bfloat16"`` or
            ``"float16"`` (half the memory; the network computes in its own precision either way).
        storage: where the per-tile data kept between frames lives: ``"memory"``, ``"disk"`` (one file
            per batch of tiles in a private temporary folder, removed on :meth:`reset` and when the
            segmenter is garbage collected: then the memory of a frame is bounded by a batch of tiles
            plus the full-frame label arrays of the stitching), or ``"auto"`` (default): memory while
            all tiles' data fit in :data:`TILE_MEMORY_BUDGET` (1 GiB), else disk, decided at a video's
            first frame from the size of its first batch.

    **Memory.** Per tile the segmenter keeps, between frames, its GRU state (``num_stacks x F x``
    ``sum_l (h / 2**l) (w / 2**l)`` values) and its last embedding (``D x h x w / s**2``), in
    ``storage_dtype``: :meth:`kept_bytes` gives the total. For the cell bundle's 2 x 5 x 16 network and
    512² tiles that is 44.7 MB (float32) + 16.8 MB / ``s**2`` per tile, so a 4096² frame with the default
    overlap (225 tiles) keeps 10 GB of GRU states in float32, 5 GB in bfloat16, hence ``storage="disk"``
    for such frames. Everything else is one batch of tiles (network, clustering) and the int32 label
    arrays of the frame (:class:`TileStitcher`).

    ``push(frame)`` takes a normalized frame ``(C, H, W)`` and returns ``None`` for the first frame,
    then the labels ``(2, H, W)`` int32 of the pair (previous frame, this frame) at full resolution,
    0 = background. Tiles are processed one batch at a time: network step, then each tile's pair is
    clustered and handed to the stitcher, then the batch's new state and embeddings are stored.
    ``last_embedding`` is the last frame's embedding ``(D, H, W)`` assembled from the tiles' cores
    (built on access, for figures only: directions are arbitrary per tile, so it jumps at core borders;
    with ``cluster_stride > 1`` it is the pooled embedding repeated back to native pixels). ``grid`` is
    the :class:`TileGrid` of the current video (``None`` before its first frame); ``state`` and
    ``previous`` gather the batched GRU state and per-tile embeddings ``(N, D, h / s, w / s)`` of its
    ``grid.num_tiles`` tiles (for inspection; with ``storage="disk"`` they are read from disk).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        tile_size: int | Sequence[int],
        cluster_kwargs: Mapping[str, Any],
        device: str | torch.device = "cpu",
        stack: int = -1,
        overlap: int | Sequence[int] | None = None,
        min_iou: float = 0.5,
        min_overlap: float | None = 0.8,
        batch_size: int | None = None,
        amp: Amp = False,
        cluster_stride: int = 1,
        storage_dtype: str | torch.dtype = "float32",
        storage: str = "auto",
    ) -> None:
        super().__init__(network, cluster_kwargs, device=device, stack=stack, amp=amp)
        if embedding_views(network) > 1:  # an ensemble whose members vote on the background
            self.cluster_kwargs = check_cluster_kwargs({**self.cluster_kwargs, "views": embedding_views(network)})
        self.tile_size = _pair(tile_size, "tile_size")
        self.overlap = None if overlap is None else _pair(overlap, "overlap")
        tile_grid(self.tile_size, self.tile_size, self.overlap)  # validates sizes and overlap
        if not 0.0 < float(min_iou) <= 1.0:
            raise ValueError(f"min_iou: must be in (0, 1], got {min_iou}")
        if min_overlap is not None and not 0.0 < float(min_overlap) <= 1.0:
            raise ValueError(f"min_overlap: must be in (0, 1] or None, got {min_overlap}")
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size: must be >= 1 or None, got {batch_size}")
        if isinstance(cluster_stride, bool) or not isinstance(cluster_stride, (int, np.integer)) or cluster_stride < 1:
            raise ValueError(f"cluster_stride: must be an integer >= 1, got {cluster_stride!r}")
        if any(n % int(cluster_stride) for n in self.tile_size):
            raise ValueError(f"cluster_stride: {cluster_stride} does not divide the tile size {self.tile_size}")
        if storage not in TILE_STORAGE:
            raise ValueError(f"storage: expected one of {TILE_STORAGE}, got {storage!r}")
        self.min_iou = float(min_iou)
        self.min_overlap = None if min_overlap is None else float(min_overlap)
        h, w = self.tile_size
        self.batch_size = max(1, TILE_BATCH_PIXELS // (h * w)) if batch_size is None else int(batch_size)
        self.cluster_stride = int(cluster_stride)
        self.storage_dtype = _storage_dtype(storage_dtype)
        self.storage = storage
        self._where: str | None = None if storage == "auto" else storage  # "memory" / "disk" once known
        self._dir: str | None = None
        self._finalizer: weakref.finalize | None = None
        self.reset()

    # -- per-batch storage of the data kept between frames ---------------------------------------------

    def reset(self) -> None:
        """Forget the video: zero GRU states, no grid, no previous frame (removes the disk storage)."""
        self.grid: TileGrid | None = None
        self._records: list[dict[str, Any] | None] = []  # per batch: {"state", "embedding"} (memory storage)
        self._has_state = False
        self._has_previous = False
        self._mosaic: torch.Tensor | None = None
        if self._finalizer is not None:
            self._finalizer()
        self._dir, self._finalizer = None, None
        self._where = None if self.storage == "auto" else self.storage

    def _batches(self) -> list[tuple[int, int]]:
        n = self.grid.num_tiles
        return [(i, min(i + self.batch_size, n)) for i in range(0, n, self.batch_size)]

    def _load(self, b: int) -> dict[str, Any] | None:
        if self._where != "disk":
            return self._records[b] if b < len(self._records) else None
        path = os.path.join(self._dir, f"batch{b:05d}.pt") if self._dir else None
        if path is None or not os.path.exists(path):
            return None
        return torch.load(path, map_location="cpu", weights_only=True)

    def _save(self, b: int, record: dict[str, Any]) -> None:
        if self._where is None:  # "auto": the first batch tells how much all tiles will keep
            per_batch = state_nbytes(record.get("state"))
            per_batch += record["embedding"].numel() * record["embedding"].element_size()
            self._where = "disk" if per_batch * len(self._batches()) > TILE_MEMORY_BUDGET else "memory"
        if self._where == "memory":
            while len(self._records) <= b:
                self._records.append(None)
            self._records[b] = record
            return
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="cosinetrack-tiles-")
            self._finalizer = weakref.finalize(self, shutil.rmtree, self._dir, True)
        torch.save(record, os.path.join(self._dir, f"batch{b:05d}.pt"))

    def _gather(self, key: str) -> list[Any]:
        if self.grid is None:
            return []
        return [rec[key] for b in range(len(self._batches())) if (rec := self._load(b)) is not None]

    @property
    def state(self) -> State | None:
        """The GRU state of all tiles, batched ``(N, F, h / 2**l, w / 2**l)`` per stack and level, or ``None``."""
        if not self._has_state:
            return None
        return concat_states(self._gather("state"))

    @property
    def previous(self) -> torch.Tensor | None:
        """The last frame's per-tile embeddings ``(N, D, h / s, w / s)`` in ``storage_dtype``, or ``None``."""
        if not self._has_previous:
            return None
        return torch.cat(self._gather("embedding"))

    def kept_bytes(self) -> dict[str, int]:
        """Bytes of the per-tile data kept between frames: ``{"state", "embedding"}`` (all tiles; with
        ``storage="disk"`` read back one batch at a time)."""
        out = {"state": 0, "embedding": 0}
        for b in range(len(self._batches()) if self.grid is not None else 0):
            record = self._load(b)
            if record is None:
                continue
            out["state"] += state_nbytes(record.get("state"))
            out["embedding"] += record["embedding"].numel() * record["embedding"].element_size()
        return out

    @property
    def last_embedding(self) -> torch.Tensor | None:
        """The last frame's embedding ``(D, H, W)`` assembled from the tile cores (built on first access)."""
        if not self._has_previous or self.grid is None:
            return None
        if self._mosaic is None:
            s = self.cluster_stride
            emb = self.previous.float()
            if s > 1:
                emb = emb.repeat_interleave(s, dim=-2).repeat_interleave(s, dim=-1)
            self._mosaic = _assemble_cores(emb, self.grid)
        return self._mosaic

    # -- tiles and network ---------------------------------------------------------------------------

    def _grid_for(self, frame: torch.Tensor) -> TileGrid:
        if frame.ndim != 3:
            raise ValueError(f"TiledPairSegmenter: expected a frame (C, H, W), got shape {tuple(frame.shape)}")
        size = tuple(int(s) for s in frame.shape[-2:])
        if self.grid is None:
            self.grid = tile_grid(size, self.tile_size, self.overlap)
        elif size != self.grid.image_size:
            raise ValueError(
                f"TiledPairSegmenter: frame size {size} differs from the video's {self.grid.image_size}; "
                "the tile grid is fixed per video (call reset() for a new video)"
            )
        return self.grid

    def _padded(self, frame: torch.Tensor) -> torch.Tensor:
        grid = self._grid_for(frame)
        return _pad_reflect(frame[None].to(self.device).float(), *grid.pad)

    def tiles(self, frame: torch.Tensor) -> torch.Tensor:
        """The tiles ``(N, C, h, w)`` of a frame ``(C, H, W)`` on ``device``, in grid order."""
        x = self._padded(frame)
        return torch.cat([x[:, :, wy, wx] for wy, wx in self.grid.windows])

    def _embed_chunk(self, tiles: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State | None]:
        """One network step of a batch of tiles ``(B, C, h, w)``: embeddings ``(B, D, h, w)`` (CPU float32)
        and the new state (:meth:`step_batch`; one seam per batch of tiles, replaced in tests)."""
        return self.step_batch(tiles, state)

    def _run(self, frame: torch.Tensor, pair: bool, keep: bool) -> tuple[np.ndarray | None, torch.Tensor | None]:
        """Step every tile batch; with ``pair`` cluster each tile's (previous, this) pair and stitch them.

        Returns the stitched ``(2, H, W)`` labels (``None`` without ``pair``) and, with ``keep``, the
        per-tile embeddings ``(N, D, h, w)`` of this frame.
        """
        x = self._padded(frame)
        grid = self.grid
        stitcher = TileStitcher(grid, 2, self.min_iou, self.min_overlap) if pair else None
        windows = grid.windows
        kept = []
        s = self.cluster_stride
        for b, (i, j) in enumerate(self._batches()):
            t0 = time.perf_counter()
            record = self._load(b)
            tiles = torch.cat([x[:, :, wy, wx] for wy, wx in windows[i:j]])
            emb, new_state = self._embed_chunk(tiles, None if record is None else record.get("state"))
            if emb.ndim != 4 or emb.shape[0] != j - i or tuple(emb.shape[-2:]) != grid.tile_size:
                raise ValueError(
                    f"TiledPairSegmenter: tile embeddings must be ({j - i}, D, {grid.tile_size[0]}, "
                    f"{grid.tile_size[1]}), got {tuple(emb.shape)}"
                )
            if keep:
                kept.append(emb)
            coarse = F.avg_pool2d(emb, s) if s > 1 else emb
            self.timings["network"] += time.perf_counter() - t0
            if stitcher is not None:
                t0 = time.perf_counter()
                previous = record["embedding"].float()
                for k in range(j - i):
                    labels = cluster_embeddings(torch.stack([previous[k], coarse[k]]), **self.cluster_kwargs)
                    if s > 1:
                        labels = labels.repeat(s, axis=-2).repeat(s, axis=-1)
                    stitcher.add(labels)
                self.timings["clustering"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            state = cast_state(new_state, self.storage_dtype)
            self._save(b, {"state": state, "embedding": coarse.to(self.storage_dtype).contiguous()})
            self.timings["network"] += time.perf_counter() - t0
            self._has_state = state is not None
        self._has_previous, self._mosaic = True, None
        out = None
        if stitcher is not None:
            t0 = time.perf_counter()
            out = stitcher.result()
            self.timings["clustering"] += time.perf_counter() - t0
        return out, (torch.cat(kept) if keep else None)

    def embed(self, frame: torch.Tensor) -> torch.Tensor:
        """Per-tile embeddings ``(N, D, h, w)`` (float32) of one frame ``(C, H, W)``; advances the states
        (no clustering; holds all tiles' embeddings, so meant for small frames and tests)."""
        return self._run(frame, pair=False, keep=True)[1]

    def push(self, frame: torch.Tensor) -> np.ndarray | None:
        """The stitched labels ``(2, H, W)`` of the pair (previous frame, this frame), ``None`` for the first frame."""
        self._grid_for(frame)
        labels, _ = self._run(frame, pair=self._has_previous, keep=False)
        return labels

    def cluster_last_frame(self) -> np.ndarray | None:
        """Labels ``(H, W)`` int32 of the last pushed frame alone (per tile, stitched): for a one-frame video."""
        if not self._has_previous:
            return None
        t0 = time.perf_counter()
        s = self.cluster_stride
        stitcher = TileStitcher(self.grid, 1, self.min_iou, self.min_overlap)
        for b in range(len(self._batches())):
            for emb in self._load(b)["embedding"].float():
                labels = cluster_embeddings(emb[None], **self.cluster_kwargs)
                if s > 1:
                    labels = labels.repeat(s, axis=-2).repeat(s, axis=-1)
                stitcher.add(labels)
        out = stitcher.result()[0]
        self.timings["clustering"] += time.perf_counter() - t0
        return out
