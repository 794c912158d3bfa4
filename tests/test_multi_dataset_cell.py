"""The cell bundle trained on several CTC data sets at once, each sequence with its own preset."""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, run_bundle
from monai.bundle import ConfigParser

from cosinetrack.apps.cell.datasets import ctc_dataset_name, find_ctc_datasets, split_video_frames
from cosinetrack.apps.cell.pipeline import clustering_for_part
from cosinetrack.apps.cell.presets import CTC_PRESETS, ctc_preset, preset_value
from cosinetrack.apps.cell.sequence import VideoPart
from cosinetrack.apps.cell.synthetic import write_synthetic_cell_dataset
from cosinetrack.apps.cell.validation import validate_ctc_result
from cosinetrack.errors import CosineTrackConfigError, CosineTrackDataError, user_error_in_chain
from cosinetrack.transforms.intensity import RandImagingNoised
from cosinetrack.transforms.normalize import RobustNormalized, robust_scale

pytestmark = pytest.mark.usefixtures("single_thread")

NAMES = ("Fluo-N2DH-SIM+", "Fluo-N2DH-GOWT1")
TINY = ["--image_size", "[48,48]", "--num_levels", "3", "--num_filters", "8", "--num_threads", "1"]
TINY += ["--embedding_dim", "8", "--clip_length", "4", "--clustering_options#max_points", "3000", "--val_frames", "-3:"]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> list[Path]:
    """Two tiny synthetic CTC data sets in folders named like known presets (one 8-frame video each)."""
    root = tmp_path_factory.mktemp("multi")
    folders = [root / name for name in NAMES]
    for seed, folder in enumerate(folders):
        write_synthetic_cell_dataset(folder, num_sequences=1, seed=seed, image_size=(64, 64 + 8 * seed), num_frames=8)
    return folders


def _parser(monkeypatch, tmp_path: Path, **overrides) -> ConfigParser:
    """The cell bundle's train.json with ``overrides``, as ``monai.bundle run`` reads it (from the repository root)."""
    monkeypatch.chdir(REPO_ROOT)
    parser = ConfigParser()
    parser.read_config(str(REPO_ROOT / "bundles" / "cell" / "train.json"))
    parser.update(
        {"image_size": [48, 48], "clip_length": 4, "val_frames": "-3:", "output_dir": str(tmp_path), **overrides}
    )
    parser.get_parsed_content("imports")
    return parser


@pytest.mark.parametrize("as_list", [False, True])
def test_one_folder_is_unchanged(datasets, monkeypatch, tmp_path, as_list):
    sim = str(datasets[0])
    parser = _parser(monkeypatch, tmp_path, dataset_dir=[sim] if as_list else sim)
    assert parser.get_parsed_content("dataset_name") == "Fluo-N2DH-SIM+"
    assert parser.get_parsed_content("preset") == ctc_preset(None, sim)
    assert [s.name for s in parser.get_parsed_content("sequences")] == ["01"]
    assert [p.name for p in parser.get_parsed_content("val_cases")] == ["01[5:8]"]
    cases = parser.get_parsed_content("train_dataset").cases
    assert [(c["name"], c["i_min"], c["i_max"]) for c in cases] == [("01[0:5]", 20.0, 1.0)]
    assert parser.get_parsed_content("key_metric").part_metrics is False
    step = parser.get_parsed_content("val_iteration_update")
    assert (step.tracker.normalization.i_min, step.tracker.normalization.i_max) == (20.0, 1.0)


