"""The named options of :func:`~cosinetrack.clustering.cluster_embeddings`: :class:`ClusteringOptions`.

One frozen dataclass holds every option with its default and its documentation, and checks the values
once, where it is built (:meth:`ClusteringOptions.__post_init__`); :func:`check_cluster_kwargs` checks
the names of a config section (``clustering_options``) when the config is parsed. The tuples of the
allowed rule names (:data:`BACKGROUND_RULES`, :data:`CLUSTERING_MODES`, ...) live here too, so this
module imports nothing of ``embedding_clustering`` (which imports it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cosinetrack.errors import CosineTrackConfigError
from cosinetrack.options import check_option_names

__all__ = [
    "ASSIGN_RULES",
    "BACKGROUND_RULES",
    "CLUSTERING_MODES",
    "NOISE_RULES",
    "ClusteringOptions",
    "check_cluster_kwargs",
]

#: names accepted by ``background=`` (besides ``None`` and an explicit embedding vector).
BACKGROUND_RULES = ("auto", "dominant", "median", "largest", "none")
#: names accepted by ``noise=``.
NOISE_RULES = ("background", "nearest")
#: names accepted by ``mode=``: ``"exact"`` (HDBSCAN on every foreground pixel, or on ``max_points`` random
#: ones) and ``"fast"`` (HDBSCAN on a spatial grid sample, every pixel labeled from the sample).
CLUSTERING_MODES = ("exact", "fast")
#: names accepted by ``assign=`` (how ``mode="fast"`` labels the pixels that were not sampled).
ASSIGN_RULES = ("nearest_sample", "mean_direction", "local_direction")


@dataclasses.dataclass(frozen=True)
class ClusteringOptions:
    """The options of :func:`~cosinetrack.clustering.cluster_embeddings`, checked when built.

    Every field has the name and the default of the keyword of ``cluster_embeddings``; build one from a
    config section with :meth:`from_mapping` and change fields with :func:`dataclasses.replace` (which
    checks again). The per-image ``foreground_mask`` is an argument of ``cluster_embeddings``, not an
    option.

    Raises (when built):
        ValueError: an invalid value, naming the option (e.g. ``min_samples: must be >= 1, got 0``).
    """

    coordinate_scale: float = 0.001
    """``c``, the factor of the pixel coordinates (in pixels of the embedding image) appended to the unit
    embeddings. The paper: 0.001 (CVPPP, Fluo-GOWT1, Fluo-SIM+) to 0.1 (Fluo-MSC). ``0`` clusters by
    embedding alone; larger values split far-apart instances that share an embedding direction."""

    min_samples: int = 50
    """``m_pts``, HDBSCAN ``min_samples`` (the neighborhood size of its core distance), ``>= 1``."""

    min_cluster_size: int | None = None
    """HDBSCAN ``min_cluster_size`` (``>= 2``); ``None`` = ``min_samples`` (the paper)."""

    min_size: float | None = None
    """``t_size`` in pixels; ``None`` = ``min_samples / 2`` (the paper). Counted per frame: an instance
    keeps its pixels in a frame only if it has at least ``min_size`` of them there, so a pair of frames
    never gets a sliver of a few pixels as an instance in one frame."""

    background: str | Sequence[float] | np.ndarray | None = "auto"
    """How background pixels are found:

    - ``"auto"`` (default): the ``foreground_mask`` alone when one is given, else ``"dominant"``.
    - ``"dominant"``: the most populated embedding direction (see
      :func:`~cosinetrack.clustering.estimate_background_embedding`) is the background embedding; pixels
      with cosine similarity ``>= background_threshold`` to it are background and are left out *before*
      clustering. Like ``"median"`` when the background covers most of the image, and robust when it
      covers less than half of it (e.g. close-up plants); fails only when no background is visible at
      all (then it removes the largest instance direction - pass ``None``).
    - ``"median"``: the reference-code rule: the element-wise median embedding is the background
      embedding, same threshold.
    - an embedding vector ``(D,)`` (e.g. the median of the first frame pair of a video, from
      ``estimate_background_embedding``, or ``e_1`` for a network trained with a fixed background
      embedding): same threshold. Its shape is checked against the embeddings by ``cluster_embeddings``.
    - ``"largest"``: no removal before clustering; all pixels are clustered and the cluster with the most
      pixels (over all frames) becomes background. Much slower (HDBSCAN then sees every pixel) and only
      meant for comparison with the paper's wording.
    - ``None`` or ``"none"``: no background rule (all pixels outside ``foreground_mask``, if given, are
      background; HDBSCAN noise is background in any case).

    Removing the background first is what makes HDBSCAN fast: most pixels are background."""

    background_threshold: float = 0.95
    """Cosine similarity to the background embedding at and above which a pixel is background (reference
    code: 0.95)."""

    views: int = 1
    """Number of views the embeddings are made of: ``D = views * d``, each view's ``d`` channels one
    embedding of the same pixel (the four test-time flips of
    :func:`~cosinetrack.inference.merge_flip_views`; the segmenter sets it). With ``views > 1`` a background
    rule that estimates an embedding (``"dominant"``, ``"median"``, also through ``"auto"``) runs per view,
    each view with its own background embedding and ``background_threshold``, and a pixel is background
    when at least half of the views find it background; likewise a cluster becomes background
    (``max_background_similarity``) when at least half of the views' mean directions point at their view's
    background. With one threshold on the merged embedding instead, one view that strays (e.g. in noisy
    background) lowers a pixel's mean similarity below the threshold and the pixel is clustered.
    ``1``: one embedding per pixel."""

    max_background_similarity: float | None = 0.5
    """A cluster whose mean unit embedding has a cosine similarity of at least this to the background
    embedding becomes background (default ``0.5``). These are the rings of mixed background/instance
    embeddings that a smooth network output has around instances and that would otherwise become
    instances of their own; real instances are trained to be orthogonal to the background (cosine ~0).
    Only used when there is a background embedding (``"auto"`` without mask, ``"dominant"``,
    ``"median"``, a vector). ``None``: off, as in the paper and the reference code."""

    noise: str = "background"
    """``"background"`` (default, the paper and reference code): HDBSCAN noise points (label ``-1``,
    typically pixels on instance borders) become background. ``"nearest"``: each noise point joins the
    cluster of its nearest clustered point in data-point space. One of :data:`NOISE_RULES`."""

    split_components: bool = False
    """Split every instance into connected components per frame, as the reference code does (see
    :func:`~cosinetrack.clustering.filter_small_instances`). Useful with small ``coordinate_scale``, when
    far-apart instances sharing an embedding direction end up in one cluster."""

    connectivity: int = 1
    """``1`` (4-neighborhood) or ``2`` (8-neighborhood) for ``split_components``."""

    max_points: int | None = None
    """If more than this many pixels (``>= 2``) are left for HDBSCAN, it clusters a random subset of
    ``max_points`` of them (with ``min_samples`` and ``min_cluster_size`` scaled by the sampling fraction,
    since the density drops by it) and every other pixel takes the label of its nearest sampled point.
    ``None`` (default): no subsampling."""

    cluster_selection_epsilon: float = 0.0
    """HDBSCAN's ``cluster_selection_epsilon``: clusters that split at a data-point distance below this
    are kept together. ``0`` (default, the paper). About ``0.3`` (cosine ~0.955 between unit embeddings)
    stops HDBSCAN from cutting one instance into a core and a rim when the network's embeddings drift
    towards the background near the border; it also keeps same-direction instances together unless
    ``coordinate_scale`` times their distance in pixels exceeds it (use ``split_components`` then)."""

    allow_single_cluster: bool | str = "auto"
    """``"auto"`` (default): HDBSCAN without ``allow_single_cluster``; if it finds no cluster at all, all
    points left after background removal form one instance (one cell, one ventricle), subject to
    ``min_size``. ``True`` / ``False``: HDBSCAN's own option (``True`` is not a good choice: HDBSCAN then
    measures the root's stability from distance infinity and often prefers one all-foreground cluster
    over the real instances, and when it selects the root it keeps only its densest points)."""

    approx_min_span_tree: bool = True
    """HDBSCAN option (faster, default ``True``)."""

    algorithm: str = "best"
    """HDBSCAN ``algorithm`` (``"best"``, ``"boruvka_kdtree"``, ``"boruvka_balltree"``, ``"prims_kdtree"``,
    ...)."""

    n_jobs: int = 1
    """HDBSCAN ``core_dist_n_jobs`` and the workers of the nearest-neighbor queries."""

    eps: float = 1e-8
    """Lower bound of the embedding norm in the normalization."""

    seed: int = 0
    """Seed of the random draws (``"dominant"`` background, ``max_points``)."""

    hdbscan_kwargs: dict[str, Any] | None = None
    """Further keyword arguments for :class:`hdbscan.HDBSCAN`."""

    mode: str = "exact"
    """One of :data:`CLUSTERING_MODES`. ``"exact"`` (default): HDBSCAN on the data points of all foreground
    pixels (or of ``max_points`` random ones). ``"fast"``: HDBSCAN on a spatially stratified sample of
    the foreground, the pixels on a regular grid of stride ``s`` (the same grid in every frame; ``s`` is
    the smallest stride that leaves at most ``sample_points`` foreground pixels, ``1`` = all of them),
    with ``min_samples`` and ``min_cluster_size`` scaled by the sampling fraction like ``max_points``
    does, but not below 5 (a sparse sample must not make HDBSCAN cut instances into pieces); every other
    foreground pixel is then labeled from the sample (``assign``). Background removal, the cluster-level
    background rule, ``min_size`` and ``split_components`` are those of the exact path. ``max_points`` is
    not used. Tens of times faster on a 256 x 256 cell frame pair, but not the same result: on the
    CPU-budget cell model's embeddings (every cell its own direction) the sparse sample merges or drops
    cells that the exact path separates (SEG about 0.05 lower on Fluo-N2DH-SIM+,
    ``docs/benchmarks_cell_inference.md``), so the bundles keep ``"exact"``."""

    sample_points: int = 1000
    """``mode="fast"``: about how many foreground pixels HDBSCAN clusters (an integer ``>= 2``)."""

    assign: str = "mean_direction"
    """``mode="fast"``: how the foreground pixels are labeled from the sample (one of
    :data:`ASSIGN_RULES`). ``"mean_direction"`` (default): the cluster whose mean direction (and mean
    position, weighted by ``c``) is nearest in data-point space (one matrix product; every foreground
    pixel joins a cluster, HDBSCAN noise included). ``"nearest_sample"``: the label (cluster or noise) of
    the nearest, in data-point space, of the (up to four) foreground grid pixels of the same frame that
    surround the pixel, which is what ``max_points`` does with all sampled pixels; a pixel without a
    foreground grid pixel around it falls back to ``"mean_direction"``. On the CPU-budget cell model
    ``"mean_direction"`` was closer to the exact path (``docs/benchmarks_cell_inference.md``).
    ``"local_direction"``: the cluster as ``"mean_direction"``, but ``min_similarity`` is tested against the
    best of the cluster's mean direction and the directions of the cluster's grid pixels around the pixel, so a
    cluster that holds cells of several directions (a small ``c`` lets far cells share one cluster until
    ``split_components``) does not lose the pixels that match none of its mean (``docs/results_cell.md``,
    session 15)."""

    min_similarity: float | None = 0.97
    """``mode="fast"``, ``assign="mean_direction"`` or ``"local_direction"``: a pixel whose cosine similarity
    to its cluster's mean direction (and, ``"local_direction"``, to each grid pixel of its cluster around it)
    is below this (in ``[-1, 1]``) becomes background, like the mixed border pixels that HDBSCAN leaves as
    noise in the exact path (default ``0.97``, chosen on held-out Fluo-N2DH-SIM+ frames: 0.9 / 0.93 / 0.95 /
    0.97 gave SEG 0.732 / 0.743 / 0.746 / 0.756 against 0.757 exact; ``docs/benchmarks_cell_inference.md``).
    ``None``: off."""

    def __post_init__(self) -> None:
        """Check the values (the one place where they are checked); raises ``ValueError`` naming the option."""
        min_samples = int(self.min_samples)
        if min_samples < 1:
            raise ValueError(f"min_samples: must be >= 1, got {min_samples}")
        min_cluster_size = min_samples if self.min_cluster_size is None else int(self.min_cluster_size)
        if min_cluster_size < 2:
            raise ValueError(f"min_cluster_size: must be >= 2 (HDBSCAN), got {min_cluster_size}")
        if self.coordinate_scale < 0 or not np.isfinite(self.coordinate_scale):
            raise ValueError(f"coordinate_scale: must be finite and >= 0, got {self.coordinate_scale}")
        if self.noise not in NOISE_RULES:
            raise ValueError(f"noise: expected one of {NOISE_RULES}, got {self.noise!r}")
        if self.connectivity not in (1, 2):
            raise ValueError(f"connectivity: expected 1 or 2, got {self.connectivity}")
        if self.allow_single_cluster not in (True, False, "auto"):
            raise ValueError(f"allow_single_cluster: expected True, False or 'auto', got {self.allow_single_cluster!r}")
        if self.max_points is not None and int(self.max_points) < 2:
            raise ValueError(f"max_points: must be >= 2 or None, got {self.max_points}")
        if self.mode not in CLUSTERING_MODES:
            raise ValueError(f"mode: expected one of {CLUSTERING_MODES}, got {self.mode!r}")
        if self.min_similarity is not None and not -1.0 <= float(self.min_similarity) <= 1.0:
            raise ValueError(f"min_similarity: must be in [-1, 1] or None, got {self.min_similarity}")
        if self.assign not in ASSIGN_RULES:
            raise ValueError(f"assign: expected one of {ASSIGN_RULES}, got {self.assign!r}")
        sample_points = self.sample_points
        if isinstance(sample_points, bool) or not isinstance(sample_points, (int, np.integer)) or sample_points < 2:
            raise ValueError(f"sample_points: must be an integer >= 2, got {sample_points!r}")
        views = self.views
        if isinstance(views, bool) or not isinstance(views, (int, np.integer)) or views < 1:
            raise ValueError(f"views: must be an integer >= 1, got {views!r}")
        if views > 1 and not (self.background is None or isinstance(self.background, str)):
            raise ValueError("views: a background vector is for one view; use 'dominant' or 'median' with views > 1")
        if views > 1 and self.background == "largest":
            raise ValueError("views: background 'largest' has no per-view rule; use 'dominant' or 'median'")
        if isinstance(self.background, str) and self.background not in BACKGROUND_RULES:
            raise ValueError(
                f"background: expected one of {BACKGROUND_RULES}, None or a (D,) vector, got {self.background!r}"
            )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None, section: str = "clustering_options") -> ClusteringOptions:
        """The options of a config section (a dict of option names to values; ``None`` is no options).

        Args:
            mapping: e.g. a bundle's ``clustering_options``; missing names keep their defaults.
            section: the config key the mapping comes from, named in the errors.

        Raises:
            CosineTrackConfigError: (a ``TypeError``) ``mapping`` is not a dict or names an unknown option
                (the message suggests the closest name and lists the allowed ones; the per-image
                ``foreground_mask`` is an argument of ``cluster_embeddings``, not an option).
            CosineTrackConfigError: (also a ``ValueError``) an invalid value, naming ``section`` and the
                option (``clustering_options: min_samples: must be >= 1, got 0``).
        """
        options = check_option_names(section, mapping, OPTION_NAMES)
        try:
            return cls(**options)
        except ValueError as e:
            raise CosineTrackConfigError(section, str(e)) from e


#: the names of the fields of :class:`ClusteringOptions`, in order.
OPTION_NAMES = tuple(f.name for f in dataclasses.fields(ClusteringOptions))
#: the keywords of :func:`cluster_embeddings`: the options and the per-image ``foreground_mask``.
_CLUSTER_ARGS = frozenset(OPTION_NAMES) | {"foreground_mask"}


def check_cluster_kwargs(kwargs: Mapping[str, Any] | None, section: str = "clustering_options") -> dict[str, Any]:
    """Return ``kwargs`` as a dict after checking they are options of :func:`cluster_embeddings`.

    Args:
        kwargs: clustering options; ``None`` is none.
        section: the config key they come from, named in the error.

    Raises:
        CosineTrackConfigError: (a ``TypeError``) naming the unknown option and listing the valid ones.
    """
    return check_option_names(section, kwargs, _CLUSTER_ARGS)
