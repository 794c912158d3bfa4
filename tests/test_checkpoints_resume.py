"""Model files that say which network they fit, and a killed training resumed at the same iteration and run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import mlflow
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, run_bundle

from cosinetrack.errors import CosineTrackDataError
from cosinetrack.networks.stacked import RecurrentStackedHourglass
from cosinetrack.workflows.checkpoint import RNGState, load_weights, network_settings, read_checkpoint

NET = dict(in_channels=1, out_channels=4, num_levels=2, num_filters=4)


def _save(path, net, with_settings=True):
    state = {"model": net.state_dict()}
    if with_settings:
        state["network"] = network_settings(net)
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    "other, fragment",
    [
        ({"num_levels": 3}, "num_levels=2 (this network: 3); run with --num_levels 2"),
        ({"num_filters": 8}, "num_filters=4 (this network: 8)"),
        ({"out_channels": 8}, "--embedding_dim 4"),
        ({"recurrent": False}, "recurrent=True (this network: False)"),
    ],
)
def test_a_model_of_another_network_names_the_file_and_the_mismatch(tmp_path, other, fragment):
    path = _save(tmp_path / "model.pt", RecurrentStackedHourglass(**NET))
    with pytest.raises(CosineTrackDataError, match=f"{path}: .*{fragment}".replace("(", r"\(").replace(")", r"\)")):
        load_weights(RecurrentStackedHourglass(**{**NET, **other}), str(path))


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: p.write_bytes(_save(p, RecurrentStackedHourglass(**NET)).read_bytes()[:200]), "cannot read"),
        (lambda p: p.write_text("not a checkpoint"), "cannot read"),
        (lambda p: _save(p, RecurrentStackedHourglass(**{**NET, "num_filters": 8}), with_settings=False), "do not fit"),
        (lambda p: torch.save([1, 2], p), "expected a dict"),
    ],
    ids=["truncated", "text", "old file of another shape", "a list"],
)
def test_unreadable_or_foreign_checkpoints_are_clear_errors(tmp_path, make, fragment):
    path = tmp_path / "model.pt"
    make(path)
    with pytest.raises(CosineTrackDataError, match=fragment) as err:
        load_weights(RecurrentStackedHourglass(**NET), str(path))
    assert str(err.value).startswith(str(path))


class _NotWeights:
    """An object a plain pickle would rebuild by running this module's code: ``weights_only`` refuses it."""


def test_read_checkpoint_reads_weights_only_and_names_the_file_it_refuses(tmp_path):
    good = _save(tmp_path / "model.pt", RecurrentStackedHourglass(**NET))
    assert set(read_checkpoint(str(good))) == {"model", "network"}
    bad = tmp_path / "code.pt"
    torch.save({"model": _NotWeights()}, bad)
    with pytest.raises(CosineTrackDataError, match="cannot read this checkpoint") as err:
        read_checkpoint(str(bad))
    assert str(err.value).startswith(str(bad))


def test_weights_round_trip_with_and_without_settings(tmp_path):
    torch.manual_seed(0)
    net = RecurrentStackedHourglass(**NET)
    for settings in (True, False):
        other = RecurrentStackedHourglass(**NET)
        load_weights(other, str(_save(tmp_path / f"m{settings}.pt", net, settings)))
        for a, b in zip(net.state_dict().values(), other.state_dict().values()):
            torch.testing.assert_close(a, b)


def test_rng_state_round_trip():
    saved = RNGState().state_dict()
    draws = (random.random(), np.random.rand(), torch.rand(1).item())  # noqa: NPY002 - the global state
    random.seed(5)
    np.random.seed(5)  # noqa: NPY002
    torch.manual_seed(5)
    RNGState().load_state_dict(saved)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws  # noqa: NPY002


TINY = ["--image_size", "[32,32]", "--num_levels", "3", "--num_filters", "8", "--num_threads", "1"]
SYNTH = ["--synthetic#num_cases", "4", "--synthetic#image_size", "[40,48]", "--synthetic#num_frames", "6"]


