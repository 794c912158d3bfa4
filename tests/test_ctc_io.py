"""CTC reader (apps.cell.reader) and result writer (apps.cell.writer) on tiny synthetic sequences."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cosinetrack.apps.cell.datasets import read_ctc_cases
from cosinetrack.apps.cell.layout import MASK_RE, ctc_mask_name, numbered_files
from cosinetrack.apps.cell.reader import (
    find_ctc_sequences,
    iter_ctc_frames,
    iter_ctc_training_frames,
    merge_seg_tra,
    read_ctc_frame,
    read_ctc_label,
    read_ctc_training_video,
    read_ctc_video,
    read_man_track,
)
from cosinetrack.apps.cell.scoring import ctc_scores
from cosinetrack.apps.cell.sequence import VideoPart
from cosinetrack.apps.cell.validation import check_ctc_result_files, check_tracks, validate_ctc_result
from cosinetrack.apps.cell.writer import (
    CTCResultWriter,
    relabel_ctc_masks,
    tracks_from_masks,
    write_ctc_result,
    write_track_table,
)
from cosinetrack.errors import CosineTrackDataError
from cosinetrack.tracking.lineage import check_ctc_lineage, check_tracks_against_labels, tracks_table_from_labels


def _compression() -> str:
    """LZW like the official files when this tifffile/imagecodecs can write it, else zlib."""
    try:
        tifffile.imwrite(os.devnull, np.zeros((2, 2), np.uint16), compression="lzw")
        return "lzw"
    except Exception:
        return "zlib"


COMPRESSION = _compression()


def _tif(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array, compression=COMPRESSION)
    return path


def _blob_video(num_frames: int = 4, shape: tuple[int, int] = (16, 20)) -> np.ndarray:
    """(T, H, W) uint16 labels: cell 1 all frames, cell 2 frames 0..1, cell 3 from frame 2 (child of 2)."""
    masks = np.zeros((num_frames, *shape), dtype=np.uint16)
    for t in range(num_frames):
        masks[t, 2:6, 2 + t : 6 + t] = 1
        if t < 2:
            masks[t, 9:14, 9:14] = 2
        else:
            masks[t, 10:13, 12:16] = 3
    return masks


BLOB_TRACKS = np.array([[1, 0, 3, 0], [2, 0, 1, 0], [3, 2, 3, 2]])


def _make_sequence(root: Path, name: str = "01", digits: int = 3, seg_frames=(0, 2), num_frames: int = 4) -> Path:
    """A CTC sequence: images, TRA markers (small squares inside the cells), SEG on ``seg_frames``."""
    masks = _blob_video(num_frames)
    for t in range(num_frames):
        image = (masks[t] > 0).astype(np.uint16) * 1000 + t
        _tif(root / name / f"t{t:0{digits}d}.tif", image)
        markers = np.zeros_like(masks[t])
        for label in np.unique(masks[t])[1:]:
            ys, xs = np.nonzero(masks[t] == label)
            markers[ys.min() + 1 : ys.min() + 3, xs.min() + 1 : xs.min() + 3] = label
        _tif(root / f"{name}_GT" / "TRA" / f"man_track{t:0{digits}d}.tif", markers)
        if t in seg_frames:
            _tif(root / f"{name}_GT" / "SEG" / f"man_seg{t:0{digits}d}.tif", masks[t] * 10)  # SEG ids differ
    write_track_table(root / f"{name}_GT" / "TRA" / "man_track.txt", BLOB_TRACKS[BLOB_TRACKS[:, 1] < num_frames])
    return root


# ----------------------------------------------------------------------------------------------------
# finding and reading
# ----------------------------------------------------------------------------------------------------


def test_find_sequences_dataset_and_sequence_folder(tmp_path):
    _make_sequence(tmp_path, "01", digits=3)
    _tif(tmp_path / "02" / "t0000.tif", np.zeros((4, 4), np.uint8))
    _tif(tmp_path / "02" / "t0001.tif", np.zeros((4, 4), np.uint8))
    (tmp_path / "notes").mkdir()
    seqs = find_ctc_sequences(tmp_path)
    assert [s.name for s in seqs] == ["01", "02"]
    one, two = seqs
    assert one.digits == 3 and two.digits == 4
    assert list(one.frames) == [0, 1, 2, 3] and list(two.frames) == [0, 1]
    assert sorted(one.seg) == [0, 2] and sorted(one.tra) == [0, 1, 2, 3]
    assert one.gt_dir == str(tmp_path / "01_GT") and one.man_track.endswith("man_track.txt")
    assert two.gt_dir is None and two.seg == {} and two.man_track is None
    # a sequence folder itself
    (direct,) = find_ctc_sequences(tmp_path / "01")
    assert direct.name == "01" and direct.gt_dir == one.gt_dir and list(direct.frames) == list(one.frames)


def _empty_sequence(tmp_path: Path) -> Path:
    """``tmp_path`` holding an empty folder ``01``."""
    (tmp_path / "01").mkdir()
    return tmp_path


def _unequal_digits(tmp_path: Path) -> Path:
    """``tmp_path`` holding a sequence ``01`` whose frame names have 3 and 4 digits."""
    _tif(tmp_path / "01" / "t000.tif", np.zeros((4, 4), np.uint8))
    _tif(tmp_path / "01" / "t0001.tif", np.zeros((4, 4), np.uint8))
    return tmp_path


#: (make the folder from ``tmp_path``, error ``match``, whether the message starts with the folder)
FIND_SEQUENCES_ERRORS = [
    pytest.param(lambda t: t / "missing", "not found", False, id="missing-folder"),
    pytest.param(_empty_sequence, "no CTC sequence", True, id="empty-sequence-folder"),
    pytest.param(_unequal_digits, "digit counts", False, id="unequal-digit-counts"),
]


@pytest.mark.parametrize("make_folder, problem, names_folder", FIND_SEQUENCES_ERRORS)
def test_find_sequences_errors(tmp_path, make_folder, problem, names_folder):
    folder = make_folder(tmp_path)
    with pytest.raises(CosineTrackDataError, match=problem) as err:
        find_ctc_sequences(folder)
    if names_folder:
        assert str(err.value).startswith(str(folder))


def test_read_video_and_streaming(tmp_path):
    _make_sequence(tmp_path, digits=4)
    (seq,) = find_ctc_sequences(tmp_path)
    video = read_ctc_video(seq)
    assert video.shape == (4, 16, 20) and video.dtype == np.float32
    assert video[2, 0, 0] == 2 and video[2].max() == 1002
    sub = read_ctc_video(seq, frames=[3, 1])
    np.testing.assert_array_equal(sub, video[[3, 1]])
    streamed = list(iter_ctc_frames(seq))
    assert [t for t, _ in streamed] == [0, 1, 2, 3]
    np.testing.assert_array_equal(streamed[1][1], video[1])
    with pytest.raises(CosineTrackDataError, match=r"frame\(s\) \[7\] not found"):
        read_ctc_video(seq, frames=[0, 7])


def _stack(tmp_path: Path) -> tuple[Path, Path]:
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((3, 4, 5), np.uint16), photometric="minisblack")
    return stack, stack


def _broken(tmp_path: Path) -> tuple[Path, Path]:
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a tiff at all")
    return broken, broken


def _odd_frame_sequence(tmp_path: Path) -> tuple[object, Path]:
    """A sequence with a frame of another size, and that frame's file."""
    _make_sequence(tmp_path / "ds")
    odd = _tif(tmp_path / "ds" / "01" / "t002.tif", np.zeros((5, 5), np.uint16))
    (seq,) = find_ctc_sequences(tmp_path / "ds")
    return seq, odd


