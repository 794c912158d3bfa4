"""Exact against fast clustering of a trained cell model's embeddings: time per frame, SEG and TRA.

Usage::

    python benchmarks/bench_fast_clustering.py --ckpt runs/cell/cell-cpu-scaled-simplus/model_best.pt \\
        --num_levels 5 --num_filters 16 --out /tmp/fast_clustering.md
    # tiny smoke run (seconds to a minute; untrained 3 x 8 network, paper network timed on 64 x 64)
    python benchmarks/bench_fast_clustering.py --num_levels 3 --num_filters 8 \\
        --sets Fluo-N2DH-SIM+:01:50:53 --network_size 64 --network_frames 2

One run answers issue 9's goal 1: is clustering + tracking of a 256 x 256 frame at most ``--goal_ratio``
(0.2) of the paper-size network's streaming step, with SEG and TRA of the fast path within
``--max_score_diff`` (0.005) of the exact path on the same embeddings?

For every ``--sets`` entry ``DATASET:SEQUENCE:START:STOP`` (frames as a python slice, default
``Fluo-N2DH-SIM+/01`` frames 50-64, the cell bundle's held-out part, and ``Fluo-N2DH-GOWT1/01`` frames
0-29), the frames are read and normalized with the data set's preset, scaled to fit the
``--image_size`` canvas and streamed through the network (``--ckpt``, the bundle's recurrent stacked
hourglass) once; the embeddings are kept in memory (and cached as ``.npy`` under ``--cache_dir``, keyed
by checkpoint, data and settings). Then, for each clustering mode, the same embeddings go through the
bundle's streaming pipeline, :func:`cosinetrack.inference.segment_and_track_video`: every pair of
frames is clustered (:func:`~cosinetrack.clustering.cluster_embeddings` with the bundle's
``clustering_options`` and the preset's m_pts and c converted to the canvas, plus ``mode``), the labels
are resampled to the frame size (:func:`~cosinetrack.transforms.restore_label_size`), the pair tracker
and the lineage step run, and the masks are written to a CTC result folder in a temporary directory.
The result is scored with py-ctcmetrics (:func:`~cosinetrack.apps.cell.ctc_scores`) against the
ground truth of the same frames, cut out and renumbered from 0 by
:func:`~cosinetrack.apps.cell.write_ctc_subsequence` (as the bundle's validation does).

Reported per data set and mode: clustering s/frame (wall and CPU time of the pair clustering plus the
resampling, divided by the number of frames), tracking s/frame (pair tracker + lineage, wall),
SEG, TRA, DET, the agreement of the fast path's pair labels with the exact path's (mean best IoU, both
ways), and the ratio (clustering + tracking) / network step. The network step is the paper-size
recurrent network (7 levels, 64 filters, 2 stacks, 16-d output; ``--paper_levels``/``--paper_filters``)
stepped frame by frame on ``--network_size``² frames under ``torch.inference_mode``, timed in the same
run with ``best_time`` of ``benchmarks/bench_network.py`` (minimum over ``--network_repeats`` streams of
``--network_frames`` frames, after one warm-up stream), with torch's default thread count unless
``--threads`` is given. Like ``bench_network.py`` the script re-executes itself with glibc malloc
tuning unless ``--no-malloc-tuning``.

The machine may be shared with other processes: wall times are upper bounds; CPU times are printed too.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import hashlib
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from cosinetrack.apps.cell.presets import clustering_parameters, ctc_preset
from cosinetrack.apps.cell.reader import find_ctc_sequences, iter_ctc_frames, read_ctc_frame
from cosinetrack.apps.cell.scoring import ctc_scores
from cosinetrack.apps.cell.writer import CTCResultWriter, write_ctc_subsequence
from cosinetrack.clustering.embedding_clustering import cluster_embeddings, mean_best_iou
from cosinetrack.inference.segmenter import ScaledPairSegmenter, normalize_frame
from cosinetrack.inference.video import segment_and_track_video
from cosinetrack.io.atomic import atomic_write_text
from cosinetrack.networks.stacked import RecurrentStackedHourglass
from cosinetrack.transforms.spatial import restore_label_size
from cosinetrack.workflows.checkpoint import load_weights

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_network import MALLOC_ENV, best_time, cpu_model  # noqa: E402  (same machine description and timing)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("COSINETRACK_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
DEFAULT_SETS = ("Fluo-N2DH-SIM+:01:50:65", "Fluo-N2DH-GOWT1:01:0:30")


def bundle_tracking(path: str, dataset_dir: str | None = None) -> dict[str, Any]:
    """The cell bundle's ``tracking`` section with its expressions resolved (``halo_distance`` follows the preset of
    ``dataset_dir``, or of the bundle's default data when ``None``), as the bundle's workflows see it."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(path)
    if dataset_dir is not None:
        parser["dataset_dir"] = dataset_dir
    return dict(parser.get_parsed_content("tracking"))


