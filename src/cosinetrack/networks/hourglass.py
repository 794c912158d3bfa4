"""One (recurrent) hourglass of Payer et al. (MICCAI 2018), run on a time-major clip.

Level structure (``L = num_levels``, ``F = num_filters`` at every level, no doubling). Level ``l``
(``0 <= l < L``) works at ``(H / 2**l, W / 2**l)``; all convolutions are 3x3 with zero "same"
padding (:class:`~cosinetrack.networks.convgru.Conv3x3`)::

    contracting   c_0 = relu(conv(x))                        (N, C_in, H, W) -> (N, F, H, W)
                  c_l = relu(conv(maxpool2x2(c_{l-1})))      l = 1 .. L-1, no pool after c_{L-1}
    skip          s_l = ConvGRU_l(c_l)   (recurrent)  or  relu(conv(c_l))  (non-recurrent)
    expanding     e_{L-1} = relu(conv(s_{L-1}))              bottom: nothing below to add
                  e_l = relu(conv(s_l + upsample2x_nearest(e_{l+1})))    l = L-2 .. 0
    output        y = conv(e_0)                              (N, F, H, W) -> (N, C_out, H, W), linear

So an hourglass has ``L`` contracting convolutions, ``L`` skip blocks (every level, the bottom one
included), ``L`` expanding convolutions, ``L - 1`` max-pools and one output convolution. ``H`` and
``W`` must be divisible by ``2**(L-1)``; padding to that is done by
:class:`~cosinetrack.networks.stacked.RecurrentStackedHourglass`.

Clips are passed *time-major flattened*: ``x`` is ``(T * B, C, H, W)`` with row ``t * B + b`` the
frame ``t`` of item ``b``. Everything except the hidden-to-hidden part of the ConvGRUs runs batched
over all ``T * B`` frames; only the ConvGRU recurrence loops over ``T``. On CPU all activations are
channels-last.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cosinetrack.networks.convgru import Conv3x3, ConvGRUCell

__all__ = ["Hourglass"]

_CL = torch.channels_last


def _upsample_add(skip: Tensor, low: Tensor) -> Tensor:
    """``skip + upsample2x_nearest(low)``: ``(N, C, 2h, 2w)`` and ``(N, C, h, w)`` -> ``(N, C, 2h, 2w)``.

    For channels-last tensors this is one broadcast add (no upsampled temporary); the result is
    channels-last.
    """
    if skip.is_contiguous(memory_format=_CL) and low.is_contiguous(memory_format=_CL):
        n, c, h2, w2 = skip.shape
        h, w = h2 // 2, w2 // 2
        s = skip.permute(0, 2, 3, 1).view(n, h, 2, w, 2, c)
        lo = low.permute(0, 2, 3, 1).view(n, h, 1, w, 1, c)
        return (s + lo).view(n, h2, w2, c).permute(0, 3, 1, 2)
    return skip + F.interpolate(low, scale_factor=2.0, mode="nearest")


class Hourglass(nn.Module):
    """A single hourglass with ConvGRU skips (see the module docstring for the level structure).

    Args:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out`` of the final linear 3x3 convolution.
        num_levels: ``L``, number of resolution levels (paper: 7).
        num_filters: ``F``, channels of every convolution and ConvGRU (paper: 64).
        recurrent: ConvGRU skips if ``True``; otherwise each ConvGRU is replaced by one
            3x3 convolution + ReLU of the same width (the paper's non-recurrent ablation).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_levels: int = 7,
        num_filters: int = 64,
        recurrent: bool = True,
    ) -> None:
        super().__init__()
        if num_levels < 1:
            raise ValueError(f"Hourglass: num_levels must be >= 1, got {num_levels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_levels = num_levels
        self.num_filters = num_filters
        self.recurrent = recurrent
        f = num_filters
        self.contract = nn.ModuleList(
            Conv3x3(in_channels if lvl == 0 else f, f, relu=True) for lvl in range(num_levels)
        )
        if recurrent:
            self.skip = nn.ModuleList(ConvGRUCell(f, f) for _ in range(num_levels))
        else:
            self.skip = nn.ModuleList(Conv3x3(f, f, relu=True) for _ in range(num_levels))
        self.expand = nn.ModuleList(Conv3x3(f, f, relu=True) for _ in range(num_levels))
        self.head = Conv3x3(f, out_channels)

    @property
    def size_multiple(self) -> int:
        """``H`` and ``W`` must be multiples of this (``2**(L-1)``)."""
        return 2 ** (self.num_levels - 1)

    def forward(
        self, x: Tensor, num_steps: int = 1, state: Sequence[Tensor] | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        """Run a time-major flattened clip.

        Args:
            x: ``(T * B, C_in, H, W)`` frames, row ``t * B + b`` = frame ``t`` of item ``b``;
                ``H``, ``W`` divisible by :attr:`size_multiple`.
            num_steps: ``T``.
            state: per level ``l`` the ``(B, F, H / 2**l, W / 2**l)`` ConvGRU state before the first
                frame, or ``None`` for zeros. Ignored (may be ``None``) when not recurrent.

        Returns:
            ``(y, state)``: ``(T * B, C_out, H, W)`` outputs (time-major) and the list of per-level
            states after the last frame (empty when not recurrent).
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Hourglass expects input of shape (T*B, C={self.in_channels}, H, W); got {tuple(x.shape)}"
            )
        m = self.size_multiple
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(
                f"Hourglass with {self.num_levels} levels needs H and W divisible by {m}; got {tuple(x.shape[-2:])}"
            )
        if num_steps < 1 or x.shape[0] % num_steps:
            raise ValueError(f"Hourglass: leading dim {x.shape[0]} is not a positive multiple of num_steps={num_steps}")
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=_CL)

        skips: list[Tensor] = []
        new_state: list[Tensor] = []
        feat = x
        for lvl in range(self.num_levels):
            if lvl:
                feat = F.max_pool2d(feat, 2)
            feat = self.contract[lvl](feat)
            if self.recurrent:
                h0 = None if state is None else state[lvl]
                s, h = self.skip[lvl].forward_sequence(feat, num_steps, h0)
                new_state.append(h)
            else:
                s = self.skip[lvl](feat)
            skips.append(s)

        out = self.expand[-1](skips[-1])
        for lvl in range(self.num_levels - 2, -1, -1):
            out = self.expand[lvl](_upsample_add(skips[lvl], out))
        return self.head(out), new_state
