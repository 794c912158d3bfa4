"""bfloat16 autocast on CPU (the bundles' ``amp`` switch): network, fused convolutions, inferers, trainer.

Tolerances. bfloat16 keeps 8 significant bits (unit roundoff 2**-9 ~ 0.2 %, a rounding error of up
to 0.4 % per value). Under autocast every convolution rounds its inputs and its output, and the
ConvGRU / hourglass element-wise ops round again, so an output of the tiny test network (3 levels,
2 stacks) has passed through about 15-25 roundings in a row. Independent errors of that size add up
to ``sqrt(20) * 0.2 % ~ 1 %`` relative (measured: 0.5-0.9 % on these networks, 0.7 % at the paper
size, constant over 80 streamed frames). The tests allow 3 % relative error in the Frobenius norm
(three times the estimate). The per-pixel output vectors (embedding directions, what the clustering
uses) must keep a mean cosine of at least 0.9995 to the float32 ones, and 99 % of the pixels a
cosine of at least 0.995 (measured: mean 0.9999, 1st percentile 0.9993; single pixels whose output
vector is nearly zero have an ill-conditioned direction, so no bound on the minimum). Gradients pass through the
same roundings twice (forward and backward), so they get a direction check: cosine >= 0.99 per
parameter tensor and >= 0.999 for all parameters together.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cosinetrack.inference.inferer import (
    AutocastInferer,
    StreamingInferer,
    autocast_context,
    cuda_amp,
    resolve_amp,
    stream_frames,
)
from cosinetrack.inference.tiling import TiledPairSegmenter
from cosinetrack.losses.cosine_embedding import CosineEmbeddingLoss
from cosinetrack.losses.cross_entropy import ClipCrossEntropyLoss
from cosinetrack.losses.stacked import StackedLoss
from cosinetrack.networks.convgru import Conv3x3, _fused_conv_available, cpu_bf16_supported
from cosinetrack.networks.stacked import RecurrentStackedHourglass

TINY = {"in_channels": 1, "out_channels": 4, "num_levels": 3, "num_filters": 8}
REL_TOL = 3e-2
MEAN_PIXEL_COS, Q01_PIXEL_COS = 0.9995, 0.995


pytestmark = pytest.mark.usefixtures("single_thread")


def _net(recurrent: bool = True, seed: int = 0) -> RecurrentStackedHourglass:
    torch.manual_seed(seed)
    net = RecurrentStackedHourglass(**{**TINY, "recurrent": recurrent})
    with torch.no_grad():  # non-trivial gates and biases (they start at zero)
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def _assert_close_bf16(out: torch.Tensor, ref: torch.Tensor, channel_dim: int) -> None:
    assert _rel(out, ref) < REL_TOL
    cos = F.cosine_similarity(out.float(), ref.float(), dim=channel_dim).flatten()
    assert cos.mean() > MEAN_PIXEL_COS
    assert cos.quantile(0.01) > Q01_PIXEL_COS


# ---------------------------------------------------------------------------------------------- network


@pytest.mark.parametrize("recurrent", [True, False])
def test_clip_forward_bf16_close_to_float32(recurrent: bool) -> None:
    net = _net(recurrent)
    clip = torch.randn(2, 4, 1, 32, 36)  # 36 is not a multiple of 4: padding path too
    with torch.no_grad():
        ref = net(clip)
        with autocast_context("cpu", True):
            out = net(clip)
    for o, r in zip(out, ref):
        assert o.dtype == torch.bfloat16  # the fused convolutions followed autocast
        assert o.shape == r.shape
        _assert_close_bf16(o, r, channel_dim=2)


@pytest.mark.parametrize("recurrent", [True, False])
def test_streaming_bf16_close_to_float32_and_float32_out(recurrent: bool) -> None:
    net = _net(recurrent).eval()
    torch.manual_seed(1)
    frames = torch.randn(1, 12, 1, 32, 32)
    with torch.inference_mode():
        ref = stream_frames(net, frames)
        out = stream_frames(net, frames, amp=True)
        # the caller's own autocast region: outputs are still float32
        with autocast_context("cpu", True):
            outer = stream_frames(net, frames)
    assert out.dtype == torch.float32 and outer.dtype == torch.float32
    torch.testing.assert_close(outer, out)
    for t in range(frames.shape[1]):  # no drift of the bfloat16 state over the frames
        _assert_close_bf16(out[:, t], ref[:, t], channel_dim=1)


@pytest.mark.parametrize("recurrent", [True, False])
def test_bf16_gradients_finite_and_aligned(recurrent: bool) -> None:
    net = _net(recurrent)
    torch.manual_seed(2)
    clip = torch.randn(1, 3, 1, 32, 32)
    target = torch.randn(1, 3, 4, 32, 32)

    def grads(amp: bool) -> list[torch.Tensor]:
        with autocast_context("cpu", amp):
            outs = net(clip)
        loss = sum(((o.float() - target) ** 2).mean() for o in outs)
        assert loss.dtype == torch.float32
        gs = torch.autograd.grad(loss, list(net.parameters()))
        return [g.detach() for g in gs]

    ref, low = grads(False), grads(True)
    for p, g in zip(net.parameters(), low):
        assert g.dtype == p.dtype == torch.float32  # gradients arrive in the parameters' dtype
        assert torch.isfinite(g).all()
    for g, r in zip(low, ref):
        if r.norm() > 1e-6 * max(float(x.norm()) for x in ref):
            assert F.cosine_similarity(g.flatten(), r.flatten(), dim=0) > 0.99
    flat_low, flat_ref = torch.cat([g.flatten() for g in low]), torch.cat([r.flatten() for r in ref])
    assert F.cosine_similarity(flat_low, flat_ref, dim=0) > 0.999
    assert _rel(flat_low, flat_ref) < 5e-2


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("with_residual", [True, False])
@pytest.mark.parametrize("gemm", [True, False])  # both weight-gradient paths (GEMM needs >= 128**2 pixels)
def test_conv3x3_autocast_matches_float32(
    relu: bool, with_residual: bool, gemm: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cosinetrack.networks.convgru as convgru

    monkeypatch.setattr(convgru, "GEMM_WEIGHT_GRAD", gemm)
    size = (96, 90)
    torch.manual_seed(0)
    conv = Conv3x3(8, 16, relu=relu)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 8, *size, requires_grad=True)
    res = torch.randn(2, 16, *size, requires_grad=True) if with_residual else None
    with autocast_context("cpu", True):
        y = conv(x, residual=res)
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last)
    pre = F.conv2d(x, conv.weight, conv.bias, padding=1)
    if res is not None:
        pre = pre + res
    ref = torch.relu(pre) if relu else pre
    assert _rel(y, ref) < 1e-2  # one conv: input, weight and output roundings only
    w = torch.randn_like(ref)
    params = [x, conv.weight, conv.bias] + ([res] if res is not None else [])
    got = torch.autograd.grad((y.float() * w).sum(), params)
    # ReLU: the reference uses the bfloat16 output's mask. Pre-activations within rounding of zero flip
    # sign (a handful of ~8000 here), each moving the gradient by a whole upstream value, which would
    # dominate the comparison (3-4 %) without saying anything about the kernels.
    mask = (y.detach().float() > 0).float() if relu else 1.0
    want = torch.autograd.grad((pre * mask * w).sum(), params)
    for g, r, p in zip(got, want, params):
        assert g.dtype == p.dtype == torch.float32
        assert _rel(g, r) < 2e-2


@pytest.mark.parametrize("shape", [(1, 8, 1, 1), (2, 8, 1, 1), (3, 1, 2, 2), (1, 1, 1, 1), (1, 8, 2, 3)])
def test_conv3x3_autocast_tiny_frames(shape: tuple[int, ...]) -> None:
    """1x1 / 2x2 frames (the lowest hourglass levels) have ambiguous memory layouts; oneDNN's unfused
    fallback for them has no bfloat16 add_relu, so these must take a path that works."""
    torch.manual_seed(0)
    n, c, h, w = shape
    conv = Conv3x3(c, 16, relu=True)
    x, res = torch.randn(n, c, h, w), torch.randn(n, 16, h, w)
    with autocast_context("cpu", True):
        y = conv(x.contiguous(memory_format=torch.channels_last), residual=res)
    ref = torch.relu(F.conv2d(x, conv.weight, conv.bias, padding=1) + res)
    assert y.dtype == torch.bfloat16
    assert _rel(y, ref) < 1e-2


def test_seven_levels_down_to_one_pixel() -> None:
    """The paper's 7 levels on a 64x64 input: the lowest level is 1x1 (streaming and training)."""
    torch.manual_seed(0)
    net = RecurrentStackedHourglass(1, 4, num_levels=7, num_filters=8)
    clip = torch.randn(1, 2, 1, 64, 64)
    with autocast_context("cpu", True):
        outs = net(clip)
    sum(o.float().square().mean() for o in outs).backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
    with torch.inference_mode():
        out = stream_frames(net, clip, amp=True)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_fused_bf16_kernel_is_used_where_native() -> None:
    x = torch.randn(1, 8, 16, 16, dtype=torch.bfloat16)
    w = torch.randn(8, 8, 3, 3, dtype=torch.bfloat16)
    assert _fused_conv_available(x, w) == cpu_bf16_supported()
    assert _fused_conv_available(x.float(), w.float()) == _fused_conv_available(torch.ones(1), torch.ones(1))
    assert not _fused_conv_available(x, w.float())  # mixed dtypes never reach the oneDNN op