@pytest.mark.parametrize(
    "overrides, expected",
    [  # (i_min, i_max) of the SIM+ and GOWT1 cases and parts
        ({}, {"Fluo-N2DH-SIM+": (20.0, 1.0), "Fluo-N2DH-GOWT1": (20.0, 10.0)}),
        ({"normalization#i_max": 5.0}, {"Fluo-N2DH-SIM+": (20.0, 5.0), "Fluo-N2DH-GOWT1": (20.0, 5.0)}),
        ({"dataset_preset": "Fluo-N2DH-GOWT1"}, {"Fluo-N2DH-SIM+": (20.0, 10.0), "Fluo-N2DH-GOWT1": (20.0, 10.0)}),
    ],
)
def test_every_case_and_part_uses_its_own_preset_unless_overridden(
    datasets, monkeypatch, tmp_path, overrides, expected
):
    parser = _parser(monkeypatch, tmp_path, dataset_dir=[str(d) for d in datasets], **overrides)
    assert parser.get_parsed_content("dataset_name") == "Fluo-N2DH-SIM++Fluo-N2DH-GOWT1"
    cases = parser.get_parsed_content("train_dataset").cases
    assert [c["name"] for c in cases] == ["Fluo-N2DH-SIM+/01[0:5]", "Fluo-N2DH-GOWT1/01[0:5]"]
    assert {c["name"].split("/")[0]: (c["i_min"], c["i_max"]) for c in cases} == expected
    items = parser.get_parsed_content("train_dataset")
    assert {items[i]["name"].split("/")[0]: items[i]["i_max"] for i in range(len(items))} == {
        k: v[1] for k, v in expected.items()
    }
    step = parser.get_parsed_content("val_iteration_update")
    parts = [item["part"] for item in parser.get_parsed_content("val_dataset")]
    assert [p.name for p in parts] == ["Fluo-N2DH-SIM+/01[5:8]", "Fluo-N2DH-GOWT1/01[5:8]"]
    for part in parts:
        settings = step.tracker.normalization_for(part)
        assert (settings["i_min"], settings["i_max"]) == expected[part.sequence.dataset]
        preset = CTC_PRESETS[overrides.get("dataset_preset") or part.sequence.dataset]
        tracker = step.tracker
        kwargs = clustering_for_part(part, (48, 48), "scaled", tracker.preset, None, tracker.clustering_options)
        assert kwargs["min_samples"] == max(5, round(preset["m_pts"] * 48 * 48 / 256**2))
    assert parser.get_parsed_content("neighbor_radius") == 50
    assert parser.get_parsed_content("key_metric").part_metrics is True


def test_a_clip_is_normalized_with_its_own_data_sets_percentages(datasets, monkeypatch, tmp_path):
    parser = _parser(monkeypatch, tmp_path, dataset_dir=[str(d) for d in datasets])
    transforms = parser.get_parsed_content("train_transforms").transforms
    (normalize,) = [t for t in transforms if isinstance(t, RobustNormalized)]
    assert (normalize.i_min, normalize.i_max) == (20.0, None)  # i_max differs: each clip brings its own
    for case in parser.get_parsed_content("train_dataset").cases:
        clip = torch.as_tensor(case["image"][0, :4])
        out = normalize({"image": clip, "i_min": case["i_min"], "i_max": case["i_max"]})["image"]
        torch.testing.assert_close(out, robust_scale(clip, case["i_min"] / 2, 100 - case["i_max"] / 2))
        other = 11.0 - case["i_max"]  # the other data set's i_max (1 <-> 10)
        assert not torch.allclose(out, robust_scale(clip, case["i_min"] / 2, 100 - other / 2), atol=1e-3)


@pytest.mark.parametrize(
    "noise_std, expected",  # the strength each data set's cases and clips carry (None: no key, the one value)
    [
        (0.0, None),
        (0.2, None),
        ({"Fluo-N2DH-GOWT1": 0.3}, {"Fluo-N2DH-SIM+": 0.0, "Fluo-N2DH-GOWT1": 0.3}),
        ({"Fluo-N2DH-GOWT1": 0.3, "Fluo-N2DH-SIM+": 0.1}, {"Fluo-N2DH-SIM+": 0.1, "Fluo-N2DH-GOWT1": 0.3}),
    ],
)
def test_imaging_noise_strength_per_data_set(datasets, monkeypatch, tmp_path, noise_std, expected):
    dirs = [str(d) for d in datasets]
    parser = _parser(monkeypatch, tmp_path, dataset_dir=dirs, **{"augmentation#noise_std": noise_std})
    parser.get_parsed_content("option_checks")
    dataset = parser.get_parsed_content("train_dataset")
    noise = [t for t in parser.get_parsed_content("train_transforms").transforms if isinstance(t, RandImagingNoised)]
    if expected is None:
        assert all("noise_std" not in c for c in dataset.cases)
        assert [(t.max_std, t.max_std_key) for t in noise] == ([(noise_std, None)] if noise_std else [])
        return
    assert {c["name"].split("/")[0]: c["noise_std"] for c in dataset.cases} == expected
    assert {dataset[i]["name"].split("/")[0]: dataset[i]["noise_std"] for i in range(len(dataset))} == expected
    (t,) = noise
    assert (t.max_std, t.max_std_key) == (None, "noise_std")  # each clip brings its own strength
    for i in range(len(dataset)):
        assert t.item_max_std(dataset[i]) == expected[dataset[i]["name"].split("/")[0]]


