"""Convolutional gated recurrent unit (ConvGRU) with a ReLU candidate, split for batched clips.

The cell follows Ballas et al. (ICLR 2016) as used by Payer et al. (MICCAI 2018), with the
candidate activation ReLU instead of tanh::

    u  = sigmoid(W_u * x + U_u * h + b_u)           update gate
    r  = sigmoid(W_r * x + U_r * h + b_r)           reset gate
    c  = relu(W_c * x + U_c * (r . h) + b_c)        candidate
    h' = u . h + (1 - u) . c

``*`` is a 3x3 convolution ("same" padding), ``.`` the element-wise product. The convolutions are
split into an *input part* ``W_u, W_r, W_c`` (one conv, ``in_channels -> 3 * hidden_channels``,
with the biases) and a *hidden part* ``U_u, U_r`` (one conv, ``hidden -> 2 * hidden``) and ``U_c``
(``hidden -> hidden``), both without bias. The input part does not depend on the state, so for a
clip it runs once over all frames (one large batched convolution, :meth:`ConvGRUCell.input_part`);
only the hidden part runs frame by frame (:meth:`ConvGRUCell.recur`, driven by
:meth:`ConvGRUCell.forward_sequence`). With the zero initial state
the hidden part contributes exactly zero, so the first frame skips it.

Initialization (as in the authors' reference code): gate kernels ``W_u, W_r, U_u, U_r`` start at
zero (so ``u = r = 0.5`` at the start of training), candidate kernels ``W_c, U_c`` He-normal with
the fan-in of the unsplit candidate convolution ``(in_channels + hidden_channels) * 3 * 3``,
biases zero.

This module also holds :class:`Conv3x3`, the 3x3 "same" convolution used throughout the hourglass:
a drop-in ``nn.Conv2d`` whose CPU backward computes the weight gradient with nine large GEMMs over
channels-last memory instead of oneDNN's slow channels-last weight-gradient kernel (measured
~3x faster on a 2-core AVX2 EPYC; see ``benchmarks/bench_network.py``). On AVX-512 CPUs oneDNN's
kernel is the faster one and is kept (:data:`GEMM_WEIGHT_GRAD`).

Mixed precision on CPU. The fused oneDNN op is not on autocast's list, so autocast alone would leave
every convolution in float32. :class:`Conv3x3` therefore reads the CPU autocast state itself: under
``torch.autocast("cpu", dtype=torch.bfloat16)`` it casts its input, addend and weight to bfloat16
(autograd-tracked casts: the weight gradient is computed in bfloat16 and arrives in float32 at the
parameter) and runs the fused bfloat16 kernel; the bias gradient is accumulated in float32. The
element-wise ConvGRU and hourglass ops then run in bfloat16 too (their inputs are bfloat16), so
outputs and recurrent states are bfloat16; cast outputs to float32 before losses and clustering
(:func:`cosinetrack.inference.autocast_context` and the inferers do).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Conv3x3", "ConvGRUCell", "conv3x3_fused", "conv3x3_weight_grad", "cpu_bf16_supported"]

_CL = torch.channels_last

# Below these sizes the GEMM weight gradient is not worth its Python overhead.
_GEMM_MIN_PIXELS = 128 * 128
_GEMM_MIN_CHANNELS = 8


def _default_gemm_weight_grad() -> bool:
    """GEMM weight gradient except on AVX-512 CPUs, where oneDNN's own kernel is as fast or faster.

    Measured (``docs/benchmarks.md``): on a 2-core AVX2 EPYC the GEMMs were ~3x faster than oneDNN's
    channels-last weight gradient; on a 2-core AVX-512 (Zen 4) EPYC oneDNN's kernel is faster, in
    float32 (paper-size recurrent training clip, 1 thread: 47.6 s against 52.7 s) and in bfloat16
    (27.1 s against 28.5 s).
    """
    try:
        return "AVX512" not in torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        return True


# Module switch (benchmarks flip it): compute large weight gradients with conv3x3_weight_grad.
GEMM_WEIGHT_GRAD = _default_gemm_weight_grad()


@functools.lru_cache(maxsize=256)
def _invalid_rows(n: int, h: int, w: int, dy: int, dx: int, device: str) -> tuple[int, int, Tensor, Tensor, int]:
    """Flat pixel indices where the flattened shift by ``(dy, dx)`` reads a wrong neighbor.

    For the flattened ``(n * h * w)`` pixel axis, pixel ``p`` paired with pixel ``p + off``
    (``off = dy * w + dx``) is the true neighbor ``(y + dy, x + dx)`` unless that neighbor lies
    outside the image, in which case the flat index wraps into the neighboring row (or image).

    Returns:
        ``(p0, p1, idx, idx + off, off)``: the flat range ``[p0, p1)`` where ``p + off`` is in
        bounds, the ``int64`` indices in that range whose pairing is invalid, their (wrong)
        partners, and the flat offset.
    """
    off = dy * w + dx
    total = n * h * w
    p0, p1 = max(0, -off), min(total, total - off)
    p = torch.arange(p0, p1)
    y = (p // w) % h
    x = p % w
    bad = (y + dy < 0) | (y + dy >= h) | (x + dx < 0) | (x + dx >= w)
    idx = p[bad].to(device)
    return p0, p1, idx, idx + off, off


def conv3x3_weight_grad(grad_out: Tensor, x: Tensor) -> Tensor:
    """Weight gradient of a stride-1, padding-1, 3x3 convolution, as nine GEMMs.

    With channels-last memory the pixels of ``x`` and ``grad_out`` form ``(N*H*W, C)`` matrices,
    and the tap ``(ky, kx)`` of the weight gradient is ``grad_out[p]^T @ x[p + off]`` summed over
    pixels, ``off = (ky - 1) * W + (kx - 1)`` -- a contiguous slice of the flattened ``x``. Pairs
    whose shifted index wraps into the next row (image border) are subtracted afterwards with a
    small GEMM over the ``O(N*(H+W))`` border pixels.

    Args:
        grad_out: ``(N, C_out, H, W)`` gradient w.r.t. the convolution output.
        x: ``(N, C_in, H, W)`` convolution input.

    Returns:
        ``(C_out, C_in, 3, 3)`` weight gradient.
    """
    n, c_in, h, w = x.shape
    c_out = grad_out.shape[1]
    xf = x.contiguous(memory_format=_CL).permute(0, 2, 3, 1).reshape(n * h * w, c_in)
    gf = grad_out.contiguous(memory_format=_CL).permute(0, 2, 3, 1).reshape(n * h * w, c_out)
    taps = x.new_empty(3, 3, c_out, c_in)
    for ky in range(3):
        for kx in range(3):
            p0, p1, bad, bad_partner, off = _invalid_rows(n, h, w, ky - 1, kx - 1, str(x.device))
            tap = taps[ky, kx]
            torch.mm(gf[p0:p1].t(), xf[p0 + off : p1 + off], out=tap)
            if bad.numel():
                tap.sub_(gf.index_select(0, bad).t() @ xf.index_select(0, bad_partner))
    return taps.permute(2, 3, 0, 1).contiguous()


_PAD, _STRIDE, _DILATION = [1, 1], [1, 1], [1, 1]


def _has_fused_op() -> bool:
    try:  # private oneDNN op (used by torch.compile's CPU backend); fall back if a build lacks it
        return hasattr(torch.ops.mkldnn, "_convolution_pointwise")
    except (AttributeError, RuntimeError):
        return False


_HAS_FUSED_OP = _has_fused_op()


def _has_bf16_kernels() -> bool:
    try:  # oneDNN's check for native bfloat16 support (AVX512-BF16 / AMX); private, hence the guard
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


_HAS_BF16_KERNELS = _has_bf16_kernels()


def cpu_bf16_supported() -> bool:
    """Whether this CPU runs oneDNN's bfloat16 convolutions natively (AVX512-BF16 or AMX)."""
    return _HAS_BF16_KERNELS and torch.backends.mkldnn.is_available()