def test_bf16_state_fed_to_float32_step() -> None:
    """A state from a bfloat16 step continues in float32 (the conv casts its input to its weights' dtype)."""
    net = _net(True).eval()
    frames = torch.randn(1, 2, 1, 32, 32)
    with torch.inference_mode():
        with autocast_context("cpu", True):
            _, state = net.step(frames[:, 0])
        out, state = net.step(frames[:, 1], state)
    assert out[-1].dtype == torch.float32 and torch.isfinite(out[-1]).all()


# ---------------------------------------------------------------------------------------------- losses


def test_losses_are_float32_and_bf16_safe() -> None:
    """The losses compute in float32 on bfloat16 input: same value as on the same numbers in float32."""
    torch.manual_seed(0)
    emb = torch.randn(1, 2, 4, 24, 24, requires_grad=True)
    labels = torch.randint(0, 4, (1, 2, 24, 24))
    low = emb.to(torch.bfloat16)
    cos = CosineEmbeddingLoss(neighbor_radius=10.0, seed=0)
    with autocast_context("cpu", True):
        value = cos(low, labels)
    ref = CosineEmbeddingLoss(neighbor_radius=10.0, seed=0)(low.float(), labels)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, ref)
    (g,) = torch.autograd.grad(value, emb)
    assert torch.isfinite(g).all()

    ce = StackedLoss(ClipCrossEntropyLoss())
    classes = torch.randint(0, 4, (1, 2, 24, 24))
    with autocast_context("cpu", True):
        value = ce([low, low], classes)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, ce([low.float(), low.float()], classes))