def bundle_settings(path: str) -> dict[str, Any]:
    """``tracking`` (resolved: :func:`bundle_tracking`), ``lineage``, ``clustering_options``, the smoothing sigma,
    canvas padding and canvas margin of the cell bundle."""
    with open(path) as f:
        cfg = json.load(f)
    return {
        "tracking": bundle_tracking(path),
        "lineage": dict(cfg["lineage"]),
        "clustering_options": dict(cfg["clustering_options"]),
        "smooth_sigma": float(cfg["normalization"]["smooth_sigma"]),
        "smooth_padding": str(cfg["normalization"].get("smooth_padding", "edge")),
        "padding_mode": str(cfg["augmentation"].get("padding_mode", "zeros")),
        "canvas_margin": int(cfg.get("canvas_margin", 0)),
    }


def parse_set(spec: str, data_root: str) -> tuple[dict, list[int]]:
    """``DATASET:SEQUENCE:START:STOP`` -> (sequence dict, frame numbers)."""
    parts = spec.split(":")
    if len(parts) != 4:
        raise SystemExit(f"--sets: expected DATASET:SEQUENCE:START:STOP, got {spec!r}")
    name, seq_name, start, stop = parts
    dataset = name if os.path.isabs(name) else os.path.join(data_root, "ctc", name)
    for seq in find_ctc_sequences(dataset):
        if seq.name == seq_name:
            frames = list(seq.frames)[slice(int(start) if start else None, int(stop) if stop else None)]
            if len(frames) < 2:
                raise SystemExit(f"--sets {spec}: fewer than 2 frames")
            return seq, frames
    raise SystemExit(f"{dataset}: no sequence {seq_name!r}")


def build_network(args: argparse.Namespace) -> torch.nn.Module:
    torch.manual_seed(0)
    net = RecurrentStackedHourglass(
        in_channels=1, out_channels=16, num_levels=args.num_levels, num_filters=args.num_filters,
        num_stacks=2, recurrent=True,
    )  # fmt: skip
    if args.ckpt:
        load_weights(net, args.ckpt, map_location="cpu")
    return net.eval()


def embeddings_of(net, seq: dict, frames: list[int], preset: Mapping, args, settings) -> np.ndarray:
    """``(T, D, S, S)`` float32 embeddings of the frames on the canvas (cached under ``--cache_dir``)."""
    key = json.dumps(
        [os.path.abspath(args.ckpt) if args.ckpt else None,
         os.path.getmtime(args.ckpt) if args.ckpt else None, args.num_levels, args.num_filters,
         seq.image_dir, frames, args.image_size, settings["smooth_sigma"], preset["i_min"], preset["i_max"],
         settings["padding_mode"], *([settings["canvas_margin"]] if settings.get("canvas_margin") else []),
         *([settings["smooth_padding"]] if settings.get("smooth_padding", "zeros") != "zeros" else [])],
    )  # fmt: skip
    path = os.path.join(args.cache_dir, f"emb_{hashlib.sha1(key.encode()).hexdigest()[:16]}.npy")
    if os.path.isfile(path):
        return np.load(path)
    segmenter = ScaledPairSegmenter(
        net, (args.image_size,) * 2, {}, padding_mode=settings["padding_mode"], margin=settings.get("canvas_margin", 0)
    )
    out = []
    for _, image in iter_ctc_frames(seq, frames):
        frame = normalize_frame(
            image, preset["i_min"], preset["i_max"], settings["smooth_sigma"], settings.get("smooth_padding", "edge")
        )
        out.append(segmenter.embed(frame).numpy())
    emb = np.stack(out).astype(np.float32)
    os.makedirs(args.cache_dir, exist_ok=True)
    tmp = path + f".{os.getpid()}.tmp.npy"
    np.save(tmp, emb)
    os.replace(tmp, path)
    return emb


