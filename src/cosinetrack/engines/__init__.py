"""Engines: batch preparation for clips and cases, streaming inference, run reports (on Ignite/MONAI)."""

from cosinetrack.distributed import (
    destroy_distributed,
    distributed_device,
    get_rank,
    get_world_size,
    init_distributed,
    is_not_rank0,
    is_rank0,
    shard,
)
from cosinetrack.engines.checkpoint import (
    NetworkSettings,
    TrainingCheckpoint,
    find_resume_checkpoint,
    handlers_of_rank,
    load_weights,
    network_for_model,
    network_settings,
    require_dir,
    require_file,
    resolve_model,
    stored_image_size,
    stored_network_settings,
)
from cosinetrack.engines.crossval import cross_validate, run_training
from cosinetrack.engines.inferer import (
    AutocastInferer,
    StreamingInferer,
    autocast_context,
    cuda_amp,
    default_amp,
    resolve_amp,
    stream_frames,
)
from cosinetrack.engines.instances import segment_image_instances, segment_plants_to_folder
from cosinetrack.engines.predict import predict_case, predict_to_folder
from cosinetrack.engines.prepare import PrepareCaseBatch, PrepareClipBatch
from cosinetrack.engines.progress import FrameProgress
from cosinetrack.engines.report import format_table, report_evaluation, report_training
from cosinetrack.engines.tiling import TiledPairSegmenter, TileGrid, stitch_tile_labels, tile_grid, tile_positions
from cosinetrack.engines.video import (
    ScaledPairSegmenter,
    VideoTrackingStep,
    make_pair_segmenter,
    normalize_frame,
    segment_and_track_video,
    track_folder,
    track_sequence_part,
)
from cosinetrack.io.atomic import shared_atomic_directory

__all__ = [
    "destroy_distributed",
    "distributed_device",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_not_rank0",
    "is_rank0",
    "shard",
    "shared_atomic_directory",
    "FrameProgress",
    "NetworkSettings",
    "TrainingCheckpoint",
    "find_resume_checkpoint",
    "handlers_of_rank",
    "network_for_model",
    "network_settings",
    "resolve_model",
    "stored_image_size",
    "stored_network_settings",
    "AutocastInferer",
    "autocast_context",
    "cuda_amp",
    "default_amp",
    "resolve_amp",
    "TiledPairSegmenter",
    "TileGrid",
    "stitch_tile_labels",
    "tile_grid",
    "tile_positions",
    "ScaledPairSegmenter",
    "VideoTrackingStep",
    "make_pair_segmenter",
    "normalize_frame",
    "segment_and_track_video",
    "track_folder",
    "track_sequence_part",
    "PrepareCaseBatch",
    "PrepareClipBatch",
    "StreamingInferer",
    "cross_validate",
    "format_table",
    "load_weights",
    "predict_case",
    "predict_to_folder",
    "run_training",
    "segment_image_instances",
    "segment_plants_to_folder",
    "report_evaluation",
    "require_dir",
    "require_file",
    "report_training",
    "stream_frames",
]
