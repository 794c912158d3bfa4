"""The one exception type that readers, transforms and writers raise for bad input."""

from __future__ import annotations

import os
import sys


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


class CosineTrackConfigError(TypeError, ValueError):
    """A bundle setting that cannot be right: names the config key, the problem and the allowed values.

    Raised when the config is parsed (the bundles' ``initialize`` section), before any data is read, e.g.
    for a misspelt key under ``clustering_options``, ``tracking`` or ``lineage``. It is a ``TypeError``
    (an unknown keyword, as Python would say) and a ``ValueError`` (a bad value).

    Args:
        key: the config key, e.g. ``"tracking"`` or ``"clustering_options#max_points"``.
        problem: what is wrong and what is allowed.
    """

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")


_USER_ERRORS = (CosineTrackDataError, CosineTrackConfigError, FileExistsError)
DEBUG_ENV = "COSINETRACK_DEBUG"


def user_error_in_chain(exc: BaseException | None) -> BaseException | None:
    """The innermost :class:`CosineTrackDataError` (or refused-output ``FileExistsError``) behind ``exc``.

    MONAI wraps an error raised inside a config expression as ``RuntimeError: Failed to evaluate ...``;
    this walks ``__cause__`` / ``__context__`` down to the error that says what the user must fix.
    """
    found, seen = None, set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, _USER_ERRORS):
            found = exc
        exc = exc.__cause__ or exc.__context__
    return found


def _excepthook(exc_type, exc, tb, _previous=None) -> None:
    user = user_error_in_chain(exc)
    if user is None or os.environ.get(DEBUG_ENV):
        (_previous or sys.__excepthook__)(exc_type, exc, tb)
    if user is not None:
        notes = "".join(f"\n{n}" for n in getattr(user, "__notes__", ()))
        if not os.environ.get(DEBUG_ENV):
            print(f"(set {DEBUG_ENV}=1 for the full traceback)", file=sys.stderr)
        print(f"Error: {user}{notes}", file=sys.stderr, flush=True)


def install_excepthook() -> None:
    """Make a bundle run that fails on bad input end with one line naming the file and the problem.

    Called from the bundles' ``initialize`` section. For an uncaught exception whose chain holds a
    :class:`CosineTrackDataError` (or a refused-output ``FileExistsError``), the last line printed is
    ``Error: <path>: <problem>``, after a one-line hint instead of MONAI's nested traceback; with the
    environment variable ``COSINETRACK_DEBUG=1`` the full traceback comes first. Other exceptions keep
    Python's usual report. Installing twice is harmless.
    """
    if getattr(sys.excepthook, "__name__", "") == "_cosinetrack_excepthook":
        return
    previous = sys.excepthook

    def _cosinetrack_excepthook(exc_type, exc, tb):
        _excepthook(exc_type, exc, tb, previous)

    sys.excepthook = _cosinetrack_excepthook
