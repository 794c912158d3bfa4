"""Clustering settings of the leaf models chosen by nested cross-validation, never on the plants scored.

Choosing a clustering setting on a model's *training* plants is biased (the network separates the leaves
of plants it trained on more cleanly, so a rule that splits just enough there over-splits new plants;
``docs/results_leaf.md``, session 10), and choosing it on the held-out plants that are then reported is
tuning on the test set. Nested CV avoids both: with the fold models of a k-fold CV, every plant is held
out by exactly one model, so each candidate setting gets one held-out score per plant; the setting of
fold ``k`` is the one with the best score on the held-out plants of the *other* folds (each scored by its
own model), and fold ``k``'s plants are then scored with it. Pooled over the folds this is an honest
estimate of "the model plus a clustering chosen this way".

The network runs once per plant (the bundle's validation path: its ``val_dataset``, ``prepare_val_batch``
and ``val_inferer`` on the 256² canvas); every candidate then clusters the same embeddings, and the labels
are scored at the photo's size with :func:`cosinetrack.metrics.instances.instance_scores` (the bundle's
metric). The criterion is fixed before any score is seen: the sum of the relative shortfalls to issue 8's
goal, ``(0.80 - SBD) / 0.80 + (|DiC| - 2) / 2`` (smaller is better; ``--criterion sbd`` picks by SBD).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_leaf_nested_cv.py --dataset ../shared/data/cvppp/A1 \\
        --models runs/leaf/cv/fold0/model_final.pt runs/leaf/cv/fold1/model_final.pt \\
        runs/leaf/cv/fold2/model_final.pt \\
        [--candidates '[{"min_samples": 25}, {"min_samples": 18}]'] [--json out.json] [--plants 8]

``--models`` are the final models of folds 1..k of the bundle's split (``--num_folds`` = their number,
seed 0, the same split as ``cross_validation``); each candidate is a dict of ``clustering`` options laid over
the configs' ``clustering`` section. Prints one table of every candidate per fold (for reading, not
choosing) and the nested result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from monai.bundle import ConfigParser

from cosinetrack.clustering.embedding_clustering import cluster_embeddings
from cosinetrack.clustering.options import check_cluster_kwargs
from cosinetrack.metrics.instances import instance_scores
from cosinetrack.transforms.spatial import restore_label_size
from cosinetrack.workflows.checkpoint import load_weights

CONFIGS = ["bundles/leaf/train.json", "configs/leaf_cpu.json", "configs/leaf_cpu_crop.json"]

#: The candidates of session 11: the recipe's m_pts 25, m_pts 18 and 35, a larger coordinate scale, and a
#: smaller HDBSCAN min_samples at the recipe's min_cluster_size 25 or at 40 (a less smoothed density splits
#: touching leaves sooner, min_cluster_size keeps the smallest leaf size), fixed before any was scored; m_pts
#: 15 was added after the 0.5.0 fold models chose 18, the grid's smallest m_pts (docs/results_leaf.md).
DEFAULT_CANDIDATES = [
    {"min_samples": 25},
    {"min_samples": 18},
    {"min_samples": 35},
    {"min_samples": 25, "coordinate_scale": 0.003},
    {"min_samples": 8, "min_cluster_size": 25, "min_size": 12.5},
    {"min_samples": 8, "min_cluster_size": 40, "min_size": 12.5},
    {"min_samples": 15},
]

GOAL_SBD, GOAL_DIC = 0.80, 2.0


def shortfall(sbd: float, abs_dic: float) -> float:
    """Issue 8's criterion: the relative shortfalls to SBD 0.80 and |DiC| 2.0, summed (smaller is better)."""
    return (GOAL_SBD - sbd) / GOAL_SBD + (abs_dic - GOAL_DIC) / GOAL_DIC


def fold_parser(dataset: str, num_folds: int, fold: int, configs: list[str]) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(configs)
    parser.update({"dataset_dir": dataset, "num_folds": num_folds, "fold": fold})
    return parser


@torch.inference_mode()
def fold_embeddings(parser: ConfigParser, model: str, max_plants: int | None):
    """``[(name, embeddings (T, D, h, w), label (H, W))]`` of the fold's held-out plants, from ``model``."""
    network = parser.get_parsed_content("network")
    load_weights(network, model, map_location="cpu")
    network.eval()
    dataset = parser.get_parsed_content("val_dataset")
    prepare = parser.get_parsed_content("prepare_val_batch")
    inferer = parser.get_parsed_content("val_inferer")
    names = [c["name"] for c in parser.get_parsed_content("val_cases")]
    out = []
    for i in range(len(dataset) if max_plants is None else min(max_plants, len(dataset))):
        item = dataset[i]
        batch = {key: torch.as_tensor(np.asarray(item[key]))[None] for key in ("image", "label")}
        image, label = prepare(batch)
        emb = inferer(image, network)[0]  # (T, D, h, w) on the canvas
        out.append((names[i], emb.float(), label[0, 0].numpy()))
    return out


def score_candidate(plants, base: dict, candidate: dict) -> list[dict]:
    kwargs = check_cluster_kwargs({**base, **candidate})
    rows = []
    for name, emb, label in plants:
        labels = restore_label_size(torch.from_numpy(cluster_embeddings(emb, **kwargs)), label.shape[-2:]).numpy()
        rows.append({"plant": name, **instance_scores(label, labels[0] if labels.ndim == 3 else labels)})
    return rows