#: (make the argument and the file the message must start with (or None) from ``tmp_path``, reader, ``match``)
READ_FRAME_ERRORS = [
    pytest.param(_stack, read_ctc_frame, "2D", id="3d-stack"),
    pytest.param(_broken, read_ctc_frame, "cannot read", id="broken-tiff"),
    pytest.param(
        lambda t: (_tif(t / "float.tif", np.ones((4, 5), np.float32)), None),
        read_ctc_label,
        "integers",
        id="float-label",
    ),
    # a frame of another size in a sequence names that file
    pytest.param(_odd_frame_sequence, read_ctc_video, "differs", id="frame-size-differs"),
]


@pytest.mark.parametrize("make_arg, reader, problem", READ_FRAME_ERRORS)
def test_read_frame_errors(tmp_path, make_arg, reader, problem):
    arg, named = make_arg(tmp_path)
    with pytest.raises(CosineTrackDataError, match=problem) as err:
        reader(arg)
    if named is not None:
        assert str(err.value).startswith(str(named))


def test_read_frame_takes_a_single_plane_stack(tmp_path):
    assert read_ctc_frame(_tif(tmp_path / "single.tif", np.ones((1, 4, 5), np.uint8))).shape == (4, 5)


# ----------------------------------------------------------------------------------------------------
# man_track.txt
# ----------------------------------------------------------------------------------------------------


