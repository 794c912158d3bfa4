"""Robust normalization: MONAI ScaleIntensityRangePercentilesd's numbers, per-item percentages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import ScaleIntensityRangePercentilesd

from cosinetrack.transforms.augment import clip_eval_transforms, robust_normalization
from cosinetrack.transforms.normalize import RobustNormalized, robust_scale

pytestmark = pytest.mark.usefixtures("single_thread")


def _monai(image: torch.Tensor, i_min: float, i_max: float, per_channel: bool) -> torch.Tensor:
    t = ScaleIntensityRangePercentilesd(
        keys="image",
        lower=i_min / 2.0,
        upper=100.0 - i_max / 2.0,
        b_min=-1.0,
        b_max=1.0,
        clip=False,
        relative=False,
        channel_wise=per_channel,
    )
    return torch.as_tensor(t({"image": image.clone()})["image"]).as_subclass(torch.Tensor)


@pytest.mark.parametrize(
    "shape, i_min, i_max, per_channel, dist",
    [
        ((1, 37, 41), 20.0, 1.0, False, "gamma"),  # SIM+ preset on one frame
        ((1, 37, 41), 20.0, 10.0, False, "normal"),  # GOWT1 preset
        ((4, 23, 19), 20.0, 10.0, False, "gamma"),  # a clip: frames as channels, one normalization
        ((4, 23, 19), 10.0, 10.0, True, "uniform"),  # channel-wise
        ((2, 3, 16, 16), 5.0, 2.5, True, "gamma"),  # a (Z, T, H, W) case, per slice
        ((3, 8, 8), 0.0, 0.0, False, "integers"),  # min / max; ties
        ((2, 8, 8), 20.0, 10.0, True, "flat"),  # a constant channel: shifted, no division by zero
    ],
)
def test_values_equal_monai_scale_intensity_range_percentiles(shape, i_min, i_max, per_channel, dist):
    rng = np.random.default_rng(sum(shape))
    draw = {
        "gamma": lambda: rng.gamma(2.0, 40.0, size=shape),
        "normal": lambda: rng.normal(100.0, 15.0, size=shape),
        "uniform": lambda: rng.uniform(-3.0, 7.0, size=shape),
        "integers": lambda: rng.integers(0, 5, size=shape),
        "flat": lambda: np.full(shape, 7.0),
    }[dist]
    image = torch.as_tensor(draw().astype(np.float32))
    expected = _monai(image, i_min, i_max, per_channel)
    ours = RobustNormalized("image", i_min, i_max, per_channel=per_channel)({"image": image.clone()})["image"]
    assert ours.dtype == torch.float32 and ours.shape == image.shape
    torch.testing.assert_close(ours, expected.to(torch.float32), rtol=1e-5, atol=1e-5)
    # numpy input gives the same numbers; the input itself is never changed
    array = image.numpy().copy()
    torch.testing.assert_close(robust_scale(array, i_min / 2, 100 - i_max / 2, channel_wise=per_channel), ours)
    np.testing.assert_array_equal(array, image.numpy())


@pytest.mark.parametrize(
    "item_values, defaults, used",
    [
        ({"i_min": 20.0, "i_max": 1.0}, (20.0, 10.0), (20.0, 1.0)),  # the item's own preset wins
        ({"i_min": 30.0, "i_max": 10.0}, (20.0, 1.0), (30.0, 10.0)),
        ({}, (20.0, 10.0), (20.0, 10.0)),  # no values in the item: the constructor's
        ({"i_max": None}, (20.0, 1.0), (20.0, 1.0)),  # None counts as absent
        ({"i_max": torch.tensor([5.0])}, (20.0, 1.0), (20.0, 5.0)),  # a collated value
    ],
)
def test_each_item_is_normalized_with_its_own_percentages(item_values, defaults, used):
    image = torch.as_tensor(np.random.default_rng(3).gamma(2.0, 40.0, size=(3, 20, 24)).astype(np.float32))
    out = robust_normalization(*defaults)({"image": image, **item_values})
    expected = _monai(image, used[0], used[1], per_channel=False)
    torch.testing.assert_close(out["image"], expected, rtol=1e-5, atol=1e-5)
    other = _monai(image, *(defaults if used != defaults else (1.0, 1.0)), per_channel=False)
    assert not torch.allclose(out["image"], other, atol=1e-3)  # the other setting gives other numbers


def test_missing_percentages_and_bad_values_are_clear_errors():
    with pytest.raises(ValueError, match="no 'i_max'"):
        RobustNormalized("image", 20.0, None)({"image": torch.ones(1, 4, 4), "i_min": 10.0})
    with pytest.raises(ValueError, match="i_max must be a percentage"):
        RobustNormalized("image", 20.0, 150.0)


def test_inference_frame_normalization_matches_monai():
    """``clip_eval_transforms`` (inference's ``normalize_frame``) now uses the same fast path."""
    frame = torch.as_tensor(np.random.default_rng(5).gamma(2.0, 40.0, size=(1, 69, 63)).astype(np.float32))
    out = clip_eval_transforms(20.0, 1.0, per_channel=False)({"image": frame.clone()})["image"]
    torch.testing.assert_close(out, _monai(frame, 20.0, 1.0, per_channel=False), rtol=1e-5, atol=1e-5)


def _nuclei_frame(coverage: float, seed: int = 0) -> np.ndarray:
    """A 128 x 128 fluorescence-like frame: background 100 with noise (std 5), nuclei of 1000 covering
    about ``coverage`` of it (a band of rows, so the covered fraction is exact up to one row)."""
    rng = np.random.default_rng(seed)
    frame = 100.0 + 5.0 * rng.standard_normal((128, 128))
    frame[: round(coverage * 128)] += 900.0
    return frame.astype(np.float32)


@pytest.mark.parametrize("coverage", [0.03, 0.08, 0.2, 0.4])
def test_foreground_level_does_not_depend_on_how_much_the_objects_cover(coverage):
    from cosinetrack.transforms.normalize import foreground_level

    assert foreground_level(_nuclei_frame(coverage)) == pytest.approx(1000.0, abs=2.0)


@pytest.mark.parametrize(
    "coverage, upper, object_value, background_value",
    [
        (0.03, "foreground", 1.0, -1.0),  # nuclei at 1, background near -1, however sparse
        (0.4, "foreground", 1.0, -1.0),
        (0.2, "percentile", 1.0, -1.0),  # nuclei cover more than i_max 10 %: the percentile is a nucleus
        (0.03, "percentile", None, 0.0),  # 3 % < i_max 10 %: the background noise is stretched to [-1, 1]
    ],
)
def test_upper_reference_maps_the_nuclei_to_one(coverage, upper, object_value, background_value):
    frame = _nuclei_frame(coverage)
    out = robust_normalization(20.0, 10.0, upper=upper)({"image": torch.as_tensor(frame[None])})["image"][0]
    rows = round(coverage * 128)
    if object_value is None:  # nuclei far beyond 1 (about 100 here)
        assert float(out[:rows].median()) > 50.0
    else:
        assert float(out[:rows].median()) == pytest.approx(object_value, rel=0.1)
    assert float(out[rows:].median()) == pytest.approx(background_value, abs=0.25)
    same = clip_eval_transforms(20.0, 10.0, per_channel=False, upper=upper)({"image": frame[None]})["image"]
    assert torch.allclose(torch.as_tensor(same), out[None])


def test_foreground_reference_of_a_flat_image_and_bad_names():
    from cosinetrack.transforms.normalize import foreground_level

    flat = np.full((8, 8), 7.0, np.float32)
    assert foreground_level(flat) == 7.0  # nothing above the threshold: the maximum
    out = robust_scale(flat[None], 10.0, 95.0, upper_reference="foreground")
    assert torch.equal(out, torch.full((1, 8, 8), -1.0))  # shifted only, as the percentile reference does
    with pytest.raises(ValueError, match="upper_reference: expected one of"):
        robust_scale(flat, 10.0, 95.0, upper_reference="max")
    with pytest.raises(ValueError, match="upper: expected one of"):
        RobustNormalized(keys="image", upper="max")


def test_bright_foreground_is_the_same_after_a_linear_intensity_change():
    from cosinetrack.transforms import bright_foreground

    frame = _nuclei_frame(0.1)
    mask = bright_foreground(frame)
    assert mask.dtype == bool and mask.shape == frame.shape and 0 < mask.mean() < 0.5
    np.testing.assert_array_equal(bright_foreground(frame * 2.0 + 8.0), mask)
