"""Figures of frames for MLflow: segmentation and embedding panels, and the functions that pick the frames."""

from cosinetrack.viz.panels import (
    embedding_panel,
    embedding_rgb,
    embedding_sample,
    instance_colours,
    segmentation_panel,
    segmentation_sample,
)

__all__ = [
    "segmentation_panel",
    "segmentation_sample",
    "embedding_panel",
    "embedding_sample",
    "embedding_rgb",
    "instance_colours",
]