class ReplaySegmenter:
    """A pair segmenter (see :mod:`cosinetrack.inference.segmenter`) that replays cached embeddings.

    ``push`` clusters the pair (previous, current) exactly as :class:`ScaledPairSegmenter` does and keeps
    the canvas labels of every pair in ``pairs``; ``timings["clustering"]`` is the wall time,
    ``cpu["clustering"]`` the CPU time (``time.process_time``) of clustering + resampling.
    """

    def __init__(self, embeddings: np.ndarray, cluster_kwargs: Mapping[str, Any]) -> None:
        self.embeddings = embeddings
        self.cluster_kwargs = dict(cluster_kwargs)
        self.timings = {"network": 0.0, "clustering": 0.0}
        self.cpu = {"clustering": 0.0}
        self.pairs: list[np.ndarray] = []
        self.reset()

    def reset(self) -> None:
        self.t = 0
        self.last_embedding = None

    def push(self, frame: torch.Tensor) -> np.ndarray | None:
        t, self.t = self.t, self.t + 1
        self.last_embedding = torch.from_numpy(self.embeddings[t])
        if t == 0:
            return None
        w0, c0 = time.perf_counter(), time.process_time()
        labels = cluster_embeddings(torch.from_numpy(self.embeddings[t - 1 : t + 1]), **self.cluster_kwargs)
        out = restore_label_size(labels, frame.shape[-2:]).numpy()
        self.timings["clustering"] += time.perf_counter() - w0
        self.cpu["clustering"] += time.process_time() - c0
        self.pairs.append(labels)
        return out


def run_mode(emb: np.ndarray, frame_size, kwargs, settings, gt_dir: str, tmp: str, name: str) -> dict[str, Any]:
    segmenter = ReplaySegmenter(emb, kwargs)
    dummy = torch.zeros(1, *frame_size)
    res_dir = os.path.join(tmp, f"{name}_RES")
    c0 = time.process_time()
    with CTCResultWriter(res_dir, digits=3) as writer:
        result = segment_and_track_video(
            segmenter, ((i, dummy) for i in range(emb.shape[0])), writer, settings["tracking"], settings["lineage"]
        )
        writer.close(result["tracks"])
    cpu_total = time.process_time() - c0
    scores = ctc_scores(res_dir, gt_dir, metrics=("SEG", "TRA", "DET"))
    n = result["num_frames"]
    return {
        "frames": n,
        "clustering": result["timings"]["clustering"] / n,
        "clustering_cpu": segmenter.cpu["clustering"] / n,
        "tracking": result["timings"]["tracking"] / n,
        "cpu_total": cpu_total / n,
        "tracks": int(len(result["tracks"])),
        "scores": {k: float(scores.get(k, float("nan"))) for k in ("SEG", "TRA", "DET", "OP_CTB")},
        "valid": bool(scores.get("valid", False)),
        "pairs": segmenter.pairs,
    }


def network_step(args: argparse.Namespace) -> float:
    """Seconds per frame of the paper-size recurrent network's streaming ``step``."""
    torch.manual_seed(0)
    net = RecurrentStackedHourglass(
        in_channels=1, out_channels=16, num_levels=args.paper_levels, num_filters=args.paper_filters,
        num_stacks=2, recurrent=True,
    ).eval()  # fmt: skip
    clip = torch.randn(1, args.network_frames, 1, args.network_size, args.network_size)

    def stream() -> None:
        state = None
        with torch.inference_mode():
            for t in range(args.network_frames):
                _, state = net.step(clip[:, t], state)

    return best_time(stream, args.network_repeats) / args.network_frames


