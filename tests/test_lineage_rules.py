"""Lineage rules against over-segmentation read as mitosis (``make_lineage_valid`` rules 5-6, the tracker's
``max_daughter_ratio`` and ``min_pair_iou``): synthetic track tables with an unambiguous answer."""

from __future__ import annotations

import numpy as np
import pytest

from cosinetrack.errors import CosineTrackConfigError
from cosinetrack.tracking.lineage import check_ctc_lineage, make_lineage_valid
from cosinetrack.tracking.pair_tracker import PairTracker, check_tracking_options, track_pairs

RULES = {"min_cycle_length": 10, "min_daughter_length": 5}


def _lineage(frames, parents, **options):
    """``make_lineage_valid`` plus the checks every result must pass: CTC-valid, every raw frame mapped."""
    mappings, tracks = make_lineage_valid(frames, parents, **options)
    present = [sorted({lab for lab in m.values() if lab > 0}) for _, m in sorted(mappings.items())]
    assert check_ctc_lineage(tracks, present) == []
    return mappings, tracks


def _divisions(tracks) -> int:
    parents, counts = np.unique(tracks[:, 3][tracks[:, 3] > 0], return_counts=True)
    return int((counts >= 2).sum())


# (case, track frames, parents, options, expected L B E P table, raw ids removed in some frame)
CASES = [
    (
        "real division, two long daughters: kept",
        {1: range(20), 2: range(10, 20)},
        {2: 1},
        RULES,
        [[1, 0, 9, 0], [2, 10, 19, 1], [3, 10, 19, 1]],
        set(),
    ),
    (
        "two-frame fragment beside a cell: no division",
        {1: range(20), 2: [8, 9]},
        {2: 1},
        {"min_daughter_length": 5},
        [[1, 0, 19, 0]],
        {2},
    ),
    (
        "the same fragment with the rules off: a division (old behavior)",
        {1: range(20), 2: [8, 9]},
        {2: 1},
        {},
        [[1, 0, 7, 0], [2, 8, 19, 1], [3, 8, 9, 1]],
        set(),
    ),
    (
        "two fragments in a row: both removed, one track",
        {1: range(30), 2: [10, 11], 3: [20, 21]},
        {2: 1, 3: 1},
        {"min_daughter_length": 5},
        [[1, 0, 29, 0]],
        {2, 3},
    ),
    (
        "short daughter ending in the last frame: kept",
        {1: range(20), 2: [18, 19]},
        {2: 1},
        {"min_daughter_length": 5},
        [[1, 0, 17, 0], [2, 18, 19, 1], [3, 18, 19, 1]],
        set(),
    ),
    (
        "both daughters short: the longer one stays as the mother",
        {1: range(10), 2: [10, 11, 12], 3: [10, 11]},
        {2: 1, 3: 1},
        {"min_daughter_length": 5, "min_track_length": 1},
        [[1, 0, 12, 0]],
        {3},
    ),
    (
        "daughter dividing 3 frames after its birth: that division undone, the other child detached",
        {1: range(30), 2: range(10, 30), 3: range(13, 30)},
        {2: 1, 3: 2},
        {"min_cycle_length": 10},
        [[1, 0, 9, 0], [2, 10, 29, 1], [3, 10, 29, 1], [4, 13, 29, 0]],
        set(),
    ),
    (
        "the same chain with the rules off: two divisions (old behavior)",
        {1: range(30), 2: range(10, 30), 3: range(13, 30)},
        {2: 1, 3: 2},
        {},
        [[1, 0, 9, 0], [2, 10, 29, 1], [3, 10, 12, 1], [4, 13, 29, 3], [5, 13, 29, 3]],
        set(),
    ),
    (
        "daughter dividing 15 frames after its birth: a real cycle, kept",
        {1: range(40), 2: range(10, 40), 3: range(25, 40)},
        {2: 1, 3: 2},
        {"min_cycle_length": 10},
        [[1, 0, 9, 0], [2, 10, 39, 1], [3, 10, 24, 1], [4, 25, 39, 3], [5, 25, 39, 3]],
        set(),
    ),
    (
        "a root track dividing early is no cell cycle of a daughter: kept",
        {1: range(20), 2: range(3, 20)},
        {2: 1},
        {"min_cycle_length": 10},
        [[1, 0, 2, 0], [2, 3, 19, 1], [3, 3, 19, 1]],
        set(),
    ),
    (
        "three children 2 frames after a birth: one kept (the continuation on a tie), two detached",
        {1: range(30), 2: range(10, 30), 3: range(12, 16), 4: range(12, 30)},
        {2: 1, 3: 2, 4: 2},
        RULES,
        [[1, 0, 9, 0], [2, 10, 29, 1], [3, 10, 29, 1], [4, 12, 15, 0], [5, 12, 29, 0]],
        set(),
    ),
]


