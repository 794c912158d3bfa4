"""The strong classical cell baseline (``segment_nuclei_mad`` in ``benchmarks/bench_ctc_baseline.py``) on
synthetic frames with known disks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_ctc_baseline.py"


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("bench_ctc_baseline", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


segment_nuclei_mad = _load_benchmark().segment_nuclei_mad

SHAPE = (192, 256)


def synthetic_frame(disks, background=100.0, noise=5.0, seed=0):
    """Float32 frame: Gaussian noise around ``background``, disks ``(row, col, radius, intensity)`` on top.

    Returns the frame and the boolean mask of each disk (overlaps go to the later disk)."""
    rng = np.random.default_rng(seed)
    frame = rng.normal(background, noise, SHAPE).astype(np.float32)
    masks = []
    for row, col, radius, intensity in disks:
        mask = np.zeros(SHAPE, dtype=bool)
        mask[disk((row, col), radius, shape=SHAPE)] = True
        frame[mask] = intensity + rng.normal(0.0, noise, int(mask.sum()))
        masks.append(mask)
    return frame, masks


def iou(a, b):
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


def matches(obj, mask, margin=6):
    """``obj`` covers >= 90 % of ``mask`` and lies within ``margin`` px of it (the sigma = 2 smoothing
    and a threshold just above the background widen a sharp synthetic disk by a few pixels)."""
    near = ndi.distance_transform_edt(~mask) <= margin
    return np.logical_and(obj, mask).sum() >= 0.9 * mask.sum() and not np.logical_and(obj, ~near).any()


# (name, disks (row, col, radius, intensity), {kwargs}, expected disk indices found as objects)
TEST_CASE_ONE_DISK = ["one disk", [(96, 128, 20, 200.0)], {}, [0]]
TEST_CASE_TOUCHING = ["two touching disks are split", [(96, 110, 20, 200.0), (96, 146, 20, 200.0)], {}, [0, 1]]
TEST_CASE_TOUCHING_MERGED = [
    "min_distance above the center distance keeps them one object",
    [(96, 110, 20, 200.0), (96, 146, 20, 200.0)],
    {"min_distance": 50},
    None,  # one object covering both
]
TEST_CASE_SPECK = ["tiny speck removed", [(96, 80, 20, 200.0), (40, 200, 2, 200.0)], {}, [0]]
TEST_CASE_DIM_AND_BRIGHT = [
    "a dim and a bright nucleus both found",
    [(60, 60, 18, 130.0), (130, 190, 22, 250.0)],
    {},
    [0, 1],
]
TEST_CASE_DIM_BACKGROUND = ["dim noisy background only: no objects", [], {}, []]
TEST_CASE_SMALL_MIN_SIZE = ["min_size 10 keeps the speck", [(96, 80, 20, 200.0), (40, 200, 2, 200.0)],
                            {"min_size": 10}, [0, 1]]  # fmt: skip

CASES = [
    TEST_CASE_ONE_DISK,
    TEST_CASE_TOUCHING,
    TEST_CASE_TOUCHING_MERGED,
    TEST_CASE_SPECK,
    TEST_CASE_DIM_AND_BRIGHT,
    TEST_CASE_DIM_BACKGROUND,
    TEST_CASE_SMALL_MIN_SIZE,
]


@pytest.mark.parametrize(("name", "disks", "kwargs", "expected"), CASES, ids=[c[0] for c in CASES])
def test_segment_nuclei_mad_synthetic(name, disks, kwargs, expected):
    frame, masks = synthetic_frame(disks)
    labels = segment_nuclei_mad(frame, **kwargs)
    assert labels.shape == SHAPE and labels.dtype == np.int32
    ids = np.unique(labels[labels > 0])
    np.testing.assert_array_equal(ids, np.arange(1, ids.size + 1))  # sequential labels
    if expected is None:  # merged: one object covering the union of the disks
        assert ids.size == 1
        assert matches(labels == 1, np.logical_or.reduce(masks))
        return
    assert ids.size == len(expected), name
    for index in expected:  # each expected disk is one object of its own
        best = max(ids, key=lambda i: np.logical_and(labels == i, masks[index]).sum())
        score = iou(labels == best, masks[index])
        assert matches(labels == best, masks[index]), f"{name}: disk {index}, IoU {score:.2f}"


def test_segment_nuclei_mad_constant_and_integer_frames():
    assert segment_nuclei_mad(np.full(SHAPE, 7, dtype=np.uint16)).max() == 0  # MAD 0: nothing above
    frame, masks = synthetic_frame([(96, 128, 20, 200.0)])
    labels = segment_nuclei_mad(np.clip(frame, 0, 255).astype(np.uint8))
    assert labels.max() == 1 and matches(labels == 1, masks[0])


BAD = [
    ["3-D frame", np.zeros((2, 8, 8)), {}],
    ["empty frame", np.zeros((0, 8)), {}],
    ["complex frame", np.zeros((8, 8), dtype=np.complex64), {}],
    ["NaN in frame", np.full((8, 8), np.nan), {}],
    ["negative sigma", np.zeros((8, 8)), {"sigma": -1.0}],
    ["negative k", np.zeros((8, 8)), {"k": -0.5}],
    ["fractional min_size", np.zeros((8, 8)), {"min_size": 10.5}],
    ["negative min_size", np.zeros((8, 8)), {"min_size": -1}],
    ["min_distance 0", np.zeros((8, 8)), {"min_distance": 0}],
]


@pytest.mark.parametrize(("name", "frame", "kwargs"), BAD, ids=[c[0] for c in BAD])
def test_segment_nuclei_mad_rejects_bad_input(name, frame, kwargs):
    with pytest.raises(ValueError):
        segment_nuclei_mad(frame, **kwargs)
