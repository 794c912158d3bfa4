"""Pair segmenters: push one normalized frame, get the instances of the last two frames.

A *pair segmenter* (:class:`PairSegmenter`, the abstract base) turns normalized frames into pair labels;
it has ``push(frame) -> (2, H, W) | None``, ``reset()``, ``timings`` (seconds spent per stage) and
``last_embedding``:

* :class:`ScaledPairSegmenter` (the paper): each frame is scaled to fit the network input size, the
  pair is clustered on that canvas, and the labels are resampled to the frame's size;
* :class:`~cosinetrack.inference.tiling.TiledPairSegmenter`: full resolution in overlapping tiles.

Both step the network through :func:`~cosinetrack.inference.stepping.step_network`.
:func:`normalize_frame` is the evaluation normalization of one frame.
"""

from __future__ import annotations

import abc
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cosinetrack.clustering.embedding_clustering import cluster_embeddings
from cosinetrack.clustering.options import check_cluster_kwargs
from cosinetrack.inference.amp import Amp, resolve_amp
from cosinetrack.inference.inferer import FLIP_VIEWS, flip_views_batch, merge_flip_views
from cosinetrack.inference.stepping import State, check_stack, step_network
from cosinetrack.networks.ensemble import embedding_views
from cosinetrack.transforms.augment import clip_eval_transforms
from cosinetrack.transforms.spatial import fit_to_size, restore_label_size

__all__ = ["PairSegmenter", "normalize_frame", "ScaledPairSegmenter"]


logger = logging.getLogger("cosinetrack")


