"""The trained models the bundles ship: a new user's one command on a small real input, no training."""

from __future__ import annotations

import json

import pytest
from conftest import REPO_ROOT, run_bundle

from cosinetrack.data import find_ctc_sequences, write_ctc_subsequence
from cosinetrack.engines import stored_network_settings
from cosinetrack.io import validate_ctc_result

SHIPPED = sorted(p.relative_to(REPO_ROOT).as_posix() for p in REPO_ROOT.glob("bundles/*/models/*.pt"))


def test_the_cell_bundle_ships_a_model():
    assert "bundles/cell/models/model.pt" in SHIPPED


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
def test_cell_inference_with_the_shipped_model_on_real_frames(shared_data, tmp_path):
    """``python -m monai.bundle run inference --config_file ... --input_dir my_video --output_dir my_result``."""
    (seq,) = [s for s in find_ctc_sequences(shared_data / "ctc" / "Fluo-N2DH-SIM+") if s["name"] == "01"]
    video = write_ctc_subsequence(seq, [60, 61, 62], tmp_path / "Fluo-N2DH-SIM+", name="01")
    before = {p: p.read_bytes() for p in (tmp_path / "Fluo-N2DH-SIM+").rglob("*") if p.is_file()}
    run_bundle(
        "inference", ["bundles/cell/train.json", "bundles/cell/inference.json"], "--input_dir", video["image_dir"],
        "--output_dir", str(tmp_path / "result"), "--num_threads", "2", tmp=tmp_path,
    )  # fmt: skip
    res = tmp_path / "result" / "01_RES"
    assert validate_ctc_result(res) and len(list(res.glob("mask*.tif"))) == 3
    assert {p: p.read_bytes() for p in (tmp_path / "Fluo-N2DH-SIM+").rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("bundle", ["cell", "leaf", "lv_mri"])
def test_metadata_flattens_to_valid_mlflow_param_names(bundle):
    """Bundle runs log their metadata as MLflow params; a name MLflow refuses would fail every run."""
    from mlflow.utils.validation import _validate_param_name

    from cosinetrack.handlers import flatten_params

    meta = json.loads((REPO_ROOT / "bundles" / bundle / "metadata.json").read_text())
    for name in flatten_params({"_meta_": meta}):
        _validate_param_name(name)
