"""Values of yes/no options as they arrive from the command line.

``python -m monai.bundle run ... --overwrite false`` passes the *string* ``"false"`` (Python's fire parses
only Python literals such as ``False``), which is truthy: read every yes/no option through
:func:`as_flag`, so that ``false`` means false and a typo is an error instead of a yes.
"""

from __future__ import annotations

__all__ = ["as_flag"]

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
