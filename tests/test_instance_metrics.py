"""CVPPP instance metrics on hand-made label images whose scores are worked out in the comments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from cosinetrack.metrics.instances import (
    InstanceSegmentationMetrics,
    abs_difference_in_count,
    best_dice,
    difference_in_count,
    foreground_dice,
    instance_scores,
    symmetric_best_dice,
)


def _gt() -> np.ndarray:
    """4 x 6 image with two leaves: leaf 1 = 8 px (rows 0-1, cols 0-3), leaf 2 = 4 px (rows 2-3, cols 4-5)."""
    gt = np.zeros((4, 6), dtype=np.int64)
    gt[0:2, 0:4] = 1
    gt[2:4, 4:6] = 2
    return gt


def test_identical():
    gt = _gt()
    pred = gt * 7  # other ids, same partition: ids 7 and 14
    assert best_dice(gt, pred) == 1.0
    assert symmetric_best_dice(gt, pred) == 1.0
    assert difference_in_count(gt, pred) == 0
    assert foreground_dice(gt, pred) == 1.0


def test_leaf_split_in_two_halves():
    gt = _gt()
    pred = gt.copy()
    pred[0:2, 2:4] = 3  # leaf 1 split into two 4 px halves (ids 1 and 3)
    # best_dice(gt, pred): leaf 1 (8 px) vs half (4 px), overlap 4: 2*4/(8+4) = 2/3; leaf 2: 1
    #   -> (2/3 + 1) / 2 = 5/6
    assert best_dice(gt, pred) == pytest.approx(5 / 6)
    # best_dice(pred, gt): each half vs leaf 1: 2*4/(4+8) = 2/3 (twice); leaf 2: 1 -> (2/3 + 2/3 + 1) / 3 = 7/9
    assert best_dice(pred, gt) == pytest.approx(7 / 9)
    assert symmetric_best_dice(gt, pred) == pytest.approx(7 / 9)  # min(5/6, 7/9)
    assert difference_in_count(gt, pred) == 1  # 3 predicted - 2 true
    assert abs_difference_in_count(gt, pred) == 1
    assert foreground_dice(gt, pred) == 1.0  # same foreground


def test_missed_leaf():
    gt = _gt()
    pred = np.where(gt == 2, 0, gt)  # leaf 2 predicted as background
    # best_dice(gt, pred) = (1 + 0) / 2 = 1/2; best_dice(pred, gt) = 1 (its only leaf is perfect)
    assert best_dice(gt, pred) == pytest.approx(0.5)
    assert best_dice(pred, gt) == 1.0
    assert symmetric_best_dice(gt, pred) == pytest.approx(0.5)
    assert difference_in_count(gt, pred) == -1
    assert abs_difference_in_count(gt, pred) == 1
    # foreground: gt 12 px, pred 8 px, overlap 8 -> 2*8/20 = 0.8
    assert foreground_dice(gt, pred) == pytest.approx(0.8)


def test_extra_leaf():
    gt = _gt()
    pred = gt.copy()
    pred[3, 0:2] = 5  # a 2 px false leaf on the background
    # best_dice(gt, pred) = 1; best_dice(pred, gt) = (1 + 1 + 0) / 3 = 2/3
    assert symmetric_best_dice(gt, pred) == pytest.approx(2 / 3)
    assert difference_in_count(gt, pred) == 1
    # foreground: gt 12, pred 14, overlap 12 -> 24/26 = 12/13
    assert foreground_dice(gt, pred) == pytest.approx(12 / 13)


def test_shifted_leaf_partial_overlap():
    gt = np.zeros((3, 5), dtype=np.int64)
    gt[0, 0:4] = 1  # 4 px
    pred = np.zeros_like(gt)
    pred[0, 1:5] = 2  # 4 px, overlap 3 -> Dice 6/8
    pred[2, 0] = 3  # 1 px, no overlap
    # best_dice(gt, pred) = 3/4; best_dice(pred, gt) = (3/4 + 0) / 2 = 3/8
    assert best_dice(gt, pred) == pytest.approx(0.75)
    assert symmetric_best_dice(gt, pred) == pytest.approx(0.375)
    # foreground: gt 4, pred 5, overlap 3 -> 6/9
    assert foreground_dice(gt, pred) == pytest.approx(2 / 3)


def test_empty_cases_follow_cvppp():
    gt = _gt()
    empty = np.zeros_like(gt)
    # CVPPP: a label image without any instance scores 0 ("trivial solution"), whatever the other holds
    assert best_dice(empty, gt) == 0.0
    assert best_dice(gt, empty) == 0.0
    assert symmetric_best_dice(gt, empty) == 0.0
    assert difference_in_count(gt, empty) == -2
    assert foreground_dice(gt, empty) == 0.0  # 2*0 / (12 + 0)
    assert symmetric_best_dice(empty, empty) == 0.0
    assert foreground_dice(empty, empty) == 0.0
    assert symmetric_best_dice(empty, empty, both_empty=1.0) == 1.0
    assert foreground_dice(empty, empty, both_empty=1.0) == 1.0


def test_ignore_label_is_background_and_inputs():
    gt = _gt()
    gt_ignore = np.where(gt == 0, -1, gt)  # "no label" everywhere outside the leaves
    pred = _gt()
    assert instance_scores(gt_ignore, pred) == instance_scores(gt, pred)
    assert symmetric_best_dice(torch.as_tensor(gt), torch.as_tensor(pred, dtype=torch.int32)) == 1.0
    assert foreground_dice(gt.astype(np.float32), pred) == 1.0
    with pytest.raises(ValueError, match="same shape"):
        best_dice(gt, gt[:, :3])
    with pytest.raises(ValueError, match="integer"):
        best_dice(gt + 0.5, gt)


def test_instance_scores_matches_single_functions():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 6, size=(20, 30))
    pred = rng.integers(-1, 9, size=(20, 30))
    s = instance_scores(gt, pred)
    assert s["sbd"] == pytest.approx(symmetric_best_dice(gt, pred))
    assert s["bd_gt_pred"] == pytest.approx(best_dice(gt, pred))
    assert s["bd_pred_gt"] == pytest.approx(best_dice(pred, gt))
    assert s["fg_dice"] == pytest.approx(foreground_dice(gt, pred))
    assert s["dic"] == difference_in_count(gt, pred) == 8 - 5
    # brute force best Dice: loop over the instance pairs (small here)
    brute = np.mean(
        [
            max(2 * np.sum((gt == i) & (pred == j)) / (np.sum(gt == i) + np.sum(pred == j)) for j in range(1, 9))
            for i in range(1, 6)
        ]
    )
    assert s["bd_gt_pred"] == pytest.approx(brute)


def test_ignite_metric_on_engine():
    gt = _gt()
    split = gt.copy()
    split[0:2, 2:4] = 3  # SBD 7/9, DiC +1, FG Dice 1 (see test_leaf_split_in_two_halves)
    missed = np.where(gt == 2, 0, gt)  # SBD 1/2, DiC -1, FG Dice 0.8 (see test_missed_leaf)
    batches = [
        {"pred": torch.as_tensor(np.stack([gt, split])), "label": torch.as_tensor(np.stack([gt, gt]))},  # (B, H, W)
        {"pred": torch.as_tensor(missed)[None, None], "label": torch.as_tensor(gt)[None, None]},  # (B, 1, H, W)
    ]
    engine = Engine(lambda e, batch: batch)
    metric = InstanceSegmentationMetrics()
    metric.attach(engine, "leaf")
    engine.run(batches, max_epochs=1)
    m = engine.state.metrics
    # per image SBD: 1, 7/9, 1/2 -> mean (18/18 + 14/18 + 9/18) / 3 = 41/54
    assert m["leaf"] == pytest.approx(41 / 54)
    assert m["leaf_sbd"] == pytest.approx(41 / 54)
    assert m["leaf_sbd_std"] == pytest.approx(np.std([1, 7 / 9, 1 / 2]))
    assert m["leaf_dic"] == pytest.approx(0.0)  # (0 + 1 - 1) / 3
    assert m["leaf_abs_dic"] == pytest.approx(2 / 3)  # (0 + 1 + 1) / 3
    assert m["leaf_fg_dice"] == pytest.approx((1 + 1 + 0.8) / 3)
    assert m["leaf_fg_dice_std"] == pytest.approx(np.std([1, 1, 0.8]))
    assert [c["n_pred"] for c in engine.state.case_metrics] == [2, 3, 1]
    assert metric.compute() == pytest.approx(41 / 54)
    metric.reset()
    assert np.isnan(metric.compute())