def test_read_man_track(tmp_path):
    path = tmp_path / "man_track.txt"
    path.write_text("1 0 4 0\n2\t5\t7\t1\n\n3 5 9 1  \n")
    tracks = read_man_track(path)
    np.testing.assert_array_equal(tracks, [[1, 0, 4, 0], [2, 5, 7, 1], [3, 5, 9, 1]])
    assert tracks.dtype == np.int64
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert read_man_track(empty).shape == (0, 4)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("1 0 4 0\n2 5 x 1\n", "line 2.*four integers"),
        ("1 0 4 0\n2 5 7\n", "line 2.*four integers"),
        ("1 0 4 0\n0 5 7 0\n", "line 2.*L must be > 0"),
        ("1 0 4 0\n2 6 5 0\n", "line 2.*E is before"),
        ("1 0 4 0\n1 5 7 0\n", "line 2.*already defined on line 1"),
        ("1 0 4 0\n2 5 7 9\n", "line 2.*parent 9 .* not in the table"),
        ("1 0 4 0\n2 4 7 1\n", "line 2.*parent 1 ends at frame 4"),
        ("1 0 4 -1\n", "line 1.*P must be >= 0"),
    ],
)
def test_read_man_track_bad_line(tmp_path, text, problem):
    path = tmp_path / "man_track.txt"
    path.write_text(text)
    with pytest.raises(CosineTrackDataError, match=problem) as err:
        read_man_track(path)
    assert str(err.value).startswith(str(path))


# ----------------------------------------------------------------------------------------------------
# SEG + TRA merge
# ----------------------------------------------------------------------------------------------------


def test_merge_seg_label_takes_bigger_overlap():
    seg = np.zeros((6, 8), np.uint16)
    seg[1:5, 1:7] = 4  # one SEG label over two markers
    tra = np.zeros_like(seg)
    tra[2:4, 1:2] = 7  # 2 pixels
    tra[2:4, 4:6] = 9  # 4 pixels: wins
    labels, complete = merge_seg_tra(seg, tra)
    assert labels.dtype == np.int64
    # 9 takes the SEG label; 7 took none, so it stays as a marker-only label painted over it -> incomplete
    assert not complete
    assert (labels[tra == 7] == 7).all()
    assert (labels[(seg == 4) & (tra != 7)] == 9).all()
    assert (labels[seg == 0] == -1).all()


def test_merge_tie_goes_to_smallest_id():
    seg = np.zeros((4, 6), np.uint8)
    seg[:, :] = 1
    tra = np.zeros_like(seg)
    tra[0, 0:2] = 5
    tra[3, 0:2] = 3
    labels, _ = merge_seg_tra(seg, tra)
    assert (labels[(tra != 5)] == 3).all()


def test_merge_complete_frame_and_fresh_ids():
    seg = np.zeros((8, 8), np.uint16)
    seg[0:3, 0:3] = 1
    seg[5:8, 5:8] = 2  # no marker: fresh id
    seg[0:2, 6:8] = 3  # no marker: next fresh id
    tra = np.zeros_like(seg)
    tra[1, 1] = 12
    labels, complete = merge_seg_tra(seg, tra, first_fresh_id=100)
    assert complete
    assert (labels[seg == 1] == 12).all()
    assert (labels[seg == 2] == 100).all() and (labels[seg == 3] == 101).all()
    assert (labels[seg == 0] == 0).all()  # background is known on a complete frame
    labels, _ = merge_seg_tra(seg, tra)  # default: above the frame's TRA ids
    assert (labels[seg == 2] == 13).all()


