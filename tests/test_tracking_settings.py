"""The typed ``tracking`` / ``lineage`` / ``normalization`` sections: one home for defaults, checks by name."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from cosinetrack.errors import CosineTrackConfigError
from cosinetrack.tracking import LineageSettings, PairTracker, TrackingSettings, make_lineage_valid, track_pairs
from cosinetrack.transforms import Normalization, check_augmentation


def _defaults(fn, skip=()) -> dict:
    return {
        n: p.default
        for n, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty and n not in skip
    }


@pytest.mark.parametrize(
    "settings, consumer, skip",
    [
        (TrackingSettings, PairTracker.__init__, ()),
        (TrackingSettings, track_pairs, ("foregrounds",)),
        (LineageSettings, make_lineage_valid, ("parents", "num_frames", "border_tracks")),
    ],
)
def test_settings_defaults_are_the_consumers_defaults(settings, consumer, skip):
    assert dataclasses.asdict(settings()) == _defaults(consumer, skip)


@pytest.mark.parametrize(
    "cls, section, options, expected",
    [
        (TrackingSettings, "tracking", None, TrackingSettings()),
        (TrackingSettings, "tracking", {"min_iou": 0.3}, TrackingSettings(min_iou=0.3)),
        (LineageSettings, "lineage", {"min_cycle_length": 20}, LineageSettings(min_cycle_length=20)),
        (Normalization, "normalization", {"i_min": None, "smooth_sigma": 2}, Normalization(None, 10.0, 2.0)),
        (Normalization, "normalization", {"smooth_padding": "zeros"}, Normalization(smooth_padding="zeros")),
        (Normalization, "normalization", {"upper": "foreground"}, Normalization(upper="foreground")),
        (TrackingSettings, "tracking", {"link": "frame"}, TrackingSettings(link="frame")),
        (TrackingSettings, "tracking", {"min_foreground_fraction": 0.5}, TrackingSettings(min_foreground_fraction=0.5)),
        (TrackingSettings, "tracking", {"halo_distance": 1}, TrackingSettings(halo_distance=1.0)),
    ],
)
def test_sections_become_settings(cls, section, options, expected):
    assert cls.from_mapping(options, section) == expected


@pytest.mark.parametrize(
    "cls, section, options, fragment",
    [
        (TrackingSettings, "tracking", {"min_iuo": 0.3}, "tracking#min_iuo: unknown option 'min_iuo' (did you mean"),
        (TrackingSettings, "tracking", {"min_iou": 0.0}, "tracking: min_iou: must be in (0, 1]"),
        (TrackingSettings, "tracking", {"parent_measure": "dice"}, "tracking: parent_measure: expected one of"),
        (TrackingSettings, "tracking", {"max_daughter_ratio": True}, "max_daughter_ratio: expected a number"),
        (LineageSettings, "lineage", {"max_gaps": 3}, "lineage#max_gaps: unknown option"),
        (LineageSettings, "lineage", {"min_track_length": 0}, "lineage: min_track_length"),
        (Normalization, "normalization", {"i_max": 100}, "normalization: i_max: expected a percentage in [0, 100)"),
        (Normalization, "normalization", {"smooth_sigma": float("nan")}, "smooth_sigma: expected a finite number"),
        (Normalization, "normalization", {"upper": "fg"}, "normalization: upper: expected one of ('percentile'"),
        (Normalization, "normalization", [10, 10], "normalization: expected a dict of options"),
        (Normalization, "normalization", {"smooth_padding": "reflect"}, "normalization: smooth_padding: expected one"),
        (TrackingSettings, "tracking", {"link": "frames"}, "tracking: link: expected one of"),
        (TrackingSettings, "tracking", {"min_foreground_fraction": 1.5}, "min_foreground_fraction: must be in"),
        (TrackingSettings, "tracking", {"min_foreground_fraction": -0.1}, "min_foreground_fraction"),
        (TrackingSettings, "tracking", {"halo_distance": -0.5}, "halo_distance: must be a finite number >= 0"),
        (TrackingSettings, "tracking", {"halo_distance": float("inf")}, "halo_distance"),
        (TrackingSettings, "tracking", {"halo_distance": "near"}, "halo_distance: expected a number"),
    ],
)
def test_bad_sections_fail_naming_section_and_key(cls, section, options, fragment):
    with pytest.raises(CosineTrackConfigError) as info:
        cls.from_mapping(options, section)
    assert fragment in str(info.value)


def test_settings_are_frozen_and_the_tracker_keeps_them():
    settings = TrackingSettings(min_iou=0.4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.min_iou = 0.5  # type: ignore[misc]
    assert PairTracker(min_iou=0.4).settings == settings


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"i_min": 5.0}, "augmentation#i_min: moved to normalization#i_min"),
        ({"smooth_sigma": 1.0}, "augmentation#smooth_sigma: moved to normalization#smooth_sigma"),
        ({"rotate": 10.0}, "augmentation#rotate: unknown option 'rotate' (did you mean 'rotate_deg'?)"),
    ],
)
def test_augmentation_refuses_moved_and_unknown_names(options, fragment):
    with pytest.raises(CosineTrackConfigError) as info:
        check_augmentation(options)
    assert fragment in str(info.value)
    good = {"rotate_deg": 10.0, "padding_mode": "zeros"}
    assert check_augmentation(good) == good
