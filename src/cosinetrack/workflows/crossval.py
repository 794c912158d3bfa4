"""k-fold cross-validation of a bundle, for one or several variants (e.g. recurrent vs non-recurrent).

Each (variant, fold) is a complete ``training`` run of the same bundle config with overrides
``num_folds``, ``fold`` and the variant's keys, so it logs its own MLflow run. Scores are the per-case
metrics of the final model on its held-out fold (no checkpoint is picked on the held-out fold), pooled
over folds: every case is scored exactly once, by a model that never saw it.

Everything a cross-validation writes goes under one folder, the bundle's ``output_dir``: a
``<variant>-fold<k>/`` training folder per run and the table ``cross_validation.md``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from typing import Any

import mlflow
import numpy as np
from monai.bundle import ConfigWorkflow

from cosinetrack.handlers.mlflow import _running_bundle_config, make_run_name
from cosinetrack.io.atomic import atomic_write_text
from cosinetrack.workflows.report import format_table

__all__ = ["run_training", "cross_validate", "summarize_folds", "fold_dir_name", "TABLE_NAME"]

_CV_KEYS = ("cross_validation", "cv_folds", "cv_variants", "cv_overrides")
TABLE_NAME = "cross_validation.md"


def fold_dir_name(variant: str, fold: int) -> str:
    """``<variant>-fold<k>``, the training folder of one run (characters other than ``[A-Za-z0-9._-]`` -> ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(variant)).strip(".") + f"-fold{fold}"


def run_training(config: Mapping[str, Any], **overrides: Any) -> dict:
    """Run the ``training`` workflow of a (merged) bundle config with ``overrides``; return its report."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "config.json")
        with open(path, "w") as f:
            json.dump({k: v for k, v in config.items() if k not in _CV_KEYS}, f)
        workflow = ConfigWorkflow(config_file=path, run_id="training", workflow_type="train", **overrides)
        workflow.initialize()
        results = workflow.run()
        workflow.finalize()
    report = results[-1] if isinstance(results, list) and results else results
    if not isinstance(report, dict):
        raise RuntimeError("the bundle's 'training' run must end with cosinetrack.workflows.report_training(...)")
    return report


def summarize_folds(per_case: list[Mapping[str, float]]) -> dict[str, str]:
    """``{"metric": "mean ± std (n)"}`` over pooled per-case values (NaN values left out)."""
    keys = [k for k in (per_case[0] if per_case else {}) if k != "case"]
    out = {}
    for k in keys:
        values = np.array([c[k] for c in per_case], dtype=float)
        values = values[np.isfinite(values)]
        out[k] = f"{values.mean():.4f} ± {values.std():.4f} (n={values.size})" if values.size else "n/a"
    return out


def cross_validate(
    num_folds: int = 3,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
    config: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    tracking_uri: str | None = None,
    experiment_name: str = "cosinetrack",
    task: str = "",
    out_file: str | None = None,
    output_dir: str | None = None,
) -> dict[str, dict[str, str]]:
    """Train and score every variant on every fold; print and log the comparison table.

    Args:
        num_folds: k (the paper: 3). Folds split cases (patients), seeded by the config's ``seed``.
        variants: ``{name: {config key: value}}``; default: one variant, the config as it is.
        config: the merged bundle config; default: the running ``monai.bundle`` workflow's config.
        overrides: extra overrides for every run (e.g. ``{"max_iterations": 2000}``).
        tracking_uri, experiment_name, task: where the summary run is logged (``None``: no summary run).
        out_file: also write the table (markdown) here (default: ``<output_dir>/cross_validation.md``).
        output_dir: the cross-validation's folder: run ``(variant, fold)`` trains in
            ``<output_dir>/<variant>-fold<k>/`` (:func:`fold_dir_name`) and the table is written beside.
            It must not exist or be empty (a cross-validation never writes over another). ``None``: each
            run uses the config's own ``output_dir`` (unless ``overrides`` sets one) and no table file is
            written unless ``out_file``.

    Returns:
        ``{variant: {metric: "mean ± std (n)"}}``.

    Raises:
        FileExistsError: ``output_dir`` holds files already (nothing was trained).
    """
    config = dict(config) if config is not None else _running_bundle_config()
    if config is None:
        raise RuntimeError("cross_validate needs a config (or must run inside a monai.bundle workflow)")
    variants = dict(variants or {"default": {}})
    if output_dir is not None:
        output_dir = os.path.abspath(os.fspath(output_dir))
        if os.path.isdir(output_dir) and os.listdir(output_dir):
            raise FileExistsError(
                f"{output_dir}: this output folder already holds files (another cross-validation?); choose a new "
                "--output_dir (nothing was overwritten)"
            )
        if os.path.exists(output_dir) and not os.path.isdir(output_dir):
            raise FileExistsError(f"{output_dir}: exists and is not a folder; choose a new --output_dir")
        out_file = out_file or os.path.join(output_dir, TABLE_NAME)
    results: dict[str, dict[str, str]] = {}
    folds: dict[str, list[dict]] = {}
    for name, variant in variants.items():
        pooled: list[dict] = []
        for fold in range(num_folds):
            print(f"\n=== variant {name}, fold {fold + 1}/{num_folds} ===", flush=True)
            run_overrides = {**dict(overrides or {}), **dict(variant), "num_folds": num_folds, "fold": fold}
            if output_dir is not None:
                run_overrides["output_dir"] = os.path.join(output_dir, fold_dir_name(name, fold))
            report = run_training(config, **run_overrides)
            pooled += report.get("per_case", [])
        folds[name] = pooled
        results[name] = summarize_folds(pooled)
    metrics = sorted({k for r in results.values() for k in r})
    table = format_table([{"variant": n, **r} for n, r in results.items()], ["variant"] + metrics)
    print(f"\n{num_folds}-fold cross-validation (per-case mean ± std over all held-out cases):\n{table}\n", flush=True)
    if out_file:
        atomic_write_text(out_file, table + "\n")
        print(f"table written to {out_file}", flush=True)
    if tracking_uri:
        client = mlflow.MlflowClient(tracking_uri)
        exp = client.get_experiment_by_name(experiment_name)
        exp_id = exp.experiment_id if exp else client.create_experiment(experiment_name)
        run = client.create_run(exp_id, run_name=make_run_name(task, f"cv{num_folds}", "-".join(variants)))
        for name, pooled in folds.items():
            for k in metrics:
                values = np.array([c.get(k, np.nan) for c in pooled], dtype=float)
                values = values[np.isfinite(values)]
                if values.size:
                    client.log_metric(run.info.run_id, f"{name}_{k}", float(values.mean()))
                    client.log_metric(run.info.run_id, f"{name}_{k}_std", float(values.std()))
        client.log_text(run.info.run_id, table + "\n", "cross_validation.md")
        client.log_dict(run.info.run_id, folds, "per_case.json")
        client.set_terminated(run.info.run_id)
    return results
