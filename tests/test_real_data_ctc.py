"""The CTC reader and writer on the real Fluo-N2DH-SIM+ and Fluo-N2DH-GOWT1 training sequences (../shared/data).

Only a few frames are read where the check allows it, to stay fast.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from cosinetrack.apps.cell.reader import (
    find_ctc_sequences,
    read_ctc_frame,
    read_ctc_label,
    read_ctc_training_video,
    read_ctc_video,
    read_man_track,
)
from cosinetrack.apps.cell.validation import validate_ctc_result
from cosinetrack.apps.cell.writer import CTCResultWriter

pytestmark = pytest.mark.real_data


def _sequence(shared_data, name: str) -> dict:
    seqs = find_ctc_sequences(shared_data / "ctc" / name)
    assert [s.name for s in seqs] == ["01"]
    return seqs[0]


def _check_ids_match_tracks(data: dict) -> None:
    """Every track alive in a frame (B <= t <= E) is in its labels, and no other id except fresh SEG ids."""
    tracks = data["tracks"]
    for i, t in enumerate(data["frames"]):
        alive = set(tracks[(tracks[:, 1] <= t) & (tracks[:, 2] >= t), 0].tolist())
        present = set(np.unique(data["label"][i]).tolist()) - {-1, 0}
        assert alive <= present, f"frame {t}: tracks {sorted(alive - present)} missing"
        extra = present - alive
        assert all(e > tracks[:, 0].max() for e in extra), f"frame {t}: unexpected ids {sorted(extra)}"


def test_sim_plus_sequence(shared_data):
    seq = _sequence(shared_data, "Fluo-N2DH-SIM+")
    assert seq.digits == 3 and list(seq.frames) == list(range(65))
    assert sorted(seq.seg) == list(range(65)) and sorted(seq.tra) == list(range(65))
    assert read_ctc_frame(seq.images[0]).dtype == np.uint16
    frames = [0, 1, 30, 64]
    video = read_ctc_video(seq, frames=frames)
    assert video.shape == (4, 690, 628) and video.dtype == np.float32
    data = read_ctc_training_video(seq, frames=frames)
    assert data["image"].shape == data["label"].shape == (4, 690, 628)
    np.testing.assert_array_equal(data["image"], video)
    assert data["complete"].all() and data["has_seg"].all()  # SIM+ segments every cell of every frame
    assert data["label"].min() == 0  # complete frames: background known, nothing unknown
    assert data["tracks"].shape == (95, 4)
    _check_ids_match_tracks(data)
    # each SEG cell carries the id of the TRA marker inside it
    seg, tra = read_ctc_label(seq.seg[30]), read_ctc_label(seq.tra[30])
    label = data["label"][2]
    for cell in np.unique(seg)[1:5]:
        ids, counts = np.unique(tra[(seg == cell) & (tra > 0)], return_counts=True)
        assert (label[seg == cell] == ids[np.argmax(counts)]).all()


def test_gowt1_sequence(shared_data):
    seq = _sequence(shared_data, "Fluo-N2DH-GOWT1")
    assert seq.digits == 3 and list(seq.frames) == list(range(92))
    assert len(seq.seg) == 30 and len(seq.tra) == 92
    # A SEG frame is complete only where SEG covers every tracked cell: in GOWT1 most SEG frames annotate
    # one to three cells. Computed here from the raw files of all 30 SEG frames (reads only SEG + TRA).
    covers_all = {}
    for t, path in seq.seg.items():
        seg, tra = read_ctc_label(path), read_ctc_label(seq.tra[t])
        covers_all[t] = set(np.unique(tra[seg > 0]).tolist()) - {0} == set(np.unique(tra).tolist()) - {0}
    assert sorted(t for t, full in covers_all.items() if full) == [21, 31, 33, 39]
    frames = [0, 2, 20, 21, 31, 91]
    data = read_ctc_training_video(seq, frames=frames)
    assert data["image"].shape == data["label"].shape == (6, 1024, 1024)
    np.testing.assert_array_equal(data["has_seg"], [t in seq.seg for t in frames])
    np.testing.assert_array_equal(data["complete"], [covers_all.get(t, False) for t in frames])
    for i, t in enumerate(frames):
        # background is taught only on complete frames
        assert data["label"][i].min() == (0 if data["complete"][i] else -1), t
    _check_ids_match_tracks(data)
    parents = data["tracks"][data["tracks"][:, 3] > 0]
    assert len(parents) > 0  # GOWT1 has divisions


def test_gt_round_trip_validates(shared_data, tmp_path):
    """GT TRA masks + man_track.txt, written as a result (first 12 frames, tracks clipped), are CTC-valid."""
    seq = _sequence(shared_data, "Fluo-N2DH-SIM+")
    num_frames = 12
    tracks = read_man_track(seq.man_track)
    tracks = tracks[tracks[:, 1] < num_frames].copy()
    tracks[:, 2] = np.minimum(tracks[:, 2], num_frames - 1)
    with CTCResultWriter.for_sequence(seq, tmp_path) as writer:
        for t in range(num_frames):
            writer.write_frame(t, read_ctc_frame(seq.tra[t]))
        res = writer.close(tracks)
    assert res == os.path.join(tmp_path, "01_RES")
    assert sorted(os.listdir(res))[:2] == ["mask000.tif", "mask001.tif"]
    np.testing.assert_array_equal(read_ctc_frame(os.path.join(res, "mask011.tif")), read_ctc_frame(seq.tra[11]))
    result = validate_ctc_result(res)
    assert result, result.explanation
    # and a broken table is caught
    tracks[0, 2] += 1
    with open(os.path.join(res, "res_track.txt"), "w") as f:
        f.writelines(f"{a} {b} {c} {d}\n" for a, b, c, d in tracks.tolist())
    assert not validate_ctc_result(res)