def _fused_conv_available(x: Tensor, weight: Tensor) -> bool:
    """Whether oneDNN's fused conv + add + ReLU kernels apply (CPU float32, or bfloat16 where native)."""
    return (
        x.device.type == "cpu"
        and x.dtype == weight.dtype
        and (x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and _HAS_BF16_KERNELS))
        and _HAS_FUSED_OP
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


def _strictly_channels_last(t: Tensor) -> bool:
    """Channels-last and not also plain contiguous (sizes of 1 make a layout ambiguous)."""
    return t.is_contiguous(memory_format=_CL) and not t.is_contiguous()


def _cpu_autocast_dtype() -> torch.dtype | None:
    """The lower-precision dtype of an active CPU autocast region, else ``None``."""
    if torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu")
    return None


def conv3x3_fused(x: Tensor, weight: Tensor, bias: Tensor | None, residual: Tensor | None, relu: bool) -> Tensor:
    """``act(conv3x3(x, weight, bias) + residual)`` without autograd; ``act`` = ReLU or identity.

    On CPU float32 (and bfloat16 where the CPU has native bfloat16) this is one oneDNN convolution
    with the addition and the ReLU as post-ops (no extra passes over memory); otherwise plain PyTorch
    ops. ``x``, ``weight`` and ``residual`` share one dtype, the result's; ``bias`` may be float32
    with bfloat16 ``x``. The result is channels-last on CPU.
    """
    if bias is not None and bias.dtype != x.dtype:
        bias = bias.to(x.dtype)
    fused = _fused_conv_available(x, weight)
    if fused and residual is not None and x.dtype != torch.float32:
        # oneDNN fuses the addition only when the input or the weight is unambiguously channels-last
        # (torch's suggest_memory_format); otherwise it adds with an add_relu that has no bfloat16
        # kernel. Channels-last weights (Conv3x3 casts them so) make that hold for C_in > 1; 1x1 frames
        # of a one-channel input take the unfused path below.
        fused = _strictly_channels_last(x) or _strictly_channels_last(weight)
    if fused:
        if residual is None:
            y = torch.ops.mkldnn._convolution_pointwise(
                x, weight, bias, _PAD, _STRIDE, _DILATION, 1, "relu" if relu else "none", [], ""
            )
        else:
            if x.stride(1) != 1 or residual.stride(1) != 1:
                # channels innermost (channels-last, or channel slices of it) for both: other layouts take
                # an unfused add_relu path that has no bfloat16 kernel
                x, residual = x.contiguous(memory_format=_CL), residual.contiguous(memory_format=_CL)
            y = torch.ops.mkldnn._convolution_pointwise.binary(
                x, residual, weight, bias, _PAD, _STRIDE, _DILATION, 1, "add", None, "relu" if relu else None, [], None
            )
    else:
        y = F.conv2d(x, weight, bias, padding=1)
        if residual is not None:
            y = y + residual
        if relu:
            y = y.relu_()
    return y.contiguous(memory_format=_CL) if x.device.type == "cpu" else y


