"""Time the robust normalization of one frame and one training clip: MONAI's percentile scaling against ours.

The pipeline normalizes every frame at inference (``normalize_frame``) and every clip in training with
the medians of the lowest ``i_min`` % and highest ``i_max`` % of the values. MONAI's
``ScaleIntensityRangePercentilesd`` takes the two percentiles with ``torch.quantile`` (a full sort) for
tensors of up to 1M values; :class:`~cosinetrack.transforms.normalize.RobustNormalized` takes both with one
``np.percentile`` call (a partition). Inputs: the first frame of ``Fluo-N2DH-SIM+/01`` and
``Fluo-N2DH-GOWT1/01`` when ``--data`` holds them (690 x 628 and 1024 x 1024), else random gamma frames
of those sizes, plus a 10-frame clip of each.

    python benchmarks/bench_robust_normalization.py [--data ../shared/data/ctc] [--repeats 20] [--threads 1]

Prints a markdown table: median and min wall-clock seconds per call over the repeats (after one warm-up),
the ratio of the medians, and the largest difference between the two outputs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from monai.transforms import ScaleIntensityRangePercentilesd

from cosinetrack.apps.cell.presets import CTC_PRESETS
from cosinetrack.apps.cell.reader import find_ctc_sequences, read_ctc_frame
from cosinetrack.transforms.normalize import RobustNormalized


def inputs(data: str) -> list[tuple[str, str, torch.Tensor]]:
    """``(data set, what, image)``: the first frame ``(1, H, W)`` of each data set and a clip ``(10, H, W)``."""
    out = []
    for name, size in (("Fluo-N2DH-SIM+", (690, 628)), ("Fluo-N2DH-GOWT1", (1024, 1024))):
        folder = os.path.join(data, name)
        if os.path.isdir(folder):
            seq = find_ctc_sequences(folder)[0]
            frames = [read_ctc_frame(seq.images[t]) for t in list(seq.frames)[:10]]
            source = "real"
        else:
            rng = np.random.default_rng(0)
            frames = [rng.gamma(2.0, 40.0, size=size) for _ in range(10)]
            source = "random"
        clip = torch.as_tensor(np.stack(frames).astype(np.float32))
        h, w = clip.shape[1:]
        out.append((name, f"frame {h}x{w} ({source})", clip[:1].clone()))
        out.append((name, f"clip 10x{h}x{w} ({source})", clip))
    return out


def timed(fn, repeats: int) -> list[float]:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join("..", "shared", "data", "ctc"))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}, {args.repeats} repeats\n")
    print("| data set | input | MONAI median / min (s) | ours median / min (s) | speed-up | max abs diff |")
    print("|---|---|---|---|---|---|")
    for name, what, image in inputs(args.data):
        i_min, i_max = CTC_PRESETS[name]["i_min"], CTC_PRESETS[name]["i_max"]
        monai = ScaleIntensityRangePercentilesd(
            "image", lower=i_min / 2, upper=100 - i_max / 2, b_min=-1.0, b_max=1.0, clip=False, relative=False
        )
        ours = RobustNormalized("image", i_min, i_max)
        t_monai = timed(lambda t=monai, x=image: t({"image": x}), args.repeats)
        t_ours = timed(lambda t=ours, x=image: t({"image": x}), args.repeats)
        diff = (torch.as_tensor(monai({"image": image})["image"]) - ours({"image": image})["image"]).abs().max()
        m, o = statistics.median(t_monai), statistics.median(t_ours)
        print(
            f"| {name} | {what} | {m:.4f} / {min(t_monai):.4f} | {o:.4f} / {min(t_ours):.4f} | {m / o:.1f} x "
            f"| {float(diff):.1e} |"
        )


if __name__ == "__main__":
    main()
