"""Benchmark of embedding clustering: time per 256x256 image / pair and instance recovery quality.

Synthetic embeddings stand in for a trained network (see
:func:`cosinetrack.clustering.synthetic_embeddings`):

- ``cvppp``: one 256x256 image, a rosette of ~15 touching leaves (Voronoi cells in a disc, ~45 % of the
  image), D = 32, every leaf its own direction (for CVPPP all other leaves are neighbors in the loss);
  the paper's CVPPP setting m_pts = 50, c = 0.001.
- ``sim+``: a 256x256 pair of frames, 25 cells (ellipses, ~12 % of the image) moving up to 3 px, D = 16,
  8 directions shared by cells further apart than r_N = 50 px; the paper's Fluo-SIM+ setting
  m_pts = 100, c = 0.001.

Embeddings: direction field smoothed with a Gaussian of ``--smooth`` px, noise 0.03 per component,
random per-pixel norm. Times: CPU seconds of the process (all threads) and wall seconds; with
``--n-jobs 1`` the CPU time is what one idle core needs. Quality: mean over ground-truth instances of
the best IoU with a predicted one (``gt->pred``; over both frames for pairs, so an id change between
the frames costs), the same in the other direction (``pred->gt``, penalises spurious instances), and
|#pred - #gt|.

Usage::

    python benchmarks/bench_clustering.py                  # prints the markdown table
    python benchmarks/bench_clustering.py --output docs/benchmarks_clustering.md
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from typing import Any

import numpy as np
from skimage.draw import ellipse

from cosinetrack.clustering.embedding_clustering import (
    cluster_embeddings,
    mean_best_iou,
    relabel_consecutive,
    synthetic_embeddings,
)
from cosinetrack.io.atomic import atomic_write_text


def rosette(size: int = 256, n: int = 15, seed: int = 0) -> np.ndarray:
    """``(H, W)`` labels: ``n`` touching leaves (Voronoi cells of random seeds) inside a central disc."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    c, radius = size / 2, 0.38 * size
    angle = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = rng.uniform(0.3, 0.8, n) * radius
    sy, sx = c + r * np.sin(angle), c + r * np.cos(angle)
    lab = np.argmin((yy[..., None] - sy) ** 2 + (xx[..., None] - sx) ** 2, axis=-1) + 1
    lab[(yy - c) ** 2 + (xx - c) ** 2 > radius**2] = 0
    return relabel_consecutive(lab)


def moving_cells(size: int = 256, n: int = 25, frames: int = 2, shift: float = 3.0, seed: int = 0) -> np.ndarray:
    """``(T, H, W)`` labels: ``n`` non-touching elliptic cells, moving up to ``shift`` px per frame."""
    rng = np.random.default_rng(seed)
    taken = np.zeros((size, size), bool)
    cells: list[tuple[float, ...]] = []
    for _ in range(5000):
        if len(cells) == n:
            break
        r, c = rng.uniform(15, size - 15, 2)
        a, b, rot = rng.uniform(6, 13), rng.uniform(6, 13), rng.uniform(0, np.pi)
        rr, cc = ellipse(r, c, a + shift + 1, b + shift + 1, shape=(size, size), rotation=rot)
        if not taken[rr, cc].any():
            taken[rr, cc] = True
            cells.append((r, c, a, b, rot))
    lab = np.zeros((frames, size, size), np.int32)
    offsets = np.zeros((len(cells), 2))
    for t in range(frames):
        for i, (r, c, a, b, rot) in enumerate(cells, 1):
            if t:
                offsets[i - 1] += rng.uniform(-shift, shift, 2)
            rr, cc = ellipse(r + offsets[i - 1, 0], c + offsets[i - 1, 1], a, b, shape=(size, size), rotation=rot)
            lab[t, rr, cc] = i
    return lab


