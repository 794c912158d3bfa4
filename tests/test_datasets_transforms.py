"""Splits, clip datasets and the augmentation pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cosinetrack.apps.lv_mri.nifti import IGNORE_LABEL
from cosinetrack.data.clips import ClipDataset
from cosinetrack.data.splits import split_cases
from cosinetrack.transforms.augment import clip_eval_transforms, clip_train_transforms
from cosinetrack.transforms.spatial import fit_to_size, undo_fit


def _case(name, z=1, t=6, h=20, w=28, labeled=None):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    image = rng.random((z, t, h, w)).astype(np.float32)
    label = rng.integers(0, 3, (z, t, h, w))
    if labeled is not None:
        label[:, [k for k in range(t) if k not in labeled]] = IGNORE_LABEL
    return {"name": name, "image": image, "label": label}


def test_kfold_split_is_disjoint_and_covers_all_cases():
    cases = [{"name": f"c{i}"} for i in range(10)]
    seen = []
    for fold in range(3):
        train, val = split_cases(cases, num_folds=3, fold=fold, seed=1)
        assert not {c["name"] for c in train} & {c["name"] for c in val}
        assert len(train) + len(val) == 10
        seen += [c["name"] for c in val]
    assert sorted(seen) == sorted(c["name"] for c in cases)
    with pytest.raises(ValueError, match="fold"):
        split_cases(cases, num_folds=3, fold=3)


def test_clip_dataset_skips_clips_without_labels_and_handles_short_sequences():
    ds = ClipDataset([_case("a", t=6, labeled=[5])], clip_length=3)
    assert [s for _, _, s, _ in ds.index] == [3]  # only the clip holding frame 5
    ds = ClipDataset([_case("b", t=2)], clip_length=10)
    assert len(ds) == 1 and ds[0]["image"].shape == (2, 20, 28)
    ds = ClipDataset([_case("c", z=2, t=4, labeled=[1, 3])], clip_length=1)
    assert len(ds) == 4  # non-recurrent: labeled frames only


def test_train_transforms_shape_range_and_one_draw_for_all_frames():
    image = np.repeat(np.random.default_rng(0).random((1, 30, 40)).astype(np.float32), 4, axis=0)
    label = np.repeat(np.random.default_rng(1).integers(0, 3, (1, 30, 40)), 4, axis=0)
    label[2] = IGNORE_LABEL
    pipeline = clip_train_transforms((32, 32), flip_prob=0.5)
    pipeline.set_random_state(3)
    out = pipeline({"image": image, "label": label})
    assert out["image"].shape == (4, 32, 32) and out["label"].shape == (4, 32, 32)
    assert out["label"].dtype == torch.int64 and out["image"].dtype == torch.float32
    # identical input frames stay identical: one random draw moved every frame of the clip
    torch.testing.assert_close(out["image"][0], out["image"][3])
    torch.testing.assert_close(out["label"][0], out["label"][1])
    assert (out["label"][2] == IGNORE_LABEL).all()  # an unlabeled frame stays unlabeled
    assert set(out["label"].unique().tolist()) <= {-1, 0, 1, 2}
    # fit padding (30x40 into 32x32 leaves rows of padding) carries no loss
    plain = clip_train_transforms((32, 32), augment=False)({"image": image, "label": label})
    assert (plain["label"][0, 0] == IGNORE_LABEL).all() and (plain["label"][0, 16] != IGNORE_LABEL).all()


def test_crop_size_crops_the_scaled_canvas_not_the_native_frame():
    image = np.random.default_rng(0).random((3, 100, 80)).astype(np.float32)
    label = np.random.default_rng(1).integers(0, 4, (1, 100, 80))
    item = {"image": image, "label": label}
    canvas = clip_train_transforms((50, 50), augment=False)(dict(item))
    crop = clip_train_transforms((50, 50), augment=False, crop_size=(20, 24))
    crop.set_random_state(5)
    out = crop(dict(item))
    assert out["image"].shape == (3, 20, 24) and out["label"].shape == (1, 20, 24)
    windows = [
        (y, x)
        for y in range(50 - 20 + 1)
        for x in range(50 - 24 + 1)
        if torch.equal(canvas["image"][:, y : y + 20, x : x + 24], out["image"])
    ]
    assert len(windows) == 1  # one window of the 50 x 50 canvas (0.5x scale), not of the 100 x 80 frame
    (y, x) = windows[0]
    assert torch.equal(canvas["label"][:, y : y + 20, x : x + 24], out["label"])
    augmented = clip_train_transforms((50, 50), rotate_deg=180.0, padding_mode="reflection", crop_size=(20, 24))
    assert augmented(dict(item))["image"].shape == (3, 20, 24)


@pytest.mark.parametrize(
    "kwargs",
    [{"crop_size": (60, 20)}, {"crop_size": (20,)}, {"crop_size": (0, 8)}, {"crop_size": (8, 8), "fit": "crop"}],
)
def test_crop_size_outside_the_canvas_is_refused(kwargs):
    with pytest.raises(ValueError, match="crop_size"):
        clip_train_transforms((50, 50), **kwargs)


def test_robust_normalization_maps_percentiles_to_unit_range():
    image = np.linspace(0, 100, 1000, dtype=np.float32).reshape(1, 1, 10, 100)
    out = clip_eval_transforms(i_min=10, i_max=10)({"image": image})["image"]
    flat = out.flatten()
    assert torch.isclose(torch.quantile(flat, 0.05), torch.tensor(-1.0), atol=0.01)
    assert torch.isclose(torch.quantile(flat, 0.95), torch.tensor(1.0), atol=0.01)


@pytest.mark.parametrize("size", [(30, 44), (64, 20), (32, 32)])
def test_fit_and_undo_fit_round_trip(size):
    x = torch.rand(2, 3, *size)
    fitted, geo = fit_to_size(x, (32, 32))
    assert fitted.shape == (2, 3, 32, 32)
    back = undo_fit(fitted, geo)
    assert back.shape == x.shape
    if size == (32, 32):
        torch.testing.assert_close(back, x)
    labels = torch.randint(0, 3, (1, 1, *size)).float()
    lf, geo = fit_to_size(labels, (64, 64), mode="nearest")
    assert set(lf.unique().tolist()) <= {0.0, 1.0, 2.0}
