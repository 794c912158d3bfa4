"""cosinetrack.networks: the recurrent stacked hourglass, its building blocks, an ensemble of trained runs, a frame-wise
wrapper for baselines."""

from __future__ import annotations

from cosinetrack.networks.convgru import ConvGRUCell
from cosinetrack.networks.ensemble import EmbeddingEnsemble, embedding_views
from cosinetrack.networks.export import StackedHourglassExport
from cosinetrack.networks.framewise import FrameWiseNetwork
from cosinetrack.networks.hourglass import Hourglass
from cosinetrack.networks.stacked import RecurrentStackedHourglass

__all__ = [
    "ConvGRUCell",
    "EmbeddingEnsemble",
    "FrameWiseNetwork",
    "Hourglass",
    "RecurrentStackedHourglass",
    "StackedHourglassExport",
    "embedding_views",
]
