"""The one exception type that readers, transforms and writers raise for bad input."""

from __future__ import annotations

import os


class CosineTrackDataError(ValueError):
    """Bad input data: the message always names the offending file and what is wrong with it.

    Args:
        path: the file (or folder) the problem was found in.
        problem: a sentence saying what is wrong and, where possible, how to fix it.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{problem}")
