"""Reader and writer of the official CVPPP leaf segmentation layout (A1, Arabidopsis).

Layout of one data set folder (e.g. ``cvppp/A1``), as distributed by the CVPPP 2017 challenge::

    A1/plant001_rgb.png     the photograph: RGBA PNG (alpha always 255), e.g. 500 x 530 (W x H)
    A1/plant001_label.png   leaf instances: palette ("P" mode) PNG whose pixel value (the palette
                            index) is the leaf id, 0 = background; the palette only colors them
    A1/A1.csv               leaf counts, no header, one line per plant: ``plant001_rgb.png, 15``
    ...

Other files (``*_fg.png``, ``*_centers.png``, ``dataset.json`` of the synthetic generator) are ignored.
Plant names are the file names without ``_rgb.png`` (``"plant001"``); real sets skip numbers.

Conventions
-----------
* Images are returned channel first, ``(3, H, W)`` float32 in ``[0, 1]`` (8-bit value / 255); axis 1 =
  image rows (top to bottom), axis 2 = columns. The alpha channel is dropped.
* Labels are ``(H, W)`` int64: 0 = background, ``k > 0`` = leaf ``k`` (ids are the palette indices as
  stored, not renumbered).
* Leaf counts (:func:`read_leaf_counts`) are keyed by plant name (``"plant001"``). The number of leaves
  of a label image is the number of distinct positive ids in it (:func:`count_leaves`), which
  :func:`check_leaf_count` compares with the csv.
* Bad input raises :class:`~cosinetrack.errors.CosineTrackDataError` naming the file; writers are atomic.
"""

from __future__ import annotations

import csv
import glob
import os
import warnings
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from cosinetrack.errors import CosineTrackDataError
from cosinetrack.io.atomic import atomic_file

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
]

_RGB_SUFFIX = "_rgb.png"
_LABEL_SUFFIX = "_label.png"

#: The colors (RGB) of leaf ids 0..20 in the official A1 label files (Tango palette, 0 = black).
CVPPP_PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (252, 233, 79), (114, 159, 207), (239, 41, 41), (173, 127, 168), (138, 226, 52),
    (233, 185, 110), (252, 175, 62), (211, 215, 207), (196, 160, 0), (32, 74, 135), (164, 0, 0),
    (92, 53, 102), (78, 154, 6), (143, 89, 2), (206, 92, 0), (136, 138, 133), (237, 212, 0),
    (52, 101, 164), (204, 0, 0), (117, 80, 123),
)  # fmt: skip


def cvppp_palette(num_colors: int = 256) -> np.ndarray:
    """``(num_colors, 3)`` uint8 RGB palette: the official A1 colors for ids 0..20, then fixed
    pseudo-random bright colors (the same on every call) for higher ids."""
    if not 1 <= num_colors <= 256:
        raise ValueError(f"num_colors must be in 1..256, got {num_colors}")
    base = np.array(CVPPP_PALETTE, dtype=np.uint8)
    if num_colors <= len(base):
        return base[:num_colors].copy()
    extra = np.random.default_rng(20170).integers(40, 256, size=(256 - len(base), 3)).astype(np.uint8)
    return np.concatenate([base, extra])[:num_colors]


# ----------------------------------------------------------------------------------------------------
# finding plants
# ----------------------------------------------------------------------------------------------------


def find_cvppp_plants(dataset_dir: str | os.PathLike) -> list[dict]:
    """List the plants of a CVPPP data set folder (``plantNNN_rgb.png`` + ``plantNNN_label.png``).

    Args:
        dataset_dir: the folder holding the ``*_rgb.png`` files (e.g. ``.../cvppp/A1``).

    Returns:
        ``[{"name": "plant001", "image": abs path of the rgb png, "label": abs path of the label png or
        None when there is none (test sets)}, ...]`` sorted by name.

    Raises:
        CosineTrackDataError: the folder is missing, or holds no ``*_rgb.png`` file.
    """
    folder = os.path.abspath(os.fspath(dataset_dir))
    if not os.path.isdir(folder):
        raise CosineTrackDataError(folder, "CVPPP data set folder not found (expected plantNNN_rgb.png files in it)")
    plants = []
    for image in sorted(glob.glob(os.path.join(glob.escape(folder), f"*{_RGB_SUFFIX}"))):
        name = os.path.basename(image)[: -len(_RGB_SUFFIX)]
        label = os.path.join(folder, f"{name}{_LABEL_SUFFIX}")
        plants.append({"name": name, "image": image, "label": label if os.path.isfile(label) else None})
    if not plants:
        raise CosineTrackDataError(
            folder,
            f"no CVPPP plants found: expected files named like plant001{_RGB_SUFFIX} (and plant001"
            f"{_LABEL_SUFFIX}) in this folder",
        )
    return sorted(plants, key=lambda p: p["name"])


