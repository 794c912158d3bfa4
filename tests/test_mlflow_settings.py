"""MLflow artifacts follow the tracking store: ``--tracking_uri sqlite:///elsewhere/runs.db`` used to write
the artifacts into the repository's ``mlruns/artifacts/``."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest
from conftest import REPO_ROOT, run_bundle
from monai.utils import path_to_uri

from cosinetrack.handlers import default_artifact_location


@pytest.fixture
def no_env_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


DEFAULT_LOCATION_CASES = [
    # tracking uri, expected artifact location ({tmp}: the test's folder)
    ["sqlite:///{tmp}/elsewhere.db", "file://{tmp}/artifacts"],
    ["sqlite:///{tmp}/deep/er/runs.db?timeout=5", "file://{tmp}/deep/er/artifacts"],
    ["sqlite:///{tmp}/mlruns/mlflow.db", "file://{tmp}/mlruns/artifacts"],  # the default store's layout
    ["sqlite:///:memory:", None],
    ["http://127.0.0.1:5000", None],  # the server's artifact root
    ["https://mlflow.example.org", None],
    ["postgresql://user@db/mlflow", None],
    [None, None],
]


@pytest.mark.parametrize("uri, expected", DEFAULT_LOCATION_CASES)
def test_default_artifact_location_follows_the_store(tmp_path, no_env_uri, uri, expected):
    uri = None if uri is None else uri.format(tmp=tmp_path)
    expected = None if expected is None else expected.format(tmp=tmp_path)
    assert default_artifact_location(uri) == expected
    assert not any(tmp_path.iterdir())  # computing it creates nothing


def test_default_artifact_location_relative_sqlite_and_environment(tmp_path, monkeypatch, no_env_uri):
    monkeypatch.chdir(tmp_path)
    assert default_artifact_location("sqlite:///sub/runs.db") == path_to_uri(tmp_path / "sub" / "artifacts")
    # MONAI's MLFlowHandler logs to $MLFLOW_TRACKING_URI when it is set: the artifacts follow that store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/env/env.db")
    assert default_artifact_location(f"sqlite:///{REPO_ROOT}/mlruns/mlflow.db") == path_to_uri(
        tmp_path / "env" / "artifacts"
    )


def _repo_files_naming(run_id: str) -> list[Path]:
    return [p for p in (REPO_ROOT / "mlruns").rglob("*") if run_id in p.name] if (REPO_ROOT / "mlruns").is_dir() else []


def test_training_with_a_sqlite_store_elsewhere_keeps_artifacts_beside_it(tmp_path, no_env_uri):
    """The reported case end to end: a tiny lv_mri training with ``--tracking_uri sqlite:///.../elsewhere.db``."""
    store = tmp_path / "store"
    uri = f"sqlite:///{store}/elsewhere.db"
    run_bundle(
        "training", ["bundles/lv_mri/train.json"], "--image_size", "[32,32]", "--num_levels", "3",
        "--num_filters", "8", "--num_threads", "2", "--synthetic#num_cases", "4",
        "--synthetic#image_size", "[40,48]", "--synthetic#num_frames", "6", "--max_iterations", "2",
        "--val_interval", "2", "--tracking_uri", uri, "--experiment_name", "elsewhere",
        "--output_dir", str(tmp_path / "run"), tmp=tmp_path,
    )  # fmt: skip
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("elsewhere")
    assert experiment.artifact_location == path_to_uri(store / "artifacts")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.artifact_uri.startswith(path_to_uri(store / "artifacts"))
    assert (store / "artifacts" / run.info.run_id / "artifacts" / "config.json").is_file()
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"config.json", "model_best.pt"}
    assert not _repo_files_naming(run.info.run_id)  # nothing of this run in the repository's mlruns/
    assert sorted(os.listdir(tmp_path)) == ["cache", "run", "store"]
