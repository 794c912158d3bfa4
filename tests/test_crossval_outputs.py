"""A cross-validation writes only under its own output folder, never into the repository's ``runs/``.

``configs/crossval.json`` used to write the table to ``<repo>/runs/<task>/cv-...md`` and every fold's
training to ``<repo>/runs/<task>/<run name>/``, whatever the test's temporary folder was.
"""

from __future__ import annotations

import os
import uuid

import mlflow
import pytest
from conftest import REPO_ROOT, run_bundle

from cosinetrack.workflows.crossval import TABLE_NAME, cross_validate, fold_dir_name

TINY = ["--image_size", "[32,32]", "--num_levels", "2", "--num_filters", "4", "--num_threads", "2"]
TINY += ["--embedding_dim", "4", "--batch_size", "2", "--clustering#min_samples", "5"]
SYNTH = ["--synthetic#num_plants", "4", "--synthetic#image_size", "[72,64]"]


def _repo_paths_mentioning(tag: str) -> list[str]:
    """Files under the repository's ``runs/`` and ``mlruns/artifacts/`` whose path or text holds ``tag``."""
    found = []
    for top in ("runs", os.path.join("mlruns", "artifacts")):
        for folder, _, files in os.walk(REPO_ROOT / top):
            for name in files:
                path = os.path.join(folder, name)
                if tag in path:
                    found.append(path)
                elif name.endswith((".json", ".md", ".txt", ".yaml")):
                    with open(path, errors="replace") as f:
                        if tag in f.read():
                            found.append(path)
    return found


def test_cross_validation_writes_only_under_its_output_dir(tmp_path):
    tag = f"cv-{uuid.uuid4().hex[:12]}"  # in every run's exported config: finds anything written elsewhere
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    out = tmp_path / "cv"
    proc = run_bundle(
        "cross_validation", ["bundles/leaf/train.json", "bundles/leaf/crossval.json"], "--cv_folds", "2",
        "--max_iterations", "1", "--val_interval", "1", *TINY, *SYNTH, "--tracking_uri", uri,
        "--experiment_name", tag, "--output_dir", str(out), tmp=tmp_path,
    )  # fmt: skip
    folds = [fold_dir_name("nonrecurrent", k) for k in range(2)]
    assert sorted(os.listdir(out)) == sorted([TABLE_NAME, *folds])
    for fold in folds:
        assert {"config.json", "model_final.pt"} <= set(os.listdir(out / fold))
    table = (out / TABLE_NAME).read_text()
    assert "| nonrecurrent |" in table and "(n=4)" in table and table.strip() in proc.stdout
    assert sorted(os.listdir(tmp_path)) == ["cache", "cv", "store"]  # MLflow artifacts beside the store
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(tag).experiment_id])
    assert len(runs) == 3  # 2 folds + the summary
    assert not _repo_paths_mentioning(tag)
    assert not [p for r in runs for p in _repo_paths_mentioning(r.info.run_id)]


def test_cross_validation_refuses_an_output_folder_that_holds_files(tmp_path):
    (tmp_path / "cv").mkdir()
    (tmp_path / "cv" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=f"^{tmp_path / 'cv'}: this output folder already holds files"):
        cross_validate(2, {"a": {}}, config={"anything": 1}, output_dir=str(tmp_path / "cv"))
    assert os.listdir(tmp_path / "cv") == ["notes.txt"]


@pytest.mark.parametrize(
    "variant, fold, expected",
    [
        ["recurrent", 0, "recurrent-fold0"],
        ["nonrecurrent", 2, "nonrecurrent-fold2"],
        ["a/b c", 1, "a_b_c-fold1"],
        ["../up", 0, "_up-fold0"],
    ],
)
def test_fold_dir_name_is_a_plain_folder_name(variant, fold, expected):
    assert fold_dir_name(variant, fold) == expected
