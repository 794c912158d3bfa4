"""Tracking: frame-pair merging, parents, CTC-valid lineage (checked by our checker and py-ctcmetrics)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cosinetrack.tracking.lineage import (
    check_ctc_lineage,
    make_lineage_valid,
    remap_labels,
    track_frames_from_labels,
    tracks_table_from_labels,
)
from cosinetrack.tracking.matching import best_overlapping_instance, greedy_iou_matching, iou_pairs
from cosinetrack.tracking.pair_tracker import PairTracker, drop_dim_instances, drop_halo_instances, track_pairs

H = W = 32


def make_video(num_frames: int, objects: dict[int, dict[int, tuple[int, int, int, int]]]) -> np.ndarray:
    """``(T, H, W)`` labels; ``objects[id][t] = (y0, y1, x0, x1)`` boxes (clipped to the image)."""
    video = np.zeros((num_frames, H, W), dtype=np.int32)
    for i, boxes in objects.items():
        for t, (y0, y1, x0, x1) in boxes.items():
            video[t, max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = i
    return video


def frame_pairs(video: np.ndarray, seed: int = 0) -> list[np.ndarray]:
    """The pairs ``(t, t + 1)`` as a clustering would label them: consistent within a pair, with
    unrelated (randomly permuted) cluster ids from one pair to the next."""
    rng = np.random.default_rng(seed)
    n = int(video.max()) + 1
    pairs = []
    for t in range(video.shape[0] - 1):
        lut = np.concatenate([[0], 100 + rng.permutation(n - 1)])
        pairs.append(lut[video[t : t + 2]])
    return pairs


def write_ctc(folder: Path, labels: np.ndarray, tracks: np.ndarray) -> Path:
    """CTC result folder: ``maskTTT.tif`` per frame and ``res_track.txt``."""
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(labels):
        tifffile.imwrite(folder / f"mask{t:03d}.tif", frame.astype(np.uint16))
    np.savetxt(folder / "res_track.txt", np.asarray(tracks, dtype=np.int64).reshape(-1, 4), fmt="%d")
    return folder


def ctcmetrics_valid(folder: Path) -> int:
    """py-ctcmetrics' validity (1 valid, 0 not) of a CTC result folder."""
    from ctc_metrics.scripts.validate import validate_sequence

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns about every problem it finds
        return int(validate_sequence(str(folder), threads=1)["Valid"])


def assert_valid(labels: np.ndarray, tracks: np.ndarray, tmp_path: Path) -> None:
    assert check_ctc_lineage(tracks, labels) == []
    assert ctcmetrics_valid(write_ctc(tmp_path / "res", labels, tracks)) == 1


def moving(box: tuple[int, int, int, int], frames: range, dy: int = 0, dx: int = 0) -> dict:
    y0, y1, x0, x1 = box
    return {t: (y0 + dy * k, y1 + dy * k, x0 + dx * k, x1 + dx * k) for k, t in enumerate(frames)}


# ------------------------------------------------------------------------------------------------------
# matching


def test_iou_pairs_and_greedy_matching():
    a = np.zeros((8, 8), int)
    b = np.zeros((8, 8), int)
    a[0:4, 0:4] = 1
    a[4:8, 4:8] = 2
    b[0:4, 0:3] = 7  # IoU 12/16 with 1
    b[4:8, 6:8] = 9  # IoU 8/16 with 2
    b[0:2, 6:8] = 5  # no overlap
    ia, ib, iou = iou_pairs(a, b)
    assert dict(zip(zip(ia.tolist(), ib.tolist()), iou.tolist())) == {(1, 7): 0.75, (2, 9): 0.5}
    assert greedy_iou_matching(a, b) == {7: 1, 9: 2}
    assert greedy_iou_matching(a, b, min_iou=0.6) == {7: 1}
    # one-to-one: the best of two candidates wins, the other stays unmatched
    c = np.zeros((8, 8), int)
    c[0:4, 0:2] = 3  # IoU 8/16 with 1
    c[0:4, 2:4] = 4  # IoU 8/16 with 1 as well; tie -> smaller id
    assert greedy_iou_matching(a, c) == {3: 1}
    with pytest.raises(ValueError, match="min_iou"):
        greedy_iou_matching(a, b, min_iou=0)


