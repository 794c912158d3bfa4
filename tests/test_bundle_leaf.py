"""The leaf bundle end to end through the user's command line: train, evaluate, infer, cross-validate."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import torch
from conftest import run_bundle, train_tiny

from cosinetrack.apps.leaf.cvppp import find_cvppp_plants, read_cvppp_label, read_leaf_counts, write_cvppp_image
from cosinetrack.workflows import stored_clustering, stored_image_size

TRAIN = ["bundles/leaf/train.json"]
TINY = ["--image_size", "[64,64]", "--num_levels", "3", "--num_filters", "8", "--num_threads", "2"]
TINY += ["--embedding_dim", "8", "--batch_size", "2", "--clustering#min_samples", "10"]
SYNTH = ["--synthetic#num_plants", "6", "--synthetic#image_size", "[96,80]"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run of the user's command; shared by the tests below."""
    return train_tiny(tmp_path_factory.mktemp("leaf"), TRAIN, *TINY, *SYNTH)


def test_training_validates_with_clustering_and_logs_embedding_panels(trained):
    tmp, uri, out, proc = trained
    assert "Validation after 4 iterations" in proc.stdout and "val_abs_dic" in proc.stdout
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("test").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name.startswith("leaf-nonrecurrent-synthetic-leaves")
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 4
    assert {"val", "val_sbd", "val_abs_dic", "val_dic", "val_fg_dice", "val_sbd_std"} <= set(run.data.metrics)
    assert 0.0 <= run.data.metrics["val_sbd"] <= 1.0
    assert run.data.params["embedding_dim"] == "8" and run.data.params["recurrent"] == "false"
    figures = [a.path for a in client.list_artifacts(run.info.run_id, "figures/validation")]
    assert len(figures) == 2 and (out / "model_best.pt").is_file()


def test_evaluate_prints_sbd_and_dic_and_logs_them(trained):
    tmp, uri, out, _ = trained
    proc = run_bundle(
        "evaluating", TRAIN + ["bundles/leaf/evaluate.json"], *TINY, *SYNTH, "--evaluate_all", "true",
        "--ckpt_path", str(out / "model_best.pt"), "--tracking_uri", uri, "--experiment_name", "test-eval",
        "--output_dir", str(tmp / "eval"), tmp=tmp,
    )
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| case |"))
    assert {"sbd", "abs_dic", "dic", "fg_dice"} <= {c.strip() for c in header.split("|")}
    mean_line = next(line for line in proc.stdout.splitlines() if line.startswith("| mean ± std |"))
    assert "|  |" not in mean_line  # every column summarised
    assert proc.stdout.count("| plant0") == 6  # every plant scored once
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("test-eval").experiment_id])
    assert {"val_sbd", "val_abs_dic"} <= set(run.data.metrics) and run.data.tags["stage"] == "evaluate"
    assert any(a.path.endswith(".png") for a in client.list_artifacts(run.info.run_id, "figures/evaluation"))


def test_inference_writes_cvppp_labels_for_user_images(trained):
    tmp, _, out, _ = trained
    photos = tmp / "my_photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    write_cvppp_image(rng.uniform(size=(3, 70, 90)).astype(np.float32), photos / "pot_a.png")
    write_cvppp_image(rng.uniform(size=(3, 50, 60)).astype(np.float32), photos / "pot_b_rgb.png")
    pred = tmp / "pred"
    args = [*TINY, "--ckpt_path", str(out / "model_best.pt"), "--input_dir", str(photos), "--output_dir", str(pred)]
    run_bundle("inference", TRAIN + ["bundles/leaf/inference.json"], *args, tmp=tmp)
    assert sorted(p.name for p in pred.iterdir()) == ["leaf_counts.csv", "pot_a_label.png", "pot_b_label.png"]
    assert read_cvppp_label(pred / "pot_a_label.png").shape == (70, 90)
    assert read_cvppp_label(pred / "pot_b_label.png").shape == (50, 60)
    assert set(read_leaf_counts(pred / "leaf_counts.csv")) == {"pot_a", "pot_b"}
    assert sorted(p.name for p in photos.iterdir()) == ["pot_a.png", "pot_b_rgb.png"]  # input untouched
    with pytest.raises(BaseException, match="already exists"):
        run_bundle("inference", TRAIN + ["bundles/leaf/inference.json"], *args, tmp=tmp)


