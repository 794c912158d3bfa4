"""NIfTI cine MRI, read and written: cases -> ``(Z, T, H, W)`` arrays, labels back in the input's geometry.

A *case* is one patient: one or more image files and, optionally, label files. Cases come from either

* a datalist (a JSON file, a list of dicts, or an MSD ``dataset.json`` with a ``training`` list), each
  entry ``{"image": path | [paths], "label": path | [paths or null] | null, "label_frames": [int]}``;
* or the MSD-style folder layout ``imagesTr/`` + ``labelsTr/`` (labels matched by file name).

Axis conventions (the whole package): array axis 0 of a NIfTI file is the image row (H), axis 1 the
column (W); the remaining axes are given by ``file_layout``:

* ``"xyt"``: a 2D+t cine slice, ``(H, W, T)``;
* ``"xyz"``: one 3D volume per time frame, ``(H, W, Z)``; several frames of one patient are stacked
  along time when their file names match ``frame_pattern`` (ACDC: ``patient001_frame01``);
* ``"xyzt"``: a 3D+t volume, ``(H, W, Z, T)``;
* ``"auto"``: 4D files are ``xyzt``; 3D files are ``xyz`` when frames are grouped by ``frame_pattern``
  and ``xyt`` otherwise.

The result of :func:`read_cine_case` is an image ``(Z, T, H, W)`` float32 and a label ``(Z, T, H, W)``
int64 in which every frame without a label file holds :data:`~cosinetrack.labels.IGNORE_LABEL` (-1): such
frames are masked out of the loss and of the metrics, never taken as background. 2D+t data has ``Z == 1``.
:func:`write_case_labels` writes ``(Z, T, H, W)`` label predictions back as NIfTI files shaped like the
input files (atomically).

Every problem with the input raises :class:`~cosinetrack.errors.CosineTrackDataError` naming the file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import nibabel as nib
import numpy as np

from cosinetrack.errors import CosineTrackDataError
from cosinetrack.io.atomic import atomic_file
from cosinetrack.labels import IGNORE_LABEL

__all__ = [
    "FILE_LAYOUTS",
    "NIFTI_SUFFIXES",
    "find_msd_cases",
    "load_datalist",
    "resolve_cases",
    "read_nifti_array",
    "parse_label_map",
    "apply_label_map",
    "to_zthw",
    "from_zthw",
    "layout_for",
    "read_cine_case",
    "read_nifti_shape",
    "write_case_labels",
]


FILE_LAYOUTS = ("auto", "xyt", "xyz", "xyzt")

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def _strip_nifti_suffix(name: str) -> str:
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _nifti_files(folder: str) -> list[str]:
    return sorted(
        os.path.join(folder, f)
        for f in os.listdir(folder)
        if f.endswith(NIFTI_SUFFIXES) and not f.startswith((".", "_"))
    )


def _group_by_frame(paths: Sequence[str], frame_pattern: str | None) -> dict[str, list[tuple[int, str]]]:
    """Group file paths into cases: ``{case name: [(frame number, path), ...]}`` sorted by frame."""
    groups: dict[str, list[tuple[int, str]]] = {}
    regex = re.compile(frame_pattern) if frame_pattern else None
    for path in paths:
        stem = _strip_nifti_suffix(os.path.basename(path))
        match = regex.search(stem) if regex else None
        if match:
            case = stem[: match.start()] + stem[match.end() :]
            frame = int(match.group(1))
        else:
            case, frame = stem, 0
        groups.setdefault(case, []).append((frame, path))
    for case, frames in groups.items():
        frames.sort()
        numbers = [f for f, _ in frames]
        if len(set(numbers)) != len(numbers):
            raise CosineTrackDataError(
                frames[0][1], f"case {case!r} has two files for the same frame number: {numbers}"
            )
    return groups


def find_msd_cases(dataset_dir: str, frame_pattern: str | None = None) -> list[dict[str, Any]]:
    """List the cases of an MSD-style folder (``imagesTr/`` and optional ``labelsTr/``).

    Args:
        dataset_dir: folder holding ``imagesTr`` (and ``labelsTr``); if it holds a ``dataset.json``
            with a ``training`` list, that datalist is used instead; a folder with neither but with NIfTI
            files is a folder of images without labels (what a user predicts).
        frame_pattern: regular expression with one group, the frame number, that is cut out of a
            file name to find the case it belongs to (ACDC: ``"_frame(\\d+)"``). ``None``: one file
            per case.

    Returns:
        a list of case dicts ``{"name", "image": [paths], "label": [paths or None]}``, sorted by name.
    """
    if not os.path.isdir(dataset_dir):
        raise CosineTrackDataError(dataset_dir, "the data set folder does not exist")
    images_dir = os.path.join(dataset_dir, "imagesTr")
    if not os.path.isdir(images_dir):
        datalist = os.path.join(dataset_dir, "dataset.json")
        if os.path.isfile(datalist):
            return load_datalist(datalist, frame_pattern=frame_pattern)
        if not _nifti_files(dataset_dir):
            raise CosineTrackDataError(
                dataset_dir,
                "expected an 'imagesTr/' folder (MSD layout), a 'dataset.json' datalist or NIfTI images in it",
            )
        images_dir = dataset_dir  # a plain folder of images (e.g. to predict): no labels
    labels_dir = os.path.join(dataset_dir, "labelsTr")
    label_files = {}
    if os.path.isdir(labels_dir):
        label_files = {_strip_nifti_suffix(os.path.basename(p)): p for p in _nifti_files(labels_dir)}
    image_paths = _nifti_files(images_dir)
    if not image_paths:
        raise CosineTrackDataError(images_dir, "no NIfTI files (.nii or .nii.gz) in this folder")
    cases = []
    for name, frames in sorted(_group_by_frame(image_paths, frame_pattern).items()):
        images = [p for _, p in frames]
        labels = [label_files.get(_strip_nifti_suffix(os.path.basename(p))) for p in images]
        cases.append({"name": name, "image": images, "label": labels})
    return cases


def load_datalist(
    datalist: str | Sequence[Mapping[str, Any]], base_dir: str | None = None, frame_pattern: str | None = None
) -> list[dict[str, Any]]:
    """Read a datalist: a JSON file (list, or MSD ``dataset.json`` with ``training``) or a list of dicts.

    Relative paths are taken relative to ``base_dir`` (default: the JSON file's folder). Entries whose
    ``image`` is one file and that carry no ``name`` are grouped by ``frame_pattern`` like
    :func:`find_msd_cases` does.
    """
    source: str | None = None
    if isinstance(datalist, (str, os.PathLike)):
        source = os.fspath(datalist)
        if not os.path.isfile(source):
            raise CosineTrackDataError(source, "the datalist file does not exist")
        try:
            with open(source) as f:
                content = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise CosineTrackDataError(source, f"cannot read the datalist as JSON ({e})") from e
        base_dir = base_dir or os.path.dirname(os.path.abspath(source))
        entries = content.get("training", content.get("data")) if isinstance(content, dict) else content
    else:
        entries = datalist
    if not isinstance(entries, Sequence) or isinstance(entries, str) or not entries:
        raise CosineTrackDataError(source, "the datalist must be a non-empty list of {'image', 'label'} entries")

    def _abs(p: str | None) -> str | None:
        if p is None:
            return None
        return os.path.normpath(os.path.join(base_dir, p)) if base_dir and not os.path.isabs(p) else p

    cases: list[dict[str, Any]] = []
    singles: dict[str, str | None] = {}
    for k, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or "image" not in entry:
            raise CosineTrackDataError(source, f"datalist entry {k} has no 'image' key: {entry!r}")
        image, label = entry["image"], entry.get("label")
        if isinstance(image, str) and "name" not in entry and "label_frames" not in entry:
            if label is not None and not isinstance(label, str):
                raise CosineTrackDataError(source, f"datalist entry {k}: one image needs one label path")
            singles[_abs(image)] = _abs(label)
            continue
        images = [image] if isinstance(image, str) else list(image)
        labels = label if isinstance(label, (list, tuple)) else [label] * (1 if isinstance(image, str) else 0)
        case = {
            "name": entry.get("name", _strip_nifti_suffix(os.path.basename(images[0]))),
            "image": [_abs(p) for p in images],
            "label": [_abs(p) for p in labels] if labels else [None] * len(images),
        }
        if "label_frames" in entry:
            case["label_frames"] = [int(t) for t in entry["label_frames"]]
            if len(case["label_frames"]) != len(case["label"]):
                raise CosineTrackDataError(source, f"datalist entry {k}: 'label_frames' and 'label' differ in length")
        elif len(case["label"]) != len(case["image"]):
            raise CosineTrackDataError(source, f"datalist entry {k}: 'image' and 'label' lists differ in length")
        cases.append(case)
    for name, frames in _group_by_frame(list(singles), frame_pattern).items():
        images = [p for _, p in frames]
        cases.append({"name": name, "image": images, "label": [singles[p] for p in images]})
    return sorted(cases, key=lambda c: c["name"])


def resolve_cases(
    dataset_dir: str | None = None,
    datalist: str | Sequence[Mapping[str, Any]] | None = None,
    frame_pattern: str | None = None,
) -> list[dict[str, Any]]:
    """The cases of a data set given as a datalist (preferred when given) or an MSD-style folder."""
    if datalist:
        return load_datalist(datalist, base_dir=dataset_dir, frame_pattern=frame_pattern)
    if not dataset_dir:
        raise CosineTrackDataError(None, "give a 'dataset_dir' (MSD layout) or a 'datalist'")
    return find_msd_cases(dataset_dir, frame_pattern=frame_pattern)


def read_nifti_array(path: str, dtype: type = np.float32) -> np.ndarray:
    """Read a NIfTI file into an array (axes as stored: ``(H, W, ...)``), with a clear error when it fails.

    Axes after the fourth must have length 1 (NIfTI's unused dimensions); they are dropped. With an
    integer ``dtype`` (labels) every value must be a finite whole number: a label of 2.5 is an error, never
    truncated to 2.

    Raises:
        CosineTrackDataError: the message starts with ``path``: a missing or unreadable file, an empty
            array or one of RGB / complex voxels, a 5D (or higher) array with more than one element along
            an axis after the fourth, values beyond the range of a float ``dtype`` (float64 1e300 would
            become inf in float32), or (integer ``dtype``) NaN, infinite or fractional values.
    """
    if path is None or not os.path.isfile(path):
        raise CosineTrackDataError(path, "file not found (listed in the data set but missing on disk)")
    try:
        array = np.asarray(nib.load(path).dataobj)
    except Exception as e:  # nibabel raises many types for corrupt files
        raise CosineTrackDataError(path, f"cannot read this file as NIfTI ({type(e).__name__}: {e})") from e
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise CosineTrackDataError(
            path, f"unsupported voxel type {array.dtype} (e.g. RGB or complex); expected one grey value per voxel"
        )
    if array.size == 0:
        raise CosineTrackDataError(path, f"the image is empty (shape {array.shape})")
    if array.ndim > 4:
        extra = array.shape[4:]
        if any(n != 1 for n in extra):
            raise CosineTrackDataError(
                path,
                f"a {array.ndim}D array of shape {array.shape}: only 2D, 3D (x, y, z or t) and 4D (x, y, z, t) "
                f"images are supported, and the axes after the fourth ({extra}) must have length 1 "
                "(one channel / one component per voxel)",
            )
        array = array.reshape(array.shape[:4])
    if np.issubdtype(np.dtype(dtype), np.integer) and not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating):
            raise CosineTrackDataError(path, f"label values must be whole numbers, got data type {array.dtype}")
        finite = np.isfinite(array)
        if not finite.all():
            raise CosineTrackDataError(path, f"the label has {int(array.size - finite.sum())} NaN or Inf values")
        fractional = array != np.round(array)
        if fractional.any():
            shown = ", ".join(f"{v:g}" for v in np.unique(array[fractional])[:5])
            raise CosineTrackDataError(
                path,
                f"label values must be whole numbers; {int(fractional.sum())} voxel(s) hold fractional "
                f"values ({shown}), which would be truncated. Store labels as integers (or check the "
                "scaling slope/intercept of the header)",
            )
    out = array.astype(dtype, copy=False)
    if np.issubdtype(out.dtype, np.floating) and out.dtype.itemsize < array.dtype.itemsize:
        overflow = np.isinf(out) & np.isfinite(array)  # e.g. float64 1e300 -> float32 inf
        if overflow.any():
            raise CosineTrackDataError(
                path,
                f"{int(overflow.sum())} voxel(s) exceed the {out.dtype} range (largest magnitude "
                f"{float(np.abs(array[overflow]).max()):g}); rescale the image",
            )
    return out


def parse_label_map(label_map: Mapping[Any, Any] | None) -> dict[int, int] | None:
    """``{"3": 2, ...}`` (JSON keys are strings) to ``{3: 2, ...}``; ``None`` keeps labels as they are."""
    if label_map is None:
        return None
    return {int(k): int(v) for k, v in dict(label_map).items()}


def apply_label_map(label: np.ndarray, label_map: Mapping[int, int] | None, path: str) -> np.ndarray:
    """Map label values with ``label_map``; a value the map does not list is an error naming ``path``."""
    if label_map is None:
        return label.astype(np.int64)
    values = np.unique(label)
    unknown = sorted(set(values.tolist()) - set(label_map))
    if unknown:
        raise CosineTrackDataError(
            path, f"label values {unknown} are not in label_map {dict(label_map)}; add them to 'label_map'"
        )
    lut = np.zeros(int(values.max()) + 1 if values.size else 1, dtype=np.int64)
    for src, dst in label_map.items():
        if 0 <= src < lut.size:
            lut[src] = dst
    return lut[label.astype(np.int64)]


def to_zthw(array: np.ndarray, layout: str, path: str) -> np.ndarray:
    """One file's array to ``(Z, T, H, W)`` given its layout (``xy`` allowed for one frame of a group)."""
    if layout == "xyzt":
        if array.ndim != 4:
            raise CosineTrackDataError(path, f"expected a 4D (x, y, z, t) volume, got shape {array.shape}")
        return np.transpose(array, (2, 3, 0, 1))
    if layout == "xyt":
        if array.ndim != 3:
            what = "a 2D image where a time axis is required" if array.ndim == 2 else f"shape {array.shape}"
            raise CosineTrackDataError(
                path, f"expected a 2D+t (x, y, t) cine, got {what}; set 'file_layout' or group frames"
            )
        return np.transpose(array, (2, 0, 1))[None]
    if layout == "xyz":
        if array.ndim == 2:
            return array[None, None]
        if array.ndim != 3:
            raise CosineTrackDataError(path, f"expected a 3D (x, y, z) volume, got shape {array.shape}")
        return np.transpose(array, (2, 0, 1))[:, None]
    raise ValueError(f"file_layout must be one of {FILE_LAYOUTS}, got {layout!r}")


def from_zthw(array: np.ndarray, layout: str, ndim: int) -> np.ndarray:
    """Inverse of :func:`to_zthw`: ``(Z, T, H, W)`` back to a file's axis order (``ndim`` = the file's ndim)."""
    if layout == "xyzt":
        return np.transpose(array, (2, 3, 0, 1))
    if layout == "xyt":
        return np.transpose(array[0], (1, 2, 0))
    if layout == "xyz":
        return array[0, 0] if ndim == 2 else np.transpose(array[:, 0], (1, 2, 0))
    raise ValueError(f"file_layout must be one of {FILE_LAYOUTS[1:]}, got {layout!r}")


def layout_for(array: np.ndarray, file_layout: str, grouped: bool, path: str) -> str:
    """The layout of one file: ``file_layout`` unless ``"auto"``, then decided by ndim and grouping."""
    if file_layout != "auto":
        return file_layout
    if array.ndim == 4:
        return "xyzt"
    if array.ndim == 3:
        return "xyz" if grouped else "xyt"
    if array.ndim == 2 and grouped:
        return "xyz"
    raise CosineTrackDataError(
        path,
        f"a {array.ndim}D image where a time axis is required: give a cine (x, y, t), a 3D+t volume, "
        "or several frames grouped by 'frame_pattern'",
    )


def read_cine_case(
    case: Mapping[str, Any], file_layout: str = "auto", label_map: Mapping[Any, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read one case into an image ``(Z, T, H, W)`` float32 and a label ``(Z, T, H, W)`` int64.

    Args:
        case: ``{"image": [paths], "label": [paths or None], "label_frames": [ints] (optional)}``; with
            several image paths, each is one time frame (stacked along T). Without ``label_frames``, label
            ``k`` belongs to image ``k``. With it, each label file is one frame (``xyz``/``xy``) of the
            single image file, at time index ``label_frames[k]``.
        file_layout: see the module docstring.
        label_map: label value mapping (keys may be strings); ``None`` keeps values.

    Frames without a label are :data:`IGNORE_LABEL`. Images must be finite; labels must have the
    image's shape.
    """
    if file_layout not in FILE_LAYOUTS:
        raise ValueError(f"file_layout must be one of {FILE_LAYOUTS}, got {file_layout!r}")
    lmap = parse_label_map(label_map)
    images = list(case["image"]) if not isinstance(case["image"], str) else [case["image"]]
    labels = case.get("label") or [None] * len(images)
    labels = [labels] if isinstance(labels, str) else list(labels)
    grouped = len(images) > 1

    frames = []
    for path in images:
        array = read_nifti_array(path)
        layout = layout_for(array, file_layout, grouped, path)
        bad = ~np.isfinite(array)
        if bad.any():
            raise CosineTrackDataError(path, f"the image has {int(bad.sum())} NaN or Inf values")
        frames.append((to_zthw(array, layout, path), path))
    shapes = {f.shape[0:1] + f.shape[2:] for f, _ in frames}
    if len(shapes) > 1:
        raise CosineTrackDataError(images[0], f"the frames of this case differ in (Z, H, W): {sorted(shapes)}")
    image = np.concatenate([f for f, _ in frames], axis=1)
    label = np.full(image.shape, IGNORE_LABEL, dtype=np.int64)

    label_frames = case.get("label_frames")
    if label_frames is not None:
        for t, path in zip(label_frames, labels):
            if path is None:
                continue
            lab = to_zthw(read_nifti_array(path, np.int64), "xyz", path)
            if lab.shape[0:1] + lab.shape[2:] != image.shape[0:1] + image.shape[2:] or not 0 <= t < image.shape[1]:
                raise CosineTrackDataError(
                    path, f"label shape {lab.shape} (Z,1,H,W) at frame {t} does not fit image {image.shape} (Z,T,H,W)"
                )
            label[:, t : t + 1] = apply_label_map(lab, lmap, path)
        return image, label

    t0 = 0
    for (frame, image_path), path in zip(frames, labels):
        nt = frame.shape[1]
        if path is not None:
            raw = read_nifti_array(path, np.int64)
            if raw.shape != read_nifti_shape(image_path):
                raise CosineTrackDataError(
                    path,
                    f"label shape {raw.shape} differs from image shape {read_nifti_shape(image_path)} "
                    f"({os.path.basename(image_path)})",
                )
            layout = layout_for(raw, file_layout, grouped, path)
            label[:, t0 : t0 + nt] = apply_label_map(to_zthw(raw, layout, path), lmap, path)
        t0 += nt
    return image, label


def read_nifti_shape(path: str) -> tuple[int, ...]:
    """The array shape of a NIfTI file (as :func:`read_nifti_array` returns it), read from the header."""
    shape = tuple(int(s) for s in nib.load(path).shape)
    return shape[:4] if len(shape) > 4 else shape


def write_case_labels(
    label: np.ndarray, case: Mapping[str, Any], out_dir: str, file_layout: str = "auto", suffix: str = ""
) -> list[str]:
    """Write ``label`` ``(Z, T, H, W)`` as one uint8 NIfTI per input image file of ``case``.

    Each output has its input's shape, axis order, affine and header (as uint8), and the input's file name
    with ``suffix`` before the extension, in ``out_dir``. Files are written atomically. Returns the paths.
    """
    images = [case["image"]] if isinstance(case["image"], str) else list(case["image"])
    grouped = len(images) > 1
    written, t0 = [], 0
    for path in images:
        ref = nib.load(path)
        ndim = len(ref.shape)
        layout = layout_for(np.empty((1,) * ndim), file_layout, grouped, path)
        nt = ref.shape[3] if layout == "xyzt" else ref.shape[2] if layout == "xyt" else 1
        array = from_zthw(label[:, t0 : t0 + nt], layout, ndim).astype(np.uint8)
        t0 += nt
        name = os.path.basename(path)
        ext = next((e for e in NIFTI_SUFFIXES if name.endswith(e)), "")
        out = os.path.join(out_dir, name[: len(name) - len(ext)] + suffix + (ext or ".nii.gz"))
        header = ref.header.copy()
        header.set_data_dtype(np.uint8)
        with atomic_file(out, suffix=ext or ".nii.gz") as tmp:
            nib.save(nib.Nifti1Image(array, ref.affine, header), tmp)
        written.append(out)
    return written