def agreement(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> tuple[float, float]:
    """Mean over pairs of mean best IoU of ``b``'s instances in ``a`` and of ``a``'s in ``b`` (NaN-safe)."""
    ab = [mean_best_iou(x, y) for x, y in zip(a, b)]
    ba = [mean_best_iou(y, x) for x, y in zip(a, b)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all NaN: no instance at all
        return float(np.nanmean(ab)) if ab else float("nan"), float(np.nanmean(ba)) if ba else float("nan")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--ckpt", default=None, help="trained weights (model_best.pt); default: untrained network (smoke runs only)")
    a("--num_levels", type=int, default=5, help="levels of the checkpoint's network (cell_cpu: 5)")
    a("--num_filters", type=int, default=16, help="filters of the checkpoint's network (cell_cpu: 16)")
    a("--sets", nargs="+", default=list(DEFAULT_SETS), help="DATASET:SEQUENCE:START:STOP (frames as a slice)")
    a("--data_root", default=DATA, help="folder with ctc/<DATASET> (default ../shared/data)")
    a("--image_size", type=int, default=256, help="network canvas (the paper: 256)")
    a("--bundle", default=os.path.join(REPO, "bundles", "cell", "train.json"), help="bundle of the settings")
    a("--modes", nargs="+", default=["exact", "fast"], help="clustering modes, the first is the reference")
    a(
        "--exact_options",
        nargs="+",
        default=["{}"],
        help="extra cluster_embeddings options of mode 'exact' (python dicts), e.g. \"{'seed': 1}\" for the "
        "spread of the exact path itself (its random subsample of max_points pixels)",
    )
    a(
        "--fast_options",
        nargs="+",
        default=["{}"],
        help="extra cluster_embeddings options of mode 'fast' (python dicts); one fast run per dict",
    )
    a("--cache_dir", default=os.path.join(tempfile.gettempdir(), "cosinetrack_bench_fast_clustering"))
    a("--paper_levels", type=int, default=7)
    a("--paper_filters", type=int, default=64)
    a("--network_size", type=int, default=256)
    a("--network_frames", type=int, default=10)
    a("--network_repeats", type=int, default=2)
    a("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a("--goal_ratio", type=float, default=0.2)
    a(
        "--reference_step",
        type=float,
        default=0.566,
        help="the paper-size step on a quiet machine (docs/benchmarks.md, 2 threads), for a second ratio",
    )
    a("--max_score_diff", type=float, default=0.005)
    a("--no-malloc-tuning", action="store_true", help="keep glibc malloc defaults")
    a("--out", default=None, help="also write the report here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    if argv is None and not args.no_malloc_tuning and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.environ.update(MALLOC_ENV)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    settings = bundle_settings(args.bundle)
    mode_variants = {"fast": [ast.literal_eval(o) for o in args.fast_options]}
    mode_variants["exact"] = [ast.literal_eval(o) for o in args.exact_options]
    variants = []  # (name, mode, extra options)
    for mode in args.modes:
        for opts in mode_variants.get(mode, [{}]):
            name = mode + (" " + ", ".join(f"{k}={v}" for k, v in opts.items()) if opts else "")
            variants.append((name, mode, opts))
    command = "python benchmarks/bench_fast_clustering.py " + " ".join(sys.argv[1:] if argv is None else argv)
    load0 = os.getloadavg()[0]
    head = [
        f"- Date: {datetime.datetime.now().isoformat(timespec='minutes')}",
        f"- Command: `{command}`",
        f"- Machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, load average at the start {load0:.1f}",
        f"- Embeddings: {args.num_levels} levels x {args.num_filters} filters, "
        + (f"weights `{os.path.relpath(args.ckpt, REPO)}`" if args.ckpt else "UNTRAINED (smoke run only)"),
        f"- Bundle settings: clustering_options {settings['clustering_options']}, tracking {settings['tracking']}, "
        f"lineage {settings['lineage']}",
    ]
    print("\n".join(head), flush=True)

    net = build_network(args)
    rows = []
    for spec in args.sets:
        seq, frames = parse_set(spec, args.data_root)
        preset = ctc_preset(None, seq.root)
        frame_size = tuple(read_ctc_frame(seq.images[frames[0]]).shape)
        options = {k: v for k, v in settings["clustering_options"].items() if k != "mode"}
        base = clustering_parameters(preset, (args.image_size,) * 2, frame_size, "scaled", **options)
        t0 = time.perf_counter()
        emb = embeddings_of(net, seq, frames, preset, args, settings)
        print(f"# {spec}: embeddings {emb.shape} in {time.perf_counter() - t0:.1f} s", flush=True)
        data_name = f"{os.path.basename(os.path.normpath(seq.root))}/{seq.name} [{frames[0]}:{frames[-1] + 1}]"
        with tempfile.TemporaryDirectory(prefix="bench_fast_clustering_") as tmp:
            write_ctc_subsequence(seq, frames, os.path.join(tmp, "gt"), name="01")
            gt_dir = os.path.join(tmp, "gt", "01_GT")
            results = {}
            for k, (mode, mode_name, opts) in enumerate(variants):
                kwargs = {**base, "mode": mode_name, **opts}
                res = run_mode(emb, frame_size, kwargs, settings, gt_dir, tmp, f"run{k}")
                results[mode] = res
                s = res["scores"]
                print(
                    f"# {spec} {mode}: clustering {res['clustering']:.3f} s/frame (CPU {res['clustering_cpu']:.3f}), "
                    f"tracking {res['tracking']:.3f}, SEG {s['SEG']:.4f} TRA {s['TRA']:.4f}",
                    flush=True,
                )
            ref = results[variants[0][0]]
            for mode, res in results.items():
                res["agreement"] = agreement(ref["pairs"], res["pairs"])
                rows.append((data_name, frame_size, base, mode, res, ref))

    step = network_step(args)
    print(f"# paper-size network step: {step:.3f} s/frame", flush=True)
    lines = [
        f"- Network step: {args.paper_levels} levels x {args.paper_filters} filters, recurrent, 2 stacks, "
        f"{args.network_size}² frames, {torch.get_num_threads()} threads: **{step:.3f} s/frame** "
        f"(min over {args.network_repeats} streams of {args.network_frames} frames); "
        f"goal: clustering + tracking <= {args.goal_ratio:g} x step = {args.goal_ratio * step:.3f} s/frame",
        "",
        "| data (frame H x W; canvas m_pts, c) | mode | clustering s/frame (CPU) | tracking s/frame | "
        f"(clust. + track.) / step | (clust. CPU + track.) / {args.reference_step:g} s | SEG | TRA | DET | "
        "Δ SEG | Δ TRA | agreement | tracks |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    goal_met = {name: True for name, mode_name, _ in variants if mode_name == "fast"}
    for data_name, frame_size, base, mode, res, ref in rows:
        s, r = res["scores"], ref["scores"]
        ratio = (res["clustering"] + res["tracking"]) / step
        quiet_ratio = (res["clustering_cpu"] + res["tracking"]) / args.reference_step
        d_seg, d_tra = s["SEG"] - r["SEG"], s["TRA"] - r["TRA"]
        if mode in goal_met:
            goal_met[mode] &= ratio <= args.goal_ratio and abs(d_seg) <= args.max_score_diff
            goal_met[mode] &= abs(d_tra) <= args.max_score_diff
        valid = "" if res["valid"] else " (INVALID)"
        lines.append(
            f"| {data_name} ({frame_size[0]}x{frame_size[1]}; {base['min_samples']}, {base['coordinate_scale']:g}) "
            f"| {mode}{valid} | {res['clustering']:.3f} ({res['clustering_cpu']:.3f}) | {res['tracking']:.3f} | "
            f"{ratio:.3f} | {quiet_ratio:.3f} | {s['SEG']:.4f} | {s['TRA']:.4f} | {s['DET']:.4f} | "
            f"{d_seg:+.4f} | {d_tra:+.4f} | "
            f"{res['agreement'][0]:.3f} / {res['agreement'][1]:.3f} | {res['tracks']} |"
        )
    lines += [
        "",
        "`agreement`: mean over frame pairs of the mean best IoU of the reference mode's pair instances in "
        "this mode's, and the other way round (1 = the same instances). Δ = this mode - the reference "
        f"({variants[0][0]}). The second ratio divides the clustering's CPU time (one thread; about its wall "
        f"time on an idle core) plus the tracking's wall time by the step measured on a quiet machine "
        f"({args.reference_step:g} s, `--reference_step`); the goal is judged on the first (same run).",
        "",
        *(
            f"Goal 1 with `{name}`: **{'met' if met else 'NOT met'}** (clustering + tracking <= "
            f"{args.goal_ratio:g} x network step and abs(Δ SEG), abs(Δ TRA) <= {args.max_score_diff:g} on every "
            "data set)."
            for name, met in goal_met.items()
        ),
        "",
        f"Benchmark time {time.perf_counter() - start:.0f} s, load average at the end {os.getloadavg()[0]:.1f}.",
    ]
    report = "\n".join(head + lines) + "\n"
    print("\n" + report)
    if args.out:
        atomic_write_text(args.out, report)
    return report


if __name__ == "__main__":
    main()
