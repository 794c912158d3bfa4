"""Tests of the deterministic synthetic cine-MRI generator and its MSD-layout writer."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from cosinetrack.apps.lv_mri.synthetic import (
    GENERATOR_VERSION,
    LABELS,
    case_seed,
    default_cache_dir,
    ensure_synthetic_cine_dataset,
    generate_cine_case,
    main,
    write_synthetic_cine_dataset,
)

SEEDS = (0, 1, 2, 7, 123)


@pytest.fixture(scope="module")
def cases() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    return {s: generate_cine_case(s, (96, 112), 20) for s in SEEDS}


def test_shapes_dtypes_and_determinism(cases: dict) -> None:
    image, label = cases[0]
    assert image.shape == (96, 112, 20) and label.shape == (96, 112, 20)
    assert image.dtype == np.float32 and label.dtype == np.uint8
    image2, label2 = generate_cine_case(0, (96, 112), 20)
    np.testing.assert_array_equal(image, image2)
    np.testing.assert_array_equal(label, label2)
    image3, label3 = cases[1]
    assert not np.array_equal(image, image3)
    assert not np.array_equal(label, label3)


def test_labels_anatomy(cases: dict) -> None:
    ring = np.ones((3, 3, 1), dtype=bool)  # 8-neighborhood within each frame
    for seed, (_, label) in cases.items():
        assert set(np.unique(label).tolist()) == {0, 1, 2, 3}, seed
        cavity = label == 3
        for t in range(label.shape[2]):
            assert cavity[..., t].any() and (label[..., t] == 1).any() and (label[..., t] == 2).any()
        # the myocardium surrounds the cavity: the 1-px dilated cavity stays in cavity or myocardium
        grown = ndi.binary_dilation(cavity, structure=ring)
        assert np.all(label[grown] >= 2), seed
        # the cavity is one blob per frame and the labels stay away from the image border
        for t in range(label.shape[2]):
            assert ndi.label(cavity[..., t])[1] == 1
        assert not (label[0].any() or label[-1].any() or label[:, 0].any() or label[:, -1].any())
        # clear contraction: ED / ES cavity area ratio
        area = cavity.sum(axis=(0, 1))
        assert area.max() / area.min() > 1.3, (seed, area)


def test_myocardium_thickens_when_cavity_contracts(cases: dict) -> None:
    for seed, (_, label) in cases.items():
        cav = (label == 3).sum(axis=(0, 1)).astype(float)
        myo = (label == 2).sum(axis=(0, 1)).astype(float)
        t_ed, t_es = int(cav.argmax()), int(cav.argmin())
        # approximately conserved myocardial area (within -10 % .. +30 %) on a thinner ring at ED
        assert 0.9 < myo[t_es] / myo[t_ed] < 1.3, (seed, myo[t_ed], myo[t_es])
        epi_ed, epi_es = np.sqrt((cav[t_ed] + myo[t_ed]) / np.pi), np.sqrt((cav[t_es] + myo[t_es]) / np.pi)
        thick_ed = epi_ed - np.sqrt(cav[t_ed] / np.pi)
        thick_es = epi_es - np.sqrt(cav[t_es] / np.pi)
        assert thick_es > 1.1 * thick_ed, seed


def test_motion_is_smooth_and_periodic() -> None:
    # two cycles over 40 frames: frame t and t + 20 show the same heart (only the noise differs)
    _, label = generate_cine_case(5, (128, 128), 40, cycles_per_clip=2.0)
    area = (label == 3).sum(axis=(0, 1)).astype(float)
    np.testing.assert_allclose(area[:20], area[20:], rtol=0.02)
    assert area.max() / area.min() > 1.3
    # smooth: no jump between consecutive frames larger than a quarter of the ED-ES range
    assert np.abs(np.diff(area)).max() < 0.25 * (area.max() - area.min())
    # the anatomy does not depend on the heart-rate override or the noise
    _, label_a = generate_cine_case(5, (128, 128), 1, cycles_per_clip=0.5)
    _, label_b = generate_cine_case(5, (128, 128), 1, cycles_per_clip=1.5, noise_scale=0.0)
    np.testing.assert_array_equal(label_a, label_b)


def test_intensities(cases: dict) -> None:
    for seed, (image, label) in cases.items():
        assert np.isfinite(image).all()
        assert image.min() >= 0.0 and image.max() <= 1.0
        cav, myo, rv = image[label == 3].mean(), image[label == 2].mean(), image[label == 1].mean()
        assert cav > myo + 0.1 and cav > 1.5 * myo, (seed, cav, myo)  # bright-blood cine contrast
        assert rv > myo + 0.05, (seed, rv, myo)
        # dark air in the corners, noisy (Rician) but not zero
        corner = image[:4, :4]
        assert corner.mean() < 0.1 and corner.std() > 0


def test_noise_free_and_variation_between_seeds(cases: dict) -> None:
    image, _ = generate_cine_case(3, (64, 64), 4, noise_scale=0.0)
    assert np.all(image[:2, :2] == 0.0)  # no noise: air is exactly 0
    centers = [np.argwhere(lab[..., 0] == 3).mean(axis=0) for _, lab in cases.values()]
    assert np.ptp(np.array(centers), axis=0).max() > 3  # positions vary
    areas = [(lab == 3).sum() for _, lab in cases.values()]
    assert max(areas) / min(areas) > 1.2  # sizes vary


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        generate_cine_case(0, (16, 64))
    with pytest.raises(ValueError):
        generate_cine_case(0, (64, 64), 0)


def test_case_seed() -> None:
    assert case_seed(0, 1) == case_seed(0, 1)
    assert len({case_seed(0, i) for i in range(10)} | {case_seed(1, i) for i in range(10)}) == 20


def _mtimes(folder: str) -> dict[str, int]:
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            path = os.path.join(root, f)
            out[path] = os.stat(path).st_mtime_ns
    return out


def test_writer_round_trip_and_cache(tmp_path) -> None:
    out = tmp_path / "synth"
    entries = write_synthetic_cine_dataset(out, num_cases=2, seed=3, image_size=(96, 112), num_frames=6)
    assert len(entries) == 2
    for i, entry in enumerate(entries):
        assert os.path.isabs(entry["image"]) and os.path.isabs(entry["label"])
        assert entry["image"] == str(out / "imagesTr" / f"synth{i:03d}.nii.gz")
        assert entry["label"] == str(out / "labelsTr" / f"synth{i:03d}.nii.gz")
        image, label = generate_cine_case(case_seed(3, i), (96, 112), 6)
        nii = nib.load(entry["image"])
        assert nii.shape == (96, 112, 6)
        assert nii.get_data_dtype() == np.float32
        np.testing.assert_array_equal(nii.get_fdata(), image.astype(np.float64))
        np.testing.assert_array_equal(nii.affine, np.eye(4))
        assert tuple(float(z) for z in nii.header.get_zooms()) == (1.0, 1.0, 1.0)
        lab = nib.load(entry["label"])
        assert lab.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(np.asarray(lab.dataobj), label)

    data = json.loads((out / "dataset.json").read_text())
    assert data["labels"] == LABELS == {
        "0": "background", "1": "right ventricle", "2": "myocardium", "3": "left ventricle cavity",
    }
    assert data["numTraining"] == 2
    assert data["training"][1] == {
        "image": "./imagesTr/synth001.nii.gz", "label": "./labelsTr/synth001.nii.gz",
    }
    gen = data["generator"]
    assert gen["module"] == "cosinetrack.apps.lv_mri.synthetic" and gen["version"] == GENERATOR_VERSION
    assert (gen["seed"], gen["num_cases"], gen["image_size"], gen["num_frames"]) == (3, 2, [96, 112], 6)
    assert sorted(os.listdir(tmp_path)) == ["synth"]  # no temporary folder left behind

    # cache hit: nothing rewritten
    before = _mtimes(str(out))
    again = write_synthetic_cine_dataset(out, num_cases=2, seed=3, image_size=(96, 112), num_frames=6)
    assert again == entries
    assert _mtimes(str(out)) == before

    # other parameters: refused unless overwrite
    with pytest.raises(FileExistsError, match="overwrite"):
        write_synthetic_cine_dataset(out, num_cases=2, seed=4, image_size=(96, 112), num_frames=6)
    assert _mtimes(str(out)) == before
    write_synthetic_cine_dataset(out, num_cases=1, seed=4, image_size=(96, 112), num_frames=6, overwrite=True)
    data = json.loads((out / "dataset.json").read_text())
    assert data["generator"]["seed"] == 4 and data["numTraining"] == 1
    assert not (out / "imagesTr" / "synth001.nii.gz").exists()
    assert sorted(os.listdir(tmp_path)) == ["synth"]


def test_writer_never_deletes_foreign_folders(tmp_path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="not made by"):
            write_synthetic_cine_dataset(foreign, num_cases=1, image_size=(48, 48), num_frames=2,
                                         overwrite=overwrite)
    (foreign / "dataset.json").write_text(json.dumps({"name": "someone else's"}))
    with pytest.raises(FileExistsError):
        write_synthetic_cine_dataset(foreign, num_cases=1, image_size=(48, 48), num_frames=2, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"
    # an empty folder is fine
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(write_synthetic_cine_dataset(empty, num_cases=1, image_size=(48, 48), num_frames=2)) == 1


def test_ensure_and_default_cache_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COSINETRACK_CACHE", str(tmp_path / "cache"))
    assert default_cache_dir() == str(tmp_path / "cache")
    monkeypatch.delenv("COSINETRACK_CACHE")
    assert default_cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "cosinetrack")

    folder = ensure_synthetic_cine_dataset(tmp_path, num_cases=1, image_size=(48, 40), num_frames=3)
    assert os.path.dirname(folder) == str(tmp_path)
    assert os.path.isfile(os.path.join(folder, "dataset.json"))
    before = _mtimes(folder)
    assert ensure_synthetic_cine_dataset(tmp_path, num_cases=1, image_size=(48, 40), num_frames=3) == folder
    assert _mtimes(folder) == before
    other = ensure_synthetic_cine_dataset(tmp_path, num_cases=1, seed=1, image_size=(48, 40), num_frames=3)
    assert other != folder
    with pytest.raises(TypeError):
        ensure_synthetic_cine_dataset(tmp_path, frames=3)


def test_cli(tmp_path, capsys) -> None:
    out = tmp_path / "cli"
    args = ["--out", str(out), "--num-cases", "2", "--seed", "5", "--size", "40", "56", "--frames", "3"]
    assert main(args) == 0
    assert str(out) in capsys.readouterr().out
    data = json.loads((out / "dataset.json").read_text())
    assert data["numTraining"] == 2 and data["generator"]["image_size"] == [40, 56]
    assert nib.load(str(out / "imagesTr" / "synth001.nii.gz")).shape == (40, 56, 3)
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(out), "--num-cases", "3", "--size", "40", "56", "--frames", "3"])
    assert exc.value.code == 2
    assert main(["--out", str(out), "--num-cases", "3", "--size", "40", "56", "--frames", "3",
                 "--overwrite"]) == 0
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 3
