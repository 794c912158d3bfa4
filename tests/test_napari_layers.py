"""napari layer data of a CTC result (cosinetrack.apps.cell.napari), built headlessly without napari."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from cosinetrack.apps.cell.napari import ctc_napari_layers, view_ctc
from cosinetrack.apps.cell.synthetic import generate_cell_video, write_ctc_sequence
from cosinetrack.apps.cell.writer import write_ctc_result
from cosinetrack.errors import CosineTrackDataError


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic sequence ``01`` with divisions and its result ``01_RES`` (the ground truth as result)."""
    root = tmp_path_factory.mktemp("napari")
    images, labels, tracks = generate_cell_video(5, num_frames=8, image_size=(64, 72), num_cells=6, division_prob=0.5)
    write_ctc_sequence(root, "01", images, labels, tracks)
    write_ctc_result(root / "01_RES", labels, tracks)
    return root, images, labels, tracks


def test_layers_hold_image_labels_and_tracks_consistent_with_the_masks(result):
    root, images, labels, tracks = result
    assert (tracks[:, 3] > 0).any(), "the test data should hold divisions"
    layers = ctc_napari_layers(root / "01", root / "01_RES")
    assert [layer_type for _, _, layer_type in layers] == ["image", "labels", "tracks"]
    (image, image_kw, _), (masks, labels_kw, _), (points, tracks_kw, _) = layers

    assert image.shape == (8, 64, 72) and image.dtype == np.float32
    np.testing.assert_array_equal(image, images)
    assert image_kw["name"] == "01"
    assert masks.shape == image.shape and np.issubdtype(masks.dtype, np.unsignedinteger)
    np.testing.assert_array_equal(masks, labels)
    assert labels_kw["name"] == "01_RES labels"

    # tracks: one row per (track id, frame) present in the masks, at the label's centroid
    assert points.ndim == 2 and points.shape[1] == 4
    present = {(int(label), t) for t in range(8) for label in np.unique(labels[t]) if label}
    rows = [(int(i), int(t)) for i, t in points[:, :2]]
    assert len(rows) == len(present) and set(rows) == present
    assert rows == sorted(rows), "sorted by track id, then frame"
    for track_id, t, y, x in points:
        yy, xx = np.nonzero(labels[int(t)] == track_id)
        assert (y, x) == pytest.approx((yy.mean(), xx.mean()))
    assert tracks_kw["graph"] == {int(label): [int(parent)] for label, _, _, parent in tracks if parent}
    assert len(tracks_kw["features"]["area"]) == len(points)
    area = [int((labels[int(t)] == track_id).sum()) for track_id, t, _, _ in points]
    assert tracks_kw["features"]["area"].tolist() == area
    assert "napari" not in sys.modules or sys.modules["napari"] is None  # built without importing napari


def test_labels_and_tracks_only_and_bad_inputs(result, tmp_path):
    root, images, labels, tracks = result
    layers = ctc_napari_layers(None, root / "01_RES")
    assert [layer_type for _, _, layer_type in layers] == ["labels", "tracks"]
    write_ctc_sequence(tmp_path, "01", images, labels, tracks)
    write_ctc_sequence(tmp_path, "02", images, labels, tracks)
    with pytest.raises(CosineTrackDataError, match="2 sequences"):
        ctc_napari_layers(tmp_path, root / "01_RES")
    short = write_ctc_result(tmp_path / "short_RES", labels[:5], tracks_from(tracks, 5))
    with pytest.raises(CosineTrackDataError, match="do not match"):
        ctc_napari_layers(root / "01", short)
    empty = write_ctc_result(tmp_path / "empty_RES", np.zeros_like(labels))
    assert [layer_type for _, _, layer_type in ctc_napari_layers(root / "01", empty)] == ["image", "labels"]


def tracks_from(tracks: np.ndarray, num_frames: int) -> np.ndarray:
    """The track table of the first ``num_frames`` frames."""
    kept = tracks[tracks[:, 1] < num_frames].copy()
    kept[:, 2] = np.minimum(kept[:, 2], num_frames - 1)
    return kept


def test_view_ctc_adds_the_layers_to_a_viewer(result, monkeypatch):
    root, *_ = result

    class Recorder:
        def __init__(self):
            self.calls = []

        def __getattr__(self, name):
            return lambda data, **kwargs: self.calls.append((name, kwargs["name"]))

    viewer = view_ctc(root / "01", root / "01_RES", viewer=Recorder())
    assert viewer.calls == [("add_image", "01"), ("add_labels", "01_RES labels"), ("add_tracks", "01_RES tracks")]
    monkeypatch.setitem(sys.modules, "napari", None)  # napari not installed
    with pytest.raises(ImportError, match="pip install"):
        view_ctc(root / "01", root / "01_RES")