# ---------------------------------------------------------------------------------------------- switch, inferers


@pytest.mark.parametrize(
    "value, expected",
    [(True, True), (False, False), (None, False), ("true", True), ("False", False), ("0", False), ("on", True)],
)
def test_resolve_amp(value, expected) -> None:
    assert resolve_amp(value, "cpu") is expected


def test_resolve_amp_auto_and_bad_values() -> None:
    assert resolve_amp("auto", "cpu") is cpu_bf16_supported()
    assert resolve_amp("auto", "meta") is False
    assert cuda_amp(True, "cpu") is False and cuda_amp("true", "cuda") is True and cuda_amp("false", "cuda") is False
    with pytest.raises(ValueError, match="amp"):
        resolve_amp("maybe")
    with pytest.raises(ValueError, match="amp"):
        StreamingInferer(amp="maybe")


@pytest.mark.parametrize("amp", [True, False, "false"])
def test_autocast_inferer(amp) -> None:
    net = _net(True)
    clip = torch.randn(1, 2, 1, 16, 16)
    seen = []
    hook = net.hourglasses[0].head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    out = AutocastInferer(amp)(clip, net)
    hook.remove()
    assert all(o.dtype == torch.float32 for o in out)
    assert seen == [torch.bfloat16 if resolve_amp(amp) else torch.float32]
    assert not torch.is_autocast_enabled("cpu")


def test_streaming_inferer_amp() -> None:
    net = _net(True).eval()
    clip = torch.randn(1, 3, 1, 20, 28)
    with torch.inference_mode():
        ref = StreamingInferer(image_size=(32, 32))(clip, net)
        out = StreamingInferer(image_size=(32, 32), amp=True)(clip, net)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    _assert_close_bf16(out, ref, channel_dim=2)


def test_tiled_segmenter_amp_embeddings_are_float32() -> None:
    net = _net(True).eval()
    frame = torch.randn(1, 40, 40)
    ref = TiledPairSegmenter(net, 32, {}, amp=False)
    low = TiledPairSegmenter(net, 32, {}, amp=True)
    for _ in range(2):
        a, b = ref.embed(frame), low.embed(frame)
    assert b.dtype == torch.float32 and b.shape == a.shape
    _assert_close_bf16(b, a, channel_dim=1)


# ---------------------------------------------------------------------------------------------- trainer


@pytest.mark.parametrize("amp", ["true", "false"])
def test_trainer_amp_one_iteration(amp: str) -> None:
    """The bundle's SupervisedTrainer (lv_mri, tiny) runs one iteration with ``amp`` on CPU: the forward
    pass in bfloat16 (AutocastInferer), the loss in float32, finite updates."""
    from pathlib import Path

    from ignite.engine import Events
    from monai.bundle import ConfigParser

    root = Path(__file__).resolve().parents[1]
    parser = ConfigParser()
    parser.read_config([str(root / "bundles" / "lv_mri" / "train.json")])
    parser.parse()  # expands the %configs/train_common.json macros, so that train#handlers exists
    parser.update(
        {
            "project_root": str(root),
            "device": "$torch.device('cpu')",
            "amp": amp,
            "image_size": [32, 32],
            "num_levels": 3,
            "num_filters": 8,
            "max_iterations": 1,
            "val_interval": 1,
            "synthetic#num_cases": 4,
            "synthetic#image_size": [40, 48],
            "synthetic#num_frames": 6,
            "clip_length": 3,
            "train#handlers": [],  # no validation, MLflow or progress output
        }
    )
    parser.parse()
    trainer = parser.get_parsed_content("train#trainer")
    network = parser.get_parsed_content("network")
    assert trainer.amp is False  # MONAI's own amp is CUDA-only; the inferer autocasts on CPU
    before = [p.detach().clone() for p in network.parameters()]
    seen = []
    hook = network.hourglasses[-1].head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    losses = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"]))
    trainer.run()
    hook.remove()
    assert seen == [torch.bfloat16 if amp == "true" else torch.float32]
    assert len(losses) == 1 and losses[0].dtype == torch.float32 and torch.isfinite(losses[0])
    after = list(network.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before))
