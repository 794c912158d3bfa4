"""The LV-MRI bundle end to end through the user's command line: train, evaluate, infer, MLflow."""

from __future__ import annotations

import os

import mlflow
import nibabel as nib
import pytest
import torch
from conftest import run_bundle, train_tiny

TINY = ["--image_size", "[32,32]", "--num_levels", "3", "--num_filters", "8", "--num_threads", "2"]
SYNTH = ["--synthetic#num_cases", "4", "--synthetic#image_size", "[40,48]", "--synthetic#num_frames", "6"]
EVALUATE = ["bundles/lv_mri/train.json", "bundles/lv_mri/evaluate.json"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run of the user's command; shared by the tests below."""
    return train_tiny(tmp_path_factory.mktemp("lv"), ["bundles/lv_mri/train.json"], *TINY, *SYNTH)


def test_training_logs_a_complete_mlflow_run(trained):
    tmp, uri, out, proc = trained
    assert "val_iou_myo" in proc.stdout and "Validation after 4 iterations" in proc.stdout
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("test").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith("lv_mri-recurrent-synthetic-cine")
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 4
    assert {"val_iou", "val_iou_myo", "val_iou_cav", "lr_group_0"} <= set(run.data.metrics)
    assert run.data.params["num_levels"] == "3" and run.data.params["recurrent"] == "true"
    assert run.data.tags["task"] == "lv_mri"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "model_best.pt", "figures"} <= artifacts
    figures = [a.path for a in client.list_artifacts(run.info.run_id, "figures/validation")]
    assert len(figures) == 2 and all(f.endswith(".png") for f in figures)
    assert (out / "model_best.pt").is_file() and (out / "model_final.pt").is_file()
    final = torch.load(out / "model_final.pt", weights_only=True)
    assert final["image_size"] == [32, 32] and final["fit"] == "scale"  # inference fits frames the same way
    assert "clustering" not in final  # semantic classes: nothing to cluster


def evaluate_tiny(tmp, uri, ckpt):
    """The user's ``evaluating`` command on the tiny synthetic set with model file ``ckpt``."""
    args = [*TINY, *SYNTH, "--ckpt_path", str(ckpt), "--tracking_uri", uri, "--experiment_name", "test"]
    return run_bundle("evaluating", EVALUATE, *args, "--output_dir", str(tmp / "eval"), tmp=tmp)


def test_evaluate_prints_iou_table(trained):
    tmp, uri, out, _ = trained
    proc = evaluate_tiny(tmp, uri, out / "model_best.pt")
    assert "| case | myo | cav |" in proc.stdout and "mean ± std" in proc.stdout


def test_inference_writes_nifti_like_inputs_and_refuses_existing_output(trained):
    tmp, _, out, _ = trained
    images = tmp / "cache" / os.listdir(tmp / "cache")[0] / "imagesTr"
    pred = tmp / "pred"
    args = [*TINY, "--ckpt_path", str(out / "model_best.pt"), "--input_dir", str(images.parent)]
    args += ["--output_dir", str(pred)]
    run_bundle("inference", ["bundles/lv_mri/train.json", "bundles/lv_mri/inference.json"], *args, tmp=tmp)
    written = sorted(pred.iterdir())
    assert len(written) == 4 and written[0].name == "synth000_pred.nii.gz"
    ref = nib.load(str(images / "synth000.nii.gz"))
    got = nib.load(str(written[0]))
    assert got.shape == ref.shape and set(got.get_fdata().ravel().tolist()) <= {0, 1, 2}
    before = written[0].stat().st_mtime_ns
    with pytest.raises(BaseException, match="already exists"):
        run_bundle("inference", ["bundles/lv_mri/train.json", "bundles/lv_mri/inference.json"], *args, tmp=tmp)
    assert written[0].stat().st_mtime_ns == before  # nothing the user owns is overwritten


def test_native_resolution_crops_train_and_run_on_whole_slices(tmp_path):
    """``augmentation#fit crop``: 32 x 32 crops of the 40 x 48 slices in training; the model file says so, and
    validation, evaluation and inference then run on whole slices at their own size with no other setting."""
    tmp, uri, out, proc = train_tiny(
        tmp_path, ["bundles/lv_mri/train.json"], *TINY, *SYNTH, "--augmentation#fit", "crop"
    )
    assert "val_iou_myo" in proc.stdout
    final = torch.load(out / "model_final.pt", weights_only=True)
    assert final["fit"] == "crop" and final["image_size"] == [32, 32]
    proc = evaluate_tiny(tmp, uri, out / "model_final.pt")
    assert "| case | myo | cav |" in proc.stdout
    images = tmp / "cache" / os.listdir(tmp / "cache")[0] / "imagesTr"
    args = [*TINY, "--ckpt_path", str(out / "model_final.pt"), "--input_dir", str(images.parent)]
    run_bundle("inference", ["bundles/lv_mri/train.json", "bundles/lv_mri/inference.json"], *args,
               "--output_dir", str(tmp / "pred"), tmp=tmp)  # fmt: skip
    got = nib.load(str(tmp / "pred" / "synth000_pred.nii.gz"))
    assert got.shape == nib.load(str(images / "synth000.nii.gz")).shape


def test_nonrecurrent_cross_validation_comparison(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = run_bundle(
        "cross_validation",
        ["bundles/lv_mri/train.json", "bundles/lv_mri/compare.json"],
        "--cv_folds",
        "2",
        "--max_iterations",
        "2",
        "--val_interval",
        "2",
        *TINY,
        *SYNTH,
        "--tracking_uri",
        uri,
        "--experiment_name",
        "cv",
        "--output_dir",
        str(tmp_path / "cv"),
        tmp=tmp_path,
    )
    assert "2-fold cross-validation" in proc.stdout
    table = proc.stdout.split("2-fold cross-validation")[1]
    assert "| recurrent |" in table and "| nonrecurrent |" in table and "(n=4)" in table
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("cv").experiment_id])
    assert len(runs) == 5  # 2 variants x 2 folds + the summary
    summary = [r for r in runs if "cv2" in r.info.run_name][0]
    assert "recurrent_myo" in summary.data.metrics and "nonrecurrent_cav" in summary.data.metrics


def _tree(folder):
    """``{relative path: bytes}`` of every file below ``folder`` (what must survive a refused run)."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("where", ["same", "parent", "inside"])
def test_inference_never_deletes_or_writes_into_the_input_folder(trained, where, tmp_path):
    """The reported data loss: ``--input_dir D --output_dir D --overwrite true`` deleted every file of D."""
    tmp, _, out, _ = trained
    cache = tmp / "cache" / os.listdir(tmp / "cache")[0]
    data = tmp_path / "D"
    (data / "imagesTr").mkdir(parents=True)
    for src in sorted((cache / "imagesTr").iterdir())[:1]:
        (data / "imagesTr" / src.name).write_bytes(src.read_bytes())
    (data / "README.txt").write_text("my notes")
    output = {"same": data, "parent": tmp_path, "inside": data / "imagesTr" / "pred"}[where]
    before = _tree(tmp_path)
    args = [*TINY, "--ckpt_path", str(out / "model_best.pt"), "--input_dir", str(data), "--output_dir", str(output)]
    with pytest.raises(BaseException, match="input folder"):
        run_bundle(
            "inference",
            ["bundles/lv_mri/train.json", "bundles/lv_mri/inference.json"],
            *args,
            "--overwrite",
            "true",
            tmp=tmp,
        )
    assert _tree(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["D"]
