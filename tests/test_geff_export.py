"""GEFF export of CTC results (cosinetrack.apps.cell.geff), read back with geff's own reader."""

from __future__ import annotations

import json
import os
from pathlib import Path

import geff
import numpy as np
import pytest
from geff.validate.data import ValidationConfig
from skimage.measure import regionprops

from cosinetrack.apps.cell.geff import ctc_result_folders, ctc_result_graph, export_geff_for_results, write_ctc_geff
from cosinetrack.apps.cell.layout import RES_TRACK
from cosinetrack.apps.cell.reader import read_ctc_label, read_man_track
from cosinetrack.apps.cell.synthetic import generate_cell_video
from cosinetrack.apps.cell.writer import write_ctc_result, write_track_table
from cosinetrack.errors import CosineTrackDataError

REPO_ROOT = Path(__file__).resolve().parents[1]


def _result(folder: Path, name: str = "01_RES", seed: int = 3) -> Path:
    """A synthetic CTC result with divisions (12 frames of 64 x 64)."""
    _, labels, tracks = generate_cell_video(seed, num_frames=12, image_size=(64, 64), num_cells=6, division_prob=0.5)
    return Path(write_ctc_result(folder / name, labels, tracks))


def _expected(res_dir: Path) -> tuple[dict, set]:
    """Nodes ``{(t, label): regionprops}`` from the masks and edges ``{((t, L), (t', L'))}`` from res_track.txt."""
    nodes = {}
    for path in sorted(res_dir.glob("mask*.tif")):
        t = int(path.stem[4:])
        for region in regionprops(read_ctc_label(path)):
            nodes[(t, region.label)] = region
    tracks = read_man_track(res_dir / RES_TRACK).tolist()
    last = {label: end for label, _, end, _ in tracks}
    edges = set()
    for label, begin, end, parent in tracks:
        edges |= {((t, label), (t + 1, label)) for t in range(begin, end)}
        if parent:
            edges.add(((last[parent], parent), (begin, label)))
    return nodes, edges


def test_geff_holds_the_nodes_and_edges_of_the_ctc_result(tmp_path):
    res_dir = _result(tmp_path)
    nodes, edges = _expected(res_dir)
    tracks = read_man_track(res_dir / RES_TRACK)
    assert (tracks[:, 3] > 0).any(), "the test data should hold divisions"

    (out,) = export_geff_for_results(ctc_result_folders(tmp_path))
    assert out == str(tmp_path / "01_RES.geff") and os.path.isdir(out)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]

    config = ValidationConfig(graph=True, lineage=True, tracklet=True)
    graph, metadata = geff.read(out, data_validation=config)
    assert graph.is_directed() and metadata.directed
    key = {n: (data["t"], data["track_id"]) for n, data in graph.nodes(data=True)}
    assert len(key) == len(set(key.values())), "one node per (frame, label)"
    assert set(key.values()) == set(nodes)
    for t in range(12):  # nodes per frame = labels per mask
        in_mask = np.unique(read_ctc_label(res_dir / f"mask{t:03d}.tif"))
        assert sum(1 for tt, _ in key.values() if tt == t) == int((in_mask > 0).sum())
    for n, data in graph.nodes(data=True):
        region = nodes[key[n]]
        assert data["area"] == region.area
        assert data["y"] == pytest.approx(region.centroid[0]) and data["x"] == pytest.approx(region.centroid[1])
    assert {(key[u], key[v]) for u, v in graph.edges} == edges
    assert graph.number_of_edges() == len(edges)

    # lineage_id = root ancestor; metadata describe axes, tracklets and lineages
    parent = {int(row[0]): int(row[3]) for row in tracks}
    for _, data in graph.nodes(data=True):
        root = data["track_id"]
        while parent[root]:
            root = parent[root]
        assert data["lineage_id"] == root
    assert [(a.name, a.type, a.unit) for a in metadata.axes] == [
        ("t", "time", "frame"), ("y", "space", "pixel"), ("x", "space", "pixel")
    ]
    assert metadata.track_node_props == {"tracklet": "track_id", "lineage": "lineage_id"}
    assert metadata.extra["cosinetrack"]["shape"] == [12, 64, 64]


