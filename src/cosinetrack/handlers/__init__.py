"""Ignite handlers: MLflow tracking (runs, params, figures)."""

from cosinetrack.handlers.mlflow import (
    MLflowFigureHandler,
    MLflowRunHandler,
    default_artifact_location,
    default_tracking_uri,
    export_bundle_config,
    flatten_params,
    make_run_name,
)

__all__ = [
    "MLflowFigureHandler",
    "MLflowRunHandler",
    "default_artifact_location",
    "default_tracking_uri",
    "export_bundle_config",
    "flatten_params",
    "make_run_name",
]
