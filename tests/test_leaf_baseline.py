"""The classical leaf baseline (``segment_leaves`` and the fold protocol of ``benchmarks/bench_leaf_baseline.py``)
on synthetic rosettes from :mod:`cosinetrack.apps.leaf.synthetic`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from cosinetrack.apps.leaf.synthetic import generate_rosette, write_synthetic_leaf_dataset
from cosinetrack.metrics.instances import instance_scores

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_leaf_baseline.py"


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("bench_leaf_baseline", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()

#: Seed 5 of the generator at 256 x 256: a young rosette of 5 leaves that touch only at the center.
WELL_SEPARATED_SEED = 5
#: Settings for the 256 x 256 synthetic photos (the defaults are the ones chosen on the 530 x 500 CVPPP photos).
SYNTHETIC = {"threshold": None, "component_fraction": 0.1, "sigma": 1.0, "min_distance": 12, "brightness_weight": 1.0,
             "edge_weight": 0.0, "min_size": 20}  # fmt: skip


def _photo(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(3, H, W)`` float32 in ``[0, 1]``, as ``read_cvppp_image`` returns."""
    return rgb.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)


def test_well_separated_rosette_every_leaf_found():
    rgb, labels = generate_rosette(WELL_SEPARATED_SEED, (256, 256))
    assert labels.max() == 5  # the case this test is about (fails loudly if the generator changes)
    pred = bench.segment_leaves(_photo(rgb), **SYNTHETIC)
    assert pred.shape == labels.shape and pred.dtype == np.int32
    ids = np.unique(pred[pred > 0])
    np.testing.assert_array_equal(ids, np.arange(1, ids.size + 1))  # sequential labels
    scores = instance_scores(labels, pred)
    assert scores["n_pred"] == 5
    assert scores["sbd"] > 0.85, scores
    assert scores["fg_dice"] > 0.9, scores
    # each true leaf is matched by its own predicted leaf (one-to-one best matches)
    best = [np.bincount(pred[labels == leaf], minlength=pred.max() + 1)[1:].argmax() for leaf in range(1, 6)]
    assert len(set(best)) == 5


def test_default_settings_find_the_leaves_of_a_rosette():
    """The defaults (chosen on the CVPPP photos) also find the 5 leaves of the synthetic rosette."""
    rgb, labels = generate_rosette(WELL_SEPARATED_SEED, (256, 256))
    scores = instance_scores(labels, bench.segment_leaves(_photo(rgb)))
    assert scores["n_pred"] == 5 and scores["sbd"] > 0.8, scores


@pytest.mark.parametrize(
    ("kwargs", "leaves"),
    [
        ({"min_distance": 12}, 5),
        ({"min_distance": 200}, 1),  # markers further apart than the plant: the rosette is one object
        ({"min_distance": 12, "min_size": 10**6}, 0),  # every leaf under min_size
    ],
)
def test_parameters_change_the_count(kwargs, leaves):
    rgb, _ = generate_rosette(WELL_SEPARATED_SEED, (256, 256))
    assert bench.segment_leaves(_photo(rgb), **{**SYNTHETIC, **kwargs}).max() == leaves


@pytest.mark.parametrize(("component_fraction", "leaves"), [(0.0, 6), (0.1, 5)])
def test_green_speck_on_the_soil_dropped_by_component_fraction(component_fraction, leaves):
    rgb, labels = generate_rosette(WELL_SEPARATED_SEED, (256, 256))
    photo = _photo(rgb)
    assert not labels[5:15, 5:15].any()
    photo[:, 5:15, 5:15] = np.array([0.2, 0.7, 0.1], dtype=np.float32)[:, None, None]  # 100 px of moss
    pred = bench.segment_leaves(photo, **{**SYNTHETIC, "component_fraction": component_fraction})
    assert pred.max() == leaves
    assert (pred[5:15, 5:15] > 0).all() == (component_fraction == 0.0)


