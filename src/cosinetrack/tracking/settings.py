"""The options of tracking and of the lineage step as checked, typed values: one home for their defaults.

A bundle's ``tracking`` section holds :class:`TrackingSettings` names (the options of
:class:`~cosinetrack.tracking.PairTracker`), its ``lineage`` section :class:`LineageSettings` names (the
options of :func:`~cosinetrack.tracking.make_lineage_valid` that the tracker does not fill in itself).
``from_mapping`` checks a section when the config is parsed: a misspelt name or a refused value raises
:class:`~cosinetrack.errors.CosineTrackConfigError` naming the section and the key.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from cosinetrack.errors import CosineTrackConfigError
from cosinetrack.options import check_option_names
from cosinetrack.tracking.lineage import make_lineage_valid
from cosinetrack.tracking.matching import PARENT_MEASURES

__all__ = ["LINKS", "LineageSettings", "TrackingSettings", "option_names"]

#: what a new pair's first frame is matched to (:attr:`TrackingSettings.link`)
LINKS = ("pair", "frame")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    return float(value)


def _from_mapping(cls: type, options: Mapping[str, Any] | Any, section: str) -> Any:
    """``options`` as an instance of the settings class ``cls`` (an instance is returned as it is); names
    checked against its fields, values by its ``__post_init__``: errors read ``<section>: <option>: <problem>``."""
    if isinstance(options, cls):
        return options
    values = check_option_names(section, options, option_names(cls))
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise CosineTrackConfigError(section, str(e)) from e


@dataclass(frozen=True)
class TrackingSettings:
    """Options of the pair tracker (:class:`~cosinetrack.tracking.PairTracker`), checked.

    Attributes:
        min_iou: smallest IoU of two instances in the shared frame of consecutive pairs (``link`` pair) or in
            consecutive frames (``link`` frame) that links them (greedy one-to-one matching; 0.25 in the paper's
            reference code).
        max_parent_gap: a new track's mother may have ended at most this many frames before it begins.
        parent_measure: ``"iou"`` or ``"overlap"`` (share of the daughter covered by the mother).
        min_parent_score: smallest score of a mother.
        parent_dilation: pixels the mother candidates are dilated by before scoring.
        min_size: instances smaller than this (pixels) are dropped before tracking.
        border_width: pixels from the frame border within which an instance touches the border.
        min_pair_iou: unused by the default pipeline (0 = off); kept for the pair matching experiments.
        max_daughter_ratio: a daughter is at most this share of her mother's area (0 = off).
        split_min_distance: an instance whose distance transform has maxima at least this many pixels
            apart in a frame is split there before matching
            (:func:`~cosinetrack.tracking.split_merged_instances`; 0 = off).
        link: what the next pair's first frame is matched to: ``"pair"`` (the paper's: the second frame
            of the previous pair, whose ids the pair's joint clustering carried over) or ``"frame"`` (the
            previous finalised frame itself, by IoU; instances without such a match fall back to the
            pair's link).
        min_foreground_fraction: an instance with less than this share of its pixels in its frame's bright
            foreground (:func:`~cosinetrack.transforms.bright_foreground` of the network input: brighter
            than the frame's median by 4 robust standard deviations) becomes background before tracking
            (0 = off). For fluorescence, where cells are brighter than the background; not for
            transmitted light.
        halo_distance: a *dim* instance (less than 2 % of its pixels in its frame's bright foreground, as above)
            within this many typical nucleus diameters of a *bright* one (at least half of its pixels in it)
            is taken for that nucleus' halo (out-of-focus light, cytoplasm) and becomes background before
            tracking (0 = off). The typical diameter is the median equivalent diameter of the frame's bright
            instances, so the setting does not depend on the pixel size. Dim instances away from bright ones
            (dim nuclei) stay. For fluorescence, like ``min_foreground_fraction``.
    """

    min_iou: float = 0.25
    max_parent_gap: int = 8
    parent_measure: str = "iou"
    min_parent_score: float = 0.1
    parent_dilation: int = 0
    min_size: int = 0
    border_width: int = 1
    min_pair_iou: float = 0.0
    max_daughter_ratio: float = 0.0
    split_min_distance: int = 0
    link: str = "pair"
    min_foreground_fraction: float = 0.0
    halo_distance: float = 0.0

    def __post_init__(self) -> None:
        split = self.split_min_distance
        if isinstance(split, bool) or not isinstance(split, numbers.Integral) or split < 0:
            raise ValueError(f"split_min_distance: expected a whole number of pixels >= 0, got {split!r}")
        if self.link not in LINKS:
            raise ValueError(f"link: expected one of {LINKS}, got {self.link!r}")
        ratio = _number("max_daughter_ratio", self.max_daughter_ratio)
        if not 0.0 <= ratio < math.inf:
            raise ValueError(f"max_daughter_ratio: must be a finite number >= 0, got {self.max_daughter_ratio}")
        pair_iou = _number("min_pair_iou", self.min_pair_iou)
        if not 0.0 <= pair_iou <= 1.0:
            raise ValueError(f"min_pair_iou: must be in [0, 1], got {self.min_pair_iou}")
        if not 0.0 <= _number("min_foreground_fraction", self.min_foreground_fraction) <= 1.0:
            raise ValueError(f"min_foreground_fraction: must be in [0, 1], got {self.min_foreground_fraction}")
        if not 0.0 <= _number("halo_distance", self.halo_distance) < math.inf:
            raise ValueError(f"halo_distance: must be a finite number >= 0, got {self.halo_distance}")
        if not 0.0 < _number("min_iou", self.min_iou) <= 1.0:
            raise ValueError(f"min_iou: must be in (0, 1], got {self.min_iou}")
        if int(self.max_parent_gap) < 0:
            raise ValueError(f"max_parent_gap: must be >= 0, got {self.max_parent_gap}")
        if self.parent_measure not in PARENT_MEASURES:
            raise ValueError(f"parent_measure: expected one of {PARENT_MEASURES}, got {self.parent_measure!r}")
        if not 0.0 < _number("min_parent_score", self.min_parent_score) <= 1.0:
            raise ValueError(f"min_parent_score: must be in (0, 1], got {self.min_parent_score}")
        if int(self.parent_dilation) < 0 or int(self.min_size) < 0 or int(self.border_width) < 0:
            raise ValueError("parent_dilation, min_size and border_width must be >= 0")
        for name, kind in (("min_iou", float), ("max_parent_gap", int), ("min_parent_score", float),
                           ("parent_dilation", int), ("min_size", int), ("border_width", int),
                           ("min_pair_iou", float), ("max_daughter_ratio", float),
                           ("split_min_distance", int), ("min_foreground_fraction", float),
                           ("halo_distance", float)):  # fmt: skip
            object.__setattr__(self, name, kind(getattr(self, name)))

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | None, section: str = "tracking") -> TrackingSettings:
        """A config section as settings (``None`` or ``{}``: the defaults).

        Raises:
            CosineTrackConfigError: an unknown name (with the closest and all allowed ones) or a bad value.
        """
        return _from_mapping(cls, options, section)

    def as_dict(self) -> dict[str, Any]:
        """The settings as keywords of :class:`~cosinetrack.tracking.PairTracker`."""
        return asdict(self)


@dataclass(frozen=True)
class LineageSettings:
    """Options of the lineage step (:func:`~cosinetrack.tracking.make_lineage_valid`), checked.

    Attributes:
        max_gap: largest frame distance over which a reappearing id keeps its parent link.
        min_track_length: tracks with fewer frames are removed; 1 keeps all.
        keep_border_fragments: keep short tracks that touch the frame border.
        keep_fragments_at_video_ends: keep short tracks at the first and last frames.
        min_cycle_length: a cell does not divide again within this many frames of its birth (0 = off).
        min_daughter_length: shorter daughters are fragments, not a division (0 = off).
    """

    max_gap: int = 8
    min_track_length: int = 2
    keep_border_fragments: bool = True
    keep_fragments_at_video_ends: bool = True
    min_cycle_length: int = 0
    min_daughter_length: int = 0

    def __post_init__(self) -> None:
        make_lineage_valid({}, num_frames=1, **asdict(self))  # the lineage step's own checks, on an empty video

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | None, section: str = "lineage") -> LineageSettings:
        """A config section as settings (``None`` or ``{}``: the defaults).

        Raises:
            CosineTrackConfigError: an unknown name (with the closest and all allowed ones) or a bad value.
        """
        return _from_mapping(cls, options, section)

    def as_dict(self) -> dict[str, Any]:
        """The settings as keywords of :func:`~cosinetrack.tracking.make_lineage_valid`."""
        return asdict(self)


def option_names(settings: type) -> frozenset[str]:
    """The option names of a settings class (its fields)."""
    return frozenset(f.name for f in fields(settings))
