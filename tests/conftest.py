"""Shared fixtures. Real data lives in ../shared/data beside the repository; tests that need it fail
(never skip) when it is missing, so CI notices a lost data mount."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("COSINETRACK_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """The real data folder; a missing folder fails the test with a clear message."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real data folder {SHARED_DATA} is missing (set COSINETRACK_SHARED_DATA or mount ../shared/data)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Synthetic data caches go to a per-session temporary folder, never the user's ~/.cache."""
    monkeypatch.setenv("COSINETRACK_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def save_nifti(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as NIfTI with an identity affine (test helper)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))
    return path


def run_bundle(run_id: str, configs: list[str], *args: str, tmp: Path) -> subprocess.CompletedProcess:
    """Run ``python -m monai.bundle run <run_id>`` from the repository root, as a user does; fail on error.

    The synthetic data cache goes to ``tmp / "cache"``.
    """
    files = [str(REPO_ROOT / c) for c in configs]
    config = str(files) if len(files) > 1 else files[0]
    cmd = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", config]
    env = dict(os.environ, COSINETRACK_CACHE=str(tmp / "cache"))
    proc = subprocess.run(cmd + list(args), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd + list(args))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def train_tiny(tmp: Path, configs: list[str], *args: str) -> tuple[Path, str, Path, subprocess.CompletedProcess]:
    """A 4-iteration training run (validation every 2) logging to ``tmp/mlflow.db``, experiment ``test``.

    Returns ``(tmp, tracking uri, output folder, completed process)``, what the bundle tests share.
    """
    uri = f"sqlite:///{tmp}/mlflow.db"
    out = tmp / "run"
    proc = run_bundle(
        "training", configs, "--max_iterations", "4", "--val_interval", "2", *args,
        "--tracking_uri", uri, "--experiment_name", "test", "--output_dir", str(out), tmp=tmp,
    )
    return tmp, uri, out, proc


@pytest.fixture
def single_thread():
    """Tiny tensors: one intra-op thread is faster, and avoids OpenMP stalls on a busy 2-core machine.

    Use with ``pytestmark = pytest.mark.usefixtures("single_thread")``; the previous count is restored.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
