"""Time the cosine embedding loss (forward + backward) on a paper-sized clip, next to a network forward.

Case: one 10-frame 256x256 clip, D = 16 embedding channels, 32 moving elliptic cells + background
(the paper's cell setting, r_N = 50 px), and the leaf setting (all other instances, r_N = None).
The yardstick is the paper-size :class:`~cosinetrack.networks.RecurrentStackedHourglass` (7 levels,
64 filters, 2 stacks) forward of the same 10 frames under ``torch.inference_mode`` when it is
importable, else one 3x3 convolution 64 -> 64 over the 10 frames. Both are measured in the same run.

    python benchmarks/bench_loss.py [--repeats 5] [--threads 2] [--no-network]

Prints a markdown table: median and min wall-clock seconds and min process CPU seconds over the
repeats (after one warm-up call), and the median wall time as a fraction of the network forward's.
CPU seconds are the less noisy number on a shared machine (with several threads they add up).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from cosinetrack.losses.cosine_embedding import CosineEmbeddingLoss


def synthetic_clip(t: int = 10, size: int = 256, cells: int = 32, seed: int = 0) -> torch.Tensor:
    """``(1, T, H, W)`` int64 labels: ``cells`` elliptic cells (ids 1..cells) drifting over the frames, 0 elsewhere."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    center = rng.uniform(20, size - 20, size=(cells, 2))
    axes = rng.uniform(8, 16, size=(cells, 2))
    angle = rng.uniform(0, np.pi, size=cells)
    velocity = rng.normal(0, 1.5, size=(cells, 2))
    lab = np.zeros((1, t, size, size), dtype=np.int64)
    for f in range(t):
        c = center + f * velocity
        best = np.full((size, size), np.inf)
        for k in range(cells):  # nearest ellipse wins where they overlap (Voronoi-like contacts)
            dy, dx = yy - c[k, 0], xx - c[k, 1]
            u = (dy * np.cos(angle[k]) + dx * np.sin(angle[k])) / axes[k, 0]
            v = (-dy * np.sin(angle[k]) + dx * np.cos(angle[k])) / axes[k, 1]
            r = u**2 + v**2
            inside = (r <= 1) & (r < best)
            lab[0, f][inside] = k + 1
            best = np.where(inside, r, best)
    return torch.from_numpy(lab)


def timeit(fn, repeats: int) -> tuple[float, float, float]:
    """Median and min wall-clock seconds, and min process CPU seconds, after one warm-up call."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), min(wall), min(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-network", action="store_true", help="skip the paper-size network forward")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    labels = synthetic_clip()
    n_cells = len(torch.unique(labels)) - 1
    emb = torch.randn(1, 10, 16, 256, 256)
    rows = []
    for name, kwargs in [
        ("loss r_N=50 disc", {"neighbor_radius": 50.0, "neighbor_rule": "disc"}),
        ("loss r_N=50 dilation", {"neighbor_radius": 50.0, "neighbor_rule": "dilation"}),
        ("loss r_N=None (all)", {"neighbor_radius": None}),
    ]:
        loss_fn = CosineEmbeddingLoss(**kwargs)
        x = emb.clone().requires_grad_(True)

        def step(loss_fn=loss_fn, x=x) -> None:
            x.grad = None
            loss_fn(x, labels).backward()

        rows.append((name + " fwd+bwd", *timeit(step, args.repeats)))
        with torch.no_grad():
            rows.append((name + " fwd", *timeit(lambda loss_fn=loss_fn: loss_fn(emb, labels), args.repeats)))

    reference = None
    try:
        from cosinetrack.networks.stacked import RecurrentStackedHourglass
    except ImportError:
        RecurrentStackedHourglass = None  # noqa: N806
    if RecurrentStackedHourglass is not None and not args.no_network:
        net = RecurrentStackedHourglass(in_channels=1, out_channels=16).eval()
        image = torch.randn(1, 10, 1, 256, 256)
        with torch.inference_mode():
            reference = ("RecurrentStackedHourglass fwd (7 levels, 64 f, 2 stacks)", *timeit(lambda: net(image), 1))
    else:
        print("RecurrentStackedHourglass not importable (or --no-network): yardstick is one 3x3 conv 64->64")
        conv = torch.nn.Conv2d(64, 64, 3, padding=1)
        feat = torch.randn(10, 64, 256, 256)
        with torch.inference_mode():
            reference = ("one 3x3 conv 64->64 fwd", *timeit(lambda: conv(feat), args.repeats))
    rows.append(reference)

    print(
        f"\n10 x 256 x 256 clip, D = 16, {n_cells} cells + background, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads\n"
    )
    print("| case | wall median s | wall min s | CPU min s | / network fwd (wall median) |")
    print("|---|---|---|---|---|")
    for name, med, best, cpu in rows:
        print(f"| {name} | {med:.3f} | {best:.3f} | {cpu:.3f} | {med / reference[1]:.3f} |")


if __name__ == "__main__":
    main()