def test_merge_without_seg_keeps_markers_only():
    tra = np.zeros((5, 5), np.uint16)
    tra[1:3, 1:3] = 4
    labels, complete = merge_seg_tra(None, tra)
    assert not complete
    assert (labels[tra == 4] == 4).all() and (labels[tra == 0] == -1).all()


def test_merge_seg_missing_a_tra_cell():
    seg = np.zeros((10, 10), np.uint16)
    seg[0:4, 0:4] = 1
    tra = np.zeros_like(seg)
    tra[1:3, 1:3] = 2  # covered by SEG
    tra[7:9, 7:9] = 5  # not segmented
    labels, complete = merge_seg_tra(seg, tra)
    assert not complete  # background not taught
    assert (labels[seg == 1] == 2).all()
    assert (labels[tra == 5] == 5).all()
    assert (labels[(seg == 0) & (tra == 0)] == -1).all()


@pytest.mark.parametrize(
    "with_seg, margin",
    [
        (False, None),  # off: nothing is background on a frame that is not complete
        (True, None),
        (False, 3),  # markers only (no SEG file)
        (True, 3),  # a partial SEG file
        (True, 0),  # every unannotated pixel
    ],
)
def test_merge_background_margin_far_from_every_annotated_cell(with_seg, margin):
    tra = np.zeros((20, 20), np.uint16)
    tra[2:5, 2:5] = 1  # a marker
    tra[14:17, 14:17] = 2  # a second cell, not in SEG
    seg = None
    if with_seg:
        seg = np.zeros_like(tra)
        seg[1:6, 1:6] = 7  # SEG of cell 1 only: the frame is not complete
    labels, complete = merge_seg_tra(seg, tra, background_margin=margin)
    assert not complete
    annotated = (tra > 0) | (seg > 0 if seg is not None else False)
    assert (labels[tra == 2] == 2).all() and (labels[tra == 1] == 1).all()
    if margin is None:
        assert (labels[~annotated] == -1).all()
        return
    # exactly the pixels farther than the margin from every annotated pixel are background
    yy, xx = np.mgrid[:20, :20]
    pts = np.argwhere(annotated)
    dist = np.sqrt(((yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2).min(-1))
    np.testing.assert_array_equal(labels == 0, dist > margin)
    np.testing.assert_array_equal(labels == -1, (dist > 0) & (dist <= margin))


def test_merge_background_margin_leaves_complete_frames_and_rejects_negative_margins():
    seg = np.zeros((8, 8), np.uint16)
    seg[1:3, 1:3] = 1
    tra = seg.copy()
    complete_labels, complete = merge_seg_tra(seg, tra, background_margin=1)
    assert complete and (complete_labels[seg == 0] == 0).all()
    with pytest.raises(ValueError, match="background_margin"):
        merge_seg_tra(seg, tra, background_margin=-1)


def test_merge_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        merge_seg_tra(np.zeros((3, 3), int), np.zeros((3, 4), int))


def test_read_training_video(tmp_path):
    _make_sequence(tmp_path, seg_frames=(0, 2))
    # an extra SEG cell without any marker in frames 0 and 2: fresh ids, different per frame
    for t in (0, 2):
        path = tmp_path / "01_GT" / "SEG" / f"man_seg{t:03d}.tif"
        seg = read_ctc_label(path)
        seg[14:16, 0:3] = 99
        _tif(path, seg.astype(np.uint16))
    (seq,) = find_ctc_sequences(tmp_path)
    data = read_ctc_training_video(seq)
    assert data["image"].shape == data["label"].shape == (4, 16, 20)
    assert data["image"].dtype == np.float32 and data["label"].dtype == np.int64
    assert data["frames"] == [0, 1, 2, 3]
    np.testing.assert_array_equal(data["complete"], [True, False, True, False])
    np.testing.assert_array_equal(data["has_seg"], [True, False, True, False])
    np.testing.assert_array_equal(data["tracks"], BLOB_TRACKS)
    masks = _blob_video()
    for i in (0, 2):  # SEG frames: whole cells with TRA ids, background 0
        np.testing.assert_array_equal(data["label"][i][masks[i] > 0], masks[i][masks[i] > 0])
        assert set(np.unique(data["label"][i][masks[i] == 0]).tolist()) == {0, int(data["label"][i][15, 0])}
    fresh = {int(data["label"][0][15, 0]), int(data["label"][2][15, 0])}
    assert len(fresh) == 2 and min(fresh) > BLOB_TRACKS[:, 0].max()
    for i in (1, 3):  # marker-only frames: no background
        assert data["label"][i].min() == -1 and 0 not in data["label"][i]
        assert set(np.unique(data["label"][i]).tolist()) - {-1} == set(np.unique(masks[i]).tolist()) - {0}
    items = list(iter_ctc_training_frames(seq, frames=[1]))
    assert len(items) == 1 and items[0]["frame"] == 1 and not items[0]["complete"]


def test_training_video_needs_ground_truth(tmp_path):
    _tif(tmp_path / "01" / "t000.tif", np.zeros((4, 4), np.uint8))
    (seq,) = find_ctc_sequences(tmp_path)
    with pytest.raises(CosineTrackDataError, match="no tracking ground truth"):
        read_ctc_training_video(seq)


# ----------------------------------------------------------------------------------------------------
# result writer
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("digits", [3, 4])
def test_write_result_round_trip(tmp_path, digits):
    masks = _blob_video()
    res = write_ctc_result(tmp_path / "01_RES", masks, BLOB_TRACKS, digits=digits, compression=COMPRESSION)
    assert res == str(tmp_path / "01_RES")
    names = sorted(os.listdir(res))
    assert names == [ctc_mask_name(t, digits) for t in range(4)] + ["res_track.txt"]
    assert names[0] == ("mask000.tif" if digits == 3 else "mask0000.tif")
    for t in range(4):
        stored = read_ctc_frame(os.path.join(res, names[t]))
        assert stored.dtype == np.uint16
        np.testing.assert_array_equal(stored, masks[t])
    np.testing.assert_array_equal(read_man_track(os.path.join(res, "res_track.txt")), BLOB_TRACKS)
    assert os.listdir(tmp_path) == ["01_RES"]  # no temporary folder left
    # the reader's sequence dict drives the writer: same digits, result beside the input
    _make_sequence(tmp_path / "ds", digits=digits)
    (seq,) = find_ctc_sequences(tmp_path / "ds")
    with CTCResultWriter.for_sequence(seq) as writer:
        for t, _ in iter_ctc_frames(seq):
            writer.write_frame(t, masks[t])
        out = writer.close(BLOB_TRACKS)
    assert out == str(tmp_path / "ds" / "01_RES")
    assert sorted(os.listdir(out))[0] == ctc_mask_name(0, digits)


def test_tracks_from_masks():
    masks = _blob_video()
    np.testing.assert_array_equal(tracks_from_masks(masks), [[1, 0, 3, 0], [2, 0, 1, 0], [3, 2, 3, 0]])
    np.testing.assert_array_equal(tracks_from_masks(iter(masks)), tracks_from_masks(masks))
    masks[2][masks[2] == 1] = 0  # cell 1 vanishes in frame 2 only
    with pytest.raises(ValueError, match=r"label 1 \(frames 0..3, absent from \[2\]\)"):
        tracks_from_masks(masks)


def test_writer_exception_leaves_nothing(tmp_path):
    res = tmp_path / "01_RES"
    with pytest.raises(KeyError), CTCResultWriter(res) as writer:
        writer.write_frame(0, _blob_video()[0])
        assert os.path.isdir(writer.tmp_dir) and os.path.dirname(writer.tmp_dir) == str(tmp_path)
        raise KeyError("crash")
    assert os.listdir(tmp_path) == []
    # leaving the block without close() discards too, loudly
    with pytest.raises(RuntimeError, match="close"), CTCResultWriter(res) as writer:
        writer.write_frame(0, _blob_video()[0])
    assert os.listdir(tmp_path) == []
    # a failing close (tracks disagree with masks) inside the block discards as well
    with pytest.raises(ValueError, match="disagree"), CTCResultWriter(res) as writer:
        writer.write_frame(0, _blob_video()[0])
        writer.close([[1, 0, 0, 0]])
    assert os.listdir(tmp_path) == []


def test_writer_refuses_existing_and_input_folders(tmp_path):
    res = tmp_path / "01_RES"
    res.mkdir()
    (res / "keep.txt").write_text("old")
    with pytest.raises(FileExistsError):
        CTCResultWriter(res)
    with pytest.raises(FileExistsError):
        write_ctc_result(res, _blob_video())
    assert os.listdir(res) == ["keep.txt"] and sorted(os.listdir(tmp_path)) == ["01_RES"]
    write_ctc_result(res, _blob_video(), overwrite=True)
    assert "keep.txt" not in os.listdir(res) and "res_track.txt" in os.listdir(res)
    images = tmp_path / "01"
    images.mkdir()
    for bad in (images, images / "sub", tmp_path):  # equal to, inside, containing the input
        with pytest.raises(ValueError, match="input folder"):
            CTCResultWriter(bad, input_dirs=[images], overwrite=True)
    assert images.is_dir()


#: (frames written (ones) before, call on the writer, ``match``)
WRITER_FRAME_ERRORS = [
    pytest.param((), lambda w: w.write_frame(0, np.full((4, 4), -1)), "0..65535", id="negative-label"),
    pytest.param((), lambda w: w.write_frame(1000, np.zeros((4, 4), int)), "fit 3 digits", id="too-many-digits"),
    pytest.param((0,), lambda w: w.write_frame(0, np.ones((4, 4), int)), "written twice", id="written-twice"),
    pytest.param((0,), lambda w: w.write_frame(1, np.ones((4, 5), int)), "size", id="other-size"),
    pytest.param((0, 2), lambda w: w.close(), r"missing \[1\]", id="close-with-a-gap"),
]


@pytest.mark.parametrize("written, call, problem", WRITER_FRAME_ERRORS)
def test_writer_checks_frames_and_labels(tmp_path, written, call, problem):
    with CTCResultWriter(tmp_path / "01_RES") as writer:
        for t in written:
            writer.write_frame(t, np.ones((4, 4), int))
        with pytest.raises(ValueError, match=problem):
            call(writer)
        writer.abort()
    assert os.listdir(tmp_path) == []


def test_writer_relabel(tmp_path):
    masks = _blob_video()
    with CTCResultWriter(tmp_path / "01_RES", compression=COMPRESSION) as writer:
        for t in range(4):
            writer.write_frame(t, masks[t] * 10)  # ids 10, 20, 30 ...
        # ... mapped back to 1, 2, 3 frame by frame; a function of t works as well as a dict, None = untouched
        writer.relabel(lambda t: {10: 1, 20: 2} if t < 2 else None)
        writer.relabel({2: {10: 1, 30: 3}, 3: {10: 1, 30: 3}})
        res = writer.close()  # tracks derived from the relabeled masks (no parents)
    for t in range(4):
        np.testing.assert_array_equal(read_ctc_frame(os.path.join(res, f"mask{t:03d}.tif")), masks[t])
    np.testing.assert_array_equal(read_man_track(os.path.join(res, "res_track.txt")), tracks_from_masks(masks))
    # the function alone on a folder of masks: mapping to 0 erases; ids missing from a frame's dict become
    # background by default (like tracking.remap_labels) or are kept
    present = relabel_ctc_masks(res, {0: {2: 0}}, unmapped="keep")
    assert present[0].tolist() == [1] and present[3].tolist() == [1, 3]
    assert 2 not in read_ctc_frame(os.path.join(res, "mask000.tif"))
    present = relabel_ctc_masks(res, {3: {3: 5}, 2: {}})
    assert present[3].tolist() == [5] and present[2].tolist() == [] and present[1].tolist() == [1, 2]
    with pytest.raises(ValueError, match="outside"):
        relabel_ctc_masks(res, {0: {1: 70000}})


# ----------------------------------------------------------------------------------------------------
# validity (py-ctcmetrics)
# ----------------------------------------------------------------------------------------------------


def test_validate_ctc_result(tmp_path):
    masks = _blob_video()
    good = write_ctc_result(tmp_path / "good" / "01_RES", masks, BLOB_TRACKS)
    result = validate_ctc_result(good)
    assert result and result.valid and result.problems == () and result.explanation == "valid"

    # a track table that does not match the masks: track 1 claimed to end at frame 2
    bad_tracks = BLOB_TRACKS.copy()
    bad_tracks[0, 2] = 2
    with CTCResultWriter(tmp_path / "bad" / "01_RES") as writer:
        for t in range(4):
            writer.write_frame(t, masks[t])
        bad = writer.close(bad_tracks, check=False)
    result = validate_ctc_result(bad)
    assert not result
    assert any("Label 1 in mask but not in res_track" in p for p in result.problems), result.explanation

    # layout problems found before py-ctcmetrics
    os.remove(os.path.join(bad, "mask001.tif"))
    result = validate_ctc_result(bad)
    assert not result and any("missing [1]" in p for p in result.problems)
    assert not validate_ctc_result(tmp_path / "nowhere")
    Path(good, "res_track.txt").write_text("1 0 3 0\n2 0 1 0\n3 2 3 7\n")
    result = validate_ctc_result(good)
    assert not result and "parent 7" in result.explanation


# (ids present in each frame, L B E P table (valid on its own), the one problem the check finds or None)
TRACKS_VS_MASKS = [
    ([{1, 2}, {1, 2}, {1}, {1}], [[1, 0, 3, 0], [2, 0, 1, 0]], None),
    ([{1}, {1}, set(), {1}], [[1, 0, 3, 0]], "frame 2: track 1 (frames 0..3) is not in the mask"),
    ([{1}, {1, 9}, {1}, {1}], [[1, 0, 3, 0]], "frame 1: mask label 9 is not a track"),
    ([{1}, {1}, {1}, {1}], [[1, 0, 2, 0]], "frame 3: mask label 1 is outside its frames 0..2"),
    ([{1}, {1}, {1}, {1}], [[1, 0, 5, 0]], "track 1: ends in frame 5, after the last mask (3)"),
    ([{1, 2}, {1, 3}, {1, 3}], [[1, 0, 2, 0], [2, 0, 0, 0], [3, 1, 2, 2]], None),
]


def _column_masks(frames: list[set[int]]) -> np.ndarray:
    """(T, 4, 12) uint16 masks: label k fills column k of the frames it is present in."""
    masks = np.zeros((len(frames), 4, 12), np.uint16)
    for t, ids in enumerate(frames):
        for k in ids:
            masks[t, :, k] = k
    return masks


@pytest.mark.parametrize("frames, tracks, problem", TRACKS_VS_MASKS)
def test_one_tracks_against_masks_check_for_every_caller(tmp_path, frames, tracks, problem):
    """The core check, the cell wing's check_tracks, check_ctc_lineage, the writer and validate_ctc_result
    all report the same problem (the single implementation: tracking.check_tracks_against_labels)."""
    tracks = np.array(tracks)
    masks = _column_masks(frames)
    expected = [] if problem is None else [problem]
    assert check_tracks_against_labels(tracks, frames) == expected  # ids per frame
    assert check_tracks_against_labels(tracks, masks) == expected  # label video
    assert check_tracks_against_labels(tracks, iter(list(masks))) == expected  # streamed frames
    assert check_tracks(tracks, {t: np.unique(m[m > 0]) for t, m in enumerate(masks)}) == expected
    assert check_ctc_lineage(tracks, masks) == expected
    res = tmp_path / "01_RES"
    if problem is None:
        assert validate_ctc_result(write_ctc_result(res, masks, tracks))
        return
    with pytest.raises(ValueError, match="disagree") as error:
        write_ctc_result(res, masks, tracks)
    assert problem in str(error.value) and not res.exists()
    with CTCResultWriter(res) as writer:
        for t, mask in enumerate(masks):
            writer.write_frame(t, mask)
        writer.close(tracks, check=False)
    result = validate_ctc_result(res)
    assert not result and f"{res}: {problem}" in result.problems, result.explanation


def test_tracks_against_masks_by_frame_number():
    """Masks given by frame number: frames without an entry have no mask; max_problems caps the list."""
    tracks = np.array([[1, 0, 2, 0], [2, -1, 0, 0]])
    problems = check_tracks(tracks, {0: [1, 2], 2: [1]})
    assert problems == [
        "track 1: spans frame 1, which has no mask",
        "track 2: begins in frame -1, before the first mask (0)",
    ]
    assert check_tracks(tracks, {0: [1, 2], 2: [1]}, max_problems=1) == problems[:1]
    assert check_tracks_against_labels(np.zeros((0, 4), int), [[], [3]]) == ["frame 1: mask label 3 is not a track"]


def test_track_table_from_labels_is_one_function():
    """writer.tracks_from_masks is core's tracks_table_from_labels with contiguous=True."""
    masks = _blob_video()
    table = tracks_from_masks(masks)
    np.testing.assert_array_equal(table, tracks_table_from_labels(masks, contiguous=True))
    np.testing.assert_array_equal(table, tracks_table_from_labels([set(np.unique(m)) - {0} for m in masks]))
    masks[1][masks[1] == 1] = 0
    with pytest.raises(ValueError, match=r"label 1 \(frames 0..3, absent from \[1\]\)"):
        tracks_table_from_labels(masks, contiguous=True)
    assert tracks_table_from_labels(masks)[0].tolist() == [1, 0, 3, 0]  # without contiguous: no check


def test_numbered_files(tmp_path):
    assert numbered_files(tmp_path / "missing", MASK_RE) == ({}, None)
    for name in ("mask0002.tif", "mask0000.tif", "res_track.txt", "t0001.tif"):
        (tmp_path / name).write_bytes(b"")
    files, digits = numbered_files(tmp_path, MASK_RE)
    assert files == {0: str(tmp_path / "mask0000.tif"), 2: str(tmp_path / "mask0002.tif")} and digits == 4
    assert list(files) == [0, 2]
    (tmp_path / "mask001.tif").write_bytes(b"")
    with pytest.raises(CosineTrackDataError, match="digit counts"):
        numbered_files(tmp_path, MASK_RE)


def test_result_layout_checked_once_for_validation_and_scoring(tmp_path):
    """validate_ctc_result and ctc_scores find the same layout problems (check_ctc_result_files)."""
    _make_sequence(tmp_path / "data")
    res = Path(write_ctc_result(tmp_path / "01_RES", _blob_video(), BLOB_TRACKS))
    masks, tracks, problems = check_ctc_result_files(res)
    assert list(masks) == [0, 1, 2, 3] and tracks.tolist() == BLOB_TRACKS.tolist() and problems == []
    (res / "extra.tif").write_bytes(b"")
    _, _, problems = check_ctc_result_files(res)
    assert problems == [f"{res / 'extra.tif'}: not a maskT.tif file; remove it from the result folder"]
    scores = ctc_scores(res, tmp_path / "data" / "01_GT", metrics=("TRA",))
    assert scores["valid"] is False and list(scores["problems"]) == problems
    assert problems[0] in validate_ctc_result(res).problems
    (res / "extra.tif").unlink()
    (res / "res_track.txt").unlink()
    _, tracks, problems = check_ctc_result_files(res)
    assert tracks is None and len(problems) == 1 and "res_track.txt" in problems[0]
    assert list(ctc_scores(res, tmp_path / "data" / "01_GT", metrics=("TRA",))["problems"]) == problems


@pytest.mark.parametrize(
    "preset_margin, bundle_margin, background, unknown",
    [(None, None, False, True), (2, None, True, True), (None, 2, True, True), (2, 0, True, False)],
)
def test_training_cases_take_the_background_margin_of_their_preset(
    tmp_path, preset_margin, bundle_margin, background, unknown
):
    _make_sequence(tmp_path, seg_frames=())  # markers only: no frame is complete
    (seq,) = find_ctc_sequences(tmp_path)
    preset = {"i_min": 20.0, "i_max": 10.0} | ({} if preset_margin is None else {"background_margin": preset_margin})
    part = VideoPart("01", seq.replace(preset=preset), seq.frames)
    (case,) = read_ctc_cases([part], background_margin=bundle_margin)
    assert bool((case["label"] == 0).any()) == background  # the bundle's value wins over the preset's
    assert bool((case["label"] == -1).any()) == unknown and (case["label"] > 0).any()
