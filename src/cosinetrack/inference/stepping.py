"""One streaming step of the recurrent network on a batch of frames, and the layout of its state.

:func:`step_network` is the one place where inference runs ``network.step``: under
:func:`~cosinetrack.inference.autocast_context` when ``amp`` is on, picking one stack's output and
handing it on as float32 (:func:`~cosinetrack.inference.stream_frames`, the pair segmenters).

The recurrent state of :class:`~cosinetrack.networks.RecurrentStackedHourglass` is a ``list`` per stack
of a ``list`` per level ``l`` of ConvGRU states ``(B, F, Hp / 2**l, Wp / 2**l)`` (``F`` filters, ``Hp, Wp``
the input padded to the network's size multiple; no levels when the network is not recurrent), or
``None`` for the zero state before the first frame. The functions below are the only code outside the
network that looks inside it: cast it (:func:`cast_state`), count its bytes (:func:`state_nbytes`), and
join or split it along the batch (:func:`concat_states`, :func:`split_state`), e.g. the per-tile states of
:class:`~cosinetrack.inference.TiledPairSegmenter`, kept one batch of tiles at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from cosinetrack.inference.amp import Amp, autocast_context

__all__ = ["cast_state", "check_stack", "concat_states", "split_state", "state_nbytes", "step_network"]

# per stack, per level a (B, F, Hp / 2**l, Wp / 2**l) tensor; None = the zero state
State = list[list[torch.Tensor]]


def check_stack(network: Any, stack: int) -> int:
    """``stack`` as an int after checking it indexes the network's stacks (``-num_stacks <= stack <
    num_stacks`` when the network has an int ``num_stacks``; always an int, not a bool)."""
    if isinstance(stack, bool) or not isinstance(stack, int):
        raise ValueError(f"stack: expected an int index of the network's stacks, got {stack!r}")
    n = getattr(network, "num_stacks", None)
    if isinstance(n, int) and not isinstance(n, bool) and not -n <= stack < n:
        raise ValueError(f"stack: {stack} is out of range for a network of {n} stacks (use -{n} .. {n - 1})")
    return stack


def step_network(
    network: Any,
    frames: torch.Tensor,
    state: State | None,
    stack: int = -1,
    amp: Amp = False,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, State | None]:
    """One ``network.step`` on a batch of frames; returns stack ``stack``'s output as float32 and the new state.

    Args:
        network: a streaming network: ``network.step(frames, state) -> (outputs, state)`` with
            ``outputs`` one tensor ``(B, D, h, w)`` per stack (a tuple or list) or a single tensor
            (e.g. :class:`~cosinetrack.networks.StackedHourglassExport`, the last stack; ``stack`` is
            then not applied).
        frames: ``(B, C, h, w)`` on the network's device.
        state: the state returned by the previous step on the same batch, or ``None`` at the first frame.
        stack: which stack's output to return (the paper clusters the last, ``-1``).
        amp: run the step under :func:`~cosinetrack.inference.autocast_context` (bfloat16 on CPU).
        device: the device type the autocast region is opened for (default: ``frames.device``).

    Returns:
        ``(embeddings, state)``: ``(B, D, h, w)`` float32 (also under ``amp``, and when the caller opened
        an autocast region itself; a non-floating output is returned as it is) on the network's device,
        and the new state (in the network's compute dtype).
    """
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"step_network: expected frames (B, C, h, w), got {shape}")
    check_stack(network, stack)
    with autocast_context(frames.device if device is None else device, amp):
        out, new_state = network.step(frames, state)
    if isinstance(out, (tuple, list)):
        if not -len(out) <= stack < len(out):
            raise ValueError(f"stack: {stack} is out of range for a network output of {len(out)} stacks")
        out = out[stack]
    if out.is_floating_point() and out.dtype != torch.float32:
        out = out.float()
    return out, new_state


def _check_state(state: Any, name: str = "state") -> State:
    if not isinstance(state, (list, tuple)) or not all(isinstance(per, (list, tuple)) for per in state):
        raise ValueError(f"{name}: expected a network state (a list per stack of a list per level), got {state!r:.80}")
    for k, per in enumerate(state):
        for lvl, s in enumerate(per):
            if not isinstance(s, torch.Tensor) or s.ndim != 4:
                what = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
                raise ValueError(f"{name}: stack {k} level {lvl} must be a tensor (B, F, h, w), got {what}")
    return state


def cast_state(state: State | None, dtype: torch.dtype) -> State | None:
    """``state`` with every ``(B, F, h, w)`` tensor cast to ``dtype`` (contiguous copies); ``None`` stays ``None``."""
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"cast_state: expected a torch.dtype, got {dtype!r}")
    if state is None:
        return None
    return [[s.to(dtype).contiguous() for s in per] for per in _check_state(state)]


def state_nbytes(state: State | None) -> int:
    """Bytes held by the tensors of ``state`` (0 for ``None``, the zero state)."""
    if state is None:
        return 0
    return sum(s.numel() * s.element_size() for per in _check_state(state) for s in per)


def concat_states(states: Sequence[State | None]) -> State | None:
    """The states of consecutive batches joined into one along the batch: per stack and level,
    ``(B_i, F, h, w)`` -> ``(sum B_i, F, h, w)``. All ``None`` gives ``None``; the states must have the same
    stacks and levels (and, per level, the same ``F, h, w`` and dtype)."""
    if len(states) == 0:
        raise ValueError("concat_states: no states to join")
    if all(s is None for s in states):
        return None
    if any(s is None for s in states):
        raise ValueError("concat_states: cannot join the zero state (None) with a stepped state")
    parts = [_check_state(s, f"states[{i}]") for i, s in enumerate(states)]
    layout = [len(per) for per in parts[0]]
    for i, p in enumerate(parts[1:], start=1):
        if [len(per) for per in p] != layout:
            raise ValueError(
                f"concat_states: states[{i}] has {[len(per) for per in p]} levels per stack, states[0] {layout}"
            )
    return [[torch.cat([p[k][lvl] for p in parts]) for lvl in range(n)] for k, n in enumerate(layout)]


def split_state(state: State | None, sizes: Sequence[int]) -> list[State | None]:
    """``state`` of a batch ``(sum(sizes), F, h, w)`` per stack and level cut into consecutive batches of
    ``sizes`` (views, no copy); the inverse of :func:`concat_states`. ``None`` gives ``None`` per batch."""
    sizes = [int(n) for n in sizes]
    if len(sizes) == 0 or any(n < 1 for n in sizes):
        raise ValueError(f"split_state: sizes must be a non-empty list of batch sizes >= 1, got {sizes}")
    if state is None:
        return [None] * len(sizes)
    tensors = [s for per in _check_state(state) for s in per]
    if any(s.shape[0] != sum(sizes) for s in tensors):
        batches = sorted({int(s.shape[0]) for s in tensors})
        raise ValueError(f"split_state: sizes {sizes} add up to {sum(sizes)}, the state's batch is {batches}")
    pieces = [[s.split(sizes) for s in per] for per in state]
    return [[[levels[i] for levels in per] for per in pieces] for i in range(len(sizes))]