@pytest.mark.parametrize(
    "noise_std, match",
    [
        ({"Fluo-N2DH-HeLa": 0.3}, r"augmentation#noise_std: names \['Fluo-N2DH-HeLa'\], not data sets of this run"),
        ({"Fluo-N2DH-GOWT1": -0.1}, r"augmentation#noise_std: noise_std\['Fluo-N2DH-GOWT1'\]: expected a number >= 0"),
        ({"Fluo-N2DH-GOWT1": "strong"}, r"augmentation#noise_std: .*expected a number >= 0, got 'strong'"),
    ],
)
def test_a_bad_per_data_set_noise_strength_names_the_key(datasets, monkeypatch, tmp_path, noise_std, match):
    dirs = [str(d) for d in datasets]
    parser = _parser(monkeypatch, tmp_path, dataset_dir=dirs, **{"augmentation#noise_std": noise_std})
    with pytest.raises(Exception) as info:  # the option check, or reading the cases (wrapped by MONAI)
        parser.get_parsed_content("option_checks")
        parser.get_parsed_content("train_dataset")
    user = user_error_in_chain(info.value)  # what the command line shows as its last line
    assert isinstance(user, CosineTrackConfigError) and re.search(match, str(user))


def test_training_on_two_data_sets_validates_each_part_with_prefixed_names(datasets, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = tmp_path / "run"
    proc = run_bundle(
        "training",
        ["bundles/cell/train.json"],
        "--dataset_dir",
        str([str(d) for d in datasets]),
        *TINY,
        "--max_iterations",
        "2",
        "--val_interval",
        "2",
        "--tracking_uri",
        uri,
        "--experiment_name",
        "multi",
        "--output_dir",
        str(out),
        tmp=tmp_path,
    )
    assert "Validation after 2 iterations" in proc.stdout
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("multi").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["dataset"] == "Fluo-N2DH-SIM++Fluo-N2DH-GOWT1"
    assert run.info.run_name.startswith("cell-recurrent-Fluo-N2DH-SIM++Fluo-N2DH-GOWT1-")
    for name in ("Fluo-N2DH-SIM_/01_5:8", "Fluo-N2DH-GOWT1/01_5:8"):  # one score per part, MLflow-safe names
        for score in ("SEG", "TRA", "DET", "OP_CTB"):
            assert f"val_{score}/{name}" in run.data.metrics and f"val_{score}/{name}" in proc.stdout
    assert {"val", "val_OP_CTB", "val_OP_CTB_std"} <= set(run.data.metrics)
    results = sorted(p.name for p in (out / "tracking").glob("*_RES"))
    assert results == ["Fluo-N2DH-GOWT1_01_5_8_RES", "Fluo-N2DH-SIM__01_5_8_RES"]
    for res in results:
        assert (
            validate_ctc_result(str(out / "tracking" / res)) and len(list((out / "tracking" / res).glob("*.tif"))) == 3
        )


@pytest.mark.parametrize("problem", ["missing", "empty"])
def test_a_missing_or_empty_folder_is_a_clear_error_naming_it(datasets, tmp_path, problem):
    bad = tmp_path / "Fluo-N2DH-HeLa-typo"
    if problem == "empty":
        bad.mkdir()
    match = "not found" if problem == "missing" else "no CTC sequence found"
    with pytest.raises(CosineTrackDataError, match=match) as info:
        find_ctc_datasets([str(datasets[0]), str(bad)])
    assert str(bad) in str(info.value)


def _cause(exc: BaseException) -> BaseException:
    """The innermost exception MONAI's "Failed to evaluate ConfigExpression" wraps."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def test_the_bundle_names_a_missing_folder(datasets, monkeypatch, tmp_path):
    missing = tmp_path / "nowhere" / "Fluo-N2DH-GOWT1"
    parser = _parser(monkeypatch, tmp_path, dataset_dir=[str(datasets[0]), str(missing)])
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("train_dataset")
    assert isinstance(_cause(info.value), CosineTrackDataError)
    assert str(_cause(info.value)) == f"{missing}: CTC data folder not found"


@pytest.mark.parametrize(
    "dirs, match",
    [
        ([], "empty list"),
        (["a/Fluo-N2DH-SIM+", "b/Fluo-N2DH-SIM+"], "a second data set named 'Fluo-N2DH-SIM\\+'"),
    ],
)
def test_bad_lists_of_folders(datasets, tmp_path, dirs, match):
    for d in dirs:  # real folders, so that only the listed problem remains
        write_synthetic_cell_dataset(tmp_path / d, num_sequences=1, image_size=(64, 64), num_frames=2)
    with pytest.raises((CosineTrackDataError, CosineTrackConfigError), match=match):
        find_ctc_datasets([str(tmp_path / d) for d in dirs])


@pytest.mark.parametrize(
    "names, r_n",
    [
        (["Fluo-N2DH-SIM+", "Fluo-N2DH-GOWT1"], 50),
        (["Fluo-N2DH-SIM+", "Fluo-N2DH-SIM+"], 50),
        (["Fluo-C2DL-MSC", "Fluo-N2DH-SIM+"], None),
        (["Fluo-N2DL-HeLa", "Fluo-C2DL-MSC", "Fluo-N2DH-GOWT1"], None),
    ],
)
def test_neighbor_radius_is_the_common_r_n_or_a_clear_error(names, r_n):
    preset = ctc_preset(None, [f"/data/{n}" for n in names])
    if r_n is not None:
        assert preset_value(preset, "r_N", "neighbor_radius") == r_n
        return
    with pytest.raises(CosineTrackConfigError, match="neighbor_radius") as info:
        preset_value(preset, "r_N", "neighbor_radius")
    for n in names:
        assert f"{n}: {CTC_PRESETS[n]['r_N']}" in str(info.value)


def test_differing_r_n_fails_the_bundle_unless_neighbor_radius_is_given(monkeypatch, tmp_path):
    dirs = [str(tmp_path / "Fluo-C2DL-MSC"), str(tmp_path / "Fluo-N2DH-SIM+")]
    parser = _parser(monkeypatch, tmp_path, dataset_dir=dirs)
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("loss")
    assert isinstance(_cause(info.value), CosineTrackConfigError)
    assert "differ in r_N (Fluo-C2DL-MSC: 150, Fluo-N2DH-SIM+: 50)" in str(_cause(info.value))
    parser = _parser(monkeypatch, tmp_path, dataset_dir=dirs, neighbor_radius=80)
    assert parser.get_parsed_content("loss").loss.neighbor_radius == 80
    assert ctc_dataset_name(dirs) == "Fluo-C2DL-MSC+Fluo-N2DH-SIM+" and ctc_dataset_name(None) is None


def test_val_sequences_take_prefixed_names(datasets):
    sequences = find_ctc_datasets([str(d) for d in datasets])
    train, val = split_video_frames(sequences, None, ["Fluo-N2DH-GOWT1/01"])
    assert [p.name for p in train] == ["Fluo-N2DH-SIM+/01[0:8]"]
    assert [p.name for p in val] == ["Fluo-N2DH-GOWT1/01[0:8]"]
    assert np.isclose(val[0].sequence.preset["i_max"], 10.0)


@pytest.mark.parametrize("with_seg", [True, False])
def test_a_part_without_seg_ground_truth_is_scored_without_seg(datasets, tmp_path, with_seg):
    """Fluo-N2DH-GOWT1/01 has SEG files only in frames 2-47: its held-out tail gets TRA and DET, SEG = OP_CTB = nan."""
    from cosinetrack.apps.cell.pipeline import VideoTracker, VideoTrackingStep
    from cosinetrack.networks.stacked import RecurrentStackedHourglass

    seq = find_ctc_datasets([str(d) for d in datasets])[1]
    seq = seq if with_seg else seq.replace(seg={})
    part = VideoPart("Fluo-N2DH-GOWT1/01[5:8]", seq, (5, 6, 7))
    tracker = VideoTracker(
        (32, 32), clustering_options={"max_points": 2000}, normalization={"i_min": None, "i_max": None}
    )
    step = VideoTrackingStep(tracker, str(tmp_path / "work"), num_figure_frames=0)
    assert step.metrics_for(part) == (("SEG", "TRA", "DET") if with_seg else ("TRA", "DET"))

    class Engine:
        network = RecurrentStackedHourglass(1, 4, num_levels=2, num_filters=4)

        class state:  # noqa: N801
            device = torch.device("cpu")

    scores = step(Engine, {"part": [part]})["scores"]
    assert np.isfinite(scores["TRA"]) and np.isfinite(scores["DET"])
    assert np.isfinite(scores["SEG"]) == with_seg and np.isfinite(scores["OP_CTB"]) == with_seg
