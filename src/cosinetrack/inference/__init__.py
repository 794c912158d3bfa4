"""Streaming and tiled inference: batches -> network steps -> embeddings -> pair segmentation, frame by frame."""

from cosinetrack.inference.amp import autocast_context, cuda_amp, default_amp, resolve_amp
from cosinetrack.inference.inferer import AutocastInferer, StreamingInferer, stream_frames
from cosinetrack.inference.prepare import PrepareCaseBatch, PrepareClipBatch
from cosinetrack.inference.progress import FrameProgress
from cosinetrack.inference.segmenter import PairSegmenter, ScaledPairSegmenter, normalize_frame
from cosinetrack.inference.stepping import (
    cast_state,
    check_stack,
    concat_states,
    split_state,
    state_nbytes,
    step_network,
)
from cosinetrack.inference.tiling import (
    TILE_BATCH_PIXELS,
    TILE_STORAGE,
    TiledPairSegmenter,
    TileGrid,
    TileStitcher,
    stitch_tile_labels,
    tile_grid,
    tile_positions,
)
from cosinetrack.inference.video import FrameKeeper, segment_and_track_video

__all__ = [
    "autocast_context",
    "cuda_amp",
    "default_amp",
    "resolve_amp",
    "cast_state",
    "check_stack",
    "concat_states",
    "split_state",
    "state_nbytes",
    "step_network",
    "PrepareClipBatch",
    "PrepareCaseBatch",
    "AutocastInferer",
    "StreamingInferer",
    "stream_frames",
    "FrameProgress",
    "PairSegmenter",
    "normalize_frame",
    "ScaledPairSegmenter",
    "TILE_BATCH_PIXELS",
    "TILE_STORAGE",
    "TileGrid",
    "TileStitcher",
    "TiledPairSegmenter",
    "stitch_tile_labels",
    "tile_grid",
    "tile_positions",
    "segment_and_track_video",
    "FrameKeeper",
]
