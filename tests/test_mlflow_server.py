"""A real ``mlflow server`` as a team runs it: a bundle trains against it over HTTP, the client reads the run back.

The server has a SQLite backend store and proxies artifacts (``--serve-artifacts``) to a local folder, both
under the test's temporary folder; the bundle only gets ``--tracking_uri http://127.0.0.1:PORT`` and
must not write an artifact anywhere but through the server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
from conftest import run_bundle

TINY = ["--image_size", "[32,32]", "--num_levels", "2", "--num_filters", "4", "--num_threads", "1"]
SYNTH = ["--synthetic#num_cases", "4", "--synthetic#image_size", "[40,48]", "--synthetic#num_frames", "4"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and everything it started (uvicorn worker): its own process group."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    try:  # a worker that outlived the server's exit
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def mlflow_server(tmp_path):
    """``(uri, artifact folder)`` of an ``mlflow server`` on a free port; stopped however the test ends."""
    port, artifacts = _free_port(), tmp_path / "server-artifacts"
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination", str(artifacts), "--serve-artifacts",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    # no background job runner (huey consumers): nothing here uses MLflow's server-side jobs
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{(tmp_path / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"mlflow server did not answer in 120 s:\n{(tmp_path / 'server.log').read_text()}")
            time.sleep(0.5)
        yield uri, artifacts
    finally:
        _stop(proc)
        log.close()


def test_training_logs_to_an_mlflow_server(tmp_path, mlflow_server):
    uri, artifacts = mlflow_server
    out = tmp_path / "run"
    run_bundle(
        "training", ["bundles/lv_mri/train.json", "configs/quick.json"], *TINY, *SYNTH,
        "--max_iterations", "2", "--val_interval", "2", "--log_interval", "1",
        "--tracking_uri", uri, "--experiment_name", "server", "--output_dir", str(out), tmp=tmp_path,
    )  # fmt: skip
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("server")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # the server's proxied store
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_iou")] == [2]
    assert run.data.params["num_levels"] == "2" and run.data.params["num_filters"] == "4"
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "model_best.pt", "model_final.pt"} <= logged
    # the bytes went through the server into its artifact folder, and come back the same
    for name in ("config.json", "model_best.pt", "model_final.pt"):
        got = Path(client.download_artifacts(run.info.run_id, name, str(tmp_path / "download")))
        assert got.read_bytes() == (out / name).read_bytes()
    stored = list(artifacts.rglob("model_best.pt"))
    assert len(stored) == 1 and run.info.run_id in stored[0].parts
    # nothing went into the repository's default store or the working folder's ./mlartifacts
    assert not (tmp_path / "mlartifacts").exists() and not (tmp_path / "mlruns").exists()
