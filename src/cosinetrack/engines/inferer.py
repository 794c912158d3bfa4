"""Streaming inference: frames go through the recurrent network one at a time, the GRU state carried.

Peak memory does not grow with the video length: only the current frame, the network state and the
outputs asked for are kept.

Mixed precision (the bundles' ``amp`` switch). MONAI's trainers and evaluators autocast with
``device_type="cuda"`` only (``torch.autocast("cuda", **amp_kwargs)``, plus a CUDA ``GradScaler``), so
their ``amp`` does nothing on CPU. On CPU the network runs in bfloat16 under
``torch.autocast("cpu", dtype=torch.bfloat16)`` instead (see :mod:`cosinetrack.networks.convgru`):
:func:`autocast_context` opens that region, :class:`AutocastInferer` wraps the trainer's forward pass in
it, and :func:`stream_frames` / :class:`StreamingInferer` take ``amp``. Every output handed on (to a
loss, a metric, clustering) is float32; recurrent states stay in the network's compute dtype.

``amp`` may be a bool, a string from the command line (``--amp true`` arrives as ``"true"``; ``"false"``,
``"0"``, ``"no"``, ``"off"`` are false) or ``"auto"``: bfloat16 on a CPU with native bfloat16 support
(:func:`default_amp`), off elsewhere (see :func:`resolve_amp`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import Inferer, SimpleInferer

from cosinetrack.networks.convgru import cpu_bf16_supported
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

Amp = bool | str | None
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "none", "")


def _device_type(device: str | torch.device | None) -> str:
    return "cpu" if device is None else torch.device(device).type


def resolve_amp(amp: Amp, device: str | torch.device | None = None) -> bool:
    """``amp`` as a bool: bools as they are, ``None`` off, strings ``"true"`` / ``"false"`` (any case,
    also ``1/0, yes/no, on/off``) and ``"auto"`` = :func:`default_amp` on ``device``."""
    if amp is None or isinstance(amp, bool):
        return bool(amp)
    if isinstance(amp, str):
        word = amp.strip().lower()
        if word == "auto":
            return default_amp(device)
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise ValueError(f"amp: expected true, false or auto, got {amp!r}")
    if isinstance(amp, int):
        return bool(amp)
    raise ValueError(f"amp: expected true, false or auto, got {amp!r}")


def autocast_context(device: str | torch.device | None, amp: Amp = True) -> contextlib.AbstractContextManager:
    """The mixed-precision region for running the network on ``device``, or a no-op when ``amp`` is off.

    CPU: ``torch.autocast("cpu", dtype=torch.bfloat16)`` (the fused convolutions of
    :class:`~cosinetrack.networks.convgru.Conv3x3` follow it). CUDA: ``torch.autocast("cuda")`` with its
    default float16 (inference only; CUDA training uses MONAI's own ``amp``, which adds a
    ``GradScaler``). Other devices: no-op. Outputs computed inside are bfloat16 / float16: cast them
    with ``.float()`` before clustering or losses.

    Example::

        with torch.inference_mode(), autocast_context(device, amp):
            out, state = network.step(frame, state)
        out = out[-1].float()
    """
    kind = _device_type(device)
    if not resolve_amp(amp, device) or kind not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    if kind == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return torch.autocast("cuda")


def default_amp(device: str | torch.device | None) -> bool:
    """The bundles' default ``amp``: on for a CPU with native bfloat16 (AVX512-BF16 / AMX), else off.

    On such a CPU (a 2-core AVX512-BF16 EPYC) bfloat16 autocast trains the paper-size network 1.65-1.86x
    and streams it 1.86-1.93x as fast as float32 (2 threads), and short LV-MRI trainings reach the same
    held-out IoU within seed noise (``docs/benchmarks.md``). Without native support oneDNN emulates
    bfloat16, slower than float32; on CUDA MONAI's float16 ``amp`` is left to the user.
    """
    return _device_type(device) == "cpu" and cpu_bf16_supported()


def cuda_amp(amp: Amp, device: str | torch.device | None) -> bool:
    """The ``amp`` to give MONAI's engines: only on CUDA (on CPU they would autocast nothing and warn)."""
    return _device_type(device) == "cuda" and resolve_amp(amp, device)


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
        if not (_device_type(inputs.device) == "cpu" and resolve_amp(self.amp, inputs.device)):
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
        with autocast_context(frame.device, amp):
            out, state = network.step(frame, state)
        out = out[stack] if isinstance(out, (tuple, list)) else out
        if out.dtype != torch.float32 and out.is_floating_point():
            out = out.float()
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
