"""Atomic writes: a file or folder appears complete under its final name, or not at all.

Every writer of the package goes through this module, which also owns the two rules that protect the
user's data:

* :func:`refuse_output_over_inputs`: an output that is, contains, or lies inside an input (images,
  labels, datalist, checkpoint) is refused before anything is written, with or without ``overwrite``.
* temporaries are named ``.tmp-<name>-<pid>-<random>`` (and ``.old-...`` while an old folder is being
  replaced) next to their target; those left behind by a process that no longer runs (``kill -9``, power
  loss) are removed when the next write to the same target starts (:func:`remove_stale_temporaries`).
  Nothing of any other naming is ever removed.

New files and folders get the permissions the umask allows (``0o666 & ~umask`` / ``0o777 & ~umask``),
as ``open`` and ``mkdir`` would give them, not the private ``0o600`` / ``0o700`` of ``tempfile``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from cosinetrack.distributed import all_gather_objects, broadcast_object, get_rank, is_distributed
from cosinetrack.errors import CosineTrackDataError
from cosinetrack.options import as_flag

__all__ = [
    "atomic_write_text",
    "atomic_file",
    "atomic_directory",
    "refuse_output_over_inputs",
    "remove_stale_temporaries",
    "current_umask",
    "shared_atomic_directory",
    "SharedFolder",
]

PathLike = str | os.PathLike


def current_umask() -> int:
    """The process umask (read without changing it where ``/proc`` tells it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: read it by setting it, then restore at once
    os.umask(mask)
    return mask


def _apply_umask(path: str, is_dir: bool) -> None:
    os.chmod(path, (0o777 if is_dir else 0o666) & ~current_umask())


def _is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def refuse_output_over_inputs(
    output: PathLike, inputs: Iterable[PathLike | None], key: str = "output_dir"
) -> str:
    """Refuse an output path that is, contains, or lies inside any of ``inputs``; return it absolute.

    The one guard every writer uses before it creates anything. ``inputs`` are files (an image, a
    datalist, a checkpoint) or folders (an input folder, a ground-truth folder); ``None`` entries are
    skipped. Paths are compared after resolving symbolic links, so a link to an input folder is caught.

    * output == an input, or an input lies inside output: writing (or ``overwrite``) would replace it;
    * output lies inside an input *folder*: inputs are never written to.

    Raises:
        CosineTrackDataError: naming ``output``, the input it collides with, and the config ``key``.
    """
    out_abs = os.path.abspath(os.fspath(output))
    out = os.path.realpath(out_abs)
    for item in inputs:
        if item is None or (isinstance(item, str) and not item):
            continue
        inp = os.path.realpath(os.path.abspath(os.fspath(item)))
        kind = "input folder" if os.path.isdir(inp) else "input file"
        if out == inp:
            how = "is the"
        elif _is_within(inp, out):
            how = "contains the"
        elif os.path.isdir(inp) and _is_within(out, inp):
            how = "lies inside the"
        else:
            continue
        raise CosineTrackDataError(
            out_abs,
            f"the output {how} {kind} {inp}; inputs are never written to or replaced, with or without "
            f"overwrite. Choose an output outside every input ('{key}')",
        )
    return out_abs


_STALE_RE = r"^\.(tmp|old)-{name}-(\d+)-[A-Za-z0-9_]+{suffix}$"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def remove_stale_temporaries(target: PathLike, suffix: str = "") -> list[str]:
    """Remove the temporaries of ``target`` that a dead process of ours left behind; return their paths.

    Only entries named like this module's own temporaries for exactly this target
    (``.tmp-<basename>-<pid>-<random><suffix>`` or ``.old-...``) whose process ``<pid>`` no longer runs are
    removed; a temporary of a running writer, or anything else, is left alone. A process killed while
    replacing an old folder may have moved it aside (``.old-.../x``) without putting the new one in
    place: when ``target`` is then missing, the old folder is moved back instead of being removed.
    """
    target = os.path.abspath(os.fspath(target))
    parent, name = os.path.dirname(target), os.path.basename(target)
    pattern = re.compile(_STALE_RE.format(name=re.escape(name), suffix=re.escape(suffix)))
    removed = []
    try:
        entries = os.listdir(parent)
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry)
        if m is None or _pid_alive(int(m.group(2))):
            continue
        path = os.path.join(parent, entry)
        moved_aside = os.path.join(path, "x")
        if m.group(1) == "old" and not os.path.lexists(target) and os.path.lexists(moved_aside):
            os.replace(moved_aside, target)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        removed.append(path)
    return removed


def _prefix(kind: str, target: str) -> str:
    return f".{kind}-{os.path.basename(target)}-{os.getpid()}-"


