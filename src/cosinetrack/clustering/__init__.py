"""Clustering of pixel embeddings into (tracked) instance label images (paper §2.3, appendix 3).

``cluster_embeddings`` is the core function (``(D, H, W)`` or ``(T, D, H, W)`` embeddings ->
int32 ``(H, W)`` / ``(T, H, W)`` labels); ``ClusterEmbeddings(d)`` wrap it as MONAI transforms and
``EmbeddingClusteringHandler`` as an Ignite post-processing handler that can write label PNGs.
"""

from cosinetrack.clustering.embedding_clustering import (
    BACKGROUND_RULES,
    cluster_embeddings,
    embedding_data_points,
    estimate_background_embedding,
    filter_small_instances,
    mean_best_iou,
    normalize_embeddings,
    relabel_consecutive,
    synthetic_embeddings,
)
from cosinetrack.clustering.handlers import (
    EmbeddingClusteringHandler,
    InstancePNGWriter,
    cluster_folder,
    instance_palette,
    read_instance_png,
    restore_label_size,
    write_instance_png,
)
from cosinetrack.clustering.transforms import (
    ClusterEmbeddings,
    ClusterEmbeddingsd,
    check_cluster_kwargs,
    clustering_for_canvas,
)

__all__ = [
    "BACKGROUND_RULES",
    "ClusterEmbeddings",
    "ClusterEmbeddingsd",
    "EmbeddingClusteringHandler",
    "InstancePNGWriter",
    "check_cluster_kwargs",
    "clustering_for_canvas",
    "cluster_embeddings",
    "cluster_folder",
    "embedding_data_points",
    "estimate_background_embedding",
    "filter_small_instances",
    "instance_palette",
    "mean_best_iou",
    "normalize_embeddings",
    "read_instance_png",
    "restore_label_size",
    "relabel_consecutive",
    "synthetic_embeddings",
    "write_instance_png",
]