class _Conv3x3Function(torch.autograd.Function):
    """``act(conv2d(x, weight, bias, padding=1) + residual)`` with fused forward and GEMM weight grad."""

    @staticmethod
    def forward(ctx, x, weight, bias, residual, relu):  # type: ignore[override]
        y = conv3x3_fused(x, weight, bias, residual, relu)
        ctx.relu = relu
        ctx.has_bias = bias is not None
        ctx.bias_dtype = None if bias is None else bias.dtype
        ctx.save_for_backward(x, weight, y if relu else None)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        x, weight, y = ctx.saved_tensors
        need_x, need_w, need_b, need_res, _ = ctx.needs_input_grad
        grad_out = grad_out.contiguous(memory_format=_CL)
        if ctx.relu:
            grad_out = torch.ops.aten.threshold_backward(grad_out, y, 0)
        n, c_in, h, w = x.shape
        use_gemm = (
            GEMM_WEIGHT_GRAD
            and need_w
            and n * h * w >= _GEMM_MIN_PIXELS
            and min(c_in, weight.shape[0]) >= _GEMM_MIN_CHANNELS
        )
        grad_x = grad_w = grad_b = None
        if need_x or (need_w and not use_gemm):
            grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, _STRIDE, _PAD, _DILATION, False, [0, 0], 1,
                [need_x, need_w and not use_gemm, False],
            )
        if use_gemm:
            grad_w = conv3x3_weight_grad(grad_out, x)
        if need_b and ctx.has_bias:
            # column sums of the (N*H*W, C_out) pixel matrix; reduced-precision sums accumulate in float32
            if grad_out.is_contiguous(memory_format=_CL):
                grad_b = grad_out.permute(0, 2, 3, 1).reshape(-1, grad_out.shape[1]).sum(0)
            else:
                grad_b = grad_out.sum(dim=(0, 2, 3))
            grad_b = grad_b.to(ctx.bias_dtype)
        return grad_x, grad_w, grad_b, grad_out if need_res else None, None