def summarize(rows: list[dict]) -> dict:
    keys = ["sbd", "abs_dic", "dic", "fg_dice", "n_pred", "n_gt"]
    return {k: float(np.mean([r[k] for r in rows])) for k in keys} | {"n": len(rows)}


def nested_choice(scores: dict[int, list[list[dict]]], criterion: str = "shortfall") -> tuple[list[int], list[dict]]:
    """Per fold, the candidate best on the other folds' plants, and the fold's own rows scored with it.

    Args:
        scores: ``{fold: [per-plant rows of candidate 0, of candidate 1, ...]}``, each row holding ``sbd`` and
            ``abs_dic`` of one held-out plant of that fold.
        criterion: ``"shortfall"`` (:func:`shortfall` of the pooled means) or ``"sbd"`` (the pooled mean SBD).

    Returns:
        ``(chosen, rows)``: the chosen candidate index of every fold, and the rows of every fold's plants
        under its fold's choice (ties go to the earlier candidate).
    """
    if criterion not in ("shortfall", "sbd"):
        raise ValueError(f"criterion: expected 'shortfall' or 'sbd', got {criterion!r}")
    folds = sorted(scores)
    if len(folds) < 2:
        raise ValueError("nested CV needs the scores of at least two folds")

    def cost(rows: list[dict]) -> float:
        s = summarize(rows)
        return shortfall(s["sbd"], s["abs_dic"]) if criterion == "shortfall" else -s["sbd"]

    chosen, rows = [], []
    for f in folds:
        others = [o for o in folds if o != f]
        best = min(range(len(scores[f])), key=lambda ci: cost([r for o in others for r in scores[o][ci]]))
        chosen.append(best)
        rows.extend(scores[f][best])
    return chosen, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--models", nargs="+", required=True, help="final model of each fold, in fold order")
    ap.add_argument("--configs", nargs="+", default=CONFIGS)
    ap.add_argument("--candidates", default=None, help="JSON list of clustering dicts (default: DEFAULT_CANDIDATES)")
    ap.add_argument("--criterion", choices=["shortfall", "sbd"], default="shortfall")
    ap.add_argument("--plants", type=int, default=None, help="at most this many held-out plants per fold (smoke runs)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    candidates = DEFAULT_CANDIDATES if args.candidates is None else json.loads(args.candidates)
    for m in args.models:
        if not os.path.isfile(m):
            sys.exit(f"{m}: no such model file")
    k = len(args.models)
    if k < 2:
        sys.exit("--models: nested CV needs the models of at least two folds")
    scores: dict[int, list[list[dict]]] = {}  # fold -> candidate -> per-plant rows
    t0 = time.process_time()
    for fold, model in enumerate(args.models):
        parser = fold_parser(args.dataset, k, fold, args.configs)
        base = dict(parser.get_parsed_content("clustering"))
        plants = fold_embeddings(parser, model, args.plants)
        scores[fold] = [score_candidate(plants, base, c) for c in candidates]
        print(f"fold {fold + 1}: {len(plants)} plants scored with {len(candidates)} candidates", flush=True)
    cpu_min = (time.process_time() - t0) / 60

    print("\n| candidate | " + " | ".join(f"fold {f + 1} SBD / \\|DiC\\|" for f in range(k)) + " | all |")
    print("|---|" + "---|" * (k + 1))
    for ci, cand in enumerate(candidates):
        cells = [summarize(scores[f][ci]) for f in range(k)]
        pooled = summarize([r for f in range(k) for r in scores[f][ci]])
        print(f"| `{json.dumps(cand)}` | " + " | ".join(f"{c['sbd']:.3f} / {c['abs_dic']:.2f}" for c in cells)
              + f" | {pooled['sbd']:.3f} / {pooled['abs_dic']:.2f} |")
    chosen, nested_rows = nested_choice(scores, args.criterion)
    for f, best in enumerate(chosen):
        s = summarize(scores[f][best])
        print(f"fold {f + 1}: chosen on the other folds: {json.dumps(candidates[best])} -> "
              f"SBD {s['sbd']:.3f}, |DiC| {s['abs_dic']:.2f}, leaves {s['n_pred']:.1f} / {s['n_gt']:.1f}")
    pooled = summarize(nested_rows)
    sbd_std = float(np.std([r["sbd"] for r in nested_rows]))
    dic_std = float(np.std([r["abs_dic"] for r in nested_rows]))
    print(f"nested CV, pooled over {pooled['n']} plants: SBD {pooled['sbd']:.3f} ± {sbd_std:.3f}, "
          f"|DiC| {pooled['abs_dic']:.2f} ± {dic_std:.2f}, FG Dice {pooled['fg_dice']:.3f}, "
          f"leaves {pooled['n_pred']:.1f} / {pooled['n_gt']:.1f}; {cpu_min:.1f} CPU-min")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"candidates": candidates, "criterion": args.criterion, "chosen": chosen,
                       "scores": {str(f): scores[f] for f in scores}, "nested": pooled, "cpu_min": cpu_min}, fh,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
