"""End-to-end frames per second of the cell pipeline at 256² (issue 9, goal 4): where the wall time goes.

Usage::

    # the run of docs/benchmarks_cell_inference.md (one thread for the network; about 6-10 min)
    python benchmarks/bench_end_to_end.py --threads 1 --out /tmp/end_to_end.md
    # tiny smoke run (seconds): small "paper" network, 3 frames, fast clustering only
    python benchmarks/bench_end_to_end.py --threads 1 --frames 50:53 --paper_levels 3 --paper_filters 8 \\
        --modes fast --precisions fp32

The whole pipeline of the cell bundle's ``inference`` / validation on one video part: every frame is
**read** (TIFF) and normalized with the data set's preset (+ the bundle's Gaussian smoothing), the
**network** steps (scale to fit the 256² canvas with the bundle's reflection padding, ``network.step``
with the GRU state carried, copy of the float32 embeddings), each pair of frames is **clustered**
(:func:`~cosinetrack.clustering.cluster_embeddings` with the bundle's ``clustering_options`` and the
preset's m_pts and c on the canvas, ``mode`` exact or fast; labels resampled to the frame size), the
**tracker** links the pair labels (plus the final lineage step), and every finished frame is
**written** as a CTC mask (plus the final relabelling); ``other`` is the rest of the wall time (result
folder, ``res_track.txt``). It is :func:`cosinetrack.inference.segment_and_track_video` as
:func:`~cosinetrack.apps.cell.track_sequence_part` runs it, with the reading timed separately.

Two networks, each in float32 and in bfloat16 autocast (``amp``; ``--precisions``), each with both
clustering modes (``--modes``), in one run:

* **shipped**: the cell bundle's trained CPU model ``bundles/cell/models/model.pt`` (5 levels x 16
  filters; ``--model``). Its embeddings are real, so every stage's time is representative.
* **paper**: the paper-size network (``--paper_levels`` 7 x ``--paper_filters`` 64, 2 stacks, 16-d,
  recurrent), random weights (``torch.manual_seed(0)``). Its embeddings would not be representative for
  clustering (untrained embeddings do not separate cells from background, so HDBSCAN would see a
  different and much larger point set), so the paper-size network runs **in the loop** on every frame
  (its step is the ``network`` time) while the clustering gets the **shipped model's embeddings of the
  same frames**, computed in the same precision before the timed run (not timed). So the ``paper`` rows
  are what the pipeline would cost with a trained paper-size network whose embeddings cluster like the
  shipped model's.

Two schedules (``--schedules``):

* ``serial``: the bundle's loop, one stage after the other in one thread.
* ``overlap``: the bundles' default loop, ``segment_and_track_video(..., overlap_stages=True)``: a
  reading thread reads and normalizes the next frames, a network thread steps the network, and the
  calling thread clusters, tracks and writes the previous pairs (each stage at most 2 frames ahead).
  The network keeps ``--threads`` torch threads; reading and clustering then run on other cores, so
  this schedule uses up to ``--threads`` + 2 cores.
* ``pool`` (only when asked for): a prototype in this script, ``overlap`` with the pairs clustered in
  ``--cluster_workers`` worker processes, several pairs at a time; a worker thread takes the labels in
  order and tracks and writes. For machines with more cores than the network uses
  (``benchmarks/bench_gpu.py``).

Goals (issue 9, goal 4), per precision, clustering mode and schedule:

* paper-size model: network time >= 80 % of the wall time;
* shipped model: whole-pipeline wall time per frame <= 0.5 x one paper-size network step (the paper
  run's ``network`` seconds per frame, same precision, same run).

Before each timed run the same configuration runs untimed on the first ``--warmup-frames`` frames.
The machine may be shared: wall times are upper bounds; the report states the load average.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import multiprocessing
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import numpy as np
import torch

from cosinetrack.apps.cell.presets import clustering_parameters, ctc_preset
from cosinetrack.apps.cell.reader import find_ctc_sequences, iter_ctc_frames, read_ctc_frame
from cosinetrack.apps.cell.writer import CTCResultWriter
from cosinetrack.clustering.embedding_clustering import cluster_embeddings
from cosinetrack.inference.inferer import resolve_amp
from cosinetrack.inference.segmenter import ScaledPairSegmenter, normalize_frame
from cosinetrack.inference.video import segment_and_track_video
from cosinetrack.io.atomic import atomic_write_text
from cosinetrack.networks.stacked import RecurrentStackedHourglass
from cosinetrack.transforms.spatial import restore_label_size
from cosinetrack.workflows.checkpoint import load_weights, network_for_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_fast_clustering import bundle_settings  # noqa: E402  (the cell bundle's literal settings)
from bench_network import cpu_model  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("COSINETRACK_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
STAGES = ("reading", "network", "clustering", "tracking", "writing")
PRECISIONS = {"fp32": False, "bf16": True}


# ------------------------------------------------------------------------------------------- pipeline


def read_frames(
    seq: Mapping[str, Any], frames: Sequence[int], preset: Mapping[str, Any], smooth_sigma: float,
    timings: dict[str, float], smooth_padding: str = "edge",
) -> Iterator[tuple[int, torch.Tensor]]:  # fmt: skip
    """``(i, normalized frame (C, H, W))`` for ``frames`` of ``seq``, ``i = 0, 1, ...``; the time spent is
    added to ``timings["reading"]``."""
    images = iter_ctc_frames(seq, list(frames))
    i = 0
    while True:
        t0 = time.perf_counter()
        try:
            _, image = next(images)
        except StopIteration:
            return
        x = normalize_frame(image, preset["i_min"], preset["i_max"], smooth_sigma, smooth_padding)
        timings["reading"] += time.perf_counter() - t0
        yield i, x
        i += 1


class CachedEmbeddingSegmenter(ScaledPairSegmenter):
    """A pair segmenter that steps ``network`` on every frame (timed as ``network``) but clusters the
    precomputed ``embeddings[i]`` ``(D, h, w)`` of frame ``i`` (another, trained model's, on the same canvas)."""

    def __init__(self, network: torch.nn.Module, embeddings: Sequence[torch.Tensor], *args: Any, **kwargs: Any) -> None:
        self.embeddings = list(embeddings)
        super().__init__(network, *args, **kwargs)

    def reset(self) -> None:
        super().reset()
        self.index = 0

    def embed(self, frame: torch.Tensor) -> torch.Tensor:
        super().embed(frame)  # the network step, its output dropped
        emb = self.embeddings[self.index]
        self.index += 1
        return emb


class _Embedded:
    """What the overlap schedule's worker receives per frame: the embedding, the frame (its shape; ``float()``
    gives the frame itself, from which the video loop takes the bright foreground of ``tracking#halo_distance``)
    and, with a process pool, the future ``(labels (2, h, w), seconds)`` of the pair ending at this frame."""

    def __init__(self, emb: torch.Tensor, frame: torch.Tensor, future: Future | None = None) -> None:
        self.emb, self.frame, self.shape, self.future = emb, frame, tuple(frame.shape), future

    def float(self) -> torch.Tensor:
        return self.frame.float()


class _ClusterOnly(ScaledPairSegmenter):
    """The clustering half of :class:`ScaledPairSegmenter`: ``push`` gets an :class:`_Embedded` and
    clusters the pair itself, or takes the labels of its ``future`` (clustered in a worker process)."""

    def embed(self, frame: _Embedded) -> torch.Tensor:  # type: ignore[override]
        return frame.emb

    def push(self, frame: _Embedded) -> np.ndarray | None:  # type: ignore[override]
        if frame.future is None:
            return super().push(frame)  # type: ignore[arg-type]
        labels, seconds = frame.future.result()
        t0 = time.perf_counter()
        self.last_embedding = frame.emb
        labels = restore_label_size(labels, frame.shape[-2:]).numpy()
        self.timings["clustering"] += seconds + time.perf_counter() - t0  # the worker's time, not the wait
        return labels


def _cluster_pair(previous: torch.Tensor, emb: torch.Tensor, kwargs: Mapping[str, Any]) -> tuple[torch.Tensor, float]:
    """Worker-process job: the canvas labels of one pair and the seconds they took."""
    t0 = time.perf_counter()
    labels = cluster_embeddings(torch.stack([previous, emb]), **kwargs)
    return labels, time.perf_counter() - t0


def _single_threaded_worker() -> None:
    torch.set_num_threads(1)


def cluster_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes (spawned, one torch thread each) that cluster frame pairs in parallel."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_single_threaded_worker)  # fmt: skip


def run_serial(
    segmenter: ScaledPairSegmenter, seq: Mapping[str, Any], frames: Sequence[int], preset: Mapping[str, Any],
    settings: Mapping[str, Any], res_dir: str, overlap_stages: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """The bundle's loop (``track_sequence_part``) with the reading timed; ``overlap_stages=True`` is the
    bundle's threaded loop (reading, network, the rest; stage timings are then each thread's own).

    Returns ``{"timings": seconds per stage, "wall", "frames", "tracks"}``."""
    timings = {"reading": 0.0}
    t0 = time.perf_counter()
    with CTCResultWriter(res_dir, digits=seq.digits or 3) as writer:
        stream = read_frames(seq, frames, preset, settings["smooth_sigma"], timings, settings["smooth_padding"])
        result = segment_and_track_video(
            segmenter, stream, writer, settings["tracking"], settings["lineage"], overlap_stages=overlap_stages
        )
        writer.close(result["tracks"])
    wall = time.perf_counter() - t0
    return {"timings": {**result["timings"], **timings}, "wall": wall, "frames": result["num_frames"],
            "tracks": len(result["tracks"])}  # fmt: skip


def run_overlapped(
    segmenter: ScaledPairSegmenter, seq: Mapping[str, Any], frames: Sequence[int], preset: Mapping[str, Any],
    settings: Mapping[str, Any], res_dir: str, pool: ProcessPoolExecutor | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Reader thread -> network (this thread) -> clustering + tracking + writing thread; same outputs as
    :func:`run_serial` (stage timings are each thread's own; they add up to more than the wall time).

    With ``pool`` the pairs are clustered in its worker processes, several at a time (submitted in
    order as soon as a frame's embedding is ready); the tracking and writing thread takes the labels in
    order. ``clustering`` is then the workers' time summed (CPU work, not wall time)."""
    timings = {"reading": 0.0}
    frames_q: queue.Queue = queue.Queue(maxsize=2)
    post_q: queue.Queue = queue.Queue(maxsize=2)
    errors: list[BaseException] = []
    result: dict[str, Any] = {}
    post = _ClusterOnly(segmenter.network, segmenter.image_size, segmenter.cluster_kwargs, padding_mode="zeros")

    def reader() -> None:
        try:
            for item in read_frames(seq, frames, preset, settings["smooth_sigma"], timings, settings["smooth_padding"]):
                frames_q.put(item)
        except BaseException as err:  # noqa: BLE001 - re-raised in the main thread
            errors.append(err)
        finally:
            frames_q.put(None)

    def items() -> Iterator[tuple[int, _Embedded]]:
        while (item := post_q.get()) is not None:
            yield item

    def worker() -> None:
        try:
            with CTCResultWriter(res_dir, digits=seq.digits or 3) as writer:
                result.update(segment_and_track_video(post, items(), writer, settings["tracking"], settings["lineage"]))
                writer.close(result["tracks"])
        except BaseException as err:  # noqa: BLE001 - re-raised in the main thread
            errors.append(err)
            for _ in items():  # keep draining so that the network thread never blocks
                pass

    segmenter.reset()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=reader, daemon=True), threading.Thread(target=worker, daemon=True)]
    for th in threads:
        th.start()
    previous = None
    try:
        while (item := frames_q.get()) is not None:
            i, x = item
            emb = segmenter.embed(x)
            future = None
            if pool is not None and previous is not None:
                future = pool.submit(_cluster_pair, previous, emb, segmenter.cluster_kwargs)
            previous = emb
            post_q.put((i, _Embedded(emb, x, future)))
    finally:
        post_q.put(None)
        for th in threads:
            th.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    timings["network"] = segmenter.timings["network"]
    stages = {k: v for k, v in result["timings"].items() if k != "network"}
    return {"timings": {**stages, **timings}, "wall": wall, "frames": result["num_frames"],
            "tracks": len(result["tracks"])}  # fmt: skip


SCHEDULES = ("serial", "overlap", "pool")


def time_config(
    schedule: str, make_segmenter, seq, frames, preset, settings, warmup_frames: int,
    pool: ProcessPoolExecutor | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Warm up on the first frames, then run ``frames``; a fresh segmenter each time. ``schedule``:
    ``serial``, ``overlap`` or ``pool`` (overlap with the pairs clustered in ``pool``)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule: expected one of {SCHEDULES}, got {schedule!r}")
    if schedule == "pool" and pool is None:
        raise ValueError("schedule 'pool' needs a process pool")
    run = run_serial
    if schedule == "overlap":  # the package's loop with overlap_stages (the bundles' default)
        run = functools.partial(run_serial, overlap_stages=True)
    elif schedule == "pool":  # the prototype below, pairs clustered in worker processes
        run = functools.partial(run_overlapped, pool=pool)
    with tempfile.TemporaryDirectory(prefix="bench_end_to_end_") as tmp:
        if warmup_frames > 0:
            run(make_segmenter(), seq, list(frames)[: max(2, warmup_frames)], preset, settings, f"{tmp}/warm")
        return run(make_segmenter(), seq, frames, preset, settings, f"{tmp}/01_RES")


def per_frame(res: Mapping[str, Any]) -> dict[str, float]:
    n = max(1, res["frames"])
    out = {k: res["timings"].get(k, 0.0) / n for k in STAGES}
    out["other"] = max(0.0, res["wall"] - sum(res["timings"].get(k, 0.0) for k in STAGES)) / n
    out["total"] = res["wall"] / n
    return out


# --------------------------------------------------------------------------------------------- setup


def paper_network(args: argparse.Namespace) -> torch.nn.Module:
    torch.manual_seed(0)
    net = RecurrentStackedHourglass(
        in_channels=1, out_channels=16, num_levels=args.paper_levels, num_filters=args.paper_filters,
        num_stacks=2, recurrent=True,
    )  # fmt: skip
    return net.to(args.device).eval()


def shipped_network(path: str, device: str) -> torch.nn.Module:
    defaults = {"in_channels": 1, "out_channels": 16, "num_levels": 7, "num_filters": 64, "num_stacks": 2,
                "recurrent": True}  # fmt: skip
    net = network_for_model(path, **defaults)
    load_weights(net, path, map_location=device)
    return net.to(device).eval()


def describe(net: torch.nn.Module) -> str:
    return f"{net.num_levels} levels x {net.num_filters} filters" if hasattr(net, "num_levels") else type(net).__name__


def find_sequence(dataset: str, name: str) -> dict:
    for seq in find_ctc_sequences(dataset):
        if seq.name == name:
            return seq
    raise SystemExit(f"{dataset}: no sequence {name!r}")


def embeddings_of(net, seq, frames, preset, settings, image_size, device, amp) -> list[torch.Tensor]:
    """The float32 canvas embeddings ``(D, h, w)`` of every frame, streamed as the pipeline does."""
    seg = ScaledPairSegmenter(
        net, image_size, {}, device, padding_mode=settings["padding_mode"], amp=amp, margin=settings["canvas_margin"]
    )
    return [seg.embed(x) for _, x in read_frames(
        seq, frames, preset, settings["smooth_sigma"], {"reading": 0.0}, settings["smooth_padding"]
    )]


# -------------------------------------------------------------------------------------------- report


def stage_table(rows: Sequence[tuple[str, str, str, str, Mapping[str, Any]]]) -> str:
    lines = [
        "| model | precision | clustering | schedule | reading | network | clustering | tracking | writing | other "
        "| total s/frame | fps | not network | tracks |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, precision, mode, schedule, res in rows:
        p = per_frame(res)
        lines.append(
            f"| {model} | {precision} | {mode} | {schedule} | "
            + " | ".join(f"{p[k]:.3f}" for k in (*STAGES, "other", "total"))
            + f" | {1.0 / p['total']:.2f} | {100 * (1 - p['network'] / p['total']):.0f} % | {res['tracks']} |"
        )
    return "\n".join(lines)


def goal_table(results: Mapping[tuple[str, str, str, str], Mapping[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "| precision | clustering | schedule | paper: network / wall (goal >= 80 %) | shipped wall s/frame | "
        "paper step s | shipped / paper step (goal <= 0.5) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for precision in args.precisions:
        for mode in args.modes:
            for schedule in args.schedules:
                paper = results.get(("paper", precision, mode, schedule))
                shipped = results.get(("shipped", precision, mode, schedule))
                if paper is None or shipped is None:
                    continue
                pp, ps = per_frame(paper), per_frame(shipped)
                share = pp["network"] / pp["total"]
                ratio = ps["total"] / pp["network"]
                met_a, met_b = ("met" if ok else "missed" for ok in (share >= 0.8, ratio <= 0.5))
                lines.append(
                    f"| {precision} | {mode} | {schedule} | {100 * share:.0f} % ({met_a}) "
                    f"| {ps['total']:.3f} | {pp['network']:.3f} | {ratio:.2f} ({met_b}) |"
                )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--model", default=os.path.join(REPO, "bundles", "cell", "models", "model.pt"), help="trained cell model")
    a("--dataset", default=os.path.join(DATA, "ctc", "Fluo-N2DH-SIM+"), help="CTC data set folder")
    a("--sequence", default="01", help="sequence of the data set")
    a("--frames", default="50:65", help="frames: python slice START:STOP over the sequence's frames")
    a("--image_size", type=int, default=256, help="square network canvas (paper: 256)")
    a("--paper_levels", type=int, default=7, help="levels of the paper-size network")
    a("--paper_filters", type=int, default=64, help="filters of the paper-size network")
    a("--precisions", nargs="+", choices=list(PRECISIONS), default=list(PRECISIONS), help="fp32 and/or bf16 (amp)")
    a("--modes", nargs="+", choices=["exact", "fast"], default=["exact", "fast"], help="clustering modes")
    a("--schedules", nargs="+", choices=list(SCHEDULES), default=["serial", "overlap"], help="loop schedules")
    a("--overlap_modes", nargs="+", choices=["exact", "fast"], default=["fast"],
      help="clustering modes timed with the overlap and pool schedules (exact: clustering >> network)")
    a("--cluster_workers", type=int, default=2, help="worker processes of the pool schedule")  # fmt: skip
    a("--warmup-frames", type=int, default=2, help="untimed frames through the same configuration first")
    a("--threads", type=int, default=1, help="torch intra-op threads of the network (0: torch default)")
    a("--device", default="cpu", help="torch device of the networks")
    a("--bundle", default=os.path.join(REPO, "bundles", "cell", "train.json"), help="bundle config (settings)")
    a("--out", default=None, help="also write the markdown report to this file (replaces it)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> str:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    command = "python benchmarks/bench_end_to_end.py " + " ".join(sys.argv[1:] if argv is None else argv)
    load0 = os.getloadavg()[0]
    settings = bundle_settings(args.bundle)
    seq = find_sequence(args.dataset, args.sequence)
    parts = [int(s) if s.strip() else None for s in args.frames.split(":")]
    frames = list(seq.frames)[slice(*parts)]
    if len(frames) < 2:
        raise SystemExit(f"--frames {args.frames}: need at least 2 frames")
    preset = ctc_preset(None, seq.root)
    size = (args.image_size,) * 2
    frame_size = read_ctc_frame(seq.images[frames[0]]).shape
    shipped = shipped_network(args.model, args.device)
    paper = paper_network(args)
    header = [
        f"- Command: `{command.strip()}`",
        f"- Date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- Machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch thread(s) for the network, HDBSCAN n_jobs 1, device {args.device}, "
        f"bf16 autocast {'native' if resolve_amp('auto', args.device) else 'not native'} here; "
        f"load average at the start {load0:.1f}",
        f"- Data: {os.path.basename(os.path.normpath(seq.root))}/{seq.name} frames {frames[0]}-{frames[-1]} "
        f"({len(frames)} frames, {frame_size[1]}x{frame_size[0]}), canvas {args.image_size}², preset {preset['name']}",
        f"- shipped = {os.path.relpath(args.model, REPO)} ({describe(shipped)}); paper = "
        f"{describe(paper)}, 2 stacks, random weights, in the loop, clustering the shipped model's embeddings",
    ]
    for line in header:
        print("# " + line[2:], flush=True)
    results: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    rows = []
    pool = cluster_pool(args.cluster_workers) if "pool" in args.schedules else None
    if pool is not None:  # start the workers (imports) before anything is timed
        pool.submit(_single_threaded_worker).result()
    for precision in args.precisions:
        amp = PRECISIONS[precision]
        cached = embeddings_of(shipped, seq, frames, preset, settings, size, args.device, amp)
        for mode in args.modes:
            options = {**settings["clustering_options"], "mode": mode}
            kwargs = clustering_parameters(preset, size, frame_size, "scaled", **options)
            common = {
                "device": args.device, "padding_mode": settings["padding_mode"], "amp": amp,
                "margin": settings["canvas_margin"],
            }  # fmt: skip
            makers = {
                "shipped": lambda k=kwargs, c=common: ScaledPairSegmenter(shipped, size, k, **c),
                "paper": lambda k=kwargs, c=common, e=cached: CachedEmbeddingSegmenter(paper, e, size, k, **c),
            }
            for schedule in args.schedules:
                if schedule != "serial" and mode not in args.overlap_modes:
                    continue
                for model, make in makers.items():
                    res = time_config(schedule, make, seq, frames, preset, settings, args.warmup_frames, pool)
                    results[(model, precision, mode, schedule)] = res
                    rows.append((model, precision, mode, schedule, res))
                    p = per_frame(res)
                    print(f"# {model} {precision} {mode} {schedule}: {p['total']:.3f} s/frame, network "
                          f"{p['network']:.3f}, clustering {p['clustering']:.3f}", flush=True)  # fmt: skip
    if pool is not None:
        pool.shutdown()
    ck = kwargs
    sections = [
        "# Benchmark: end-to-end cell pipeline (issue 9, goal 4)\n",
        *header,
        f"- Clustering: the bundle's `clustering_options` with `mode` as given; m_pts {ck['min_samples']}, "
        f"c {ck['coordinate_scale']:g} on the canvas; max_points {ck.get('max_points')} (exact)",
        "",
        "## Seconds per frame by stage\n",
        "`other` = wall time not in the stages (result folder, `res_track.txt`); `total` = wall / frames; "
        "`not network` = 1 - network / total. Overlap rows: the stages run in three threads, their sum exceeds "
        "the wall time.\n",
        stage_table(rows),
        "",
        "## Goals\n",
        goal_table(results, args),
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
