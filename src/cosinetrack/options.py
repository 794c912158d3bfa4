"""Bundle options as they arrive from the config and the command line.

:func:`check_option_names`: a section of named options (``clustering_options``, ``tracking``,
``lineage``) holds only names its consumer takes; a typo fails when the config is parsed.

Yes/no values:

``python -m monai.bundle run ... --overwrite false`` passes the *string* ``"false"`` (Python's fire parses
only Python literals such as ``False``), which is truthy: read every yes/no option through
:func:`as_flag`, so that ``false`` means false and a typo is an error instead of a yes.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from cosinetrack.errors import CosineTrackConfigError

__all__ = ["as_flag", "check_option_names", "renamed"]

logger = logging.getLogger("cosinetrack")

_TRUE = ("true", "1", "yes", "on", "y")
_FALSE = ("false", "0", "no", "off", "n", "none", "null", "")


def as_flag(value: bool | str | int | None, name: str) -> bool:
    """``value`` as a bool: ``True``/``False``, 0/1, ``None`` (no) or a word such as ``"true"``/``"false"``.

    Raises:
        ValueError: naming the option ``name`` when the word means neither yes nor no.
    """
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    word = str(value).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{name}: expected true or false, got {value!r}")


def check_option_names(section: str, options: Mapping[str, Any] | None, allowed: Iterable[str]) -> dict[str, Any]:
    """``options`` as a dict, after checking that every name in it is one of ``allowed``.

    Args:
        section: the config key of the section, named in the error (e.g. ``"tracking"``).
        options: the section's value; ``None`` is an empty section.
        allowed: the names its consumer takes.

    Raises:
        CosineTrackConfigError: the section is not a mapping, or holds an unknown name; the message names
            the section and the key, suggests the closest allowed name and lists all of them.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise CosineTrackConfigError(section, f"expected a dict of options, got {type(options).__name__} {options!r}")
    names = sorted(set(allowed))
    for key in options:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CosineTrackConfigError(
                f"{section}#{key}", f"unknown option {key!r}{hint}; allowed: {', '.join(names)}"
            )
    return dict(options)


def renamed(old_value: Any, new_value: Any, old: str, new: str) -> Any:
    """A config key renamed from ``old`` to ``new``, the old one kept as a deprecated alias.

    Returns ``old_value`` (with a warning naming both keys) when the old key was set (not ``None``),
    else ``new_value``: ``--neighbour_radius 40`` keeps working and says to use ``--neighbor_radius``.
    """
    if old_value is None:
        return new_value
    logger.warning("%s is deprecated (American spelling, as MONAI): use %s; taking %r from it", old, new, old_value)
    return old_value
