"""MLflow settings of the bundles: plain top-level keys, and artifacts that follow the tracking store.

``--tracking_uri sqlite:///elsewhere/runs.db`` used to write the artifacts into the repository's
``mlruns/artifacts/``; the ``mlflow`` section is pulled in by a ``%`` macro, so ``--mlflow#...`` overrides
crash inside MONAI (``invalid literal for int()``): the settings are the top-level keys
``tracking_uri``, ``artifact_location``, ``experiment_name`` and ``run_name``.
"""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest
from conftest import REPO_ROOT, run_bundle
from monai.bundle import ConfigParser
from monai.utils import path_to_uri

from cosinetrack.handlers.mlflow import default_artifact_location


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


BUNDLES = ["cell", "leaf", "lv_mri"]
OVERRIDE_CASES = [
    # name, command-line overrides ({tmp}: the test's folder), expected tracking uri, expected artifact location
    ["default store", {}, "sqlite:///{tmp}/project/mlruns/mlflow.db", "file://{tmp}/project/mlruns/artifacts"],
    [
        "sqlite elsewhere",
        {"tracking_uri": "sqlite:///{tmp}/store/elsewhere.db"},
        "sqlite:///{tmp}/store/elsewhere.db",
        "file://{tmp}/store/artifacts",
    ],
    [
        "explicit artifact location",
        {"tracking_uri": "sqlite:///{tmp}/store/elsewhere.db", "artifact_location": "file://{tmp}/shared"},
        "sqlite:///{tmp}/store/elsewhere.db",
        "file://{tmp}/shared",
    ],
    ["server", {"tracking_uri": "http://127.0.0.1:5000"}, "http://127.0.0.1:5000", None],
]
CASES = [(b, *c) for b in BUNDLES for c in OVERRIDE_CASES]


@pytest.mark.parametrize(
    "bundle, name, overrides, uri, location", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES]
)
def test_mlflow_settings_are_plain_overridable_keys(
    tmp_path, monkeypatch, no_env_uri, bundle, name, overrides, uri, location
):
    """What ``python -m monai.bundle run ... --tracking_uri ... --artifact_location ...`` does: the overrides
    are applied to the raw config before the macros are expanded, and reach the MLflow handlers."""
    monkeypatch.chdir(REPO_ROOT)  # the %configs/... macros are relative to the repository root
    parser = _parser(bundle, tmp_path, {k: v.format(tmp=tmp_path) for k, v in overrides.items()})
    assert parser.get_parsed_content("mlflow#tracking_uri") == uri.format(tmp=tmp_path)
    expected = None if location is None else location.format(tmp=tmp_path)
    assert parser.get_parsed_content("mlflow#artifact_location") == expected
    for handler in ("trainer_handler", "evaluator_handler"):
        raw = parser[f"mlflow#{handler}"]
        assert raw["tracking_uri"] == "@mlflow#tracking_uri"
        assert raw["artifact_location"] == "@mlflow#artifact_location"
        assert (raw["experiment_name"], raw["run_name"]) == ("@experiment_name", "@run_name")
    made = {p.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("*")}
    assert made <= {"project", "store", "run"}


def test_overrides_reach_the_mlflow_handler(tmp_path, monkeypatch, no_env_uri):
    monkeypatch.chdir(REPO_ROOT)
    uri = f"sqlite:///{tmp_path}/store/elsewhere.db"
    parser = _parser("leaf", tmp_path, {"tracking_uri": uri, "artifact_location": f"file://{tmp_path}/shared"})
    handler = parser.get_parsed_content("mlflow#evaluator_handler")
    assert (handler.experiment_name, handler.run_name) == ("my-exp", "my-run")
    assert handler.artifact_location == f"file://{tmp_path}/shared"
    assert handler.client.tracking_uri == uri


def _parser(bundle: str, tmp_path: Path, overrides: dict) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(REPO_ROOT / "bundles" / bundle / "train.json"))
    parser.update({"project_root": str(tmp_path / "project"), "output_dir": str(tmp_path / "run"), **overrides})
    parser.update({"experiment_name": "my-exp", "run_name": "my-run"})
    return parser


@pytest.mark.parametrize("bundle", BUNDLES)
def test_mlflow_section_is_only_reached_through_top_level_keys(bundle):
    """The bundle pulls the ``mlflow`` section in by macro (so ``--mlflow#x`` cannot work, a MONAI
    limitation): every user setting it reads must be a top-level key of the bundle."""
    parser = ConfigParser()
    parser.read_config(str(REPO_ROOT / "bundles" / bundle / "train.json"))
    assert isinstance(parser["mlflow"], str) and parser["mlflow"].startswith("%")
    for key in ("tracking_uri", "artifact_location", "experiment_name", "run_name"):
        assert key in parser.get(), f"bundles/{bundle}/train.json lacks the top-level key {key!r}"


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


def test_trainings_started_in_the_same_second_log_into_their_own_runs(tmp_path, no_env_uri):
    """Two folds launched together got the same run name and wrote into one MLflow run (their validation
    curves interleaved); each process's name now differs, and each handler pair its own run."""
    from ignite.engine import Engine

    from cosinetrack.handlers.mlflow import MLflowRunHandler, make_run_name

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    names = [make_run_name("lv_mri", "recurrent", "acdc", "fold0") for _ in range(2)]
    assert names[0] != names[1] and all(n.startswith("lv_mri-recurrent-acdc-fold0-") for n in names)
    run_ids = []
    for name in names:
        handler = MLflowRunHandler(tracking_uri=uri, experiment_name="t", run_name=name, iteration_log=False)
        engine = Engine(lambda e, b: None)
        handler.start(engine)
        run_ids.append(handler.cur_run.info.run_id)
    assert run_ids[0] != run_ids[1]
