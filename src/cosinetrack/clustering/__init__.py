"""Clustering of pixel embeddings into (tracked) instance label images (paper §2.3, appendix 3).

``cluster_embeddings`` is the core function (``(D, H, W)`` or ``(T, D, H, W)`` embeddings ->
int32 ``(H, W)`` / ``(T, H, W)`` labels); ``ClusterEmbeddings(d)`` wrap it as MONAI transforms and
``EmbeddingClusteringHandler`` as an Ignite post-processing handler that can write label PNGs.
"""

from cosinetrack.clustering.embedding_clustering import (
    ASSIGN_RULES,
    BACKGROUND_RULES,
    CLUSTERING_MODES,
    cluster_embeddings,
    embedding_data_points,
    estimate_background_embedding,
    filter_small_instances,
    mean_best_iou,
    normalize_embeddings,
    relabel_consecutive,
    synthetic_embeddings,
)
from cosinetrack.clustering.handlers import EmbeddingClusteringHandler
from cosinetrack.clustering.options import NOISE_RULES, ClusteringOptions, check_cluster_kwargs
from cosinetrack.clustering.transforms import (
    ClusterEmbeddings,
    ClusterEmbeddingsd,
    clustering_for_canvas,
    scale_size_options,
)

__all__ = [
    "ASSIGN_RULES",
    "BACKGROUND_RULES",
    "CLUSTERING_MODES",
    "cluster_embeddings",
    "normalize_embeddings",
    "estimate_background_embedding",
    "embedding_data_points",
    "filter_small_instances",
    "relabel_consecutive",
    "synthetic_embeddings",
    "mean_best_iou",
    "NOISE_RULES",
    "ClusteringOptions",
    "check_cluster_kwargs",
    "clustering_for_canvas",
    "scale_size_options",
    "ClusterEmbeddings",
    "ClusterEmbeddingsd",
    "EmbeddingClusteringHandler",
]
