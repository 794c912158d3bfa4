"""Lineage rules against over-segmentation read as mitosis: SEG, TRA, DET, OP_CTB and divisions per option setting.

Usage (from the repository root; choose on the training frames, then report the held-out ones once)::

    # choosing: the shipped model was trained on SIM+/01 frames 0-49, so frames 35-49 are training frames
    OMP_NUM_THREADS=1 python benchmarks/bench_lineage_rules.py --threads 1 --sets Fluo-N2DH-SIM+:01:35:50 --grid
    # reporting: the old and the chosen options on the held-out frames
    OMP_NUM_THREADS=1 python benchmarks/bench_lineage_rules.py --threads 1 \\
        --sets Fluo-N2DH-SIM+:01:50:65 Fluo-N2DH-GOWT1:01:0:40 \\
        --variant "size rule={'tracking': {'max_daughter_ratio': 0.8}}" \\
        --variant "cycle rule={'lineage': {'min_cycle_length': 20}}"
    # (the exact commands of the reported tables: docs/results_cell.md, "Session 5: lineage rules")
    # tiny smoke run (an untrained network, three frames)
    python benchmarks/bench_lineage_rules.py --ckpt none --sets Fluo-N2DH-SIM+:01:50:53 --methods learned

Two segmentations feed the same tracking stage (:class:`cosinetrack.tracking.PairTracker` and
:func:`cosinetrack.tracking.make_lineage_valid`), for every ``--sets`` entry ``DATASET:SEQUENCE:START:STOP``
(frames as a python slice):

* ``learned``: the cell bundle's pipeline with the shipped model (``--ckpt``, default
  ``bundles/cell/models/model.pt``; its network settings are read from the file): frames normalized with
  the data set's preset, scaled to the 256² canvas with the bundle's padding, streamed through the network
  once (float32; the embeddings are cached under ``--cache_dir``, as ``bench_fast_clustering.py`` does),
  every frame pair clustered with the bundle's ``clustering_options`` (mode ``fast``) and resampled to
  the frame size.
* ``mad``: the strong classical baseline of ``bench_ctc_baseline.py`` (``segment_nuclei_mad`` with its
  defaults, consecutive frames relabeled by greedy IoU into consistent pairs).

The per-frame pair labels are computed **once** per data set and method; only the tracker and the
lineage step run again for each option setting (``--variant``): the bundle's ``tracking`` and
``lineage`` sections (``old``) updated with the variant's. Each result is written with
:class:`cosinetrack.apps.cell.CTCResultWriter` and scored with py-ctcmetrics
(:func:`cosinetrack.apps.cell.ctc_scores`) against the ground truth of the same frames, cut out and
renumbered from 0 by :func:`cosinetrack.apps.cell.write_ctc_subsequence` (as the bundle's validation does).

Columns: SEG, TRA, DET, OP_CTB, the number of divisions (tracks with two or more daughters) and of
tracks in the result and in the ground truth of the window, AOGM and its error counts (NS: splits of
a region that covers several cells, FN and FP vertices; ED, EA, EC: edges to delete, to add, of wrong
semantics).
"""

from __future__ import annotations

