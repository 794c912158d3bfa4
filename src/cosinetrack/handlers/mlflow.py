"""MLflow experiment tracking for bundle runs: one MLflow run per training, with config, curves, figures.

* :func:`default_tracking_uri`: the project's default store, a SQLite database under ``mlruns/`` (MLflow 3
  refuses plain file stores); :func:`default_artifact_location`: artifacts beside the SQLite database of
  whichever store is used (``mlruns/artifacts`` for the default one), so they follow ``--tracking_uri``.
* :func:`export_bundle_config`: writes the merged, overridden bundle config of the running
  ``monai.bundle`` workflow to a JSON file (logged as an artifact) and :func:`flatten_params` turns it
  into MLflow params.
* :class:`MLflowRunHandler`: MONAI's ``MLFlowHandler`` with params logged in MLflow-sized batches.
* :class:`MLflowFigureHandler`: after each validation, logs a PNG of input | ground truth | prediction.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

import filelock
import mlflow
from ignite.engine import Engine, Events
from monai.handlers import MLFlowHandler
from monai.utils import path_to_sqlite_uri, path_to_uri

from cosinetrack.distributed import broadcast_object, get_rank, is_distributed, is_rank0
from cosinetrack.io.atomic import atomic_write_text
from cosinetrack.options import as_flag

__all__ = [
    "default_tracking_uri",
    "sqlite_store_lock",
    "default_artifact_location",
    "export_bundle_config",
    "flatten_params",
    "make_run_name",
    "MLflowRunHandler",
    "MLflowFigureHandler",
]

_MAX_PARAMS_PER_BATCH = 100
_MAX_PARAM_LENGTH = 500
_PARAM_NAME_BAD = re.compile(r"[^A-Za-z0-9_\-./: ]")


def default_tracking_uri(mlruns_dir: str) -> str:
    """``sqlite:///<mlruns_dir>/mlflow.db`` (the folder is created)."""
    os.makedirs(mlruns_dir, exist_ok=True)
    return path_to_sqlite_uri(os.path.join(os.path.abspath(mlruns_dir), "mlflow.db"))


def default_artifact_location(tracking_uri: str | None) -> str | None:
    """Where the artifacts of a new experiment go: they follow the tracking store, never the repository.

    * a SQLite file store ``sqlite:///<dir>/<name>.db``: ``file://<dir>/artifacts``, beside the database
      (the project's default store ``mlruns/mlflow.db`` thus keeps ``mlruns/artifacts``, and
      ``--tracking_uri sqlite:///elsewhere/runs.db`` writes to ``elsewhere/artifacts``);
    * anything else (an ``http(s)://`` tracking server, another database, an in-memory SQLite store):
      ``None``, MLflow's or the server's default artifact root; give ``artifact_location`` to choose.

    ``MLFLOW_TRACKING_URI``, when set, is the store MONAI's ``MLFlowHandler`` logs to, so it decides.
    An experiment that exists already keeps the artifact location it was created with.
    """
    db_path = _sqlite_path(tracking_uri)
    if db_path is None:
        return None
    return path_to_uri(os.path.join(os.path.dirname(db_path), "artifacts"))


