"""The robustness benchmark's shifts and its end-to-end path (model through the bundle + baseline), tiny."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT

from cosinetrack.apps.cell.reader import find_ctc_sequences, read_ctc_frame
from cosinetrack.apps.cell.synthetic import generate_cell_video, write_ctc_sequence
from cosinetrack.networks.stacked import RecurrentStackedHourglass


def _bench():
    path = REPO_ROOT / "benchmarks" / "bench_cell_robustness.py"
    spec = importlib.util.spec_from_file_location("bench_cell_robustness", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REF = np.full((32, 32), 100.0)
REF[8:16, 8:16] = 300.0  # median 100, 99.5th percentile 300: spread s = 200


@pytest.mark.parametrize(
    "shift, check",
    [
        ("none", lambda x, y: np.array_equal(x, y)),
        ("gain0.5", lambda x, y: np.allclose(y, x * 0.5)),
        ("gain2", lambda x, y: np.allclose(y, x * 2)),
        ("offset", lambda x, y: np.allclose(y, x + 100.0)),
        ("gauss", lambda x, y: 25 < np.std(y - x) < 35),  # 0.15 * 200 = 30
        ("poisson", lambda x, y: 5 < np.std(y[20:, 20:] - 100) < 30 and abs(np.mean(y) - np.mean(x)) < 5),
        ("blur", lambda x, y: y.max() < 300 and abs(y.sum() - x.sum()) / x.sum() < 0.01),
    ],
)
def test_shifts_do_what_they_say(shift, check):
    apply = _bench().shift_function(shift, REF)
    y = apply(REF, 0)
    assert y.dtype == np.float32 and check(REF, y.astype(np.float64))
    np.testing.assert_array_equal(apply(REF, 3), apply(REF, 3))  # the same frames for every method


def test_unknown_shift_is_an_error():
    with pytest.raises(ValueError, match="shift"):
        _bench().shift_function("darker", REF)


@pytest.mark.parametrize("keep", [False, True])
def test_model_and_baseline_rows_on_a_shifted_window(tmp_path, keep):
    images, labels, tracks = generate_cell_video(0, num_frames=5, image_size=(64, 64), num_cells=(2, 3))
    data = tmp_path / "Fluo-N2DH-SIM+"
    write_ctc_sequence(data, "01", images, labels, tracks)
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    torch.manual_seed(0)
    ckpt = tmp_path / "model.pt"
    torch.save(RecurrentStackedHourglass(1, 16, num_levels=2, num_filters=4).state_dict(), ckpt)
    overrides = '{"num_levels": 2, "num_filters": 4, "image_size": [32, 32], "clustering_options": {"max_points": 500}}'
    bench = _bench()
    (tmp_path / "work").mkdir()
    rows = bench.run(bench.main.__globals__["argparse"].Namespace(
        ckpt=str(ckpt), model_name="tiny", config=[], overrides=overrides, dataset=str(data), sequence="01",
        frames="1:4", cross=[], shifts=["gain2"], threads=1, workdir=str(tmp_path / "work"), keep=keep,
    ))  # fmt: skip
    assert [(r["method"], r["shift"], r["data"]) for r in rows] == [
        ("classical (mad)", "gain2", "Fluo-N2DH-SIM+/01 1-3"),
        ("tiny", "gain2", "Fluo-N2DH-SIM+/01 1-3"),
    ]
    assert all(0.0 <= r[k] <= 1.0 for r in rows for k in ("SEG", "TRA", "DET", "OP_CTB"))
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before  # inputs only read
    assert len(list(find_ctc_sequences(data)[0].frames)) == 5 and read_ctc_frame(data / "01" / "t000.tif").ndim == 2
    kept = list((tmp_path / "work").iterdir())
    if not keep:
        assert kept == []  # the working folder is gone
        return
    assert len(kept) == 1  # the window's frames (shifted, renumbered from 0) and the model's CTC result stay
    frames = sorted(p.name for p in (kept[0] / "Fluo-N2DH-SIM+" / "01").glob("t*.tif"))
    masks = sorted(p.name for p in (kept[0] / "eval" / "tracking" / "01_RES").glob("mask*.tif"))
    assert frames == ["t000.tif", "t001.tif", "t002.tif"] and masks == ["mask000.tif", "mask001.tif", "mask002.tif"]


def test_instance_audit_tells_background_texture_from_cells_and_counts_splits():
    path = REPO_ROOT / "benchmarks" / "audit_cell_instances.py"
    spec = importlib.util.spec_from_file_location("audit_cell_instances", path)
    audit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(audit)
    image = np.full((40, 40), 10.0) + np.random.default_rng(0).normal(0, 1, (40, 40))
    image[5:15, 5:15] += 100.0  # a bright nucleus (marker 1) ...
    image[25:35, 5:15] += 100.0  # ... and another (marker 2), missed
    markers = np.zeros((40, 40), int)
    markers[9:11, 9:11] = 1
    markers[29:31, 9:11] = 2
    labels = np.zeros((40, 40), int)
    labels[5:15, 5:10] = 1  # the first nucleus split in two instances
    labels[5:15, 10:15] = 2
    labels[25:35, 25:35] = 3  # background texture read as a cell
    row = audit.audit_frame(labels, markers, image)
    assert row["on_marker"].tolist() == [True, True, False]
    assert row["share"][2] == 0.0 and row["share"][:2].min() > 0.5
    assert (row["splits"], row["missed"], row["markers"]) == (1, 1, 2)
    with pytest.raises(ValueError, match="shapes differ"):
        audit.audit_frame(labels[:-1], markers, image)