def test_best_overlapping_instance():
    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:8] = True
    near = np.zeros((16, 16), int)
    near[4:8, 4:12] = 3  # IoU 0.5, overlap 1.0
    far = np.zeros((16, 16), int)
    far[4:8, 4:8] = 5  # IoU 1.0, two frames back
    assert best_overlapping_instance(mask, [near, far]) == (5, 1, 1.0)
    assert best_overlapping_instance(mask, [near, far], measure="overlap") == (3, 0, 1.0)  # tie: nearer frame
    assert best_overlapping_instance(mask, [near], min_score=0.6) == (0, -1, 0.0)
    touching = np.zeros((16, 16), int)
    touching[8:12, 4:8] = 2  # adjacent, no overlap until dilated
    assert best_overlapping_instance(mask, [touching])[0] == 0
    assert best_overlapping_instance(mask, [touching], measure="overlap", dilation=2)[0] == 2


# ------------------------------------------------------------------------------------------------------
# pair merging (streaming)


def three_cells(num_frames: int = 6) -> np.ndarray:
    return make_video(
        num_frames,
        {
            1: moving((2, 8, 2, 8), range(num_frames), dx=1),
            2: moving((20, 27, 4, 10), range(num_frames), dy=-1),
            3: moving((10, 16, 16, 24), range(num_frames), dx=1, dy=1),
        },
    )


def test_pair_merging_keeps_ids_across_pairs(tmp_path):
    gt = three_cells()
    labels, tracks = track_pairs(frame_pairs(gt, seed=1))
    assert labels.shape == gt.shape and labels.dtype == np.int32
    # every ground-truth cell is one label through the whole video (and vice versa)
    for i in (1, 2, 3):
        ids = np.unique(labels[gt == i])
        assert ids.size == 1 and ids[0] > 0
        assert np.array_equal(labels == ids[0], gt == i)
    assert sorted(tracks[:, 1:].tolist()) == [[0, 5, 0]] * 3
    assert_valid(labels, tracks, tmp_path)


def test_streaming_interface_returns_one_final_frame_per_pair():
    gt = three_cells(5)
    pairs = frame_pairs(gt, seed=2)
    tracker = PairTracker(max_parent_gap=3)
    outs = []
    for t, pair in enumerate(pairs):
        out = tracker.update(pair)
        assert out.shape == (H, W) and out.dtype == np.int32
        assert np.array_equal(out > 0, gt[t] > 0)  # frame t, final
        assert tracker.num_frames == t + 1
        assert len(tracker._history) <= 3  # bounded memory
        outs.append(out)
    last = tracker.finish()
    assert np.array_equal(last > 0, gt[-1] > 0) and tracker.num_frames == 5
    assert tracker.finish() is None
    with pytest.raises(RuntimeError):
        tracker.update(pairs[0])
    raw = tracker.tracks
    assert raw.shape == (3, 4) and (raw[:, 1:] == [0, 4, 0]).all()
    mappings, tracks = tracker.lineage()
    final = np.stack([remap_labels(f, mappings[t]) for t, f in enumerate([*outs, last])])
    assert check_ctc_lineage(tracks, final) == []


def test_shared_frame_takes_the_newer_pairs_segmentation():
    first = np.zeros((2, H, W), int)
    first[:, 4:12, 4:12] = 1
    first[1, 20:26, 20:26] = 3  # seen only in the older pair's frame 1: never becomes a track
    second = np.zeros((2, H, W), int)
    second[0, 4:12, 4:14] = 5  # the newer clustering of frame 1 is wider
    second[1, 4:12, 5:15] = 5
    second[1, 24:30, 2:8] = 6  # seen first in the last frame
    tracker = PairTracker()
    f0 = tracker.update(first)
    f1 = tracker.update(second)
    f2 = tracker.finish()
    assert np.array_equal(f1 > 0, second[0] > 0)
    assert np.unique(f0[f0 > 0]).tolist() == np.unique(f1[f1 > 0]).tolist() == [1]
    assert np.unique(f2[f2 > 0]).tolist() == [1, 2]  # raw ids: 1, 2, ... in order of birth
    assert tracker.tracks.tolist() == [[1, 0, 2, 0], [2, 2, 2, 0]]


