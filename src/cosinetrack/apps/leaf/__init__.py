"""The leaf wing: CVPPP plant photos, leaf instance segmentation."""

from cosinetrack.apps.leaf.cvppp import (
    CVPPP_PALETTE,
    check_leaf_count,
    count_leaves,
    cvppp_palette,
    find_cvppp_plants,
    find_plant_images,
    read_cvppp_image,
    read_cvppp_label,
    read_cvppp_plant,
    read_leaf_counts,
    write_cvppp_image,
    write_cvppp_label,
    write_leaf_counts,
)
from cosinetrack.apps.leaf.datasets import CVPPPDataset
from cosinetrack.apps.leaf.pipeline import cluster_folder, segment_image_instances, segment_plants_to_folder
from cosinetrack.apps.leaf.synthetic import (
    GENERATOR_VERSION,
    MAX_LEAVES,
    MIN_LEAVES,
    ensure_synthetic_leaf_dataset,
    generate_rosette,
    main,
    write_synthetic_leaf_dataset,
)

__all__ = [
    "CVPPP_PALETTE",
    "check_leaf_count",
    "count_leaves",
    "cvppp_palette",
    "find_cvppp_plants",
    "find_plant_images",
    "read_cvppp_image",
    "read_cvppp_label",
    "read_cvppp_plant",
    "read_leaf_counts",
    "write_cvppp_image",
    "write_cvppp_label",
    "write_leaf_counts",
    "GENERATOR_VERSION",
    "MIN_LEAVES",
    "MAX_LEAVES",
    "generate_rosette",
    "write_synthetic_leaf_dataset",
    "ensure_synthetic_leaf_dataset",
    "main",
    "CVPPPDataset",
    "segment_image_instances",
    "segment_plants_to_folder",
    "cluster_folder",
]