@pytest.mark.parametrize("case, frames, parents, options, expected, removed", CASES, ids=[c[0] for c in CASES])
def test_lineage_rules(case, frames, parents, options, expected, removed):
    mappings, tracks = _lineage(frames, parents, **options)
    np.testing.assert_array_equal(tracks, np.array(expected, dtype=np.int64).reshape(-1, 4), err_msg=case)
    gone = {raw for m in mappings.values() for raw, lab in m.items() if lab == 0}
    assert gone >= removed and (not removed) == (not gone), case


TABLES = [
    ({1: range(30), 2: range(10, 30), 3: range(13, 30), 4: [5, 6], 5: [0, 1, 2, 7, 8]}, {2: 1, 3: 2, 4: 1}),
    ({1: range(8), 2: [4], 3: range(4, 8), 4: [2, 3, 6, 7]}, {2: 1, 3: 1, 4: 3}),
]


@pytest.mark.parametrize("frames, parents", TABLES)
@pytest.mark.parametrize("off", [{}, {"min_cycle_length": 0, "min_daughter_length": 0}, {"min_cycle_length": 1}])
def test_rules_off_is_the_old_behavior(frames, parents, off):
    old_maps, old_tracks = make_lineage_valid(frames, parents)
    maps, tracks = _lineage(frames, parents, **off)
    np.testing.assert_array_equal(tracks, old_tracks)
    assert maps == old_maps


@pytest.mark.parametrize("name", ["min_cycle_length", "min_daughter_length"])
@pytest.mark.parametrize("value", [-1, 2.5, True, "3", None])
def test_bad_lineage_option_names_the_option(name, value):
    with pytest.raises(ValueError, match=name):
        make_lineage_valid({1: [0, 1]}, **{name: value})
    with pytest.raises(CosineTrackConfigError, match=f"lineage.*{name}"):
        check_tracking_options({}, {name: value})


@pytest.mark.parametrize(
    "name, value",
    [("max_daughter_ratio", -0.1), ("max_daughter_ratio", float("nan")), ("max_daughter_ratio", True),
     ("min_pair_iou", 1.5), ("min_pair_iou", -0.1), ("min_pair_iou", "0.1")],
)  # fmt: skip
def test_bad_tracker_option_names_the_option(name, value):
    with pytest.raises(ValueError, match=name):
        PairTracker(**{name: value})
    with pytest.raises(CosineTrackConfigError, match=f"tracking.*{name}"):
        check_tracking_options({name: value}, {})


def _pairs(video: np.ndarray) -> list[np.ndarray]:
    return [video[t : t + 2] for t in range(len(video) - 1)]


def _split_video(daughter_rows: int) -> np.ndarray:
    """A 20 x 20 cell (id 1) in frames 0-2; from frame 3 on, id 1 keeps rows 0-9 and a new instance (id 2)
    takes rows 10..10+daughter_rows-1 of the same columns: the new one has daughter_rows / 20 of the
    mother's pixels and overlaps her last outline."""
    video = np.zeros((6, 40, 20), dtype=np.int32)
    video[:3, 0:20] = 1
    video[3:, 0:10] = 1
    video[3:, 10 : 10 + daughter_rows] = 2
    return video


@pytest.mark.parametrize(
    "daughter_rows, ratio, divides",
    [(10, 0.0, True), (10, 0.8, True), (10, 0.4, False), (20, 0.8, False), (20, 0.0, True)],
)
def test_max_daughter_ratio(daughter_rows, ratio, divides):
    labels, tracks = track_pairs(_pairs(_split_video(daughter_rows)), max_daughter_ratio=ratio)
    assert check_ctc_lineage(tracks, labels) == []
    assert _divisions(tracks) == int(divides)
    assert len(tracks) == (3 if divides else 2)


def test_max_daughter_ratio_keeps_a_cell_found_again():
    """A cell missed in frames 2-3 and found again (its id has ended): not a division, never checked."""
    video = np.zeros((6, 20, 20), dtype=np.int32)
    video[[0, 1, 4, 5], 2:12, 2:12] = 1
    video[4:, 2:12, 2:12] = 2  # a new id where the cell was
    labels, tracks = track_pairs(_pairs(video), max_daughter_ratio=0.5)
    np.testing.assert_array_equal(tracks, [[1, 0, 1, 0], [2, 4, 5, 1]])


@pytest.mark.parametrize("min_pair_iou, same_track", [(0.0, True), (0.1, False)])
def test_min_pair_iou_cuts_a_label_that_jumps_across_the_frame(min_pair_iou, same_track):
    """The pair's clustering gave one label to a cell at the top left of frame 0 and to another one at the
    bottom right of frame 1."""
    pair = np.zeros((2, 30, 30), dtype=np.int32)
    pair[0, 0:8, 0:8] = 1
    pair[1, 20:28, 20:28] = 1
    pair[:, 0:8, 20:28] = 2  # a cell that stays
    tracker = PairTracker(min_pair_iou=min_pair_iou)
    first = tracker.update(pair)
    second = tracker.finish()
    assert (first[0:8, 20:28] == second[0:8, 20:28]).all()
    assert (first[0, 0] == second[20, 20]) == same_track