def test_low_iou_in_shared_frame_gives_new_id_then_merged_by_lineage(tmp_path):
    # the newer pair's clustering of frame 1 barely overlaps the older one: new id, parent = old id,
    # single daughter without gap -> one track after the lineage step
    first = np.zeros((2, H, W), int)
    first[:, 4:12, 4:12] = 1
    second = np.zeros((2, H, W), int)
    second[:, 4:12, 10:18] = 2  # IoU 16/112 < 0.25 with the first pair's frame 1
    tracker = PairTracker()
    frames = [tracker.update(first), tracker.update(second), tracker.finish()]
    assert len(tracker.tracks) == 2 and tracker.parents == {2: 1}
    mappings, tracks = tracker.lineage(min_track_length=1)
    labels = np.stack([remap_labels(f, mappings[t]) for t, f in enumerate(frames)])
    assert tracks.tolist() == [[1, 0, 2, 0]]
    assert_valid(labels, tracks, tmp_path)


def test_single_and_two_frame_videos(tmp_path):
    frame = np.zeros((1, H, W), int)
    frame[0, 3:9, 3:9] = 4
    labels, tracks = track_pairs([frame])
    assert labels.shape == (1, H, W) and tracks.tolist() == [[1, 0, 0, 0]]
    assert_valid(labels, tracks, tmp_path / "one")
    tracker = PairTracker()
    tracker.update(frame)
    assert tracker.finish() is None
    labels, tracks = track_pairs(frame_pairs(three_cells(2)))
    assert labels.shape == (2, H, W) and len(tracks) == 3
    assert_valid(labels, tracks, tmp_path / "two")


def test_min_size_removes_small_instances():
    gt = three_cells(4)
    gt[:, 28:30, 28:30] = 9  # 4 px
    labels, tracks = track_pairs(frame_pairs(gt), min_size=5)
    assert (labels[:, 28:30, 28:30] == 0).all() and len(tracks) == 3


def _started_tracker() -> PairTracker:
    """A tracker that has taken one (empty) ``(2, H, W)`` pair and is not finished."""
    tracker = PairTracker()
    tracker.update(np.zeros((2, H, W), int))
    return tracker


#: (start the tracker with one pair first, call on the tracker, exception, ``match``)
TRACKER_INPUT_ERRORS = [
    pytest.param(False, lambda tr: tr.update(np.zeros((3, H, W), int)), ValueError, "pair_labels", id="three-frames"),
    pytest.param(False, lambda tr: tr.update(np.zeros((2, H, W), float)), ValueError, "dtype", id="float-labels"),
    pytest.param(True, lambda tr: tr.update(np.zeros((2, H + 1, W), int)), ValueError, "shape", id="shape-changes"),
    pytest.param(True, lambda tr: tr.update(np.zeros((1, H, W), int)), ValueError, "one frame", id="one-frame-later"),
    pytest.param(True, lambda tr: tr.lineage(), RuntimeError, "finish", id="lineage-before-finish"),
    pytest.param(False, lambda tr: PairTracker(min_iou=1.5), ValueError, "min_iou", id="min-iou-above-one"),
    pytest.param(False, lambda tr: track_pairs([]), ValueError, "no frame pair", id="no-pairs"),
]


@pytest.mark.parametrize("started, call, error, problem", TRACKER_INPUT_ERRORS)
def test_tracker_input_errors(started, call, error, problem):
    tracker = _started_tracker() if started else PairTracker()
    with pytest.raises(error, match=problem):
        call(tracker)


# ------------------------------------------------------------------------------------------------------
# divisions, gaps, border, fragments


def division_video(continuing_id: bool) -> np.ndarray:
    """Mother (id 1) in frames 0..3, daughters in 4..7 on the two halves of its last position; with
    ``continuing_id`` the upper daughter keeps the mother's id (as a clustering might)."""
    mother = moving((12, 20, 12, 20), range(4))
    upper = moving((12, 16, 12, 20), range(4, 8), dy=-1)
    objects = {1: {**mother, **upper}} if continuing_id else {1: mother, 2: upper}
    objects[3] = moving((16, 20, 12, 20), range(4, 8), dy=1)
    objects[4] = moving((2, 7, 24, 29), range(8))  # a bystander
    return make_video(8, objects)


