"""Bad inputs that used to give a silent wrong result, or an error without the file name (issue 11, §2).

Every input is generated in ``tmp_path``. Each row names the input, the reader that sees it and the
expected outcome: ``CosineTrackDataError`` whose message *starts with* the offending file's path and says
the problem, or correct handling. The inputs must be unchanged afterwards (checksums).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import save_nifti

from cosinetrack.data.cine import read_cine_case, read_nifti_array
from cosinetrack.data.ctc import (
    find_ctc_sequences,
    read_ctc_training_video,
    write_ctc_subsequence,
)
from cosinetrack.errors import CosineTrackDataError
from cosinetrack.io.ctc import write_track_table

H, W, T = 8, 9, 3


def _checksums(folder: Path) -> dict[str, str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


# ----------------------------------------------------------------------------------------------------
# NIfTI (lv_mri)
# ----------------------------------------------------------------------------------------------------


def _nifti_case(root: Path, image: np.ndarray, label: np.ndarray | None) -> tuple[dict, Path]:
    """A one-file case: ``image`` and ``label`` written as given; returns the case and the bad file."""
    img = save_nifti(root / "in" / "img.nii.gz", image)
    lab = save_nifti(root / "in" / "lab.nii.gz", label) if label is not None else None
    return {"image": [str(img)], "label": [None if lab is None else str(lab)]}, (lab or img)


def _cine() -> np.ndarray:
    return np.random.default_rng(0).random((H, W, T)).astype(np.float32)


def _label(values: float = 2.0) -> np.ndarray:
    lab = np.zeros((H, W, T), np.float32)
    lab[2:5, 2:5] = 1
    lab[5:7, 5:8] = values
    return lab


NIFTI_CASES = [
    # name, image, label, expected error fragment (None: read correctly)
    ["fractional label 2.5", _cine(), _label(2.5), r"whole numbers.*fractional values \(2\.5\)"],
    ["label with NaN", _cine(), _label(np.nan), "the label has 18 NaN or Inf values"],
    ["label with Inf", _cine(), _label(np.inf), "NaN or Inf"],
    ["5D image, 2 components", np.zeros((H, W, 1, T, 2), np.float32), None, r"a 5D array of shape \(8, 9, 1, 3, 2\)"],
    ["6D image", np.zeros((H, W, 1, T, 1, 3), np.float32), None, "a 6D array"],
    ["5D label, 2 components", _cine()[:, :, None], np.zeros((H, W, 1, T, 2), np.uint8), "a 5D array"],
    ["whole-number float label", _cine(), _label(2.0), None],
    ["5D image, unused 5th axis", _cine()[:, :, None, :, None], None, None],
]


@pytest.mark.parametrize("name, image, label, error", NIFTI_CASES, ids=[c[0] for c in NIFTI_CASES])
def test_nifti_bad_input_names_the_file(tmp_path, name, image, label, error):
    case, bad_file = _nifti_case(tmp_path, image, label)
    before = _checksums(tmp_path)
    if error is None:
        img, lab = read_cine_case(case)
        assert img.shape[1:] == (T, H, W)
        if label is not None:
            np.testing.assert_array_equal(lab[0], np.transpose(label, (2, 0, 1)).astype(np.int64))
    else:
        with pytest.raises(CosineTrackDataError) as info:
            read_cine_case(case)
        message = str(info.value)
        assert message.startswith(f"{bad_file}: "), message
        assert info.value.path == str(bad_file)
        assert re.search(error, message), message
    assert _checksums(tmp_path) == before


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_fractional_label_is_never_truncated(tmp_path, dtype):
    path = save_nifti(tmp_path / "lab.nii.gz", _label(2.5))
    with pytest.raises(CosineTrackDataError, match=r"fractional"):
        read_nifti_array(str(path), dtype)
    assert read_nifti_array(str(path), np.float32).max() == 2.5  # images may be fractional


# ----------------------------------------------------------------------------------------------------
# CTC TRA markers vs man_track.txt (cell)
# ----------------------------------------------------------------------------------------------------

TRACKS = np.array([[1, 0, 3, 0], [2, 0, 1, 0], [3, 2, 3, 2]])


def _ctc(root: Path, extra_marker: tuple[int, int] | None = None) -> Path:
    """A 4-frame sequence; ``extra_marker = (frame, label)`` draws one more marker into that TRA frame."""
    for t in range(4):
        markers = np.zeros((16, 20), np.uint16)
        markers[2:4, 2 + t : 4 + t] = 1
        markers[10:12, 10:12] = 2 if t < 2 else 3
        if extra_marker is not None and extra_marker[0] == t:
            markers[13:15, 15:18] = extra_marker[1]
        tifffile.imwrite(_mkdir(root / "01") / f"t{t:03d}.tif", (markers > 0).astype(np.uint16) * 500 + 7)
        tifffile.imwrite(_mkdir(root / "01_GT" / "TRA") / f"man_track{t:03d}.tif", markers)
    write_track_table(root / "01_GT" / "TRA" / "man_track.txt", TRACKS)
    return root


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _train(seq: dict, out: Path) -> None:
    read_ctc_training_video(seq)


def _score(seq: dict, out: Path) -> None:  # the held-out ground truth that py-ctcmetrics scores
    write_ctc_subsequence(seq, [1, 2, 3], out)


ABSENT = r"marker label\(s\) 9 of frame 2 are not in man_track.txt"
OUTSIDE = r"drawn in frame 3 outside their track's frames in man_track.txt: 2 \(frames 0..1\)"
CTC_CASES = [
    # name, extra marker (frame, label), reader, expected error fragment (None: handled)
    ["marker absent from man_track (training)", (2, 9), _train, ABSENT],
    ["marker absent from man_track (scoring)", (2, 9), _score, ABSENT],
    ["marker outside its track's frames (training)", (3, 2), _train, OUTSIDE],
    ["marker outside its track's frames (scoring)", (3, 2), _score, OUTSIDE],
    ["consistent markers (training)", None, _train, None],
    ["consistent markers (scoring)", None, _score, None],
]


@pytest.mark.parametrize("name, extra, reader, error", CTC_CASES, ids=[c[0] for c in CTC_CASES])
def test_ctc_tra_marker_not_in_track_table_names_the_file(tmp_path, name, extra, reader, error):
    root = _ctc(tmp_path / "data", extra)
    (seq,) = find_ctc_sequences(root)
    before = _checksums(root)
    out = tmp_path / "out"
    if error is None:
        reader(seq, out)
    else:
        bad_file = root / "01_GT" / "TRA" / f"man_track{extra[0]:03d}.tif"
        with pytest.raises(CosineTrackDataError) as info:
            reader(seq, out)
        message = str(info.value)
        assert message.startswith(f"{bad_file}: "), message
        assert re.search(error, message), message
        assert not out.exists()  # refused before anything was written
    assert _checksums(root) == before
