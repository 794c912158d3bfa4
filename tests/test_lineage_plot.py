"""Lineage tree layout and figure (cosinetrack.viz.lineage)."""

from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np
import pytest

from cosinetrack.viz.lineage import MAX_LABELLED_TRACKS, lineage_tree_figure, lineage_tree_layout

# mother 1 with daughters 2, 3; daughter 2 divides into 4, 5; an independent root 6
TREE = np.array(
    [
        [1, 0, 4, 0],
        [2, 5, 9, 1],
        [3, 5, 14, 1],
        [4, 10, 14, 2],
        [5, 10, 12, 2],
        [6, 2, 14, 0],
    ]
)


def _collection(fig, gid: str):
    (ax,) = fig.axes
    found = [c for c in ax.collections if c.get_gid() == gid]
    assert len(found) == 1, gid
    return found[0]


def test_layout_of_a_hand_made_tree():
    rows = lineage_tree_layout(TREE)
    assert set(rows) == {1, 2, 3, 4, 5, 6}
    # daughters bracket their mother
    assert min(rows[2], rows[3]) < rows[1] < max(rows[2], rows[3])
    assert min(rows[4], rows[5]) < rows[2] < max(rows[4], rows[5])
    # leaves of a family get distinct, consecutive rows; the mother of two sits at their mean
    leaves = sorted(rows[k] for k in (3, 4, 5))
    assert np.allclose(np.diff(leaves), 1.0)
    assert rows[2] == pytest.approx((rows[4] + rows[5]) / 2)
    # the other root is drawn apart from the whole family (after it: it starts later than root 1)
    family = [rows[k] for k in (1, 2, 3, 4, 5)]
    assert rows[6] > max(family) + 1.0 - 1e-9
    assert len(set(rows.values())) == 6


def test_layout_orders_daughters_by_first_frame_and_ignores_row_order():
    shuffled = TREE[[5, 3, 0, 4, 2, 1]]
    assert lineage_tree_layout(shuffled) == lineage_tree_layout(TREE)
    rows = lineage_tree_layout([[1, 0, 3, 0], [2, 6, 8, 1], [3, 4, 8, 1]])
    assert rows[3] < rows[1] < rows[2]  # daughter 3 starts first, so it is drawn first (top)


def test_single_daughter_sits_on_the_mothers_row():
    rows = lineage_tree_layout([[1, 0, 3, 0], [2, 6, 8, 1]])
    assert rows[1] == rows[2]


def test_figure_draws_one_line_per_track_and_one_connector_per_link():
    fig = lineage_tree_figure(TREE, num_frames=15, title="seq 01")
    try:
        tracks = _collection(fig, "tracks")
        connectors = _collection(fig, "connectors")
        assert len(tracks.get_segments()) == 6
        assert len(connectors.get_segments()) == 4
        (ax,) = fig.axes
        assert sorted(t.get_text() for t in ax.texts) == ["1", "2", "3", "4", "5", "6"]
        assert ax.get_xlim() == (-0.5, 14.5)
        assert "seq 01" in ax.get_title() and "2 families" in ax.get_title() and "2 divisions" in ax.get_title()
        # connectors run from the mother's end to the daughter's start
        rows = lineage_tree_layout(TREE)
        segs = {tuple(map(tuple, s)) for s in connectors.get_segments()}
        assert ((4.0, rows[1]), (5.0, rows[2])) in segs
        # families have their own colors
        colors = tracks.get_colors()
        assert not np.allclose(colors[0], colors[-1])
        fig.canvas.draw()
    finally:
        plt.close(fig)


def test_empty_table_gives_a_figure_with_a_note():
    for empty in (np.zeros((0, 4), dtype=int), []):
        fig = lineage_tree_figure(empty, title="nothing")
        try:
            assert any("no tracks" in t.get_text() for t in fig.axes[0].texts)
            fig.canvas.draw()
        finally:
            plt.close(fig)
    assert lineage_tree_layout(np.zeros((0, 4), dtype=int)) == {}


