"""Checkpoint helpers for bundle configs."""

from __future__ import annotations

import os

import torch

from cosinetrack.errors import CosineTrackDataError

__all__ = ["require_file", "require_dir", "load_weights"]


def require_file(path: str | None, key: str) -> str:
    """Return ``path`` if it is an existing file; otherwise a clear error naming the config ``key``."""
    if not path:
        raise CosineTrackDataError(None, f"set '{key}' (for example --{key} runs/<task>/<run>/model_best.pt)")
    if not os.path.isfile(path):
        raise CosineTrackDataError(path, f"'{key}' does not point to an existing file")
    return path


def require_dir(path: str | None, key: str) -> str:
    """Return ``path`` if it is an existing folder; otherwise a clear error naming the config ``key``."""
    if not path:
        raise CosineTrackDataError(None, f"set '{key}' (for example --{key} path/to/folder)")
    if not os.path.isdir(path):
        raise CosineTrackDataError(path, f"'{key}' does not point to an existing folder")
    return path


def load_weights(network: torch.nn.Module, path: str, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """Load a state dict saved by the trainer's ``CheckpointSaver`` (bare or under ``"model"``) into ``network``."""
    state = torch.load(require_file(path, "ckpt_path"), map_location=map_location, weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    network.load_state_dict(state)
    return network
