"""Every bundle's ``metadata.json`` against the MONAI bundle specification, offline (no schema download).

The mandatory keys and their JSON types follow the MONAI Bundle Specification (docs.monai.io,
"metadata.json File") and the 2024-07-25 metadata schema that introduced ``required_packages_version``;
``monai.bundle.utils.DEFAULT_METADATA`` (what ``monai.bundle init_bundle`` writes) must be covered too.
``required_packages_version`` lists every direct runtime dependency of ``pyproject.toml`` (torch, MONAI
and NumPy have their own ``*_version`` keys) and not the project itself, each with a version that meets
the pyproject bound.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import requires

import pytest
from conftest import REPO_ROOT
from monai.bundle import ConfigParser
from monai.bundle.utils import DEFAULT_METADATA
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

BUNDLES = ["cell", "leaf", "lv_mri"]
SCHEMA = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"

# (key, JSON type) of the specification's mandatory top-level keys
REQUIRED_KEYS = [
    ("schema", str),
    ("version", str),
    ("monai_version", str),
    ("pytorch_version", str),
    ("numpy_version", str),
    ("required_packages_version", dict),
    ("task", str),
    ("description", str),
    ("authors", str),
    ("copyright", str),
    ("network_data_format", dict),
]
# (key, JSON type) of the optional keys, when present
OPTIONAL_KEYS = [
    ("changelog", dict),
    ("intended_use", str),
    ("data_source", str),
    ("data_type", str),
    ("image_classes", str),
    ("label_classes", str),
    ("pred_classes", str),
    ("eval_metrics", dict),
    ("references", list),
    ("name", str),
]
# (key, JSON type) of every tensor format specifier in network_data_format inputs / outputs
TENSOR_KEYS = [
    ("type", str),
    ("format", str),
    ("modality", str),
    ("num_channels", int),
    ("spatial_shape", list),
    ("dtype", str),
    ("value_range", list),
    ("is_patch_data", bool),
    ("channel_def", dict),
]
# packages whose version has a key of its own
OWN_KEYS = {"torch": "pytorch_version", "monai": "monai_version", "numpy": "numpy_version"}


def _metadata(bundle: str) -> dict:
    with open(REPO_ROOT / "bundles" / bundle / "metadata.json") as f:
        return json.load(f)


def _runtime_requirements() -> list[Requirement]:
    """``[project] dependencies`` of pyproject.toml (Python 3.10: of the installed project's metadata)."""
    if sys.version_info >= (3, 11):
        import tomllib

        with open(REPO_ROOT / "pyproject.toml", "rb") as f:
            lines = tomllib.load(f)["project"]["dependencies"]
    else:
        lines = [r for r in requires("cosinetrack") or [] if "extra ==" not in r]
    return [Requirement(r) for r in lines]


CASES = [(b, k, t) for b in BUNDLES for k, t in REQUIRED_KEYS]


@pytest.mark.parametrize("bundle, key, json_type", CASES, ids=[f"{b}-{k}" for b, k, _ in CASES])
def test_required_metadata_key(bundle, key, json_type):
    meta = _metadata(bundle)
    assert key in meta, f"bundles/{bundle}/metadata.json lacks the mandatory key {key!r}"
    assert isinstance(meta[key], json_type), f"{key} must be a JSON {json_type.__name__}"
    if json_type is str:
        assert meta[key].strip(), f"{key} is empty"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_types_versions_and_tensor_formats(bundle):
    meta = _metadata(bundle)
    assert meta["schema"] == SCHEMA  # the schema that defines required_packages_version
    assert set(DEFAULT_METADATA) <= set(meta), "keys that monai.bundle init_bundle writes are missing"
    for key, json_type in OPTIONAL_KEYS:
        assert key not in meta or isinstance(meta[key], json_type), key
    assert meta["version"] in meta.get("changelog", {meta["version"]: ""})
    for key in ("version", "monai_version", "pytorch_version", "numpy_version"):
        Version(meta[key])  # a PEP 440 version, not e.g. "unknown"
    # MONAI renames the deprecated 'optional_packages_version' to 'required_packages_version' when it
    # reads the metadata, replacing the list: it must not be there
    assert "optional_packages_version" not in meta
    fmt = meta["network_data_format"]
    assert set(fmt) >= {"inputs", "outputs"} and fmt["inputs"] and fmt["outputs"]
    for io in ("inputs", "outputs"):
        for name, tensor in fmt[io].items():
            for key, json_type in TENSOR_KEYS:
                assert isinstance(tensor.get(key), json_type), f"network_data_format#{io}#{name}#{key}"
            assert all(isinstance(n, (int, str)) for n in tensor["spatial_shape"])
            assert len(tensor["value_range"]) in (0, 2)
            assert tensor["num_channels"] > 0


DEP_CASES = [(b, r.name) for b in BUNDLES for r in _runtime_requirements()]


@pytest.mark.parametrize("bundle, package", DEP_CASES, ids=[f"{b}-{p}" for b, p in DEP_CASES])
def test_every_runtime_dependency_is_listed_with_a_version_meeting_pyproject(bundle, package):
    meta = _metadata(bundle)
    requirement = next(r for r in _runtime_requirements() if r.name == package)
    if canonicalize_name(package) in OWN_KEYS:
        version = meta[OWN_KEYS[canonicalize_name(package)]]
    else:
        listed = {canonicalize_name(k): v for k, v in meta["required_packages_version"].items()}
        assert canonicalize_name(package) in listed, f"bundles/{bundle}/metadata.json: {package} not listed"
        version = listed[canonicalize_name(package)]
    assert requirement.specifier.contains(Version(version), prereleases=True), f"{package} {version} vs {requirement}"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_required_packages_exclude_the_project_and_survive_monai_loading(bundle):
    meta = _metadata(bundle)
    listed = {canonicalize_name(k) for k in meta["required_packages_version"]}
    assert "cosinetrack" not in listed  # the project itself is what the bundle ships, not a dependency
    assert not listed & set(OWN_KEYS), "torch, monai and numpy have keys of their own"
    for version in meta["required_packages_version"].values():
        Version(version)  # PEP 440, so that an installer can compare it
    parser = ConfigParser()  # as `python -m monai.bundle run --meta_file ...` reads it
    parser.read_meta(str(REPO_ROOT / "bundles" / bundle / "metadata.json"))
    assert parser.get("_meta_#required_packages_version") == meta["required_packages_version"]
