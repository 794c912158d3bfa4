"""Speed of the recurrent stacked hourglass on CPU, as a fraction of the machine's 3x3-conv peak.

Usage::

    python benchmarks/bench_network.py                      # paper size: 256x256, 7 levels, 64 filters
    python benchmarks/bench_network.py --size 128 --repeats 1
    python benchmarks/bench_network.py --amp                # float32 and bfloat16 autocast side by side

Measures, for the recurrent and the non-recurrent network (2 stacks, batch 1):

* streaming inference: :meth:`RecurrentStackedHourglass.step` frame by frame under
  ``torch.inference_mode`` (time per frame);
* clip inference: ``forward`` on a ``(1, T, 1, S, S)`` clip under ``torch.inference_mode``;
* training: forward + backward of one ``T``-frame clip (loss = mean of squared outputs of both
  stacks; no optimizer step).

With ``--amp`` every row is measured in float32 and under ``torch.autocast("cpu", dtype=torch.bfloat16)``
(:func:`cosinetrack.inference.autocast_context`; training: autocast forward, float32 loss, backward
outside the region, as the trainer does), the two interleaved repeat by repeat so that load from other
processes hits both alike; a second table gives the speed-up float32 time / bfloat16 time. The bfloat16
rows' "% of peak" divides by the bfloat16 single-conv peak (same three implementations in bfloat16).

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

import cosinetrack.networks.convgru as convgru
from cosinetrack.inference.inferer import autocast_context
from cosinetrack.networks.convgru import Conv3x3, cpu_bf16_supported
from cosinetrack.networks.stacked import RecurrentStackedHourglass

MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


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


def _time_single_conv(
    name: str, conv: Conv3x3, frames: int, size: int, repeats: int, dtype: torch.dtype = torch.float32
) -> tuple[float, float]:
    """Seconds (forward, forward + backward) of one conv ``name`` on ``(T, F, S, S)`` in ``dtype``.

    ``conv2d`` rows run on ``dtype`` tensors; ``Conv3x3`` takes float32 input and parameters and runs
    under CPU autocast when ``dtype`` is bfloat16 (as in the network).
    """
    f = conv.in_channels
    fmt = torch.contiguous_format if name == "conv2d NCHW" else torch.channels_last
    ours = name.startswith("Conv3x3")
    data_dtype = torch.float32 if ours else dtype
    x = torch.randn(frames, f, size, size).to(data_dtype).contiguous(memory_format=fmt)
    weight = conv.weight.detach().clone().to(data_dtype).contiguous(memory_format=fmt).requires_grad_()
    bias = conv.bias.detach().clone().to(data_dtype).requires_grad_()
    grad = torch.randn(frames, conv.out_channels, size, size).to(dtype).contiguous(memory_format=fmt)
    amp = dtype != torch.float32

    def run(inp: torch.Tensor) -> torch.Tensor:
        if not ours:
            return F.conv2d(inp, weight, bias, padding=1)
        with autocast_context("cpu", amp):
            return conv(inp)

    with torch.inference_mode():
        t_fwd = best_time(lambda: run(x), repeats)
    xg = x.clone().requires_grad_()

    def train() -> None:
        run(xg).backward(grad)
        for p in (xg, weight, bias, conv.weight, conv.bias):
            p.grad = None

    return t_fwd, best_time(train, repeats)


PEAK_IMPLEMENTATIONS = ("conv2d NCHW", "conv2d channels_last", "Conv3x3 (ours)")


def measure_peak(
    frames: int, filters: int, size: int, repeats: int, dtype: torch.dtype = torch.float32
) -> dict[str, tuple[float, float]]:
    """GFLOP/s (forward, forward + backward) of one ``F -> F`` 3x3 conv on ``(T, F, S, S)``."""
    torch.manual_seed(0)
    flops = frames * conv_flops(filters, filters, size * size)
    conv = Conv3x3(filters, filters)
    results: dict[str, tuple[float, float]] = {}
    for name in PEAK_IMPLEMENTATIONS:
        t_fwd, t_train = _time_single_conv(name, conv, frames, size, repeats, dtype)
        results[name] = (flops / t_fwd / 1e9, 3 * flops / t_train / 1e9)
    return results


class PeakProbe:
    """Re-measures the best single-conv implementation right before and after each network timing.

    Under varying load from other processes, the ratio to the *adjacent* peak is more stable than
    the ratio to the peak measured once at the start.
    """

    def __init__(
        self,
        peaks: dict[str, tuple[float, float]],
        frames: int,
        filters: int,
        size: int,
        repeats: int,
        dtype: torch.dtype = torch.float32,
    ):
        self.best_fwd = max(peaks, key=lambda k: peaks[k][0])
        self.best_train = max(peaks, key=lambda k: peaks[k][1])
        self.flops = frames * conv_flops(filters, filters, size * size)
        self.conv = Conv3x3(filters, filters)
        self.frames, self.size, self.repeats, self.dtype = frames, size, repeats, dtype

    def __call__(self, train: bool) -> float:
        name = self.best_train if train else self.best_fwd
        t_fwd, t_train = _time_single_conv(name, self.conv, self.frames, self.size, self.repeats, self.dtype)
        return 3 * self.flops / t_train / 1e9 if train else self.flops / t_fwd / 1e9


def interleaved_best_times(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Like :func:`best_time` for several functions, run in turn in every repeat (load hits all alike)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(max(1, repeats)):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[key] = min(best[key], time.perf_counter() - t0)
    return best


def bench_network(recurrent: bool, args: argparse.Namespace, probes: dict[str, PeakProbe]) -> tuple[int, list[tuple]]:
    """Time one network in every precision of ``probes``; returns its parameter count and table rows."""
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

    def stream(amp: bool) -> None:
        state = None
        with torch.inference_mode():
            for t in range(t_len):
                with autocast_context("cpu", amp):
                    out, state = net.step(clip[:, t], state)
                out[-1].float()  # what is handed to clustering

    def clip_forward(amp: bool) -> None:
        with torch.inference_mode(), autocast_context("cpu", amp):
            net(clip)

    def train(amp: bool) -> None:
        with autocast_context("cpu", amp):  # forward only, as cosinetrack.inference.AutocastInferer
            outputs = net(clip)
        loss = sum(o.float().square().mean() for o in outputs)
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
        before = {prec: probe(is_train) for prec, probe in probes.items()}
        fns = {prec: (lambda fn=fn, amp=prec != "fp32": fn(amp)) for prec in probes}
        secs = interleaved_best_times(fns, repeats)
        for prec, probe in probes.items():
            peak = 0.5 * (before[prec] + probe(is_train))
            gflops = flops / secs[prec] / 1e9
            rows.append(
                (name, mode, prec, secs[prec], secs[prec] / t_len, flops / 1e9, gflops, peak, 100 * gflops / peak)
            )
            print(
                f"# {name} {mode} {prec}: {secs[prec]:.2f} s, {gflops:.1f} GFLOP/s, adjacent peak {peak:.1f}",
                flush=True,
            )
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
    parser.add_argument(
        "--amp", action="store_true", help="also measure bfloat16 CPU autocast, interleaved with float32, and the ratio"
    )
    parser.add_argument(
        "--weight-grad",
        choices=["auto", "gemm", "onednn"],
        default="auto",
        help="Conv3x3 weight gradient: GEMMs or oneDNN's kernel (auto: the package default for this CPU)",
    )
    args = parser.parse_args(argv)
    if args.weight_grad != "auto":
        convgru.GEMM_WEIGHT_GRAD = args.weight_grad == "gemm"

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
        f"load average {os.getloadavg()[0]:.1f}, Conv3x3 weight gradient "
        f"{'GEMM' if convgru.GEMM_WEIGHT_GRAD else 'oneDNN'}"
    )
    print(f"# command: python benchmarks/bench_network.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(
        f"# size {args.size}x{args.size}, {args.levels} levels, {args.filters} filters, 2 stacks, "
        f"{args.frames} frames, batch 1, out_channels {args.out_channels}"
    )
    precisions = ["fp32", "bf16"] if args.amp else ["fp32"]
    if args.amp:
        print(f"# precisions: {', '.join(precisions)}; native bfloat16 (oneDNN): {cpu_bf16_supported()}")
    print()

    shape = f"({args.frames}, {args.filters}, {args.size}, {args.size})"
    probes = {}
    for prec in precisions:
        dtype = PRECISIONS[prec]
        peaks = measure_peak(args.frames, args.filters, args.size, args.repeats, dtype)
        print(f"Single {args.filters}->{args.filters} 3x3 conv on {shape}, {prec}:\n")
        print("| implementation | forward GFLOP/s | forward+backward GFLOP/s |")
        print("|---|---:|---:|")
        for name, (fwd, trn) in peaks.items():
            print(f"| {name} | {fwd:.1f} | {trn:.1f} |")
        print(flush=True)
        probes[prec] = PeakProbe(peaks, args.frames, args.filters, args.size, args.repeats, dtype)

    rows, counts = [], {}
    variants = [True, False] if args.only is None else [args.only == "recurrent"]
    for recurrent in variants:
        count, net_rows = bench_network(recurrent, args, probes)
        counts[net_rows[0][0]] = count
        rows += net_rows
    print(
        "\n| network | mode | precision | s per clip | s per frame | GFLOP per clip | GFLOP/s | peak GFLOP/s ", end=""
    )
    print("| % of peak |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for name, mode, prec, secs, per_frame, gflop, gflops, peak, pct in rows:
        print(
            f"| {name} | {mode} | {prec} | {secs:.2f} | {per_frame:.3f} | {gflop:.0f} | {gflops:.1f} | {peak:.1f} "
            f"| {pct:.0f}% |"
        )
    if args.amp:
        by_key = {(r[0], r[1], r[2]): r[3] for r in rows}
        print("\n| network | mode | fp32 s per frame | bf16 s per frame | speed-up fp32 / bf16 |")
        print("|---|---|---:|---:|---:|")
        for name, mode, prec, *_ in rows:
            if prec == "fp32":
                t32, t16 = by_key[name, mode, "fp32"], by_key[name, mode, "bf16"]
                n = args.frames
                print(f"| {name} | {mode} | {t32 / n:.3f} | {t16 / n:.3f} | {t32 / t16:.2f}x |")
    print("\nparameters: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if len(counts) == 2:
        print(f"ratio recurrent / non-recurrent: {counts['recurrent'] / counts['non-recurrent']:.2f}")
    print(f"total benchmark time {time.perf_counter() - start:.0f} s, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
