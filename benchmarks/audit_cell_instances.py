"""Audit a cell tracking result against the TRA markers: where do the extra instances come from?

For every frame of a CTC result folder (``maskTTT.tif``) and the ground truth's TRA markers
(``01_GT/TRA/man_trackTTT.tif``), each instance is classified as *on a marker* (it covers at least one marker
pixel), and per marker the instances covering it are counted (more than one: a split; none: missed). For each
instance the share of its pixels in the frame's bright foreground (:func:`cosinetrack.transforms.bright_foreground`
of the Gaussian-smoothed frame, sigma 2 px: the classical pipeline's threshold) is also measured, so the false
instances can be told apart into background texture (share near 0) and pieces of cells. This is how session 18
found that the SIM+-only model's false instances on GOWT1 are background texture (``docs/results_cell.md``).

Usage (from the repository root)::

    python benchmarks/bench_cell_robustness.py --ckpt MODEL --config configs/cell_cpu.json \\
        --dataset ../shared/data/ctc/Fluo-N2DH-GOWT1 --frames 40:77 --shifts none --workdir /tmp/w --keep
    python benchmarks/audit_cell_instances.py --result /tmp/w/<kept>/eval/tracking/01_RES \\
        --video /tmp/w/<kept>/Fluo-N2DH-GOWT1/01 --first 40

``--first``: the video frame of the result's ``mask000.tif`` (the robustness benchmark renumbers a window from 0).
Prints the counts and, for thresholds of the bright-foreground share, how many instances on a marker and how many
off the markers fall below it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

import numpy as np
import tifffile
from scipy import ndimage as ndi

from cosinetrack.transforms import bright_foreground

SHARES = (0.02, 0.05, 0.1, 0.2, 0.5)


def audit_frame(labels: np.ndarray, markers: np.ndarray, image: np.ndarray) -> dict[str, np.ndarray | int]:
    """One frame: ``labels`` and ``markers`` ``(H, W)`` integer (0 = background), ``image`` the raw frame.

    Returns ``on_marker`` (bool per instance), ``share`` (bright-foreground share per instance), ``splits``
    (markers covered by more than one instance, counted once per extra instance) and ``missed`` (markers no
    instance covers).
    """
    if labels.shape != markers.shape or labels.shape != image.shape[-2:]:
        raise ValueError(f"shapes differ: labels {labels.shape}, markers {markers.shape}, image {image.shape}")
    ids = np.unique(labels[labels > 0])
    bright = bright_foreground(ndi.gaussian_filter(np.asarray(image, dtype=np.float32), 2.0))
    share = np.asarray(ndi.mean(bright, labels, ids)) if ids.size else np.zeros(0)
    on_marker = np.asarray(ndi.maximum(markers > 0, labels, ids), dtype=bool) if ids.size else np.zeros(0, bool)
    both = (labels > 0) & (markers > 0)
    pairs = np.unique(np.stack([markers[both], labels[both]]), axis=1)  # (marker, instance) overlaps, once each
    covering = np.unique(pairs[0], return_counts=True)[1]  # instances per covered marker
    marker_ids = np.unique(markers[markers > 0])
    splits = int((covering - 1).sum())
    missed = int(marker_ids.size - covering.size)
    return {"on_marker": on_marker, "share": share, "splits": splits, "missed": missed, "markers": marker_ids.size}


def _numbered(folder: str, pattern: str) -> dict[int, str]:
    rx = re.compile(pattern)
    return {int(m.group(1)): os.path.join(folder, f) for f in os.listdir(folder) if (m := rx.fullmatch(f))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--result", required=True, help="CTC result folder with maskTTT.tif")
    parser.add_argument("--video", required=True, help="the video's image folder (e.g. .../Fluo-N2DH-GOWT1/01)")
    parser.add_argument("--gt", default=None, help="its TRA folder (default: <video>_GT/TRA)")
    parser.add_argument("--first", type=int, default=0, help="video frame of mask000.tif")
    args = parser.parse_args(argv)
    gt = args.gt or os.path.join(os.path.normpath(args.video) + "_GT", "TRA")
    masks = _numbered(args.result, r"mask(\d+)\.tif")
    markers = _numbered(gt, r"man_track(\d+)\.tif")
    images = _numbered(args.video, r"t(\d+)\.tif")
    if not masks:
        sys.exit(f"{args.result}: no maskTTT.tif files")
    on, share, splits, missed, num_markers = [], [], 0, 0, 0
    for t in sorted(masks):
        frame = t + args.first
        if frame not in markers or frame not in images:
            sys.exit(f"{args.video}: frame {frame} (mask{t:03d}.tif) has no image or TRA marker file")
        row = audit_frame(tifffile.imread(masks[t]), tifffile.imread(markers[frame]), tifffile.imread(images[frame]))
        on.append(row["on_marker"])
        share.append(row["share"])
        splits += row["splits"]
        missed += row["missed"]
        num_markers += row["markers"]
    on_marker, shares = np.concatenate(on), np.concatenate(share)
    print(f"frames {len(masks)}  instances {on_marker.size}  markers {num_markers}  on a marker {on_marker.sum()}  "
          f"off the markers {(~on_marker).sum()}  splits {splits}  missed {missed}")  # fmt: skip
    print("bright-foreground share below | on a marker | off the markers")
    for s in SHARES:
        print(f"{s:>28} | {(shares[on_marker] < s).sum():>11} | {(shares[~on_marker] < s).sum():>15}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
