"""Tiled full-resolution cell inference against the downscaled path: time, scores, and memory (issues 9 and 11).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_tiling.py --threads 1 --out /tmp/bench_tiling.md
    # smoke run (seconds): a small synthetic frame for the memory part, two GOWT1 frames
    OMP_NUM_THREADS=1 python benchmarks/bench_tiling.py --threads 1 --frames 5:7 --memory-size 1024 \
        --memory-tile 256 --cases scaled-fast tiled-fast-s4

Two parts, both with the shipped cell model (``bundles/cell/models/model.pt``, loaded with
:func:`cosinetrack.workflows.network_for_model` + :func:`~cosinetrack.workflows.load_weights`):

1. **Time and scores per frame** on consecutive frames of a CTC sequence (default Fluo-N2DH-GOWT1/01
   frames 5-10, 1024², five of them with SEG ground truth): every case streams the same frames through
   :func:`cosinetrack.inference.segment_and_track_video` (read, normalize, network, clustering,
   tracking, write; the bundle's ``tracking``/``lineage``/``clustering_options``) and the result is
   scored with py-ctcmetrics against the frames' ground truth (renumbered by
   :func:`~cosinetrack.apps.cell.write_ctc_subsequence`). Cases (``--cases``):

   - ``scaled-exact`` / ``scaled-fast``: the paper's path, the frame scaled to the 256² canvas, with
     the bundle's exact HDBSCAN clustering or ``mode="fast"``;
   - ``tiled-fast-s4`` / ``tiled-fast-s1`` / ``tiled-exact-s4``: native 1024² frames in
     ``--tile_size`` tiles overlapping by ``--tile_overlap``
     (:class:`~cosinetrack.inference.TiledPairSegmenter`), each tile pair clustered on a grid
     ``s`` times coarser (``cluster_stride``; ``s = 4`` is the scaled path's pixel size for a 1024²
     frame on a 256² canvas) with ``m_pts`` and ``c`` of the data set's preset converted to that grid.

   ``ratio`` = the case's wall time per frame / the same clustering mode's scaled wall time per frame
   (issue 9, goal 2: a 1024² frame tiled costs at most 17 downscaled frames). A warm-up of two frames
   runs first (untimed).
2. **Peak memory of one 4096² frame pair** (``--memory-size``, ``--memory-tile``, default overlap
   ``tile // 2``): a fresh child process per configuration (``--memory-configs``) builds the network,
   pushes two synthetic frames (smoothed noise with bright discs) through the tiled segmenter and reports
   ``ru_maxrss``, its RSS before the first frame, and the bytes the segmenter keeps per tile between
   frames (:meth:`~cosinetrack.inference.TiledPairSegmenter.kept_bytes`). Issue 11's goal: at most
   2 GB for a 4096² frame with 512² tiles.

The machine may be shared: wall times are upper bounds; the report states the thread count and the load.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
import torch

from cosinetrack.apps.cell.presets import clustering_parameters, ctc_preset
from cosinetrack.apps.cell.reader import find_ctc_sequences, iter_ctc_frames, read_ctc_frame
from cosinetrack.apps.cell.scoring import ctc_scores
from cosinetrack.apps.cell.writer import CTCResultWriter, write_ctc_subsequence
from cosinetrack.inference.segmenter import ScaledPairSegmenter, normalize_frame
from cosinetrack.inference.tiling import TiledPairSegmenter, tile_grid
from cosinetrack.inference.video import segment_and_track_video
from cosinetrack.io.atomic import atomic_write_text
from cosinetrack.workflows.checkpoint import load_weights, network_for_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_fast_clustering import bundle_tracking  # noqa: E402  (the bundle's tracking section, resolved)
from bench_network import cpu_model  # noqa: E402  (the same machine description as the network benchmark)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("COSINETRACK_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
CHILD_TAG = "BENCH_TILING_CHILD "
#: ``scaled-MODE`` or ``tiled-MODE-sSTRIDE[-oOVERLAP]`` (overlap default ``--tile_overlap``)
CASES = ("scaled-exact", "scaled-fast", "tiled-fast-s4", "tiled-fast-s4-o64", "tiled-fast-s1-o64", "tiled-exact-s4-o64")
#: memory configurations: name -> TiledPairSegmenter options
MEMORY_CONFIGS = {
    "disk-bf16-s4": {"storage": "disk", "storage_dtype": "bfloat16", "cluster_stride": 4},
    "memory-bf16-s4": {"storage": "memory", "storage_dtype": "bfloat16", "cluster_stride": 4},
    "memory-f32-s1": {"storage": "memory", "storage_dtype": "float32", "cluster_stride": 1},
}


def bundle_settings(path: str) -> dict[str, Any]:
    with open(path) as f:
        cfg = json.load(f)
    return {
        "tracking": bundle_tracking(path),
        "lineage": dict(cfg["lineage"]),
        "clustering_options": dict(cfg["clustering_options"]),
        "smooth_sigma": float(cfg["normalization"]["smooth_sigma"]),
        "smooth_padding": str(cfg["normalization"].get("smooth_padding", "edge")),
        "padding_mode": str(cfg["augmentation"].get("padding_mode", "zeros")),
    }


def build_network(model: str) -> torch.nn.Module:
    defaults = dict(in_channels=1, out_channels=16, num_levels=5, num_filters=16, num_stacks=2, recurrent=True)
    net = network_for_model(model, **defaults)
    load_weights(net, model, map_location="cpu")
    return net.eval()


def mib_maxrss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def mib_rss() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


# ----------------------------------------------------------------------------------------------------
# part 1: time and scores


def make_segmenter(case: str, net, preset, frame_size, settings, args) -> tuple[Any, dict[str, Any]]:
    kind, mode, *rest = case.split("-")
    options = {**settings["clustering_options"], "mode": mode}
    if kind == "scaled":
        size = (args.image_size,) * 2
        kwargs = clustering_parameters(preset, size, frame_size, "scaled", **options)
        return ScaledPairSegmenter(net, size, kwargs, padding_mode=settings["padding_mode"]), kwargs
    s = int(rest[0][1:])
    overlap = int(rest[1][1:]) if len(rest) > 1 else args.tile_overlap
    grid_frame = (frame_size[0] // s, frame_size[1] // s)
    kwargs = clustering_parameters(preset, (args.tile_size // s,) * 2, grid_frame, "tiled", **options)
    seg = TiledPairSegmenter(
        net, args.tile_size, kwargs, overlap=overlap, cluster_stride=s, storage_dtype=args.storage_dtype
    )
    return seg, kwargs


def run_case(case: str, net, seq, frames, settings, args, gt_dir: str, tmp: str) -> dict[str, Any]:
    preset = ctc_preset(None, seq.root)
    frame_size = tuple(read_ctc_frame(seq.images[frames[0]]).shape)
    seg, kwargs = make_segmenter(case, net, preset, frame_size, settings, args)

    def stream(frame_numbers):
        for i, (_, image) in enumerate(iter_ctc_frames(seq, frame_numbers)):
            yield i, normalize_frame(
                image, preset["i_min"], preset["i_max"], settings["smooth_sigma"], settings["smooth_padding"]
            )

    warm = list(frames)[:2]  # untimed: oneDNN primitives, allocator
    with CTCResultWriter(os.path.join(tmp, f"warm_{case}_RES"), digits=3) as writer:
        res = segment_and_track_video(seg, stream(warm), writer, settings["tracking"], settings["lineage"])
        writer.close(res["tracks"])
    seg.timings = {k: 0.0 for k in seg.timings}
    res_dir = os.path.join(tmp, f"{case}_RES")
    t0, c0 = time.perf_counter(), time.process_time()
    with CTCResultWriter(res_dir, digits=3) as writer:
        res = segment_and_track_video(seg, stream(frames), writer, settings["tracking"], settings["lineage"])
        writer.close(res["tracks"])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = res["num_frames"]
    scores = ctc_scores(res_dir, gt_dir, metrics=("SEG", "TRA", "DET"))
    out = {
        "case": case,
        "frames": n,
        "per_frame": {k: float(v) / n for k, v in res["timings"].items()},
        "total": wall / n,
        "cpu": cpu / n,
        "tracks": int(len(res["tracks"])),
        "scores": {k: float(scores.get(k, float("nan"))) for k in ("SEG", "TRA", "DET")},
        "kwargs": {k: kwargs[k] for k in ("min_samples", "coordinate_scale", "mode")},
    }
    if isinstance(seg, TiledPairSegmenter):
        out["tiles"] = seg.grid.num_tiles
    return out


# ----------------------------------------------------------------------------------------------------
# part 2: memory (child process per configuration)


def synthetic_frame(size: int, seed: int) -> torch.Tensor:
    """A normalized ``(1, size, size)`` frame: smoothed noise with bright discs of radius 20-40 px."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    img = gaussian_filter(rng.normal(size=(size, size)).astype(np.float32), 2.0)
    yy, xx = np.ogrid[:size, :size]
    for _ in range(max(1, size * size // 40000)):
        cy, cx, r = rng.integers(0, size), rng.integers(0, size), rng.integers(20, 40)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += 3.0
    img = np.clip(img / 3.0, -1.0, 1.5)
    return torch.from_numpy(img[None].astype(np.float32))


def run_child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads or 1)
    net = build_network(args.model)
    opts = MEMORY_CONFIGS[args.child]
    preset = ctc_preset("Fluo-N2DH-GOWT1")
    s = opts["cluster_stride"]
    size = (args.memory_size, args.memory_size)
    kwargs = clustering_parameters(
        preset, (args.memory_tile // s,) * 2, (size[0] // s, size[1] // s), "tiled", mode="fast", split_components=True
    )
    seg = TiledPairSegmenter(net, args.memory_tile, kwargs, overlap=args.memory_overlap, **opts)
    frames = [synthetic_frame(args.memory_size, seed) for seed in range(2)]
    rss0 = mib_rss()
    t0 = time.perf_counter()
    assert seg.push(frames[0]) is None
    labels = seg.push(frames[1])
    wall = time.perf_counter() - t0
    peak = mib_maxrss()  # before kept_bytes, which reads the stored batches back
    kept = seg.kept_bytes()
    print(CHILD_TAG + json.dumps({
        "config": args.child, "maxrss": peak, "rss_setup": rss0, "tiles": seg.grid.num_tiles,
        "kept_state_mib": kept["state"] / 2**20, "kept_embedding_mib": kept["embedding"] / 2**20,
        "labels": list(labels.shape), "instances": int(labels.max()), "wall": wall, "timings": seg.timings,
        "batch_size": seg.batch_size,
    }), flush=True)  # fmt: skip


def measure_memory(config: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", config, "--model", args.model,
           "--threads", str(args.threads or 1), "--memory-size", str(args.memory_size),
           "--memory-tile", str(args.memory_tile)]  # fmt: skip
    if args.memory_overlap is not None:
        cmd += ["--memory-overlap", str(args.memory_overlap)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.memory_timeout)
    for line in proc.stdout.splitlines():
        if line.startswith(CHILD_TAG):
            return json.loads(line[len(CHILD_TAG) :])
    return {"config": config, "error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}


# ----------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.path.join(REPO, "bundles", "cell", "models", "model.pt"))
    p.add_argument("--bundle", default=os.path.join(REPO, "bundles", "cell", "train.json"))
    p.add_argument("--dataset", default=os.path.join(DATA, "ctc", "Fluo-N2DH-GOWT1"))
    p.add_argument("--sequence", default="01")
    p.add_argument("--frames", default="5:9", help="START:STOP frame numbers (consecutive), default 5:9")
    p.add_argument("--cases", nargs="*", default=list(CASES[:5]), help=f"default {CASES[:5]}; none: memory only")
    p.add_argument("--image_size", type=int, default=256)
    p.add_argument("--tile_size", type=int, default=256)
    p.add_argument("--tile_overlap", type=int, default=None, help="default tile_size // 2")
    p.add_argument("--storage_dtype", default="float32")
    p.add_argument("--memory-size", dest="memory_size", type=int, default=4096)
    p.add_argument("--memory-tile", dest="memory_tile", type=int, default=512)
    p.add_argument("--memory-overlap", dest="memory_overlap", type=int, default=None, help="default tile // 2")
    p.add_argument("--memory-configs", dest="memory_configs", nargs="*", default=["disk-bf16-s4"],
                   choices=list(MEMORY_CONFIGS))  # fmt: skip
    p.add_argument("--memory-timeout", dest="memory_timeout", type=float, default=600.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> str | None:
    args = parse_args(argv)
    if args.child:
        run_child(args)
        return None
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    settings = bundle_settings(args.bundle)
    seq = next((s for s in find_ctc_sequences(args.dataset) if s.name == args.sequence), None)
    if seq is None:
        raise SystemExit(f"{args.dataset}: no sequence {args.sequence!r}")
    a, b = (int(v) for v in args.frames.split(":"))
    frames = [f for f in list(seq.frames) if a <= f < b]
    command = "python benchmarks/bench_tiling.py " + " ".join(sys.argv[1:] if argv is None else argv)
    frame_size = tuple(read_ctc_frame(seq.images[frames[0]]).shape)
    grid = tile_grid(frame_size, args.tile_size, args.tile_overlap)
    lines = [
        f"- Date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='minutes')}",
        f"- Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} {command}`",
        f"- Machine: {cpu_model()}, {os.cpu_count()} logical CPUs shared with other sessions, "
        f"{torch.get_num_threads()} torch thread, load average at the start {os.getloadavg()[0]:.1f}",
        f"- Model: `{os.path.relpath(args.model, REPO)}` ({network_settings(args.model)})",
        f"- Data: {os.path.basename(os.path.normpath(args.dataset))}/{seq.name} frames {frames[0]}-{frames[-1]} "
        f"({frame_size[0]}x{frame_size[1]}); tiles {args.tile_size}², overlap {grid.overlap[0]}, "
        f"{grid.num_tiles} tiles per frame; bundle clustering_options {settings['clustering_options']}",
        "",
    ]
    print("\n".join(lines), flush=True)
    net = build_network(args.model)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_tiling_") as tmp:
        write_ctc_subsequence(seq, frames, os.path.join(tmp, "gt"), name="01")
        gt_dir = os.path.join(tmp, "gt", "01_GT")
        for case in args.cases:
            row = run_case(case, net, seq, frames, settings, args, gt_dir, tmp)
            rows.append(row)
            print(f"# {case}: {json.dumps(row)}", flush=True)
    scaled = {r["case"].split("-")[1]: r for r in rows if r["case"].startswith("scaled")}
    table = [
        "Seconds per frame (wall, and CPU time of this process); `ratio` = tiled / scaled with the same "
        "clustering mode (wall; CPU):",
        "",
        "| case | tiles | m_pts, c | network | clustering | tracking | writing | wall | CPU | ratio wall | ratio CPU "
        "| SEG | TRA | DET | tracks |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        pf, mode = r["per_frame"], r["case"].split("-")[1]
        ref = scaled.get(mode) if not r["case"].startswith("scaled") else None
        ratio = (r["total"] / ref["total"], r["cpu"] / ref["cpu"]) if ref else (float("nan"),) * 2
        sc = r["scores"]
        table.append(
            f"| {r['case']} | {r.get('tiles', 1)} | {r['kwargs']['min_samples']}, "
            f"{r['kwargs']['coordinate_scale']:.4g} "
            f"| {pf.get('network', 0):.3f} | {pf.get('clustering', 0):.3f} | {pf.get('tracking', 0):.3f} "
            f"| {pf.get('writing', 0):.3f} | {r['total']:.3f} | {r['cpu']:.3f} | {ratio[0]:.1f} | {ratio[1]:.1f} "
            f"| {sc['SEG']:.4f} | {sc['TRA']:.4f} | {sc['DET']:.4f} | {r['tracks']} |"
        )
    mem = [
        "",
        f"Memory: one {args.memory_size}² synthetic frame pair, {args.memory_tile}² tiles, overlap "
        f"{args.memory_overlap if args.memory_overlap is not None else args.memory_tile // 2}, "
        "fresh child process per row:",
        "",
        "| config | tiles | tiles per step | peak RSS MiB | RSS before the frames MiB | kept GRU states MiB "
        "| kept embeddings MiB | s for the pair |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for config in args.memory_configs:
        m = measure_memory(config, args)
        print(f"# memory {config}: {json.dumps(m)}", flush=True)
        if "error" in m:
            mem.append(f"| {config} | | | failed: {m['error']} | | | | |")
            continue
        mem.append(
            f"| {config} | {m['tiles']} | {m['batch_size']} | {m['maxrss']:.0f} | {m['rss_setup']:.0f} "
            f"| {m['kept_state_mib']:.0f} | {m['kept_embedding_mib']:.0f} | {m['wall']:.1f} |"
        )
    tail = [
        "",
        f"Benchmark time {time.perf_counter() - start:.0f} s, load average at the end {os.getloadavg()[0]:.1f}.",
    ]
    report = "\n".join(lines + table + mem + tail) + "\n"
    print(report)
    if args.out:
        atomic_write_text(args.out, report)
    return report


def network_settings(model: str) -> str:
    from cosinetrack.workflows.checkpoint import stored_network_settings

    s = stored_network_settings(model) or {}
    return ", ".join(f"{k} {v}" for k, v in s.items())


if __name__ == "__main__":
    main()