def test_training_killed_with_sigkill_resumes_to_the_end_in_one_mlflow_run(tmp_path):
    out, uri = tmp_path / "run", f"sqlite:///{tmp_path}/mlflow.db"
    args = [*TINY, *SYNTH, "--max_iterations", "300", "--val_interval", "150", "--save_interval", "5",
            "--tracking_uri", uri, "--experiment_name", "resume", "--output_dir", str(out)]  # fmt: skip
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", "bundles/lv_mri/train.json"]
    env = dict(os.environ, COSINETRACK_CACHE=str(tmp_path / "cache"))
    proc = subprocess.Popen(cmd + args, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any(p.name.startswith("resume_") and int(p.stem.split("_")[1]) >= 20 for p in out.glob("resume_*.pt")):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the training ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "model_final.pt").exists()  # a killed run leaves nothing that looks finished
    killed_at = max(int(p.stem.split("_")[1]) for p in out.glob("resume_*.pt"))
    assert killed_at < 300

    done = run_bundle("training", ["bundles/lv_mri/train.json"], *args, "--resume", "true", tmp=tmp_path)
    assert "resuming from iteration" in done.stdout + done.stderr
    assert (out / "model_final.pt").is_file() and (out / "resume_300.pt").is_file()
    assert len(list(out.glob("resume_*.pt"))) == 2
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("resume").experiment_id])
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert set(steps) == set(range(1, 301))  # nothing missing
    assert len(steps) - 300 < 5 + 5  # re-done iterations: at most those after the last save (one interval)
    lr = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "lr_group_0")}
    assert lr[1] == pytest.approx(1e-4) and lr[300] == pytest.approx(1e-5)  # the schedule went on, not restarted
    vals = client.get_metric_history(run.info.run_id, "val_iou")
    assert sorted({m.step for m in vals}) == [150, 300]


@pytest.mark.parametrize(
    "files, ckpt, preset, expect",
    [
        (["model.pt"], "mine.pt", None, "mine.pt"),  # an explicit checkpoint always wins
        (["model.pt"], None, None, "models/model.pt"),
        (["model.pt", "Fluo-N2DH-SIM+.pt"], None, {"name": "Fluo-N2DH-SIM+"}, "models/Fluo-N2DH-SIM+.pt"),
        (["model.pt"], None, {"name": "Fluo-N2DH-GOWT1"}, "models/model.pt"),
        ([], None, None, "ships no trained model"),
        (["model.pt"], "missing.pt", None, "does not point to an existing file"),
    ],
)
def test_resolve_model_prefers_checkpoint_then_preset_then_bundle_model(tmp_path, files, ckpt, preset, expect):
    from cosinetrack.workflows.checkpoint import resolve_model

    (tmp_path / "models").mkdir()
    for name in files + ["mine.pt"]:
        (tmp_path / ("models" if name != "mine.pt" else "") / name).write_bytes(b"x")
    ckpt = None if ckpt is None else str(tmp_path / ckpt)
    if expect.endswith(".pt"):
        assert resolve_model(ckpt, str(tmp_path), preset) == str(tmp_path / expect)
    else:
        with pytest.raises(CosineTrackDataError, match=expect):
            resolve_model(ckpt, str(tmp_path), preset)


def test_network_for_model_takes_the_recorded_shape(tmp_path):
    from cosinetrack.workflows.checkpoint import network_for_model

    path = _save(tmp_path / "m.pt", RecurrentStackedHourglass(**{**NET, "num_levels": 3, "num_filters": 6}))
    defaults = dict(in_channels=1, out_channels=4, num_levels=7, num_filters=64, num_stacks=2, recurrent=True)
    net = network_for_model(str(path), **defaults)
    assert (net.num_levels, net.num_filters) == (3, 6)
    load_weights(net, str(path))
    old = tmp_path / "old.pt"
    torch.save(RecurrentStackedHourglass(**NET).state_dict(), old)  # no settings recorded: the defaults
    assert network_for_model(str(old), **{**defaults, "num_levels": 2, "num_filters": 4}).num_levels == 2


def test_cell_inference_without_ckpt_path_uses_the_bundle_model(tmp_path):
    """What a new user runs: no training, no --ckpt_path; the model shapes the network (no --num_levels)."""
    from cosinetrack.apps.cell.synthetic import generate_cell_video, write_ctc_sequence
    from cosinetrack.apps.cell.validation import validate_ctc_result

    bundle = tmp_path / "bundle"
    (bundle / "models").mkdir(parents=True)
    torch.manual_seed(0)
    _save(bundle / "models" / "model.pt", RecurrentStackedHourglass(1, 16, num_levels=2, num_filters=4))
    images, labels, tracks = generate_cell_video(0, num_frames=3, image_size=(64, 64), num_cells=(2, 3))
    write_ctc_sequence(tmp_path / "videos", "01", images, labels, tracks)
    run_bundle(
        "inference", ["bundles/cell/train.json", "bundles/cell/inference.json"], "--bundle_root", str(bundle),
        "--input_dir", str(tmp_path / "videos" / "01"), "--output_dir", str(tmp_path / "res"),
        "--image_size", "[32,32]", "--clustering_options", "{'max_points': 500}", "--num_threads", "1", tmp=tmp_path,
    )  # fmt: skip
    assert validate_ctc_result(tmp_path / "res" / "01_RES")