_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_NOT_PHOTOS = ("_label", "_fg", "_centers")


def find_plant_images(input_dir: str | os.PathLike) -> list[dict]:
    """List the photographs of a folder of the user's plant images, for inference.

    Every image file (png, jpg, tif, bmp) whose name does not end in ``_label``, ``_fg`` or ``_centers``
    is a photograph, named by its file name without extension and without a trailing ``_rgb`` (so the
    CVPPP ``plantNNN_rgb.png`` is ``plantNNN``, and its result ``plantNNN_label.png``).

    Returns:
        ``[{"name", "image": abs path, "label": None}, ...]`` sorted by name, as :func:`find_cvppp_plants`.

    Raises:
        CosineTrackDataError: the folder is missing or holds no image file; two files give one name.
    """
    folder = os.path.abspath(os.fspath(input_dir))
    if not os.path.isdir(folder):
        raise CosineTrackDataError(folder, "input folder of plant images not found")
    images: dict[str, str] = {}
    for path in sorted(glob.glob(os.path.join(glob.escape(folder), "*"))):
        stem, ext = os.path.splitext(os.path.basename(path))
        if ext.lower() not in _IMAGE_EXTENSIONS or stem.endswith(_NOT_PHOTOS) or not os.path.isfile(path):
            continue
        name = stem[: -len("_rgb")] if stem.endswith("_rgb") else stem
        if name in images:
            raise CosineTrackDataError(path, f"gives the same plant name {name!r} as {images[name]}; rename one")
        images[name] = path
    if not images:
        raise CosineTrackDataError(folder, f"no image files ({', '.join(_IMAGE_EXTENSIONS)}) in this folder")
    return [{"name": n, "image": p, "label": None} for n, p in sorted(images.items())]


# ----------------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------------


def _open_png(path: str | os.PathLike) -> Image.Image:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CosineTrackDataError(path, "file not found")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        problem = f"cannot read the image ({type(exc).__name__}: {exc}); is it a valid PNG?"
        raise CosineTrackDataError(path, problem) from exc
    return img


def read_cvppp_image(path: str | os.PathLike) -> np.ndarray:
    """Read a plant photograph as a ``(3, H, W)`` float32 array in ``[0, 1]``.

    RGBA (the official files) and RGB files are accepted, 8 bits per channel; the alpha channel is
    dropped. Greyscale ("L"/"LA", black-and-white "1") files are repeated over the three channels, 16-bit
    greyscale ("I;16") ones too after scaling by 1/65535; CMYK (some JPEGs) is converted to RGB.

    Raises:
        CosineTrackDataError: missing or unreadable file, or another image mode (e.g. a palette image,
            which is most likely a label file given by mistake, or a 32-bit / floating-point image).
    """
    img = _open_png(path)
    if img.mode in ("I;16", "I;16B", "I;16L"):
        grey = np.asarray(img).astype(np.float32) / np.float32(65535.0)
        return np.ascontiguousarray(np.repeat(grey[None], 3, axis=0))
    if img.mode == "CMYK":
        img = img.convert("RGB")
    if img.mode in ("RGBA", "RGB"):
        arr = np.asarray(img)[..., :3]
    elif img.mode in ("L", "LA", "1"):
        arr = np.repeat(np.asarray(img.convert("L"))[..., None], 3, axis=2)
    elif img.mode in ("P", "PA"):
        raise CosineTrackDataError(
            path, "palette image where an RGB(A) photograph was expected; is this a label file (plantNNN_label.png)?"
        )
    else:
        raise CosineTrackDataError(path, f"unsupported image mode {img.mode!r}; expected an 8-bit RGBA or RGB PNG")
    return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)