def test_photo_without_green_has_no_leaf():
    grey = np.full((3, 64, 64), 0.4, dtype=np.float32)
    assert bench.segment_leaves(grey).max() == 0
    assert bench.segment_leaves(grey, threshold=0.1).max() == 0


BAD = [
    ["2-D image", np.zeros((8, 8)), {}],
    ["channels last", np.zeros((8, 8, 3)), {}],
    ["complex image", np.zeros((3, 8, 8), dtype=np.complex64), {}],
    ["NaN in image", np.full((3, 8, 8), np.nan), {}],
    ["negative sigma", np.zeros((3, 8, 8)), {"sigma": -1.0}],
    ["min_distance 0", np.zeros((3, 8, 8)), {"min_distance": 0}],
    ["fractional min_distance", np.zeros((3, 8, 8)), {"min_distance": 2.5}],
    ["negative min_size", np.zeros((3, 8, 8)), {"min_size": -1}],
    ["NaN edge_weight", np.zeros((3, 8, 8)), {"edge_weight": float("nan")}],
    ["infinite threshold", np.zeros((3, 8, 8)), {"threshold": float("inf")}],
    ["negative brightness_weight", np.zeros((3, 8, 8)), {"brightness_weight": -1.0}],
    ["string brightness_sigma", np.zeros((3, 8, 8)), {"brightness_sigma": "4"}],
    ["component_fraction above 1", np.zeros((3, 8, 8)), {"component_fraction": 1.5}],
]


@pytest.mark.parametrize(("name", "image", "kwargs"), BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_a_clear_error(name, image, kwargs):
    with pytest.raises(
        ValueError,
        match=r"^(image|sigma|min_distance|min_size|edge_weight|threshold|brightness_weight|brightness_sigma|component_fraction):",
    ):
        bench.segment_leaves(image, **kwargs)


def test_bad_protocol_settings(tmp_path):
    with pytest.raises(ValueError, match="grid: unknown parameters"):
        bench.grid_params({"sigma": (1.0,), "min_dist": (3,)})
    with pytest.raises(ValueError, match="grid_scale"):
        bench.run(str(tmp_path), grid_scale=0.0)


def test_cross_validation_protocol_on_synthetic_plants(tmp_path, monkeypatch, capsys):
    """The whole run on 6 small synthetic plants: 3 folds of 2, parameters chosen per fold from the grid,
    every plant scored once, JSON written."""
    data = tmp_path / "A1"
    write_synthetic_leaf_dataset(data, num_plants=6, seed=0, image_size=(96, 96))
    monkeypatch.setattr(bench, "GRID", {"sigma": (0.0, 1.0), "min_distance": (4, 8), "edge_weight": (0.0,),
                                        "min_size": (10,)})  # fmt: skip
    out = tmp_path / "result.json"
    assert bench.main(["--dataset", str(data), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    folds = [result["per_plant"][f"fold{k}"] for k in (1, 2, 3)]
    held_out = sorted(r["plant"] for rows in folds for r in rows)
    assert held_out == [f"plant{i:03d}" for i in range(1, 7)]  # each plant held out exactly once
    table = result["table"]
    assert [r["fold"] for r in table[:4]] == ["1", "2", "3", "**all (pooled)**"]
    assert table[4]["parameters"] == bench.DEFAULT_PARAMS and table[4]["plants"] == 6
    for k, row in enumerate(table[:3]):  # the chosen set is the best on the fold's training plants
        train_sbd = result["grid_train_sbd"][f"fold{k + 1}"]
        assert row["parameters"] == bench.grid_params(bench.GRID)[int(np.argmax(train_sbd))]
    pooled = [r["sbd"] for rows in folds for r in rows]
    assert table[3]["sbd"] == pytest.approx(np.mean(pooled))
    assert "| **all (pooled)** | 6 |" in capsys.readouterr().out
