"""Test-time flips (``test_time_flips``): four flipped views per frame, each flipped back, concatenated."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cosinetrack.apps.leaf.pipeline import segment_image_instances
from cosinetrack.inference import StreamingInferer, stream_frames
from cosinetrack.inference.inferer import FLIP_VIEWS, flip_views_batch, merge_flip_views
from cosinetrack.networks import RecurrentStackedHourglass


class EchoNetwork(torch.nn.Module):
    """A streaming "network" whose embedding is its input frame plus the number of frames seen before.

    Position-dependent (the frame itself), so a view flipped back the wrong way would not match the
    others; its state counts the frames, so a view that shared another view's state would show too.
    """

    def step(self, frames: torch.Tensor, state: torch.Tensor | None = None):
        state = torch.zeros(frames.shape[0], 1, 1, 1) if state is None else state + 1
        return (frames + state,), state


def tiny_network() -> RecurrentStackedHourglass:
    torch.manual_seed(0)
    return RecurrentStackedHourglass(1, 4, num_levels=2, num_filters=4, recurrent=True).eval()


def test_flip_views_batch_then_merge_gives_each_view_back_in_place():
    frames = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    views = flip_views_batch(frames)
    assert views.shape == (len(FLIP_VIEWS) * 2, 3, 5, 7)
    torch.testing.assert_close(views[2:4], frames.flip(-1))
    merged = merge_flip_views(views)  # a network that changes nothing: every view is the frame again
    unit = torch.nn.functional.normalize(frames, dim=1)
    assert merged.shape == (2, 4 * 3, 5, 7)
    torch.testing.assert_close(merged, torch.cat([unit] * 4, dim=1) / 2)
    torch.testing.assert_close(merged.norm(dim=1), torch.ones(2, 5, 7))


@pytest.mark.parametrize("shape", [(4, 5, 7), (5, 2, 5, 7)])
def test_merge_flip_views_refuses_a_batch_that_is_not_four_views(shape):
    with pytest.raises(ValueError, match="flip views"):
        merge_flip_views(torch.ones(shape))


@pytest.mark.parametrize("image_size", [None, (16, 16)])
def test_stream_frames_with_flips_flips_each_view_back_and_keeps_its_state(image_size):
    frames = torch.rand(2, 3, 1, 12, 10, generator=torch.Generator().manual_seed(1)) + 0.5  # (B, T, C, H, W)
    out = stream_frames(EchoNetwork(), frames, image_size, restore_size=True, test_time_flips=True)
    assert out.shape == (2, 3, 4, 12, 10)
    plain = stream_frames(EchoNetwork(), frames, image_size, restore_size=True)
    ref = torch.cat([torch.nn.functional.normalize(plain, dim=2)] * 4, dim=2) / 2
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_flipped_views_of_a_real_network_match_the_flipped_image():
    """A view equals the plain network on the flipped frame, flipped back (the views are independent)."""
    net = tiny_network()
    frames = torch.randn(1, 2, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        out = stream_frames(net, frames, test_time_flips=True)
        for k, dims in enumerate(FLIP_VIEWS):
            view = frames.flip(dims) if dims else frames
            ref = stream_frames(net, view)
            ref = ref.flip(dims) if dims else ref
            torch.testing.assert_close(out[:, :, 4 * k : 4 * k + 4], torch.nn.functional.normalize(ref, dim=2) / 2)


def test_streaming_inferer_reads_the_flag_and_refuses_a_wrong_word():
    frames = torch.rand(1, 2, 1, 8, 8) + 0.5
    assert StreamingInferer(test_time_flips="true")(frames, EchoNetwork()).shape == (1, 2, 4, 8, 8)
    assert StreamingInferer(test_time_flips="false")(frames, EchoNetwork()).shape == (1, 2, 1, 8, 8)
    with pytest.raises(ValueError, match="test_time_flips"):
        StreamingInferer(test_time_flips="maybe")


def test_leaf_segmentation_with_flips_returns_labels_of_the_image_size():
    image = np.random.default_rng(0).normal(size=(1, 40, 44)).astype(np.float32)
    with torch.inference_mode():
        labels = segment_image_instances(tiny_network(), image, (32, 32), {"min_samples": 5}, test_time_flips=True)
    assert labels.shape == (40, 44) and labels.dtype == np.int32
