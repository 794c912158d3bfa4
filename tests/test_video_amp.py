"""bfloat16 autocast (the bundles' ``amp``) in the video, still-image and cine inference paths.

The network runs under :func:`~cosinetrack.inference.autocast_context` when ``amp`` is on; what reaches the
clustering is float32 and close to the float32 run (tolerances of ``tests/test_bf16.py``: 3 % relative
Frobenius error, mean per-pixel cosine >= 0.9995), and on a synthetic video with one right answer
(bright disks on a dark background, a network that thresholds them) both precisions write the same
instances, which are the disks.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F

from cosinetrack.apps.cell.pipeline import make_pair_segmenter, track_folder
from cosinetrack.apps.cell.synthetic import write_ctc_sequence
from cosinetrack.apps.leaf.pipeline import segment_image_instances
from cosinetrack.apps.lv_mri.pipeline import predict_case
from cosinetrack.networks.stacked import RecurrentStackedHourglass

REL_TOL, MEAN_PIXEL_COS = 3e-2, 0.9995


pytestmark = pytest.mark.usefixtures("single_thread")


def _tiny_net(out_channels: int = 4) -> RecurrentStackedHourglass:
    torch.manual_seed(0)
    net = RecurrentStackedHourglass(1, out_channels, num_levels=3, num_filters=8)
    with torch.no_grad():  # non-trivial gates and biases (they start at zero)
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def _assert_close(out: torch.Tensor, ref: torch.Tensor, channel_dim: int) -> None:
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert float((out - ref).norm() / ref.norm()) < REL_TOL
    assert F.cosine_similarity(out, ref, dim=channel_dim).mean() > MEAN_PIXEL_COS


@pytest.mark.parametrize("resolution", ["scaled", "tiled"])
def test_pair_segmenter_amp_embeddings_close_to_float32(resolution: str) -> None:
    net = _tiny_net()
    frames = torch.randn(3, 1, 40, 44)
    ref = make_pair_segmenter(net, (32, 32), {}, resolution, amp=False)
    low = make_pair_segmenter(net, (32, 32), {}, resolution, amp="true")
    for frame in frames:  # the GRU state is carried: the last frame has seen all three
        a, b = ref.embed(frame), low.embed(frame)
    _assert_close(b, a, channel_dim=0)


def test_pair_segmenter_rejects_a_bad_amp_value() -> None:
    with pytest.raises(ValueError, match="amp"):
        make_pair_segmenter(_tiny_net(), (32, 32), {}, "scaled", amp="maybe")


class ThresholdNet(torch.nn.Module):
    """``step``: ReLU of +-4 x the input (cells -> direction e1, background -> e2), + 0.1 in both channels.

    Records whether each step ran under CPU autocast and the dtype of its convolution's output.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([4.0, -4.0]).view(2, 1, 1, 1))
        self.seen: list[tuple[bool, torch.dtype]] = []

    def step(self, x: torch.Tensor, state=None):
        h = self.conv(x)
        self.seen.append((torch.is_autocast_enabled("cpu"), h.dtype))
        return [F.relu(h) + 0.1], state


@pytest.fixture(scope="module")
def disk_video(tmp_path_factory):
    """Three bright disks (radius 6) drifting one pixel per frame on a dark 48 x 48 background, 5 frames."""
    yy, xx = np.mgrid[:48, :48]
    labels = np.zeros((5, 48, 48), np.uint16)
    for t in range(5):
        for i, (cy, cx) in enumerate([(12, 12), (14, 34), (34, 22)], start=1):
            labels[t][(yy - cy - t) ** 2 + (xx - cx) ** 2 <= 36] = i
    images = np.where(labels > 0, 1000, 100).astype(np.uint16)
    tracks = np.array([[i, 0, 4, 0] for i in (1, 2, 3)])
    root = tmp_path_factory.mktemp("disks")
    write_ctc_sequence(root, "01", images, labels, tracks)
    return root, labels


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_track_folder_amp_writes_the_same_instances_as_float32(disk_video, tmp_path) -> None:
    root, truth = disk_video
    kwargs = {"min_samples": 5, "coordinate_scale": 0.001, "split_components": True}
    masks = {}
    for amp in ("false", "true"):
        net = ThresholdNet()
        written = track_folder(net, str(root), str(tmp_path / amp), None, (48, 48), clustering=kwargs, amp=amp)
        on = amp == "true"
        assert net.seen and all(s == (on, torch.bfloat16 if on else torch.float32) for s in net.seen)
        masks[amp] = np.stack([tifffile.imread(f"{written[0]}/mask{t:03d}.tif") for t in range(5)])
    np.testing.assert_array_equal(masks["true"], masks["false"])
    # and the answer is the right one: each disk is one instance with one id over the video
    for i in (1, 2, 3):
        ids = np.unique(masks["true"][truth == i])
        assert len(ids) == 1 and ids[0] > 0
        assert _iou(masks["true"] == ids[0], truth == i) == 1.0


def test_still_image_and_cine_prediction_amp() -> None:
    net = _tiny_net(out_channels=3)
    image = np.random.default_rng(0).normal(size=(1, 40, 44)).astype(np.float32)
    kwargs = {"min_samples": 5}
    for amp in (False, True):  # runs through the clustering with float32 embeddings
        labels = segment_image_instances(net, image, (32, 32), kwargs, amp=amp)
        assert labels.shape == (40, 44) and labels.dtype == np.int32
    cine = np.random.default_rng(1).normal(size=(2, 3, 40, 44)).astype(np.float32)
    ref = predict_case(net, cine, (32, 32), amp=False)
    low = predict_case(net, cine, (32, 32), amp=True)
    assert low.shape == cine.shape and (low == ref).mean() > 0.98
