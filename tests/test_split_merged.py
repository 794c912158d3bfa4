"""Splitting instances that cover touching objects (``split_merged_instances``, the tracker's
``split_min_distance``): drawn discs with an unambiguous answer."""

from __future__ import annotations

import numpy as np
import pytest

from cosinetrack.errors import CosineTrackConfigError
from cosinetrack.tracking import PairTracker, check_tracking_options, split_by_distance_peaks, split_merged_instances
from cosinetrack.tracking.lineage import check_ctc_lineage
from cosinetrack.tracking.pair_tracker import track_pairs


def _disc(shape, center, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def _two_touching(shape=(60, 80), left=(30, 25), right=(30, 49), radius=12):
    """Two discs whose outlines overlap a little: one peanut-shaped mask."""
    return _disc(shape, left, radius) | _disc(shape, right, radius)


@pytest.mark.parametrize(
    "mask, min_distance, parts",
    [
        (_two_touching(), 10, 2),  # centers 24 px apart
        (_two_touching(), 30, 1),  # closer than min_distance: one object
        (_disc((60, 80), (30, 40), 15), 5, 1),  # a disc has one maximum
        (np.zeros((20, 20), bool), 5, 0),
        (_two_touching() | _disc((60, 80), (30, 73), 7), 10, 3),  # three in a row, the third smaller
    ],
)
def test_split_by_distance_peaks(mask, min_distance, parts):
    labels, n = split_by_distance_peaks(mask, min_distance)
    assert n == parts
    assert ((labels > 0) == mask).all()  # parts cover the mask exactly
    assert sorted(np.unique(labels[mask]).tolist()) == list(range(1, parts + 1))


def test_split_by_distance_peaks_cuts_at_the_neck():
    labels, n = split_by_distance_peaks(_two_touching(), 10)
    assert n == 2 and labels[30, 25] != labels[30, 49]
    assert labels[30, 33] == labels[30, 25] and labels[30, 41] == labels[30, 49]


def test_object_at_the_image_border_is_not_cut_by_the_border():
    """A half disc against the image edge (outside the array counts as background): one maximum, one part."""
    mask = _disc((40, 40), (0, 20), 14)
    assert split_by_distance_peaks(mask, 8)[1] == 1


def test_pair_parts_keep_one_label_across_the_two_frames():
    """Two touching cells labelled as one instance (7) in both frames of a pair, moved 3 px: after the split
    each cell has one label in both frames; the other instance (2) is untouched; the old label stays."""
    pair = np.zeros((2, 60, 100), np.int32)
    pair[0][_two_touching((60, 100))] = 7
    pair[1][_two_touching((60, 100), left=(30, 28), right=(30, 52))] = 7
    pair[:, 5:12, 85:95] = 2
    out = split_merged_instances(pair, 10)
    assert out.dtype == np.int64 and out.shape == pair.shape
    assert (out[:, 5:12, 85:95] == 2).all()
    assert ((out > 0) == (pair > 0)).all()
    left, right = out[0, 30, 25], out[0, 30, 49]
    assert left != right and {left, right} & {7} and min(left, right) > 0
    assert out[1, 30, 28] == left and out[1, 30, 52] == right
    assert set(np.unique(out).tolist()) == {0, 2, 7, 8}  # one new label above the largest


def test_instance_in_one_frame_of_the_pair_keeps_its_label_on_one_part():
    pair = np.zeros((2, 60, 80), np.int32)
    pair[1][_two_touching()] = 3
    out = split_merged_instances(pair, 10)
    assert (out[0] == 0).all()
    assert sorted(np.unique(out[1]).tolist()) == [0, 3, 4]


def test_unsplit_pair_is_unchanged_and_one_frame_video_works():
    pair = np.zeros((2, 40, 40), np.int32)
    pair[:, 10:20, 10:20] = 5
    np.testing.assert_array_equal(split_merged_instances(pair, 3), pair)
    single = np.zeros((1, 60, 80), np.int32)
    single[0][_two_touching()] = 1
    assert sorted(np.unique(split_merged_instances(single, 10)).tolist()) == [0, 1, 2]


@pytest.mark.parametrize(
    "pair, min_distance, match",
    [
        (np.zeros((3, 4, 4), np.int32), 5, "shape"),
        (np.zeros((4, 4), np.int32), 5, "shape"),
        (np.full((2, 4, 4), -1), 5, "non-negative"),
        (np.zeros((2, 4, 4), np.float32), 5, "integer"),
        (np.zeros((2, 4, 4), np.int32), 0, "min_distance"),
        (np.zeros((2, 4, 4), np.int32), 2.5, "min_distance"),
        (np.zeros((2, 4, 4), np.int32), True, "min_distance"),
    ],
)
def test_bad_input_is_refused(pair, min_distance, match):
    with pytest.raises(ValueError, match=match):
        split_merged_instances(pair, min_distance)


@pytest.mark.parametrize("value", [-1, 2.5, True, "10"])
def test_bad_split_min_distance_names_the_option(value):
    with pytest.raises(ValueError, match="split_min_distance"):
        PairTracker(split_min_distance=value)
    with pytest.raises(CosineTrackConfigError, match="tracking.*split_min_distance"):
        check_tracking_options({"split_min_distance": value}, {})


@pytest.mark.parametrize("split_min_distance, num_tracks", [(0, 1), (10, 2)])
def test_tracker_follows_both_cells_of_a_merged_instance(split_min_distance, num_tracks):
    """Four frames of two touching cells that the clustering gave one label per pair: with the split,
    two tracks over the whole video, no division."""
    video = np.zeros((4, 60, 100), np.int32)
    for t in range(4):
        video[t][_two_touching((60, 100), left=(30, 25 + t), right=(30, 49 + t))] = 1 + t  # a new label per pair
    pairs = [np.stack([np.where(video[t] > 0, 9, 0), np.where(video[t + 1] > 0, 9, 0)]) for t in range(3)]
    labels, tracks = track_pairs(pairs, split_min_distance=split_min_distance)
    assert check_ctc_lineage(tracks, labels) == []
    assert len(tracks) == num_tracks
    assert (tracks[:, 1] == 0).all() and (tracks[:, 2] == 3).all() and (tracks[:, 3] == 0).all()
    if num_tracks == 2:
        assert labels[0, 30, 25] != labels[0, 30, 49]
        assert (labels[:, 30, 30] == labels[0, 30, 25]).all()  # the left cell keeps its id


def test_large_label_values_are_split_too():
    """Provisional-size ids (far above the pixel count) are renumbered first; the partition is what counts."""
    pair = np.zeros((2, 60, 80), np.int64)
    pair[:, 0:5, 0:5] = 1 << 40
    pair[0][_two_touching()] = (1 << 40) + 7
    pair[1][_two_touching()] = (1 << 40) + 7
    out = split_merged_instances(pair, 10)
    assert len(np.unique(out[0])) == 4  # background, the small square, two halves
    assert out[0, 30, 25] == out[1, 30, 25] and out[0, 30, 49] == out[1, 30, 49] != out[0, 30, 25]