def test_export_is_atomic_and_refuses_to_replace_without_overwrite(tmp_path):
    res_dir = _result(tmp_path)
    out = write_ctc_geff(res_dir, tmp_path / "lineage.geff")
    stamp = os.stat(Path(out) / ".zattrs").st_mtime_ns
    with pytest.raises(FileExistsError):
        write_ctc_geff(res_dir, out)
    assert os.stat(Path(out) / ".zattrs").st_mtime_ns == stamp
    write_ctc_geff(res_dir, out, overwrite=True)
    graph, _ = geff.read(out)
    assert graph.number_of_nodes() == ctc_result_graph(res_dir).num_nodes
    assert sorted(os.listdir(tmp_path)) == ["01_RES", "lineage.geff"]  # no temporary left
    with pytest.raises(CosineTrackDataError, match="inside"):
        write_ctc_geff(res_dir, res_dir / "graph.geff")
    assert not (res_dir / "graph.geff").exists()


def test_inconsistent_result_is_refused_naming_the_file(tmp_path):
    res_dir = _result(tmp_path)
    tracks = read_man_track(res_dir / RES_TRACK)
    tracks[0, 2] += 1  # track 1 claims one frame more than its masks hold
    write_track_table(res_dir / RES_TRACK, tracks)
    with pytest.raises(CosineTrackDataError, match=RES_TRACK):
        write_ctc_geff(res_dir)
    tracks[0, 2] -= 1
    lone = next(i for i, (label, _, _, _) in enumerate(tracks.tolist()) if label not in tracks[:, 3])
    first = int(tracks[lone, 1])
    write_track_table(res_dir / RES_TRACK, np.delete(tracks, lone, axis=0))  # a label drawn but in no track
    with pytest.raises(CosineTrackDataError, match=f"mask{first:03d}.tif"):
        write_ctc_geff(res_dir)
    assert sorted(os.listdir(tmp_path)) == ["01_RES"]


def test_empty_result_gives_an_empty_graph(tmp_path):
    res_dir = write_ctc_result(tmp_path / "02_RES", np.zeros((3, 64, 64), np.uint16))
    graph, metadata = geff.read(write_ctc_geff(res_dir))
    assert graph.number_of_nodes() == 0 and graph.number_of_edges() == 0
    assert [a.name for a in metadata.axes] == ["t", "y", "x"]


def test_cell_inference_bundle_exports_geff_when_asked(tmp_path):
    """bundles/cell/inference.json passes --export_geff to the tracker, which exports what it wrote."""
    _result(tmp_path, "01_RES", seed=3)
    _result(tmp_path, "02_RES", seed=4)
    with open(REPO_ROOT / "bundles/cell/inference.json") as f:
        inference = json.load(f)
    assert inference["export_geff"] is False
    (line,) = [e for e in inference["inference"] if "export_geff" in e]
    assert "@tracker.track_folder(" in line and len(line) < 120

    def run(flag):  # what VideoTracker.track_folder does with the folders it wrote
        return export_geff_for_results(ctc_result_folders(tmp_path), flag)

    for off in (False, "false", "False", "0"):  # the command line gives --export_geff false as "false"
        assert run(off) == []
    assert not list(tmp_path.glob("*.geff"))
    with pytest.raises(ValueError, match="expected true or false"):
        run("maybe")
    written = run("true")
    assert written == [str(tmp_path / "01_RES.geff"), str(tmp_path / "02_RES.geff")]
    for out, res in zip(written, ("01_RES", "02_RES")):
        assert geff.read(out)[0].number_of_nodes() == ctc_result_graph(tmp_path / res).num_nodes
