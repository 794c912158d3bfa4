"""The cine NIfTI reader: layouts, sparse labels, label maps and the errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import save_nifti

from cosinetrack.apps.lv_mri.nifti import IGNORE_LABEL, find_msd_cases, load_datalist, read_cine_case, resolve_cases
from cosinetrack.errors import CosineTrackDataError

H, W = 12, 17  # non-square on purpose: a silent transpose shows up as a shape error


def _xyt(tmp_path, name="case", t=5, with_label=True):
    rng = np.random.default_rng(0)
    img = rng.random((H, W, t)).astype(np.float32)
    lab = rng.integers(0, 4, (H, W, t)).astype(np.uint8)
    save_nifti(tmp_path / "imagesTr" / f"{name}.nii.gz", img)
    if with_label:
        save_nifti(tmp_path / "labelsTr" / f"{name}.nii.gz", lab)
    return img, lab


def test_xyt_case_axes_and_values(tmp_path):
    img, lab = _xyt(tmp_path)
    (case,) = find_msd_cases(str(tmp_path))
    image, label = read_cine_case(case)
    assert image.shape == (1, 5, H, W) and label.shape == (1, 5, H, W)
    np.testing.assert_array_equal(image[0, 2], img[:, :, 2])
    np.testing.assert_array_equal(label[0, 3], lab[:, :, 3])


def test_label_map_applied_and_unknown_value_rejected(tmp_path):
    _, lab = _xyt(tmp_path)
    (case,) = find_msd_cases(str(tmp_path))
    _, label = read_cine_case(case, label_map={"0": 0, "1": 0, "2": 1, "3": 2})
    np.testing.assert_array_equal(label[0, 0], np.array([0, 0, 1, 2])[lab[:, :, 0]])
    with pytest.raises(CosineTrackDataError, match=r"labelsTr/case.nii.gz.*\[3\] are not in label_map"):
        read_cine_case(case, label_map={"0": 0, "1": 0, "2": 1})


def test_grouped_frames_give_time_axis_and_missing_labels_are_ignored(tmp_path):
    rng = np.random.default_rng(1)
    vols = [rng.random((H, W, 3)).astype(np.float32) for _ in range(3)]
    for k, v in enumerate(vols, start=1):
        save_nifti(tmp_path / "imagesTr" / f"p001_frame{k:02d}.nii.gz", v)
    save_nifti(tmp_path / "labelsTr" / "p001_frame02.nii.gz", np.ones((H, W, 3), np.uint8))
    (case,) = find_msd_cases(str(tmp_path), frame_pattern=r"_frame(\d+)")
    assert case["name"] == "p001" and len(case["image"]) == 3
    image, label = read_cine_case(case)
    assert image.shape == (3, 3, H, W)  # (Z, T, H, W)
    np.testing.assert_array_equal(image[2, 1], vols[1][:, :, 2])
    assert (label[:, 0] == IGNORE_LABEL).all() and (label[:, 2] == IGNORE_LABEL).all()
    assert (label[:, 1] == 1).all()


def test_xyzt_with_sparse_label_frames_from_datalist(tmp_path):
    vol = np.random.default_rng(2).random((H, W, 2, 6)).astype(np.float32)
    save_nifti(tmp_path / "cine4d.nii.gz", vol)
    save_nifti(tmp_path / "ed.nii.gz", np.full((H, W, 2), 2, np.uint8))
    save_nifti(tmp_path / "es.nii.gz", np.full((H, W, 2), 3, np.uint8))
    datalist = tmp_path / "list.json"
    entry = {"image": ["cine4d.nii.gz"], "label": ["ed.nii.gz", "es.nii.gz"], "label_frames": [0, 4]}
    datalist.write_text(json.dumps([entry]))
    (case,) = load_datalist(str(datalist))
    image, label = read_cine_case(case, file_layout="xyzt")
    assert image.shape == (2, 6, H, W)
    labeled = (label != IGNORE_LABEL).reshape(2, 6, -1).all(-1)
    assert labeled[:, [0, 4]].all() and not labeled[:, [1, 2, 3, 5]].any()
    assert (label[:, 4] == 3).all()


def test_nan_in_image_is_an_error_naming_the_file(tmp_path):
    img = np.zeros((H, W, 4), np.float32)
    img[1, 2, 3] = np.nan
    save_nifti(tmp_path / "imagesTr" / "bad.nii.gz", img)
    (case,) = find_msd_cases(str(tmp_path))
    with pytest.raises(CosineTrackDataError, match=r"imagesTr/bad.nii.gz: the image has 1 NaN or Inf"):
        read_cine_case(case)


def test_inf_in_image_is_an_error(tmp_path):
    img = np.zeros((H, W, 4), np.float32)
    img[0, 0, 0] = np.inf
    save_nifti(tmp_path / "imagesTr" / "inf.nii.gz", img)
    with pytest.raises(CosineTrackDataError, match="NaN or Inf"):
        read_cine_case(find_msd_cases(str(tmp_path))[0])


def test_shape_mismatch_is_an_error(tmp_path):
    save_nifti(tmp_path / "imagesTr" / "c.nii.gz", np.zeros((H, W, 4), np.float32))
    save_nifti(tmp_path / "labelsTr" / "c.nii.gz", np.zeros((W, H, 4), np.uint8))
    with pytest.raises(CosineTrackDataError, match=r"labelsTr/c.nii.gz: label shape \(17, 12, 4\) differs"):
        read_cine_case(find_msd_cases(str(tmp_path))[0])


def test_missing_file_in_datalist_is_an_error(tmp_path):
    datalist = tmp_path / "list.json"
    datalist.write_text(json.dumps([{"image": "nothere.nii.gz", "label": "nothere_label.nii.gz"}]))
    (case,) = load_datalist(str(datalist))
    with pytest.raises(CosineTrackDataError, match=r"nothere.nii.gz: file not found"):
        read_cine_case(case)


def test_2d_image_where_time_is_required_is_an_error(tmp_path):
    save_nifti(tmp_path / "imagesTr" / "flat.nii.gz", np.zeros((H, W), np.float32))
    with pytest.raises(CosineTrackDataError, match=r"flat.nii.gz: a 2D image where a time axis is required"):
        read_cine_case(find_msd_cases(str(tmp_path))[0])


def test_unreadable_file_is_an_error(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "imagesTr" / "junk.nii.gz").write_bytes(b"this is not a nifti file")
    with pytest.raises(CosineTrackDataError, match=r"junk.nii.gz: cannot read this file as NIfTI"):
        read_cine_case(find_msd_cases(str(tmp_path))[0])


def test_missing_dataset_dir_and_layout_errors(tmp_path):
    with pytest.raises(CosineTrackDataError, match="does not exist"):
        resolve_cases(str(tmp_path / "nope"))
    with pytest.raises(CosineTrackDataError, match="imagesTr"):
        resolve_cases(str(tmp_path))