def test_bad_shape_raises():
    with pytest.raises(ValueError):
        lineage_tree_layout(np.zeros((3, 3), dtype=int))


@pytest.mark.parametrize(
    "tracks",
    [
        [[1, 0, 5, 1], [2, 6, 9, 1]],  # self-parent
        [[1, 0, 5, 99], [2, 6, 9, 1]],  # parent not in the table
        [[1, 0, 5, 2], [2, 6, 9, 1], [3, 10, 12, 2]],  # 2-cycle with a daughter hanging off it
        [[1, 0, 5, 3], [2, 0, 5, 1], [3, 0, 5, 2]],  # 3-cycle
        [[1, 0, 5, 0], [1, 3, 7, 0], [2, 6, 9, 1]],  # duplicate label: the first row wins
    ],
)
def test_invalid_parents_become_roots_without_hanging(tracks):
    start = time.perf_counter()
    rows = lineage_tree_layout(tracks)
    assert set(rows) == {t[0] for t in tracks}
    fig = lineage_tree_figure(tracks)
    try:
        assert len(_collection(fig, "tracks").get_segments()) == len(rows)
    finally:
        plt.close(fig)
    assert time.perf_counter() - start < 2.0


def test_cycle_is_cut_at_the_earliest_track():
    rows = lineage_tree_layout([[1, 0, 5, 2], [2, 6, 9, 1], [3, 10, 12, 2]])
    # 1 (earliest) becomes the root, 2 stays its daughter, 3 stays 2's daughter: one family, one row
    assert rows[1] == rows[2] == rows[3]
    fig = lineage_tree_figure([[1, 0, 5, 2], [2, 6, 9, 1], [3, 10, 12, 2]])
    try:
        assert len(_collection(fig, "connectors").get_segments()) == 2
    finally:
        plt.close(fig)


def _random_forest(n: int, seed: int = 0) -> np.ndarray:
    """``n`` tracks: about a third are roots, the others a daughter (at most two each) of an earlier track."""
    rng = np.random.default_rng(seed)
    rows: list[list[int]] = []
    daughters: dict[int, int] = {}
    for label in range(1, n + 1):
        parent = int(rng.integers(1, label)) if label > 1 and rng.random() < 0.7 else 0
        if parent and daughters.get(parent, 0) >= 2:
            parent = 0
        b = rows[parent - 1][2] + 1 if parent else int(rng.integers(0, 100))
        daughters[parent] = daughters.get(parent, 0) + 1
        rows.append([label, b, b + int(rng.integers(0, 20)), parent])
    return np.array(rows)


def test_thousands_of_tracks_are_fast_and_unlabeled():
    tracks = _random_forest(2000)
    start = time.perf_counter()
    rows = lineage_tree_layout(tracks)
    assert time.perf_counter() - start < 1.0
    assert len(rows) == 2000
    start = time.perf_counter()
    fig = lineage_tree_figure(tracks, num_frames=120)
    try:
        assert time.perf_counter() - start < 2.0
        assert len(_collection(fig, "tracks").get_segments()) == 2000
        assert not fig.axes[0].texts
        assert _collection(fig, "tracks").get_linewidths()[0] < 1.0
    finally:
        plt.close(fig)


def test_max_tracks_keeps_ancestors():
    tracks = _random_forest(300, seed=1)
    fig = lineage_tree_figure(tracks, max_tracks=50)
    try:
        assert len(_collection(fig, "tracks").get_segments()) == 50
        assert "first 50 of 300" in fig.axes[0].get_title()
        assert len(fig.axes[0].texts) == 50 <= MAX_LABELLED_TRACKS
        # every drawn track's parent (when it has one) is drawn: connectors = tracks - families
        title = fig.axes[0].get_title()
        families = int(title.split(", ")[1].split()[0])
        assert len(_collection(fig, "connectors").get_segments()) == 50 - families
    finally:
        plt.close(fig)