def test_cross_validation_table_over_plants(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = run_bundle(
        "cross_validation", TRAIN + ["bundles/leaf/crossval.json"], "--cv_folds", "2", "--max_iterations", "2",
        "--val_interval", "2", *TINY, *SYNTH, "--tracking_uri", uri, "--experiment_name", "cv",
        "--output_dir", str(tmp_path / "cv"), tmp=tmp_path,
    )
    table = proc.stdout.split("2-fold cross-validation")[1]
    assert "| nonrecurrent |" in table and "(n=6)" in table and "abs_dic" in table
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("cv").experiment_id])
    summary = [r for r in runs if "cv2" in r.info.run_name][0]
    assert "nonrecurrent_sbd" in summary.data.metrics and "nonrecurrent_abs_dic_std" in summary.data.metrics


def test_crop_training_records_the_canvas_that_inference_runs_on(tmp_path):
    """``augmentation#crop_size``: 32 x 32 crops of the 64 x 64 canvas in training; validation and the model
    file use the whole canvas, so inference scales photos to it (leaves at the scale the network learnt)."""
    _, _, out, proc = train_tiny(
        tmp_path, TRAIN, *TINY, *SYNTH, "--augmentation#crop_size", "[32,32]", "--clustering#min_samples", "7"
    )
    assert "Validation after 4 iterations" in proc.stdout and "val_sbd" in proc.stdout
    final = torch.load(out / "model_final.pt", weights_only=True)
    assert final["image_size"] == [64, 64] and final["fit"] == "scale"
    assert stored_image_size(str(out / "model_final.pt"), [128, 128]) == [64, 64]
    # the clustering it was validated with travels in the file: inference runs it unless told otherwise
    assert final["clustering"]["min_samples"] == 7
    assert stored_clustering(str(out / "model_final.pt"), {"min_samples": 50}, [64, 64], [64, 64])["min_samples"] == 7


@pytest.mark.real_data
def test_training_reads_cvppp_a1_by_override(shared_data, tmp_path):
    a1 = shared_data / "cvppp" / "A1"
    assert len(find_cvppp_plants(a1)) == 96
    proc = run_bundle(
        "training", TRAIN, "--dataset_dir", str(a1), "--max_iterations", "1", "--val_interval", "1", *TINY,
        "--val_fraction", "0.03", "--tracking_uri", f"sqlite:///{tmp_path}/mlflow.db",
        "--output_dir", str(tmp_path / "run"), tmp=tmp_path,
    )
    assert "Validation after 1 iterations" in proc.stdout and "val_sbd" in proc.stdout


def test_inference_refuses_an_output_folder_around_the_photos(trained, tmp_path):
    """The reported data loss: ``--input_dir P/photos --output_dir P --overwrite true`` deleted ``P/photos``."""
    tmp, _, out, _ = trained
    photos = tmp_path / "P" / "photos"
    photos.mkdir(parents=True)
    write_cvppp_image(np.random.default_rng(0).uniform(size=(3, 40, 50)).astype(np.float32), photos / "a.png")
    (tmp_path / "P" / "notes.txt").write_text("keep me")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    args = [*TINY, "--ckpt_path", str(out / "model_best.pt"), "--input_dir", str(photos)]
    with pytest.raises(BaseException, match="contains the input folder"):
        run_bundle(
            "inference", TRAIN + ["bundles/leaf/inference.json"], *args, "--output_dir", str(tmp_path / "P"),
            "--overwrite", "true", tmp=tmp,
        )
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
