"""GPU throughput of the cell pipeline (issue 9, goal 5): training iterations/s and end-to-end frames/s.

Usage::

    # on a machine with a CUDA GPU (the measurement the goal asks for; a few minutes)
    python benchmarks/bench_gpu.py --out /tmp/gpu.md
    # the same script on CPU with tiny sizes (seconds; tests/test_bench_gpu.py runs this)
    python benchmarks/bench_gpu.py --device cpu --tiny

Two measurements, one run:

1. **Training iterations per second** of the paper-size recurrent stacked hourglass (7 levels x 64
   filters, 2 stacks, 16-d embeddings; ``--tiny``: 3 x 8) on clips of ``--clip_length`` 10 frames of
   ``--size`` 256² (batch 1, as the paper), with the bundle's loss (:class:`~cosinetrack.losses.StackedLoss`
   of :class:`~cosinetrack.losses.CosineEmbeddingLoss`, r_N 10, at most 32 instances) and Adam: forward
   under bfloat16 autocast (``torch.autocast(device, dtype=torch.bfloat16)``; no gradient scaler is
   needed for bfloat16), float32 loss, backward, step; and the same in float32 for comparison
   (``--precisions``). Clips and labels come from the synthetic cell videos
   (:func:`~cosinetrack.apps.cell.generate_cell_video`), on the device before timing; the
   time is the median over ``--train_iters`` iterations after ``--warmup`` untimed ones, with
   ``torch.cuda.synchronize()`` around each.
2. **End-to-end inference frames per second** at 256²: the pipeline of
   ``benchmarks/bench_end_to_end.py`` on one CTC sequence (``--dataset``/``--sequence``/``--frames``,
   or by default a synthetic 256² sequence written to a temporary folder): read + normalize, the
   paper-size network stepped on the device (``amp``: the pipeline's autocast, i.e. float16 on CUDA and
   bfloat16 on CPU, :func:`~cosinetrack.inference.autocast_context`), ``fast`` clustering of every pair on
   the CPU, tracking, writing. The paper-size network has random weights, so (as in
   ``bench_end_to_end.py``) the clustering gets the embeddings of the trained model the cell bundle
   ships (``--model``, computed beforehand on the same frames); the paper-size network runs in the loop
   on every frame. Schedules: ``serial`` (the bundle's loop), ``overlap`` (reader thread, network,
   clustering/tracking/writing thread) and ``pool`` (clustering in ``--cluster_workers`` processes,
   several pairs at once; default: all cores but two). Frames per second = frames / wall time.

Goal 5 of issue 9: >= 100 frames/s end to end on a GPU. With clustering on the CPU at about 0.05-0.07 s
per pair per core (``docs/benchmarks_cell_inference.md``), a single clustering thread caps the pipeline
near 15-20 frames/s whatever the GPU does; only the ``pool`` schedule can approach the goal, and then
tracking, reading and writing (one thread each) are the limits.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cosinetrack.apps.cell.presets import clustering_parameters, ctc_preset
from cosinetrack.apps.cell.reader import find_ctc_sequences, read_ctc_frame
from cosinetrack.apps.cell.synthetic import generate_cell_video, write_ctc_sequence
from cosinetrack.io.atomic import atomic_write_text
from cosinetrack.losses.cosine_embedding import CosineEmbeddingLoss
from cosinetrack.losses.stacked import StackedLoss
from cosinetrack.networks.stacked import RecurrentStackedHourglass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_end_to_end import (  # noqa: E402  (the end-to-end pipeline and its schedules)
    REPO,
    CachedEmbeddingSegmenter,
    bundle_settings,
    cluster_pool,
    embeddings_of,
    per_frame,
    shipped_network,
    time_config,
)
from bench_network import cpu_model  # noqa: E402

PAPER = {"num_levels": 7, "num_filters": 64}
TINY = {"num_levels": 3, "num_filters": 8}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bf16_region(device: torch.device, on: bool) -> contextlib.AbstractContextManager:
    """Training autocast: bfloat16 on CUDA and CPU (no gradient scaler needed), or nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if on else contextlib.nullcontext()


def network(size: dict[str, int], device: torch.device) -> RecurrentStackedHourglass:
    torch.manual_seed(0)
    net = RecurrentStackedHourglass(1, 16, num_stacks=2, recurrent=True, **size)
    return net.to(device)


