"""Weight averaging: the mean of the network's weights over the last part of training (SWA's uniform mean).

:class:`WeightAveraging` is a trainer handler. From iteration ``int(average_from * max_iterations)`` on it
adds the network's weights after every ``every``-th iteration to a running mean
(:class:`torch.optim.swa_utils.AveragedModel`); after the trainer's last iteration (its ``max_epochs x
epoch_length``, which the bundles round down to a multiple of ``val_interval``) it copies the mean into the
network, so that the run's last validation, ``model_last.pt`` and ``model_final.pt`` all hold the averaged
weights. With the bundles' step schedule (``lr_drop_at`` 0.5), ``average_from`` 0.5 averages the low
learning-rate half of the run. (Measured for the cell CPU recipe in docs/results_cell.md, session 22: the mean
moved each of two seeds further in the direction its last iterate already had; runs did not agree more.)

The running mean is part of the training state (:class:`~cosinetrack.workflows.TrainingCheckpoint` saves
and resumes it; list this handler before it, so that an iteration's weights are in the mean before that
iteration is saved), so a killed run that resumes averages the same iterates as one that was never stopped.
The last iterate is kept (:attr:`WeightAveraging.last_iterate`) and ``TrainingCheckpoint`` writes it beside
``model_final.pt`` as ``model_last_iterate.pt``, so that a run can be compared with and without the mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from ignite.engine import Engine, Events
from torch.optim.swa_utils import AveragedModel

__all__ = ["WeightAveraging", "first_averaged_iteration"]


def first_averaged_iteration(average_from: float, max_iterations: int) -> int:
    """The first iteration (1-based) whose weights enter the mean: ``max(1, int(average_from * max_iterations))``."""
    return max(1, int(float(average_from) * int(max_iterations)))


class WeightAveraging:
    """Trainer handler: average the network's weights over the last part of the run and end with the mean.

    Args:
        network: the trained network (a ``DistributedDataParallel`` wrapper is unwrapped); its parameters and
            buffers are averaged.
        max_iterations: the bundles' ``max_iterations``, of which ``average_from`` is a fraction (as the LR
            schedule's ``lr_drop_at``); the mean is loaded after the trainer's own last iteration.
        average_from: the fraction of ``max_iterations`` after which averaging starts, in [0, 1); ``None``:
            no averaging (the handler does nothing, the run ends with its last iterate).
        every: average the weights after every ``every``-th iteration from the first averaged one.

    Example::

        WeightAveraging(network, max_iterations=600, average_from=0.5).attach(trainer)
        # iterations 300, 301, ..., 600 are averaged; after iteration 600 the network holds their mean
    """

    def __init__(
        self, network: torch.nn.Module, max_iterations: int, average_from: float | None = None, every: int = 1
    ) -> None:
        if int(max_iterations) < 1:
            raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")
        if average_from is not None and not 0.0 <= float(average_from) < 1.0:
            raise ValueError(f"average_from must be in [0, 1) or null (no averaging), got {average_from}")
        if int(every) < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if isinstance(network, torch.nn.parallel.DistributedDataParallel):
            network = network.module
        self.network = network
        self.max_iterations = int(max_iterations)
        self.enabled = average_from is not None
        self.start = first_averaged_iteration(average_from, max_iterations) if self.enabled else None
        self.every = int(every)
        self.averaged = AveragedModel(network, use_buffers=True) if self.enabled else None
        self.last_iterate: dict[str, torch.Tensor] | None = None

    def attach(self, engine: Engine) -> None:
        if not self.enabled:
            return
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)

    def update(self, engine: Engine) -> None:
        """Add this iteration's weights to the mean when it is an averaged one; after the last, load the mean."""
        it = engine.state.iteration
        if it >= self.start and (it - self.start) % self.every == 0:
            self.averaged.update_parameters(self.network)
        if it >= engine.state.max_epochs * engine.state.epoch_length:
            self.load_average()

    @property
    def num_averaged(self) -> int:
        """How many iterates the mean holds."""
        return 0 if self.averaged is None else int(self.averaged.n_averaged.item())

    def load_average(self) -> None:
        """Keep the network's weights as :attr:`last_iterate` and copy the mean into the network (nothing when
        no iterate has been averaged yet)."""
        if self.num_averaged == 0:
            return
        self.last_iterate = {k: v.detach().clone() for k, v in self.network.state_dict().items()}
        self.network.load_state_dict(self.averaged.module.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {} if self.averaged is None else self.averaged.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.averaged is None:
            return
        self.averaged.load_state_dict(state)
