"""``ClusteringOptions``: the typed options of ``cluster_embeddings``, checked once where they are built."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cosinetrack.clustering import ClusteringOptions, check_cluster_kwargs, cluster_embeddings, synthetic_embeddings
from cosinetrack.errors import CosineTrackConfigError

H, W, D = 32, 40, 6


@pytest.mark.parametrize(
    "mapping",
    [
        None,
        {},
        {"min_samples": 2},
        {"min_samples": 10, "min_cluster_size": 2, "min_size": 0.0},
        {"coordinate_scale": 0.0, "background": None, "max_background_similarity": None},
        {"background": "median", "noise": "nearest", "split_components": True, "connectivity": 2},
        {"background": [1.0, 0.0, 0.0], "max_points": 2, "allow_single_cluster": True},
        {"allow_single_cluster": False, "cluster_selection_epsilon": 0.3, "hdbscan_kwargs": {"leaf_size": 20}},
        {"mode": "fast", "sample_points": 2, "assign": "nearest_sample", "min_similarity": None},
        {"mode": "fast", "sample_points": np.int64(500), "min_similarity": -1.0},
        {"views": 4, "background": "median"},
    ],
)
def test_good_option_sets(mapping):
    options = ClusteringOptions.from_mapping(mapping)
    for name, value in (mapping or {}).items():
        assert getattr(options, name) is value
    defaults = ClusteringOptions()
    for field in dataclasses.fields(ClusteringOptions):
        if field.name not in (mapping or {}):
            assert getattr(options, field.name) == getattr(defaults, field.name)


@pytest.mark.parametrize(
    "mapping, error, match",
    [
        ({"min_samples": 0}, ValueError, r"clustering_options: min_samples: must be >= 1, got 0"),
        ({"min_samples": 1}, ValueError, r"min_cluster_size: must be >= 2 \(HDBSCAN\), got 1"),
        ({"min_cluster_size": 1}, ValueError, "min_cluster_size"),
        ({"coordinate_scale": -0.1}, ValueError, "coordinate_scale: must be finite and >= 0"),
        ({"coordinate_scale": float("inf")}, ValueError, "coordinate_scale"),
        ({"noise": "drop"}, ValueError, r"noise: expected one of \('background', 'nearest'\), got 'drop'"),
        ({"connectivity": 3}, ValueError, "connectivity: expected 1 or 2"),
        ({"allow_single_cluster": "yes"}, ValueError, "allow_single_cluster"),
        ({"max_points": 1}, ValueError, "max_points: must be >= 2 or None"),
        ({"mode": "approximate"}, ValueError, r"mode: expected one of \('exact', 'fast'\), got 'approximate'"),
        ({"mode": None}, ValueError, "mode"),
        ({"min_similarity": 1.5}, ValueError, r"min_similarity: must be in \[-1, 1\]"),
        ({"assign": "knn"}, ValueError, "assign"),
        ({"sample_points": 1}, ValueError, "sample_points: must be an integer >= 2"),
        ({"sample_points": 2.5}, ValueError, "sample_points"),
        ({"sample_points": True}, ValueError, "sample_points"),
        ({"views": 0}, ValueError, "views: must be an integer >= 1, got 0"),
        ({"views": 2.0}, ValueError, "views: must be an integer"),
        ({"views": 4, "background": [1.0, 0.0]}, ValueError, "views: a background vector is for one view"),
        ({"views": 4, "background": "largest"}, ValueError, "views: background 'largest' has no per-view rule"),
        ({"background": "mode"}, ValueError, r"background: expected one of .*'auto'.*, got 'mode'"),
        ({"min_sample": 5}, TypeError, r"clustering_options#min_sample: unknown option 'min_sample' \(did you mean"),
        ({"foreground_mask": None}, TypeError, "clustering_options#foreground_mask: unknown option"),
        ([("min_samples", 5)], TypeError, "clustering_options: expected a dict of options"),
    ],
)
def test_bad_option_sets(mapping, error, match):
    with pytest.raises(error, match=match) as info:
        ClusteringOptions.from_mapping(mapping)
    assert isinstance(info.value, CosineTrackConfigError)  # names the config section


def test_the_section_is_named_and_direct_construction_checks_too():
    with pytest.raises(CosineTrackConfigError, match=r"^bundle#clustering: mode: expected"):
        ClusteringOptions.from_mapping({"mode": "slow"}, section="bundle#clustering")
    with pytest.raises(ValueError, match=r"^min_samples: must be >= 1"):
        ClusteringOptions(min_samples=0)
    with pytest.raises(ValueError, match="connectivity"):
        dataclasses.replace(ClusteringOptions(), connectivity=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ClusteringOptions().min_samples = 3  # type: ignore[misc]


def test_names_are_the_fields_plus_the_foreground_mask():
    names = {f.name for f in dataclasses.fields(ClusteringOptions)}
    assert {"coordinate_scale", "min_samples", "mode", "min_similarity"} <= names
    assert check_cluster_kwargs({n: None for n in names} | {"foreground_mask": None})
    with pytest.raises(CosineTrackConfigError, match=r"did you mean 'max_points'\?\); allowed: algorithm, "):
        check_cluster_kwargs({"max_pionts": 100})


def _embeddings() -> tuple[np.ndarray, np.ndarray]:
    lab = np.zeros((2, H, W), np.int32)
    lab[:, 4:14, 4:16] = 1
    lab[:, 18:28, 22:36] = 2
    lab[1, 8:12, 30:38] = 3
    return synthetic_embeddings(lab, dim=D, num_directions=4, noise=0.01, smooth=0.0, seed=1), lab


@pytest.mark.parametrize(
    "options, kwargs",
    [
        (None, {"min_samples": 8, "coordinate_scale": 0.01}),
        (ClusteringOptions(min_samples=8, coordinate_scale=0.01), {}),
        (ClusteringOptions(min_samples=30, mode="fast"), {"min_samples": 8, "coordinate_scale": 0.01, "mode": "exact"}),
    ],
)
def test_options_and_keywords_give_the_same_labels(options, kwargs):
    emb, lab = _embeddings()
    ref = cluster_embeddings(emb, min_samples=8, coordinate_scale=0.01)
    assert ref.shape == lab.shape and ref.max() == 3
    np.testing.assert_array_equal(cluster_embeddings(emb, options=options, **kwargs), ref)
    mask = lab[0] > 0
    np.testing.assert_array_equal(
        cluster_embeddings(emb, mask, options, **kwargs),
        cluster_embeddings(emb, foreground_mask=mask, min_samples=8, coordinate_scale=0.01),
    )


def test_cluster_embeddings_rejects_unknown_keywords_and_wrong_option_types():
    emb, _ = _embeddings()
    with pytest.raises(TypeError, match=r"cluster_embeddings#min_smaples: unknown option .*did you mean 'min_samples'"):
        cluster_embeddings(emb, min_smaples=8)
    with pytest.raises(TypeError, match=r"expected a ClusteringOptions or None, got dict"):
        cluster_embeddings(emb, options={"min_samples": 8})
    with pytest.raises(ValueError, match="min_samples: must be >= 1"):
        cluster_embeddings(emb, options=ClusteringOptions(min_samples=8), min_samples=0)