def training_clip(args: argparse.Namespace, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One synthetic clip ``(1, T, 1, S, S)`` (roughly normalized) and its labels ``(1, T, 1, S, S)``."""
    images, labels, _ = generate_cell_video(0, num_frames=args.clip_length, image_size=(args.size,) * 2)
    x = images.astype(np.float32)
    x = 2 * (x - np.percentile(x, 5)) / max(np.percentile(x, 99.5) - np.percentile(x, 5), 1e-6) - 1
    clip = torch.as_tensor(x)[None, :, None].to(device)
    lab = torch.as_tensor(labels.astype(np.int64))[None, :, None].to(device)
    return clip, lab


def time_training(args: argparse.Namespace, device: torch.device, bf16: bool) -> dict[str, float]:
    """Median seconds of one training iteration (forward, loss, backward, Adam step) and the last loss."""
    net = network(TINY if args.tiny else PAPER, device).train()
    loss_fn = StackedLoss(CosineEmbeddingLoss(neighbor_radius=10, max_instances=32, seed=0))
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    clip, lab = training_clip(args, device)
    times, loss = [], float("nan")
    for i in range(args.warmup + args.train_iters):
        synchronize(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with bf16_region(device, bf16):
            outs = net(clip)
        value = loss_fn([o.float() for o in outs], lab)
        value.backward()
        opt.step()
        synchronize(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
        loss = float(value.detach())
    if not np.isfinite(loss):
        raise RuntimeError(f"training ({'bf16' if bf16 else 'fp32'}): the loss is not finite ({loss})")
    return {"seconds": statistics.median(times), "loss": loss}


def inference_sequence(args: argparse.Namespace, tmp: str) -> tuple[dict, list[int]]:
    """The sequence and frames of the inference run: ``--dataset`` or a synthetic one written to ``tmp``."""
    if args.dataset:
        for seq in find_ctc_sequences(args.dataset):
            if seq.name == args.sequence:
                parts = [int(s) if s.strip() else None for s in args.frames.split(":")]
                return seq, list(seq.frames)[slice(*parts)]
        raise SystemExit(f"{args.dataset}: no sequence {args.sequence!r}")
    images, labels, tracks = generate_cell_video(1, num_frames=args.num_frames, image_size=(args.size,) * 2)
    write_ctc_sequence(tmp, "01", images, labels, tracks)
    (seq,) = find_ctc_sequences(tmp)
    return seq, list(seq.frames)


def time_inference(args: argparse.Namespace, device: torch.device, tmp: str) -> list[dict[str, Any]]:
    seq, frames = inference_sequence(args, tmp)
    if len(frames) < 2:
        raise SystemExit("the inference run needs at least 2 frames")
    settings = bundle_settings(args.bundle)
    preset = ctc_preset(args.dataset_preset, seq.root)
    size = (args.size,) * 2
    frame_size = read_ctc_frame(seq.images[frames[0]]).shape
    options = {**settings["clustering_options"], "mode": "fast"}
    kwargs = clustering_parameters(preset, size, frame_size, "scaled", **options)
    shipped = shipped_network(args.model, str(device))
    paper = network(TINY if args.tiny else PAPER, device).eval()
    workers = args.cluster_workers if args.cluster_workers > 0 else max(1, (os.cpu_count() or 1) - 2)
    pool = cluster_pool(workers) if "pool" in args.schedules else None
    if pool is not None:
        pool.submit(int).result()  # start the workers before anything is timed
    rows = []
    try:
        for precision in args.precisions:
            amp = precision == "amp"
            cached = embeddings_of(shipped, seq, frames, preset, settings, size, str(device), amp)
            common = {"device": device, "padding_mode": settings["padding_mode"], "amp": amp}

            def make(c=common, e=cached):
                return CachedEmbeddingSegmenter(paper, e, size, kwargs, **c)

            for schedule in args.schedules:
                res = time_config(schedule, make, seq, frames, preset, settings, args.warmup, pool)
                p = per_frame(res)
                rows.append({"precision": precision, "schedule": schedule, "frames": res["frames"],
                             "tracks": res["tracks"], **p})  # fmt: skip
                print(f"# inference {precision} {schedule}: {1 / p['total']:.1f} frames/s", flush=True)
    finally:
        if pool is not None:
            pool.shutdown()
    for row in rows:
        row.update(data=f"{os.path.basename(os.path.normpath(seq.root))}/{seq.name} "
                        f"{frame_size[1]}x{frame_size[0]}, {len(frames)} frames", workers=workers)  # fmt: skip
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--device", default="cuda", help="torch device (cuda, cuda:1, cpu)")
    a("--tiny", action="store_true", help="tiny sizes for a CPU smoke run: 3 x 8 network, 64², short clips")
    a("--size", type=int, default=None, help="frame / canvas size (default 256; tiny 64)")
    a("--clip_length", type=int, default=None, help="training clip frames (default 10; tiny 3)")
    a("--train_iters", type=int, default=None, help="timed training iterations (default 20; tiny 2)")
    a("--warmup", type=int, default=None, help="untimed iterations / frames first (default 3; tiny 1)")
    a("--num_frames", type=int, default=None, help="frames of the synthetic inference video (default 60; tiny 4)")
    a("--precisions", nargs="+", choices=["fp32", "amp"], default=["amp", "fp32"],
      help="training: bf16 autocast (amp) and/or float32; inference: the pipeline's amp and/or float32")  # fmt: skip
    a("--schedules", nargs="+", choices=["serial", "overlap", "pool"], default=["serial", "overlap", "pool"])
    a("--cluster_workers", type=int, default=0, help="clustering processes of the pool schedule (0: cores - 2)")
    a("--skip_training", action="store_true", help="only the inference run")
    a("--dataset", default=None, help="CTC data set folder for inference (default: a synthetic sequence)")
    a("--sequence", default="01", help="sequence of --dataset")
    a("--frames", default=":", help="frames of --dataset: python slice START:STOP")
    a("--dataset_preset", default=None, help="CTC preset (default: from the --dataset name, else the default)")
    a("--model", default=os.path.join(REPO, "bundles", "cell", "models", "model.pt"), help="trained cell model")
    a("--bundle", default=os.path.join(REPO, "bundles", "cell", "train.json"), help="bundle config (settings)")
    a("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    a("--out", default=None, help="also write the markdown report to this file (replaces it)")
    args = p.parse_args(argv)
    defaults = {"size": (64, 256), "clip_length": (3, 10), "train_iters": (2, 20), "warmup": (1, 3),
                "num_frames": (4, 60)}  # fmt: skip
    for key, (tiny, full) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, tiny if args.tiny else full)
    return args


def main(argv: Sequence[str] | None = None) -> str:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (torch.cuda.is_available() is False); use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    command = "python benchmarks/bench_gpu.py " + " ".join(sys.argv[1:] if argv is None else argv)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none (CPU run)"
    size = TINY if args.tiny else PAPER
    header = [
        f"- Command: `{command.strip()}`",
        f"- Date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- Device: {device}, GPU {gpu}; CPU {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads; load average at the start {os.getloadavg()[0]:.1f}",
        f"- Network: RecurrentStackedHourglass(1, 16, num_levels={size['num_levels']}, "
        f"num_filters={size['num_filters']}, num_stacks=2, recurrent=True), random weights, {args.size}² frames",
    ]
    for line in header:
        print("# " + line[2:], flush=True)
    sections = ["# Benchmark: GPU throughput of the cell pipeline (issue 9, goal 5)\n", *header, ""]
    if not args.skip_training:
        lines = ["| precision | s / iteration | iterations / s | last loss |", "|---|---:|---:|---:|"]
        for precision in args.precisions:
            res = time_training(args, device, bf16=precision == "amp")
            name = "bf16 autocast" if precision == "amp" else "fp32"
            print(f"# training {name}: {1 / res['seconds']:.2f} it/s", flush=True)
            lines.append(f"| {name} | {res['seconds']:.4f} | {1 / res['seconds']:.2f} | {res['loss']:.4f} |")
        sections += [f"## Training (clips of {args.clip_length} x {args.size}², batch 1, "
                     f"median of {args.train_iters} iterations)\n", *lines, ""]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        rows = time_inference(args, device, tmp)
    lines = [
        "| precision | schedule | reading | network | clustering | tracking | writing | total s/frame | frames/s "
        "| goal >= 100 frames/s | tracks |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        fps = 1.0 / r["total"]
        lines.append(
            f"| {r['precision']} | {r['schedule']} | "
            + " | ".join(f"{r[k]:.4f}" for k in ("reading", "network", "clustering", "tracking", "writing", "total"))
            + f" | {fps:.1f} | {'met' if fps >= 100 else f'missed ({fps / 100:.2f}x)'} | {r['tracks']} |"
        )
    sections += [
        f"## End-to-end inference, fast clustering ({rows[0]['data']}; pool: {rows[0]['workers']} workers)\n",
        "Seconds per frame by stage (overlap/pool: each thread's own time, clustering = the workers' time "
        "summed), wall time per frame, frames per second; `amp` = the pipeline's autocast (float16 on CUDA, "
        "bfloat16 on CPU); `tracks` = tracks in the result (the same in every schedule).\n",
        *lines,
        "",
        f"Benchmark time {time.perf_counter() - start:.0f} s, load average at the end {os.getloadavg()[0]:.1f}.",
    ]
    report = "\n".join(sections) + "\n"
    print("\n" + report)
    if args.out:
        atomic_write_text(args.out, report)
    return report


if __name__ == "__main__":
    main()