def test_division_daughters_get_the_mother_as_parent(tmp_path):
    gt = division_video(continuing_id=False)
    labels, tracks = track_pairs(frame_pairs(gt, seed=3))
    mother = int(labels[3][gt[3] == 1][0])
    d1, d2 = int(labels[4][gt[4] == 2][0]), int(labels[4][gt[4] == 3][0])
    table = {int(r[0]): r[1:].tolist() for r in tracks}
    assert table[mother] == [0, 3, 0]
    assert table[d1] == [4, 7, mother] and table[d2] == [4, 7, mother]
    assert len(tracks) == 4
    assert_valid(labels, tracks, tmp_path)


def test_id_continuing_after_division_is_split(tmp_path):
    gt = division_video(continuing_id=True)
    tracker = PairTracker()
    frames = [tracker.update(p) for p in frame_pairs(gt, seed=4)] + [tracker.finish()]
    raw = {int(r[0]): r[1:].tolist() for r in tracker.tracks}
    raw_mother = int(frames[0][gt[0] == 1][0])
    assert raw[raw_mother][:2] == [0, 7]  # the raw id goes on through the division
    assert check_ctc_lineage(tracker.tracks, np.stack(frames)) != []  # parent does not end before child
    mappings, tracks = tracker.lineage()
    labels = np.stack([remap_labels(f, mappings[t]) for t, f in enumerate(frames)])
    mother = int(labels[3][gt[3] == 1][0])
    up, down = int(labels[4][gt[4] == 1][0]), int(labels[4][gt[4] == 3][0])
    assert len({mother, up, down}) == 3
    table = {int(r[0]): r[1:].tolist() for r in tracks}
    assert table[mother] == [0, 3, 0] and table[up] == [4, 7, mother] and table[down] == [4, 7, mother]
    assert_valid(labels, tracks, tmp_path)


def test_make_lineage_valid_rules():
    # rule 2: an id going on after a child is born from it is cut at the birth
    mappings, tracks = make_lineage_valid({1: range(8), 2: range(4, 8)}, {2: 1})
    assert tracks.tolist() == [[1, 0, 3, 0], [2, 4, 7, 1], [3, 4, 7, 1]]
    assert mappings[2] == {1: 1} and mappings[5] == {1: 2, 2: 3}
    # rule 3: a single daughter right after the end is the same cell
    mappings, tracks = make_lineage_valid({1: range(4), 2: range(4, 8)}, {2: 1})
    assert tracks.tolist() == [[1, 0, 7, 0]] and mappings[5] == {2: 1}
    # rule 1: a gap cuts an id; linked within max_gap frames
    _, tracks = make_lineage_valid({1: [0, 1, 2, 5, 6], 2: range(7)})
    assert tracks.tolist() == [[1, 0, 2, 0], [2, 0, 6, 0], [3, 5, 6, 1]]
    _, tracks = make_lineage_valid({1: [0, 1, 2, 5, 6], 2: range(7)}, max_gap=2)
    assert tracks.tolist() == [[1, 0, 2, 0], [2, 0, 6, 0], [3, 5, 6, 0]]
    # rule 4: a one-frame fragment between mother and granddaughters is removed, children re-parented
    frames = {1: range(4), 2: [4], 3: range(5, 8), 4: range(5, 8), 5: range(4, 8)}
    mappings, tracks = make_lineage_valid(frames, {2: 1, 3: 2, 4: 2, 5: 1})
    assert tracks.tolist() == [[1, 0, 3, 0], [2, 4, 7, 1], [3, 5, 7, 1], [4, 5, 7, 1]]
    assert mappings[4] == {2: 0, 5: 2}  # 0: removed
    # rule 4 then 3: a mother whose other daughter is a fragment goes on as the remaining one
    mappings, tracks = make_lineage_valid({1: range(8), 2: [4]}, {2: 1})
    assert tracks.tolist() == [[1, 0, 7, 0]] and mappings[4] == {1: 1, 2: 0}
    # exemptions: border ids and video ends; min_track_length=1 keeps everything
    _, tracks = make_lineage_valid({1: range(8), 2: [4]}, {2: 1}, border_tracks={2})
    assert len(tracks) == 3
    _, tracks = make_lineage_valid({1: range(8), 2: [7]}, {2: 1})
    assert len(tracks) == 3
    _, tracks = make_lineage_valid({1: range(8), 2: [7]}, {2: 1}, keep_fragments_at_video_ends=False)
    assert tracks.tolist() == [[1, 0, 7, 0]]
    _, tracks = make_lineage_valid({1: range(8), 2: [4]}, {2: 1}, min_track_length=1)
    assert len(tracks) == 3
    # invalid parents are dropped: self, unknown, born later
    _, tracks = make_lineage_valid({1: range(3), 2: range(1, 3)}, {1: 2, 2: 2, 3: 9}, min_track_length=1)
    assert tracks[:, 3].tolist() == [0, 0]
    with pytest.raises(ValueError, match="num_frames"):
        make_lineage_valid({1: [5]}, num_frames=3)
    with pytest.raises(ValueError, match="> 0"):
        make_lineage_valid({0: [1]})


