"""Imaging-noise and gamma augmentation on raw clips (beyond the paper; off by default)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cosinetrack.errors import CosineTrackConfigError, user_error_in_chain
from cosinetrack.transforms.augment import check_augmentation, clip_train_transforms
from cosinetrack.transforms.intensity import (
    RandBackgroundTextured,
    RandGlowd,
    RandImagingNoised,
    RandInstanceContrastd,
)


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


def _two_cells():
    """A clip with two cells of contrast 200 over a background of 100 (ids 1 and 2 in every frame)."""
    x = np.full((3, 40, 40), 100.0, np.float32)
    label = np.zeros((3, 40, 40), np.int64)
    x[:, 4:14, 4:14], label[:, 4:14, 4:14] = 300.0, 1
    x[:, 24:34, 24:34], label[:, 24:34, 24:34] = 300.0, 2
    label[:, 38:, :] = -1  # no label here: never dimmed
    return x, label


@pytest.mark.parametrize(
    "prob, min_factor, expect",  # contrast of each cell after the transform, per frame
    [
        (0.0, 0.2, "unchanged"),
        (1.0, 1.0, "unchanged"),
        (1.0, 0.2, "both dimmed"),
        (1.0, 0.0, "both dimmed"),
    ],
)
def test_instance_contrast_dims_whole_cells_the_same_in_every_frame(prob, min_factor, expect):
    x, label = _two_cells()
    t = RandInstanceContrastd(keys="image", prob=prob, min_factor=min_factor, sigma=0.0)
    t.set_random_state(3)
    out = t({"image": torch.as_tensor(x), "label": torch.as_tensor(label)})
    y = out["image"]
    assert isinstance(y, torch.Tensor) and out["label"] is not None
    y = y.numpy()
    np.testing.assert_array_equal(y[label <= 0], x[label <= 0])  # background and unlabelled pixels untouched
    contrast = [[float(y[f][label[f] == i].mean()) - 100.0 for f in range(3)] for i in (1, 2)]
    for per_frame in contrast:
        assert np.ptp(per_frame) < 1e-4  # one draw per cell, not per frame
        if expect == "unchanged":
            assert per_frame[0] == pytest.approx(200.0)
        else:
            assert 200.0 * min_factor - 1e-3 <= per_frame[0] < 200.0


def test_instance_contrast_picks_about_prob_of_the_cells_and_fades_the_rim():
    x = np.full((1, 200, 200), 10.0, np.float32)
    label = np.zeros((1, 200, 200), np.int64)
    for i in range(100):
        r, c = divmod(i, 10)
        label[0, 20 * r + 5 : 20 * r + 15, 20 * c + 5 : 20 * c + 15] = i + 1
    x[label > 0] = 110.0
    t = RandInstanceContrastd(keys="image", prob=0.3, min_factor=0.5, sigma=2.0)
    t.set_random_state(0)
    y = t({"image": x, "label": label})["image"]
    dimmed = sum(float(y[label == i].max()) < 105.0 for i in range(1, 101))
    assert 15 <= dimmed <= 45
    assert np.all(y >= 10.0 - 1e-4) and np.all(y <= 110.0 + 1e-4)  # a blend of 1 and f: never beyond the original


@pytest.mark.parametrize("bad", [{"prob": 1.5}, {"prob": -0.1}, {"min_factor": 1.2}, {"sigma": -1.0}, {"prob": True}])
def test_instance_contrast_bad_arguments_fail_at_construction(bad):
    with pytest.raises(ValueError):
        RandInstanceContrastd(keys="image", **bad)


def test_instance_contrast_in_the_training_pipeline_and_a_bad_factor():
    x, label = _two_cells()
    pipe = clip_train_transforms((32, 32), i_min=20, i_max=1, instance_dim_prob=1.0, instance_dim_min=0.3,
                                 smooth_sigma=2.0, padding_mode="reflection")  # fmt: skip
    pipe.set_random_state(0)
    out = pipe({"image": x, "label": label})
    assert out["image"].shape == (3, 32, 32) and torch.isfinite(out["image"]).all()
    assert check_augmentation({"instance_dim_prob": 0.3, "instance_dim_min": 0.2}) == {
        "instance_dim_prob": 0.3, "instance_dim_min": 0.2,
    }  # fmt: skip
    with pytest.raises(ValueError, match="instance_dim_min"):
        clip_train_transforms((32, 32), instance_dim_prob=0.3, instance_dim_min=1.5)


def _nucleus_clip():
    """Three frames of a 30x30 bright square nucleus (400) on a 100 background, 96x96."""
    x = np.full((3, 96, 96), 100.0, np.float32)
    x[:, 33:63, 33:63] = 400.0
    return x


@pytest.mark.parametrize(
    "prob, max_amount, expect",
    [
        (0.0, 1.0, "unchanged"),
        (1.0, 0.0, "unchanged"),
        (1.0, 1.0, "halo"),
        (1.0, 3.0, "halo"),
    ],
)
def test_glow_adds_a_halo_around_bright_objects_and_keeps_the_far_background(prob, max_amount, expect):
    x = _nucleus_clip()
    label = np.zeros(x.shape, np.int64)
    label[:, 33:63, 33:63] = 1
    t = RandGlowd(keys="image", prob=prob, max_amount=max_amount, sigma=4.0)
    t.set_random_state(1)
    out = t({"image": torch.as_tensor(x), "label": torch.as_tensor(label)})
    y = out["image"]
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    np.testing.assert_array_equal(out["label"].numpy(), label)  # the halo is background
    y = y.numpy()
    if expect == "unchanged":
        np.testing.assert_array_equal(y, x)
        return
    assert 0.0 < t._amount <= max_amount and 2.0 <= t._blur <= 6.0
    rim = y[:, 48, 64:67]  # 1-3 px outside the nucleus' right edge
    assert np.all(rim > 100.0 + 1.0)  # a dim halo ...
    assert np.all(rim < y[:, 48, 48:49] - 1.0)  # ... dimmer than the nucleus
    np.testing.assert_allclose(y[:, :4, :4], 100.0, atol=1e-3)  # far background (the median) unchanged
    np.testing.assert_allclose(np.ptp(y, axis=0), 0.0, atol=1e-3)  # one draw for the whole clip


def test_glow_amount_scales_the_halo():
    x = _nucleus_clip()
    t = RandGlowd(keys="image", sigma=4.0)
    weak, strong = t.glow(x, 0.2, 4.0), t.glow(x, 0.8, 4.0)
    halo = (slice(None), 48, 65)
    assert strong[halo].min() - 100.0 == pytest.approx(4 * (weak[halo].min() - 100.0), rel=1e-4)


@pytest.mark.parametrize(
    "bad", [{"prob": 1.5}, {"prob": -0.1}, {"max_amount": -1.0}, {"sigma": 0.0}, {"sigma": True}, {"prob": None}]
)
def test_glow_bad_arguments_fail_at_construction(bad):
    with pytest.raises(ValueError):
        RandGlowd(keys="image", **bad)


def test_glow_in_the_training_pipeline_and_its_config_names():
    x, label = _two_cells()
    pipe = clip_train_transforms((32, 32), i_min=20, i_max=1, glow_prob=1.0, glow_amount=0.5, glow_sigma=3.0,
                                 smooth_sigma=2.0, padding_mode="reflection")  # fmt: skip
    assert any(isinstance(t, RandGlowd) for t in pipe.transforms)
    assert not any(isinstance(t, RandGlowd) for t in clip_train_transforms((32, 32)).transforms)  # off by default
    pipe.set_random_state(0)
    out = pipe({"image": x, "label": label})
    assert out["image"].shape == (3, 32, 32) and torch.isfinite(out["image"]).all()
    options = {"glow_prob": 0.5, "glow_amount": 1.0, "glow_sigma": 12.0}
    assert check_augmentation(options) == options
    with pytest.raises(ValueError, match="sigma"):
        clip_train_transforms((32, 32), glow_prob=0.5, glow_sigma=-2.0)


@pytest.mark.parametrize("prob, max_amount, changed", [(0.0, 0.1, False), (1.0, 0.0, False), (1.0, 0.1, True)])
def test_background_texture_is_one_smooth_field_for_the_whole_clip(prob, max_amount, changed):
    x = _nucleus_clip()
    label = np.zeros(x.shape, np.int64)
    label[:, 33:63, 33:63] = 1
    t = RandBackgroundTextured(keys="image", prob=prob, max_amount=max_amount, sigma=3.0)
    t.set_random_state(2)
    out = t({"image": torch.as_tensor(x), "label": torch.as_tensor(label)})
    np.testing.assert_array_equal(out["label"].numpy(), label)  # the texture is background
    y = out["image"].numpy()
    assert out["image"].dtype == torch.float32
    if not changed:
        np.testing.assert_array_equal(y, x)
        return
    added = y - x
    np.testing.assert_allclose(np.ptp(added, axis=0), 0.0, atol=1e-3)  # the same texture in every frame
    contrast = 300.0  # 99.5th percentile 400 minus median 100
    assert 0.0 < t._amount <= 0.1 and 1.5 <= t._blur <= 4.5
    assert added[0].std() == pytest.approx(t._amount * contrast, rel=1e-3)  # unit-variance field times a * c
    # smooth: neighbouring pixels are strongly correlated (white noise would not be)
    assert np.corrcoef(added[0, :, :-1].ravel(), added[0, :, 1:].ravel())[0, 1] > 0.8


@pytest.mark.parametrize("bad", [{"prob": 2.0}, {"max_amount": -0.1}, {"sigma": -3.0}, {"sigma": False}])
def test_background_texture_bad_arguments_fail_at_construction(bad):
    with pytest.raises(ValueError):
        RandBackgroundTextured(keys="image", **bad)


def test_background_texture_in_the_training_pipeline_and_its_config_names():
    x, label = _two_cells()
    pipe = clip_train_transforms((32, 32), i_min=20, i_max=1, texture_prob=1.0, texture_amount=0.05,
                                 texture_sigma=4.0, smooth_sigma=2.0, padding_mode="reflection")  # fmt: skip
    assert any(isinstance(t, RandBackgroundTextured) for t in pipe.transforms)
    assert not any(isinstance(t, RandBackgroundTextured) for t in clip_train_transforms((32, 32)).transforms)
    pipe.set_random_state(0)
    out = pipe({"image": x, "label": label})
    assert out["image"].shape == (3, 32, 32) and torch.isfinite(out["image"]).all()
    options = {"texture_prob": 0.5, "texture_amount": 0.05, "texture_sigma": 10.0}
    assert check_augmentation(options) == options