def read_cvppp_label(path: str | os.PathLike) -> np.ndarray:
    """Read a leaf label image as an ``(H, W)`` int64 array: pixel value = leaf id, 0 = background.

    The official files are palette ("P") PNGs whose palette *index* is the leaf id; they are read
    without applying the palette. Greyscale-coded ids (8-bit "L", 16-bit "I;16" or 32-bit "I" PNGs) are
    accepted as well and read as is.

    Raises:
        CosineTrackDataError: missing or unreadable file, or a color (RGB/RGBA) image: color-coded
            labels are ambiguous (which color is which id?), so a palette PNG is required.
    """
    img = _open_png(path)
    if img.mode in ("P", "L", "I;16", "I;16B", "I;16L", "I"):
        labels = np.asarray(img).astype(np.int64)
    elif img.mode in ("RGB", "RGBA"):
        raise CosineTrackDataError(
            path,
            f"color ({img.mode}) label image: a palette PNG (mode 'P', pixel value = leaf id, 0 = "
            "background) is expected, like the official CVPPP plantNNN_label.png files",
        )
    else:
        raise CosineTrackDataError(path, f"unsupported label image mode {img.mode!r}; expected a palette PNG")
    if labels.ndim != 2:
        raise CosineTrackDataError(path, f"label image must be 2D, got shape {labels.shape}")
    if labels.min(initial=0) < 0:
        raise CosineTrackDataError(path, "negative leaf ids in the label image")
    return labels