def make_case(scenario: str, seed: int, smooth: float) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, ground-truth labels) of one synthetic case."""
    if scenario == "cvppp":
        lab = rosette(seed=seed)
        emb = synthetic_embeddings(lab, dim=32, num_directions=31, neighbor_radius=1e9, noise=0.03, smooth=smooth,
                                   seed=seed)  # fmt: skip
    elif scenario == "sim+":
        lab = moving_cells(seed=seed)
        emb = synthetic_embeddings(lab, dim=16, num_directions=8, neighbor_radius=50, noise=0.03, smooth=smooth,
                                   seed=seed)  # fmt: skip
    else:
        raise ValueError(scenario)
    return emb, lab


SETTINGS = {
    "cvppp": dict(min_samples=50, coordinate_scale=0.001),
    "sim+": dict(min_samples=100, coordinate_scale=0.001),
}

VARIANTS: dict[str, dict[str, Any]] = {
    "default (background 'auto' removed first)": {},
    "+ split_components": dict(split_components=True),
    "+ split_components, cluster_selection_epsilon=0.3": dict(split_components=True, cluster_selection_epsilon=0.3),
    "+ split_components, max_points=10000 (subsampled)": dict(split_components=True, max_points=10000),
    "reference-code rule: 'median', no cluster rule, split": dict(
        background="median", max_background_similarity=None, split_components=True
    ),
    "no removal: background='largest', split": dict(background="largest", split_components=True),
    "no removal: background='largest', split, max_points=10000": dict(
        background="largest", split_components=True, max_points=10000
    ),
}


def run_case(args: tuple[str, int, float, dict[str, Any]]) -> tuple[float, float, float, float, int]:
    """(wall s, CPU s, gt->pred, pred->gt, |#pred - #gt|) of one case and variant."""
    scenario, seed, smooth, kwargs = args
    emb, lab = make_case(scenario, seed, smooth)
    wall, cpu = time.perf_counter(), time.process_time()
    pred = cluster_embeddings(emb, **kwargs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n_gt = len(np.unique(lab[lab > 0]))
    return wall, cpu, mean_best_iou(pred, lab), mean_best_iou(lab, pred), abs(int(pred.max()) - n_gt)


def run_capped(job: tuple[str, int, float, dict[str, Any]], cap: float) -> tuple[float, ...] | None:
    """``run_case`` in a child process; ``None`` when it takes longer than ``cap`` seconds."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        result = pool.apply_async(run_case, (job,))
        try:
            return result.get(timeout=cap)
        except mp.TimeoutError:
            pool.terminate()
            return None


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except Exception:  # noqa: BLE001 - informational only
        model = platform.processor() or "unknown CPU"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{model}, {os.cpu_count()} CPU cores; load average before the run: {load}"


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=3, help="synthetic cases per scenario (different seeds)")
    p.add_argument("--smooth", type=float, default=0.5, help="Gaussian sigma (px) of the embedding field")
    p.add_argument("--n-jobs", type=int, default=1, help="HDBSCAN core_dist_n_jobs (1: CPU s = idle wall s)")
    p.add_argument("--cap", type=float, default=240.0, help="wall seconds per case before giving up (no removal)")
    p.add_argument("--scenarios", nargs="+", default=["cvppp", "sim+"], choices=sorted(SETTINGS))
    p.add_argument("--skip", nargs="*", default=[], help="leave out variants whose name contains any of these")
    p.add_argument("--output", help="also write the markdown report to this file (replaces it)")
    args = p.parse_args(argv)

    header = (
        "| scenario (paper setting) | variant | CPU s per image/pair | wall s | gt->pred IoU | pred->gt IoU | "
        "abs(#pred-#gt) |\n|---|---|---|---|---|---|---|"
    )
    rows = []
    info = machine()
    for scenario in args.scenarios:
        base = dict(SETTINGS[scenario], n_jobs=args.n_jobs)
        what = "256² image, m_pts=50, c=0.001" if scenario == "cvppp" else "256² pair, m_pts=100, c=0.001"
        for name, variant in VARIANTS.items():
            if any(word in name for word in args.skip):
                continue
            kwargs = dict(base, **variant)
            capped = variant.get("background") == "largest"
            results = []
            for seed in range(args.cases):
                job = (scenario, seed, args.smooth, kwargs)
                res = run_capped(job, args.cap) if capped else run_case(job)
                if res is None:
                    break
                results.append(res)
                print(f"{scenario} | {name} | seed {seed}: {res[0]:.1f} s wall, {res[1]:.1f} s CPU",
                      file=sys.stderr, flush=True)  # fmt: skip
            if not results:
                rows.append(f"| {scenario} ({what}) | {name} | - | > {args.cap:.0f} (stopped) | - | - | - |")
                continue
            r = np.array(results)
            rows.append(
                f"| {scenario} ({what}) | {name} | {np.median(r[:, 1]):.1f} | {np.median(r[:, 0]):.1f} | "
                f"{r[:, 2].mean():.3f} | {r[:, 3].mean():.3f} | {r[:, 4].mean():.1f} |"
            )
    table = "\n".join([header, *rows])
    print(table)
    if args.output:
        command = "python benchmarks/bench_clustering.py " + " ".join(argv if argv is not None else sys.argv[1:])
        report = (
            "# Benchmark: clustering embeddings into instances\n\n"
            f"- Command: `{command.strip()}`\n"
            f"- Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}\n"
            f"- Machine: {info}. Other processes may run at the same time: wall times are upper bounds; "
            "CPU time (`time.process_time`, all threads) is the better measure and equals the wall time of "
            "an idle core with `--n-jobs 1`\n"
            f"- Cases: {args.cases} synthetic cases per scenario, embedding smoothing {args.smooth} px, "
            f"HDBSCAN core_dist_n_jobs={args.n_jobs}\n\n{table}\n"
        )
        atomic_write_text(args.output, report)
    return table


if __name__ == "__main__":
    main()
