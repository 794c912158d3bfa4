"""Figures of frames for MLflow: segmentation and embedding panels, and the functions that pick the frames;
napari layers of a cell tracking result (napari itself is optional and imported only by ``view_ctc``).
"""

from cosinetrack.viz.lineage import lineage_tree_figure, lineage_tree_layout
from cosinetrack.viz.panels import (
    embedding_panel,
    embedding_rgb,
    embedding_sample,
    instance_colors,
    segmentation_panel,
    segmentation_sample,
    tracking_figures,
    tracking_sample,
)

__all__ = [
    "lineage_tree_figure",
    "lineage_tree_layout",
    "segmentation_panel",
    "segmentation_sample",
    "embedding_panel",
    "embedding_sample",
    "embedding_rgb",
    "instance_colors",
    "tracking_sample",
    "tracking_figures",
]
