"""Streaming inference: frames go through the recurrent network one at a time, the GRU state carried.

Peak memory does not grow with the video length: only the current frame, the network state and the
outputs asked for are kept.

Mixed precision (the bundles' ``amp`` switch, see :mod:`cosinetrack.inference.amp`; its names are
re-exported here): :class:`AutocastInferer` wraps the trainer's forward pass in :func:`autocast_context`
on CPU, and :func:`stream_frames` / :class:`StreamingInferer` take ``amp``. Every output handed on (to a
loss, a metric, clustering) is float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import Inferer, SimpleInferer

from cosinetrack.inference.amp import Amp, autocast_context, cuda_amp, default_amp, resolve_amp
from cosinetrack.inference.stepping import step_network
from cosinetrack.transforms.spatial import fit_to_size, undo_fit

__all__ = [
    "AutocastInferer",
    "StreamingInferer",
    "autocast_context",
    "cuda_amp",
    "default_amp",
    "resolve_amp",
    "stream_frames",
]


def _to_float32(out: Any) -> Any:
    """Floating tensors in ``out`` (a tensor, or a tuple / list / dict of them) cast to float32."""
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() and out.dtype != torch.float32 else out
    if isinstance(out, (tuple, list)):
        return type(out)(_to_float32(o) for o in out)
    if isinstance(out, dict):
        return {k: _to_float32(v) for k, v in out.items()}
    return out


class AutocastInferer(Inferer):
    """MONAI inferer that runs another one inside :func:`autocast_context` on CPU, returning float32.

    For MONAI's ``SupervisedTrainer`` (``inferer=``): its ``amp`` autocasts CUDA only, so this adds CPU
    bfloat16 without touching the trainer. Only the forward pass is autocast; the loss then sees float32
    outputs and the backward runs outside the region (as ``torch.autocast`` recommends). On CUDA it does
    nothing: pass ``amp`` to MONAI there (:func:`cuda_amp`), which also scales the float16 loss.

    Args:
        amp: autocast on CPU (bfloat16); a bool, ``"true"`` / ``"false"`` or ``"auto"`` (:func:`resolve_amp`).
        inferer: the wrapped inferer (default ``SimpleInferer()``, i.e. ``network(inputs)``).
    """

    def __init__(self, amp: Amp = True, inferer: Inferer | None = None) -> None:
        super().__init__()
        resolve_amp(amp)  # validates
        self.amp = amp
        self.inferer = SimpleInferer() if inferer is None else inferer

    def __call__(self, inputs: torch.Tensor, network: Callable, *args: Any, **kwargs: Any) -> Any:
        if not (inputs.device.type == "cpu" and resolve_amp(self.amp, inputs.device)):
            return self.inferer(inputs, network, *args, **kwargs)
        with autocast_context("cpu", True):
            out = self.inferer(inputs, network, *args, **kwargs)
        return _to_float32(out)


def stream_frames(
    network: torch.nn.Module,
    frames: torch.Tensor,
    image_size: Sequence[int] | None = None,
    stack: int = -1,
    on_frame: Callable[[int, torch.Tensor], torch.Tensor | None] | None = None,
    restore_size: bool = True,
    amp: Amp = False,
) -> torch.Tensor | None:
    """Run ``network.step`` over ``frames`` ``(B, T, C, H, W)`` and return stack ``stack``'s outputs.

    Each frame is scaled to fit ``image_size`` (when given) before the network and the output is scaled
    back to ``(H, W)`` (``restore_size=False`` keeps the network's ``image_size`` canvas, padding included:
    e.g. to cluster embeddings at the network resolution, as the paper does, and resample the labels
    with :func:`~cosinetrack.transforms.undo_fit`). Returns ``(B, T, K, H, W)``, or, with ``on_frame``,
    calls ``on_frame(t, output)`` with each frame's ``(B, K, H, W)`` output as soon as it is ready and
    returns ``None`` (the caller then decides what to keep; memory stays flat in ``T``).

    ``amp``: run each step under :func:`autocast_context` (bfloat16 on CPU). Outputs are float32 either
    way (also when the caller opened an autocast region itself).
    """
    if frames.ndim != 5:
        raise ValueError(f"expected frames (B, T, C, H, W), got shape {tuple(frames.shape)}")
    state = None
    outputs = []
    for t in range(frames.shape[1]):
        frame = frames[:, t]
        geo = None
        if image_size is not None:
            frame, geo = fit_to_size(frame, image_size)
        out, state = step_network(network, frame, state, stack=stack, amp=amp)
        if geo is not None and restore_size:
            out = undo_fit(out, geo)
        if on_frame is not None:
            on_frame(t, out)
        else:
            outputs.append(out)
    return None if on_frame is not None else torch.stack(outputs, dim=1)


class StreamingInferer(Inferer):
    """MONAI inferer that streams ``(B, T, C, H, W)`` inputs frame by frame (see :func:`stream_frames`).

    Args:
        image_size: the network input size ``(H, W)``; inputs are scaled to fit and outputs scaled back.
            ``None`` feeds frames as they are.
        stack: which hourglass output to return (default: the last one).
        restore_size: scale outputs back to the input size (default); ``False`` returns them on the
            ``image_size`` canvas (see :func:`stream_frames`).
        amp: mixed precision (bfloat16 on CPU, see :func:`autocast_context` and :func:`resolve_amp`);
            outputs are float32.
    """

    def __init__(
        self, image_size: Sequence[int] | None = None, stack: int = -1, restore_size: bool = True, amp: Amp = False
    ) -> None:
        super().__init__()
        self.image_size = None if image_size is None else tuple(int(s) for s in image_size)
        self.stack = stack
        self.restore_size = restore_size
        resolve_amp(amp)  # validates
        self.amp = amp

    def __call__(self, inputs: torch.Tensor, network: Callable, *args, **kwargs) -> torch.Tensor:
        return stream_frames(network, inputs, self.image_size, self.stack, restore_size=self.restore_size, amp=self.amp)
