"""The trained models the bundles ship: a new user's one command on a small real input, no training."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO_ROOT, run_bundle
from PIL import Image

from cosinetrack.apps.cell.reader import find_ctc_sequences
from cosinetrack.apps.cell.validation import validate_ctc_result
from cosinetrack.apps.cell.writer import write_ctc_subsequence
from cosinetrack.workflows.checkpoint import stored_network_settings

SHIPPED = sorted(p.relative_to(REPO_ROOT).as_posix() for p in REPO_ROOT.glob("bundles/*/models/*.pt"))


@pytest.mark.parametrize("bundle", ["cell", "leaf", "lv_mri"])
def test_every_bundle_ships_a_model(bundle):
    assert f"bundles/{bundle}/models/model.pt" in SHIPPED


@pytest.mark.parametrize("path", SHIPPED)
def test_shipped_model_is_small_records_its_network_and_is_described_in_metadata(path):
    file = REPO_ROOT / path
    assert file.stat().st_size <= 20 * 2**20
    settings = stored_network_settings(str(file))
    assert settings and {"num_levels", "num_filters", "out_channels", "recurrent"} <= set(settings)
    meta = json.loads((file.parent.parent / "metadata.json").read_text())
    entry = meta["trained_models"][file.name]
    assert {"training_data", "command", "cpu_time", "held_out_scores", "network"} <= set(entry)
    assert entry["network"] == {k: settings[k] for k in entry["network"]}


@pytest.mark.real_data
@pytest.mark.parametrize(
    "data_set, frames",
    [
        ("Fluo-N2DH-SIM+", [60, 61, 62]),  # models/model.pt serves every video (no models/<preset>.pt ships)
        ("Fluo-N2DH-GOWT1", [88, 89, 90]),  # models/model.pt, run with the normalization it records
    ],
)
def test_cell_inference_with_the_shipped_model_on_real_frames(shared_data, tmp_path, data_set, frames):
    """``python -m monai.bundle run inference --config_file ... --input_dir my_video --output_dir my_result``:
    a valid CTC result that finds most of the cells (held-out frames of the training videos)."""
    import tifffile

    (seq,) = [s for s in find_ctc_sequences(shared_data / "ctc" / data_set) if s.name == "01"]
    video = write_ctc_subsequence(seq, frames, tmp_path / data_set, name="01")
    before = {p: p.read_bytes() for p in (tmp_path / data_set).rglob("*") if p.is_file()}
    run_bundle(
        "inference", ["bundles/cell/train.json", "bundles/cell/inference.json"], "--input_dir", video.image_dir,
        "--output_dir", str(tmp_path / "result"), "--num_threads", "2", tmp=tmp_path,
    )  # fmt: skip
    res = tmp_path / "result" / "01_RES"
    masks = sorted(res.glob("mask*.tif"))
    assert validate_ctc_result(res) and len(masks) == 3
    for i, mask in enumerate(masks):
        found = len(np.unique(tifffile.imread(mask))) - 1
        cells = len(np.unique(tifffile.imread(video.tra[i]))) - 1
        assert 0.8 * cells <= found <= 1.5 * cells, (mask.name, found, cells)  # GOWT1/01 88: 26 for 20 markers
    assert {p: p.read_bytes() for p in (tmp_path / data_set).rglob("*") if p.is_file()} == before


@pytest.mark.real_data
def test_leaf_inference_with_the_shipped_model_on_real_photos(shared_data, tmp_path):
    """Label PNGs of the photos' size and a leaf count per plant, with no ``--ckpt_path``."""
    photos = tmp_path / "my plants"
    photos.mkdir()
    for name in ("plant001_rgb.png", "plant002_rgb.png"):
        (photos / name).write_bytes((shared_data / "cvppp" / "A1" / name).read_bytes())
    before = {p: p.read_bytes() for p in photos.iterdir()}
    run_bundle(
        "inference", ["bundles/leaf/train.json", "bundles/leaf/inference.json"], "--input_dir", str(photos),
        "--output_dir", str(tmp_path / "result"), "--num_threads", "2", tmp=tmp_path,
    )  # fmt: skip
    for name in ("plant001", "plant002"):
        rgb = np.asarray(Image.open(photos / f"{name}_rgb.png"))
        label = np.asarray(Image.open(tmp_path / "result" / f"{name}_label.png"))
        assert label.shape == rgb.shape[:2]
        assert 3 <= len(np.unique(label)) - 1 <= 40  # some leaves, not noise
    counts = dict(line.split(", ") for line in (tmp_path / "result" / "leaf_counts.csv").read_text().splitlines())
    assert set(counts) == {"plant001_rgb.png", "plant002_rgb.png"} and all(int(n) >= 3 for n in counts.values())
    assert {p: p.read_bytes() for p in photos.iterdir()} == before


@pytest.mark.real_data
def test_lv_mri_inference_with_the_shipped_model_on_a_real_patient(shared_data, tmp_path):
    """NIfTI labels shaped like each input (one ACDC patient, ED and ES volumes), with no ``--ckpt_path``."""
    images = tmp_path / "my cines"  # a plain folder of NIfTI images (the MSD layout with imagesTr/ works too)
    images.mkdir()
    for frame in ("01", "02"):  # ED and ES
        name = f"patient001_frame{frame}.nii.gz"
        (images / name).write_bytes((shared_data / "acdc" / "imagesTr" / name).read_bytes())
    run_bundle(
        "inference", ["bundles/lv_mri/train.json", "configs/acdc.json", "bundles/lv_mri/inference.json"],
        "--input_dir", str(images), "--output_dir", str(tmp_path / "result"), "--num_threads", "2", tmp=tmp_path,
    )  # fmt: skip
    for image in sorted(images.glob("*.nii.gz")):
        out = nib.load(str(tmp_path / "result" / image.name.replace(".nii.gz", "_pred.nii.gz")))
        assert out.shape == nib.load(str(image)).shape
        values = set(np.unique(np.asarray(out.dataobj)).tolist())
        assert values <= {0, 1, 2} and {1, 2} <= values  # myocardium and cavity found somewhere


@pytest.mark.parametrize("bundle", ["cell", "leaf", "lv_mri"])
def test_metadata_flattens_to_valid_mlflow_param_names(bundle):
    """Bundle runs log their metadata as MLflow params; a name MLflow refuses would fail every run."""
    from mlflow.utils.validation import _validate_param_name

    from cosinetrack.handlers.mlflow import flatten_params

    meta = json.loads((REPO_ROOT / "bundles" / bundle / "metadata.json").read_text())
    for name in flatten_params({"_meta_": meta}):
        _validate_param_name(name)