class PairSegmenter(abc.ABC):
    """Base of the pair segmenters: push one frame, get the instances of the last two frames.

    Holds what every segmenter shares: the network and how it is stepped (``device``, ``stack``,
    ``amp``; :meth:`step_batch` runs :func:`~cosinetrack.inference.step_network`), the clustering options
    ``cluster_kwargs`` (checked by :func:`~cosinetrack.clustering.check_cluster_kwargs`) and ``timings``
    (seconds spent in the ``"network"`` and in ``"clustering"``, summed over frames; never reset).

    Args:
        network: a :class:`~cosinetrack.networks.RecurrentStackedHourglass` in eval mode (or anything with
            its ``step(frames, state) -> (outputs per stack, state)``).
        cluster_kwargs: options of :func:`~cosinetrack.clustering.cluster_embeddings`.
        device: where the network runs.
        stack: which stack's output is clustered (the paper: the last).
        amp: run the network under :func:`~cosinetrack.inference.autocast_context` (see
            :func:`~cosinetrack.inference.resolve_amp`); embeddings handed to clustering are float32.

    Subclasses implement :meth:`reset`, :meth:`embed` and :meth:`push`, and provide ``last_embedding``:
    the last pushed frame's embedding ``(D, h, w)`` (``None`` before the first frame). A segmenter that
    also has ``push_embedding(emb, frame_size)`` (the clustering half of ``push``) can run its network in
    another thread (:func:`~cosinetrack.inference.segment_and_track_video` with ``overlap_stages``).
    """

    last_embedding: torch.Tensor | None

    def __init__(
        self,
        network: torch.nn.Module,
        cluster_kwargs: Mapping[str, Any],
        device: str | torch.device = "cpu",
        stack: int = -1,
        amp: Amp = False,
    ) -> None:
        self.network = network
        resolve_amp(amp)  # validates
        self.amp = amp
        self.cluster_kwargs = check_cluster_kwargs(dict(cluster_kwargs))
        self.device = torch.device(device)
        self.stack = check_stack(network, stack)
        self.timings: dict[str, float] = {"network": 0.0, "clustering": 0.0}

    @torch.inference_mode()
    def step_batch(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State | None]:
        """One network step of a batch ``x`` ``(B, C, h, w)`` on ``device``: embeddings ``(B, D, h, w)``
        (CPU float32, also under ``amp``) and the new state."""
        emb, new_state = step_network(self.network, x, state, stack=self.stack, amp=self.amp, device=self.device)
        return emb.cpu(), new_state

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget the video: zero GRU state(s), no previous frame."""

    @abc.abstractmethod
    def embed(self, frame: torch.Tensor) -> torch.Tensor:
        """The embeddings (float32, CPU) of one frame ``(C, H, W)``; advances the GRU state(s)."""

    @abc.abstractmethod
    def push(self, frame: torch.Tensor) -> np.ndarray | None:
        """Push a normalized frame ``(C, H, W)``: ``None`` for a video's first frame, then the labels
        ``(2, H, W)`` int32 of the pair (previous frame, this frame), 0 = background."""


def normalize_frame(
    frame: np.ndarray,
    i_min: float,
    i_max: float,
    smooth_sigma: float = 0.0,
    smooth_padding: str = "edge",
    upper: str = "percentile",
) -> torch.Tensor:
    """One raw frame ``(H, W)`` (or ``(C, H, W)``) as the network input ``(C, H, W)`` float32.

    The same robust normalization as training and validation (median of the lowest ``i_min`` % and of
    the highest ``i_max`` % mapped to -1 and 1), after an optional Gaussian smoothing of ``smooth_sigma`` px
    (``smooth_padding`` beyond the frame's edges: :class:`~cosinetrack.transforms.SmoothFramesd`); ``upper``:
    what maps to 1 (:class:`~cosinetrack.transforms.Normalization`).
    """
    x = np.asarray(frame, dtype=np.float32)
    x = x[None] if x.ndim == 2 else x
    transform = _frame_transform(float(i_min), float(i_max), float(smooth_sigma), str(smooth_padding), str(upper))
    out = transform({"image": x})["image"]
    return torch.as_tensor(out, dtype=torch.float32)


@functools.lru_cache(maxsize=8)
def _frame_transform(i_min: float, i_max: float, smooth_sigma: float, smooth_padding: str, upper: str):
    """The evaluation transform of :func:`normalize_frame`, built once per setting (not once per frame)."""

    return clip_eval_transforms(
        i_min, i_max, per_channel=False, smooth_sigma=smooth_sigma, smooth_padding=smooth_padding, upper=upper
    )


class ScaledPairSegmenter(PairSegmenter):
    """The paper's inference: frames scaled to fit ``image_size``, pairs clustered on that canvas.

    Args:
        network: a :class:`~cosinetrack.networks.RecurrentStackedHourglass` in eval mode.
        image_size: network input ``(h, w)``.
        cluster_kwargs: options of :func:`~cosinetrack.clustering.cluster_embeddings` (``min_samples``
            = m_pts, ``coordinate_scale`` = c, ...); coordinates and ``t_size`` are in canvas pixels.
        device: where the network runs.
        stack: which stack's output is clustered (the paper: the last).
        padding_mode: how the canvas around a frame that does not fill it is padded: the training
            augmentation's ``padding_mode`` (``"reflection"`` for cells), so that the network sees at
            inference what it saw in training. Zeros (mid-grey after the robust normalization) next to
            a frame border produced thin spurious instances along that border.
        margin: canvas pixels mirrored around the whole canvas before the network and cropped off its
            output (network input ``(h + 2 margin, w + 2 margin)``; ``0``: none, the paper). Training
            clips are rotated and shifted with mirror padding, so the network rarely saw an image edge:
            without a margin, cells cut by the frame's edge were missed (``docs/results_cell.md``).
        amp: run the network under :func:`~cosinetrack.inference.autocast_context` (bfloat16 on
            CPU; ``"auto"``: where the CPU has native bfloat16, see
            :func:`~cosinetrack.inference.resolve_amp`); the embeddings handed to clustering are
            float32 either way.
        test_time_flips: run every frame in the four flipped views of
            :data:`~cosinetrack.inference.inferer.FLIP_VIEWS` (one batch of four, each view with its own
            GRU state) and cluster their merged embeddings (:func:`~cosinetrack.inference.merge_flip_views`:
            ``(4 D, h, w)``, unit length; a pixel pair's cosine similarity is the mean of the views'):
            four times the network's work. The clustering then decides the background per view, a pixel
            being background where at least half of the views find it so (``views=4`` of
            :class:`~cosinetrack.clustering.options.ClusteringOptions`, set here; a ``views`` in
            ``cluster_kwargs`` is refused). An :class:`~cosinetrack.networks.EmbeddingEnsemble` whose members
            vote on the background multiplies ``views`` by its members
            (:func:`~cosinetrack.networks.embedding_views`).

    ``push(frame)`` takes a normalized frame ``(C, H, W)`` and returns ``None`` for the first frame,
    then the labels ``(2, H, W)`` int32 of the pair (previous frame, this frame), 0 = background.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        image_size: Sequence[int],
        cluster_kwargs: Mapping[str, Any],
        device: str | torch.device = "cpu",
        stack: int = -1,
        padding_mode: str = "zeros",
        amp: Amp = False,
        margin: int = 0,
        test_time_flips: bool = False,
    ) -> None:
        super().__init__(network, cluster_kwargs, device=device, stack=stack, amp=amp)
        if not isinstance(test_time_flips, bool):
            raise ValueError(f"test_time_flips: expected true or false, got {test_time_flips!r}")
        self.test_time_flips = test_time_flips
        if "views" in self.cluster_kwargs:
            raise ValueError("cluster_kwargs: 'views' is set by the segmenter from test_time_flips, not by hand")
        views = (len(FLIP_VIEWS) if test_time_flips else 1) * embedding_views(network)
        if views > 1:
            self.cluster_kwargs = check_cluster_kwargs({**self.cluster_kwargs, "views": views})
        self.padding_mode = padding_mode
        self.image_size = tuple(int(s) for s in image_size)
        if isinstance(margin, bool) or not isinstance(margin, int) or not 0 <= margin < min(self.image_size):
            raise ValueError(f"margin: expected whole pixels in [0, {min(self.image_size)}), got {margin!r}")
        self.margin = margin
        fit_to_size(torch.zeros(1, 1, 2, 2), (2, 2), padding_mode=padding_mode)  # validates it now
        self.reset()

    def reset(self) -> None:
        """Forget the video: zero GRU state, no previous frame."""
        self.state = None
        self.previous: torch.Tensor | None = None
        self.last_embedding: torch.Tensor | None = None

    @torch.inference_mode()
    def embed(self, frame: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(D, h, w)`` on the network canvas of one frame ``(C, H, W)``; advances the state."""
        t0 = time.perf_counter()
        x, _ = fit_to_size(frame[None].to(self.device), self.image_size, padding_mode=self.padding_mode)
        m = self.margin
        if m:
            x = F.pad(x.float(), (m, m, m, m), mode="reflect").to(x.dtype)
        if self.test_time_flips:
            out, self.state = self.step_batch(flip_views_batch(x), self.state)
            out = merge_flip_views(out)
        else:
            out, self.state = self.step_batch(x, self.state)  # float32 for the clustering, also under amp
        self.timings["network"] += time.perf_counter() - t0
        return out[0, :, m : out.shape[-2] - m, m : out.shape[-1] - m]

    def push(self, frame: torch.Tensor) -> np.ndarray | None:
        """The pair's labels ``(2, H, W)`` (``None`` for the first frame): :meth:`push_embedding` of :meth:`embed`."""
        return self.push_embedding(self.embed(frame), frame.shape[-2:])

    def push_embedding(self, emb: torch.Tensor, frame_size: Sequence[int]) -> np.ndarray | None:
        """The clustering half of :meth:`push`: ``emb`` ``(D, h, w)`` from :meth:`embed` of a frame of
        ``frame_size`` ``(H, W)``; returns ``None`` for the first frame, then the pair's labels ``(2, H, W)``.

        :meth:`embed` (the GRU state) and this (the previous embedding) share no state, so the two may
        run in different threads, one frame apart (:func:`segment_and_track_video` with ``overlap_stages``).
        """
        self.last_embedding = emb
        previous, self.previous = self.previous, emb
        if previous is None:
            return None
        t0 = time.perf_counter()
        labels = cluster_embeddings(torch.stack([previous, emb]), **self.cluster_kwargs)
        labels = restore_label_size(labels, tuple(frame_size)).numpy()
        self.timings["clustering"] += time.perf_counter() - t0
        return labels
