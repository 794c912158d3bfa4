"""ACDC (../shared/data/acdc) through configuration alone: the reader, and a short train + evaluate."""

from __future__ import annotations

import numpy as np
from test_bundle_lv_mri import TINY, run_bundle

from cosinetrack.apps.lv_mri.nifti import read_cine_case, resolve_cases
from cosinetrack.metrics.iou import central_slices


def test_acdc_cases_group_ed_es_frames(shared_data):
    cases = resolve_cases(str(shared_data / "acdc"), frame_pattern=r"_frame(\d+)")
    assert len(cases) == 20 and all(len(c["image"]) == 2 for c in cases)
    image, label = read_cine_case(cases[0], label_map={"0": 0, "1": 0, "2": 1, "3": 2})
    assert image.shape[1] == 2 and image.shape[2:] == (216, 256) and label.shape == image.shape
    assert set(np.unique(label).tolist()) == {0, 1, 2}
    assert len(central_slices(label, [1, 2], 3)) == 3


def test_acdc_trains_and_evaluates_by_overrides(shared_data, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    common = [*TINY, "--dataset_dir", str(shared_data / "acdc"), "--frame_pattern", r"_frame(\d+)",
              "--tracking_uri", uri, "--experiment_name", "acdc"]
    out = tmp_path / "run"
    proc = run_bundle("training", ["bundles/lv_mri/train.json"], "--max_iterations", "2", "--val_interval", "2",
                      "--output_dir", str(out), *common, tmp=tmp_path)
    assert "val_iou_cav" in proc.stdout
    proc = run_bundle("evaluating", ["bundles/lv_mri/train.json", "bundles/lv_mri/evaluate.json"],
                      "--ckpt_path", str(out / "model_best.pt"), "--output_dir", str(tmp_path / "eval"), *common,
                      tmp=tmp_path)
    assert "patient" in proc.stdout and "mean ± std" in proc.stdout
