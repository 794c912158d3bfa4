"""Around training: model files and resume, reports, cross-validation."""

from cosinetrack.workflows.averaging import WeightAveraging, first_averaged_iteration
from cosinetrack.workflows.checkpoint import (
    NetworkSettings,
    RNGState,
    TrainingCheckpoint,
    find_resume_checkpoint,
    handlers_of_rank,
    load_weights,
    network_for_model,
    network_settings,
    read_checkpoint,
    resolve_model,
    stored_clustering,
    stored_image_size,
    stored_inference_size,
    stored_network_settings,
    stored_normalization,
)
from cosinetrack.workflows.crossval import TABLE_NAME, cross_validate, fold_dir_name, run_training, summarize_folds
from cosinetrack.workflows.report import format_table, report_evaluation, report_training

__all__ = [
    "network_settings",
    "NetworkSettings",
    "read_checkpoint",
    "load_weights",
    "stored_network_settings",
    "stored_image_size",
    "stored_inference_size",
    "stored_clustering",
    "stored_normalization",
    "resolve_model",
    "network_for_model",
    "RNGState",
    "find_resume_checkpoint",
    "TrainingCheckpoint",
    "handlers_of_rank",
    "WeightAveraging",
    "first_averaged_iteration",
    "report_training",
    "report_evaluation",
    "format_table",
    "run_training",
    "cross_validate",
    "summarize_folds",
    "fold_dir_name",
    "TABLE_NAME",
]
