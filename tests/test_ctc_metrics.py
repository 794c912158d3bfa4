"""CTC measures with py-ctcmetrics (cosinetrack.apps.cell.scoring) and held-out subsequences (write_ctc_subsequence)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cosinetrack.apps.cell.reader import find_ctc_sequences, read_ctc_label, read_man_track
from cosinetrack.apps.cell.scoring import ctc_scores, format_ctc_table, lineage_counts
from cosinetrack.apps.cell.synthetic import generate_cell_video, write_ctc_sequence
from cosinetrack.apps.cell.validation import validate_ctc_result
from cosinetrack.apps.cell.writer import write_ctc_result, write_ctc_subsequence
from cosinetrack.errors import CosineTrackDataError


def _gt_as_result(sequence: dict, res_dir: Path) -> str:
    """The TRA ground truth of ``sequence`` written as a result folder (masks = TRA markers)."""
    masks = (read_ctc_label(sequence.tra[t]) for t in sorted(sequence.tra))
    return write_ctc_result(res_dir, masks, read_man_track(sequence.man_track), digits=sequence.digits)


@pytest.fixture
def synthetic(tmp_path: Path) -> dict:
    """A 6-frame 64x64 synthetic sequence in the CTC layout (SEG = TRA = full masks)."""
    images, labels, tracks = generate_cell_video(3, num_frames=6, image_size=(64, 64))
    write_ctc_sequence(tmp_path / "data", "01", images, labels, tracks)
    return {"root": tmp_path / "data", "gt": tmp_path / "data" / "01_GT", "labels": labels, "tracks": tracks}


def test_gt_against_itself_scores_one(synthetic, tmp_path):
    res = write_ctc_result(tmp_path / "res" / "01_RES", synthetic["labels"], synthetic["tracks"])
    scores = ctc_scores(res, synthetic["gt"])
    assert scores["valid"] is True and scores["problems"] == ()
    for key in ("SEG", "TRA", "DET", "OP_CTB"):
        assert scores[key] == pytest.approx(1.0), key
    counts = lineage_counts(synthetic["tracks"])
    assert scores["num_tracks"] == scores["gt_tracks"] == counts["tracks"] > 0
    assert scores["num_divisions"] == scores["gt_divisions"] == counts["divisions"] >= 1
    assert scores["num_frames"] == scores["seg_frames"] == 6
    assert scores["AOGM"] == 0
    table = format_ctc_table([{"data set": "synthetic", "frames": "0-5", **scores}])
    lines = table.splitlines()
    assert lines[0].startswith("| data set | frames | SEG | TRA | DET | OP_CTB | valid |")
    assert "| synthetic | 0-5 | 1.000 | 1.000 | 1.000 | 1.000 | yes |" in lines[2]


def test_degraded_result_scores_lower(synthetic, tmp_path):
    labels, tracks = synthetic["labels"].copy(), synthetic["tracks"].copy()
    longest = int(tracks[np.argmax(tracks[:, 2] - tracks[:, 1]), 0])
    labels[labels == longest] = 0  # one cell missed in every frame
    tracks = tracks[tracks[:, 0] != longest]
    tracks[tracks[:, 3] == longest, 3] = 0
    eroded = np.zeros_like(labels)  # and the others shrunk: a 4-neighbor of another id or background goes
    for t, frame in enumerate(labels):
        keep = frame.copy()
        keep[1:][frame[1:] != frame[:-1]] = 0
        keep[:-1][frame[:-1] != frame[1:]] = 0
        eroded[t] = keep
    present = {t: set(np.unique(f[f > 0]).tolist()) for t, f in enumerate(eroded)}
    lost = [int(k) for k, b, e, _ in tracks if any(k not in present[t] for t in range(b, e + 1))]
    assert not lost, "erosion removed a whole cell from a frame; pick another seed"
    res = write_ctc_result(tmp_path / "res" / "01_RES", eroded, tracks)
    scores = ctc_scores(res, synthetic["gt"])
    assert scores["valid"]
    assert scores["SEG"] < 0.95 and scores["TRA"] < 1.0 and scores["DET"] < 1.0
    assert scores["OP_CTB"] == pytest.approx((scores["SEG"] + scores["TRA"]) / 2)
    assert scores["AOGM_FN"] > 0 and scores["num_tracks"] == len(tracks)


def test_invalid_result_gets_no_scores(synthetic, tmp_path):
    res = Path(write_ctc_result(tmp_path / "res" / "01_RES", synthetic["labels"], synthetic["tracks"]))
    mask = tifffile.imread(res / "mask002.tif")
    k = int(np.unique(mask[mask > 0])[0])
    mask[mask == k] = 0  # the table says k is in frame 2, the mask no longer has it
    tifffile.imwrite(res / "mask002.tif", mask, compression="zlib")
    scores = ctc_scores(res, synthetic["gt"])
    assert scores["valid"] is False
    assert all(math.isnan(scores[key]) for key in ("SEG", "TRA", "DET", "OP_CTB"))
    assert any("py-ctcmetrics" in p for p in scores["problems"])
    assert "n/a" in format_ctc_table([scores], columns=["SEG", "valid"])


def _result(synthetic: dict, tmp_path: Path) -> str:
    """The synthetic ground truth written as the result folder ``res/01_RES``."""
    return write_ctc_result(tmp_path / "res" / "01_RES", synthetic["labels"], synthetic["tracks"])


#: (make the result and ground-truth folders from the ``synthetic`` fixture and ``tmp_path``, extra
#: arguments, exception, ``match``); the folders are made before ``ctc_scores`` is called.
SCORE_ERRORS = [
    pytest.param(
        lambda s, t: (t / "nowhere_RES", s["gt"]), {}, CosineTrackDataError, "nowhere_RES", id="missing-result"
    ),
    pytest.param(
        lambda s, t: (_result(s, t), t / "nowhere_GT"), {}, CosineTrackDataError, "nowhere_GT", id="missing-gt"
    ),
    pytest.param(
        lambda s, t: (_result(s, t), s["gt"]), {"metrics": ("SEGG",)}, ValueError, "unknown", id="unknown-metric"
    ),
    pytest.param(
        lambda s, t: (write_ctc_result(t / "res" / "02_RES", s["labels"][:4], None), s["gt"]),
        {},
        CosineTrackDataError,
        "4 mask files",
        id="too-few-masks",
    ),
]


@pytest.mark.parametrize("make_folders, kwargs, error, problem", SCORE_ERRORS)
def test_missing_folders_and_bad_arguments(synthetic, tmp_path, make_folders, kwargs, error, problem):
    res, gt = make_folders(synthetic, tmp_path)
    with pytest.raises(error, match=problem):
        ctc_scores(res, gt, **kwargs)


# ----------------------------------------------------------------------------------------------------
# write_ctc_subsequence
# ----------------------------------------------------------------------------------------------------

#: L B E P of the hand-made ground truth: 1 divides into 2, 3 at frame 3; 4 into 5, 6 at frame 4.
HAND_TRACKS = np.array(
    [[1, 0, 2, 0], [2, 3, 5, 1], [3, 3, 5, 1], [4, 0, 3, 0], [5, 4, 5, 4], [6, 4, 5, 4], [7, 1, 1, 0]]
)


def _hand_made(root: Path) -> dict:
    """6 frames of 32x40: track k is a 6x6 block at its own place in the frames B..E; SEG on frames 0, 3, 5."""
    labels = np.zeros((6, 32, 40), dtype=np.uint16)
    for k, b, e, _ in HAND_TRACKS:
        r, c = divmod(int(k) - 1, 4)
        labels[b : e + 1, 2 + 12 * r : 8 + 12 * r, 2 + 10 * c : 8 + 10 * c] = k
    images = (labels * 20 + 10).astype(np.uint16) + np.arange(6, dtype=np.uint16)[:, None, None]
    write_ctc_sequence(root, "01", images, labels, HAND_TRACKS)
    for t in (1, 2, 4):
        (root / "01_GT" / "SEG" / f"man_seg{t:03d}.tif").unlink()
    return find_ctc_sequences(root / "01")[0]


def test_subsequence_renumbers_frames_and_clips_tracks(tmp_path):
    sequence = _hand_made(tmp_path / "data")
    sub = write_ctc_subsequence(sequence, [3, 4, 5], tmp_path / "window")
    assert sub.name == "01" and list(sub.frames) == [0, 1, 2] and sub.digits == 3
    assert sorted(sub.tra) == [0, 1, 2] and sorted(sub.seg) == [0, 2]
    for new, old in ((0, 3), (1, 4), (2, 5)):
        assert Path(sub.images[new]).read_bytes() == Path(sequence.images[old]).read_bytes()
        assert Path(sub.tra[new]).read_bytes() == Path(sequence.tra[old]).read_bytes()
    assert Path(sub.seg[2]).read_bytes() == Path(sequence.seg[5]).read_bytes()
    # mother 1 ends at frame 2, before the window: dropped, so its daughters 2, 3 lose their parent;
    # 4 divides inside the window and keeps its daughters; 7 lies outside and is dropped
    expected = [[2, 0, 2, 0], [3, 0, 2, 0], [4, 0, 0, 0], [5, 1, 2, 4], [6, 1, 2, 4]]
    assert read_man_track(sub.man_track).tolist() == expected
    # the window starting one frame earlier keeps the mother and the link
    earlier = write_ctc_subsequence(sequence, range(2, 5), tmp_path / "window2", name="07")
    assert earlier.name == "07" and sorted(earlier.seg) == [1]
    expected = [[1, 0, 0, 0], [2, 1, 2, 1], [3, 1, 2, 1], [4, 0, 1, 0], [5, 2, 2, 4], [6, 2, 2, 4]]
    assert read_man_track(earlier.man_track).tolist() == expected
    # the subsequence ground truth is CTC-valid and scores 1 against itself
    for i, seq in enumerate((sub, earlier)):
        res = _gt_as_result(seq, tmp_path / f"res{i}" / "01_RES")
        assert validate_ctc_result(res).valid
        scores = ctc_scores(res, seq.gt_dir)
        assert scores["valid"] and scores["SEG"] == scores["TRA"] == scores["DET"] == 1.0
    # the input is untouched
    assert read_man_track(sequence.man_track).tolist() == HAND_TRACKS.tolist()
    assert sorted(find_ctc_sequences(tmp_path / "data" / "01")[0].seg) == [0, 3, 5]


#: (frames, output folder under ``tmp_path``, write frames 0, 1 there first, exception, ``match``)
SUBSEQUENCE_REFUSALS = [
    pytest.param([1, 3], "out", False, ValueError, "consecutive", id="not-consecutive"),
    pytest.param([5, 6], "out", False, CosineTrackDataError, "not found", id="frame-not-found"),
    pytest.param([0, 1], "data", False, ValueError, "input folder", id="into-the-dataset"),
    pytest.param([0, 1], "data/01_GT", False, ValueError, "input folder", id="into-the-ground-truth"),
    pytest.param([2, 3], "out", True, FileExistsError, None, id="existing-output"),
]


@pytest.mark.parametrize("frames, out, existing, error, problem", SUBSEQUENCE_REFUSALS)
def test_subsequence_refusals(tmp_path, frames, out, existing, error, problem):
    sequence = _hand_made(tmp_path / "data")
    if existing:
        write_ctc_subsequence(sequence, [0, 1], tmp_path / out)
    with pytest.raises(error, match=problem):
        write_ctc_subsequence(sequence, frames, tmp_path / out)


def test_subsequence_overwrite(tmp_path):
    sequence = _hand_made(tmp_path / "data")
    write_ctc_subsequence(sequence, [0, 1], tmp_path / "out")
    sub = write_ctc_subsequence(sequence, [2, 3], tmp_path / "out", overwrite=True)
    assert read_man_track(sub.man_track).tolist() == [[1, 0, 0, 0], [2, 1, 1, 1], [3, 1, 1, 1], [4, 0, 1, 0]]


@pytest.mark.real_data
def test_real_sim_last_frames_score_one(shared_data, tmp_path):
    sequence = find_ctc_sequences(shared_data / "ctc" / "Fluo-N2DH-SIM+" / "01")[0]
    frames = list(sequence.frames)[-5:]
    sub = write_ctc_subsequence(sequence, frames, tmp_path / "heldout")
    assert list(sub.frames) == list(range(5)) and sorted(sub.seg) == list(range(5))
    tracks = read_man_track(sub.man_track)
    assert len(tracks) and tracks[:, 1].min() == 0 and tracks[:, 2].max() == 4
    res = _gt_as_result(sub, tmp_path / "res" / "01_RES")
    scores = ctc_scores(res, sub.gt_dir)
    assert scores["valid"]
    for key in ("SEG", "TRA", "DET", "OP_CTB"):
        assert scores[key] == pytest.approx(1.0), key
