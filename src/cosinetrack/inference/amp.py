"""Mixed precision for running the network: the ``amp`` switch and the autocast region it opens.

MONAI's trainers and evaluators autocast with ``device_type="cuda"`` only (``torch.autocast("cuda",
**amp_kwargs)``, plus a CUDA ``GradScaler``), so their ``amp`` does nothing on CPU. On CPU the network
runs in bfloat16 under ``torch.autocast("cpu", dtype=torch.bfloat16)`` instead (see
:mod:`cosinetrack.networks.convgru`): :func:`autocast_context` opens that region. Every output handed
on (to a loss, a metric, clustering) is float32; recurrent states stay in the network's compute dtype.

``amp`` may be a bool, a string from the command line (``--amp true`` arrives as ``"true"``; ``"false"``,
``"0"``, ``"no"``, ``"off"`` are false) or ``"auto"``: bfloat16 on a CPU with native bfloat16 support
(:func:`default_amp`), off elsewhere (see :func:`resolve_amp`).
"""

from __future__ import annotations

import contextlib

import torch

from cosinetrack.networks.convgru import cpu_bf16_supported

__all__ = ["autocast_context", "cuda_amp", "default_amp", "resolve_amp"]

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
    with ``.float()`` before clustering or losses (:func:`~cosinetrack.inference.step_network` does
    both for one streaming step).

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