class _SplitFrames(torch.autograd.Function):
    """Split time-major ``(T * B, 3F, H, W)`` pre-activations into per-frame gate / candidate views.

    Returns ``2 * T`` views: for each frame ``t`` the ``(B, 2F, H, W)`` gate part and the
    ``(B, F, H, W)`` candidate part. Plain slicing would make autograd allocate (and add up) a
    zero-filled gradient of the whole input for every slice -- O(T^2) memory traffic; here the
    backward writes each gradient once into one channels-last buffer.
    """

    @staticmethod
    def forward(ctx, gx: Tensor, num_steps: int, gate_channels: int):  # type: ignore[override]
        batch = gx.shape[0] // num_steps
        ctx.num_steps, ctx.gate_channels = num_steps, gate_channels
        ctx.meta = (gx.shape, gx.dtype, gx.device, gx.is_contiguous(memory_format=_CL))
        outs = []
        for t in range(num_steps):
            frame = gx[t * batch : (t + 1) * batch]
            outs += [frame[:, :gate_channels], frame[:, gate_channels:]]
        return tuple(outs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads: Tensor):  # type: ignore[override]
        shape, dtype, device, channels_last = ctx.meta
        fmt = _CL if channels_last else torch.contiguous_format
        grad = torch.empty(shape, dtype=dtype, device=device, memory_format=fmt)
        batch, g = shape[0] // ctx.num_steps, ctx.gate_channels
        for t in range(ctx.num_steps):
            frame = grad[t * batch : (t + 1) * batch]
            for part, gr in ((frame[:, :g], grads[2 * t]), (frame[:, g:], grads[2 * t + 1])):
                if gr is None:
                    part.zero_()
                else:
                    part.copy_(gr)
        return grad, None, None


