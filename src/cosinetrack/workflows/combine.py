"""One model file from several trained runs: an ensemble that inference and evaluation load like any model.

Command line (from the repository root)::

    python -m cosinetrack.workflows.combine runs/cell/a/model_final.pt runs/cell/b/model_final.pt \\
        --output bundles/cell/models/model.pt

The members must be model files of one network shape (``{"model": weights, "network": settings}``, as
training writes them) trained for the same input: the same canvas (``image_size``, ``fit``) and
normalization. The output holds the members' weights under ``networks.<i>.``, their shared settings with
``members`` and ``background`` (``--background mean|votes``) added (:func:`~cosinetrack.workflows.network_for_model`
then builds an :class:`~cosinetrack.networks.EmbeddingEnsemble`), every other entry of the members (canvas,
normalization, clustering), and ``ensemble``: each member's file name and SHA-256. It is written atomically;
the members are only read.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Sequence
from typing import Any

import torch

from cosinetrack.errors import CosineTrackDataError, install_excepthook
from cosinetrack.io.atomic import atomic_file
from cosinetrack.io.paths import require_file
from cosinetrack.networks.ensemble import BACKGROUND_RULES
from cosinetrack.workflows.checkpoint import read_checkpoint

__all__ = ["combine_model_files", "main"]

# entries a member file may carry besides its weights and settings; they must agree across members
_SHARED_ENTRIES = ("image_size", "fit", "normalization", "clustering")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_member(path: str) -> dict[str, Any]:
    state = read_checkpoint(require_file(path, "member"))
    if not (
        isinstance(state, dict) and isinstance(state.get("model"), dict) and isinstance(state.get("network"), dict)
    ):
        raise CosineTrackDataError(
            path, "not a model file with recorded network settings ({'model': weights, 'network': settings})"
        )
    if "members" in state["network"] or "ensemble" in state:
        raise CosineTrackDataError(path, "this model file is already an ensemble; combine its member files instead")
    unknown = sorted(set(state) - {"model", "network", *_SHARED_ENTRIES})
    if unknown:
        raise CosineTrackDataError(path, f"unexpected entries {unknown} in a model file (a training checkpoint?)")
    return state


def combine_model_files(paths: Sequence[str], output: str, background: str = "mean") -> dict[str, Any]:
    """Write the model files ``paths`` (two or more) as one ensemble model file ``output``; returns what was written.

    ``background`` (recorded in the file's network settings): ``"mean"``, the members' mean similarity to the
    background decides, or ``"votes"``, every member votes (:class:`~cosinetrack.networks.EmbeddingEnsemble`).

    Raises:
        CosineTrackDataError: naming the file, when fewer than two files are given, a file is not a model
            file, or a member's network settings or canvas / normalization / clustering entries differ
            from the first member's (each difference listed).
    """
    paths = [os.fspath(p) for p in paths]
    if background not in BACKGROUND_RULES:
        raise CosineTrackDataError(None, f"background: expected one of {BACKGROUND_RULES}, got {background!r}")
    if len(paths) < 2:
        raise CosineTrackDataError(paths[0] if paths else None, "an ensemble needs at least two model files")
    members = [_read_member(p) for p in paths]
    first = members[0]
    for path, state in zip(paths[1:], members[1:]):
        diff = [
            f"{k}={state.get(k)!r} (first member {paths[0]}: {first.get(k)!r})"
            for k in ("network", *_SHARED_ENTRIES)
            if state.get(k) != first.get(k)
        ]
        if diff:
            raise CosineTrackDataError(path, f"does not fit the ensemble's first member: {'; '.join(diff)}")
    weights = {f"networks.{i}.{k}": v for i, state in enumerate(members) for k, v in state["model"].items()}
    result: dict[str, Any] = {
        "model": weights,
        "network": {"members": len(members), **first["network"], "background": background},
        **{k: first[k] for k in _SHARED_ENTRIES if k in first},
        "ensemble": {"files": [os.path.basename(p) for p in paths], "sha256": [_sha256(p) for p in paths]},
    }
    with atomic_file(output, suffix=".pt", inputs=paths) as tmp:
        torch.save(result, tmp)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m cosinetrack.workflows.combine MEMBER.pt MEMBER.pt [...] --output ENSEMBLE.pt``."""
    install_excepthook()
    parser = argparse.ArgumentParser(
        prog="python -m cosinetrack.workflows.combine",
        description="Combine trained model files of one network shape into one ensemble model file.",
    )
    parser.add_argument("members", nargs="+", help="model files (model_final.pt of runs of one recipe)")
    parser.add_argument("--output", required=True, help="the ensemble model file to write")
    parser.add_argument(
        "--background",
        choices=BACKGROUND_RULES,
        default="mean",
        help="how the members decide the background: their mean similarity (default) or every member's vote",
    )
    args = parser.parse_args(argv)
    result = combine_model_files(args.members, args.output, args.background)
    print(f"{args.output}: an ensemble of {result['network']['members']} networks ({', '.join(args.members)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
