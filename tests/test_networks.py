"""Tests for cosinetrack.networks: ConvGRU cell, hourglass and the recurrent stacked hourglass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cosinetrack.networks.convgru import Conv3x3, ConvGRUCell, conv3x3_weight_grad
from cosinetrack.networks.hourglass import Hourglass
from cosinetrack.networks.stacked import RecurrentStackedHourglass

TINY = {"in_channels": 1, "out_channels": 4, "num_levels": 3, "num_filters": 8}


pytestmark = pytest.mark.usefixtures("single_thread")


def _net(recurrent: bool = True, seed: int = 0, perturb: float = 0.0, **kwargs) -> RecurrentStackedHourglass:
    torch.manual_seed(seed)
    net = RecurrentStackedHourglass(**{**TINY, "recurrent": recurrent, **kwargs})
    if perturb:  # make the (zero-initialized) gates and biases non-trivial
        with torch.no_grad():
            for p in net.parameters():
                p.add_(perturb * torch.randn_like(p))
    return net


@pytest.mark.parametrize("recurrent", [True, False])
@pytest.mark.parametrize("size", [(32, 32), (30, 44)])
def test_output_shapes(recurrent: bool, size: tuple[int, int]) -> None:
    net = _net(recurrent)
    clip = torch.randn(2, 3, 1, *size)
    outs = net(clip)
    assert isinstance(outs, tuple) and len(outs) == 2
    for o in outs:
        assert o.shape == (2, 3, 4, *size)
        assert torch.isfinite(o).all()
    outs = net(clip[:, 0])
    assert len(outs) == 2 and all(o.shape == (2, 4, *size) for o in outs)
    outs, state = net.step(clip[:, 0])
    assert all(o.shape == (2, 4, *size) for o in outs)
    assert len(state) == 2 and all(len(s) == (3 if recurrent else 0) for s in state)


def test_num_stacks_and_out_channels() -> None:
    net = _net(num_stacks=3, out_channels=3)
    outs = net(torch.randn(1, 2, 1, 16, 24))
    assert len(outs) == 3 and all(o.shape == (1, 2, 3, 16, 24) for o in outs)


def test_still_image_equals_one_frame_clip() -> None:
    net = _net(perturb=0.05)
    x = torch.randn(2, 1, 24, 40)
    a = net(x)
    b = net(x.unsqueeze(1))
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v[:, 0])


@pytest.mark.parametrize("recurrent", [True, False])
def test_clip_forward_equals_stepping(recurrent: bool) -> None:
    net = _net(recurrent, perturb=0.05)
    clip = torch.randn(2, 5, 1, 24, 40)
    with torch.no_grad():
        full = net(clip)
        state, stepped = None, []
        for t in range(clip.shape[1]):
            outs, state = net.step(clip[:, t], state)
            stepped.append(outs)
        # chunked streaming (2 + 3 frames) must agree as well
        first, state = net.forward_sequence(clip[:, :2])
        second, _ = net.forward_sequence(clip[:, 2:], state)
    for k in range(2):
        torch.testing.assert_close(torch.stack([s[k] for s in stepped], dim=1), full[k], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(torch.cat([first[k], second[k]], dim=1), full[k], atol=1e-5, rtol=1e-5)


def test_recurrence_matters_and_non_recurrent_frames_are_independent() -> None:
    clip = torch.randn(1, 4, 1, 16, 16)
    rec, non = _net(True, perturb=0.05), _net(False, perturb=0.05)
    with torch.no_grad():
        # recurrent: last frame output depends on the earlier frames
        a = rec(clip)[-1][:, -1]
        b = rec(clip[:, -1])[-1]
        assert (a - b).abs().max() > 1e-4
        # non-recurrent: a clip is just a batch of independent frames
        a = non(clip)[-1][0]
        b = non(clip[0])[-1]
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("recurrent", [True, False])
def test_gradient_reaches_first_frame_only_if_recurrent(recurrent: bool) -> None:
    net = _net(recurrent)  # default init: zero gate kernels still let the state through (u = 0.5)
    clip = torch.randn(1, 4, 1, 16, 24, requires_grad=True)
    outs = net(clip)
    outs[-1][:, -1].square().sum().backward()
    g0 = clip.grad[:, 0].abs().max().item()
    assert clip.grad[:, -1].abs().max() > 0
    if recurrent:
        assert g0 > 0
    else:
        assert g0 == 0.0


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_recurrent_vs_not() -> None:
    # Per level: recurrent = contract + GRU (3F input + 2F + F hidden) + expand = 8 F^2 k^2,
    # non-recurrent = 3 F^2 k^2, so the ratio is ~8/3; we require 2 < ratio < 3 (same order).
    for kwargs in ({}, TINY):
        rec = _count(RecurrentStackedHourglass(**kwargs, recurrent=True))
        non = _count(RecurrentStackedHourglass(**kwargs, recurrent=False))
        assert 2.0 < rec / non < 3.0, (kwargs, rec, non)
    # paper configuration (7 levels, 64 filters, 2 stacks, 16 embedding channels)
    assert _count(RecurrentStackedHourglass()) == 4_088_352


def test_second_stack_sees_image_and_normalized_first_output() -> None:
    net = _net(perturb=0.05)
    assert net.hourglasses[0].contract[0].in_channels == 1
    assert net.hourglasses[1].contract[0].in_channels == 1 + 4
    clip = torch.randn(1, 3, 1, 16, 24)
    with torch.no_grad():
        a1, a2 = net(clip)
        head = net.hourglasses[0].head
        head.weight.mul_(7.0)
        head.bias.mul_(7.0)
        b1, b2 = net(clip)
    torch.testing.assert_close(b1, 7.0 * a1, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(b2, a2, atol=1e-5, rtol=1e-4)  # second stack is scale-invariant


def test_initialization() -> None:
    torch.manual_seed(0)
    net = RecurrentStackedHourglass(num_levels=4, num_filters=32)
    f = 32
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            assert isinstance(m, Conv3x3)
            if m.bias is not None:
                assert torch.count_nonzero(m.bias) == 0
        assert not isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.Dropout, torch.nn.GroupNorm))
    gru = net.hourglasses[0].skip[0]
    assert isinstance(gru, ConvGRUCell)
    assert torch.count_nonzero(gru.input_conv.weight[: 2 * f]) == 0
    assert torch.count_nonzero(gru.hidden_gates.weight) == 0
    std = (2.0 / ((f + f) * 9)) ** 0.5
    assert abs(gru.hidden_candidate.weight.std().item() / std - 1) < 0.1
    assert abs(gru.input_conv.weight[2 * f :].std().item() / std - 1) < 0.1
    conv = net.hourglasses[0].expand[0]
    assert abs(conv.weight.std().item() / (2.0 / (f * 9)) ** 0.5 - 1) < 0.1


@pytest.mark.parametrize("shape", [(1, 24, 24), (2, 3, 24, 24), (2, 3, 2, 24, 24), (1, 2, 3, 1, 24, 24)])
def test_bad_input_shape_raises(shape: tuple[int, ...]) -> None:
    net = _net()
    with pytest.raises(ValueError, match=r"expects .*\(B, T, C, H, W\).*in_channels = 1"):
        net(torch.randn(*shape))


#: (frame shape, pass the state of a first (1, 1, 16, 16) step, ``match``)
STEP_ERRORS = [
    pytest.param((1, 1, 1, 16, 16), False, r"step expects a frame \(B, C, H, W\)", id="clip-not-frame"),
    pytest.param((1, 1, 32, 16), True, "state does not match", id="state-of-another-size"),
    pytest.param((2, 1, 16, 16), True, "state does not match", id="state-of-another-batch"),
]


@pytest.mark.parametrize("shape, with_state, problem", STEP_ERRORS)
def test_step_rejects_bad_frame_and_state(shape: tuple[int, ...], with_state: bool, problem: str) -> None:
    net = _net()
    state = (net.step(torch.randn(1, 1, 16, 16))[1],) if with_state else ()
    with pytest.raises(ValueError, match=problem):
        net.step(torch.randn(*shape), *state)


def test_hourglass_requires_divisible_size() -> None:
    hg = Hourglass(1, 2, num_levels=3, num_filters=4)
    y, state = hg(torch.randn(6, 1, 8, 12), num_steps=3)
    assert y.shape == (6, 2, 8, 12) and [s.shape for s in state] == [(2, 4, 8, 12), (2, 4, 4, 6), (2, 4, 2, 3)]
    with pytest.raises(ValueError, match="divisible by 4"):
        hg(torch.randn(1, 1, 10, 12))
    with pytest.raises(ValueError, match="C=1"):
        hg(torch.randn(1, 2, 8, 8))


def test_convgru_matches_textbook_equations() -> None:
    torch.manual_seed(0)
    cin, f, t_len, b = 3, 4, 4, 2
    cell = ConvGRUCell(cin, f).double()
    with torch.no_grad():
        for p in cell.parameters():
            p.normal_(0.0, 0.3)
    x = torch.randn(t_len * b, cin, 6, 7, dtype=torch.float64, requires_grad=True)

    def reference(x: torch.Tensor) -> torch.Tensor:
        w, bias = cell.input_conv.weight, cell.input_conv.bias
        u_w, c_w = cell.hidden_gates.weight, cell.hidden_candidate.weight
        h = torch.zeros(b, f, 6, 7, dtype=torch.float64)
        outs = []
        for t in range(t_len):
            g = F.conv2d(x[t * b : (t + 1) * b], w, bias, padding=1)
            u = torch.sigmoid(g[:, :f] + F.conv2d(h, u_w[:f], padding=1))
            r = torch.sigmoid(g[:, f : 2 * f] + F.conv2d(h, u_w[f:], padding=1))
            c = torch.relu(g[:, 2 * f :] + F.conv2d(r * h, c_w, padding=1))
            h = u * h + (1 - u) * c
            outs.append(h)
        return torch.cat(outs)

    out, last = cell.forward_sequence(x, t_len)
    ref = reference(x)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(last, ref[-b:])
    weights = torch.randn_like(ref)
    inputs = [x, *cell.parameters()]
    for g1, g2 in zip(
        torch.autograd.grad((out * weights).sum(), inputs), torch.autograd.grad((ref * weights).sum(), inputs)
    ):
        torch.testing.assert_close(g1, g2)
    # single-step API
    torch.testing.assert_close(cell(x[:b]), ref[:b])


@pytest.mark.parametrize("shape", [(3, 8, 5, 7, 11), (2, 9, 16, 64, 70), (1, 1, 4, 5, 5)])
def test_conv3x3_weight_grad_matches_aten(shape: tuple[int, ...]) -> None:
    n, cin, cout, h, w = shape
    torch.manual_seed(0)
    x = torch.randn(n, cin, h, w, dtype=torch.float64)
    g = torch.randn(n, cout, h, w, dtype=torch.float64)
    weight = torch.randn(cout, cin, 3, 3, dtype=torch.float64)
    ref = torch.ops.aten.convolution_backward(
        g, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, True, False]
    )[1]
    torch.testing.assert_close(conv3x3_weight_grad(g, x), ref)


@pytest.mark.parametrize("gemm", [True, False])
def test_conv3x3_backward_matches_conv2d(gemm: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    import cosinetrack.networks.convgru as convgru

    monkeypatch.setattr(convgru, "GEMM_WEIGHT_GRAD", gemm)  # both weight-gradient paths, on any CPU
    torch.manual_seed(0)
    conv = Conv3x3(8, 16).double()
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 8, 96, 90, dtype=torch.float64, requires_grad=True)  # large enough for the GEMM path
    y = conv(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    ref = F.conv2d(x, conv.weight, conv.bias, padding=1)
    torch.testing.assert_close(y, ref)
    w = torch.randn_like(ref)
    params = [x, conv.weight, conv.bias]
    for g1, g2 in zip(torch.autograd.grad((y * w).sum(), params), torch.autograd.grad((ref * w).sum(), params)):
        torch.testing.assert_close(g1, g2)


def test_monai_bundle_target() -> None:
    from monai.bundle import ConfigParser

    config = {
        "network_def": {
            "_target_": "cosinetrack.networks.RecurrentStackedHourglass",
            "in_channels": 1,
            "out_channels": 3,
            "num_levels": 3,
            "num_filters": 8,
            "recurrent": False,
        }
    }
    net = ConfigParser(config).get_parsed_content("network_def")
    assert isinstance(net, RecurrentStackedHourglass)
    assert net(torch.randn(1, 2, 1, 8, 8))[-1].shape == (1, 2, 3, 8, 8)


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("with_residual", [True, False])
def test_conv3x3_fused_float32_matches_autograd(relu: bool, with_residual: bool) -> None:
    torch.manual_seed(0)
    conv = Conv3x3(8, 16, relu=relu)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 8, 96, 90, requires_grad=True)
    res = torch.randn(2, 16, 96, 90, requires_grad=True) if with_residual else None
    y = conv(x, residual=res)
    ref = F.conv2d(x, conv.weight, conv.bias, padding=1)
    if res is not None:
        ref = ref + res
    if relu:
        ref = torch.relu(ref)
    torch.testing.assert_close(y, ref, atol=1e-4, rtol=1e-4)
    w = torch.randn_like(ref)
    params = [x, conv.weight, conv.bias] + ([res] if res is not None else [])
    for g1, g2 in zip(torch.autograd.grad((y * w).sum(), params), torch.autograd.grad((ref * w).sum(), params)):
        torch.testing.assert_close(g1, g2, atol=1e-3, rtol=1e-4)


def test_benchmark_script_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_network.py"
    spec = importlib.util.spec_from_file_location("bench_network", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main("--size 16 --levels 2 --filters 4 --frames 2 --repeats 1 --threads 1".split())
    out = capsys.readouterr().out
    assert "| recurrent | train fwd+bwd |" in out and "| non-recurrent | clip forward |" in out
    assert "ratio recurrent / non-recurrent" in out


def _framewise(size_multiple: int = 4):
    from monai.networks.nets import BasicUNet

    from cosinetrack.networks import FrameWiseNetwork

    torch.manual_seed(0)
    unet = BasicUNet(spatial_dims=2, in_channels=1, out_channels=3, features=(4, 4, 4, 4, 4, 4))
    return FrameWiseNetwork(unet, in_channels=1, out_channels=3, size_multiple=size_multiple)


@pytest.mark.parametrize("shape", [(2, 3, 1, 32, 32), (1, 2, 1, 30, 45), (2, 1, 32, 32), (1, 1, 17, 33)])
def test_framewise_network_keeps_shapes_and_frames_are_independent(shape: tuple[int, ...]) -> None:
    net = _framewise(size_multiple=16).eval()
    x = torch.randn(*shape)
    (out,) = net(x)
    assert out.shape == (*shape[:-3], 3, *shape[-2:])
    if x.ndim == 5:  # a clip is its frames, each alone, streamed with no state
        for t in range(x.shape[1]):
            (step,), state = net.step(x[:, t])
            assert state is None
            torch.testing.assert_close(step, out[:, t])
        with torch.no_grad():
            shuffled = net(x.flip(1))[0].flip(1)
        torch.testing.assert_close(shuffled, out.detach())


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"network": "unet"}, "must be a torch.nn.Module"),
        ({"in_channels": 0}, "in_channels must be a positive int"),
        ({"out_channels": True}, "out_channels must be a positive int"),
        ({"size_multiple": 2.0}, "size_multiple must be a positive int"),
    ],
)
def test_framewise_network_checks_its_arguments(kwargs: dict, problem: str) -> None:
    from cosinetrack.networks import FrameWiseNetwork

    with pytest.raises((TypeError, ValueError), match=problem):
        FrameWiseNetwork(**{"network": torch.nn.Identity(), **kwargs})


@pytest.mark.parametrize(
    "net, shape, problem",
    [
        ("unet", (1, 2, 16, 16), r"C = in_channels = 1; got shape \(1, 2, 16, 16\)"),
        ("unet", (16, 16), r"expects a clip"),
        ("identity", (1, 1, 16, 16), r"returned shape \(1, 1, 16, 16\), expected \(N, out_channels=3"),
    ],
)
def test_framewise_network_names_bad_shapes(net: str, shape: tuple[int, ...], problem: str) -> None:
    from cosinetrack.networks import FrameWiseNetwork

    model = _framewise() if net == "unet" else FrameWiseNetwork(torch.nn.Identity(), 1, 3)
    with pytest.raises(ValueError, match=problem):
        model(torch.randn(*shape))
