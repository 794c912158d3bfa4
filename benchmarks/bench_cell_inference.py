"""Streaming inference of the cell bundle on real CTC frames: time per frame by stage, and peak memory.

Usage::

    # time per frame on Fluo-N2DH-SIM+/01 frames 50..64 (the bundle's validation part), trained network
    python benchmarks/bench_cell_inference.py --ckpt runs/cell/<run>/model_best.pt --num_levels 5 --num_filters 16
    # untrained paper-size network (7 levels, 64 filters), scaled and tiled paths, report to a file
    python benchmarks/bench_cell_inference.py --resolution scaled tiled --out /tmp/cell_inference.md
    # tiny smoke test
    python benchmarks/bench_cell_inference.py --num_levels 3 --num_filters 8 --frames 50:53 \
        --memory-frames 3,5 --threads 1

Runs exactly what the cell bundle's validation runs for one video part
(:func:`cosinetrack.apps.cell.track_sequence_part`: frames read one at a time, normalized with the
data set's preset, the recurrent network stepped frame by frame, each pair of frames clustered with
HDBSCAN, the pair labels tracked by IoU, every finalised frame written to a CTC result folder in a
temporary directory), with the bundle's settings read from ``bundles/cell/train.json``
(``tracking``, ``lineage``, ``clustering_options``, ``normalization.smooth_sigma``; ``--max_points``
overrides ``clustering_options.max_points``) and the clustering parameters of the data set's preset
converted to the network input size by :func:`cosinetrack.apps.cell.clustering_parameters`.

1. **Time per frame by stage** (``--dataset``, ``--sequence``, ``--frames``): the pipeline's own
   timings (``network``: scale/pad to the canvas + ``network.step`` + copy of the embeddings;
   ``clustering``: HDBSCAN of the pair + resampling the labels to the frame size (tiled: per-tile
   clustering + stitching); ``tracking``: IoU tracker + lineage; ``writing``: TIFF masks + final
   relabelling), divided by the number of frames; ``other`` is the rest of the wall time (reading and
   normalizing frames, the result folder's creation and ``res_track.txt``). One row per ``--resolution``
   (``scaled`` = the paper: frames scaled to fit the ``--image_size`` canvas; ``tiled`` = native
   resolution in ``--tile_size`` tiles overlapping by ``--tile_overlap``). Before each timed run,
   ``--warmup-frames`` frames go through the same pipeline untimed (oneDNN primitive creation etc.).
2. **Peak memory vs video length** (``--memory-dataset``, ``--memory-frames``): for each N, a child
   process (this script with ``--child``) builds the same network, streams the first N frames of the
   sequence, and reports its peak resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``), the RSS
   after imports + network build (+ weights) and before any frame was read, and its own per-frame
   timings. The streaming pipeline holds one frame, two frames' embeddings, the tracker's short history
   and the GRU state, so the peak should not grow with N.

Without ``--ckpt`` the network has random weights (``torch.manual_seed(0)``): the network time is
representative, the clustering time is not (untrained embeddings do not separate the background from
the cells, so HDBSCAN sees far more foreground points and finds meaningless clusters), nor are
tracking/writing (number of objects). ``--ckpt`` takes a state dict saved by the trainer's
``CheckpointSaver`` (``{"model": state_dict}``, :func:`cosinetrack.workflows.load_weights`);
``--num_levels``/``--num_filters`` must match it (``configs/cell_cpu.json``: 5 levels, 16 filters).

glibc malloc settings are left at their defaults (as the bundle runs); ``--malloc-tuning`` re-executes
with those of ``benchmarks/bench_network.py`` (the children inherit them).
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
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from cosinetrack.apps.cell.pipeline import track_sequence_part
from cosinetrack.apps.cell.presets import clustering_parameters, ctc_preset
from cosinetrack.apps.cell.reader import find_ctc_sequences, read_ctc_frame
from cosinetrack.apps.cell.sequence import VideoPart
from cosinetrack.inference.tiling import tile_grid
from cosinetrack.io.atomic import atomic_write_text
from cosinetrack.workflows.checkpoint import load_weights

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_fast_clustering import bundle_tracking  # noqa: E402  (the bundle's tracking section, resolved)
from bench_network import cpu_model  # noqa: E402  (the same machine description as the network benchmark)

from cosinetrack.networks.stacked import RecurrentStackedHourglass

MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(os.path.dirname(REPO), "shared", "data", "ctc")
CHILD_TAG = "BENCH_CELL_INFERENCE_CHILD "
STAGES = ("network", "clustering", "tracking", "writing")


def mib_maxrss() -> float:
    """Peak resident set size of this process so far, MiB (Linux: ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def mib_rss() -> float:
    """Current resident set size of this process, MiB (``VmRSS``; ``nan`` where ``/proc`` is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def bundle_settings(path: str) -> dict[str, Any]:
    """The cell bundle's inference settings (literal values of its JSON config)."""
    with open(path) as f:
        cfg = json.load(f)
    settings = {
        "tracking": bundle_tracking(path),
        "lineage": cfg["lineage"],
        "clustering_options": cfg["clustering_options"],
        "smooth_sigma": cfg["normalization"]["smooth_sigma"],
        "smooth_padding": cfg["normalization"].get("smooth_padding", "edge"),
        "canvas_margin": int(cfg.get("canvas_margin", 0)),
    }

    def expression(v: Any) -> bool:  # MONAI config syntax: "$python", "@reference", "%file#key"
        return isinstance(v, str) and v[:1] in ("$", "@", "%")

    for key, value in settings.items():
        if expression(value) or (isinstance(value, dict) and any(expression(v) for v in value.values())):
            raise ValueError(f"{path}: '{key}' is an expression ({value!r}); this benchmark needs literal values")
    return settings


def find_sequence(dataset: str, name: str) -> dict:
    for seq in find_ctc_sequences(dataset):
        if seq.name == name:
            return seq
    raise SystemExit(f"{dataset}: no sequence {name!r}")


def parse_frames(spec: str, frames: Sequence[int]) -> list[int]:
    """``"a:b"`` (python slice over the sequence's sorted frame numbers, e.g. ``-15:``) or ``"all"``."""
    if spec == "all":
        return list(frames)
    parts = [int(p) if p.strip() else None for p in spec.split(":")]
    if len(parts) != 2:
        raise SystemExit(f"--frames: expected START:STOP (python slice) or 'all', got {spec!r}")
    return list(frames)[slice(*parts)]


def build_network(args: argparse.Namespace) -> RecurrentStackedHourglass:
    """The bundle's ``network_def`` (recurrent, 2 stacks, 16-d embeddings), with ``--ckpt`` weights if given."""
    torch.manual_seed(0)
    net = RecurrentStackedHourglass(
        in_channels=1, out_channels=16, num_levels=args.num_levels, num_filters=args.num_filters,
        num_stacks=2, recurrent=True,
    )  # fmt: skip
    if args.ckpt:
        try:
            load_weights(net, args.ckpt, map_location=args.device)
        except RuntimeError as err:
            raise SystemExit(
                f"{args.ckpt}: does not fit a network with --num_levels {args.num_levels} --num_filters "
                f"{args.num_filters} ({str(err).splitlines()[0]})"
            ) from err
    return net.to(args.device).eval()


def stream(
    net: torch.nn.Module, seq: dict, frames: Sequence[int], resolution: str, args: argparse.Namespace,
    settings: Mapping[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """Segment and track ``frames`` of ``seq`` as the bundle's validation does; timings and wall time."""
    preset = ctc_preset(None, seq.root)
    frame_size = read_ctc_frame(seq.images[frames[0]]).shape
    size = (args.image_size,) * 2 if resolution == "scaled" else (args.tile_size,) * 2
    options = {**settings["clustering_options"], "max_points": args.max_points}
    kwargs = clustering_parameters(preset, size, frame_size, resolution, **options)
    # the bundle's rule: test-time flips with the scaled canvas (tiles have none)
    flips = resolution == "scaled" if args.test_time_flips == "bundle" else args.test_time_flips == "true"
    part = VideoPart(f"{seq.name}[{frames[0]}:{frames[-1] + 1}]", seq, tuple(frames))
    with tempfile.TemporaryDirectory(prefix="bench_cell_inference_") as tmp:
        t0 = time.perf_counter()
        result = track_sequence_part(
            net, part, os.path.join(tmp, "01_RES"), size, kwargs, i_min=preset["i_min"], i_max=preset["i_max"],
            smooth_sigma=settings["smooth_sigma"], smooth_padding=settings["smooth_padding"], resolution=resolution,
            tile_overlap=args.tile_overlap if resolution == "tiled" else None, tracking=settings["tracking"],
            lineage=settings["lineage"], device=args.device, canvas_margin=settings["canvas_margin"],
            test_time_flips=flips,
        )  # fmt: skip
        wall = time.perf_counter() - t0
    return {
        "frames": result["num_frames"],
        "timings": {k: float(result["timings"].get(k, 0.0)) for k in STAGES},
        "wall": wall,
        "tracks": int(len(result["tracks"])),
        "frame_size": list(frame_size),
        "preset": preset["name"],
        "test_time_flips": flips,
        "cluster_kwargs": {k: v for k, v in kwargs.items() if k in ("min_samples", "coordinate_scale", "max_points")},
    }


def warm_up(net: torch.nn.Module, seq: dict, frames: Sequence[int], resolution: str, args, settings) -> None:
    """Run the pipeline untimed on the first ``--warmup-frames`` frames (at least 2 to cluster a pair)."""
    if args.warmup_frames > 0:
        stream(net, seq, list(frames)[: max(2, args.warmup_frames)], resolution, args, settings)


def per_frame(res: Mapping[str, Any]) -> dict[str, float]:
    n = max(1, res["frames"])
    out = {k: res["timings"][k] / n for k in STAGES}
    out["other"] = max(0.0, res["wall"] - sum(res["timings"].values())) / n
    out["total"] = res["wall"] / n
    return out


def config_name(resolution: str, res: Mapping[str, Any], args: argparse.Namespace) -> str:
    net = f"{args.num_levels} levels x {args.num_filters} filters, " + (
        f"weights {os.path.basename(args.ckpt)}" if args.ckpt else "untrained"
    )
    h, w = res["frame_size"]
    if resolution == "scaled":
        where = f"scaled to {args.image_size}² canvas"
    else:
        grid = tile_grid((h, w), (args.tile_size,) * 2, args.tile_overlap)
        where = f"tiled {args.tile_size}², overlap {grid.overlap[0]} ({grid.num_tiles} tiles)"
    ck = res["cluster_kwargs"]
    where += ", test-time flips" if res.get("test_time_flips") else ""
    return f"{where}, {net}; m_pts {ck['min_samples']}, c {ck['coordinate_scale']:g}, max_points {ck['max_points']}"


def timing_table(rows: list[tuple[str, str, Mapping[str, Any]]]) -> str:
    lines = [
        "| config | data | frames | network | clustering | tracking | writing | other | total | tracks |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for config, data, res in rows:
        p = per_frame(res)
        lines.append(
            f"| {config} | {data} | {res['frames']} | "
            + " | ".join(f"{p[k]:.3f}" for k in (*STAGES, "other", "total"))
            + f" | {res['tracks']} |"
        )
    return "\n".join(lines)


def memory_table(rows: list[Mapping[str, Any]]) -> str:
    lines = [
        "| frames | peak RSS MiB | RSS after setup MiB | increase MiB | network | clustering | tracking | writing "
        "| other | total | tracks |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        p = per_frame(r)
        lines.append(
            f"| {r['frames']} | {r['peak_mib']:.0f} | {r['setup_rss_mib']:.0f} | "
            f"{r['peak_mib'] - r['setup_rss_mib']:.0f} | "
            + " | ".join(f"{p[k]:.3f}" for k in (*STAGES, "other", "total"))
            + f" | {r['tracks']} |"
        )
    return "\n".join(lines)


def common_argv(args: argparse.Namespace) -> list[str]:
    """Options a child needs to rebuild the same network and pipeline."""
    out = [
        "--num_levels", str(args.num_levels), "--num_filters", str(args.num_filters),
        "--image_size", str(args.image_size), "--tile_size", str(args.tile_size),
        "--max_points", str(args.max_points), "--threads", str(args.threads), "--device", args.device,
        "--warmup-frames", str(args.warmup_frames), "--bundle", args.bundle,
    ]  # fmt: skip
    if args.ckpt:
        out += ["--ckpt", args.ckpt]
    if args.tile_overlap is not None:
        out += ["--tile_overlap", str(args.tile_overlap)]
    return out


def run_child(args: argparse.Namespace) -> None:
    """``--child``: stream the first ``--child-frames`` frames of the memory sequence; print one JSON line."""
    setup_start = time.perf_counter()
    settings = bundle_settings(args.bundle)
    seq = find_sequence(args.memory_dataset, args.memory_sequence)
    net = build_network(args)
    frames = list(seq.frames)[: args.child_frames]
    setup = {"setup_peak_mib": mib_maxrss(), "setup_rss_mib": mib_rss(), "setup_s": time.perf_counter() - setup_start}
    warm_up(net, seq, frames, args.memory_resolution, args, settings)
    res = stream(net, seq, frames, args.memory_resolution, args, settings)
    res.update(setup, peak_mib=mib_maxrss(), end_rss_mib=mib_rss())
    print(CHILD_TAG + json.dumps(res), flush=True)


def measure_memory(n: int, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable, os.path.abspath(__file__), "--child", "--child-frames", str(n),
        "--memory-dataset", args.memory_dataset, "--memory-sequence", args.memory_sequence,
        "--memory-resolution", args.memory_resolution, *common_argv(args),
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(CHILD_TAG)]
    if proc.returncode != 0 or not lines:
        sys.stdout.write(proc.stdout)
        raise SystemExit(f"memory child for {n} frames failed (exit code {proc.returncode}): {' '.join(cmd)}")
    res = json.loads(lines[-1][len(CHILD_TAG) :])
    res["process_s"] = time.perf_counter() - t0
    return res


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--ckpt", default=None, help="trained weights (CheckpointSaver's model_best.pt); default: untrained network")
    a("--num_levels", "--num-levels", type=int, default=7, help="hourglass levels (paper/bundle: 7; cell_cpu: 5)")
    a("--num_filters", "--num-filters", type=int, default=64, help="filters per level (paper/bundle: 64; cell_cpu: 16)")
    a("--dataset", default=os.path.join(DATA, "Fluo-N2DH-SIM+"), help="CTC data set folder of the timing run")
    a("--sequence", default="01", help="sequence of the timing run")
    a("--frames", default="50:65", help="frames of the timing run: python slice START:STOP over the sequence, or 'all'")
    a("--resolution", nargs="+", choices=["scaled", "tiled"], default=["scaled"], help="pipelines to time")
    a("--image_size", "--image-size", type=int, default=256, help="square network canvas, scaled mode (paper: 256)")
    a("--tile_size", "--tile-size", type=int, default=256, help="square tile size, tiled mode")
    a("--tile_overlap", "--tile-overlap", type=int, default=None, help="tile overlap px (default tile_size // 2)")
    a(
        "--test_time_flips",
        "--test-time-flips",
        choices=["bundle", "true", "false"],
        default="bundle",
        help="four flipped views per frame (bundle: on with the scaled canvas, as the cell bundle)",
    )
    a("--max_points", "--max-points", type=int, default=20000, help="HDBSCAN subsampling cap (bundle: 20000)")
    a("--warmup-frames", type=int, default=2, help="untimed frames through the pipeline before each run (0: none)")
    a("--memory-dataset", default=os.path.join(DATA, "Fluo-N2DH-GOWT1"), help="CTC data set of the memory runs")
    a("--memory-sequence", default="01", help="sequence of the memory runs")
    a("--memory-frames", default="10,92", help="comma-separated frame counts N (first N frames; 'all' = every frame)")
    a("--memory-resolution", choices=["scaled", "tiled"], default="scaled", help="pipeline of the memory runs")
    a("--skip-timing", action="store_true", help="only the memory runs")
    a("--skip-memory", action="store_true", help="only the timing runs")
    a("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    a("--device", default="cpu", help="torch device of the network")
    a("--bundle", default=os.path.join(REPO, "bundles", "cell", "train.json"), help="bundle config (settings)")
    a("--malloc-tuning", action="store_true", help="re-execute with MALLOC_MMAP_MAX_=0 and a huge trim threshold")
    a("--out", default=None, help="also write the markdown report to this file (replaces it)")
    a("--child", action="store_true", help=argparse.SUPPRESS)
    a("--child-frames", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> str | None:
    args = parse_args(argv)
    if args.malloc_tuning and argv is None and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.environ.update(MALLOC_ENV)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        run_child(args)
        return None

    start = time.perf_counter()
    command = "python benchmarks/bench_cell_inference.py " + " ".join(sys.argv[1:] if argv is None else argv)
    tuned = all(os.environ.get(k) == v for k, v in MALLOC_ENV.items())
    header = [
        f"- Command: `{command.strip()}`",
        f"- Date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- Machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, HDBSCAN n_jobs 1, device {args.device}, "
        f"glibc malloc {'tuned' if tuned else 'defaults'}; load average at the start {os.getloadavg()[0]:.1f}",
        f"- Network: RecurrentStackedHourglass(in_channels=1, out_channels=16, num_levels={args.num_levels}, "
        f"num_filters={args.num_filters}, num_stacks=2, recurrent=True), "
        + (f"weights {args.ckpt}" if args.ckpt else "untrained (torch.manual_seed(0))"),
    ]
    for line in header:
        print("# " + line[2:], flush=True)
    settings = bundle_settings(args.bundle)
    sections = ["# Benchmark: cell bundle streaming inference\n", *header, ""]
    notes = []
    if not args.ckpt:
        notes.append(
            "Untrained network: network times are representative, clustering (and tracking/writing) times are "
            "not; untrained embeddings do not separate the background, so HDBSCAN clusters far more points."
        )

    if not args.skip_timing:
        net = build_network(args)
        seq = find_sequence(args.dataset, args.sequence)
        frames = parse_frames(args.frames, list(seq.frames))
        if len(frames) < 2:
            raise SystemExit(f"--frames {args.frames}: need at least 2 frames, got {len(frames)}")
        rows = []
        for resolution in args.resolution:
            warm_up(net, seq, frames, resolution, args, settings)
            res = stream(net, seq, frames, resolution, args, settings)
            data = f"{os.path.basename(os.path.normpath(seq.root))}/{seq.name} [{frames[0]}:{frames[-1] + 1}]"
            config = config_name(resolution, res, args)
            print(f"# {config}: {res['wall']:.1f} s for {res['frames']} frames", flush=True)
            rows.append((config, f"{data} {res['frame_size'][0]}x{res['frame_size'][1]}", res))
        del net
        sections += [
            "## Time per frame by stage (seconds per frame)\n",
            "`other` = wall time not in the four stages (reading and normalizing frames, result folder); "
            "`total` = wall time / frames; `tracks` = tracks in the result.\n",
            timing_table(rows),
            "",
        ]

    if not args.skip_memory:
        seq = find_sequence(args.memory_dataset, args.memory_sequence)
        available = len(list(seq.frames))
        counts = []
        for item in args.memory_frames.split(","):
            n = available if item.strip() == "all" else int(item)
            if n > available:
                notes.append(f"--memory-frames {n}: the sequence has only {available} frames; used {available}.")
                n = available
            counts.append(max(2, n))
        mem_rows = []
        for n in counts:
            res = measure_memory(n, args)
            print(
                f"# memory, {res['frames']} frames: peak {res['peak_mib']:.0f} MiB, after setup "
                f"{res['setup_rss_mib']:.0f} MiB, {res['wall']:.1f} s streaming",
                flush=True,
            )
            mem_rows.append(res)
        name = os.path.basename(os.path.normpath(seq.root))
        h, w = mem_rows[0]["frame_size"]
        ck = mem_rows[0]["cluster_kwargs"]
        size = args.image_size if args.memory_resolution == "scaled" else args.tile_size
        summary = ""
        if len(mem_rows) > 1:
            lo = min(mem_rows, key=lambda r: r["frames"])
            hi = max(mem_rows, key=lambda r: r["frames"])
            diff = hi["peak_mib"] - lo["peak_mib"]
            summary = (
                f"\nPeak RSS for {hi['frames']} frames - peak for {lo['frames']} frames: {diff:+.0f} MiB "
                f"({100 * diff / lo['peak_mib']:+.1f} %).\n"
            )
        sections += [
            f"## Peak memory vs video length: {name}/{seq.name} ({w}x{h}, {available} frames), "
            f"{args.memory_resolution} {size}², m_pts {ck['min_samples']}, c {ck['coordinate_scale']:g}\n",
            "One child process per row streams the first N frames. `peak RSS` = `ru_maxrss` of the child; "
            "`RSS after setup` = its VmRSS after imports, network build and weights, before any frame; "
            "`increase` = the difference. Times in seconds per frame as above.\n",
            memory_table(mem_rows),
            summary,
        ]

    if notes:
        sections += ["Notes:\n", *(f"- {n}" for n in notes), ""]
    sections.append(f"Benchmark time {time.perf_counter() - start:.0f} s, load average at the end "
                    f"{os.getloadavg()[0]:.1f}.")  # fmt: skip
    report = "\n".join(sections) + "\n"
    print("\n" + report)
    if args.out:
        atomic_write_text(args.out, report)
    return report


if __name__ == "__main__":
    main()
