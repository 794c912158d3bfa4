"""Running under ``torchrun``: process group, ranks, devices, inputs split over ranks, shared atomic outputs.

Everything here is a no-op in a plain process (no ``torchrun``: world size 1, rank 0), so the engines call
it unconditionally and behave as before.

* :func:`init_distributed` / :func:`destroy_distributed`: ``torch.distributed`` process group of a
  ``torchrun`` job (``nccl`` on CUDA, ``gloo`` on CPU); :func:`distributed_device`: this rank's device.
* :func:`get_rank`, :func:`get_world_size`, :func:`is_rank0`, :func:`is_not_rank0`.
* :func:`shard`: the inputs of this rank (every ``world_size``-th, starting at its rank), and
  :func:`all_gather_objects` / :func:`broadcast_object` to collect what the ranks did.

The output folder that all ranks write into is :func:`cosinetrack.io.atomic.shared_atomic_directory`.
This module imports nothing of the package, so readers, writers, handlers and engines can all use it.
"""

from __future__ import annotations

import atexit
import datetime
import os
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "init_distributed",
    "destroy_distributed",
    "distributed_device",
    "rank_device",
    "get_rank",
    "get_world_size",
    "is_rank0",
    "is_not_rank0",
    "is_distributed",
    "shard",
    "all_gather_objects",
    "broadcast_object",
    "barrier",
]

T = TypeVar("T")


def launched_by_torchrun() -> bool:
    """Whether this process is one of several started by ``torchrun`` (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_distributed() -> bool:
    """Whether a process group of more than one process is initialized."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank: the process group's, else ``torchrun``'s ``RANK``, else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def get_world_size() -> int:
    """The number of processes: the process group's, else ``torchrun``'s ``WORLD_SIZE``, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_rank0() -> bool:
    """True in a plain process and on rank 0 of a ``torchrun`` job (the one that logs and saves)."""
    return get_rank() == 0


def is_not_rank0() -> bool:
    """The bundles' ``_disabled_`` test for what only rank 0 does."""
    return not is_rank0()


def distributed_device() -> torch.device:
    """This rank's device: ``cuda:<LOCAL_RANK>`` when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def rank_device(device: str | torch.device) -> torch.device:
    """``device``, or ``cuda:<LOCAL_RANK>`` for a CUDA device without index under ``torchrun``.

    So that the ranks of a ``torchrun`` inference on one machine spread over its GPUs, not all on GPU 0.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and launched_by_torchrun():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def init_distributed(backend: str | None = None, timeout_minutes: float = 120.0) -> bool:
    """Initialize the process group of a ``torchrun`` job; return whether one is initialized.

    Does nothing in a plain process or when a group exists already. ``backend``: ``None`` picks ``nccl``
    when CUDA is available (and sets this rank's GPU), else ``gloo``. ``timeout_minutes`` bounds how long
    a rank waits for the others (rank 0 validates alone during training while the others wait).
    The group is destroyed at exit (:func:`destroy_distributed`) if nobody did it before.
    """
    if not dist.is_available():
        return False
    if dist.is_initialized():
        return True
    if not launched_by_torchrun():
        return False
    if float(timeout_minutes) <= 0:
        raise ValueError(f"timeout_minutes must be > 0, got {timeout_minutes}")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(distributed_device())
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=float(timeout_minutes)))
    atexit.register(destroy_distributed)
    return True


def destroy_distributed() -> None:
    """Destroy the process group, if one is initialized (the end of a ``torchrun`` run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(items: Sequence[T] | Iterable[T]) -> list[T]:
    """The items of this rank: every ``world_size``-th item starting at its rank (all of them in a plain process)."""
    return list(items)[get_rank() :: max(1, get_world_size())]


def all_gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (picklable objects); ``[obj]`` in a plain process."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (``obj`` itself in a plain process)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    """Wait for every rank (nothing in a plain process)."""
    if is_distributed():
        dist.barrier()