@pytest.mark.parametrize(
    "record, image_size, fit, expect",
    [
        ({"image_size": [96, 96], "fit": "crop"}, [256, 256], "scale", None),  # native-resolution crops
        ({"image_size": [96, 96], "fit": "scale"}, [256, 256], "crop", [96, 96]),  # the file decides
        ({"image_size": [96, 96]}, [256, 256], "scale", [96, 96]),  # files of before "fit" was recorded
        ({}, [128, 128], "scale", [128, 128]),  # nothing recorded: the bundle's settings
        ({}, [128, 128], "crop", None),
        ({"fit": "tiles"}, [128, 128], "scale", "fit: expected 'scale' or 'crop'"),
    ],
)
def test_stored_inference_size_follows_how_the_model_was_trained(tmp_path, record, image_size, fit, expect):
    from cosinetrack.workflows.checkpoint import stored_inference_size

    path = tmp_path / "m.pt"
    torch.save({"model": RecurrentStackedHourglass(**NET).state_dict(), **record}, path)
    if isinstance(expect, str):
        with pytest.raises(CosineTrackDataError, match=expect):
            stored_inference_size(str(path), image_size, fit)
    else:
        assert stored_inference_size(str(path), image_size, fit) == expect


BUNDLE_CLUSTERING = {"min_samples": 50, "coordinate_scale": 0.001, "background": "auto"}
MIXED = {**BUNDLE_CLUSTERING, "min_samples": 25, "coordinate_scale": 0.002}


@pytest.mark.parametrize(
    "record, canvas, expect",
    [
        ({}, [256, 256], BUNDLE_CLUSTERING),  # nothing recorded, same canvas: the bundle's options
        ({}, [128, 128], {**BUNDLE_CLUSTERING, "min_samples": 13, "coordinate_scale": 0.002}),  # converted
        ({"clustering": {"min_samples": 25}}, [256, 256], {**BUNDLE_CLUSTERING, "min_samples": 25}),  # the file's
        # recorded keys win, the others are the bundle's converted to the canvas
        ({"clustering": {"min_samples": 25}}, [128, 128], MIXED),
        ({"clustering": [25]}, [256, 256], "clustering: expected a mapping"),
        ({"clustering": {"min_smaples": 25}}, [256, 256], "clustering: .*min_smaples"),
    ],
)
def test_stored_clustering_prefers_what_the_model_file_records(tmp_path, record, canvas, expect):
    from cosinetrack.workflows.checkpoint import stored_clustering

    path = tmp_path / "m.pt"
    torch.save({"model": RecurrentStackedHourglass(**NET).state_dict(), **record}, path)
    if isinstance(expect, str):
        with pytest.raises(CosineTrackDataError, match=expect):
            stored_clustering(str(path), BUNDLE_CLUSTERING, [256, 256], canvas)
    else:
        got = stored_clustering(str(path), BUNDLE_CLUSTERING, [256, 256], canvas)
        assert got == pytest.approx(expect)


BUNDLE_NORMALIZATION = {
    "i_min": 20.0,
    "i_max": None,
    "smooth_sigma": 2.0,
    "smooth_padding": "edge",
    "upper": "percentile",
}


@pytest.mark.parametrize(
    "record, expect",
    [
        ({}, BUNDLE_NORMALIZATION),  # nothing recorded (models before 0.8.0): the bundle's section
        ({"normalization": {"upper": "foreground"}}, {**BUNDLE_NORMALIZATION, "upper": "foreground"}),
        ({"normalization": {}}, BUNDLE_NORMALIZATION),
        ({"normalization": {"upper": "max"}}, "normalization: expected"),
        ({"normalization": "foreground"}, "normalization: expected"),
    ],
)
def test_stored_normalization_prefers_what_the_model_file_records(tmp_path, record, expect):
    from cosinetrack.workflows.checkpoint import stored_normalization

    path = tmp_path / "m.pt"
    torch.save({"model": RecurrentStackedHourglass(**NET).state_dict(), **record}, path)
    if isinstance(expect, str):
        with pytest.raises(CosineTrackDataError, match=expect):
            stored_normalization(str(path), BUNDLE_NORMALIZATION)
    else:
        assert stored_normalization(str(path), BUNDLE_NORMALIZATION) == expect


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"fit": "tiles"}, "fit must be 'scale' or 'crop'"),
        ({"image_size": [0, 8]}, "image_size"),
        ({"clustering": {"min_sample": 25}}, "min_sample"),
        ({"normalization": {"upper": "max"}}, "normalization#upper: expected one of"),
    ],
)
def test_training_checkpoint_checks_the_canvas_it_records(tmp_path, kwargs, problem):
    from cosinetrack.workflows.checkpoint import TrainingCheckpoint

    net = RecurrentStackedHourglass(**NET)
    with pytest.raises((ValueError, TypeError), match=problem):
        TrainingCheckpoint(str(tmp_path), net, torch.optim.Adam(net.parameters()), **kwargs)
