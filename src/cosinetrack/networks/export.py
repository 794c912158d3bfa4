"""TorchScript export of the recurrent stacked hourglass: the last stack's output as one tensor.

:class:`~cosinetrack.networks.stacked.RecurrentStackedHourglass` is built for training speed: its
convolutions are oneDNN fused ops inside custom autograd functions
(:class:`~cosinetrack.networks.convgru.Conv3x3`), and ``forward`` returns a tuple with the output of
every stack. Neither scripts nor traces. :class:`StackedHourglassExport` is its TorchScript twin for
MONAI's ``ckpt_export`` / ``verify_net_in_out`` and for deployment:

* the same constructor arguments and the same parameter names (``state_dict`` keys), so a model file of
  the training network loads into it unchanged;
* plain PyTorch ops only (``F.conv2d``, ``sigmoid``, ``lerp``, ...) and TorchScript-typed code, so
  ``torch.jit.script`` keeps the number of frames and the frame size dynamic;
* MONAI's channel-first layout: ``forward`` takes a clip ``(B, C, T, H, W)`` (time as the first
  spatial axis, as video models do) or still frames ``(B, C, H, W)``, and returns the **last** stack's
  output in the same layout with ``out_channels`` channels;
* :meth:`StackedHourglassExport.step` streams one frame at a time with the recurrent state carried, as
  the project's own inference does, so a video of any length runs in the memory of one frame.

The numbers are those of the training network (same formulas; only float rounding differs, since the
fused kernels add in another order). The training network keeps its fused ops: this module is used only
for export. ``load_state_dict`` also takes the project's model files (``{"model": weights, "network":
settings}``, see :mod:`cosinetrack.workflows.checkpoint`) and checks the stored settings, so MONAI's
``ckpt_export`` works on them with or without ``--key_in_ckpt model``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cosinetrack.errors import CosineTrackDataError
from cosinetrack.networks.stacked import RecurrentStackedHourglass
from cosinetrack.options import as_flag

__all__ = ["StackedHourglassExport"]

# constructor arguments that decide the weights' shapes (as workflows.checkpoint.network_settings)
_SETTINGS = ("in_channels", "out_channels", "num_levels", "num_filters", "num_stacks", "recurrent")


class _Conv(nn.Conv2d):
    """3x3 "same" convolution, optionally followed by a ReLU (``Conv3x3``'s parameters, plain ops)."""

    __constants__ = [*nn.Conv2d.__constants__, "relu"]

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, relu: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, padding=1, bias=bias)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        y = F.conv2d(x, self.weight, self.bias, padding=1)
        return torch.relu(y) if self.relu else y


