"""Bad inputs that used to give a silent wrong result, or an error without the file name (issue 11, §2).

Every input is generated in ``tmp_path``. Each row names the input, the reader that sees it and the
expected outcome: ``CosineTrackDataError`` whose message *starts with* the offending file's path and says
the problem, or correct handling. The inputs must be unchanged afterwards (checksums).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from conftest import save_nifti
from PIL import Image

from cosinetrack.apps.cell.datasets import read_ctc_cases, split_video_frames, whole_sequences
from cosinetrack.apps.cell.pipeline import track_folder
from cosinetrack.apps.cell.reader import check_ctc_frames, find_ctc_sequences, iter_ctc_frames, read_ctc_training_video
from cosinetrack.apps.cell.writer import write_ctc_subsequence, write_track_table
from cosinetrack.apps.leaf.cvppp import (
    cvppp_palette,
    find_cvppp_plants,
    find_plant_images,
    read_cvppp_image,
    read_cvppp_plant,
    read_leaf_counts,
)
from cosinetrack.apps.leaf.pipeline import segment_plants_to_folder
from cosinetrack.apps.lv_mri.datasets import read_cases
from cosinetrack.apps.lv_mri.nifti import IGNORE_LABEL, read_cine_case, read_nifti_array, resolve_cases
from cosinetrack.apps.lv_mri.pipeline import predict_to_folder
from cosinetrack.data.clips import ClipDataset
from cosinetrack.errors import CosineTrackDataError
from cosinetrack.inference.segmenter import normalize_frame
from cosinetrack.networks.stacked import RecurrentStackedHourglass

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


# ====================================================================================================
# The corpus: one table per bundle of bad or unusual inputs a user hits, each generated here.
#
# A row is ``[name, build, expected]``. ``build(root)`` writes the input under ``root`` (a folder whose
# name holds a space and non-ASCII letters, as users' folders do) and returns ``(action, bad)``:
# ``action(out)`` is what the bundle does with that input (``out`` a fresh output folder), ``bad`` the
# file the error must name first. ``expected`` is a regular expression the ``CosineTrackDataError``
# message must hold, ``(exception type, expression)`` for another error type, or ``None``: handled,
# ``action`` checks the result itself. Afterwards nothing outside ``out`` may have changed: every file
# (by checksum), folder and symbolic link under the test's folder is the same.
# ====================================================================================================

ROOT = "my dätä ü"


def _state(folder: Path, skip: Path) -> dict[str, str]:
    """``{relative path: sha256 | "dir" | "link -> target"}`` of everything below ``folder`` but ``skip``."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path == skip or skip in path.parents:
                continue
            rel = str(path.relative_to(folder))
            if path.is_symlink():
                state[rel] = f"link -> {os.readlink(path)}"
            elif path.is_dir():
                state[rel] = "dir"
            else:
                state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def _run_row(tmp_path: Path, build, expected) -> None:
    root = tmp_path / ROOT
    root.mkdir()
    out = tmp_path / "out"
    built = build(root)
    action, bad = built[:2]
    if len(built) == 3:  # the outcome depends on the machine (e.g. permissions as the superuser)
        expected = built[2]
    before = _state(tmp_path, out)
    if expected is None:
        action(out)
    else:
        kind, pattern = expected if isinstance(expected, tuple) else (CosineTrackDataError, expected)
        with pytest.raises(kind) as info:
            action(out)
        message = str(info.value)
        if kind is CosineTrackDataError:
            assert message.startswith(f"{bad}: "), message
        else:
            assert str(bad) in message, message
        assert re.search(pattern, message), message
        assert not out.exists()  # refused before anything was written
    assert _state(tmp_path, out) == before


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _truncated(path: Path) -> Path:
    """Cut a written file in half, as an interrupted copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# ----------------------------------------------------------------------------------------------------
# lv_mri: NIfTI cines, MSD folders and datalists; inference into a folder
# ----------------------------------------------------------------------------------------------------

LV_MAP = {"0": 0, "1": 0, "2": 1, "3": 2}  # the bundle's label_map


def _lv_label() -> np.ndarray:
    lab = np.zeros((H, W, T), np.uint8)
    lab[2:5, 2:5] = 2
    lab[5:7, 5:8] = 3
    return lab


def _msd(root: Path, image=None, label=None, name: str = "case") -> tuple[Path, Path, Path]:
    """``root/ds/imagesTr/<name>.nii.gz`` (+ ``labelsTr``): ``(data set folder, image, label)``."""
    ds = root / "ds"
    img = save_nifti(ds / "imagesTr" / f"{name}.nii.gz", _cine() if image is None else image)
    lab = save_nifti(ds / "labelsTr" / f"{name}.nii.gz", _lv_label() if label is None else label)
    return ds, img, lab


def _lv_read(ds: Path, frame_pattern: str | None = None):
    """What lv_mri training does with a data set folder: list the cases and read each one."""

    def action(out):
        return read_cases(resolve_cases(str(ds), None, frame_pattern), label_map=LV_MAP)

    return action


def _lv_datalist(root: Path, content: str, name: str = "list.json"):
    path = _write(root / name, content)
    save_nifti(root / "img.nii.gz", _cine())
    save_nifti(root / "lab.nii.gz", _lv_label())
    return (lambda out: read_cases(resolve_cases(None, str(path)), label_map=LV_MAP)), path


def _lv_image(image, **kw):
    """A one-case MSD folder whose image is ``image``; the error (if any) names the image."""

    def build(root):
        ds, img, _ = _msd(root, image, **kw)
        return _lv_read(ds), img

    return build


def _lv_label_row(label):
    def build(root):
        ds, _, lab = _msd(root, label=label)
        return _lv_read(ds), lab

    return build


def _lv_file(make):
    """``make(path)`` damages the image file of a one-case MSD folder."""

    def build(root):
        ds, img, _ = _msd(root)
        make(img)
        return _lv_read(ds), img

    return build


def _lv_handled(image):
    """A one-case MSD folder whose image ``image`` is read unchanged as float32, its label mapped."""

    def build(root):
        ds, _, _ = _msd(root, image)

        def action(out):
            (case,) = _lv_read(ds)(out)
            assert case["image"].dtype == np.float32 and np.isfinite(case["image"]).all()
            np.testing.assert_allclose(case["image"][0], np.transpose(image, (2, 0, 1)).astype(np.float32))
            assert set(np.unique(case["label"]).tolist()) == {0, 1, 2}

        return action, None

    return build


def _lv_net():
    torch.manual_seed(0)
    return RecurrentStackedHourglass(1, 3, num_levels=2, num_filters=4)


def _lv_predict(image, output=None, overwrite=False):
    """lv_mri inference of a folder holding one image; ``output(root)`` picks the output folder."""

    def build(root):
        ds, _, _ = _msd(root, image)
        folder = ds / "imagesTr"

        def action(out):
            target = out if output is None else output(root)
            cases = resolve_cases(str(folder.parent))
            written = predict_to_folder(
                _lv_net(), cases, str(target), None, (16, 16), overwrite=overwrite, input_paths=[str(folder)]
            )
            (pred,) = written
            labels = np.asarray(nib.load(pred).dataobj)
            assert labels.shape == image.shape and set(np.unique(labels).tolist()) <= {0, 1, 2}

        return action, (output(root) if output else None)

    return build


def _lv_symlinked_file(root):
    ds, img, _ = _msd(root)
    elsewhere = root / "elsewhere" / "real.nii.gz"
    elsewhere.parent.mkdir()
    img.rename(elsewhere)
    img.symlink_to(elsewhere)
    return (lambda out: _assert_one_case(_lv_read(ds)(out))), None


def _lv_symlinked_folder(root):
    ds, _, _ = _msd(root)
    (root / "link").symlink_to(ds, target_is_directory=True)
    return (lambda out: _assert_one_case(_lv_read(root / "link")(out))), None


def _assert_one_case(cases):
    (case,) = cases
    assert case["image"].shape == (1, T, H, W) and set(np.unique(case["label"]).tolist()) == {0, 1, 2}


def _lv_grouped(frames: dict[str, tuple[int, int]]):
    """ACDC-like files ``p_frameNN.nii.gz`` (3D volumes, shape given per name) grouped by frame number."""

    def build(root):
        ds = root / "ds"
        paths = [
            save_nifti(ds / "imagesTr" / f"p_frame{k}.nii.gz", np.ones((*hw, 2), np.float32))
            for k, hw in frames.items()
        ]
        return _lv_read(ds, r"_frame(\d+)"), paths[0]

    return build


def _lv_readonly_parent(root):
    """Output into a folder the user cannot write: root is not stopped by permissions, so both outcomes."""
    ds, _, _ = _msd(root)
    parent = root / "read-only"
    parent.mkdir()
    parent.chmod(0o555)

    def action(out):
        try:
            predict_to_folder(_lv_net(), resolve_cases(str(ds)), str(parent / "pred"), None, (16, 16))
        finally:
            parent.chmod(0o755)
        assert len(list((parent / "pred").iterdir())) == 1  # only a superuser gets here: it may write anyway
        shutil.rmtree(parent / "pred")

    if os.access(parent, os.W_OK):  # the superuser: permissions do not stop it, the output is written
        return action, None, None
    return action, parent


def _lv_output_under_a_file(root):
    ds, _, _ = _msd(root)
    blocker = _write(root / "notes.txt", "a file, not a folder")
    return (
        lambda out: predict_to_folder(_lv_net(), resolve_cases(str(ds)), str(blocker / "pred"), None, (16, 16))
    ), blocker


LV_CORPUS = [
    # folders
    ["data set folder missing", lambda r: (_lv_read(r / "missing"), r / "missing"), "does not exist"],
    ["empty data set folder", lambda r: (_lv_read(_mkdir(r / "ds")), r / "ds"), r"expected an 'imagesTr/' folder"],
    [
        "empty imagesTr",
        lambda r: (_lv_read(_mkdir(r / "ds" / "imagesTr").parent), r / "ds" / "imagesTr"),
        "no NIfTI files",
    ],
    ["wrong extensions only (.png, .nii.zip, .mha)", lambda r: _lv_wrong_extensions(r), "no NIfTI files"],
    ["macOS ._ file beside the image is ignored", lambda r: _lv_hidden_file(r), None],
    # unreadable files
    ["truncated .nii.gz", _lv_file(_truncated), "cannot read this file as NIfTI"],
    ["text file named .nii.gz", _lv_file(lambda p: p.write_text("not a NIfTI")), "cannot read this file as NIfTI"],
    ["zero-byte .nii.gz", _lv_file(lambda p: p.write_bytes(b"")), "cannot read this file as NIfTI"],
    [
        "truncated label",
        lambda r: (_lv_read(_msd(r)[0]), _truncated(r / "ds" / "labelsTr" / "case.nii.gz")),
        "cannot read this file as NIfTI",
    ],
    # voxel types and values
    [
        "RGB NIfTI",
        _lv_image(np.zeros((H, W, T), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])),
        "unsupported voxel type",
    ],
    ["empty image (0 rows)", _lv_image(np.zeros((0, W, T), np.float32)), r"the image is empty"],
    [
        "image with NaN",
        _lv_image(np.where(np.arange(H * W * T).reshape(H, W, T) == 5, np.nan, 1.0).astype(np.float32)),
        "1 NaN or Inf",
    ],
    ["image with Inf", _lv_image(np.full((H, W, T), np.inf, np.float32)), f"{H * W * T} NaN or Inf"],
    [
        "float64 image beyond float32",
        _lv_image(np.full((H, W, T), 1e300)),
        r"exceed the float32 range \(largest magnitude 1e\+300\)",
    ],
    ["int16 image", _lv_handled((np.arange(H * W * T).reshape(H, W, T) - 100).astype(np.int16)), None],
    ["float64 image", _lv_handled(_cine().astype(np.float64) * 1e6), None],
    ["2D image without a time axis", _lv_image(np.ones((H, W), np.float32)), "time axis is required"],
    # labels
    [
        "label shape differs from the image",
        _lv_label_row(np.zeros((H, W + 1, T), np.uint8)),
        r"label shape \(8, 10, 3\) differs",
    ],
    ["label value outside label_map", _lv_label_row(_lv_label() * 2), r"label values \[4, 6\] are not in label_map"],
    ["negative label", _lv_label_row(-_lv_label().astype(np.int16)), r"label values \[-3, -2\] are not in label_map"],
    ["fractional label (datalist-free MSD)", _lv_label_row(_label(2.5)), "fractional"],
    ["missing label file: frames unlabeled, not background", lambda r: (_lv_missing_label(r), None), None],
    # ACDC-like grouping
    [
        "two files for one frame (frame01, frame1)",
        _lv_grouped({"01": (H, W), "1": (H, W)}),
        "two files for the same frame number",
    ],
    ["grouped frames differ in size", _lv_grouped({"01": (H, W), "12": (H, W + 2)}), r"differ in \(Z, H, W\)"],
    # datalists
    [
        "datalist file missing",
        lambda r: (lambda out: resolve_cases(None, str(r / "list.json")), r / "list.json"),
        "datalist file does not exist",
    ],
    [
        "datalist malformed JSON",
        lambda r: _lv_datalist(r, '[{"image": "img.nii.gz",'),
        "cannot read the datalist as JSON",
    ],
    ["datalist empty list", lambda r: _lv_datalist(r, "[]"), "non-empty list"],
    ["datalist dict without 'training'", lambda r: _lv_datalist(r, '{"validation": []}'), "non-empty list"],
    [
        "datalist entry without 'image'",
        lambda r: _lv_datalist(r, '[{"label": "lab.nii.gz"}]'),
        "entry 0 has no 'image' key",
    ],
    [
        "datalist image and label lists differ",
        lambda r: _lv_datalist(r, '[{"image": ["img.nii.gz"], "label": ["lab.nii.gz", "lab.nii.gz"]}]'),
        "differ in length",
    ],
    [
        "datalist path that does not exist",
        lambda r: (_lv_datalist(r, '[{"image": "gone.nii.gz"}]')[0], r / "gone.nii.gz"),
        "file not found",
    ],
    [
        "datalist with relative paths",
        lambda r: (
            (lambda a: lambda out: _assert_one_case(a(out)))(
                _lv_datalist(r, '[{"image": "img.nii.gz", "label": "lab.nii.gz"}]')[0]
            ),
            None,
        ),
        None,
    ],
    # links, paths
    ["symlinked image file", _lv_symlinked_file, None],
    ["symlinked data set folder", _lv_symlinked_folder, None],
    # inference
    ["constant image (inference)", _lv_predict(np.full((H, W, T), 7.0, np.float32)), None],
    ["1-pixel image (inference)", _lv_predict(np.ones((1, 1, T), np.float32)), None],
    [
        "output_dir = input folder, overwrite",
        _lv_predict(_cine(), lambda r: r / "ds" / "imagesTr", True),
        "is the input folder",
    ],
    [
        "output_dir = data set folder, overwrite",
        _lv_predict(_cine(), lambda r: r / "ds", True),
        "contains the input folder",
    ],
    [
        "output_dir inside the input folder",
        _lv_predict(_cine(), lambda r: r / "ds" / "imagesTr" / "pred"),
        "lies inside the input folder",
    ],
    ["output parent is a file", _lv_output_under_a_file, (OSError, "Not a directory|File exists")],
    ["read-only output parent", _lv_readonly_parent, (PermissionError, "Permission denied")],
]


def _lv_wrong_extensions(root):
    for name in ("a.png", "b.nii.zip", "c.mha"):
        _write(root / "ds" / "imagesTr" / name, "x")
    return _lv_read(root / "ds"), root / "ds" / "imagesTr"


def _lv_hidden_file(root):
    ds, _, _ = _msd(root)
    _write(ds / "imagesTr" / "._case.nii.gz", b"\0\5 resource fork")
    return (lambda out: _assert_one_case(_lv_read(ds)(out))), None


def _lv_missing_label(root):
    ds, _, lab = _msd(root)
    lab.unlink()

    def action(out):
        (case,) = _lv_read(ds)(out)
        assert (case["label"] == IGNORE_LABEL).all()  # no label: ignored by loss and metrics, never background

    return action


@pytest.mark.parametrize("name, build, expected", LV_CORPUS, ids=[c[0] for c in LV_CORPUS])
def test_lv_mri_corpus(tmp_path, name, build, expected):
    _run_row(tmp_path, build, expected)


# ----------------------------------------------------------------------------------------------------
# leaf: plant photographs (png/jpg/tif), CVPPP label PNGs and leaf counts; inference into a folder
# ----------------------------------------------------------------------------------------------------


def _rgb(h: int = H, w: int = W) -> np.ndarray:
    return (np.random.default_rng(1).random((h, w, 3)) * 255).astype(np.uint8)


def _photo(root: Path, name: str, image: Image.Image | None = None, **save) -> Path:
    path = root / "photos" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    (Image.fromarray(_rgb()) if image is None else image).save(path, **save)
    return path


def _leaf_read(folder: Path):
    """What leaf inference does with a folder of photographs before the network: list and read them."""

    def action(out):
        return [read_cvppp_image(p["image"]) for p in find_plant_images(folder)]

    return action


def _leaf_photo(name: str, image=None, make=None, **save):
    """One photograph ``name`` (damaged by ``make(path)``); the error names it."""

    def build(root):
        path = _photo(root, name, image, **save)
        if make is not None:
            make(path)
        return _leaf_read(path.parent), path

    return build


def _leaf_handled(name: str, image: Image.Image, expected: np.ndarray, atol: float = 0.0, **save):
    """One photograph read as ``expected`` ``(H, W, 3)`` in [0, 1]."""

    def build(root):
        path = _photo(root, name, image, **save)

        def action(out):
            (got,) = _leaf_read(path.parent)(out)
            assert got.shape == (3, *expected.shape[:2]) and got.dtype == np.float32
            np.testing.assert_allclose(got, expected.transpose(2, 0, 1), atol=atol + 1e-6)

        return action, None

    return build


def _leaf_plant(label: Image.Image | None = None, make=None):
    """A training plant ``plant001_rgb.png`` + ``plant001_label.png``; the error names the label."""

    def build(root):
        folder = root / "A1"
        folder.mkdir()
        Image.fromarray(np.dstack([_rgb(), np.full((H, W), 255, np.uint8)])).save(folder / "plant001_rgb.png")
        lab = folder / "plant001_label.png"
        (label or _palette(np.eye(H, W, dtype=np.uint8))).save(lab)
        if make is not None:
            make(lab)
        return (lambda out: [read_cvppp_plant(p) for p in find_cvppp_plants(folder)]), lab

    return build


def _palette(ids: np.ndarray) -> Image.Image:
    img = Image.fromarray(ids.astype(np.uint8), mode="P")
    img.putpalette(cvppp_palette().ravel().tolist())
    return img


def _leaf_counts(text: str):
    def build(root):
        path = _write(root / "A1" / "A1.csv", text)
        return (lambda out: read_leaf_counts(path)), path

    return build


def _leaf_net():
    torch.manual_seed(0)
    return RecurrentStackedHourglass(3, 4, num_levels=2, num_filters=4)


LEAF_CLUSTERING = {"min_samples": 5, "coordinate_scale": 0.001, "background": "auto"}


def _leaf_segment(image: np.ndarray, output=None, overwrite=False):
    """leaf inference of ``root/project/photos/plant.png``; ``output(root)`` picks the output folder."""

    def build(root):
        path = root / "project" / "photos" / "plant.png"
        path.parent.mkdir(parents=True)
        Image.fromarray(image).save(path)

        def action(out):
            target = out if output is None else output(root)
            plants = find_plant_images(path.parent)
            segment_plants_to_folder(
                _leaf_net(), plants, str(target), None, (16, 16), LEAF_CLUSTERING, overwrite=overwrite,
                input_paths=[str(path.parent)],
            )  # fmt: skip
            labels = np.asarray(Image.open(target / "plant_label.png"))
            assert labels.shape == image.shape[:2]
            assert (target / "leaf_counts.csv").read_text().startswith("plant_rgb.png,")

        return action, (output(root) if output else None)

    return build


def _leaf_symlinked_photo(root):
    real = _photo(root, "real.png")
    (root / "linked").mkdir()
    (root / "linked" / "plant.png").symlink_to(real)
    return (lambda out: _assert_photos(_leaf_read(root / "linked")(out), 1)), None


def _assert_photos(images, n):
    assert len(images) == n and all(i.shape == (3, H, W) for i in images)


def _leaf_same_name(root):
    _photo(root, "plant.jpg")
    png = _photo(root, "plant.png")  # listed after plant.jpg: the second file of one name is named
    return _leaf_read(png.parent), png


def _leaf_folder(names: list[str], finder=None):
    def build(root):
        folder = _mkdir(root / "photos")
        for name in names:
            _write(folder / name, "x")
        return (lambda out: (finder or find_plant_images)(folder)), folder

    return build


GREY16 = (np.arange(H * W).reshape(H, W) * 900).astype(np.uint16)
SMOOTH = np.dstack([np.add.outer(np.arange(H) * 9, np.arange(W) * 7) + c for c in (20, 60, 100)]).astype(np.uint8)
LEAF_CORPUS = [
    # folders
    ["photo folder missing", lambda r: (_leaf_read(r / "missing"), r / "missing"), "not found"],
    ["empty photo folder", _leaf_folder([]), "no image files"],
    ["wrong extensions only (.gif, .txt, .webp)", _leaf_folder(["a.gif", "b.txt", "c.webp"]), "no image files"],
    ["only label files", _leaf_folder(["a_label.png", "a_fg.png"]), "no image files"],
    ["training folder without *_rgb.png", _leaf_folder(["plant001.png"], find_cvppp_plants), "no CVPPP plants found"],
    ["two photos give one name (png + jpg)", _leaf_same_name, "gives the same plant name 'plant'"],
    # unreadable files
    ["truncated PNG", _leaf_photo("a.png", make=_truncated), "cannot read the image"],
    ["truncated JPEG", _leaf_photo("a.jpg", make=_truncated), "cannot read the image"],
    ["truncated TIFF", _leaf_photo("a.tif", make=_truncated), "cannot read the image"],
    ["zero-byte PNG", _leaf_photo("a.png", make=lambda p: p.write_bytes(b"")), "cannot read the image"],
    ["text file named .png", _leaf_photo("a.png", make=lambda p: p.write_text("hello")), "cannot read the image"],
    # pixel types
    [
        "RGBA PNG (official)",
        _leaf_handled("a.png", Image.fromarray(np.dstack([_rgb(), np.full((H, W), 9, np.uint8)])), _rgb() / 255),
        None,
    ],
    ["RGB JPEG", _leaf_handled("a.jpg", Image.fromarray(SMOOTH), SMOOTH / 255, atol=0.05, quality=95), None],
    ["RGB TIFF", _leaf_handled("a.tif", Image.fromarray(_rgb()), _rgb() / 255), None],
    ["grey PNG", _leaf_handled("a.png", Image.fromarray(_rgb()[..., 0]), np.repeat(_rgb()[..., :1], 3, 2) / 255), None],
    [
        "16-bit grey PNG",
        _leaf_handled("a.png", Image.fromarray(GREY16), np.repeat(GREY16[..., None], 3, 2) / 65535),
        None,
    ],
    [
        "black-and-white 1-bit PNG",
        _leaf_handled("a.png", Image.fromarray(_rgb()[..., 0] > 99), np.repeat(_rgb()[..., :1] > 99, 3, 2) * 1.0),
        None,
    ],
    [
        "CMYK JPEG",
        _leaf_handled("a.jpg", Image.fromarray(SMOOTH).convert("CMYK"), SMOOTH / 255, atol=0.05, quality=95),
        None,
    ],
    ["float TIFF", _leaf_photo("a.tif", Image.fromarray(np.ones((H, W), np.float32))), "unsupported image mode 'F'"],
    [
        "32-bit integer TIFF",
        _leaf_photo("a.tif", Image.fromarray(np.ones((H, W), np.int32))),
        "unsupported image mode 'I'",
    ],
    ["palette photo (a label given as photo)", _leaf_photo("a.png", _palette(np.eye(H, W))), "is this a label file"],
    ["1-pixel photo", _leaf_handled("a.png", Image.fromarray(_rgb(1, 1)), _rgb(1, 1) / 255), None],
    # labels
    ["RGB label", _leaf_plant(Image.fromarray(_rgb())), r"color \(RGB\) label image"],
    ["16-bit grey label", _leaf_plant(Image.fromarray(GREY16)), None],
    [
        "label size differs from the photo",
        _leaf_plant(_palette(np.eye(H + 1, W))),
        r"label size \(9, 9\) \(H, W\) differs",
    ],
    ["truncated label", _leaf_plant(make=_truncated), "cannot read the image"],
    [
        "float TIFF saved as label",
        _leaf_plant(make=lambda p: Image.fromarray(np.ones((H, W), np.float32)).save(p, format="TIFF")),
        "unsupported label image mode 'F'",
    ],
    # leaf counts
    [
        "leaf count not a number",
        _leaf_counts("plant001_rgb.png, 3\nplant002_rgb.png, many\n"),
        r"line 2: leaf count 'many' is not an integer",
    ],
    ["leaf count negative", _leaf_counts("plant001_rgb.png, -3\n"), "line 1: negative leaf count"],
    ["plant counted twice", _leaf_counts("plant001_rgb.png, 3\nplant001_rgb.png, 4\n"), "listed twice"],
    ["leaf count line without count", _leaf_counts("plant001_rgb.png\n"), "line 1: expected"],
    # links
    ["symlinked photo", _leaf_symlinked_photo, None],
    # inference
    ["constant photo (inference)", _leaf_segment(np.full((H, W, 3), 80, np.uint8)), None],
    ["1-pixel photo (inference)", _leaf_segment(_rgb(1, 1)), None],
    [
        "output_dir = the photos' parent, overwrite",
        _leaf_segment(_rgb(), lambda r: r / "project", True),
        "contains the input folder",
    ],
    [
        "output_dir = the photo folder, overwrite",
        _leaf_segment(_rgb(), lambda r: r / "project" / "photos", True),
        "is the input folder",
    ],
    [
        "output_dir inside the photo folder",
        _leaf_segment(_rgb(), lambda r: r / "project" / "photos" / "res"),
        "lies inside the input folder",
    ],
]


@pytest.mark.parametrize("name, build, expected", LEAF_CORPUS, ids=[c[0] for c in LEAF_CORPUS])
def test_leaf_corpus(tmp_path, name, build, expected):
    _run_row(tmp_path, build, expected)


# ----------------------------------------------------------------------------------------------------
# cell: CTC folders (tTTT.tif frames, SEG/TRA ground truth, man_track.txt); tracking into a folder
# ----------------------------------------------------------------------------------------------------

CH, CW = 16, 20
TABLE = "1 0 2 0\n2 0 1 0\n"  # track 1 in frames 0..2, track 2 in frames 0..1


def _markers(t: int) -> np.ndarray:
    markers = np.zeros((CH, CW), np.uint16)
    markers[2:5, 2 + t : 5 + t] = 1
    if t < 2:
        markers[10:13, 10:13] = 2
    return markers


def _frame(t: int) -> np.ndarray:
    return (_markers(t) > 0).astype(np.uint16) * 500 + 7 + t


def _cell(root: Path, frames=range(3), digits: int = 3, image=None, table: str | None = TABLE, seg=False) -> Path:
    """``root/ds/01/tTTT.tif`` (``image(t)`` or :func:`_frame`) + ``01_GT/TRA`` (+ ``SEG``); returns ``ds``."""
    ds = root / "ds"
    for t in frames:
        tifffile.imwrite(_mkdir(ds / "01") / f"t{t:0{digits}d}.tif", _frame(t) if image is None else image(t))
        if table is not None:
            tifffile.imwrite(_mkdir(ds / "01_GT" / "TRA") / f"man_track{t:0{digits}d}.tif", _markers(t))
        if seg:
            tifffile.imwrite(_mkdir(ds / "01_GT" / "SEG") / f"man_seg{t:0{digits}d}.tif", _markers(t))
    if table is not None:
        _write(ds / "01_GT" / "TRA" / "man_track.txt", table)
    return ds


def _cell_track_inputs(folder: Path):
    """What cell inference does before the network: list the sequences, check them, stream their frames."""

    def action(out):
        videos = []
        for seq in find_ctc_sequences(folder):
            check_ctc_frames(seq)
            videos.append([normalize_frame(image, 1.0, 1.0) for _, image in iter_ctc_frames(seq)])
        return videos

    return action


def _cell_train_inputs(folder: Path):
    """What cell training reads: every annotated sequence with its merged SEG/TRA labels and lineage."""
    return lambda out: [read_ctc_training_video(seq) for seq in find_ctc_sequences(folder)]


def _cell_frames(array, make=None):
    """Every frame of the sequence is ``array`` (or :func:`_frame` damaged by ``make``); the error names t000."""

    def build(root):
        ds = _cell(root, image=(lambda t: array) if array is not None else None)
        if make is not None:
            for path in sorted((ds / "01").iterdir()):
                make(path)
        return _cell_track_inputs(ds), ds / "01" / "t000.tif"

    return build


def _cell_handled(image):
    """Frames ``image(t)`` are read unchanged (as float32) and normalized to finite values."""

    def build(root):
        ds = _cell(root, image=image)

        def action(out):
            ((seq,),) = [find_ctc_sequences(ds)]
            frames = [f for _, f in iter_ctc_frames(seq)]
            for t, got in enumerate(frames):
                np.testing.assert_array_equal(got, np.asarray(image(t)).astype(np.float32))
            for (x,) in _cell_track_inputs(ds)(out)[0]:
                assert torch.isfinite(x).all() and x.abs().max() <= 20

        return action, None

    return build


def _cell_folder(names):
    def build(root):
        folder = _mkdir(root / "ds" / "01").parent
        for name in names:
            tifffile.imwrite(folder / "01" / name, _frame(0))
        return _cell_track_inputs(folder), folder

    return build


def _cell_one_file(rel: str, make):
    """``make(path)`` rewrites ``ds/<rel>`` of a good sequence; the training error names that file."""

    def build(root):
        ds = _cell(root, seg=True)
        make(ds / rel)
        return _cell_train_inputs(ds), ds / rel

    return build


def _cell_table(text: str, bad: str = "man_track.txt"):
    """A sequence whose ``man_track.txt`` is ``text``; the error names ``bad`` (a file of ``01_GT/TRA``)."""

    def build(root):
        ds = _cell(root, table=text)
        return _cell_train_inputs(ds), ds / "01_GT" / "TRA" / bad

    return build


def _cell_extra_frame(name: str):
    """A good sequence plus the frame file ``name`` (e.g. a 4-digit one beside 3-digit ones)."""

    def build(root):
        ds = _cell(root)
        tifffile.imwrite(ds / "01" / name, _frame(0))
        return _cell_track_inputs(ds), ds / "01"

    return build


def _cell_remove(rel: str, bad: str):
    def build(root):
        ds = _cell(root)
        (ds / rel).unlink()
        return _cell_train_inputs(ds), ds / bad

    return build


def _cell_gap(digits: int):
    def build(root):
        ds = _cell(root, frames=(0, 1, 3), digits=digits, table=None)
        return _cell_track_inputs(ds), ds / "01"

    return build


def _cell_symlinked(root):
    ds = _cell(root)
    (root / "link").mkdir()
    (root / "link" / "01").symlink_to(ds / "01", target_is_directory=True)

    def action(out):
        (video,) = _cell_track_inputs(root / "link")(out)
        assert len(video) == 3

    return action, None


def _cell_sequence_folder(root):
    folder = _cell(root) / "01"

    def action(out):
        (video,) = _cell_track_inputs(folder)(out)
        assert len(video) == 3

    return action, None


def _cell_tabs_and_blank_lines(root):
    ds = _cell(root, table="\n1\t0\t2\t0\n\n2 0 1 0\n\n")

    def action(out):
        (video,) = _cell_train_inputs(ds)(out)
        np.testing.assert_array_equal(video["tracks"], [[1, 0, 2, 0], [2, 0, 1, 0]])

    return action, None


def _cell_output(output):
    """cell inference of ``ds`` into ``output(root)`` with overwrite: refused before anything is created."""

    def build(root):
        ds = _cell(root)
        net = RecurrentStackedHourglass(1, 4, num_levels=2, num_filters=4)
        return (lambda out: track_folder(net, str(ds), str(output(root)), None, (16, 16), overwrite=True)), output(root)

    return build


CELL_TABLE_ROWS = [
    ["man_track line with three fields", "1 0 2 0\n2 0 1\n", r"line 2 \('2 0 1'\): expected four integers"],
    ["man_track line not integers", "1 0 2 0\n2 0 one 0\n", "line 2 .*expected four integers"],
    ["man_track parent that does not exist", "1 0 2 0\n2 0 1 7\n", "line 2: parent 7 of track 2 is not in the table"],
    ["man_track begin after end", "1 2 0 0\n2 0 1 0\n", "line 1 .*last frame E is before the first frame B"],
    ["man_track label twice", "1 0 2 0\n1 0 1 0\n", "track label 1 already defined on line 1"],
    ["man_track own parent", "1 0 2 0\n2 0 1 2\n", "track is its own parent"],
    [
        "man_track parent alive when the child begins",
        "1 0 2 0\n2 0 1 1\n",
        "parent 1 ends at frame 2, not before its child 2",
    ],
    ["man_track negative first frame", "1 -1 2 0\n2 0 1 0\n", "first frame B must be >= 0"],
    ["man_track label 0", "0 0 2 0\n", "track label L must be > 0"],
    [
        "man_track empty, markers drawn",
        "",
        r"marker label\(s\) 1, 2 of frame 0 are not in man_track.txt",
        "man_track000.tif",
    ],
]
CELL_CORPUS = [
    # folders
    [
        "data set folder missing",
        lambda r: (_cell_track_inputs(r / "missing"), r / "missing"),
        "CTC data folder not found",
    ],
    ["empty data set folder", _cell_folder([]), "no CTC sequence found"],
    [
        "wrong names only (.png, .tiff, 2 digits, img000)",
        _cell_folder(["t000.png", "t000.tiff", "t00.tif", "img000.tif"]),
        "no CTC sequence found",
    ],
    ["3- and 4-digit frame names in one folder", _cell_extra_frame("t0002.tif"), r"different digit counts \[3, 4\]"],
    ["the same frame twice (t000.tif and t0000.tif)", _cell_extra_frame("t0000.tif"), "different digit counts"],
    ["frame gap (t000, t001, t003)", _cell_gap(3), r"frames are missing from the video: t002.tif"],
    ["frame gap in a 4-digit folder", _cell_gap(4), r"frames are missing from the video: t0002.tif"],
    ["sequence folder given directly", _cell_sequence_folder, None],
    ["symlinked sequence folder", _cell_symlinked, None],
    # unreadable files
    ["truncated TIFF", _cell_frames(None, _truncated), "cannot read the TIFF"],
    ["zero-byte TIFF", _cell_frames(None, lambda p: p.write_bytes(b"")), "cannot read the TIFF"],
    ["text file named .tif", _cell_frames(None, lambda p: p.write_text("not a TIFF")), "cannot read the TIFF"],
    # pixel types and values
    [
        "RGB frames",
        _cell_frames(np.zeros((CH, CW, 3), np.uint8)),
        r"expected a 2D single-channel image, got shape \(16, 20, 3\)",
    ],
    ["3D stacks as frames", _cell_frames(np.zeros((2, CH, CW), np.uint16)), "expected a 2D single-channel image"],
    ["empty frames (0 x 0)", _cell_frames(np.zeros((0, 0), np.uint16)), r"the image is empty"],
    ["bool frames", _cell_frames(np.ones((CH, CW), bool)), "unsupported pixel type bool"],
    ["complex frames", _cell_frames(np.ones((CH, CW), np.complex64)), "unsupported pixel type complex64"],
    [
        "float frames with Inf",
        _cell_frames(np.full((CH, CW), np.inf, np.float32)),
        f"{CH * CW} pixel.s. are NaN or infinite",
    ],
    ["float64 frames beyond float32", _cell_frames(np.full((CH, CW), -1e300)), "exceed the float32 range"],
    ["uint8 frames", _cell_handled(lambda t: _frame(t).astype(np.uint8)), None],
    ["int64 frames", _cell_handled(lambda t: _frame(t).astype(np.int64) - 300), None],
    ["float32 frames near the float32 limit", _cell_handled(lambda t: _frame(t).astype(np.float32) * 1e35), None],
    ["constant frames", _cell_handled(lambda t: np.full((CH, CW), 42, np.uint16)), None],
    ["1-pixel frames", _cell_handled(lambda t: np.full((1, 1), t, np.uint16)), None],
    [
        "frame size differs",
        lambda r: (
            _cell_track_inputs(_cell(r, image=lambda t: np.zeros((CH, CW + t), np.uint16))),
            r / "ds" / "01" / "t001.tif",
        ),
        r"frame size \(16, 21\) differs from the first frame's",
    ],
    # ground truth files
    [
        "TRA size differs from the image",
        _cell_one_file("01_GT/TRA/man_track001.tif", lambda p: tifffile.imwrite(p, np.zeros((CH, CW + 1), np.uint16))),
        r"size \(16, 21\) differs from the image size",
    ],
    [
        "SEG with float labels",
        _cell_one_file("01_GT/SEG/man_seg001.tif", lambda p: tifffile.imwrite(p, _markers(1).astype(np.float32))),
        "label image must hold integers",
    ],
    [
        "TRA with negative labels",
        _cell_one_file("01_GT/TRA/man_track001.tif", lambda p: tifffile.imwrite(p, -_markers(1).astype(np.int16))),
        "negative labels",
    ],
    ["truncated TRA", _cell_one_file("01_GT/TRA/man_track002.tif", _truncated), "cannot read the TIFF"],
    [
        "TRA file missing for a frame",
        _cell_remove("01_GT/TRA/man_track002.tif", "01_GT/TRA"),
        r"TRA marker files missing for frame\(s\) \[2\]",
    ],
    ["no man_track.txt", _cell_remove("01_GT/TRA/man_track.txt", "01_GT"), "no tracking ground truth"],
    [
        "man_track not text (UTF-8)",
        _cell_one_file("01_GT/TRA/man_track.txt", lambda p: p.write_bytes(b"\xff\xfe1\x000")),
        "cannot read the track table",
    ],
    ["man_track with tabs and blank lines", _cell_tabs_and_blank_lines, None],
    *[[name, _cell_table(text, *bad), error] for name, text, error, *bad in CELL_TABLE_ROWS],
    # outputs
    ["output_dir = data set folder, overwrite", _cell_output(lambda r: r / "ds"), "is the input folder"],
    [
        "output_dir = sequence folder, overwrite",
        _cell_output(lambda r: r / "ds" / "01"),
        "lies inside the input folder",
    ],
    [
        "output_dir inside the ground truth, overwrite",
        _cell_output(lambda r: r / "ds" / "01_GT" / "RES"),
        "lies inside the input folder",
    ],
]


@pytest.mark.parametrize("name, build, expected", CELL_CORPUS, ids=[c[0] for c in CELL_CORPUS])
def test_cell_corpus(tmp_path, name, build, expected):
    _run_row(tmp_path, build, expected)


def test_training_clips_never_span_a_frame_gap(tmp_path, caplog):
    """t003 is missing: the video is cut there, so no clip, validation part or scored part runs across it."""
    ds = _cell(tmp_path, frames=(0, 1, 2, 4, 5, 6, 7), image=lambda t: np.full((CH, CW), t, np.uint16), table=None)
    tracks = np.array([[1, 0, 7, 0]])
    for t in (0, 1, 2, 4, 5, 6, 7):
        tifffile.imwrite(_mkdir(ds / "01_GT" / "TRA") / f"man_track{t:03d}.tif", (_markers(0) == 1).astype(np.uint16))
    write_track_table(ds / "01_GT" / "TRA" / "man_track.txt", tracks)
    before = _checksums(ds)
    sequences = find_ctc_sequences(ds)
    with caplog.at_level("WARNING"):
        train, val = split_video_frames(sequences, "-5:")
    assert "frame numbers 3..3 are missing" in caplog.text
    assert [(p.name, list(p.frames)) for p in train] == [("01[0:2]", [0, 1])]
    assert [(p.name, list(p.frames)) for p in val] == [("01[2:3]", [2]), ("01[4:8]", [4, 5, 6, 7])]
    train, _ = split_video_frames(sequences, [6, 7])
    assert [list(p.frames) for p in train] == [[0, 1, 2], [4, 5]]
    clips = ClipDataset(read_ctc_cases(train), clip_length=3)
    starts = sorted(tuple(clip["image"][:, 0, 0].tolist()) for clip in clips)
    assert starts == [(0.0, 1.0, 2.0), (4.0, 5.0)]  # frame t holds the value t: every clip is consecutive
    assert [p.name for p in whole_sequences(sequences)] == ["01[0:3]", "01[4:8]"]
    assert [p.name for p in whole_sequences(find_ctc_sequences(_cell(tmp_path / "b")))] == ["01"]
    assert _checksums(ds) == before
