"""Any 2D network, run frame by frame behind the interface of the recurrent stacked hourglass.

:class:`FrameWiseNetwork` lets a still-image network (for example MONAI's ``BasicUNet``) take the place of
:class:`~cosinetrack.networks.RecurrentStackedHourglass` in the bundles' trainers, losses, inferers and
metrics: clips ``(B, T, C, H, W)`` in, a one-stack tuple of ``(B, T, K, H, W)`` out, and a
:meth:`~FrameWiseNetwork.step` with no state for streaming. Frames are independent: it is the baseline a user
would train instead of the recurrent network, on exactly the same data, augmentation and schedule.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FrameWiseNetwork"]


class FrameWiseNetwork(nn.Module):
    """Run ``network`` ``(N, C, H, W) -> (N, K, H, W)`` on every frame of a clip; one "stack", no state.

    Args:
        network: the 2D network (e.g. ``monai.networks.nets.BasicUNet(spatial_dims=2, ...)``).
        in_channels: image channels ``C`` it takes (checked on every call).
        out_channels: outputs per pixel ``K`` it returns (classes or embedding size).
        size_multiple: ``H`` and ``W`` are padded (edge replication, split evenly) to a multiple of this
            before ``network`` and the outputs cropped back (16 for a U-Net with 4 poolings).
    """

    num_stacks = 1
    recurrent = False

    def __init__(
        self, network: nn.Module, in_channels: int = 1, out_channels: int = 3, size_multiple: int = 16
    ) -> None:
        super().__init__()
        if not isinstance(network, nn.Module):
            raise TypeError(f"FrameWiseNetwork: network must be a torch.nn.Module, got {type(network).__name__}")
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("size_multiple", size_multiple),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"FrameWiseNetwork: {name} must be a positive int, got {value!r}")
        self.network = network
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.size_multiple = size_multiple

    def _frames(self, frames: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, K, H, W)``, padding to ``size_multiple`` and cropping back."""
        if frames.ndim != 4 or frames.shape[1] != self.in_channels:
            raise ValueError(
                f"FrameWiseNetwork expects frames (B, C, H, W) or a clip (B, T, C, H, W) with C = in_channels = "
                f"{self.in_channels}; got shape {tuple(frames.shape)}"
            )
        h, w = frames.shape[-2:]
        m = self.size_multiple
        ph, pw = (-h) % m, (-w) % m
        top, left = ph // 2, pw // 2
        if ph or pw:
            frames = F.pad(frames, (left, pw - left, top, ph - top), mode="replicate")
        out = self.network(frames)
        if out.ndim != 4 or out.shape[1] != self.out_channels:
            raise ValueError(
                f"FrameWiseNetwork: the wrapped network returned shape {tuple(out.shape)}, expected "
                f"(N, out_channels={self.out_channels}, H, W)"
            )
        return out[..., top : top + h, left : left + w]

    def forward(self, x: Tensor) -> tuple[Tensor]:
        """``x`` ``(B, T, C, H, W)`` -> ``((B, T, K, H, W),)``; frames ``(B, C, H, W)`` -> ``((B, K, H, W),)``."""
        if x.ndim == 4:
            return (self._frames(x),)
        if x.ndim != 5:
            raise ValueError(
                f"FrameWiseNetwork expects a clip (B, T, C, H, W) or frames (B, C, H, W); got {tuple(x.shape)}"
            )
        b, t = x.shape[:2]
        out = self._frames(x.reshape(b * t, *x.shape[2:]))
        return (out.reshape(b, t, *out.shape[1:]),)

    def step(self, frame: Tensor, state: None = None) -> tuple[tuple[Tensor], None]:
        """Stream one frame ``(B, C, H, W)``: ``((B, K, H, W),)`` and no state."""
        return (self._frames(frame),), None
