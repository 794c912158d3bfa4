"""Figures: segmentation panels for MLflow."""

from cosinetrack.viz.panels import segmentation_panel

__all__ = ["segmentation_panel"]
