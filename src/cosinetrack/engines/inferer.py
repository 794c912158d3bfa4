"""Streaming inference: frames go through the recurrent network one at a time, the GRU state carried.

Peak memory does not grow with the video length: only the current frame, the network state and the
outputs asked for are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.inferers import Inferer

from cosinetrack.transforms.spatial import fit_to_size, undo_fit

__all__ = ["StreamingInferer", "stream_frames"]


def stream_frames(
    network: torch.nn.Module,
    frames: torch.Tensor,
    image_size: Sequence[int] | None = None,
    stack: int = -1,
    on_frame: Callable[[int, torch.Tensor], torch.Tensor | None] | None = None,
    restore_size: bool = True,
) -> torch.Tensor | None:
    """Run ``network.step`` over ``frames`` ``(B, T, C, H, W)`` and return stack ``stack``'s outputs.

    Each frame is scaled to fit ``image_size`` (when given) before the network and the output is scaled
    back to ``(H, W)`` (``restore_size=False`` keeps the network's ``image_size`` canvas, padding included:
    e.g. to cluster embeddings at the network resolution, as the paper does, and resample the labels
    with :func:`~cosinetrack.transforms.undo_fit`). Returns ``(B, T, K, H, W)``, or, with ``on_frame``,
    calls ``on_frame(t, output)`` with each frame's ``(B, K, H, W)`` output as soon as it is ready and
    returns ``None`` (the caller then decides what to keep; memory stays flat in ``T``).
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
        out, state = network.step(frame, state)
        out = out[stack] if isinstance(out, (tuple, list)) else out
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
    """

    def __init__(self, image_size: Sequence[int] | None = None, stack: int = -1, restore_size: bool = True) -> None:
        super().__init__()
        self.image_size = None if image_size is None else tuple(int(s) for s in image_size)
        self.stack = stack
        self.restore_size = restore_size

    def __call__(self, inputs: torch.Tensor, network: Callable, *args, **kwargs) -> torch.Tensor:
        return stream_frames(network, inputs, self.image_size, self.stack, restore_size=self.restore_size)
