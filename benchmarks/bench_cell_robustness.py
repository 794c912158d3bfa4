"""Robustness of cell tracking: a trained model and the classical baseline on the same frames under shifts.

A held-out tail of the training video is too easy a test. This benchmark scores a model, through the
cell bundle's own ``evaluating`` workflow (the user's path: preset, normalization, clustering, tracking,
py-ctcmetrics), and the strong classical pipeline of ``bench_ctc_baseline.py`` (``mad``), on the same
frames, under controlled intensity shifts of those frames and on other videos:

========== ==================================================================================================
shift      what is done to every frame (``m`` = median and ``s`` = 99.5th percentile minus median of the
           first frame of the window, so each shift has the same strength relative to the video's contrast)
========== ==================================================================================================
none       nothing
gain0.5    ``x * 0.5``
gain2      ``x * 2``
gauss      ``x + N(0, (0.15 s)^2)``
poisson    photon noise with ``m`` at 30 photons: ``Poisson(x / g) * g``, ``g = m / 30``
blur       Gaussian blur, sigma 2 px
offset     ``x + 0.5 s`` (a brighter background)
========== ==================================================================================================

The shifted frames are written as float32 TIFFs into a temporary copy of the window (renumbered from 0
with its ground truth, :func:`cosinetrack.apps.cell.write_ctc_subsequence`); the inputs are only read. The
noise is drawn with a fixed seed per frame, so both methods see identical frames.

Usage (from the repository root; a checkpoint trained on frames 0-49 of SIM+/01)::

    python benchmarks/bench_cell_robustness.py --ckpt runs/cell/<run>/model_final.pt \\
        --config configs/cell_cpu.json --dataset ../shared/data/ctc/Fluo-N2DH-SIM+ --frames 50:65 \\
        --cross ../shared/data/ctc/Fluo-N2DH-GOWT1 --json rows.json
    python benchmarks/bench_cell_robustness.py --table rows.json

``--cross`` adds the other video(s), every frame (or ``--cross-frames``), unshifted (the model never saw
them; the baseline's parameters were chosen on SIM+/01). ``--shifts none,gain2`` picks shifts; without
``--ckpt`` only the baseline is scored. Rows: method, data, shift, SEG, TRA, DET, OP_CTB, seconds.
``--keep`` keeps each window's working folder under ``--workdir`` (its path is printed): the shifted frames
in ``<name>/01``, the model's CTC result in ``eval/tracking/01_RES``, for ``benchmarks/audit_cell_instances.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tifffile
from scipy import ndimage

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIFTS = ("none", "gain0.5", "gain2", "gauss", "poisson", "blur", "offset")
COLUMNS = ["method", "data", "shift", "SEG", "TRA", "DET", "OP_CTB", "seconds"]


def _baseline_module():
    path = os.path.join(REPO, "benchmarks", "bench_ctc_baseline.py")
    spec = importlib.util.spec_from_file_location("bench_ctc_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shift_function(name: str, reference: np.ndarray, seed: int = 0) -> Callable[[np.ndarray, int], np.ndarray]:
    """``f(frame, t) -> shifted float32 frame`` for shift ``name``, scaled by ``reference`` (the first frame)."""
    if name not in SHIFTS:
        raise ValueError(f"shift: expected one of {SHIFTS}, got {name!r}")
    ref = np.asarray(reference, dtype=np.float64)
    m = float(np.median(ref))
    s = max(float(np.percentile(ref, 99.5)) - m, 1e-6)

    def apply(frame: np.ndarray, t: int) -> np.ndarray:
        x = np.asarray(frame, dtype=np.float64)
        rng = np.random.default_rng([seed, t])
        if name == "gain0.5":
            x = x * 0.5
        elif name == "gain2":
            x = x * 2.0
        elif name == "gauss":
            x = x + rng.normal(0.0, 0.15 * s, x.shape)
        elif name == "poisson":
            g = max(m, 1e-6) / 30.0
            x = rng.poisson(np.clip(x, 0, None) / g) * g
        elif name == "blur":
            x = ndimage.gaussian_filter(x, 2.0)
        elif name == "offset":
            x = x + 0.5 * s
        return x.astype(np.float32)

    return apply


def shifted_copy(sequence: dict, frames: Sequence[int], shift: str, out_root: str) -> dict:
    """A renumbered copy of ``frames`` of ``sequence`` (with its ground truth) whose images carry ``shift``.

    ``out_root`` is named like the data set folder so that the bundle picks the same preset.
    """
    from cosinetrack.apps.cell.reader import find_ctc_sequences, read_ctc_frame
    from cosinetrack.apps.cell.writer import write_ctc_subsequence

    copy = write_ctc_subsequence(sequence, list(frames), out_root, name="01")
    apply = shift_function(shift, read_ctc_frame(copy.images[list(copy.frames)[0]]))
    for t in list(copy.frames):
        path = copy.images[t]
        tifffile.imwrite(path, apply(read_ctc_frame(path), t))
    return find_ctc_sequences(copy.image_dir)[0]


def score_model(
    ckpt: str, configs: Sequence[str], dataset_dir: str, work: str, threads: int, overrides: dict[str, Any]
) -> dict[str, float]:
    """Evaluate ``ckpt`` on every frame of every sequence of ``dataset_dir`` with the cell bundle's
    ``evaluating`` workflow; returns the mean SEG, TRA, DET and OP_CTB."""
    from monai.bundle import ConfigWorkflow

    files = [os.path.join(REPO, "bundles/cell/train.json"), *configs, os.path.join(REPO, "bundles/cell/evaluate.json")]
    overrides = {"val_frames": "-1:", **overrides}  # every frame is scored (evaluate_all); the split only must exist
    workflow = ConfigWorkflow(
        config_file=files, workflow_type=None, run_id="evaluating", logging_file=False,
        dataset_dir=dataset_dir, evaluate_all=True, ckpt_path=ckpt, num_threads=threads,
        tracking_uri=f"sqlite:///{os.path.join(work, 'mlflow.db')}", experiment_name="robustness",
        output_dir=os.path.join(work, "eval"), progress_bar=False, **overrides,
    )  # fmt: skip
    workflow.initialize()
    workflow.run()
    metrics = workflow.parser.get_parsed_content("evaluate#evaluator").state.metrics
    workflow.finalize()
    return {k: float(metrics[f"val_{k}"]) for k in ("SEG", "TRA", "DET", "OP_CTB")}


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from cosinetrack.apps.cell.reader import find_ctc_sequences

    baseline = _baseline_module()
    configs = [os.path.abspath(c) for c in args.config]
    overrides = json.loads(args.overrides) if args.overrides else {}
    rows = []
    jobs = []  # (data label, shift, source sequence, frames, dataset name)
    for dataset in [args.dataset, *args.cross]:
        sequences = {s.name: s for s in find_ctc_sequences(dataset)}
        seq = sequences[args.sequence]
        name = os.path.basename(os.path.normpath(dataset))
        if dataset == args.dataset:
            frames = baseline.parse_frames(args.frames, list(seq.frames))
            for shift in args.shifts:
                jobs.append((f"{name}/{seq.name} {frames[0]}-{frames[-1]}", shift, seq, frames, name))
        else:
            frames = baseline.parse_frames(args.cross_frames, list(seq.frames))
            span = "all" if frames == list(seq.frames) else f"{frames[0]}-{frames[-1]}"
            jobs.append((f"{name}/{seq.name} {span}", "none", seq, frames, name))
    for label, shift, seq, frames, name in jobs:
        if args.keep:  # the shifted frames and the model's result stay for benchmarks/audit_cell_instances.py
            folder: Any = contextlib.nullcontext(tempfile.mkdtemp(prefix="cell-robustness-", dir=args.workdir))
            print(f"kept: {label} {shift} in {folder.enter_result}", flush=True)
        else:
            folder = tempfile.TemporaryDirectory(prefix="cell-robustness-", dir=args.workdir)
        with folder as work:
            root = os.path.join(work, name)
            shifted_copy(seq, frames, shift, root)
            t0 = time.perf_counter()
            row = baseline.run(root, "01", None, method="mad", workdir=work)
            rows.append({"method": "classical (mad)", "data": label, "shift": shift,
                         **{k: row[k] for k in ("SEG", "TRA", "DET", "OP_CTB")},
                         "seconds": time.perf_counter() - t0})  # fmt: skip
            print(rows[-1], flush=True)
            if args.ckpt:
                t0 = time.perf_counter()
                scores = score_model(args.ckpt, configs, root, work, args.threads, overrides)
                rows.append({"method": args.model_name, "data": label, "shift": shift, **scores,
                             "seconds": time.perf_counter() - t0})  # fmt: skip
                print(rows[-1], flush=True)
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", default=None, help="model checkpoint (omit for the baseline alone)")
    parser.add_argument("--model-name", default="cosine embeddings", help="the model's row label")
    parser.add_argument("--config", action="append", default=[], help="bundle overlay(s) the model was trained with")
    parser.add_argument("--overrides", default=None, help="JSON dict of further bundle overrides")
    parser.add_argument("--dataset", help="CTC data set folder of the held-out frames")
    parser.add_argument("--sequence", default="01")
    parser.add_argument("--frames", default="50:65", help="held-out window 'start:stop' of --dataset")
    parser.add_argument("--cross", action="append", default=[], help="other data set folder(s), all frames, unshifted")
    parser.add_argument("--cross-frames", default=None, help="frames 'start:stop' of the --cross videos (default all)")
    parser.add_argument("--shifts", default=",".join(SHIFTS), type=lambda s: [x for x in s.split(",") if x])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true", help="keep each window's working folder (frames, result)")
    parser.add_argument("--json", default=None, help="append the rows to this JSON list file")
    parser.add_argument("--table", default=None, help="only print the table of a JSON list file")
    args = parser.parse_args(argv)
    if args.table:
        with open(args.table, encoding="utf-8") as f:
            print(format_rows(json.load(f)), end="")
        return 0
    if not args.dataset:
        parser.error("--dataset is required (or --table)")
    for s in args.shifts:
        if s not in SHIFTS:
            parser.error(f"--shifts: unknown shift {s!r}; choose from {', '.join(SHIFTS)}")
    rows = run(args)
    print(format_rows(rows), end="")
    if args.json:
        old = []
        if os.path.isfile(args.json):
            with open(args.json, encoding="utf-8") as f:
                old = json.load(f)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(old + rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
