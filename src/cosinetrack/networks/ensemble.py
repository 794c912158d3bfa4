"""An ensemble of embedding networks: several trained runs of one recipe read as one network.

Runs of one recipe that differ only in their seed disagree on hard cells (``docs/results_cell.md``,
session 21: held-out TRA 0.933-0.991 over four seeds). :class:`EmbeddingEnsemble` runs ``members``
:class:`~cosinetrack.networks.RecurrentStackedHourglass` networks of the same shape on the same input and
returns, per stack, their outputs L2-normalized over channels, concatenated and scaled by
``1 / sqrt(members)``: a unit vector of ``members * out_channels`` channels whose cosine similarity
between two pixels is the mean of the members' cosine similarities. Each member's embedding space is its
own (the directions of two runs are unrelated), so the members are concatenated, never averaged; the
clustering, the background rules and the test-time flips then work on the longer vectors unchanged.

Embeddings only: class scores (the LV bundle) cannot be merged this way.

The background (``background``): ``"mean"`` leaves it to the clustering's rule on the merged vectors, so the
members' mean similarity to the background decides; ``"votes"`` makes every member a view of its own
(:attr:`EmbeddingEnsemble.embedding_views`, read by :func:`embedding_views`): the segmenters multiply the
clustering's ``views`` by it, and a pixel or a cluster is background where at least half of the members' views
find it so (:class:`~cosinetrack.clustering.options.ClusteringOptions`, ``views``), so one member that is
sure of the background outvotes a member that sees a false cell in it.

The recurrent state is the members' states one after the other: a list of ``members * num_stacks`` per-stack
lists of per-level tensors (the layout of :mod:`cosinetrack.inference.stepping`, so it is cast, joined
and split along the batch like a single network's).

Members are trained separately; :func:`cosinetrack.workflows.combine.combine_model_files` writes their model files
as one ensemble file (``python -m cosinetrack.workflows.combine``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cosinetrack.networks.stacked import RecurrentStackedHourglass, State

__all__ = ["BACKGROUND_RULES", "EmbeddingEnsemble", "embedding_views"]

#: How an ensemble decides the background: the members' mean similarity, or every member's vote.
BACKGROUND_RULES = ("mean", "votes")


def embedding_views(network: nn.Module) -> int:
    """How many equal views a network's output channels are made of for the background rule (1 for one network;
    an :class:`EmbeddingEnsemble` with ``background="votes"``: its members)."""
    return int(getattr(network, "embedding_views", 1))


class EmbeddingEnsemble(nn.Module):
    """``members`` recurrent stacked hourglasses whose unit embeddings are concatenated.

    Args:
        members: number of networks (>= 2).
        in_channels, out_channels, num_levels, num_filters, num_stacks, recurrent, normalize_eps: every
            member's :class:`~cosinetrack.networks.RecurrentStackedHourglass` arguments; ``out_channels`` is
            one member's embedding size ``D``, the ensemble returns ``members * D`` channels.
        background: ``"mean"`` (the members' mean similarity to the background decides) or ``"votes"``
            (every member's view votes; see the module docstring).

    Outputs (:meth:`forward`, :meth:`step`): per stack ``(B, [T,] members * D, H, W)``, unit length over the
    channels wherever every member's output is non-zero.
    """

    def __init__(
        self,
        members: int = 2,
        in_channels: int = 1,
        out_channels: int = 16,
        num_levels: int = 7,
        num_filters: int = 64,
        num_stacks: int = 2,
        recurrent: bool = True,
        normalize_eps: float = 1e-8,
        background: str = "mean",
    ) -> None:
        super().__init__()
        if isinstance(members, bool) or not isinstance(members, int) or members < 2:
            raise ValueError(f"EmbeddingEnsemble: members must be an int >= 2, got {members!r}")
        if background not in BACKGROUND_RULES:
            raise ValueError(f"EmbeddingEnsemble: background must be one of {BACKGROUND_RULES}, got {background!r}")
        self.members = members
        self.background = background
        self.embedding_views = members if background == "votes" else 1
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_levels = num_levels
        self.num_filters = num_filters
        self.num_stacks = num_stacks
        self.recurrent = recurrent
        self.normalize_eps = normalize_eps
        self.networks = nn.ModuleList(
            RecurrentStackedHourglass(
                in_channels=in_channels,
                out_channels=out_channels,
                num_levels=num_levels,
                num_filters=num_filters,
                num_stacks=num_stacks,
                recurrent=recurrent,
                normalize_eps=normalize_eps,
            )
            for _ in range(members)
        )

    @property
    def size_multiple(self) -> int:
        """Internal ``H``, ``W`` are padded up to a multiple of this (the members')."""
        return self.networks[0].size_multiple

    def _merge(self, outputs: list[tuple[Tensor, ...]], channel_dim: int) -> tuple[Tensor, ...]:
        scale = 1.0 / math.sqrt(self.members)
        return tuple(
            torch.cat(
                [F.normalize(o[k], dim=channel_dim, eps=self.normalize_eps) * scale for o in outputs], channel_dim
            )
            for k in range(self.num_stacks)
        )

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Clips ``(B, T, C, H, W)`` or frames ``(B, C, H, W)``: ``num_stacks`` outputs ``(B, T, members * D, H, W)``
        or ``(B, members * D, H, W)`` (see :meth:`RecurrentStackedHourglass.forward`)."""
        outputs = [net(x) for net in self.networks]
        return self._merge(outputs, channel_dim=1 if x.ndim == 4 else 2)

    def step(self, frame: Tensor, state: State | None = None) -> tuple[tuple[Tensor, ...], State]:
        """Stream one frame ``(B, C, H, W)``; ``state`` is ``None`` or the state of the previous call
        (``members * num_stacks`` per-stack lists). Returns ``num_stacks`` tensors ``(B, members * D, H, W)``
        and the new state."""
        n = self.num_stacks
        if state is not None and len(state) != self.members * n:
            raise ValueError(
                f"EmbeddingEnsemble: expected a state of {self.members} members x {n} stacks, got {len(state)} "
                "entries; pass the state returned by the previous call, or None"
            )
        outputs, new_state = [], []
        for i, net in enumerate(self.networks):
            out, s = net.step(frame, None if state is None else list(state[i * n : (i + 1) * n]))
            outputs.append(out)
            new_state.extend(s)
        return self._merge(outputs, channel_dim=1), new_state
