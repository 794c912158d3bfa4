"""Learning curves of CPU-recipe trainings: held-out score against training minutes, from MLflow.

Reads the validation metrics that the bundles log to MLflow (the held-out fold or frames of each run) and
plots them against the minutes since the run started (1 training thread; wall time, which on a shared
machine overstates the CPU time: the table gives both where the runs' CPU time is known). With
``--cpu_minutes`` (the measured process CPU time of each whole run, e.g. from ``/proc/<pid>/stat``) the x
axis is CPU minutes instead: each point at its iteration's share of the run's CPU time (one thread: the cost
per iteration is constant, validation included).

    python benchmarks/plot_learning_curves.py --tracking_uri sqlite:///mlruns/mlflow.db \
        --runs lv_mri-recurrent-acdc-fold0 leaf-nonrecurrent-A1-fold0 \
        --metrics val_iou_myo,val_iou_cav val_sbd,val_abs_dic --out docs/learning_curves_cpu.png
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402


def run_curves(client: mlflow.MlflowClient, run_prefix: str, metrics: list[str]) -> dict[str, list[tuple]]:
    """``{metric: [(minutes since start, iteration, value), ...]}`` of the newest run named ``run_prefix*``
    (or of the run ``<run id>`` when ``run_prefix`` is ``id:<run id>``, for runs that share a name)."""
    runs = [
        r
        for e in client.search_experiments()
        for r in client.search_runs([e.experiment_id], order_by=["attributes.start_time DESC"])
        if (r.info.run_name or "").startswith(run_prefix)
    ]
    if run_prefix.startswith("id:"):
        run = client.get_run(run_prefix[3:])
    elif not runs:
        raise SystemExit(f"no MLflow run named {run_prefix}*")
    else:
        run = max(runs, key=lambda r: r.info.start_time)
    start = run.info.start_time
    return {
        m: [((h.timestamp - start) / 60000.0, h.step, h.value) for h in client.get_metric_history(run.info.run_id, m)]
        for m in metrics
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking_uri", default="sqlite:///mlruns/mlflow.db")
    parser.add_argument(
        "--runs", nargs="+", required=True,
        help="run name prefixes (or id:<run id>), one panel each; 'URI::prefix' reads it from another tracking URI",
    )  # fmt: skip
    parser.add_argument("--metrics", nargs="+", required=True, help="comma-separated metrics per run")
    parser.add_argument("--titles", nargs="*", default=None)
    parser.add_argument(
        "--cpu_minutes", nargs="*", type=float, default=None,
        help="CPU minutes of each whole run (one per run): plot against CPU minutes, not wall minutes",
    )  # fmt: skip
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if len(args.metrics) != len(args.runs):
        raise SystemExit("--metrics: one comma-separated list per run")
    if args.cpu_minutes is not None and len(args.cpu_minutes) != len(args.runs):
        raise SystemExit("--cpu_minutes: one value per run")
    fig, axes = plt.subplots(1, len(args.runs), figsize=(5.5 * len(args.runs), 4), squeeze=False)
    for i, (spec, names) in enumerate(zip(args.runs, args.metrics)):
        uri, _, prefix = spec.rpartition("::")
        curves = run_curves(mlflow.MlflowClient(uri or args.tracking_uri), prefix, names.split(","))
        ax = axes[0, i]
        last_step = max((p[1] for points in curves.values() for p in points), default=1) or 1
        for name, points in curves.items():
            if not points:
                continue
            if args.cpu_minutes is not None:
                points = [(args.cpu_minutes[i] * step / last_step, step, v) for _, step, v in points]
            minutes, steps, values = zip(*points)
            ax.plot(minutes, values, "o-", label=name)
            for x, s, v in zip(minutes, steps, values):
                ax.annotate(str(s), (x, v), textcoords="offset points", xytext=(0, 5), fontsize=7, ha="center")
            print(f"| {prefix} | {name} | " + " | ".join(f"{s}: {v:.3f} @ {x:.0f} min" for x, s, v in points) + " |")
        unit = "CPU minutes, all threads" if args.cpu_minutes is not None else "wall minutes"
        ax.set_xlabel(f"training {unit} (labels: iteration)")
        ax.set_ylabel("held-out score")
        ax.set_title(args.titles[i] if args.titles else prefix)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