class _ConvSkip(nn.Conv2d):
    """Non-recurrent skip block: 3x3 convolution + ReLU, called like :class:`_ConvGRU` (no state)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: Tensor, num_steps: int, h: Tensor | None) -> tuple[Tensor, Tensor]:
        y = torch.relu(F.conv2d(x, self.weight, self.bias, padding=1))
        return y, y


class _ConvGRU(nn.Module):
    """:class:`~cosinetrack.networks.convgru.ConvGRUCell` over a time-major clip, in plain ops."""

    __constants__ = ["hidden_channels"]

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.hidden_channels = channels
        f = channels
        self.input_conv = nn.Conv2d(f, 3 * f, kernel_size=3, padding=1)
        self.hidden_gates = nn.Conv2d(f, 2 * f, kernel_size=3, padding=1, bias=False)
        self.hidden_candidate = nn.Conv2d(f, f, kernel_size=3, padding=1, bias=False)

    def forward(self, x: Tensor, num_steps: int, h: Tensor | None) -> tuple[Tensor, Tensor]:
        """``x`` ``(T * B, F, H, W)`` time-major, ``h`` ``(B, F, H, W)`` or ``None`` (zeros) ->
        (states after every frame ``(T * B, F, H, W)``, last state ``(B, F, H, W)``)."""
        f = self.hidden_channels
        batch = x.shape[0] // num_steps
        gx = F.conv2d(x, self.input_conv.weight, self.input_conv.bias, padding=1)
        states: list[Tensor] = []
        for t in range(num_steps):
            frame = gx[t * batch : (t + 1) * batch]
            gx_gates, gx_cand = frame[:, : 2 * f], frame[:, 2 * f :]
            if h is None:  # zero state: h' = (1 - u) . relu(W_c * x + b_c)
                u = torch.sigmoid(gx_gates[:, :f])
                c = torch.relu(gx_cand)
                new = torch.addcmul(c, u, c, value=-1.0)
            else:
                gates = torch.sigmoid(F.conv2d(h, self.hidden_gates.weight, None, padding=1) + gx_gates)
                u, r = gates[:, :f], gates[:, f:]
                c = torch.relu(F.conv2d(r * h, self.hidden_candidate.weight, None, padding=1) + gx_cand)
                new = torch.lerp(c, h, u)  # u . h + (1 - u) . c
            states.append(new)
            h = new
        assert h is not None  # num_steps >= 1
        return torch.cat(states, dim=0), h


class _Hourglass(nn.Module):
    """:class:`~cosinetrack.networks.hourglass.Hourglass` in plain ops (same levels, same names)."""

    __constants__ = ["num_levels", "recurrent"]

    def __init__(self, in_channels: int, out_channels: int, num_levels: int, num_filters: int, recurrent: bool) -> None:
        super().__init__()
        self.num_levels = num_levels
        self.recurrent = recurrent
        f = num_filters
        self.contract = nn.ModuleList(_Conv(in_channels if lvl == 0 else f, f, relu=True) for lvl in range(num_levels))
        self.skip = nn.ModuleList((_ConvGRU(f) if recurrent else _ConvSkip(f)) for _ in range(num_levels))
        self.expand = nn.ModuleList(_Conv(f, f, relu=True) for _ in range(num_levels))
        self.head = _Conv(f, out_channels)

    def forward(self, x: Tensor, num_steps: int, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """``x`` ``(T * B, C_in, H, W)`` time-major, ``state`` per-level states or ``[]`` (zeros) ->
        (``(T * B, C_out, H, W)``, per-level states after the last frame, ``[]`` when not recurrent)."""
        skips: list[Tensor] = []
        new_state: list[Tensor] = []
        feat = x
        lvl = 0
        for contract, skip in zip(self.contract, self.skip):
            if lvl > 0:
                feat = F.max_pool2d(feat, 2)
            feat = contract(feat)
            h: Tensor | None = None
            if len(state) > 0:
                h = state[lvl]
            s, h_last = skip(feat, num_steps, h)
            if self.recurrent:
                new_state.append(h_last)
            skips.append(s)
            lvl += 1
        # the expanding path runs bottom-up; TorchScript iterates a ModuleList only forwards
        weights: list[Tensor] = []
        biases: list[Tensor | None] = []
        for conv in self.expand:
            weights.append(conv.weight)
            biases.append(conv.bias)
        out = torch.relu(F.conv2d(skips[-1], weights[-1], biases[-1], padding=1))
        for lvl in range(self.num_levels - 2, -1, -1):
            up = skips[lvl] + F.interpolate(out, scale_factor=2.0, mode="nearest")
            out = torch.relu(F.conv2d(up, weights[lvl], biases[lvl], padding=1))
        return self.head(out), new_state


class StackedHourglassExport(nn.Module):
    """TorchScript-ready twin of :class:`~cosinetrack.networks.RecurrentStackedHourglass` (last stack only).

    Same arguments and parameter names as the training network (see the module docstring).

    Args:
        in_channels: image channels ``C``.
        out_channels: output channels per pixel (embedding size, or number of classes).
        num_levels: levels per hourglass.
        num_filters: channels of every hidden convolution / ConvGRU.
        num_stacks: number of hourglasses.
        recurrent: ConvGRU skips (``False``: 3x3 conv + ReLU skips, frames independent); the words
            ``"true"``/``"false"`` of the command line are read as flags.
        normalize_eps: lower bound of the L2 norm when normalizing a stack's output for the next stack.
    """

    __constants__ = [
        "in_channels",
        "out_channels",
        "num_levels",
        "num_filters",
        "num_stacks",
        "recurrent",
        "normalize_eps",
    ]

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 16,
        num_levels: int = 7,
        num_filters: int = 64,
        num_stacks: int = 2,
        recurrent: bool = True,
        normalize_eps: float = 1e-8,
    ) -> None:
        super().__init__()
        if num_stacks < 1:
            raise ValueError(f"StackedHourglassExport: num_stacks must be >= 1, got {num_stacks}")
        if num_levels < 1:
            raise ValueError(f"StackedHourglassExport: num_levels must be >= 1, got {num_levels}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.num_levels = int(num_levels)
        self.num_filters = int(num_filters)
        self.num_stacks = int(num_stacks)
        self.recurrent = recurrent = as_flag(recurrent, "recurrent")
        self.normalize_eps = float(normalize_eps)
        self.hourglasses = nn.ModuleList(
            _Hourglass(
                in_channels if k == 0 else in_channels + out_channels, out_channels, num_levels, num_filters, recurrent
            )
            for k in range(num_stacks)
        )

    @classmethod
    def from_network(cls, network: RecurrentStackedHourglass) -> StackedHourglassExport:
        """The export twin of ``network`` with its weights (on its device)."""
        twin = cls(
            network.in_channels,
            network.out_channels,
            network.num_levels,
            network.num_filters,
            network.num_stacks,
            network.recurrent,
            network.normalize_eps,
        )
        twin.load_state_dict(network.state_dict())
        return twin.to(next(network.parameters()).device)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """``nn.Module.load_state_dict``, also taking a model file's ``{"model": weights, "network": settings}``.

        Raises:
            CosineTrackDataError: the stored network settings differ from this network's (each mismatch
                named, with the config keys to set), or the file is an ensemble
                (:class:`~cosinetrack.networks.EmbeddingEnsemble`), which has no TorchScript twin.
        """
        if isinstance(state_dict, Mapping) and isinstance(state_dict.get("model"), Mapping):
            stored = state_dict.get("network")
            if isinstance(stored, Mapping) and stored.get("members", 1) != 1:
                raise CosineTrackDataError(
                    None,
                    f"the model file is an ensemble of {stored['members']} networks; the TorchScript export takes "
                    "one network: export a member's model file (the ensemble file names them under 'ensemble')",
                )
            if isinstance(stored, Mapping):
                diff = {k: (v, getattr(self, k)) for k, v in stored.items() if k in _SETTINGS and getattr(self, k) != v}
                if diff:
                    what = ", ".join(f"{k}={a} (this network: {b})" for k, (a, b) in diff.items())
                    fix = " ".join(
                        f"--embedding_dim {a} (lv_mri: --out_channels {a})" if k == "out_channels" else f"--{k} {a}"
                        for k, (a, _) in diff.items()
                    )
                    raise CosineTrackDataError(None, f"the model file was trained with {what}; run with {fix}")
            state_dict = state_dict["model"]
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def forward(self, x: Tensor) -> Tensor:
        """Run a clip from the zero state, or independent frames.

        Args:
            x: ``(B, C, T, H, W)`` clip (channel first, time the first spatial axis) or ``(B, C, H, W)``
                frames; any ``T >= 1``, ``H``, ``W``.

        Returns:
            The last stack's output, ``(B, out_channels, T, H, W)`` or ``(B, out_channels, H, W)``.
        """
        if x.dim() == 4:
            if x.shape[1] != self.in_channels:
                raise ValueError(
                    f"StackedHourglassExport expects (B, C, T, H, W) or (B, C, H, W) with C = {self.in_channels}; "
                    f"got {x.shape}"
                )
            y, _ = self._run(x, 1, [])
            return y
        if x.dim() != 5 or x.shape[1] != self.in_channels or x.shape[2] < 1:
            raise ValueError(
                f"StackedHourglassExport expects (B, C, T, H, W) or (B, C, H, W) with C = {self.in_channels}; "
                f"got {x.shape}"
            )
        b, c, t, h, w = x.shape
        frames = x.permute(2, 0, 1, 3, 4).reshape(t * b, c, h, w)  # time-major
        y, _ = self._run(frames, t, [])
        return y.reshape(t, b, self.out_channels, h, w).permute(1, 2, 0, 3, 4).contiguous()

    @torch.jit.export
    def step(self, frame: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Stream one frame.

        Args:
            frame: ``(B, C, H, W)``.
            state: the state returned by the previous call, or ``[]`` at the first frame (per stack, per
                level, a ``(B, num_filters, Hp / 2**l, Wp / 2**l)`` tensor at the padded size ``Hp, Wp``;
                always ``[]`` when not recurrent).

        Returns:
            ``(output, state)``: the last stack's ``(B, out_channels, H, W)`` and the new state.
        """
        if frame.dim() != 4 or frame.shape[1] != self.in_channels:
            raise ValueError(
                f"StackedHourglassExport.step expects a frame (B, C, H, W) with C = {self.in_channels}; "
                f"got {frame.shape}"
            )
        return self._run(frame, 1, state)

    def _run(self, frames: Tensor, num_steps: int, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Time-major ``(T * B, C, H, W)`` -> last stack ``(T * B, out_channels, H, W)`` and the new state."""
        n, c, h, w = frames.shape
        m = 1 << (self.num_levels - 1)  # 2**(L-1) as an int (TorchScript makes ** a float)
        ph, pw = (m - h % m) % m, (m - w % m) % m
        top, left = ph // 2, pw // 2
        per_stack = self.num_levels if self.recurrent else 0
        if len(state) > 0:
            batch = n // num_steps
            ok = len(state) == self.num_stacks * per_stack
            for i in range(len(state)):
                if ok:
                    lvl = i % per_stack
                    ok = list(state[i].shape) == [batch, self.num_filters, (h + ph) >> lvl, (w + pw) >> lvl]
            if not ok:
                raise ValueError(
                    "StackedHourglassExport: state does not match the input; pass the state returned by the "
                    "previous call on frames of the same size, or []"
                )
        if ph > 0 or pw > 0:
            frames = F.pad(frames, [left, pw - left, top, ph - top], mode="replicate")
        new_state: list[Tensor] = []
        inp = frames
        out = frames
        k = 0
        for hourglass in self.hourglasses:
            if k > 0:
                inp = torch.cat([frames, F.normalize(out, p=2.0, dim=1, eps=self.normalize_eps)], dim=1)
            own: list[Tensor] = []
            if len(state) > 0:
                own = state[k * per_stack : (k + 1) * per_stack]
            out, s = hourglass(inp, num_steps, own)
            new_state.extend(s)
            k += 1
        return out[:, :, top : top + h, left : left + w].contiguous(), new_state
