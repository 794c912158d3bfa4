"""Input paths a setting names: check that a file or folder exists, with the key in the error."""

from __future__ import annotations

import os

from cosinetrack.errors import CosineTrackDataError

__all__ = ["require_file", "require_dir"]


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