def test_disappearing_and_reappearing_cell(tmp_path):
    boxes = moving((10, 16, 10, 16), range(8))
    del boxes[3]  # missed in frame 3
    gt = make_video(8, {1: boxes, 2: moving((24, 30, 2, 8), range(8))})
    labels, tracks = track_pairs(frame_pairs(gt, seed=5))
    before, after = int(labels[2][gt[2] == 1][0]), int(labels[4][gt[4] == 1][0])
    table = {int(r[0]): r[1:].tolist() for r in tracks}
    assert before != after
    assert table[before] == [0, 2, 0] and table[after] == [4, 7, before]  # CTC's gap link
    assert_valid(labels, tracks, tmp_path / "linked")
    # a gap longer than the parent search: no link
    labels, tracks = track_pairs(frame_pairs(gt), max_parent_gap=1)
    table = {int(r[0]): r[1:].tolist() for r in tracks}
    assert table[int(labels[4][gt[4] == 1][0])] == [4, 7, 0]
    assert_valid(labels, tracks, tmp_path / "unlinked")


def test_cell_leaving_and_entering_the_image(tmp_path):
    gt = make_video(
        8,
        {
            1: moving((10, 16, 14, 20), range(5), dx=4),  # reaches x=32 at frame 3, out at 5
            2: moving((20, 26, 4, 10), range(8)),
            3: {3: (0, 3, 0, 6)},  # one frame at the image border (entering and leaving)
        },
    )
    labels, tracks = track_pairs(frame_pairs(gt, seed=6))
    leaving = int(labels[0][gt[0] == 1][0])
    table = {int(r[0]): r[1:].tolist() for r in tracks}
    assert table[leaving] == [0, 4, 0]
    assert (labels[3][gt[3] == 3] > 0).all() and len(tracks) == 3  # short, but at the border: kept
    assert_valid(labels, tracks, tmp_path / "kept")
    labels, tracks = track_pairs(frame_pairs(gt), keep_border_fragments=False)
    assert (labels[3][gt[3] == 3] == 0).all() and len(tracks) == 2
    assert_valid(labels, tracks, tmp_path / "removed")


def test_one_frame_fragment_is_removed(tmp_path):
    gt = three_cells(6)
    gt[3, 26:30, 20:24] = 7  # spurious interior blob in frame 3 only
    labels, tracks = track_pairs(frame_pairs(gt, seed=7))
    assert (labels[3, 26:30, 20:24] == 0).all() and len(tracks) == 3
    assert_valid(labels, tracks, tmp_path)
    labels, tracks = track_pairs(frame_pairs(gt), min_track_length=1)
    assert (labels[3, 26:30, 20:24] > 0).all() and len(tracks) == 4


def test_everything_at_once_is_ctc_valid(tmp_path):
    gt = division_video(continuing_id=True)
    gt[5:8][gt[5:8] == 4] = 0  # bystander leaves ...
    gt[6:8, 2:7, 24:29] = 5  # ... and a new cell appears there after a gap of one frame
    gt[2, 26:30, 2:6] = 6  # one-frame interior fragment
    gt[:, 26:31, 26:32] = np.where(np.arange(8)[:, None, None] < 6, 8, 0)  # border cell leaving at 6
    labels, tracks = track_pairs(frame_pairs(gt, seed=8), parent_dilation=1)
    assert_valid(labels, tracks, tmp_path)
    assert (labels[2, 26:30, 2:6] == 0).all()


