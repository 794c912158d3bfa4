"""Data-set presets (paper values, canvas conversion) and the time/sequence split of annotated videos."""

from __future__ import annotations

import pytest

from cosinetrack.apps.cell.datasets import split_video_frames
from cosinetrack.apps.cell.presets import clustering_parameters, ctc_preset, is_fluorescence
from cosinetrack.apps.cell.sequence import CTCSequence


def test_preset_by_name_by_folder_and_default():
    assert ctc_preset("Fluo-N2DL-HeLa")["r_N"] == 25
    assert ctc_preset(None, "/data/Fluo-N2DH-SIM+/01")["name"] == "Fluo-N2DH-SIM+"  # a sequence folder
    assert ctc_preset(None, "/data/Fluo-C2DL-MSC")["r_N"] == 150
    assert ctc_preset(None, "/data/my_videos")["name"] == "default"
    with pytest.raises(ValueError, match="known presets"):
        ctc_preset("Fluo-Unknown")


def test_clustering_parameters_convert_from_the_reference_canvas():
    sim = ctc_preset("Fluo-N2DH-SIM+")  # m_pts 100, c 0.001 on 256 x 256
    assert clustering_parameters(sim, (256, 256)) == {"min_samples": 100, "coordinate_scale": 0.001}
    half = clustering_parameters(sim, (128, 128), max_points=5)
    assert half["min_samples"] == 25 and half["coordinate_scale"] == pytest.approx(0.002) and half["max_points"] == 5
    # tiles at native resolution: a 512 x 512 frame would be halved to fit 256 x 256
    tiled = clustering_parameters(sim, (128, 128), frame_size=(512, 512), resolution="tiled")
    assert tiled["min_samples"] == 400 and tiled["coordinate_scale"] == pytest.approx(0.0005)
    with pytest.raises(ValueError, match="frame_size"):
        clustering_parameters(sim, (128, 128), resolution="tiled")


@pytest.mark.parametrize(
    "size, frame_size, resolution, min_size, min_cluster_size",
    [((256, 256), None, "scaled", 25.0, 40), ((128, 128), None, "scaled", 6.25, 10),
     ((128, 128), (512, 512), "tiled", 100.0, 160)],
)  # fmt: skip
def test_clustering_parameters_convert_t_size_and_min_cluster_size(
    size, frame_size, resolution, min_size, min_cluster_size
):
    """``min_size`` (t_size) and ``min_cluster_size`` of the ``clustering_options`` count pixels of the
    reference canvas, as m_pts does; other options pass through."""
    sim = ctc_preset("Fluo-N2DH-SIM+")
    out = clustering_parameters(sim, size, frame_size, resolution, min_size=25, min_cluster_size=40, mode="fast")
    assert out["min_size"] == pytest.approx(min_size) and out["min_cluster_size"] == min_cluster_size
    assert out["mode"] == "fast"


def _seq(name, n):
    return CTCSequence(name, "/data", f"/data/{name}", frames=range(n))


def test_split_holds_out_the_last_frames_of_every_sequence():
    train, val = split_video_frames([_seq("01", 65), _seq("02", 30)], "-15:")
    assert [p.name for p in train] == ["01[0:50]", "02[0:15]"]
    assert [p.name for p in val] == ["01[50:65]", "02[15:30]"]
    assert max(train[0].frames) < min(val[0].frames)


def test_split_by_sequence_and_errors():
    train, val = split_video_frames([_seq("01", 10), _seq("02", 10)], None, ["02"])
    assert [p.name for p in train] == ["01[0:10]"] and [p.name for p in val] == ["02[0:10]"]
    with pytest.raises(ValueError, match="not found"):
        split_video_frames([_seq("01", 10)], None, ["03"])
    with pytest.raises(ValueError, match="leaves"):
        split_video_frames([_seq("01", 10)], ":")  # everything held out: nothing to train on


@pytest.mark.parametrize(
    "preset, fluorescence",
    [
        ({"name": "Fluo-N2DH-SIM+"}, True),
        ({"name": "Fluo-N2DH-GOWT1"}, True),
        ({"name": "DIC-C2DH-HeLa"}, False),
        ({"name": "PhC-C2DH-U373"}, False),
        ({"name": "BF-C2DL-HSC"}, False),
        ({"name": "default"}, True),  # the synthetic default and unknown folders: fluorescence-like
        ({}, True),
        ({"name": "Fluo-N2DH-SIM++Fluo-N2DH-GOWT1"}, True),  # a joint preset
        ({"name": "Fluo-N2DH-GOWT1+PhC-C2DH-U373"}, False),  # any transmitted-light part
    ],
)
def test_is_fluorescence_by_the_ctc_name_prefix(preset, fluorescence):
    assert is_fluorescence(preset) is fluorescence
