"""Checkpoints: model files that say which network they fit, and the training state to resume a run.

* Model files (``model_best.pt``, ``model_last.pt``, ``model_final.pt``) hold ``{"model": state dict,
  "network": settings}``; :func:`network_settings` are the constructor arguments that decide the weights'
  shapes (levels, filters, embedding size, stacks, recurrent). :func:`load_weights` checks them and
  names the file and every mismatch; a truncated or foreign file gets a clear error too. Loading is
  ``weights_only=True``.
* :class:`TrainingCheckpoint` (a trainer handler) saves the trainer, network, optimizer, LR scheduler, RNG
  state and the MLflow run every ``save_interval`` iterations (Ignite :class:`~ignite.handlers.Checkpoint`,
  the two newest kept, written atomically), writes ``model_final.pt`` only when training completes, and
  with ``resume=True`` loads the newest readable state before the trainer runs, so a killed run
  continues at the same iteration, learning rate and MLflow run.
"""

from __future__ import annotations

import glob
import os
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from monai.handlers import LrScheduleHandler

from cosinetrack.clustering.options import check_cluster_kwargs
from cosinetrack.clustering.transforms import clustering_for_canvas
from cosinetrack.distributed import is_rank0
from cosinetrack.errors import CosineTrackConfigError, CosineTrackDataError
from cosinetrack.io.atomic import atomic_file
from cosinetrack.io.paths import require_file
from cosinetrack.networks.ensemble import EmbeddingEnsemble
from cosinetrack.networks.stacked import RecurrentStackedHourglass
from cosinetrack.options import as_flag
from cosinetrack.transforms.normalize import UPPER_REFERENCES
from cosinetrack.workflows.averaging import WeightAveraging

__all__ = [
    "network_settings",
    "NetworkSettings",
    "read_checkpoint",
    "load_weights",
    "stored_network_settings",
    "stored_image_size",
    "stored_inference_size",
    "stored_clustering",
    "stored_normalization",
    "resolve_model",
    "network_for_model",
    "RNGState",
    "find_resume_checkpoint",
    "TrainingCheckpoint",
    "handlers_of_rank",
]


_SETTINGS = ("members", "in_channels", "out_channels", "num_levels", "num_filters", "num_stacks", "recurrent")

RESUME_PREFIX = "resume"
LAST_ITERATE_FILENAME = "model_last_iterate.pt"


def network_settings(network: torch.nn.Module) -> dict[str, Any]:
    """The constructor arguments of ``network`` that decide its weights' shapes (those it has)."""
    return {k: getattr(network, k) for k in _SETTINGS if isinstance(getattr(network, k, None), (int, bool))}


class NetworkSettings:
    """An entry for a checkpoint's ``save_dict``: stores :func:`network_settings` of ``network``."""

    def __init__(self, network: torch.nn.Module) -> None:
        self.network = network

    def state_dict(self) -> dict[str, Any]:
        return network_settings(self.network)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # checked by load_weights, nothing to restore
        pass