def read_cvppp_plant(plant: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """Read one entry of :func:`find_cvppp_plants`: ``(image (3, H, W) float32, label (H, W) int64 or None)``.

    Raises:
        CosineTrackDataError: as the readers, or when image and label sizes differ (names the label).
    """
    image = read_cvppp_image(plant["image"])
    if plant.get("label") is None:
        return image, None
    label = read_cvppp_label(plant["label"])
    if label.shape != image.shape[1:]:
        raise CosineTrackDataError(
            plant["label"],
            f"label size {label.shape} (H, W) differs from the image size {image.shape[1:]} of {plant['image']}",
        )
    return image, label


def count_leaves(labels: np.ndarray) -> int:
    """Number of leaves of a label image: distinct ids > 0 (background 0 and "no label" -1 excluded)."""
    ids = np.unique(np.asarray(labels))
    return int(np.count_nonzero(ids > 0))


def read_leaf_counts(csv_path: str | os.PathLike) -> dict[str, int]:
    """Read the leaf counts of an ``A1.csv`` file: ``{"plant001": 15, ...}``.

    The official file has no header and two columns, the image file name and the count
    (``plant001_rgb.png, 15``). A header line (first line whose count is not an integer) is skipped;
    names are reduced to the plant name (a trailing ``_rgb.png``, ``_label.png`` or ``.png`` is removed).

    Raises:
        CosineTrackDataError: missing file, a malformed line (names the line number), a negative count
            or a plant listed twice.
    """
    path = os.fspath(csv_path)
    if not os.path.isfile(path):
        raise CosineTrackDataError(path, "leaf count csv not found")
    counts: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    for lineno, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if len(cells) < 2 or not cells[0]:
            raise CosineTrackDataError(path, f"line {lineno}: expected 'plantNNN_rgb.png, count', got {row!r}")
        try:
            count = int(cells[1])
        except ValueError:
            if not counts and lineno == 1:
                continue  # header
            raise CosineTrackDataError(path, f"line {lineno}: leaf count {cells[1]!r} is not an integer") from None
        if count < 0:
            raise CosineTrackDataError(path, f"line {lineno}: negative leaf count {count}")
        name = cells[0]
        for suffix in (_RGB_SUFFIX, _LABEL_SUFFIX, ".png"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        if name in counts:
            raise CosineTrackDataError(path, f"line {lineno}: plant {name!r} is listed twice")
        counts[name] = count
    return counts


def check_leaf_count(
    labels: np.ndarray,
    expected: int,
    path: str | os.PathLike | None = None,
    on_mismatch: Literal["raise", "warn"] = "raise",
) -> int:
    """Check that a label image has ``expected`` leaves (distinct ids > 0), as listed in ``A1.csv``.

    Args:
        labels: ``(H, W)`` label image.
        expected: the leaf count from the csv.
        path: the label file, named in the message.
        on_mismatch: ``"raise"`` (default) raises :class:`CosineTrackDataError`; ``"warn"`` issues a
            ``UserWarning`` and returns the actual count.

    Returns:
        The number of leaves in ``labels``.
    """
    if on_mismatch not in ("raise", "warn"):
        raise ValueError(f"on_mismatch must be 'raise' or 'warn', got {on_mismatch!r}")
    n = count_leaves(labels)
    if n != int(expected):
        problem = f"label image has {n} leaves but the leaf count csv says {int(expected)}"
        if on_mismatch == "raise":
            raise CosineTrackDataError(path, problem)
        where = f"{os.fspath(path)}: " if path is not None else ""
        warnings.warn(where + problem, UserWarning, stacklevel=2)
    return n


# ----------------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------------


def write_cvppp_label(labels: np.ndarray, path: str | os.PathLike) -> None:
    """Write a leaf label image like the official ``plantNNN_label.png``: palette PNG, index = leaf id.

    The palette has ``max id + 1`` entries (official colors, see :func:`cvppp_palette`), so files with
    at most 15 leaves are 4-bit PNGs as in the official data. Written atomically.

    Args:
        labels: ``(H, W)`` integer array (or torch tensor on the CPU), 0 = background, leaf ids 1..255.
        path: output file (``.png``).

    Raises:
        ValueError: not 2D, not integer, or ids outside 0..255 (e.g. the "no label" value -1).
    """
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {arr.shape}")
    if arr.dtype.kind not in "iub":
        raise ValueError(f"labels must be an integer array, got dtype {arr.dtype}")
    lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    if lo < 0 or hi > 255:
        raise ValueError(f"leaf ids must be in 0..255 to fit a palette PNG, got range {lo}..{hi}")
    img = Image.frombytes("P", (arr.shape[1], arr.shape[0]), np.ascontiguousarray(arr, dtype=np.uint8).tobytes())
    img.putpalette(cvppp_palette(hi + 1).reshape(-1).tolist())
    with atomic_file(os.fspath(path), ".png") as tmp:
        img.save(tmp, format="PNG")


def write_cvppp_image(image: np.ndarray, path: str | os.PathLike) -> None:
    """Write a plant photograph like the official ``plantNNN_rgb.png``: 8-bit RGBA PNG, alpha 255, atomically.

    Args:
        image: ``(3, H, W)`` channel-first array: float in ``[0, 1]`` (rounded to 8 bits; values outside
            are clipped) or uint8. :func:`read_cvppp_image` reads it back to within 1/510.
        path: output file (``.png``).
    """
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise ValueError(f"image must be channel-first (3, H, W), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        rgb = arr
    elif arr.dtype.kind == "f":
        rgb = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"image must be float in [0, 1] or uint8, got dtype {arr.dtype}")
    hwc = np.concatenate([rgb.transpose(1, 2, 0), np.full((*rgb.shape[1:], 1), 255, np.uint8)], axis=2)
    with atomic_file(os.fspath(path), ".png") as tmp:
        Image.frombytes("RGBA", (hwc.shape[1], hwc.shape[0]), np.ascontiguousarray(hwc).tobytes()).save(
            tmp, format="PNG"
        )


def write_leaf_counts(counts: dict[str, int], path: str | os.PathLike) -> None:
    """Write leaf counts like the official ``A1.csv`` (no header, ``plant001_rgb.png, 15``), atomically.

    Args:
        counts: ``{"plant001": 15, ...}`` keyed by plant name; written sorted by name.
        path: output file.
    """
    lines = "".join(f"{name}{_RGB_SUFFIX}, {int(n)}\n" for name, n in sorted(counts.items()))
    with atomic_file(os.fspath(path), ".csv") as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(lines)
