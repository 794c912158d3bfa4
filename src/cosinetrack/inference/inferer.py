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
import torch.nn.functional as F
from monai.inferers import Inferer, SimpleInferer

from cosinetrack.inference.amp import Amp, autocast_context, cuda_amp, default_amp, resolve_amp
from cosinetrack.inference.stepping import step_network
from cosinetrack.options import as_flag
from cosinetrack.transforms.spatial import fit_to_size, undo_fit

__all__ = [
    "FLIP_VIEWS",
    "AutocastInferer",
    "StreamingInferer",
    "autocast_context",
    "cuda_amp",
    "default_amp",
    "flip_views_batch",
    "merge_flip_views",
    "resolve_amp",
    "stream_frames",
]

#: The views of test-time flips: the frame as it is, mirrored left-right, upside down, and both (180°).
FLIP_VIEWS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


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


def flip_views_batch(frames: torch.Tensor) -> torch.Tensor:
    """The :data:`FLIP_VIEWS` of ``frames`` ``(B, C, H, W)`` stacked along the batch: ``(V * B, C, H, W)``."""
    return torch.cat([frames.flip(dims) if dims else frames for dims in FLIP_VIEWS], dim=0)


def merge_flip_views(outputs: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Embeddings of the :data:`FLIP_VIEWS` ``(V * B, D, H, W)`` → one embedding per pixel ``(B, V * D, H, W)``.

    Each view's output is flipped back, L2-normalized over ``D`` and the views are concatenated over the
    channel axis, scaled by ``1 / sqrt(V)`` so that the result has unit length. Concatenation, not the mean:
    the cosine loss fixes no direction per instance, so one leaf may point in different directions in two
    views, and averaging would mix them. The cosine similarity of two concatenated embeddings is the mean of
    the views' cosine similarities: pixels of one instance stay together, and two neighbours are as far apart
    as the views agree they are. On CVPPP A1 (the leaf recipe, m_pts 25) that merged more touching leaves than
    one view did (fewer leaves found, ``docs/results_leaf.md``), so the bundles leave it off.
    """
    views = len(FLIP_VIEWS)
    if outputs.ndim != 4 or outputs.shape[0] % views:
        raise ValueError(f"expected ({views} * B, D, H, W) outputs of the flip views, got shape {tuple(outputs.shape)}")
    chunks = outputs.chunk(views, dim=0)
    unit = [F.normalize(c.flip(dims) if dims else c, dim=1, eps=eps) for c, dims in zip(chunks, FLIP_VIEWS)]
    return torch.cat(unit, dim=1) / views**0.5


def stream_frames(
    network: torch.nn.Module,
    frames: torch.Tensor,
    image_size: Sequence[int] | None = None,
    stack: int = -1,
    on_frame: Callable[[int, torch.Tensor], torch.Tensor | None] | None = None,
    restore_size: bool = True,
    amp: Amp = False,
    test_time_flips: bool = False,
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

    ``test_time_flips``: every frame is run in the four :data:`FLIP_VIEWS` (as one batch of
    ``4 * B`` on the canvas, each view with its own recurrent state) and the outputs are merged by
    :func:`merge_flip_views`: ``K`` becomes ``4 * D`` unit-length embeddings, four times the network's work.
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
        if test_time_flips:
            out, state = step_network(network, flip_views_batch(frame), state, stack=stack, amp=amp)
            out = merge_flip_views(out)
        else:
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
        test_time_flips: the four flipped views (see :func:`stream_frames`): outputs ``(B, T, 4 * D, H, W)``,
            of unit length.
    """

    def __init__(
        self,
        image_size: Sequence[int] | None = None,
        stack: int = -1,
        restore_size: bool = True,
        amp: Amp = False,
        test_time_flips: bool | str = False,
    ) -> None:
        super().__init__()
        self.image_size = None if image_size is None else tuple(int(s) for s in image_size)
        self.stack = stack
        self.restore_size = restore_size
        resolve_amp(amp)  # validates
        self.amp = amp
        self.test_time_flips = as_flag(test_time_flips, "test_time_flips")

    def __call__(self, inputs: torch.Tensor, network: Callable, *args, **kwargs) -> torch.Tensor:
        return stream_frames(
            network,
            inputs,
            self.image_size,
            self.stack,
            restore_size=self.restore_size,
            amp=self.amp,
            test_time_flips=self.test_time_flips,
        )
