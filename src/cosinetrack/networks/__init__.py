"""cosinetrack.networks: the recurrent stacked hourglass network and its building blocks."""

from __future__ import annotations

from cosinetrack.networks.convgru import ConvGRUCell
from cosinetrack.networks.export import StackedHourglassExport
from cosinetrack.networks.hourglass import Hourglass
from cosinetrack.networks.stacked import RecurrentStackedHourglass

__all__ = ["ConvGRUCell", "Hourglass", "RecurrentStackedHourglass", "StackedHourglassExport"]
