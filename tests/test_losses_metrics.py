"""Cross-entropy and Dice + cross-entropy with sparse labels on both stacks; IoU metrics on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cosinetrack.losses.cross_entropy import ClipCrossEntropyLoss
from cosinetrack.losses.dice_ce import ClipDiceCELoss
from cosinetrack.losses.stacked import StackedLoss
from cosinetrack.metrics.iou import case_iou, central_slices, class_iou, summarize


def test_clip_cross_entropy_ignores_unlabeled_pixels():
    logits = torch.randn(2, 3, 4, 5, 6)  # (B, T, K, H, W)
    target = torch.randint(0, 4, (2, 3, 5, 6))
    target[:, 1] = -1
    loss = ClipCrossEntropyLoss()(logits, target)
    keep = target != -1
    ref = F.cross_entropy(logits.permute(0, 1, 3, 4, 2)[keep], target[keep])
    torch.testing.assert_close(loss, ref)


def test_clip_cross_entropy_all_unlabeled_is_zero_with_gradient():
    logits = torch.randn(1, 2, 3, 4, 4, requires_grad=True)
    loss = ClipCrossEntropyLoss()(logits, torch.full((1, 2, 4, 4), -1))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all()


def test_stacked_loss_sums_over_stacks():
    a, b = torch.randn(1, 2, 3, 4, 4), torch.randn(1, 2, 3, 4, 4)
    t = torch.randint(0, 3, (1, 2, 4, 4))
    ce = ClipCrossEntropyLoss()
    torch.testing.assert_close(StackedLoss(ce)((a, b), t), ce(a, t) + ce(b, t))


def _dice_by_hand(logits, target, include_background):
    """Mean over classes of 1 - 2|P∩G| / (|P| + |G|) on the labeled pixels, pooled over the batch."""
    keep = target != -1
    probs = torch.softmax(logits.flatten(0, 1), 1).movedim(1, -1)[keep.flatten(0, 1)]
    onehot = F.one_hot(target[keep], logits.shape[2]).float()
    first = 0 if include_background else 1
    terms = [
        1 - (2 * (probs[:, c] * onehot[:, c]).sum() + 1e-5) / (probs[:, c].sum() + onehot[:, c].sum() + 1e-5)
        for c in range(first, logits.shape[2])
    ]
    return torch.stack(terms).mean()


@pytest.mark.parametrize("include_background", [False, True])
@pytest.mark.parametrize("weights", [(1.0, 1.0), (0.5, 2.0), (1.0, 0.0)])
def test_clip_dice_ce_is_dice_plus_ce_on_labeled_pixels(include_background, weights):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, 6)  # (B, T, K, H, W)
    target = torch.randint(0, 4, (2, 3, 5, 6))
    target[:, 1] = -1
    target[0, 0, :2] = -1
    loss = ClipDiceCELoss(*weights, include_background=include_background)(logits, target)
    ref = weights[0] * _dice_by_hand(logits, target, include_background)
    ref = ref + weights[1] * ClipCrossEntropyLoss()(logits, target)
    torch.testing.assert_close(loss, ref)


def test_clip_dice_ce_all_unlabeled_is_zero_with_gradient():
    logits = torch.randn(1, 2, 3, 4, 4, requires_grad=True)
    loss = ClipDiceCELoss()(logits, torch.full((1, 2, 4, 4), -1))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize(
    "kwargs, problem",
    [({"lambda_dice": -1}, "lambda_dice must be a number >= 0"), ({"lambda_dice": 0, "lambda_ce": 0}, "both 0")],
)
def test_clip_dice_ce_checks_its_weights(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        ClipDiceCELoss(**kwargs)


def test_clip_dice_ce_names_classes_out_of_range():
    with pytest.raises(ValueError, match=r"target classes must lie in \[0, 3\)"):
        ClipDiceCELoss()(torch.randn(1, 3, 4, 4), torch.full((1, 4, 4), 5))


def test_class_iou_by_hand():
    gt = np.array([[1, 1, 0, 0]])
    pred = np.array([[1, 0, 1, 0]])
    assert class_iou(pred, gt, 1) == 1 / 3  # |{0}| / |{0,1,2}|
    assert np.isnan(class_iou(np.zeros_like(gt), np.zeros_like(gt), 2))
    # unlabeled pixels are not counted even if predicted
    assert class_iou(np.array([[1, 1]]), np.array([[1, -1]]), 1) == 1.0


def test_central_slices_pick_middle_of_slices_with_both_classes():
    label = np.zeros((9, 1, 4, 4), int)
    for z in range(2, 8):  # slices 2..7 show both classes
        label[z, 0, 0, 0], label[z, 0, 1, 1] = 1, 2
    assert central_slices(label, [1, 2], 3).tolist() == [3, 4, 5]
    assert central_slices(label[:2], [1, 2], 3).tolist() == [0, 1]


def test_case_iou_and_summary():
    gt = np.zeros((1, 1, 2, 2), int)
    gt[0, 0, 0] = 1
    gt[0, 0, 1] = 2
    perfect = case_iou(gt, gt, {"myo": 1, "cav": 2})
    assert perfect == {"myo": 1.0, "cav": 1.0}
    s = summarize([{"myo": 1.0}, {"myo": 0.5}], ["myo"])
    assert s["myo"] == 0.75 and s["myo_std"] == 0.25
