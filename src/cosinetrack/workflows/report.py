"""Summaries printed at the end of a bundle run."""

from __future__ import annotations

import logging

from ignite.engine import Engine

from cosinetrack.distributed import is_rank0

__all__ = ["report_training", "report_evaluation", "format_table"]

logger = logging.getLogger("cosinetrack")


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A plain markdown table of ``rows`` (dicts) over ``columns``; floats with 4 decimals."""

    def fmt(v) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def report_training(
    trainer: Engine, evaluator: Engine, key_metric_name: str, case_names: list[str] | None = None
) -> dict:
    """Print the last validation metrics and the best key metric of a finished training; return them.

    The returned dict also holds ``per_case``: the last validation's per-case metrics (named by
    ``case_names``), which :func:`cosinetrack.workflows.cross_validate` pools over folds. On the other
    ranks of a ``torchrun`` job it prints nothing and returns ``{}``.
    """
    if not is_rank0():  # under torchrun only rank 0 validates: it alone reports
        return {}
    metrics = {k: v for k, v in evaluator.state.metrics.items() if isinstance(v, (int, float))}
    best = getattr(evaluator.state, "best_metric", None)
    best_epoch = getattr(evaluator.state, "best_metric_epoch", None)
    names = list(case_names or [])
    per_case = [
        {"case": names[i] if i < len(names) else i, **m}
        for i, m in enumerate(getattr(evaluator.state, "case_metrics", []))
    ]
    result = {
        "iterations": trainer.state.iteration,
        f"best_{key_metric_name}": best,
        "best_at_iteration": None if best_epoch is None else best_epoch * (trainer.state.epoch_length or 1),
        **metrics,
    }
    text = format_table([{"metric": k, "value": v} for k, v in result.items()], ["metric", "value"])
    print(f"\nValidation after {trainer.state.iteration} iterations:\n{text}\n", flush=True)
    result["per_case"] = per_case
    return result


def report_evaluation(evaluator: Engine, case_names: list[str] | None = None) -> list[dict]:
    """Print a per-case table and the mean ± std line of an evaluation; return the per-case rows.

    The summary line reads ``<key metric name>_<column>`` and ``<key metric name>_<column>_std`` from
    ``evaluator.state.metrics`` (as :class:`~cosinetrack.metrics.CaseIoU` and
    :class:`~cosinetrack.metrics.InstanceSegmentationMetrics` write them).
    """
    per_case = list(getattr(evaluator.state, "case_metrics", []))
    rows = [{"case": (case_names[i] if case_names and i < len(case_names) else i), **m} for i, m in enumerate(per_case)]
    columns = ["case"] + (list(per_case[0]) if per_case else [])
    metrics = evaluator.state.metrics
    prefix = getattr(evaluator.state, "key_metric_name", None)
    summary = {"case": "mean ± std"}
    for c in columns[1:]:
        if prefix is not None:
            mean, std = metrics.get(f"{prefix}_{c}"), metrics.get(f"{prefix}_{c}_std")
        else:
            mean = next((v for k, v in metrics.items() if k.endswith(f"_{c}")), None)
            std = next((v for k, v in metrics.items() if k.endswith(f"_{c}_std")), None)
        summary[c] = f"{mean:.4f} ± {std:.4f}" if mean is not None and std is not None else ""
    print("\n" + format_table(rows + [summary], columns) + "\n", flush=True)
    return rows