def read_checkpoint(path: str, map_location: str | torch.device = "cpu") -> Any:
    """The contents of the model or checkpoint file ``path``, loaded with ``weights_only=True``.

    Raises:
        CosineTrackDataError: naming ``path``, when it cannot be read (truncated, not a torch file, or a
            pickle that would run code).
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, a pickle with code in it, not a torch file at all, ...
        raise CosineTrackDataError(
            path,
            f"cannot read this checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "it may be truncated, or not a model file of this project",
        ) from exc


def load_weights(network: torch.nn.Module, path: str, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """Load a model file (``{"model": ..., "network": ...}``, a training checkpoint, or a bare state dict).

    Raises:
        CosineTrackDataError: naming ``path`` when it is missing or unreadable, when its stored network
            settings differ from ``network``'s (each mismatch listed, with the overrides that fit it), or
            when its weights do not fit ``network`` (the first mismatching tensors listed).
    """
    state = read_checkpoint(require_file(path, "ckpt_path"), map_location)
    if not isinstance(state, dict):
        raise CosineTrackDataError(path, f"expected a dict of weights, found a {type(state).__name__}")
    stored = state.get("network") if isinstance(state.get("network"), dict) else None
    if stored is not None:
        own = network_settings(network)
        members, own_members = stored.get("members", 1), own.get("members", 1)
        if members != own_members:
            raise CosineTrackDataError(
                path,
                f"this model file is {_members_text(members)}, the network to load it into "
                f"{_members_text(own_members)}; build the network with cosinetrack.workflows.network_for_model",
            )
        diff = {k: (v, own[k]) for k, v in stored.items() if k in own and own[k] != v}
        if diff:
            what = ", ".join(f"{k}={a} (this network: {b})" for k, (a, b) in diff.items())
            keys = {"out_channels": "embedding_dim", "in_channels": "in_channels"}
            fix = " ".join(f"--{keys.get(k, k)} {a}" for k, (a, _) in diff.items())
            raise CosineTrackDataError(path, f"this model was trained with {what}; run with {fix}")
    if isinstance(state.get("model"), dict):
        state = state["model"]
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines()[1:4] if ln.strip()]
        raise CosineTrackDataError(
            path,
            "the weights do not fit this network (trained with other num_levels, num_filters, "
            f"embedding_dim, num_stacks or recurrent?): {' '.join(lines)[:400]}",
        ) from exc
    return network


def stored_network_settings(path: str) -> dict[str, Any] | None:
    """The network settings a model file records (``None`` for a bare state dict of an older version)."""
    state = read_checkpoint(require_file(path, "ckpt_path"))
    settings = state.get("network") if isinstance(state, dict) else None
    return dict(settings) if isinstance(settings, dict) else None


def stored_image_size(path: str, default: Sequence[int]) -> list[int]:
    """The network canvas ``(h, w)`` a model file was trained at (its ``"image_size"`` entry), else ``default``.

    Shipped models record it, so that inference feeds them frames at the scale they learnt: a model
    trained on a 96 x 96 canvas sees objects 2.7 times smaller than on the bundle's default 256 x 256.
    """
    state = read_checkpoint(require_file(path, "ckpt_path"))
    size = state.get("image_size") if isinstance(state, dict) else None
    if size is None:
        return [int(v) for v in default]
    if len(size) != 2 or any(int(v) < 1 for v in size):
        raise CosineTrackDataError(path, f"image_size: expected (h, w) of positive sizes, got {size!r}")
    return [int(v) for v in size]


def stored_inference_size(path: str, image_size: Sequence[int], fit: str = "scale") -> list[int] | None:
    """The size frames are fitted to before a model file's network: ``None`` (native resolution) or ``(h, w)``.

    A model trained on native-resolution crops (its ``"fit"`` entry ``"crop"``, written by
    :class:`TrainingCheckpoint`) runs on whole frames as they are; one trained on frames scaled to fit its
    canvas gets them scaled to that canvas (:func:`stored_image_size`). ``image_size`` and ``fit`` are the
    bundle's, used when the file records neither.
    """
    state = read_checkpoint(require_file(path, "ckpt_path"))
    stored = state.get("fit") if isinstance(state, dict) else None
    fit = stored if stored is not None else fit
    if fit not in ("scale", "crop"):
        raise CosineTrackDataError(path, f"fit: expected 'scale' or 'crop', got {fit!r}")
    return None if fit == "crop" else stored_image_size(path, image_size)


def stored_clustering(
    path: str, default: Mapping[str, Any], options_size: Sequence[int], canvas: Sequence[int]
) -> dict[str, Any]:
    """The clustering options to run a model file with on a ``canvas`` of embeddings.

    A shipped model may record the options it was validated with (its ``"clustering"`` entry, for the
    canvas it runs on: :func:`stored_image_size`); they are taken over the bundle's ``default`` key by key.
    Otherwise ``default``, chosen for an ``options_size`` canvas, is converted to ``canvas``
    (:func:`~cosinetrack.clustering.clustering_for_canvas`). To run a model with other options, override
    the inference config's ``inference_clustering``.

    Raises:
        CosineTrackDataError: the recorded entry is not a mapping of valid clustering options.
    """
    state = read_checkpoint(require_file(path, "ckpt_path"))
    stored = state.get("clustering") if isinstance(state, dict) else None
    options = clustering_for_canvas(default, options_size, canvas)
    if stored is None:
        return options
    if not isinstance(stored, Mapping):
        raise CosineTrackDataError(path, f"clustering: expected a mapping of clustering options, got {stored!r}")
    try:
        return check_cluster_kwargs({**options, **stored}, "clustering")
    except (CosineTrackConfigError, ValueError, TypeError) as err:
        raise CosineTrackDataError(path, f"clustering: {err}") from err


def stored_normalization(path: str, default: Mapping[str, Any]) -> dict[str, Any]:
    """The ``normalization`` section to run a model file with: ``default`` (the bundle's), with what the file
    records of its training normalization taken over it (its ``"normalization"`` entry, written by
    :class:`TrainingCheckpoint`: ``upper``, what mapped to 1). The percentages ``i_min`` / ``i_max`` stay the
    data set's (its preset), as the smoothing stays the bundle's. To run a model otherwise, override the
    tracker's ``normalization``.

    Raises:
        CosineTrackDataError: the recorded entry is not a mapping with a valid ``upper``.
    """
    state = read_checkpoint(require_file(path, "ckpt_path"))
    stored = state.get("normalization") if isinstance(state, dict) else None
    out = dict(default)
    if stored is None:
        return out
    if not isinstance(stored, Mapping) or stored.get("upper", "percentile") not in UPPER_REFERENCES:
        expected = f"{{'upper': one of {UPPER_REFERENCES}}}"
        raise CosineTrackDataError(path, f"normalization: expected {expected}, got {stored!r}")
    if "upper" in stored:
        out["upper"] = stored["upper"]
    return out


def resolve_model(ckpt_path: str | None, bundle_root: str, preset: Mapping[str, Any] | None = None) -> str:
    """The model file to run: ``ckpt_path`` when given, else the trained model the bundle ships.

    The bundle's models live in ``<bundle_root>/models/``: ``<preset name>.pt`` (one per data set, e.g.
    ``Fluo-N2DH-SIM+.pt``) is taken when ``preset`` names one, else ``model.pt``.

    Raises:
        CosineTrackDataError: ``ckpt_path`` is not a file, or no ``ckpt_path`` and the bundle ships no model.
    """
    if ckpt_path:
        return require_file(ckpt_path, "ckpt_path")
    folder = os.path.join(os.fspath(bundle_root), "models")
    names = ([f"{preset['name']}.pt"] if preset and preset.get("name") else []) + ["model.pt"]
    for name in names:
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise CosineTrackDataError(
        folder, f"this bundle ships no trained model ({' or '.join(names)}); train one and pass --ckpt_path"
    )


def _members_text(members: int) -> str:
    return "one network" if members == 1 else f"an ensemble of {members} networks"


def network_for_model(path: str, allow_ensemble: bool = True, **defaults: Any) -> torch.nn.Module:
    """A :class:`~cosinetrack.networks.RecurrentStackedHourglass` shaped like the model file ``path``, or an
    :class:`~cosinetrack.networks.EmbeddingEnsemble` of them when the file records ``members``
    (:func:`~cosinetrack.workflows.combine.combine_model_files`).

    ``defaults`` are the bundle's constructor arguments (``in_channels``, ``out_channels``, ``num_levels``,
    ``num_filters``, ``num_stacks``, ``recurrent``); the settings recorded in the file replace them, so
    inference needs no ``--num_levels``/``--num_filters`` to match a model. The weights are loaded
    by :func:`load_weights` afterwards. ``allow_ensemble=False`` (a bundle whose outputs are class scores,
    which an ensemble cannot merge) refuses an ensemble file with an error naming it.
    """
    settings = {**defaults, **(stored_network_settings(path) or {})}
    members = settings.pop("members", 1)
    if members == 1:
        return RecurrentStackedHourglass(**settings)
    if not as_flag(allow_ensemble, "allow_ensemble"):
        raise CosineTrackDataError(
            path, f"this model file is {_members_text(members)} (embeddings); this bundle runs one network"
        )
    return EmbeddingEnsemble(members=members, **settings)


class RNGState:
    """An entry for a checkpoint: the Python, NumPy and torch random states (restored on resume)."""

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = random.getstate()
        np_state = np.random.get_state()  # noqa: NPY002 - the global state MONAI's set_determinism seeds
        return {
            "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
            "numpy": {"key": torch.as_tensor(np_state[1].astype(np.int64)), "pos": int(np_state[2])},
            "torch": torch.get_rng_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        py = state["python"]
        random.setstate((int(py["version"]), tuple(int(v) for v in py["internal"].tolist()), py["gauss"]))
        key, pos = state["numpy"]["key"].numpy().astype(np.uint32), state["numpy"]["pos"]
        np.random.set_state(("MT19937", key, pos))  # noqa: NPY002 - the global state, as saved
        torch.set_rng_state(state["torch"])


class _RunRecord:
    """An entry for a checkpoint: the MLflow run of ``handlers`` (id and name), to continue it on resume."""

    def __init__(self, handlers: Sequence[Any]) -> None:
        self.handlers = [h for h in handlers if h is not None]
        self.loaded: dict[str, str] = {}

    def state_dict(self) -> dict[str, str]:
        for h in self.handlers:
            run = getattr(h, "cur_run", None)
            if run is not None:
                return {"run_id": run.info.run_id, "run_name": str(run.info.run_name)}
        return dict(self.loaded)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.loaded = {str(k): str(v) for k, v in state.items()}
        for h in self.handlers:
            if hasattr(h, "resume_run"):
                h.resume_run(self.loaded.get("run_id"), self.loaded.get("run_name"))


def _step_of(path: str) -> int:
    m = re.search(r"_(\d+)\.pt$", path)
    return int(m.group(1)) if m else -1


def find_resume_checkpoint(output_dir: str) -> list[str]:
    """The training checkpoints ``output_dir/resume_<iteration>.pt``, newest first."""
    paths = glob.glob(os.path.join(glob.escape(output_dir), f"{RESUME_PREFIX}_*.pt"))
    return sorted(paths, key=_step_of, reverse=True)


class TrainingCheckpoint:
    """Trainer handler: save everything needed to resume every ``save_interval`` iterations; resume.

    Args:
        save_dir: the run's output folder.
        network, optimizer, lr_scheduler: what the trainer trains.
        save_interval: iterations between training checkpoints (``resume_<iteration>.pt``, the two newest
            kept; 0 = none). The last completed iteration is always saved.
        resume: load the newest readable training checkpoint of ``save_dir`` before the trainer runs
            (an error when there is none); the trainer then continues from its iteration. Under
            ``torchrun`` every rank loads it and rank 0 alone saves.
        run_handlers: :class:`~cosinetrack.handlers.MLflowRunHandler` objects whose run is recorded and,
            on resume, continued (set RUNNING again).
        final_filename: weights written when training completes (never before).
        image_size, fit: the network canvas and how frames were fitted to it in training (the
            augmentation's ``fit``: ``"scale"`` or ``"crop"``), recorded in the final weights so that
            inference feeds frames the same way (:func:`stored_inference_size`); ``None``: not recorded.
        clustering: the clustering options the run validates with, for the ``image_size`` canvas, recorded
            in the final weights so that inference clusters the model's embeddings the same way
            (:func:`stored_clustering`); ``None`` (a semantic task, or options chosen per data set at
            inference): not recorded.
        normalization: the run's ``normalization`` section; its ``upper`` (what maps to 1) is recorded in the
            final weights, so that inference normalizes frames the same way (:func:`stored_normalization`);
            ``None``: not recorded.
        weight_averaging: the run's :class:`~cosinetrack.workflows.WeightAveraging` (attached to the trainer
            before this handler): its running mean is saved and resumed with the training state, and when
            the run ends with the mean, the last iterate is written too, as ``model_last_iterate.pt`` (same
            format as ``model_final.pt``). ``None``: no averaging.
    """

    def __init__(
        self,
        save_dir: str,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        lr_scheduler: Any = None,
        save_interval: int = 100,
        resume: bool = False,
        run_handlers: Sequence[Any] = (),
        final_filename: str = "model_final.pt",
        image_size: Sequence[int] | None = None,
        fit: str = "scale",
        clustering: Mapping[str, Any] | None = None,
        normalization: Mapping[str, Any] | None = None,
        weight_averaging: WeightAveraging | None = None,
    ) -> None:
        if int(save_interval) < 0:
            raise ValueError(f"save_interval must be >= 0, got {save_interval}")
        if fit not in ("scale", "crop"):
            raise ValueError(f"fit must be 'scale' or 'crop', got {fit!r}")
        if image_size is not None and (len(image_size) != 2 or any(int(v) < 1 for v in image_size)):
            raise ValueError(f"image_size: expected (h, w) of positive sizes, got {image_size!r}")
        self.canvas = {} if image_size is None else {"image_size": [int(v) for v in image_size], "fit": fit}
        if clustering is not None:
            self.canvas["clustering"] = dict(check_cluster_kwargs(clustering, "clustering"))
        if normalization is not None:
            upper = normalization.get("upper", "percentile")
            if upper not in UPPER_REFERENCES:
                raise ValueError(f"normalization#upper: expected one of {UPPER_REFERENCES}, got {upper!r}")
            self.canvas["normalization"] = {"upper": upper}
        self.save_dir = os.path.abspath(save_dir)
        if isinstance(network, torch.nn.parallel.DistributedDataParallel):
            network = network.module  # the files hold the plain network's weights and settings
        self.network = network
        self.save_interval = int(save_interval)
        self.resume = as_flag(resume, "resume")
        self.final_filename = final_filename
        self.run_record = _RunRecord(run_handlers)
        self.to_save: dict[str, Any] = {
            "model": network, "network": NetworkSettings(network), "optimizer": optimizer, "rng": RNGState(),
            "mlflow": self.run_record,
        }  # fmt: skip
        if lr_scheduler is not None:
            self.to_save["lr_scheduler"] = lr_scheduler
        if weight_averaging is not None and not isinstance(weight_averaging, WeightAveraging):
            raise TypeError(f"weight_averaging: expected a WeightAveraging or None, got {type(weight_averaging)}")
        self.weight_averaging = weight_averaging if weight_averaging is not None and weight_averaging.enabled else None
        if self.weight_averaging is not None:
            self.to_save["weight_averaging"] = self.weight_averaging
        self.resumed_from: str | None = None

    def attach(self, engine: Engine) -> None:
        self.to_save["trainer"] = engine
        saver = DiskSaver(self.save_dir, require_empty=False, atomic=True)
        self.checkpoint = Checkpoint(
            self.to_save, saver, filename_prefix=RESUME_PREFIX, n_saved=2,
            global_step_transform=lambda e, _: e.state.iteration,
            filename_pattern="{filename_prefix}_{global_step}.{ext}",
        )  # fmt: skip
        if self.save_interval > 0:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.save_interval), self.checkpoint)
        # at the end of the last epoch (after its validation), not at COMPLETED: the MLflow handler,
        # attached earlier so that no resumed run misses a logged step, logs model_final.pt at COMPLETED
        last_epoch = Events.EPOCH_COMPLETED(event_filter=lambda e, _: e.state.epoch >= e.state.max_epochs)
        engine.add_event_handler(last_epoch, self.completed)
        if self.resume:
            self.load(engine)

    def load(self, engine: Engine) -> None:
        """Load the newest readable ``resume_*.pt`` into the trainer and everything it trains."""
        paths = find_resume_checkpoint(self.save_dir)
        if not paths:
            raise CosineTrackDataError(
                self.save_dir, "--resume: no training checkpoint (resume_<iteration>.pt) in this output folder"
            )
        errors = []
        for path in paths:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # a file cut short by the kill: fall back to the one before
                errors.append(f"{os.path.basename(path)}: {type(exc).__name__}")
                continue
            Checkpoint.load_objects(self.to_save, state)
            self.resumed_from = path
            # the saver must know its files, or it would keep more than two after the resume
            self.checkpoint._saved = [Checkpoint.Item(_step_of(p), os.path.basename(p)) for p in reversed(paths[:2])]
            return
        raise CosineTrackDataError(self.save_dir, f"--resume: no readable training checkpoint ({'; '.join(errors)})")

    def completed(self, engine: Engine) -> None:
        """Save the final state and ``model_final.pt`` (weights, network settings, canvas, clustering,
        normalization), atomically."""
        if self.save_interval > 0 and engine.state.iteration % self.save_interval:
            self.checkpoint(engine)  # Ignite's DiskSaver writes on rank 0 only
        if not is_rank0():  # under torchrun, rank 0 alone writes
            return
        self._save_weights(self.final_filename, self.network.state_dict())
        if self.weight_averaging is not None and self.weight_averaging.last_iterate is not None:
            self._save_weights(LAST_ITERATE_FILENAME, self.weight_averaging.last_iterate)

    def _save_weights(self, filename: str, state: Mapping[str, torch.Tensor]) -> None:
        with atomic_file(os.path.join(self.save_dir, filename), suffix=".pt") as tmp:
            weights = {"model": dict(state), "network": network_settings(self.network)}
            torch.save({**weights, **self.canvas}, tmp)


def handlers_of_rank(handlers: Sequence[Any]) -> list[Any]:
    """The trainer handlers this process attaches: all on rank 0 (or without ``torchrun``); on the other
    ranks only the learning-rate schedule, :class:`~cosinetrack.workflows.WeightAveraging` (so that every
    rank ends with the same weights) and :class:`TrainingCheckpoint` (which loads on ``--resume`` and
    saves nothing there), since rank 0 alone validates, logs and writes."""
    if is_rank0():
        return list(handlers)
    return [h for h in handlers if isinstance(h, (LrScheduleHandler, WeightAveraging, TrainingCheckpoint))]
