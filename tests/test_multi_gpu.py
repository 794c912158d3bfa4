"""torchrun: multi-process training (multi_gpu_train.json) and batch inference split over the ranks, on CPU
with gloo and 2 processes; progress reports of long inference."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, save_nifti
from PIL import Image

from cosinetrack.apps.cell.pipeline import track_folder
from cosinetrack.apps.cell.synthetic import generate_cell_video, write_ctc_sequence
from cosinetrack.apps.leaf.cvppp import find_plant_images
from cosinetrack.apps.leaf.pipeline import segment_plants_to_folder
from cosinetrack.apps.lv_mri.nifti import resolve_cases
from cosinetrack.apps.lv_mri.pipeline import predict_to_folder
from cosinetrack.distributed import shard
from cosinetrack.inference.progress import FrameProgress
from cosinetrack.networks.stacked import RecurrentStackedHourglass

TORCHRUN = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2"]
TINY = ["--num_levels", "2", "--num_filters", "4", "--image_size", "[32,32]", "--num_threads", "1"]
TINY += ["--max_iterations", "4", "--val_interval", "2", "--save_interval", "2"]
SYNTH = ["--synthetic#num_cases", "4", "--synthetic#image_size", "[40,48]", "--synthetic#num_frames", "6"]


def _torchrun(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", COSINETRACK_CACHE=str(tmp / "cache"))
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(TORCHRUN + args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_multi_gpu_training_under_torchrun_on_cpu(tmp_path):
    """The README's command with 2 gloo processes: one MLflow run, rank 0 alone writes the model files."""
    uri, out = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "out"
    configs = ["bundles/lv_mri/train.json", "configs/quick.json", "bundles/lv_mri/multi_gpu_train.json"]
    proc = _torchrun(
        ["-m", "monai.bundle", "run", "training", "--config_file", str(configs), *TINY, *SYNTH,
         "--output_dir", str(out), "--tracking_uri", uri, "--experiment_name", "ddp"],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert sorted(steps) == [1, 2, 3, 4]  # rank 0 alone logs: each step once
    assert "val_iou" in run.data.metrics
    assert sorted(p.name for p in out.glob("model_final*")) == ["model_final.pt"]
    assert sorted(p.name for p in out.glob("resume_*.pt")) == ["resume_2.pt", "resume_4.pt"]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left
    state = torch.load(out / "model_final.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in state["model"])  # the plain network, not the DDP wrapper
    assert state["network"]["num_levels"] == 2
    assert proc.stdout.count("Validation after 4 iterations") == 1  # rank 0 alone validates and reports


def _inputs(root: Path) -> dict[str, int]:
    """3 CTC sequences, 3 plant photos and 3 cine NIfTI cases, tiny; returns how many of each."""
    rng = np.random.default_rng(0)
    for i, name in enumerate(("01", "02", "03")):
        images, labels, tracks = generate_cell_video(i, num_frames=3, image_size=(64, 64), num_cells=(2, 3))
        write_ctc_sequence(root / "videos", name, images, labels, tracks)
    (root / "photos").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(
            root / "photos" / f"plant{i:03d}_rgb.png"
        )
    for i in range(3):
        save_nifti(root / "lv" / "imagesTr" / f"case{i}.nii.gz", rng.random((12, 12, 2)).astype(np.float32))
    return {"cell": 3, "leaf": 3, "lv": 3}


def test_torchrun_inference_splits_inputs_over_ranks(tmp_path):
    """Each rank processes every 2nd input; every input exactly once; outputs complete, in one folder."""
    counts = _inputs(tmp_path / "data")
    out = tmp_path / "out"
    out.mkdir()
    proc = _torchrun([str(REPO_ROOT / "tests" / "torchrun_inference.py"), str(tmp_path / "data"), str(out)], tmp_path)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    for task, n in counts.items():
        done = [reports[r]["processed"][task] for r in (0, 1)]
        assert [len(d) for d in done] == [2, 1], task  # inputs 0 and 2 on rank 0, input 1 on rank 1
        assert len(set(done[0] + done[1])) == n, task  # every input exactly once
        assert reports[0]["returned"][task] == reports[1]["returned"][task]  # every rank returns all outputs
    assert reports[0]["processed"]["cell"] == ["01", "03"] and reports[1]["processed"]["cell"] == ["02"]
    names = {task: [os.path.basename(p) for p in reports[0]["returned"][task]] for task in counts}
    assert names["cell"] == ["01_RES", "02_RES", "03_RES"]  # in the inputs' order
    assert names["leaf"] == ["plant000_label.png", "plant001_label.png", "plant002_label.png"]
    assert names["lv"] == ["case0_pred.nii.gz", "case1_pred.nii.gz", "case2_pred.nii.gz"]
    assert sorted(p.name for p in (out / "cell").iterdir()) == ["01_RES", "02_RES", "03_RES"]
    for name in ("01", "02", "03"):
        assert sorted(p.name for p in (out / "cell" / f"{name}_RES").iterdir()) == [
            "mask000.tif", "mask001.tif", "mask002.tif", "res_track.txt"
        ]  # fmt: skip
    leaf = sorted(p.name for p in (out / "leaf").iterdir())
    assert leaf == ["leaf_counts.csv", "plant000_label.png", "plant001_label.png", "plant002_label.png"]
    rows = (out / "leaf" / "leaf_counts.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["plant000_rgb.png", "plant001_rgb.png", "plant002_rgb.png"]
    assert sorted(p.name for p in (out / "lv").iterdir()) == [f"case{i}_pred.nii.gz" for i in range(3)]
    # rank 1 fails: both ranks raise, and nothing is written (rank 0's finished sequences included)
    assert "rank 1 broke" in reports[1]["failure"] and "rank 1" in reports[0]["failure"]
    assert "another rank failed" in reports[0]["failure"]
    assert not (out / "cell_failed").exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_shard_without_torchrun_is_everything():
    assert shard(range(5)) == [0, 1, 2, 3, 4]


def _progress_case(task: str, root: Path):
    """Run one engine on a tiny input with a log line every frame; return the log line prefix expected."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cluster = {"min_samples": 3, "max_points": 500}
    if task == "cell":
        images, labels, tracks = generate_cell_video(0, num_frames=3, image_size=(64, 64), num_cells=(2, 3))
        write_ctc_sequence(root / "videos", "01", images, labels, tracks)
        net = RecurrentStackedHourglass(1, 4, num_levels=2, num_filters=4)
        track_folder(net, str(root / "videos"), str(root / "out"), None, image_size=(32, 32), clustering=cluster,
                     progress_every=1)  # fmt: skip
        return "cell inference", 3
    if task == "leaf":
        (root / "photos").mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(root / "photos" / f"p{i}.png")
        net = RecurrentStackedHourglass(3, 4, num_levels=2, num_filters=4)
        segment_plants_to_folder(
            net, find_plant_images(root / "photos"), str(root / "out"), None, (32, 32), cluster, progress_every=1
        )
        return "leaf inference", 2
    save_nifti(root / "lv" / "imagesTr" / "case.nii.gz", rng.random((12, 12, 3)).astype(np.float32))
    net = RecurrentStackedHourglass(1, 3, num_levels=2, num_filters=4)
    predict_to_folder(net, resolve_cases(str(root / "lv")), str(root / "out"), None, (16, 16), progress_every=1)
    return "lv_mri prediction", 3


@pytest.mark.parametrize("task", ["cell", "leaf", "lv_mri"])
def test_inference_logs_progress_when_stderr_is_not_a_terminal(task, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="cosinetrack")
    desc, frames = _progress_case(task, tmp_path)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"{desc}:")]
    of = f"/{frames}" if task != "lv_mri" else ""  # the number of cine frames is known only once read
    assert [line.split(" frames,")[0] for line in lines] == [f"{desc}: {i}{of}" for i in range(1, frames + 1)]
    assert all(line.endswith("frames/s") for line in lines)


def test_frame_progress_logs_every_n_frames_and_at_the_end(caplog):
    caplog.set_level(logging.INFO, logger="cosinetrack")
    with FrameProgress("work", total=7, log_every=3, bar=False) as progress:
        for _ in progress.wrap(range(7)):
            pass
    lines = [r.getMessage().split(" frames,")[0] for r in caplog.records]
    assert lines == ["work: 3/7", "work: 6/7", "work: 7/7"]
    with pytest.raises(ValueError, match="log_every"):
        FrameProgress("work", log_every=0)
