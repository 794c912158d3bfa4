"""Speed of the recurrent stacked hourglass on CPU, as a fraction of the machine's 3x3-conv peak.

Usage::

    python benchmarks/bench_network.py                      # paper size: 256x256, 7 levels, 64 filters
    python benchmarks/bench_network.py --size 128 --repeats 1

Measures, for the recurrent and the non-recurrent network (2 stacks, batch 1):

* streaming inference: :meth:`RecurrentStackedHourglass.step` frame by frame under
  ``torch.inference_mode`` (time per frame);
* clip inference: ``forward`` on a ``(1, T, 1, S, S)`` clip under ``torch.inference_mode``;
* training: forward + backward of one ``T``-frame clip (loss = mean of squared outputs of both
  stacks; no optimizer step).

FLOPs are counted analytically for the convolutions only: ``2 * 9 * C_in * C_out * H * W`` per 3x3
conv and frame, counting what is executed (the ConvGRU hidden convolutions are skipped on the first
frame, where the state is zero); backward = 2 x forward. The "peak" is the best GFLOP/s of a single
``F -> F`` 3x3 conv on a ``(T, F, S, S)`` tensor, measured in the same run, over three
implementations (``torch.nn.functional.conv2d`` NCHW, the same channels-last, and the network's own
``Conv3x3``), separately for forward and for forward + backward; the "% of peak" of each row divides
by the best implementation re-measured right before and after that row (other processes may share
the machine). Times are the minimum over the repeats.

Unless ``--no-malloc-tuning`` is given, the script re-executes itself with glibc's
``MALLOC_MMAP_MAX_=0`` and a huge ``MALLOC_TRIM_THRESHOLD_`` so that large tensors are recycled
from the heap instead of being ``mmap``-ed and page-faulted in on every allocation (a large effect
on CPU; the same environment is recommended for training).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from cosinetrack.networks import RecurrentStackedHourglass
from cosinetrack.networks.convgru import Conv3x3

MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}


def cpu_model() -> str:
    """``lscpu`` model name (falls back to ``platform.processor()``)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def best_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Minimum wall time in seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def conv_flops(c_in: int, c_out: int, pixels: int) -> float:
    """FLOPs of one 3x3 convolution on one frame of ``pixels`` pixels."""
    return 2.0 * 9 * c_in * c_out * pixels


