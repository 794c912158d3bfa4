"""The cell bundle end to end through the user's command line: train, evaluate, infer (CTC results)."""

from __future__ import annotations

import mlflow
import pytest
from conftest import run_bundle, train_tiny

from cosinetrack.apps.cell.validation import validate_ctc_result

TRAIN = ["bundles/cell/train.json"]
TINY = ["--image_size", "[48,48]", "--num_levels", "3", "--num_filters", "8", "--num_threads", "2"]
TINY += ["--embedding_dim", "8", "--clip_length", "4", "--clustering_options#max_points", "3000"]
SYNTH = ["--synthetic#num_frames", "10", "--synthetic#image_size", "[80,80]", "--val_frames", "-4:"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run of the user's command; shared by the tests below."""
    return train_tiny(tmp_path_factory.mktemp("cell"), TRAIN, *TINY, *SYNTH)


def test_training_validates_by_tracking_and_logs_ctc_scores(trained):
    tmp, uri, out, proc = trained
    assert "Validation after 4 iterations" in proc.stdout and "val_OP_CTB" in proc.stdout
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("test").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name.startswith("cell-recurrent-synthetic-cells")
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 4
    assert {"val", "val_SEG", "val_TRA", "val_DET", "val_OP_CTB"} <= set(run.data.metrics)
    assert run.data.params["embedding_dim"] == "8" and run.data.params["recurrent"] == "true"
    figures = {a.path.split("/")[-1] for a in client.list_artifacts(run.info.run_id, "figures/validation")}
    assert any(f.startswith("validation_embeddings") for f in figures)
    assert any(f.startswith("validation_lineage") for f in figures)
    for res in (out / "tracking").glob("*_RES"):  # the validation's own CTC results
        assert validate_ctc_result(str(res))


def test_evaluate_prints_ctc_table_and_logs_it(trained):
    tmp, uri, out, _ = trained
    proc = run_bundle(
        "evaluating", TRAIN + ["bundles/cell/evaluate.json"], *TINY, *SYNTH,
        "--ckpt_path", str(out / "model_best.pt"), "--tracking_uri", uri, "--experiment_name", "test-eval",
        "--output_dir", str(tmp / "eval"), tmp=tmp,
    )
    assert "| case | SEG | TRA | DET | OP_CTB |" in proc.stdout and "mean ± std" in proc.stdout
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("test-eval").experiment_id])
    assert {"val_SEG", "val_TRA", "val_DET", "val_OP_CTB"} <= set(run.data.metrics)
    assert run.data.tags["stage"] == "evaluate"


def test_inference_writes_valid_ctc_results_and_never_overwrites(trained):
    tmp, _, out, _ = trained
    videos = next((tmp / "cache").iterdir())
    res = tmp / "results"
    args = [*TINY, "--ckpt_path", str(out / "model_best.pt"), "--input_dir", str(videos), "--output_dir", str(res)]
    proc = run_bundle("inference", TRAIN + ["bundles/cell/inference.json"], *args, tmp=tmp)
    assert sorted(p.name for p in res.iterdir()) == ["01_RES", "02_RES"] and "s/frame" in proc.stdout
    for folder in res.iterdir():
        assert validate_ctc_result(str(folder)), folder
        assert len(list(folder.glob("mask*.tif"))) == 10
    with pytest.raises(BaseException, match="already exists"):
        run_bundle("inference", TRAIN + ["bundles/cell/inference.json"], *args, tmp=tmp)


@pytest.mark.real_data
def test_training_reads_fluo_sim_by_override(shared_data, tmp_path):
    sim = shared_data / "ctc" / "Fluo-N2DH-SIM+"
    proc = run_bundle(
        "training", TRAIN, "--dataset_dir", str(sim), "--max_iterations", "1", "--val_interval", "1", *TINY,
        "--val_frames", "-2:", "--tracking_uri", f"sqlite:///{tmp_path}/mlflow.db",
        "--output_dir", str(tmp_path / "run"), tmp=tmp_path,
    )
    assert "Validation after 1 iterations" in proc.stdout and "val_SEG" in proc.stdout
    res = tmp_path / "run" / "tracking" / "01_63_65_RES"  # the held-out last 2 frames, tracked and scored
    assert validate_ctc_result(str(res)) and len(list(res.glob("mask*.tif"))) == 2


@pytest.mark.parametrize("recorded, expected", [(None, "percentile"), ({"upper": "foreground"}, "foreground")])
def test_evaluation_and_inference_normalize_as_the_model_file_records(trained, tmp_path, recorded, expected):
    """``model_final.pt`` records the run's ``normalization#upper``; evaluate.json and inference.json run a
    model file with what it records (a file without the entry: the bundle's section)."""
    import os

    import torch
    from monai.bundle import ConfigParser

    _, _, out, _ = trained
    state = torch.load(out / "model_final.pt", weights_only=True)
    assert state["normalization"] == {"upper": "percentile"}  # the training run's, recorded
    if recorded is None:
        del state["normalization"]
    else:
        state["normalization"] = recorded
    model = tmp_path / "model.pt"
    torch.save(state, model)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for overlay in ("evaluate.json", "inference.json"):
        parser = ConfigParser()
        parser.read_config([os.path.join(root, "bundles", "cell", f) for f in ("train.json", overlay)])
        parser.update({"project_root": root, "ckpt_path": str(model), "input_dir": str(tmp_path)})
        assert parser.get_parsed_content("tracker").normalization.upper == expected, overlay


def test_inference_runs_an_ensemble_of_two_model_files(trained):
    """``python -m cosinetrack.workflows.combine`` of two model files (here one run's final model twice: the files
    must record the same canvas, which only model_final.pt does), then the user's inference command on it."""
    import subprocess
    import sys

    tmp, _, out, _ = trained
    ensemble = tmp / "ensemble" / "model.pt"
    final = str(out / "model_final.pt")
    cmd = [sys.executable, "-m", "cosinetrack.workflows.combine", final, final]
    subprocess.run([*cmd, "--output", str(ensemble)], check=True, capture_output=True)
    videos = next((tmp / "cache").iterdir())
    res = tmp / "results-ensemble"
    args = [*TINY, "--ckpt_path", str(ensemble), "--input_dir", str(videos), "--output_dir", str(res)]
    run_bundle("inference", TRAIN + ["bundles/cell/inference.json"], *args, tmp=tmp)
    for folder in res.iterdir():
        assert validate_ctc_result(str(folder)), folder
        assert len(list(folder.glob("mask*.tif"))) == 10
