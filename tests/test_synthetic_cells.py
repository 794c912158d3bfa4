"""Tests of the deterministic synthetic cell-video generator and its Cell Tracking Challenge writer."""

from __future__ import annotations

import json
import os
import shutil
import warnings

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from cosinetrack.apps.cell.synthetic import (
    GENERATOR_VERSION,
    ensure_synthetic_cell_dataset,
    generate_cell_video,
    main,
    write_synthetic_cell_dataset,
)
from cosinetrack.data.generated import case_seed


@pytest.fixture(scope="module")
def video() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return generate_cell_video(0)  # the defaults: 30 frames of 256 x 256


def check_tracks(labels: np.ndarray, tracks: np.ndarray) -> None:
    """CTC consistency of a label video with its (L, B, E, P) table."""
    n = len(tracks)
    assert tracks.shape == (n, 4) and n > 0
    np.testing.assert_array_equal(tracks[:, 0], np.arange(1, n + 1))  # ids 1..N, unique, sorted
    assert set(np.unique(labels).tolist()) == set(range(n + 1))  # every id is used, nothing else
    present = np.stack([np.isin(np.arange(1, n + 1), np.unique(frame)) for frame in labels], axis=1)  # (N, T)
    end = dict(zip(tracks[:, 0].tolist(), tracks[:, 2].tolist()))
    for lab, b, e, p in tracks.tolist():
        assert 0 <= b <= e < len(labels)
        frames = np.flatnonzero(present[lab - 1])
        np.testing.assert_array_equal(frames, np.arange(b, e + 1), err_msg=f"track {lab}")
        if p:
            assert p in end and end[p] < b, (lab, p)


def test_shapes_dtypes_and_determinism(video) -> None:
    images, labels, tracks = video
    assert images.shape == labels.shape == (30, 256, 256)
    assert images.dtype == np.uint16 and labels.dtype == np.uint16
    assert np.issubdtype(tracks.dtype, np.integer)
    again = generate_cell_video(0)
    for a, b in zip(video, again):
        np.testing.assert_array_equal(a, b)
    other = generate_cell_video(1)
    assert not np.array_equal(other[0], images) and not np.array_equal(other[1], labels)


def test_track_table_matches_labels(video) -> None:
    check_tracks(video[1], video[2])
    # other settings, including a small image, a fixed count and many divisions
    for seed, kwargs in ((3, {}), (4, {"num_cells": 20, "division_prob": 0.2}), (5, {"image_size": (64, 96)})):
        _, labels, tracks = generate_cell_video(seed, 15, **kwargs)
        check_tracks(labels, tracks)


def test_divisions(video) -> None:
    _, labels, tracks = video
    parents, counts = np.unique(tracks[tracks[:, 3] > 0, 3], return_counts=True)
    assert len(parents) >= 1 and counts.max() <= 2
    end = {int(lab): int(e) for lab, _, e, _ in tracks}
    n_pairs = 0
    for mother in parents[counts == 2]:
        e = end[int(mother)]
        daughters = tracks[tracks[:, 3] == mother]
        assert (daughters[:, 1] == e + 1).all()  # daughters start right after the mother ends
        m_mask = labels[e] == mother
        d_masks = [labels[e + 1] == d for d in daughters[:, 0]]
        m_center = np.argwhere(m_mask).mean(axis=0)
        d_centers = [np.argwhere(m).mean(axis=0) for m in d_masks]
        if not (m_mask.sum() > 100 and all(m.sum() > 0.3 * m_mask.sum() for m in d_masks)):
            continue  # cut by the border: skip the geometric checks
        n_pairs += 1
        # the daughters are smaller than the mother and lie on either side of her
        assert all(m.sum() < m_mask.sum() for m in d_masks)
        assert np.linalg.norm(d_centers[0] - d_centers[1]) > 4
        mid = (d_centers[0] + d_centers[1]) / 2
        assert np.linalg.norm(mid - m_center) < 0.6 * np.sqrt(m_mask.sum())
    assert n_pairs >= 1


