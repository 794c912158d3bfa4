"""The Gaussian smoothing before the normalization (``normalization#smooth_padding``): ``"zeros"`` is MONAI's
``GaussianSmooth``; ``"edge"`` is the same inside a frame and keeps its edges, so a brightness offset
normalizes away."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import GaussianSmooth

from cosinetrack.inference.segmenter import normalize_frame
from cosinetrack.transforms import SmoothFramesd, clip_eval_transforms, clip_train_transforms


def textured_frame(shape=(40, 36), background=90.0, seed=0) -> np.ndarray:
    """A frame with a bright background, a few bright discs (one cut by the frame's edge) and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    frame = np.full(shape, background) + rng.normal(0, 2, shape)
    for cy, cx, r in [(10, 10, 5), (25, 20, 6), (0, 30, 6)]:  # the last one is cut by the top edge
        frame[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] += 60
    return frame.astype(np.float32)


@pytest.mark.parametrize("shape", [(1, 40, 36), (3, 40, 36), (2, 12, 10, 9)])
def test_zeros_is_monai_and_edge_differs_only_at_the_edges(shape):
    x = torch.rand(shape) + 5.0
    sigma = 1.5
    tail = 6  # MONAI's int(4 sigma + 0.5)
    zeros = SmoothFramesd("image", sigma, "zeros")({"image": x})["image"]
    edge = SmoothFramesd("image", sigma, "edge")({"image": x})["image"]
    torch.testing.assert_close(zeros, GaussianSmooth(sigma)(x))
    assert edge.shape == x.shape
    inside = (slice(None),) + (slice(tail, -tail),) * (x.ndim - 1)
    torch.testing.assert_close(edge[inside], zeros[inside], atol=1e-5, rtol=0)
    assert float(zeros[(slice(None),) + (0,) * (x.ndim - 1)].mean()) < 4.0  # zeros darken the corner ...
    assert float(edge.min()) > 5.0 and float(edge.max()) < 6.0  # ... the edge padding stays in the value range


def test_edge_padding_makes_the_normalized_frame_ignore_a_brightness_offset():
    frame = textured_frame()
    for padding, invariant in (("edge", True), ("zeros", False)):
        a = normalize_frame(frame, 20.0, 1.0, 2.0, padding)
        b = normalize_frame(frame + 500.0, 20.0, 1.0, 2.0, padding)
        assert torch.allclose(a, b, atol=1e-3) is invariant, padding
    # the disc cut by the top edge keeps its brightness with the edge padding, not with zeros
    edge, zeros = normalize_frame(frame, 20.0, 1.0, 2.0, "edge")[0], normalize_frame(frame, 20.0, 1.0, 2.0, "zeros")[0]
    assert float(edge[0, 28:33].mean()) > 0.5 > float(zeros[0, 28:33].mean())


def test_training_clips_use_the_same_smoothing():
    clip = np.stack([textured_frame(seed=s) for s in range(3)])
    labels = np.zeros(clip.shape, dtype=np.int64)
    out = {}
    for padding in ("edge", "zeros"):
        train = clip_train_transforms((40, 36), 20.0, 1.0, smooth_sigma=2.0, smooth_padding=padding, augment=False)
        out[padding] = torch.as_tensor(train({"image": clip, "label": labels})["image"])
        evaluation = clip_eval_transforms(20.0, 1.0, per_channel=False, smooth_sigma=2.0, smooth_padding=padding)
        torch.testing.assert_close(out[padding], torch.as_tensor(evaluation({"image": clip})["image"]))
    assert not torch.allclose(out["edge"], out["zeros"])


@pytest.mark.parametrize("sigma, padding, problem", [(0.0, "edge", "sigma"), (1.0, "reflect", "smooth_padding")])
def test_bad_smoothing_options_are_refused(sigma, padding, problem):
    with pytest.raises(ValueError, match=problem):
        SmoothFramesd("image", sigma, padding)