# ------------------------------------------------------------------------------------------------------
# tables and the checker


def test_tables_from_labels_and_checker_agree_with_ctcmetrics(tmp_path):
    gt = make_video(5, {1: {0: (2, 6, 2, 6), 1: (2, 6, 2, 6), 3: (2, 6, 2, 6)}, 2: moving((10, 14, 10, 14), range(5))})
    assert track_frames_from_labels(gt) == {1: [0, 1, 3], 2: [0, 1, 2, 3, 4]}
    naive = tracks_table_from_labels(gt)
    assert naive.tolist() == [[1, 0, 3, 0], [2, 0, 4, 0]]
    problems = check_ctc_lineage(naive, gt)
    assert problems == ["frame 2: track 1 (frames 0..3) is not in the mask"]
    assert ctcmetrics_valid(write_ctc(tmp_path / "gap", gt, naive)) == 0
    mappings, tracks = make_lineage_valid(track_frames_from_labels(gt), num_frames=5, min_track_length=1)
    fixed = np.stack([remap_labels(f, mappings[t]) for t, f in enumerate(gt)])
    assert_valid(fixed, tracks, tmp_path / "fixed")
    # table-only problems
    bad = np.array([[1, 0, 4, 0], [2, 3, 5, 1], [2, 1, 0, 0], [3, 0, 1, 7], [4, 0, 1, -1]])
    text = "\n".join(check_ctc_lineage(bad))
    for needle in ("more than one track", "not before the child", "ends (0) before", "parent 7", "negative parent"):
        assert needle in text
    assert check_ctc_lineage(np.zeros((0, 4), int)) == ["no tracks"]
    assert ctcmetrics_valid(write_ctc(tmp_path / "parent", fixed, np.array([[1, 0, 4, 0], [2, 0, 4, 1]]))) == 0


# ------------------------------------------------------------------------------------------------------
# the shortcuts for small ids give the results of the general (sorting) code


