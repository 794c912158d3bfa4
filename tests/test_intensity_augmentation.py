"""Imaging-noise and gamma augmentation on raw clips (beyond the paper; off by default)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cosinetrack.errors import CosineTrackConfigError, user_error_in_chain
from cosinetrack.transforms.augment import check_augmentation, clip_train_transforms
from cosinetrack.transforms.intensity import RandImagingNoised


def _clip():
    x = np.full((3, 32, 32), 100.0, np.float32)
    x[:, 8:16, 8:16] = 300.0  # median 100, 99.5th percentile 300: contrast 200
    return x


@pytest.mark.parametrize(
    "kwargs, expect",
    [
        ({"prob": 0.0, "max_std": 0.5}, "unchanged"),
        ({"prob": 1.0, "max_std": 0.0}, "unchanged"),
        ({"prob": 1.0, "max_std": 0.5, "poisson_prob": 0.0}, "gaussian"),
        ({"prob": 1.0, "max_std": 0.5, "poisson_prob": 1.0}, "signal dependent"),
    ],
)
def test_noise_strength_and_kind(kwargs, expect):
    t = RandImagingNoised(keys="image", **kwargs)
    t.set_random_state(0)
    out = t({"image": _clip(), "label": np.zeros((3, 32, 32))})
    diff = out["image"] - _clip()
    if expect == "unchanged":
        np.testing.assert_array_equal(diff, 0)
        return
    k = t._k
    bg, fg = diff[:, 20:, 20:].std(), diff[:, 8:16, 8:16].std()
    assert 0 < k <= 0.5
    if expect == "gaussian":
        assert bg == pytest.approx(k * 200, rel=0.1) and fg == pytest.approx(k * 200, rel=0.2)
    else:  # background at the 1st percentile: std k*s*sqrt(0.1); nuclei: k*s*sqrt(200/200 + 0.1)
        assert bg == pytest.approx(k * 200 * np.sqrt(0.1), rel=0.1)
        assert fg == pytest.approx(k * 200 * np.sqrt(1.1), rel=0.2)


def test_noise_keeps_tensor_type_and_label():
    t = RandImagingNoised(keys="image", prob=1.0, max_std=0.3)
    t.set_random_state(1)
    label = np.ones((3, 32, 32))
    out = t({"image": torch.as_tensor(_clip()), "label": label})
    assert isinstance(out["image"], torch.Tensor) and out["label"] is label


@pytest.mark.parametrize("bad", [{"prob": 1.5}, {"max_std": -0.1}, {"poisson_prob": -1}])
def test_bad_arguments_fail_at_construction(bad):
    with pytest.raises(ValueError):
        RandImagingNoised(keys="image", **bad)


@pytest.mark.parametrize("gamma, noise_std", [(0.0, 0.0), (0.4, 0.0), (0.0, 0.3), (0.4, 0.3)])
def test_training_pipeline_with_raw_intensity_augmentation(gamma, noise_std):
    pipe = clip_train_transforms((32, 32), i_min=20, i_max=1, gamma=gamma, noise_std=noise_std, noise_prob=1.0,
                                 smooth_sigma=2.0, padding_mode="reflection", flip_prob=0.5)  # fmt: skip
    pipe.set_random_state(0)
    label = np.zeros((3, 32, 32), np.int64)
    label[:, 8:16, 8:16] = 1
    out = pipe({"image": _clip(), "label": label})
    assert out["image"].shape == (3, 32, 32) and torch.isfinite(out["image"]).all()
    assert set(torch.unique(out["label"]).tolist()) <= {-1, 0, 1}
    eval_pipe = clip_train_transforms((32, 32), i_min=20, i_max=1, gamma=gamma, noise_std=noise_std, augment=False)
    a = eval_pipe({"image": _clip(), "label": label})["image"]
    b = eval_pipe({"image": _clip(), "label": label})["image"]
    torch.testing.assert_close(a, b)  # augment=False: no noise, no gamma


@pytest.mark.parametrize(
    "max_std, item, expect_k_max",  # the item's own strength wins over max_std when max_std_key is set
    [
        (0.0, {"noise_std": 0.5}, 0.5),
        (0.5, {"noise_std": 0.0}, 0.0),
        (0.5, {}, 0.5),
    ],
)
def test_an_item_brings_its_own_noise_strength(max_std, item, expect_k_max):
    t = RandImagingNoised(keys="image", prob=1.0, max_std=max_std, poisson_prob=0.0, max_std_key="noise_std")
    t.set_random_state(0)
    out = t({"image": _clip(), **item})
    diff = out["image"] - _clip()
    if expect_k_max == 0.0:
        np.testing.assert_array_equal(diff, 0)
        return
    assert 0 < t._k <= expect_k_max
    assert diff[:, 20:, 20:].std() == pytest.approx(t._k * 200, rel=0.1)
    same = RandImagingNoised(keys="image", prob=1.0, max_std=expect_k_max, poisson_prob=0.0)
    same.set_random_state(0)
    np.testing.assert_array_equal(same({"image": _clip()})["image"], out["image"])  # the same draws


@pytest.mark.parametrize("bad", [-0.1, "x", float("inf")])
def test_a_bad_item_noise_strength_is_a_clear_error(bad):
    t = RandImagingNoised(keys="image", prob=1.0, max_std=0.3, max_std_key="noise_std")
    with pytest.raises(ValueError, match="item key 'noise_std': expected a number >= 0"):
        t({"image": _clip(), "noise_std": bad})


@pytest.mark.parametrize(
    "noise_std, expect",  # (max_std, max_std_key) of the pipeline's noise transform, or None for none
    [(0.0, None), (0.3, (0.3, None)), ({"A": 0.0}, None), ({"A": 0.0, "B": 0.2}, (None, "noise_std"))],
)
def test_noise_given_per_data_set_reads_each_items_strength(noise_std, expect):
    pipe = clip_train_transforms((32, 32), i_min=20, i_max=1, noise_std=noise_std)
    noise = [(t.max_std, t.max_std_key) for t in pipe.transforms if isinstance(t, RandImagingNoised)]
    assert noise == ([expect] if expect else [])


@pytest.mark.parametrize("bad", [{"A": -1.0}, {"A": True}, {"A": "0.3"}])
def test_a_bad_per_data_set_strength_fails_the_pipeline_and_the_option_check(bad):
    with pytest.raises(ValueError, match=r"noise_std\['A'\]: expected a number >= 0"):
        clip_train_transforms((32, 32), noise_std=bad)
    with pytest.raises(CosineTrackConfigError, match=r"augmentation#noise_std: noise_std\['A'\]"):
        check_augmentation({"noise_std": bad})


def test_noise_per_data_set_refuses_an_item_that_names_no_strength():
    """LV and leaf cases carry no ``noise_std``: a mapping there is an error, not a silent run without noise."""
    pipe = clip_train_transforms((32, 32), i_min=20, i_max=1, noise_std={"A": 0.2}, noise_prob=1.0)
    with pytest.raises(Exception) as info:
        pipe({"image": _clip(), "label": np.zeros((3, 32, 32), np.int64)})
    assert user_error_in_chain(info.value) is not None
    assert "augmentation#noise_std: given per data set, but a training item has no 'noise_std'" in str(
        user_error_in_chain(info.value)
    )
    with pytest.raises(ValueError, match="max_std None needs a max_std_key"):
        RandImagingNoised(keys="image", max_std=None)