def test_cells_enter_and_leave(video) -> None:
    _, labels, tracks = video
    t_n = len(labels)
    parents = set(tracks[:, 3].tolist())
    entered = tracks[(tracks[:, 1] > 0) & (tracks[:, 3] == 0)]
    left = [row for row in tracks if row[2] < t_n - 1 and row[0] not in parents]
    assert len(entered) >= 1 and len(left) >= 1
    # an entering nucleus first shows up at the border; a leaving one is last seen there
    for lab, b, e in [(r[0], r[1], None) for r in entered] + [(r[0], None, r[2]) for r in left]:
        mask = labels[b if b is not None else e] == lab
        assert mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any(), lab
    # nuclei touch each other: some pixel of one nucleus is 4-adjacent to another nucleus
    lab0 = labels.astype(np.int64)
    touching = (lab0[:, 1:] != lab0[:, :-1]) & (lab0[:, 1:] > 0) & (lab0[:, :-1] > 0)
    assert touching.any()


def test_image_content(video) -> None:
    images, labels, _ = video
    fg = images[labels > 0].astype(float)
    bg = images[ndi.binary_dilation(labels > 0, iterations=3, structure=np.ones((1, 3, 3))) == 0].astype(float)
    assert fg.mean() > bg.mean() + 100 and 50 < bg.mean() < 150
    assert bg.std() > 2  # noisy background
    clean, clean_labels, _ = generate_cell_video(0, 3, noise_scale=0.0)
    np.testing.assert_array_equal(clean_labels, labels[:3])  # the noise does not change the cells
    corner = clean[0, :8, :8].astype(float)
    assert clean_labels[0, :8, :8].max() == 0 and corner.std() < 2


def test_bad_arguments() -> None:
    for kwargs in ({"image_size": (32, 256)}, {"num_frames": 0}, {"division_prob": 1.5}, {"num_cells": (5, 2)}):
        with pytest.raises(ValueError):
            generate_cell_video(0, **kwargs)


def _mtimes(folder) -> dict[str, int]:
    return {
        os.path.join(root, f): os.stat(os.path.join(root, f)).st_mtime_ns
        for root, _, files in os.walk(folder)
        for f in files
    }


def _as_result(gt_tra: str, res: str) -> None:
    """Copy a TRA ground truth folder as a CTC result folder (maskTTT.tif + res_track.txt)."""
    os.makedirs(res)
    for f in os.listdir(gt_tra):
        dst = "res_track.txt" if f == "man_track.txt" else f.replace("man_track", "mask")
        shutil.copy(os.path.join(gt_tra, f), os.path.join(res, dst))


