"""Recurrent stacked hourglass network (Payer et al., MICCAI 2018, Sect. 2.1 and Fig. 2).

``num_stacks`` :class:`~cosinetrack.networks.hourglass.Hourglass` networks run in a row. Stack 1 sees
the image; every later stack sees the image concatenated (channel dim) with the L2-normalized (over
channels) output of the stack before it, so stack ``k >= 2`` has ``in_channels + out_channels``
inputs. All stack outputs are returned (the loss applies to each; the last one is used for
clustering). ``out_channels`` is the embedding size (16 / 32) or the number of classes (3 for LV MRI).

Time: ConvGRU states start at zero at the first frame and are carried from frame to frame, both for
clips (:meth:`RecurrentStackedHourglass.forward`, training) and for streaming
(:meth:`RecurrentStackedHourglass.step`, inference). The two give the same numbers.

Sizes: ``H`` and ``W`` need not be divisible by ``2**(num_levels-1)``. The input is padded (edge
replication, split evenly between top/bottom and left/right) to the next multiple, all stacks run on
the padded size, and the outputs are cropped back to ``(H, W)``. Recurrent states live at the
padded size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cosinetrack.networks.hourglass import Hourglass

__all__ = ["RecurrentStackedHourglass"]

# Opaque recurrent state: per stack, per level, a (B, F, Hp / 2**l, Wp / 2**l) tensor.
State = list[list[Tensor]]


class RecurrentStackedHourglass(nn.Module):
    """Stacked hourglasses with ConvGRU skip connections.

    Args:
        in_channels: image channels ``C``.
        out_channels: output channels per pixel (embedding size, or number of classes).
        num_levels: levels per hourglass (paper: 7).
        num_filters: channels of every hidden convolution / ConvGRU (paper: 64).
        num_stacks: number of hourglasses (paper: 2).
        recurrent: ``False`` replaces every ConvGRU by a 3x3 conv + ReLU (non-recurrent ablation;
            frames are then independent).
        normalize_eps: lower bound of the L2 norm when normalizing a stack's output for the next
            stack (``torch.nn.functional.normalize``).

    Weights are He-normal (ReLU gain) with zero biases, except the ConvGRU gate kernels, which start
    at zero; there are no normalization or dropout layers.
    """

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
            raise ValueError(f"RecurrentStackedHourglass: num_stacks must be >= 1, got {num_stacks}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_levels = num_levels
        self.num_filters = num_filters
        self.num_stacks = num_stacks
        self.recurrent = recurrent
        self.normalize_eps = normalize_eps
        self.hourglasses = nn.ModuleList(
            Hourglass(
                in_channels if k == 0 else in_channels + out_channels,
                out_channels,
                num_levels=num_levels,
                num_filters=num_filters,
                recurrent=recurrent,
            )
            for k in range(num_stacks)
        )

    @property
    def size_multiple(self) -> int:
        """Internal ``H``, ``W`` are padded up to a multiple of this (``2**(num_levels-1)``)."""
        return 2 ** (self.num_levels - 1)

    def _shape_error(self, x: Tensor) -> ValueError:
        return ValueError(
            f"RecurrentStackedHourglass expects a clip (B, T, C, H, W) or frames (B, C, H, W) with "
            f"C = in_channels = {self.in_channels}; got shape {tuple(x.shape)}"
        )

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Run clips (zero initial state) or independent still images.

        Args:
            x: ``(B, T, C, H, W)`` clip, or ``(B, C, H, W)`` frames (treated as ``T = 1``).

        Returns:
            Tuple of ``num_stacks`` outputs, each ``(B, T, out_channels, H, W)`` for a clip input or
            ``(B, out_channels, H, W)`` for a frame input.
        """
        if x.ndim == 4:
            if x.shape[1] != self.in_channels:
                raise self._shape_error(x)
            outputs, _ = self.forward_sequence(x.unsqueeze(1))
            return tuple(o[:, 0] for o in outputs)
        outputs, _ = self.forward_sequence(x)
        return outputs

    def step(self, frame: Tensor, state: State | None = None) -> tuple[tuple[Tensor, ...], State]:
        """Stream one frame.

        Args:
            frame: ``(B, C, H, W)``.
            state: the state returned by the previous call, or ``None`` at the first frame.

        Returns:
            ``(outputs, state)``: ``num_stacks`` tensors ``(B, out_channels, H, W)`` and the new state
            (opaque; pass it to the next call).
        """
        if frame.ndim != 4 or frame.shape[1] != self.in_channels:
            raise ValueError(
                f"RecurrentStackedHourglass.step expects a frame (B, C, H, W) with C = in_channels = "
                f"{self.in_channels}; got shape {tuple(frame.shape)}"
            )
        outputs, state = self.forward_sequence(frame.unsqueeze(1), state)
        return tuple(o[:, 0] for o in outputs), state

    def forward_sequence(self, x: Tensor, state: State | None = None) -> tuple[tuple[Tensor, ...], State]:
        """Run a clip starting from ``state``; streaming in chunks of several frames.

        Args:
            x: ``(B, T, C, H, W)``.
            state: state after the previous chunk, or ``None`` for the zero state.

        Returns:
            ``(outputs, state)``: ``num_stacks`` tensors ``(B, T, out_channels, H, W)`` and the state
            after the last frame.
        """
        if x.ndim != 5 or x.shape[2] != self.in_channels:
            raise self._shape_error(x)
        b, t, c, h, w = x.shape
        m = self.size_multiple
        ph, pw = (-h) % m, (-w) % m
        top, left = ph // 2, pw // 2
        hp, wp = h + ph, w + pw
        if state is not None:
            self._check_state(state, b, hp, wp)

        frames = x.transpose(0, 1).reshape(t * b, c, h, w)  # time-major
        if ph or pw:
            frames = F.pad(frames, (left, pw - left, top, ph - top), mode="replicate")
        if frames.device.type == "cpu":
            frames = frames.contiguous(memory_format=torch.channels_last)

        outputs: list[Tensor] = []
        new_state: State = []
        inp = frames
        for k, hourglass in enumerate(self.hourglasses):
            if k:
                inp = torch.cat([frames, F.normalize(outputs[-1], p=2.0, dim=1, eps=self.normalize_eps)], dim=1)
            y, s = hourglass(inp, t, None if state is None else state[k])
            outputs.append(y)
            new_state.append(s)

        result = tuple(
            y[:, :, top : top + h, left : left + w].reshape(t, b, self.out_channels, h, w).transpose(0, 1).contiguous()
            for y in outputs
        )
        return result, new_state

    def _check_state(self, state: State, batch: int, hp: int, wp: int) -> None:
        levels = self.num_levels if self.recurrent else 0
        ok = isinstance(state, Sequence) and len(state) == self.num_stacks
        if ok:
            for per_stack in state:
                if len(per_stack) != levels:
                    ok = False
                    break
                for lvl, s in enumerate(per_stack):
                    if tuple(s.shape) != (batch, self.num_filters, hp >> lvl, wp >> lvl):
                        ok = False
                        break
        if not ok:
            raise ValueError(
                f"RecurrentStackedHourglass: state does not match the input (batch {batch}, padded size "
                f"{hp}x{wp}); pass the state returned by the previous call on frames of the same size, or None"
            )