def _sqlite_path(tracking_uri: str | None) -> str | None:
    """The database file of a ``sqlite:///<path>`` store (``MLFLOW_TRACKING_URI`` first), else ``None``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or tracking_uri
    if not uri or not uri.startswith("sqlite:///"):
        return None
    db_path = uri[len("sqlite:///") :].split("?", 1)[0]
    if db_path in ("", ":memory:") or db_path.startswith("file:"):
        return None
    return os.path.abspath(db_path)


def sqlite_store_lock(tracking_uri: str | None) -> contextlib.AbstractContextManager:
    """A lock on ``<db>.lock`` beside a SQLite tracking store, so only one process creates its tables.

    Any other store (a server, another database) needs none: a null context.
    """
    db_path = _sqlite_path(tracking_uri)
    if db_path is None:
        return contextlib.nullcontext()
    os.makedirs(os.path.dirname(db_path), exist_ok=True)
    return filelock.FileLock(db_path + ".lock", timeout=600)


def make_run_name(*parts: Any) -> str:
    """``task-variant-dataset-YYYYmmdd-HHMMSS-xxxx``: readable in the MLflow UI and unique per start.

    The handlers of one process that share this name write into one run, so the name must differ between
    processes: ``xxxx`` (4 random hex digits) tells apart trainings started in the same second (two folds
    launched together logged into one run before it was there).
    """
    words = [str(p) for p in parts if p not in (None, "")]
    return "-".join(words + [time.strftime("%Y%m%d-%H%M%S"), secrets.token_hex(2)])


def _running_bundle_config() -> dict | None:
    """The merged raw config of the ``monai.bundle`` ConfigParser that is evaluating this call, if any."""
    from monai.bundle import ConfigParser

    frame = inspect.currentframe()
    try:
        while frame is not None:
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, ConfigParser):
                return candidate.get()
            frame = frame.f_back
    finally:
        del frame
    return None


def export_bundle_config(path: str, config: Mapping[str, Any] | None = None, resume: bool = False) -> str:
    """Write the bundle config (merged files plus command-line overrides, expressions unevaluated) to ``path``.

    Without ``config``, the config of the ``monai.bundle`` workflow that evaluates this expression is
    found on the call stack. Returns ``path`` (so a config item can reference it as an artifact). An
    existing ``path`` means the output folder belongs to another run: that is an error, so a run never
    overwrites another run's checkpoints, unless ``resume`` (the run continues; this start's config is
    written beside it as ``config_resumed-<time>.json``).

    Under ``torchrun`` rank 0 writes (or fails) and tells the other ranks, which write nothing and
    return ``path`` once it exists (or raise rank 0's error).
    """
    if not is_distributed():
        return _export_bundle_config(path, config, resume)
    error = None
    if get_rank() == 0:
        try:
            _export_bundle_config(path, config, resume)
        except Exception as exc:  # told to the other ranks first, so none waits forever
            error = exc
    message = broadcast_object(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    if message is not None:
        raise RuntimeError(f"rank 0 could not write {path}: {message}")
    return path


def _export_bundle_config(path: str, config: Mapping[str, Any] | None, resume: bool) -> str:
    config = dict(config) if config is not None else _running_bundle_config()
    if config is None:
        raise RuntimeError("export_bundle_config found no running monai.bundle ConfigParser; pass 'config'")
    if os.path.exists(path):
        if as_flag(resume, "resume"):  # the run continues: its config stays; this start's is kept beside it
            resumed = f"{os.path.splitext(path)[0]}_resumed-{time.strftime('%Y%m%d-%H%M%S')}.json"
            atomic_write_text(resumed, json.dumps(config, indent=2, default=str, sort_keys=True))
            return path
        raise FileExistsError(
            f"{os.path.dirname(os.path.abspath(path))}: this output folder already holds a run; "
            "choose a new --output_dir, or continue that run with --resume true (nothing was overwritten)"
        )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_text(path, json.dumps(config, indent=2, default=str, sort_keys=True))
    return path


def flatten_params(config: Mapping[str, Any] | str, prefix: str = "") -> dict[str, str]:
    """Flatten a (nested) config, or a JSON file of one, into ``{"a.b.c": "value"}`` MLflow params.

    Characters MLflow refuses in a param name (anything but letters, digits, ``_ - . / :`` and spaces,
    e.g. the ``+`` of ``Fluo-N2DH-SIM+``) become ``_``, so no config or metadata key can fail a run.
    """
    if isinstance(config, str):
        with open(config) as f:
            config = json.load(f)
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{_PARAM_NAME_BAD.sub('_', str(key))}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_params(value, prefix=f"{name}."))
        else:
            text = json.dumps(value, default=str) if not isinstance(value, str) else value
            out[name] = text if len(text) <= _MAX_PARAM_LENGTH else text[: _MAX_PARAM_LENGTH - 3] + "..."
    return out


class MLflowRunHandler(MLFlowHandler):
    """MONAI's ``MLFlowHandler``, logging any number of params (MLflow takes 100 per batch) and tagging the run.

    Takes every ``MLFlowHandler`` argument, plus ``tags``: run tags (task, variant, data set, ...).
    Handlers with the same ``run_name`` (trainer and evaluator) write into one run. Under ``torchrun``
    only rank 0 logs: on the other ranks the handler is inert (no client, attaches nothing).
    """

    def __init__(self, *args: Any, tags: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self.rank_zero = is_rank0()
        if not self.rank_zero:  # other ranks of a torchrun job: inert, never touch the store (rank 0 logs)
            self.cur_run, self.client, self.tags = None, None, {}
            return
        # Two runs started together on a new SQLite store would both create its tables (MLflow's
        # migration fails in one of them): the first client to open the file does it under a lock.
        with sqlite_store_lock(kwargs.get("tracking_uri")):
            super().__init__(*args, **kwargs)
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}

    def attach(self, engine: Engine) -> None:
        if not self.rank_zero:
            return
        super().attach(engine)
        if not engine.has_event_handler(self.failed, Events.EXCEPTION_RAISED):
            engine.add_event_handler(Events.EXCEPTION_RAISED, self.failed)

    def failed(self, engine: Engine, error: BaseException) -> None:
        """Mark the run FAILED (KILLED for Ctrl-C) so a later run never appends to it by name; re-raise.

        A run resumed with ``--resume true`` continues it by id (:meth:`resume_run`) and sets it RUNNING.
        """
        if self.cur_run is not None:
            killed = isinstance(error, KeyboardInterrupt)
            status = mlflow.entities.RunStatus.KILLED if killed else mlflow.entities.RunStatus.FAILED
            self.client.set_terminated(self.cur_run.info.run_id, mlflow.entities.RunStatus.to_string(status))
            self.cur_run = None
        raise error

    def resume_run(self, run_id: str | None, run_name: str | None = None) -> None:
        """Continue the MLflow run ``run_id`` (a resumed training): log into it and set it RUNNING again."""
        if not run_id or not self.rank_zero:
            return
        self.cur_run = self.client.get_run(run_id)
        if run_name:
            self.run_name = run_name
        self.client.update_run(run_id, status="RUNNING")

    def start(self, engine: Engine) -> None:
        super().start(engine)
        if self.tags and self.cur_run is not None:
            tags = [mlflow.entities.RunTag(k, v) for k, v in self.tags.items()]
            self.client.log_batch(run_id=self.cur_run.info.run_id, metrics=[], params=[], tags=tags)

    def _log_params(self, params: dict[str, Any]) -> None:
        if not self.cur_run:
            raise ValueError("Current Run is not Active to log params")
        existing = self.client.get_run(self.cur_run.info.run_id).data.params
        items = [
            mlflow.entities.Param(str(k), str(v)[:_MAX_PARAM_LENGTH])
            for k, v in params.items()
            if str(k) not in existing
        ]
        for i in range(0, len(items), _MAX_PARAMS_PER_BATCH):
            self.client.log_batch(
                run_id=self.cur_run.info.run_id, metrics=[], params=items[i : i + _MAX_PARAMS_PER_BATCH], tags=[]
            )

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        """Log one file into the current run (no-op before the run started)."""
        if self.cur_run is not None and os.path.isfile(path):
            self.client.log_artifact(self.cur_run.info.run_id, path, artifact_path)


class MLflowFigureHandler:
    """Log a figure of a few evaluated cases after each evaluation (e.g. input | ground truth | prediction).

    Attach to the evaluator. It keeps what ``sample_fn`` picks of the first ``num_cases`` iterations
    (only the few frames drawn), draws them with ``draw_fn`` and logs the PNG into the run of
    ``run_handler``.

    Args:
        run_handler: the :class:`MLflowRunHandler` whose run receives the figure.
        draw_fn: ``draw_fn(samples) -> matplotlib Figure`` (or a list of ``(name suffix, Figure)``); default
            :func:`cosinetrack.viz.segmentation_panel`.
        num_cases: how many evaluated cases (iterations) to draw.
        num_frames: how many frames (evenly spread over time) per case.
        step_fn: maps the evaluator's epoch (the trainer epoch it validates) to the step in the file
            name, e.g. ``lambda epoch: epoch * epoch_length`` for the trainer iteration.
        name: artifact folder and file prefix.
        sample_fn: ``sample_fn(output, num_frames, title) -> dict`` picks the frames to draw from
            ``engine.state.output``; default :func:`cosinetrack.viz.segmentation_sample` (for
            :func:`~cosinetrack.viz.embedding_panel` use :func:`~cosinetrack.viz.embedding_sample`).
    """

    def __init__(
        self,
        run_handler: MLflowRunHandler,
        draw_fn: Callable[[list[dict[str, Any]]], Any] | None = None,
        num_cases: int = 2,
        num_frames: int = 4,
        step_fn: Callable[[int], int] | None = None,
        name: str = "validation",
        sample_fn: Callable[..., dict[str, Any]] | None = None,
    ) -> None:
        from cosinetrack.viz.panels import segmentation_panel, segmentation_sample  # matplotlib only if drawn

        self.run_handler = run_handler
        self.draw_fn = draw_fn or segmentation_panel
        self.sample_fn = sample_fn or segmentation_sample
        self.num_cases = num_cases
        self.num_frames = num_frames
        self.step_fn = step_fn
        self.name = name
        self.samples: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        # EPOCH_COMPLETED, not COMPLETED: a run handler with close_on_complete ends its run on COMPLETED
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._log)

    def _reset(self, engine: Engine) -> None:
        self.samples = []

    def _collect(self, engine: Engine) -> None:
        if len(self.samples) >= self.num_cases:
            return
        title = f"case {engine.state.iteration}, "
        self.samples.append(self.sample_fn(engine.state.output, self.num_frames, title))

    def _log(self, engine: Engine) -> None:
        if not self.samples or self.run_handler.cur_run is None:
            return
        import matplotlib.pyplot as plt

        step = self.step_fn(engine.state.epoch) if self.step_fn is not None else engine.state.epoch
        drawn = self.draw_fn(self.samples)
        figures = drawn if isinstance(drawn, (list, tuple)) else [("", drawn)]
        with tempfile.TemporaryDirectory() as tmp:
            for suffix, fig in figures:
                name = f"{self.name}_{suffix}" if suffix else self.name
                path = os.path.join(tmp, f"{name}_{int(step):07d}.png")
                fig.savefig(path, dpi=80)
                self.run_handler.log_artifact(path, f"figures/{self.name}")
                plt.close(fig)