class Conv3x3(nn.Conv2d):
    """3x3 convolution, stride 1, zero "same" padding, with optional fused addend and ReLU.

    ``forward(x, residual=None)`` returns ``act(conv(x) + bias + residual)``: ``x`` is
    ``(N, C_in, H, W)``, ``residual`` (optional) and the result ``(N, C_out, H, W)``; ``act`` is ReLU
    when ``relu=True``, else the identity. Same parameters and ``state_dict`` as
    ``nn.Conv2d(in_channels, out_channels, 3, padding=1)``; He-normal (ReLU gain) weights, zero bias.

    On CPU the output is channels-last, the forward is one oneDNN kernel (float32, or bfloat16
    under CPU autocast: see the module docstring) and the backward computes the weight gradient with
    :func:`conv3x3_weight_grad`. On CPU an input of another dtype than the computation's is cast
    (e.g. a bfloat16 state fed to a float32 network).

    Args:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        bias: whether to add a learnable bias.
        relu: apply a ReLU to the output (fused).
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, relu: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, padding=1, bias=bias)
        self.relu = relu
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", relu=True" if self.relu else "")

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        if x.device.type != "cpu":
            y = super().forward(x)
            if residual is not None:
                y = y + residual
            return torch.relu(y) if self.relu else y
        weight = self.weight
        dtype = weight.dtype
        if dtype == torch.float32:  # as autocast: float64 stays float64
            dtype = _cpu_autocast_dtype() or dtype
        if weight.dtype != dtype:
            weight = weight.to(dtype, memory_format=_CL)  # channels-last: see conv3x3_fused
        if x.dtype != dtype:
            x = x.to(dtype)
        if residual is not None and residual.dtype != dtype:
            residual = residual.to(dtype)
        return _Conv3x3Function.apply(x, weight, self.bias, residual, self.relu)


class ConvGRUCell(nn.Module):
    """Convolutional GRU cell with 3x3 kernels and a ReLU candidate (see module docstring).

    Shapes: input ``x`` ``(N, in_channels, H, W)``, state ``h`` ``(N, hidden_channels, H, W)``.

    Args:
        in_channels: channels of the input ``x``.
        hidden_channels: channels of the state and the output.
    """

    def __init__(self, in_channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        f = hidden_channels
        # Input part, output channels ordered [update u | reset r | candidate c].
        self.input_conv = Conv3x3(in_channels, 3 * f, bias=True)
        # Hidden part: gates [u | r] from h, candidate from r . h.
        self.hidden_gates = Conv3x3(f, 2 * f, bias=False)
        self.hidden_candidate = Conv3x3(f, f, bias=False, relu=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Zero gate kernels and biases; He-normal candidate kernels with the joint fan-in."""
        f = self.hidden_channels
        std = math.sqrt(2.0 / ((self.in_channels + f) * 9))
        with torch.no_grad():
            self.input_conv.weight.zero_()
            self.input_conv.weight[2 * f :].normal_(0.0, std)
            self.input_conv.bias.zero_()
            self.hidden_gates.weight.zero_()
            self.hidden_candidate.weight.normal_(0.0, std)

    def input_part(self, x: Tensor) -> Tensor:
        """State-independent pre-activations ``W * x + b``: ``(N, C_in, H, W) -> (N, 3F, H, W)``."""
        return self.input_conv(x)

    def recur(self, gx_gates: Tensor, gx_cand: Tensor, h: Tensor | None) -> Tensor:
        """One time step from precomputed input pre-activations.

        Args:
            gx_gates: ``(B, 2F, H, W)`` gate part ``[u | r]`` of :meth:`input_part` for this frame.
            gx_cand: ``(B, F, H, W)`` candidate part of :meth:`input_part` for this frame.
            h: ``(B, F, H, W)`` previous state, or ``None`` for the zero state.

        Returns:
            ``(B, F, H, W)`` new state (which is also the cell output).
        """
        f = self.hidden_channels
        if h is not None and h.dtype != gx_gates.dtype:  # a state from a run in another precision
            h = h.to(gx_gates.dtype)
        if h is None:  # zero state: U * 0 = 0 and u . 0 = 0, so h' = (1 - u) . relu(W_c * x + b_c)
            u = torch.sigmoid(gx_gates.split(f, dim=1)[0])
            c = torch.relu(gx_cand)
            return torch.addcmul(c, u, c, value=-1.0)
        gates = self.hidden_gates(h, residual=gx_gates)
        if gates.dtype in (torch.bfloat16, torch.float16):
            # reduced precision: element-wise ops on channel slices of a channels-last tensor are several
            # times slower than on whole tensors, so u and r get their own memory (no extra pass: the
            # sigmoid writes them); float32 is as fast on the slices and skips the allocations
            u, r = (g.sigmoid() for g in gates.split(f, dim=1))
        else:
            u, r = gates.sigmoid_().split(f, dim=1)
        c = self.hidden_candidate(r * h, residual=gx_cand)  # relu(U_c * (r . h) + W_c * x + b_c), fused
        return torch.lerp(c, h, u)  # c + u . (h - c) = u . h + (1 - u) . c

    def forward_sequence(self, x: Tensor, num_steps: int, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Run over a time-major flattened clip.

        Args:
            x: ``(T * B, C_in, H, W)`` frames, time-major (row ``t * B + b`` is frame ``t`` of item
                ``b``).
            num_steps: ``T``.
            h: ``(B, F, H, W)`` initial state, or ``None`` for zeros.

        Returns:
            ``(outputs, h_last)``: ``(T * B, F, H, W)`` states after every frame (time-major) and the
            ``(B, F, H, W)`` state after the last frame.
        """
        if x.shape[0] % num_steps:
            raise ValueError(f"ConvGRUCell: leading dim {x.shape[0]} is not a multiple of num_steps={num_steps}")
        parts = _SplitFrames.apply(self.input_part(x), num_steps, 2 * self.hidden_channels)
        states = []
        for t in range(num_steps):
            h = self.recur(parts[2 * t], parts[2 * t + 1], h)
            states.append(h)
        out = states[0] if num_steps == 1 else torch.cat(states, dim=0)
        return out, h

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        """One step: ``x`` ``(B, C_in, H, W)``, ``h`` ``(B, F, H, W)`` or ``None`` -> new state."""
        gx_gates, gx_cand = self.input_part(x).split(2 * self.hidden_channels, dim=1)
        return self.recur(gx_gates, gx_cand, h)