def random_label_pair(seed: int, size: int = 48, n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = np.zeros((size, size), np.int64)
    b = np.zeros((size, size), np.int64)
    for i in range(1, n + 1):
        y, x, h, w = rng.integers(0, size - 8, 2).tolist() + rng.integers(3, 9, 2).tolist()
        a[y : y + h, x : x + w] = i
        dy, dx = rng.integers(-2, 3, 2)
        b[max(y + dy, 0) : y + dy + h, max(x + dx, 0) : x + dx + w] = 2 * i + 1
    return a, b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_small_id_overlaps_equal_the_general_ones(seed):
    a, b = random_label_pair(seed)
    big = 1 << 41  # forces the sorting code path
    small = iou_pairs(a, b)
    general = iou_pairs(np.where(a > 0, a + big, a), np.where(b > 0, b + big, b))
    np.testing.assert_array_equal(small[0], general[0] - big)
    np.testing.assert_array_equal(small[1], general[1] - big)
    np.testing.assert_array_equal(small[2], general[2])
    assert greedy_iou_matching(a, b) == {
        n - big: r - big for n, r in greedy_iou_matching(a + big * (a > 0), b + big * (b > 0)).items()
    }


def test_tracker_result_does_not_depend_on_the_size_of_cluster_ids():
    gt = division_video(continuing_id=True)
    pairs = frame_pairs(gt, seed=3)
    labels, tracks = track_pairs(pairs, parent_dilation=1)
    huge = [np.where(p > 0, p + (1 << 45), 0) for p in pairs]
    labels_huge, tracks_huge = track_pairs(huge, parent_dilation=1)
    np.testing.assert_array_equal(labels, labels_huge)
    np.testing.assert_array_equal(tracks, tracks_huge)


@pytest.mark.parametrize("fraction, kept", [(0.0, {1, 2}), (0.25, {1, 2}), (0.3, {2}), (1.0, {2})])
def test_drop_dim_instances_keeps_instances_with_enough_bright_pixels(fraction, kept):
    labels = np.zeros((2, 10, 10), np.int64)
    labels[:, :4, :4] = 1  # 4 of its 16 pixels bright in frame 0, none in frame 1
    labels[:, 6:9, 6:9] = 2  # all bright in both frames
    fg = np.zeros((2, 10, 10), bool)
    fg[0, :4, 0] = True
    fg[:, 6:9, 6:9] = True
    out = drop_dim_instances(labels, fg, fraction)
    assert set(np.unique(out[0])) - {0} == kept
    assert set(np.unique(out[1])) - {0} == ({1, 2} if fraction == 0.0 else {2})
    with pytest.raises(ValueError, match="foreground: expected the labels' shape"):
        drop_dim_instances(labels, fg[:1], fraction)


def test_tracker_with_min_foreground_fraction_needs_the_foreground():
    labels = np.zeros((2, 8, 8), np.int64)
    labels[:, 1:4, 1:4] = 1
    labels[:, 5:7, 5:7] = 2
    fg = np.zeros_like(labels, dtype=bool)
    fg[:, 1:4, 1:4] = True
    with pytest.raises(ValueError, match="needed with min_foreground_fraction"):
        PairTracker(min_foreground_fraction=0.5).update(labels)
    out, tracks = track_pairs([labels], min_foreground_fraction=0.5, foregrounds=[fg], min_track_length=1)
    assert len(tracks) == 1 and not out[:, 5:7, 5:7].any() and out[:, 1:4, 1:4].all()


def test_drop_dim_instances_takes_ids_of_any_size():
    labels = np.zeros((1, 6, 6), np.int64)
    labels[0, :2, :2] = 10**12  # no bright pixel
    labels[0, 3:, 3:] = 7
    fg = np.zeros_like(labels, dtype=bool)
    fg[0, 3:, 3:] = True
    assert set(np.unique(drop_dim_instances(labels, fg, 0.5))) == {0, 7}


def _halo_frame():
    """One 40x40 frame: a bright nucleus (1, 8x8), a dim piece 2 px from it (2), a dim blob 20 px away (3),
    an instance (4) with a quarter of its pixels bright (neither dim nor bright) 2 px below the nucleus; the
    nucleus' equivalent diameter is 9.03 px."""
    labels = np.zeros((1, 40, 40), np.int64)
    labels[0, 10:18, 10:18] = 1
    labels[0, 10:18, 20:22] = 2  # 3 px right of the nucleus' last column
    labels[0, 30:34, 30:34] = 3  # far from it
    labels[0, 20:22, 10:18] = 4
    fg = np.zeros_like(labels, dtype=bool)
    fg[0, 10:18, 10:18] = True
    fg[0, 20, 10:14] = True
    return labels, fg


@pytest.mark.parametrize(
    "distance, dropped",
    [
        (0.0, set()),
        (0.1, set()),  # 0.9 px: the piece is 3 px away
        (0.4, {2}),  # 3.6 px: the piece goes; the far blob (18.4 px away) and instance 4 (not dim) stay
        (2.0, {2}),  # 18.1 px
        (2.5, {2, 3}),  # 22.6 px: the far blob too
    ],
)
def test_drop_halo_instances_drops_dim_instances_near_bright_ones(distance, dropped):
    labels, fg = _halo_frame()
    out = drop_halo_instances(labels, fg, distance)
    assert {1, 2, 3, 4} - set(np.unique(out)) == dropped
    np.testing.assert_array_equal(out[np.isin(labels, [1, 4])], labels[np.isin(labels, [1, 4])])


def test_drop_halo_instances_without_a_bright_instance_and_with_a_bad_foreground():
    labels, fg = _halo_frame()
    np.testing.assert_array_equal(drop_halo_instances(labels, np.zeros_like(fg), 5.0), labels)
    with pytest.raises(ValueError, match="foreground: expected the labels' shape"):
        drop_halo_instances(labels, fg[0], 1.0)


def test_tracker_with_halo_distance_needs_the_foreground_and_drops_the_halo():
    labels, fg = _halo_frame()
    pair, fgs = np.repeat(labels, 2, axis=0), np.repeat(fg, 2, axis=0)
    with pytest.raises(ValueError, match="needed with min_foreground_fraction > 0 or halo_distance > 0"):
        PairTracker(halo_distance=0.4).update(pair)
    out, tracks = track_pairs([pair], halo_distance=0.4, foregrounds=[fgs], min_track_length=1)
    assert len(tracks) == 3 and not out[:, 10:18, 20:22].any() and out[:, 30:34, 30:34].all()