@contextlib.contextmanager
def atomic_file(path: PathLike, suffix: str = "", inputs: Iterable[PathLike | None] = ()) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``, else removed.

    ``suffix`` (e.g. ``".nii.gz"``) keeps writers that pick the format from the name happy. ``inputs``
    are checked with :func:`refuse_output_over_inputs` first.
    """
    path = os.path.abspath(os.fspath(path))
    refuse_output_over_inputs(path, inputs, key="output")
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(path, suffix)
    fd, tmp = tempfile.mkstemp(prefix=_prefix("tmp", path), suffix=suffix, dir=folder)
    os.close(fd)
    try:
        _apply_umask(tmp, is_dir=False)
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_file(path) as tmp, open(tmp, "w") as f:
        f.write(text)


@contextlib.contextmanager
def atomic_directory(
    path: PathLike, overwrite: bool = False, inputs: Iterable[PathLike | None] = (), key: str = "output_dir"
) -> Iterator[str]:
    """Yield a temporary folder next to ``path``; on success it is renamed to ``path``.

    Before anything is created, ``path`` is checked against ``inputs`` (:func:`refuse_output_over_inputs`:
    it may not be, contain or lie inside one, whatever ``overwrite`` says) and stale temporaries of
    ``path`` left by dead processes are removed. If ``path`` exists it is replaced only with
    ``overwrite=True`` (the old folder is removed after the new one is complete); otherwise
    ``FileExistsError``. On failure nothing is left behind.
    """
    path = refuse_output_over_inputs(path, inputs, key=key)
    overwrite = as_flag(overwrite, "overwrite")
    parent = os.path.dirname(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path}: already exists; choose another output folder or allow overwriting")
    if os.path.exists(path) and not os.path.isdir(path):
        raise FileExistsError(f"{path}: exists and is not a folder; refusing to replace it")
    os.makedirs(parent, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = tempfile.mkdtemp(prefix=_prefix("tmp", path), dir=parent)
    try:
        _apply_umask(tmp, is_dir=True)
        yield tmp
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=_prefix("old", path), dir=parent)
            os.replace(path, os.path.join(old, "x"))
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class SharedFolder:
    """What :func:`shared_atomic_directory` yields: the temporary folder and the results of the ranks.

    Attributes:
        path: the temporary folder to write into (renamed onto the target at the end).
        results: this rank's results, one per input of :func:`~cosinetrack.distributed.shard` (in that
            order); append to it.
        merged: after the block, every rank's ``results`` in the inputs' order (the order before
            :func:`~cosinetrack.distributed.shard`), on every rank.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.results: list[Any] = []
        self.merged: list[Any] = []


def _interleave(per_rank: Sequence[Sequence[Any]]) -> list[Any]:
    """Undo :func:`~cosinetrack.distributed.shard`: rank ``r`` holds items ``r, r + w, r + 2w, ...``."""
    world = len(per_rank)
    total = sum(len(r) for r in per_rank)
    return [per_rank[i % world][i // world] for i in range(total)]


@contextlib.contextmanager
def shared_atomic_directory(
    path: PathLike,
    overwrite: bool = False,
    inputs: Iterable[PathLike | None] = (),
    key: str = "output_dir",
    finish: Callable[[str, list[Any]], None] | None = None,
) -> Iterator[SharedFolder]:
    """:func:`atomic_directory` that every rank of a ``torchrun`` job writes into.

    Yields a :class:`SharedFolder`. In a plain process this is ``atomic_directory`` (``finish`` is called
    with the results before the rename). Under ``torchrun``, rank 0 checks ``path`` and creates the
    temporary folder, whose name every rank receives; each rank writes the files of its own inputs there
    (names no other rank writes) and appends one result per input to ``results``. Then the ranks gather
    whether they succeeded and their results: if all did, rank 0 calls ``finish(temporary folder,
    merged results)`` (for what the ranks share, e.g. a table), renames the folder onto ``path``, and every
    rank returns once it is in place, with ``merged`` set; if any failed, the folder is removed and every
    rank raises (naming the failed ranks): the output appears complete or not at all.
    """
    if not is_distributed():
        with atomic_directory(path, overwrite=overwrite, inputs=inputs, key=key) as tmp:
            folder = SharedFolder(tmp)
            yield folder
            folder.merged = list(folder.results)
            if finish is not None:
                finish(tmp, folder.merged)
        return
    rank = get_rank()
    final = False
    try:
        with contextlib.ExitStack() as stack:
            tmp, error = None, None
            if rank == 0:
                try:
                    tmp = stack.enter_context(atomic_directory(path, overwrite=overwrite, inputs=inputs, key=key))
                except Exception as exc:
                    error = exc
            tmp, message = broadcast_object((tmp, None if error is None else f"{type(error).__name__}: {error}"))
            if error is not None:
                raise error
            if message is not None:
                raise RuntimeError(f"rank 0 could not create {os.fspath(path)}: {message}")
            folder = SharedFolder(tmp)
            failure: BaseException | None = None
            try:
                yield folder
            except BaseException as exc:  # told to the other ranks before re-raising, so none waits forever
                failure = exc
            what = None if failure is None else f"rank {rank}: {type(failure).__name__}: {failure}"
            reports = all_gather_objects((what, folder.results if failure is None else []))
            if failure is not None:
                raise failure  # on rank 0 this removes the temporary folder
            failed = [r for r, _ in reports if r is not None]
            if failed:
                raise RuntimeError(f"{os.fspath(path)}: nothing was written, another rank failed ({'; '.join(failed)})")
            folder.merged = _interleave([results for _, results in reports])
            final = True
            if finish is not None and rank == 0:
                finish(tmp, folder.merged)
        # rank 0 has renamed the folder onto path (leaving the block); it tells the others it is in place
    except BaseException as exc:
        if final:  # finishing or renaming failed on rank 0: the others wait for its word
            broadcast_object(f"{type(exc).__name__}: {exc}")
        raise
    outcome = broadcast_object(None)
    if outcome is not None:
        raise RuntimeError(f"{os.fspath(path)}: nothing was written, rank 0 failed to finish it ({outcome})")