def network_flops(net: RecurrentStackedHourglass, height: int, width: int, frames: int) -> float:
    """Forward conv FLOPs of ``net`` on a clip of ``frames`` frames (batch 1), as executed.

    Sizes are the padded ones (multiples of ``2**(num_levels - 1)``).
    """
    m = net.size_multiple
    hp, wp = -(-height // m) * m, -(-width // m) * m
    f = net.num_filters
    total = 0.0
    for hourglass in net.hourglasses:
        for lvl in range(net.num_levels):
            pix = (hp >> lvl) * (wp >> lvl)
            c_in = hourglass.in_channels if lvl == 0 else f
            total += frames * conv_flops(c_in, f, pix)  # contracting
            total += frames * conv_flops(f, f, pix)  # expanding
            if net.recurrent:
                total += frames * conv_flops(f, 3 * f, pix)  # GRU input part, all frames
                total += (frames - 1) * conv_flops(f, 3 * f, pix)  # GRU hidden part, skipped at t=0
            else:
                total += frames * conv_flops(f, f, pix)
        total += frames * conv_flops(f, net.out_channels, hp * wp)  # output conv
    return total


def _time_single_conv(name: str, conv: Conv3x3, frames: int, size: int, repeats: int) -> tuple[float, float]:
    """Seconds (forward, forward + backward) of one conv ``name`` on ``(T, F, S, S)``."""
    f = conv.in_channels
    fmt = torch.contiguous_format if name == "conv2d NCHW" else torch.channels_last
    x = torch.randn(frames, f, size, size).contiguous(memory_format=fmt)
    weight = conv.weight.detach().clone().contiguous(memory_format=fmt).requires_grad_()
    bias = conv.bias.detach().clone().requires_grad_()
    grad = torch.randn(frames, conv.out_channels, size, size).contiguous(memory_format=fmt)

    def run(inp: torch.Tensor) -> torch.Tensor:
        return conv(inp) if name.startswith("Conv3x3") else F.conv2d(inp, weight, bias, padding=1)

    with torch.inference_mode():
        t_fwd = best_time(lambda: run(x), repeats)
    xg = x.clone().requires_grad_()

    def train() -> None:
        run(xg).backward(grad)
        for p in (xg, weight, bias, conv.weight, conv.bias):
            p.grad = None

    return t_fwd, best_time(train, repeats)


def measure_peak(frames: int, filters: int, size: int, repeats: int) -> dict[str, tuple[float, float]]:
    """GFLOP/s (forward, forward + backward) of one ``F -> F`` 3x3 conv on ``(T, F, S, S)``."""
    torch.manual_seed(0)
    flops = frames * conv_flops(filters, filters, size * size)
    conv = Conv3x3(filters, filters)
    results: dict[str, tuple[float, float]] = {}
    for name in ("conv2d NCHW", "conv2d channels_last", "Conv3x3 (ours)"):
        t_fwd, t_train = _time_single_conv(name, conv, frames, size, repeats)
        results[name] = (flops / t_fwd / 1e9, 3 * flops / t_train / 1e9)
    return results


class PeakProbe:
    """Re-measures the best single-conv implementation right before and after each network timing.

    Under varying load from other processes, the ratio to the *adjacent* peak is more stable than
    the ratio to the peak measured once at the start.
    """

    def __init__(self, peaks: dict[str, tuple[float, float]], frames: int, filters: int, size: int, repeats: int):
        self.best_fwd = max(peaks, key=lambda k: peaks[k][0])
        self.best_train = max(peaks, key=lambda k: peaks[k][1])
        self.flops = frames * conv_flops(filters, filters, size * size)
        self.conv = Conv3x3(filters, filters)
        self.frames, self.size, self.repeats = frames, size, repeats

    def __call__(self, train: bool) -> float:
        name = self.best_train if train else self.best_fwd
        t_fwd, t_train = _time_single_conv(name, self.conv, self.frames, self.size, self.repeats)
        return 3 * self.flops / t_train / 1e9 if train else self.flops / t_fwd / 1e9


def bench_network(recurrent: bool, args: argparse.Namespace, probe: PeakProbe) -> tuple[int, list[tuple]]:
    """Time one network; returns its parameter count and table rows."""
    torch.manual_seed(0)
    net = RecurrentStackedHourglass(
        in_channels=1,
        out_channels=args.out_channels,
        num_levels=args.levels,
        num_filters=args.filters,
        num_stacks=2,
        recurrent=recurrent,
    )
    name = "recurrent" if recurrent else "non-recurrent"
    s, t_len = args.size, args.frames
    clip = torch.randn(1, t_len, 1, s, s)
    fwd_flops = network_flops(net, s, s, t_len)

    def stream() -> None:
        state = None
        with torch.inference_mode():
            for t in range(t_len):
                _, state = net.step(clip[:, t], state)

    def clip_forward() -> None:
        with torch.inference_mode():
            net(clip)

    def train() -> None:
        outputs = net(clip)
        loss = sum(o.square().mean() for o in outputs)
        loss.backward()
        for p in net.parameters():
            p.grad = None

    rows = []
    for mode, fn, repeats, flops, is_train in (
        ("stream (step)", stream, args.repeats, fwd_flops, False),
        ("clip forward", clip_forward, args.repeats, fwd_flops, False),
        ("train fwd+bwd", train, args.train_repeats, 3 * fwd_flops, True),
    ):
        net.train(is_train)
        before = probe(is_train)
        secs = best_time(fn, repeats)
        peak = 0.5 * (before + probe(is_train))
        gflops = flops / secs / 1e9
        rows.append((name, mode, secs, secs / t_len, flops / 1e9, gflops, peak, 100 * gflops / peak))
        print(f"# {name} {mode}: {secs:.2f} s, {gflops:.1f} GFLOP/s, adjacent peak {peak:.1f}", flush=True)
    return sum(p.numel() for p in net.parameters()), rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="square frame size S (paper: 256)")
    parser.add_argument("--levels", type=int, default=7, help="hourglass levels (paper: 7)")
    parser.add_argument("--filters", type=int, default=64, help="filters per level (paper: 64)")
    parser.add_argument("--frames", type=int, default=10, help="clip length T (paper: 10)")
    parser.add_argument("--out-channels", type=int, default=16, help="embedding size")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of inference and peak (min taken)")
    parser.add_argument("--train-repeats", type=int, default=1, help="timed training runs (min taken)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    parser.add_argument("--only", choices=["recurrent", "non-recurrent"], default=None)
    parser.add_argument("--no-malloc-tuning", action="store_true", help="keep glibc malloc defaults")
    args = parser.parse_args(argv)

    if argv is None and not args.no_malloc_tuning and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.environ.update(MALLOC_ENV)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    if args.threads:
        torch.set_num_threads(args.threads)

    tuned = all(os.environ.get(k) == v for k, v in MALLOC_ENV.items())
    start = time.perf_counter()
    print(f"# bench_network  {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(
        f"# CPU: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, malloc tuning {'on' if tuned else 'off'}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"# command: python benchmarks/bench_network.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(
        f"# size {args.size}x{args.size}, {args.levels} levels, {args.filters} filters, 2 stacks, "
        f"{args.frames} frames, batch 1, out_channels {args.out_channels}\n"
    )

    peaks = measure_peak(args.frames, args.filters, args.size, args.repeats)
    shape = f"({args.frames}, {args.filters}, {args.size}, {args.size})"
    print(f"Single {args.filters}->{args.filters} 3x3 conv on {shape}:\n")
    print("| implementation | forward GFLOP/s | forward+backward GFLOP/s |")
    print("|---|---:|---:|")
    for name, (fwd, trn) in peaks.items():
        print(f"| {name} | {fwd:.1f} | {trn:.1f} |")
    print(flush=True)

    probe = PeakProbe(peaks, args.frames, args.filters, args.size, args.repeats)
    rows, counts = [], {}
    variants = [True, False] if args.only is None else [args.only == "recurrent"]
    for recurrent in variants:
        count, net_rows = bench_network(recurrent, args, probe)
        counts[net_rows[0][0]] = count
        rows += net_rows
    print("\n| network | mode | s per clip | s per frame | GFLOP per clip | GFLOP/s | peak GFLOP/s | % of peak |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, mode, secs, per_frame, gflop, gflops, peak, pct in rows:
        print(
            f"| {name} | {mode} | {secs:.2f} | {per_frame:.3f} | {gflop:.0f} | {gflops:.1f} | {peak:.1f} | {pct:.0f}% |"
        )
    print("\nparameters: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if len(counts) == 2:
        print(f"ratio recurrent / non-recurrent: {counts['recurrent'] / counts['non-recurrent']:.2f}")
    print(f"total benchmark time {time.perf_counter() - start:.0f} s, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
