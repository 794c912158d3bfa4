"""Bookkeeping shared by the synthetic data generators: writing, recognizing and replacing a folder they made.

A generated folder holds a ``dataset.json`` whose ``generator`` entry names the generating module, its
version and its parameters; only such folders (or empty ones) are ever replaced, so a user's folder is
never deleted.

* :func:`write_generated_dataset` is the skeleton of every ``write_synthetic_*_dataset``: cache hit,
  refusal of foreign folders, writing into a temporary sibling folder, ``dataset.json``, move into place.
* :func:`ensure_generated_dataset` is the skeleton of every ``ensure_synthetic_*_dataset``: the cached
  folder under :func:`default_cache_dir` named after the parameters.
* :func:`generator_main` is the skeleton of every generator's command line.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from cosinetrack.io.atomic import current_umask

__all__ = [
    "read_dataset_json",
    "is_generated_by",
    "same_generator_params",
    "generator_params",
    "check_image_size",
    "move_generated_into_place",
    "write_generated_dataset",
    "ensure_generated_dataset",
    "generator_main",
    "case_seed",
    "default_cache_dir",
]

T = TypeVar("T")


def case_seed(seed: int, index: int) -> int:
    """Seed of item ``index`` of the data set with master ``seed`` (independent of the number of items)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def default_cache_dir() -> str:
    """``$COSINETRACK_CACHE`` if set, else ``~/.cache/cosinetrack``."""
    env = os.environ.get("COSINETRACK_CACHE")
    return env or os.path.join(os.path.expanduser("~"), ".cache", "cosinetrack")


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


def _recorded_params(data: dict, params: Mapping[str, Any]) -> dict:
    return {k: v for k, v in data["generator"].items() if k in params}


def same_generator_params(data: dict | None, params: Mapping[str, Any]) -> bool:
    """Whether a ``dataset.json`` content was made by ``params["module"]`` with exactly ``params``.

    ``params`` holds JSON values (``module``, ``version`` and the generator's parameters, lists not tuples).
    """
    return is_generated_by(data, params["module"]) and _recorded_params(data, params) == dict(params)


def generator_params(module_id: str, version: int, **params: Any) -> dict:
    """The ``generator`` entry of a ``dataset.json``: module id, version and ``params`` as JSON values.

    Tuples and arrays become lists and NumPy scalars Python numbers, so the dict compares equal to its JSON
    round trip (which is how :func:`write_generated_dataset` recognizes a cache hit).
    """
    return {"module": module_id, "version": int(version), **{k: _json_value(v) for k, v in params.items()}}


def check_image_size(image_size: Sequence[int], minimum: int) -> tuple[int, int]:
    """``image_size`` as ``(H, W)`` ints; :class:`ValueError` unless it has two entries, each ``>= minimum``."""
    if len(image_size) != 2 or min(int(v) for v in image_size) < minimum:
        raise ValueError(f"image_size must be (H, W) with both at least {minimum}, got {tuple(image_size)}")
    return int(image_size[0]), int(image_size[1])


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