def test_writer_layout_validity_and_cache(tmp_path) -> None:
    out = tmp_path / "cells"
    kwargs = {"num_sequences": 2, "seed": 4, "image_size": (96, 128), "num_frames": 12, "division_prob": 0.15}
    seqs = write_synthetic_cell_dataset(out, **kwargs)
    assert [s["name"] for s in seqs] == ["01", "02"]
    assert sorted(os.listdir(tmp_path)) == ["cells"]  # no temporary folder left
    assert sorted(os.listdir(out)) == ["01", "01_GT", "02", "02_GT", "dataset.json"]
    data = json.loads((out / "dataset.json").read_text())
    gen = data["generator"]
    assert gen["module"] == "cosinetrack.apps.cell.synthetic" and gen["version"] == GENERATOR_VERSION
    assert gen["image_size"] == [96, 128] and gen["num_cells"] == [8, 15] and gen["division_prob"] == 0.15
    for i, seq in enumerate(seqs):
        name = seq["name"]
        assert seq["images"] == str(out / name) and seq["tra"] == str(out / f"{name}_GT" / "TRA")
        assert seq["seg"] == str(out / f"{name}_GT" / "SEG")
        assert seq["man_track"] == str(out / f"{name}_GT" / "TRA" / "man_track.txt")
        frames = [f"t{t:03d}.tif" for t in range(12)]
        assert sorted(os.listdir(seq["images"])) == frames
        assert sorted(os.listdir(seq["seg"])) == [f"man_seg{t:03d}.tif" for t in range(12)]
        tra_files = [f"man_track{t:03d}.tif" for t in range(12)] + ["man_track.txt"]
        assert sorted(os.listdir(seq["tra"])) == sorted(tra_files)
        assert gen["sequence_seeds"][i] == case_seed(4, i)
        images, labels, tracks = generate_cell_video(
            case_seed(4, i), 12, (96, 128), num_cells=(8, 15), division_prob=0.15
        )
        for t in (0, 11):
            np.testing.assert_array_equal(tifffile.imread(os.path.join(seq["images"], frames[t])), images[t])
            seg = tifffile.imread(os.path.join(seq["seg"], f"man_seg{t:03d}.tif"))
            assert seg.dtype == np.uint16
            np.testing.assert_array_equal(seg, labels[t])
            np.testing.assert_array_equal(tifffile.imread(os.path.join(seq["tra"], f"man_track{t:03d}.tif")), seg)
        lines = [[int(v) for v in line.split(" ")] for line in open(seq["man_track"]).read().splitlines()]
        np.testing.assert_array_equal(np.array(lines), tracks)
        assert data["sequences"][i]["num_tracks"] == len(tracks)

    # the written ground truth, read back as a result, is CTC-valid (and the check does catch errors)
    from ctc_metrics.scripts.validate import validate_sequence

    res = str(tmp_path / "res" / "01_RES")
    _as_result(seqs[0]["tra"], res)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert validate_sequence(res, threads=1) == {"Valid": 1}
    assert not [w for w in caught if "ctc_metrics" in w.filename], [str(w.message) for w in caught]
    table = np.loadtxt(os.path.join(res, "res_track.txt"), dtype=np.int64, ndmin=2)
    bad = table.copy()
    bad[0, 2] = 11 if bad[0, 2] < 11 else bad[0, 2] - 1  # claim a frame the mask does not have
    np.savetxt(os.path.join(res, "res_track.txt"), bad, fmt="%d")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert validate_sequence(res, threads=1) == {"Valid": 0}

    # cache hit: nothing rewritten
    before = _mtimes(out)
    assert write_synthetic_cell_dataset(out, **kwargs) == seqs
    assert _mtimes(out) == before
    # other parameters: refused unless overwrite; a folder the generator did not make: never touched
    with pytest.raises(FileExistsError, match="other parameters"):
        write_synthetic_cell_dataset(out, **{**kwargs, "num_sequences": 1})
    assert _mtimes(out) == before
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not made by"):
        write_synthetic_cell_dataset(foreign, num_sequences=1, image_size=(64, 64), num_frames=2, overwrite=True)
    assert (foreign / "keep.txt").read_text() == "mine"


def test_ensure_and_cli(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("COSINETRACK_CACHE", str(tmp_path / "cache"))
    params = {"num_sequences": 1, "seed": 2, "image_size": (64, 80), "num_frames": 4, "num_cells": 5}
    folder = ensure_synthetic_cell_dataset(**params)
    assert folder == str(tmp_path / "cache" / "synthetic_cells_v1_seed2_n1_64x80x4_c5-5_d0.03")
    before = _mtimes(folder)
    assert ensure_synthetic_cell_dataset(**params) == folder
    assert _mtimes(folder) == before  # cache hit
    other = ensure_synthetic_cell_dataset(tmp_path / "other", **params)
    assert other == str(tmp_path / "other" / os.path.basename(folder))
    with pytest.raises(TypeError, match="unknown"):
        ensure_synthetic_cell_dataset(frames=3)

    out = tmp_path / "cli"
    assert main(["--out", str(out), "--num-sequences", "1", "--frames", "4", "--seed", "2", "--size", "64", "80"]) == 0
    assert str(out) in capsys.readouterr().out
    assert json.loads((out / "dataset.json").read_text())["generator"]["num_frames"] == 4
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(out), "--frames", "5", "--size", "64", "80", "--num-sequences", "1"])
    assert exc.value.code == 2
    assert main(["--out", str(out), "--frames", "5", "--size", "64", "80", "--num-sequences", "1",
                 "--division-prob", "0.1", "--overwrite"]) == 0
    gen = json.loads((out / "dataset.json").read_text())["generator"]
    assert (gen["num_frames"], gen["division_prob"]) == (5, 0.1)
