"""Misspelt keys of the named-option sections fail when a bundle's config is parsed, naming key and choices.

The sections are checked by the bundles' ``initialize`` section (``option_checks``), which MONAI runs
before the workflow reads any data: a typo costs seconds, not ``val_interval`` iterations.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT
from monai.bundle import ConfigParser

from cosinetrack.errors import CosineTrackConfigError, user_error_in_chain
from cosinetrack.options import check_option_names

CELL = ["bundles/cell/train.json"]
CELL_INFER = ["bundles/cell/train.json", "bundles/cell/inference.json"]
LEAF = ["bundles/leaf/train.json"]
LV = ["bundles/lv_mri/train.json"]


def _parsed(configs: list[str], overrides: dict, key: str):
    """``key`` of the bundle ``configs`` with ``overrides``, parsed from the repository root."""
    parser = ConfigParser()
    parser.read_config([str(REPO_ROOT / c) for c in configs])
    parser.update(overrides)
    cwd = os.getcwd()
    os.chdir(REPO_ROOT)  # the bundles' macros are relative to the repository root
    try:
        return parser.get_parsed_content(key)
    finally:
        os.chdir(cwd)


def _initialize(configs: list[str], overrides: dict) -> None:
    _parsed(configs, overrides, "initialize")


@pytest.mark.parametrize(
    "configs, overrides, fragment",
    [
        (CELL, {"clustering_options#max_pionts": 100}, "unknown option 'max_pionts' (did you mean 'max_points'?)"),
        (CELL, {"clustering_options#mod": "fast"}, "did you mean 'mode'?"),
        (CELL, {"clustering": {"min_sample": 5}}, "clustering#min_sample: unknown option"),
        (CELL, {"tracking#min_iuo": 0.3}, "tracking#min_iuo: unknown option 'min_iuo' (did you mean 'min_iou'?)"),
        (CELL, {"tracking#min_iou": 1.5}, "tracking: min_iou: must be in (0, 1]"),
        (CELL, {"tracking": [0.25]}, "tracking: expected a dict of options"),
        (CELL, {"lineage#min_track_lenght": 3}, "lineage#min_track_lenght: unknown option"),
        (CELL_INFER, {"lineage#max_gaps": 3}, "did you mean 'max_gap'?"),
        (LEAF, {"clustering#coordinate_scal": 0.01}, "clustering#coordinate_scal: unknown option"),
        (CELL, {"normalization#i_mni": 5.0}, "normalization#i_mni: unknown option 'i_mni' (did you mean 'i_min'?)"),
        (CELL, {"normalization#i_max": 120.0}, "normalization: i_max: expected a percentage in [0, 100)"),
        (CELL_INFER, {"normalization#smooth_sigma": -1.0}, "normalization: smooth_sigma: expected a finite number"),
        (LEAF, {"normalization#smoth_sigma": 1.0}, "did you mean 'smooth_sigma'?"),
        (LV, {"normalization#i_min": "ten"}, "normalization: i_min: expected a percentage"),
        (CELL, {"augmentation#i_min": 5.0}, "augmentation#i_min: moved to normalization#i_min"),
        (LV, {"augmentation#i_max": 5.0}, "augmentation#i_max: moved to normalization#i_max"),
        (LEAF, {"augmentation#rotate_dge": 90.0}, "augmentation#rotate_dge: unknown option 'rotate_dge'"),
        (CELL, {"resolution": "tilde"}, "resolution: expected one of ('scaled', 'tiled')"),
        (CELL, {"augmentation#padding_mode": "mirror"}, "padding_mode: expected one of ('zeros', 'reflection'"),
        (CELL, {"tiling": {"storage": "disk", "stitch": 0.5}}, "tiling#stitch: unknown option 'stitch'"),
    ],
)  # fmt: skip
def test_misspelt_option_fails_at_parse_time(configs, overrides, fragment):
    with pytest.raises(Exception) as info:
        _initialize(configs, overrides)
    error = user_error_in_chain(info.value)
    assert isinstance(error, CosineTrackConfigError), info.value
    assert fragment in str(error)
    assert any(word in str(error) for word in ("allowed:", "expected", "must be", "moved to"))


@pytest.mark.parametrize(
    "configs, overrides",
    [
        (CELL, {}),
        (CELL, {"clustering_options#mode": "fast", "tracking#min_iou": 0.3, "lineage#min_track_length": 3}),
        (CELL_INFER, {}),
        (LEAF, {}),
        (LV, {}),
    ],
)
def test_the_bundles_own_options_pass(configs, overrides):
    _initialize(configs, overrides)


def test_check_option_names_lists_the_allowed_names():
    assert check_option_names("s", None, ["a"]) == {}
    assert check_option_names("s", {"a": 1}, ["a", "b"]) == {"a": 1}
    with pytest.raises(CosineTrackConfigError, match=r"s#c: unknown option 'c'; allowed: a, b"):
        check_option_names("s", {"c": 1}, ["b", "a"])


def test_command_line_typo_is_the_last_line_printed(tmp_path):
    """The user's view: the run stops before any data is read, and the last line names key and choices."""
    cmd = [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--config_file", str(REPO_ROOT / "bundles/cell/train.json"), "--tracking#min_iuo", "0.3",
        "--output_dir", str(tmp_path / "out"),
    ]  # fmt: skip
    env = dict(os.environ, COSINETRACK_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: tracking#min_iuo: unknown option 'min_iuo' (did you mean 'min_iou'?)"), last
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("key", ["neighbour_radius", "neighbor_radius"])
def test_the_renamed_neighbor_radius_key_still_works(key, caplog):
    """``--neighbour_radius`` (the spelling of earlier versions) is a deprecated alias of ``--neighbor_radius``."""
    loss = _parsed(CELL, {key: 40.0}, "loss")
    assert loss.loss.neighbor_radius == 40.0
    assert ("deprecated" in caplog.text) == (key == "neighbour_radius")


@pytest.mark.parametrize("overlay", ["bundles/cell/inference.json", "bundles/cell/evaluate.json"])
@pytest.mark.parametrize(
    "record, overrides, expect",
    [
        ({"image_size": [384, 384]}, {}, [384, 384]),  # a model trained on a 384 x 384 canvas runs on it
        ({}, {}, [256, 256]),  # a file that records no canvas: the bundle's image_size
        ({"image_size": [384, 384]}, {"inference_size": [320, 320]}, [320, 320]),  # the user's override wins
        ({"image_size": [128, 128], "fit": "crop"}, {"resolution": "tiled"}, [256, 256]),  # tiles: the bundle's
    ],
)
def test_cell_inference_runs_a_model_on_the_canvas_it_was_trained_on(tmp_path, overlay, record, overrides, expect):
    """Cell evaluation and inference scale frames to the canvas recorded in the model file (``image_size``)."""
    model = tmp_path / "model.pt"
    torch.save({"model": {}, **record}, model)
    assert list(_parsed([*CELL, overlay], {"ckpt_path": str(model), **overrides}, "inference_size")) == expect


@pytest.mark.parametrize(
    "overrides, flips",
    [
        ({}, True),  # the default: four flipped views on the scaled canvas
        ({"resolution": "tiled"}, False),  # tiles have no flips; no second flag needed
        ({"test_time_flips": False}, False),
    ],
)
def test_cell_test_time_flips_follow_the_resolution_unless_set(overrides, flips):
    assert _parsed(CELL_INFER, overrides, "test_time_flips") is flips
    assert _parsed(CELL_INFER, overrides, "tracker").test_time_flips is flips


@pytest.mark.parametrize(
    "overrides, halo",
    [
        ({"input_dir": "/data/Fluo-N2DH-GOWT1"}, 0.25),  # fluorescence: the halo filter is on
        ({"input_dir": "/data/my_videos"}, 0.25),  # unknown folders take the default (fluorescence-like) preset
        ({"input_dir": "/data/PhC-C2DH-U373/01"}, 0.0),  # transmitted light: off
        ({"dataset_preset": "DIC-C2DH-HeLa"}, 0.0),
        ({"input_dir": "/data/Fluo-N2DH-SIM+", "tracking#halo_distance": 0.5}, 0.5),  # set by the user
    ],
)
def test_cell_halo_filter_follows_the_preset_unless_set(overrides, halo):
    assert _parsed(CELL_INFER, overrides, "tracking")["halo_distance"] == halo
    assert _parsed(CELL_INFER, overrides, "tracker").tracking.halo_distance == halo
