"""Full-resolution tiled inference: a pair segmenter that never rescales the frame.

The paper scales every frame to fit the network input (:class:`~cosinetrack.engines.video.ScaledPairSegmenter`),
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

**Overlap.** Default ``tile_size // 2`` per axis (MedIA'19: 256² tiles, stride 128). Every pixel that
a tile writes is then at least ``overlap / 2`` pixels away from that tile's border (except at the
image border), so its embedding was computed with context on all sides. ``tile_size // 4`` needs
about half as many tiles (cheaper network and clustering) with less context at the seams.

**Per-tile state.** Each tile is a video of its own: it has its own ConvGRU state, carried from frame
to frame. All tiles of a frame go through one ``network.step`` call with a batch of ``num_tiles``
tiles (or chunks of ``batch_size`` tiles), so the state is batched as well; per frame the cost is
``num_tiles`` tile steps, and only the previous frame's per-tile embeddings are kept.

**Stitching.** Embedding directions are arbitrary per tile (the loss only asks neighbouring instances
to be orthogonal within a window), so embeddings are never blended across tiles. Each tile's pair
``(2, D, h, w)`` is clustered alone (:func:`~cosinetrack.clustering.cluster_embeddings` with
``cluster_kwargs``; coordinates and ``t_size`` are native pixels), and the per-tile labels are
stitched by :func:`stitch_tile_labels`:

* Tiles are visited in raster order. Each tile *owns* its core: the pixels closer to its centre than
  to any other tile's centre (per axis, overlaps are split in the middle). Output pixels are written
  from the owning tile's core only, so each pixel comes from exactly one tile.
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
  consistent between the two frames (the tracker relies on that). Finally the ids are relabelled
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
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cosinetrack.clustering import check_cluster_kwargs, cluster_embeddings, relabel_consecutive
from cosinetrack.engines.inferer import autocast_context, resolve_amp
from cosinetrack.tracking.matching import instance_overlaps

__all__ = ["TileGrid", "TiledPairSegmenter", "stitch_tile_labels", "tile_grid", "tile_positions"]


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
    """The tile grid of an ``image_size`` frame; ``overlap`` defaults to ``tile_size // 2`` per axis."""
    hh, ww = _pair(image_size, "image_size")
    th, tw = _pair(tile_size, "tile_size")
    if min(hh, ww, th, tw) < 1:
        raise ValueError(f"tile_grid: image and tile sizes must be >= 1, got {(hh, ww)} and {(th, tw)}")
    oy, ox = (th // 2, tw // 2) if overlap is None else _pair(overlap, "overlap")
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
    if not 0.0 < float(min_iou) <= 1.0:
        raise ValueError(f"min_iou: must be in (0, 1], got {min_iou}")
    if min_overlap is not None and not 0.0 < float(min_overlap) <= 1.0:
        raise ValueError(f"min_overlap: must be in (0, 1] or None, got {min_overlap}")
    first = np.asarray(tile_labels[0])
    single = first.ndim == 2
    t = 1 if single else first.shape[0]
    hp, wp = grid.padded_size
    out = np.zeros((t, hp, wp), dtype=np.int64)
    evidence = np.zeros((t, hp, wp), dtype=np.int64)  # full labels of the tiles placed so far
    covered = np.zeros((hp, wp), dtype=bool)
    next_id = 1
    for k, (window, core) in enumerate(zip(grid.windows, grid.cores)):
        lab = np.asarray(tile_labels[k]).astype(np.int64, copy=False)
        lab = lab[None] if single else lab
        if lab.shape != (t, *grid.tile_size):
            raise ValueError(f"stitch_tile_labels: tile {k} has shape {lab.shape}, expected {(t, *grid.tile_size)}")
        seen = covered[window]
        mapping = {}
        if seen.any():
            mapping = _match_in_overlap(lab[:, seen], evidence[(slice(None), *window)][:, seen], min_iou, min_overlap)
        lut = np.zeros(int(lab.max(initial=0)) + 1, dtype=np.int64)
        for i in np.unique(lab[lab > 0]):
            i = int(i)
            if i in mapping:
                lut[i] = mapping[i]
            else:
                lut[i] = next_id
                next_id += 1
        glob = lut[np.maximum(lab, 0)]
        evidence[(slice(None), *window)] = glob
        covered[window] = True
        out[(slice(None), *core)] = glob[(slice(None), *_core_in_tile(window, core))]
    out = relabel_consecutive(out[(slice(None), *grid.image_window)])
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


class TiledPairSegmenter:
    """Pair segmenter at full resolution: overlapping tiles, per-tile GRU state, instance stitching.

    Args:
        network: a :class:`~cosinetrack.networks.RecurrentStackedHourglass` in eval mode, trained on
            native-resolution crops (see the module docstring).
        tile_size: network input ``(h, w)`` (or one int); frames are cut into tiles of this size.
        cluster_kwargs: options of :func:`~cosinetrack.clustering.cluster_embeddings`, applied to every
            tile's pair; coordinates and ``t_size`` are in native pixels.
        device: where the network runs.
        stack: which stack's output is clustered (the paper: the last).
        overlap: overlap of consecutive tiles in pixels, int or ``(oy, ox)``; ``None`` (default) =
            ``tile_size // 2`` (MedIA'19: stride 128 for 256² tiles).
        min_iou, min_overlap: the matching rule of :func:`stitch_tile_labels`.
        batch_size: tiles per ``network.step`` call; ``None`` (default): all tiles of a frame at once.
        amp: run the network under :func:`~cosinetrack.engines.inferer.autocast_context` (bfloat16 on
            CPU; ``"auto"``: where the CPU has native bfloat16, see
            :func:`~cosinetrack.engines.inferer.resolve_amp`); the embeddings handed to clustering are
            float32 either way.

    ``push(frame)`` takes a normalised frame ``(C, H, W)`` and returns ``None`` for the first frame,
    then the labels ``(2, H, W)`` int32 of the pair (previous frame, this frame) at full resolution,
    0 = background. ``last_embedding`` is the last frame's embedding ``(D, H, W)`` assembled from the
    tiles' cores (for figures only: directions are arbitrary per tile, so it jumps at core borders).
    ``grid`` is the :class:`TileGrid` of the current video (``None`` before its first frame) and
    ``state`` the batched GRU state of its ``grid.num_tiles`` tiles.
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
        amp: bool | str | None = False,
    ) -> None:
        self.network = network
        resolve_amp(amp)  # validates
        self.amp = amp
        self.tile_size = _pair(tile_size, "tile_size")
        self.overlap = None if overlap is None else _pair(overlap, "overlap")
        tile_grid(self.tile_size, self.tile_size, self.overlap)  # validates sizes and overlap
        if not 0.0 < float(min_iou) <= 1.0:
            raise ValueError(f"min_iou: must be in (0, 1], got {min_iou}")
        if min_overlap is not None and not 0.0 < float(min_overlap) <= 1.0:
            raise ValueError(f"min_overlap: must be in (0, 1] or None, got {min_overlap}")
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size: must be >= 1 or None, got {batch_size}")
        self.min_iou = float(min_iou)
        self.min_overlap = None if min_overlap is None else float(min_overlap)
        self.batch_size = None if batch_size is None else int(batch_size)
        self.cluster_kwargs = check_cluster_kwargs(dict(cluster_kwargs))
        self.device = torch.device(device)
        self.stack = stack
        self.timings: dict[str, float] = {"network": 0.0, "clustering": 0.0}
        self.reset()

    def reset(self) -> None:
        """Forget the video: zero GRU states, no grid, no previous frame."""
        self.state = None
        self.grid: TileGrid | None = None
        self.previous: torch.Tensor | None = None  # (N, D, h, w) per-tile embeddings of the last frame
        self._mosaic: torch.Tensor | None = None

    @property
    def last_embedding(self) -> torch.Tensor | None:
        """The last frame's embedding ``(D, H, W)`` assembled from the tile cores (built on first access)."""
        if self.previous is None or self.grid is None:
            return None
        if self._mosaic is None:
            self._mosaic = _assemble_cores(self.previous, self.grid)
        return self._mosaic

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

    def tiles(self, frame: torch.Tensor) -> torch.Tensor:
        """The tiles ``(N, C, h, w)`` of a frame ``(C, H, W)`` on ``device``, in grid order."""
        grid = self._grid_for(frame)
        x = _pad_reflect(frame[None].to(self.device).float(), *grid.pad)
        return torch.cat([x[:, :, wy, wx] for wy, wx in grid.windows])

    @torch.inference_mode()
    def _embed_tiles(self, frame: torch.Tensor) -> torch.Tensor:
        """Per-tile embeddings ``(N, D, h, w)`` (CPU float32) of one frame; advances every tile's state."""
        tiles = self.tiles(frame)
        n = tiles.shape[0]
        chunk = n if self.batch_size is None else self.batch_size
        outs, states = [], []
        for i in range(0, n, chunk):
            state = None
            if self.state is not None:
                state = self.state if chunk >= n else [[s[i : i + chunk] for s in per] for per in self.state]
            with autocast_context(self.device, self.amp):
                out, new_state = self.network.step(tiles[i : i + chunk], state)
            out = out[self.stack] if isinstance(out, (tuple, list)) else out
            outs.append(out.float().cpu())
            states.append(new_state)
        if len(states) == 1:
            self.state = states[0]
        else:
            self.state = [
                [torch.cat([st[k][lvl] for st in states]) for lvl in range(len(states[0][k]))]
                for k in range(len(states[0]))
            ]
        return torch.cat(outs)

    def embed(self, frame: torch.Tensor) -> torch.Tensor:
        """Per-tile embeddings ``(N, D, h, w)`` of one frame ``(C, H, W)``; advances the states, times it."""
        self._grid_for(frame)
        t0 = time.perf_counter()
        emb = self._embed_tiles(frame)
        self.timings["network"] += time.perf_counter() - t0
        grid = self.grid
        if emb.ndim != 4 or emb.shape[0] != grid.num_tiles or tuple(emb.shape[-2:]) != grid.tile_size:
            raise ValueError(
                f"TiledPairSegmenter: tile embeddings must be ({grid.num_tiles}, D, {grid.tile_size[0]}, "
                f"{grid.tile_size[1]}), got {tuple(emb.shape)}"
            )
        return emb

    def _cluster_and_stitch(self, per_tile: torch.Tensor) -> np.ndarray:
        """``per_tile`` ``(N, T, D, h, w)`` -> stitched int32 ``(T, H, W)``."""
        t0 = time.perf_counter()
        labels = [cluster_embeddings(per_tile[k], **self.cluster_kwargs) for k in range(per_tile.shape[0])]
        out = stitch_tile_labels(labels, self.grid, self.min_iou, self.min_overlap)
        self.timings["clustering"] += time.perf_counter() - t0
        return out

    def push(self, frame: torch.Tensor) -> np.ndarray | None:
        emb = self.embed(frame)
        previous, self.previous, self._mosaic = self.previous, emb, None
        if previous is None:
            return None
        return self._cluster_and_stitch(torch.stack([previous, emb], dim=1))

    def cluster_last_frame(self) -> np.ndarray | None:
        """Labels ``(H, W)`` int32 of the last pushed frame alone (per tile, stitched): for a one-frame video."""
        if self.previous is None:
            return None
        return self._cluster_and_stitch(self.previous[:, None])[0]