def write_generated_dataset(
    out_dir: str | os.PathLike,
    params: Mapping[str, Any],
    write_items: Callable[[str, dict], dict],
    read_back: Callable[[str, dict], T | None],
    *,
    overwrite: bool = False,
    what: str = "synthetic data set",
) -> T:
    """Write a generated data set folder atomically, or reuse an up-to-date one (the writers' skeleton).

    1. If ``out_dir`` holds a ``dataset.json`` made with exactly ``params`` and ``read_back`` accepts it
       (returns not ``None``), that is returned: cache hit, nothing is written.
    2. Refused (:class:`FileExistsError`): ``out_dir`` is not a folder; it is a non-empty folder that
       ``params["module"]`` did not make; it was made with other parameters and ``overwrite`` is false.
       A folder made with the same parameters but incomplete is regenerated.
    3. ``write_items(tmp, params)`` writes the items into a fresh temporary sibling folder ``tmp`` and returns the
       ``dataset.json`` content; its ``generator`` entry is completed with ``params`` (extra keys such as
       per-item seeds are kept) and the file is written; then ``tmp`` replaces ``out_dir``
       (:func:`move_generated_into_place`). On any error ``tmp`` is removed and ``out_dir`` is untouched.
    4. Returns ``read_back(out_dir, data)`` of the new folder.

    Args:
        out_dir: the data set folder.
        params: the ``generator`` entry, from :func:`generator_params` (module id, version, parameters).
        write_items: ``write_items(folder, params)`` writes everything but ``dataset.json`` into
            ``folder``; returns the ``dataset.json`` content (dict).
        read_back: the caller's view of a finished folder (e.g. a list of absolute paths) from the folder
            and its ``dataset.json`` content, or ``None`` when the folder is incomplete.
        overwrite: replace a folder made by the same module with other parameters.
        what: the data set, in words, for the error messages (e.g. ``"synthetic cine data set"``).
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    params = dict(params)
    module_id = params["module"]
    if os.path.lexists(out_dir):
        data = read_dataset_json(out_dir)
        if same_generator_params(data, params):
            hit = read_back(out_dir, data)
            if hit is not None:
                return hit
        if not os.path.isdir(out_dir) or os.path.islink(out_dir):
            raise FileExistsError(f"{out_dir}: exists and is not a folder; refusing to replace it")
        if os.listdir(out_dir) and not is_generated_by(data, module_id):
            raise FileExistsError(
                f"{out_dir}: exists and was not made by {module_id} (no dataset.json naming it as the "
                "generator); refusing to write there. Choose another folder or remove it yourself."
            )
        if is_generated_by(data, module_id) and not overwrite and not same_generator_params(data, params):
            raise FileExistsError(
                f"{out_dir}: holds a {what} generated with other parameters ({_recorded_params(data, params)}, "
                f"wanted {params}); pass overwrite=True (--overwrite) to replace it"
            )
        # else: empty, or ours with the same parameters but incomplete, or ours and overwrite: regenerate

    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private; the data set is not
    try:
        data = write_items(tmp, params)
        data["generator"] = {**params, **data.get("generator", {})}
        with open(os.path.join(tmp, "dataset.json"), "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
        move_generated_into_place(tmp, out_dir, module_id)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result = read_back(out_dir, data)
    if result is None:
        raise RuntimeError(f"{out_dir}: the data set just written is incomplete")
    return result


def _writer_defaults(write: Callable[..., Any]) -> dict[str, Any]:
    """Keyword defaults of a ``write_synthetic_*_dataset(out_dir, ..., overwrite=False)`` function."""
    return {
        name: p.default
        for name, p in inspect.signature(write).parameters.items()
        if name not in ("out_dir", "overwrite") and p.default is not inspect.Parameter.empty
    }


def ensure_generated_dataset(
    write: Callable[..., Any],
    cache_dir: str | os.PathLike | None,
    params: Mapping[str, Any],
    folder_name: str,
    what: str,
) -> str:
    """The cached folder of a generated data set, generating it on first use (the ``ensure_*`` skeleton).

    Args:
        write: the generator's ``write_synthetic_*_dataset(out_dir, ..., overwrite=False)``; its keyword
            defaults are the allowed parameters and their defaults.
        cache_dir: parent folder (``None``: :func:`default_cache_dir`).
        params: the caller's parameters (a subset of ``write``'s keywords, ``overwrite`` excluded).
        folder_name: :meth:`str.format` template of the subfolder name, filled with the complete parameters
            (defaults included), e.g. ``"synthetic_x_v1_seed{seed}_{image_size[0]}x{image_size[1]}"``.
        what: the data set, in words, for the error message (e.g. ``"synthetic cine data set"``).

    Returns:
        The absolute path of the data set folder.

    Raises:
        TypeError: an unknown parameter.
    """
    defaults = _writer_defaults(write)
    unknown = set(params) - set(defaults)
    if unknown:
        raise TypeError(f"unknown {what} parameters: {sorted(unknown)} (allowed: {sorted(defaults)})")
    p = {**defaults, **params}
    name = folder_name.format(**{k: _json_value(v) for k, v in p.items()})
    folder = os.path.join(os.path.abspath(os.fspath(cache_dir or default_cache_dir())), name)
    # overwrite only ever replaces a folder made by the generator (e.g. a stale or incomplete one)
    write(folder, overwrite=True, **p)
    return folder


def _json_value(v: Any) -> Any:
    """``v`` with NumPy scalars as Python numbers and tuples / arrays as lists (for names and JSON)."""
    if isinstance(v, (tuple, list, np.ndarray)):
        return [_json_value(x) for x in v]
    return v.item() if isinstance(v, np.generic) else v


def generator_main(
    argv: Sequence[str] | None,
    write: Callable[..., Any],
    options: Mapping[str, tuple[str, str]],
    what: str,
    noun: str,
    doc: str | None,
) -> int:
    """Command line of a generator: ``--out DIR [options] [--seed S] [--size H W] [--overwrite]``.

    Prints ``"<what> with <len(result)> <noun> in <folder>"``.

    Args:
        argv: the arguments (``None``: ``sys.argv[1:]``).
        write: the generator's ``write_synthetic_*_dataset``; it takes ``out_dir``, the ``options``,
            ``seed``, ``image_size`` and ``overwrite``; its defaults are the command line's defaults and
            its module names the program (``python -m <module>``).
        options: generator-specific numeric options, ``{keyword of write: (flag, help)}``; the type is
            that of the keyword's default.
        what: the data set, in words (e.g. ``"synthetic cine data set"``).
        noun: what ``write``'s result lists (e.g. ``"cases"``).
        doc: the module docstring; its first line is the help text's description.

    Returns:
        0; exits with status 2 (message on stderr) on bad arguments, a refused folder or a bad value.
    """
    defaults = _writer_defaults(write)
    module = write.__module__
    if module == "__main__":  # python -m cosinetrack.data.synthetic_x
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec is not None else module
    description = (doc or "").strip().split("\n", 1)[0] or None
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument("--out", required=True, help="data set folder to create")
    for name, (flag, help_text) in options.items():
        default = defaults[name]
        parser.add_argument(flag, dest=name, type=type(default), default=default,
                            metavar=flag.lstrip("-").replace("-", "_").upper(), help=f"{help_text} (default {default})")
    parser.add_argument("--seed", type=int, default=defaults["seed"], help=f"master seed (default {defaults['seed']})")
    size = tuple(defaults["image_size"])
    parser.add_argument("--size", type=int, nargs=2, default=size, metavar=("H", "W"),
                        help=f"image rows and columns (default {size[0]} {size[1]})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a data set this tool generated with other parameters")
    args = parser.parse_args(argv)
    kwargs = {name: getattr(args, name) for name in options}
    try:
        result = write(args.out, seed=args.seed, image_size=tuple(args.size), overwrite=args.overwrite, **kwargs)
    except (FileExistsError, ValueError) as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"{what} with {len(result)} {noun} in {os.path.abspath(args.out)}")
    return 0
