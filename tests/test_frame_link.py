"""``tracking#link``: a pair's first frame matched to the previous finalised frame (``"frame"``) or to the
previous pair's second frame (``"pair"``, the paper's), on drawn boxes with an unambiguous answer."""

from __future__ import annotations

import numpy as np
import pytest

from cosinetrack.errors import CosineTrackConfigError
from cosinetrack.tracking import LINKS, TrackingSettings
from cosinetrack.tracking.pair_tracker import PairTracker, check_tracking_options, track_pairs

H = W = 40
BOXES = {"A": (5, 15, 5, 15), "B": (5, 15, 20, 30), "C": (25, 35, 25, 35)}  # y0, y1, x0, x1


def frame(**labels: int) -> np.ndarray:
    """``(H, W)`` with each named box drawn in its label (``frame(A=1, B=2)``)."""
    out = np.zeros((H, W), dtype=np.int64)
    for name, value in labels.items():
        y0, y1, x0, x1 = BOXES[name]
        out[y0:y1, x0:x1] = value
    return out


def pair(first: dict[str, int], second: dict[str, int]) -> np.ndarray:
    return np.stack([frame(**first), frame(**second)])


def ids_of(labels: np.ndarray, name: str) -> list[int]:
    """The label of box ``name`` in every frame of ``labels`` ``(T, H, W)`` (0 where it is absent)."""
    y0, y1, x0, x1 = BOXES[name]
    return [int(np.bincount(f[y0:y1, x0:x1].ravel()).argmax()) for f in labels]


def run(pairs: list[np.ndarray], link: str) -> np.ndarray:
    labels, _ = track_pairs(pairs, link=link, min_track_length=1)
    return labels


# a pair whose clustering swaps two static cells between its frames (one label on A in frame t and on B in
# frame t + 1): the ids the pair carries over follow the swap; the frame's IoU does not
SWAP_FIRST = [pair({"A": 1, "B": 2}, {"A": 2, "B": 1}), pair({"A": 3, "B": 4}, {"A": 3, "B": 4})]
SWAP_LAST = [pair({"A": 1, "B": 2}, {"A": 1, "B": 2}), pair({"A": 3, "B": 4}, {"A": 4, "B": 3})]


@pytest.mark.parametrize("pairs", [SWAP_FIRST, SWAP_LAST], ids=["swap in the first pair", "swap in the last pair"])
def test_frame_link_keeps_ids_on_cells_where_the_pair_swaps_them(pairs):
    paired = run(pairs, "pair")
    assert ids_of(paired, "A")[0] != ids_of(paired, "A")[-1]  # the paper's link follows the clustering's swap
    framed = run(pairs, "frame")
    assert len(set(ids_of(framed, "A"))) == 1 and len(set(ids_of(framed, "B"))) == 1
    assert ids_of(framed, "A")[0] != ids_of(framed, "B")[0]


def test_frame_link_falls_back_to_the_pair_for_a_cell_that_moved_without_overlap():
    # A jumps to C's place (no overlap with where it was): only the pair's joint clustering links the two
    pairs = [pair({"A": 1}, {"C": 1}), pair({"C": 2}, {"C": 2})]
    for link in LINKS:
        labels = run(pairs, link)
        assert ids_of(labels, "A")[0] == ids_of(labels, "C")[1] == ids_of(labels, "C")[2] != 0, link


def test_pair_link_to_a_track_the_frame_gave_to_another_instance_starts_a_new_track():
    # the pair links A (frame 0) to a new cell C (frame 1) and calls A in frame 1 another instance; the frame's
    # IoU gives A its id back, so C may not have it too
    pairs = [pair({"A": 1}, {"A": 5, "C": 1}), pair({"A": 7, "C": 8}, {"A": 7, "C": 8})]
    tracker = PairTracker(link="pair")
    raw = np.stack([tracker.update(p) for p in pairs] + [tracker.finish()])
    assert ids_of(raw, "C")[1] == ids_of(raw, "A")[0]  # the paper's link: A's raw track id jumps to C
    framed = run(pairs, "frame")
    a, c = ids_of(framed, "A"), ids_of(framed, "C")
    assert len(set(a)) == 1 and c[1] == c[2] not in (0, a[0])


def test_frame_link_changes_nothing_where_the_pairs_agree():
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(4):
        a, b, c = (int(v) for v in rng.choice(np.arange(1, 100), size=3, replace=False))  # unrelated across pairs
        pairs.append(pair({"A": a, "B": b, "C": c}, {"A": a, "B": b, "C": c}))
    np.testing.assert_array_equal(run(pairs, "pair"), run(pairs, "frame"))


def test_streaming_frame_link_returns_one_final_frame_per_pair():
    tracker = PairTracker(link="frame")
    out = [tracker.update(p) for p in SWAP_FIRST] + [tracker.finish()]
    assert [f.shape for f in out] == [(H, W)] * 3 and tracker.num_frames == 3
    assert tracker.finish() is None


@pytest.mark.parametrize("value", ["frames", "Pair", "", None, 1])
def test_bad_link_names_the_option(value):
    with pytest.raises(ValueError, match="link"):
        PairTracker(link=value)
    with pytest.raises(CosineTrackConfigError, match="tracking.*link"):
        check_tracking_options({"link": value}, {})
    assert TrackingSettings().link == "pair"  # the paper's stays the library default
