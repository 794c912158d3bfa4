"""Bookkeeping shared by the synthetic data generators: recognising and replacing a folder they made.

A generated folder holds a ``dataset.json`` whose ``generator`` entry names the generating module and its
parameters; only such folders (or empty ones) are ever replaced, so a user's folder is never deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

__all__ = ["read_dataset_json", "is_generated_by", "move_generated_into_place"]


def read_dataset_json(out_dir: str) -> dict | None:
    """The ``dataset.json`` of ``out_dir`` as a dict, or ``None`` when missing or unreadable."""
    try:
        with open(os.path.join(out_dir, "dataset.json"), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_generated_by(data: dict | None, module_id: str) -> bool:
    """Whether a ``dataset.json`` content says the folder was made by ``module_id``."""
    gen = data.get("generator") if data else None
    return isinstance(gen, dict) and gen.get("module") == module_id


def move_generated_into_place(tmp: str, out_dir: str, module_id: str) -> None:
    """Rename the finished folder ``tmp`` to ``out_dir``, replacing an empty or ``module_id``-made ``out_dir``.

    The old folder is moved aside first and deleted only after the rename succeeded (restored otherwise).
    """
    if not os.path.lexists(out_dir):
        try:
            os.replace(tmp, out_dir)
            return
        except OSError:
            if not os.path.lexists(out_dir):
                raise
            # someone else created it meanwhile: fall through and judge what is there now
    if os.listdir(out_dir) and not is_generated_by(read_dataset_json(out_dir), module_id):
        raise FileExistsError(f"{out_dir}: appeared meanwhile and was not made by {module_id}")
    trash = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old-", dir=os.path.dirname(out_dir))
    os.rmdir(trash)
    os.replace(out_dir, trash)
    try:
        os.replace(tmp, out_dir)
    except BaseException:
        os.replace(trash, out_dir)
        raise
    shutil.rmtree(trash, ignore_errors=True)