import argparse
import ast
import datetime
import importlib.util
import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from cosinetrack.apps.cell.presets import clustering_parameters, ctc_preset
from cosinetrack.apps.cell.reader import iter_ctc_frames, read_ctc_frame
from cosinetrack.apps.cell.scoring import ctc_scores
from cosinetrack.apps.cell.writer import CTCResultWriter, write_ctc_subsequence
from cosinetrack.clustering.embedding_clustering import cluster_embeddings
from cosinetrack.io.atomic import atomic_write_text
from cosinetrack.networks.stacked import RecurrentStackedHourglass
from cosinetrack.tracking.pair_tracker import PairTracker, check_tracking_options
from cosinetrack.transforms.spatial import restore_label_size
from cosinetrack.workflows.checkpoint import load_weights, network_for_model

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DATA = os.environ.get("COSINETRACK_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
METHODS = ("learned", "mad")
#: the variants searched with ``--grid`` (on training frames only): each option alone, then combinations
GRID = (
    *({"lineage": {"min_daughter_length": n}} for n in (3, 5, 8)),
    *({"lineage": {"min_cycle_length": n}} for n in (5, 10, 20)),
    {"lineage": {"min_cycle_length": 20, "min_daughter_length": 5}},
    *({"tracking": {"max_daughter_ratio": r}} for r in (0.6, 0.7, 0.8, 0.9, 1.0, 1.3)),
    *({"tracking": {"min_pair_iou": r}} for r in (0.05, 0.1)),
    {"tracking": {"max_daughter_ratio": 0.8}, "lineage": {"min_cycle_length": 20, "min_daughter_length": 5}},
    {
        "tracking": {"max_daughter_ratio": 0.8, "min_pair_iou": 0.1},
        "lineage": {"min_cycle_length": 20, "min_daughter_length": 5},
    },
)


def variant_name(variant: Mapping[str, Mapping[str, Any]]) -> str:
    """``"tracking: a=1; lineage: b=2"`` of a variant's options."""
    parts = [
        f"{section}: " + ", ".join(f"{k}={v}" for k, v in options.items())
        for section, options in variant.items()
        if options
    ]
    return "; ".join(parts) or "old"


def _load(name: str):
    """A sibling benchmark script as a module (``benchmarks/`` is not a package)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_variant(spec: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """``NAME={'tracking': {...}, 'lineage': {...}}`` (a python literal) -> (name, sections)."""
    name, sep, body = spec.partition("=")
    if not sep or not name:
        raise SystemExit(f"--variant: expected NAME={{'lineage': {{...}}}}, got {spec!r}")
    value = ast.literal_eval(body)
    if not isinstance(value, dict) or set(value) - {"tracking", "lineage"}:
        raise SystemExit(f"--variant {name}: expected a dict with 'tracking' and/or 'lineage', got {body!r}")
    return name, {k: dict(value.get(k, {})) for k in ("tracking", "lineage")}


def learned_pairs(fast, net, seq: dict, frames: list[int], args, settings, frame_size) -> list[np.ndarray]:
    """The bundle pipeline's ``(2, H, W)`` labels of every frame pair, at the frame size."""
    preset = ctc_preset(None, seq.root)
    options = {k: v for k, v in settings["clustering_options"].items() if k != "mode"}
    kwargs = clustering_parameters(preset, (args.image_size,) * 2, frame_size, "scaled", **options)
    kwargs["mode"] = settings["clustering_options"].get("mode", "exact")
    untrained = args.ckpt == "none"
    key = argparse.Namespace(  # what bench_fast_clustering.embeddings_of keys its cache on
        ckpt=None if untrained else args.ckpt, num_levels=3 if untrained else None,
        num_filters=8 if untrained else None, image_size=args.image_size, cache_dir=args.cache_dir,
    )  # fmt: skip
    emb = fast.embeddings_of(net, seq, frames, preset, key, settings)
    pairs = []
    for t in range(1, emb.shape[0]):
        labels = cluster_embeddings(torch.from_numpy(emb[t - 1 : t + 1]), **kwargs)
        pairs.append(restore_label_size(labels, frame_size).numpy().astype(np.int32))
    return pairs


def mad_pairs(baseline, seq: dict, frames: list[int]) -> list[np.ndarray]:
    """The classical baseline's ``(2, H, W)`` consistent labels of every frame pair."""
    pairs, previous = [], None
    for _, image in iter_ctc_frames(seq, frames):
        labels = baseline.segment_nuclei_mad(image)
        if previous is not None:
            pairs.append(baseline.consistent_pair(previous, labels, 0.25).astype(np.int32))
        previous = labels
    return pairs


def track_and_score(
    pairs: Sequence[np.ndarray], tracking: Mapping, lineage: Mapping, gt_dir: str, res_dir: str
) -> dict:
    """Pair tracker + lineage on ``pairs``, written as a CTC result and scored."""
    tracker = PairTracker(**tracking)
    with CTCResultWriter(res_dir, digits=3) as writer:
        for t, pair in enumerate(pairs):
            writer.write_frame(t, tracker.update(pair))
        writer.write_frame(len(pairs), tracker.finish())
        mappings, tracks = tracker.lineage(**lineage)
        writer.relabel(mappings)
        writer.close(tracks)
    return ctc_scores(res_dir, gt_dir, metrics=("SEG", "TRA", "DET"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--ckpt", default=os.path.join(REPO, "bundles", "cell", "models", "model.pt"),
      help="model file (default: the shipped cell model); 'none': an untrained 3 x 8 network (smoke runs)")  # fmt: skip
    a("--sets", nargs="+", default=["Fluo-N2DH-SIM+:01:35:50"], help="DATASET:SEQUENCE:START:STOP")
    a("--data_root", default=DATA, help="folder with ctc/<DATASET> (default ../shared/data)")
    a("--methods", default=",".join(METHODS), type=lambda s: [m for m in s.split(",") if m])
    a("--variant", action="append", default=[], help="NAME={'tracking': {...}, 'lineage': {...}} (repeatable)")
    a("--grid", action="store_true", help="add the variants of GRID (each new option alone, then combined)")
    a("--image_size", type=int, default=256, help="network canvas of the model (the shipped one: 256)")
    a("--bundle", default=os.path.join(REPO, "bundles", "cell", "train.json"), help="bundle of the settings")
    a("--cache_dir", default=os.path.join(tempfile.gettempdir(), "cosinetrack_bench_fast_clustering"))
    a("--threads", type=int, default=1, help="torch threads")
    a("--json", default=None, help="also write the rows here")
    a("--out", default=None, help="also write the report here")
    args = p.parse_args(argv)
    for m in args.methods:
        if m not in METHODS:
            p.error(f"--methods: unknown method {m!r}; choose from {', '.join(METHODS)}")
    return args


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    torch.set_num_threads(max(args.threads, 1))
    start = time.perf_counter()
    fast = _load("bench_fast_clustering")
    baseline = _load("bench_ctc_baseline")
    settings = fast.bundle_settings(args.bundle)
    # the pairs here are labels without their frames: the brightness filters (halo_distance, min_foreground_fraction)
    # need the frames' bright foreground, so they stay off (a variant may not turn them on)
    settings["tracking"] = {**settings["tracking"], "halo_distance": 0.0, "min_foreground_fraction": 0.0}
    variants = [("old", {"tracking": {}, "lineage": {}})]
    if args.grid:
        variants += [(variant_name(v), {"tracking": {}, "lineage": {}, **v}) for v in GRID]
    variants += [parse_variant(v) for v in args.variant]
    resolved = []
    for name, var in variants:
        tracking, lineage = check_tracking_options(
            {**settings["tracking"], **var["tracking"]}, {**settings["lineage"], **var["lineage"]}
        )
        resolved.append((name, tracking, lineage))
    command = "OMP_NUM_THREADS=1 python benchmarks/bench_lineage_rules.py " + " ".join(
        f'"{a}"' if "'" in a and '"' not in a else shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    head = [
        f"- Date: {datetime.datetime.now().isoformat(timespec='minutes')}",
        f"- Command: `{command}`",
        f"- Bundle settings (`old`): clustering_options {settings['clustering_options']}, "
        f"tracking {settings['tracking']}, lineage {settings['lineage']}",
        f"- Model: `{os.path.relpath(args.ckpt, REPO) if args.ckpt != 'none' else 'UNTRAINED (smoke run)'}`",
    ]
    print("\n".join(head), flush=True)

    net = None
    if "learned" in args.methods:
        if args.ckpt == "none":
            torch.manual_seed(0)
            net = RecurrentStackedHourglass(in_channels=1, out_channels=16, num_levels=3, num_filters=8, num_stacks=2)
        else:
            net = network_for_model(args.ckpt, in_channels=1, out_channels=16, num_stacks=2, recurrent=True)
            load_weights(net, args.ckpt, map_location="cpu")
        net.eval()
    rows = []
    for spec in args.sets:
        seq, frames = fast.parse_set(spec, args.data_root)
        frame_size = tuple(read_ctc_frame(seq.images[frames[0]]).shape)
        data_name = f"{os.path.basename(os.path.normpath(seq.root))}/{seq.name} {frames[0]}-{frames[-1]}"
        with tempfile.TemporaryDirectory(prefix="bench_lineage_rules_") as tmp:
            write_ctc_subsequence(seq, frames, os.path.join(tmp, "gt"), name="01")
            gt_dir = os.path.join(tmp, "gt", "01_GT")
            for method in args.methods:
                t0 = time.perf_counter()
                if method == "learned":
                    pairs = learned_pairs(fast, net, seq, frames, args, settings, frame_size)
                else:
                    pairs = mad_pairs(baseline, seq, frames)
                seg_s = time.perf_counter() - t0
                print(f"# {data_name} {method}: pair labels in {seg_s:.0f} s", flush=True)
                for k, (name, tracking, lineage) in enumerate(resolved):
                    t0 = time.perf_counter()
                    s = track_and_score(pairs, tracking, lineage, gt_dir, os.path.join(tmp, f"{method}{k}_RES"))
                    row = {
                        "data": data_name, "method": method, "variant": name, "lineage": lineage,
                        **{m: float(s[m]) for m in ("SEG", "TRA", "DET", "OP_CTB")},
                        "divisions": int(s["num_divisions"]), "gt_divisions": int(s["gt_divisions"]),
                        "tracks": int(s["num_tracks"]), "gt_tracks": int(s["gt_tracks"]), "valid": bool(s["valid"]),
                        "AOGM": float(s.get("AOGM") or 0.0),
                        **{k2: int(s.get(k2) or 0) for k2 in ("AOGM_NS", "AOGM_FN", "AOGM_FP", "AOGM_ED", "AOGM_EA",
                                                              "AOGM_EC")},
                        "seconds": time.perf_counter() - t0,
                    }  # fmt: skip
                    rows.append(row)
                    print(
                        f"# {data_name} {method} [{name}]: SEG {row['SEG']:.4f} TRA {row['TRA']:.4f} "
                        f"DET {row['DET']:.4f} OP_CTB {row['OP_CTB']:.4f} divisions {row['divisions']}",
                        flush=True,
                    )
    lines = [
        "",
        "| data | method | variant | SEG | TRA | DET | OP_CTB | divisions (GT) | tracks (GT) | AOGM | "
        "NS / FN / FP vertices | ED / EA / EC edges |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        valid = "" if r["valid"] else " (INVALID)"
        lines.append(
            f"| {r['data']} | {r['method']} | {r['variant']}{valid} | {r['SEG']:.4f} | {r['TRA']:.4f} | "
            f"{r['DET']:.4f} | {r['OP_CTB']:.4f} | {r['divisions']} ({r['gt_divisions']}) | "
            f"{r['tracks']} ({r['gt_tracks']}) | {r['AOGM']:g} | {r['AOGM_NS']} / {r['AOGM_FN']} / {r['AOGM_FP']} | "
            f"{r['AOGM_ED']} / {r['AOGM_EA']} / {r['AOGM_EC']} |"
        )
    lines += [
        "",
        "AOGM (py-ctcmetrics): the weighted count of graph edits that turn the result into the ground truth, "
        "NS x 5 (splits of a region covering several cells) + FN x 10 + FP x 1 + ED x 1 + EA x 1.5 + EC x 1; "
        "TRA = 1 - AOGM / AOGM_0.",
        "",
        f"Benchmark time {time.perf_counter() - start:.0f} s.",
    ]
    report = "\n".join(head + lines) + "\n"
    print("\n".join(lines))
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=1, default=str))
    if args.out:
        atomic_write_text(args.out, report)
    return report


if __name__ == "__main__":
    main()
