"""Deterministic synthetic rosette plants (top view) with leaf instance labels: the embedded leaf data set.

Each *plant* mimics a CVPPP A1 photograph of an Arabidopsis rosette in a pot:

* **leaves** (5 to 20 per plant) grow from the rosette center in phyllotactic order: leaf ``k`` (``k = 0``
  the oldest) points at angle ``theta0 + k * 137.5 deg`` (golden angle, random handedness, a little
  jitter). Each leaf is a thin **petiole** (stalk) starting near the center followed by a **blade**
  whose half-width along its axis follows ``s**p * (1 - s)**q`` (``s`` in [0, 1] from the base to the
  tip; ``p`` sets the roundness of the base, ``q`` the pointedness of the tip), with a wavy margin and a
  slight sideways bend. Older leaves are longer and drawn first; younger, smaller leaves are drawn on
  top of them, so the label map holds the *visible* part of each leaf (occlusion), and each leaf
  casts a soft shadow on what lies below it;
* **leaf appearance**: a per-plant green (varying per leaf, younger leaves a little lighter and more
  yellow), darker towards the margin (dome shading), a bright midrib vein and a few side veins, pale
  petioles, fine texture;
* **background**: dark brown soil with multi-scale noise, light grains and pebbles, sometimes
  yellow-green moss, inside a round pot with a dark rim, standing in an orange-brown tray;
* image formation: a slight blur and camera noise.

Sizes are in pixels for a 256 x 256 image and scale with ``min(H, W) / 256``; plant size (the reach of
the oldest leaf, 12 % to 38 % of ``min(H, W)``) grows with the leaf count and varies per seed.

Conventions
-----------
* :func:`generate_rosette` returns ``rgb`` ``(H, W, 3)`` uint8 (rows, columns, RGB) and ``labels``
  ``(H, W)`` uint8: 0 = background, ``1..n`` = leaves in drawing order (1 = the oldest, drawn first).
  Every id ``1..n`` is present with at least ``max(20, 10 % of the leaf's area)`` visible pixels
  (leaves hidden more than that are not drawn at all), and ``5 <= n <= 20``.
* On disk (:func:`write_synthetic_leaf_dataset`) the CVPPP A1 layout is used: ``plantNNN_rgb.png``
  (RGBA, alpha 255), ``plantNNN_label.png`` (palette PNG, index = leaf id), ``A1.csv`` (no header,
  ``plantNNN_rgb.png, count``) plus a ``dataset.json`` naming the generator and its parameters, so that
  :func:`cosinetrack.apps.leaf.find_cvppp_plants` and the ``read_*`` functions read it exactly like the
  real data. Plants are numbered from 1 (``plant001``).

Everything is deterministic given the seed (``numpy.random.default_rng``); plant ``i`` of a data set
uses the seed ``case_seed(seed, i)`` (:func:`cosinetrack.data.generated.case_seed`). One
256 x 256 plant takes 0.1 to 0.2 s (vectorised NumPy on each leaf's bounding box, no per-pixel loops).

Command line::

    python -m cosinetrack.apps.leaf.synthetic --out DIR [--num-plants N] [--seed S] [--size H W]
        [--overwrite]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from cosinetrack.apps.leaf.cvppp import (
    count_leaves,
    find_cvppp_plants,
    read_leaf_counts,
    write_cvppp_image,
    write_cvppp_label,
    write_leaf_counts,
)
from cosinetrack.data import generated

__all__ = [
    "GENERATOR_VERSION",
    "MIN_LEAVES",
    "MAX_LEAVES",
    "generate_rosette",
    "write_synthetic_leaf_dataset",
    "ensure_synthetic_leaf_dataset",
    "main",
]

#: Bumped whenever the generated content changes, so that cached data sets are recognized as stale.
GENERATOR_VERSION = 1
_MODULE_ID = "cosinetrack.apps.leaf.synthetic"
_WHAT = "synthetic leaf data set"
MIN_LEAVES = 5
MAX_LEAVES = 20
_GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))  # 137.5 degrees


# ----------------------------------------------------------------------------------------------------
# leaves
# ----------------------------------------------------------------------------------------------------


def _draw_leaf_params(rng: np.random.Generator, n: int, reach: float, sc: float) -> list[dict]:
    """Random shape and color parameters of ``n`` leaves, oldest first (fixed draw order)."""
    u = rng.uniform
    theta0 = u(0.0, 2.0 * np.pi)
    hand = 1.0 if u() < 0.5 else -1.0
    aspect_plant = u(0.5, 0.8)  # blade width / length, typical of this plant
    petiole_plant = u(0.35, 0.55)
    leaves = []
    for k in range(n):
        age = 1.0 - k / n  # 1 = oldest, 1/n = youngest
        length = reach * (0.3 + 0.7 * age**0.8) * u(0.85, 1.08)
        petiole = length * petiole_plant * u(0.8, 1.2) * (0.55 + 0.45 * age)
        blade = length - petiole
        leaves.append(
            {
                "theta": theta0 + hand * k * _GOLDEN_ANGLE + rng.normal(0.0, 0.1),
                "r0": u(0.0, 3.0) * sc,
                "petiole": petiole,
                "blade": blade,
                "half_width": 0.5 * blade * aspect_plant * u(0.85, 1.2),
                "p": u(0.6, 1.0),  # base roundness (smaller: blunter base)
                "q": u(0.5, 0.85),  # tip pointedness (larger: sharper tip)
                "wave": (u(0.0, 0.05), u(3.0, 7.0), u(0.0, 2.0 * np.pi)),
                "bend": u(-0.12, 0.12),
                "stalk": max(0.9 * sc, 0.022 * length) * u(0.85, 1.2),
                "side_veins": int(rng.integers(3, 6)),
                "vein_angle": u(0.55, 0.9),  # side vein angle to the midrib (rad, towards the tip)
                "gain": u(0.9, 1.1) * (1.0 + 0.12 * (1.0 - age)),
                "yellow": u(-0.04, 0.04) + 0.08 * (1.0 - age),
            }
        )
    return leaves


def _leaf_field(leaf: dict, cy: float, cx: float, shape: tuple[int, int], sc: float) -> dict:
    """Signed distance (px, < 0 inside) and shading coordinates of one leaf on its bounding box.

    Returns a dict with the bounding box ``box`` (row / column slices) and, on that box, ``d`` (signed
    distance), ``t`` (|v| / half-width, 0 on the midrib, 1 on the margin), ``s`` (0 at the blade base,
    1 at the tip), ``in_blade`` and the vein distances ``mid`` / ``side`` (px).
    """
    h, w = shape
    th = leaf["theta"]
    ly, lx = np.sin(th), np.cos(th)  # leaf axis (row, column)
    length = leaf["petiole"] + leaf["blade"]
    ends = np.array([[cy, cx], [cy + ly * length, cx + lx * length]])
    pad = leaf["half_width"] * 1.3 + abs(leaf["bend"]) * length + 4.0 * sc + 3.0
    r_lo, c_lo = np.floor(ends.min(axis=0) - pad).astype(int)
    r_hi, c_hi = np.ceil(ends.max(axis=0) + pad).astype(int)
    rows = slice(max(r_lo, 0), min(r_hi, h))
    cols = slice(max(c_lo, 0), min(c_hi, w))
    yy = np.arange(rows.start, rows.stop, dtype=np.float64)[:, None] - cy
    xx = np.arange(cols.start, cols.stop, dtype=np.float64)[None, :] - cx
    along = yy * ly + xx * lx  # distance along the leaf axis from the rosette center (px)
    across = -yy * lx + xx * ly
    across = across - leaf["bend"] * length * (along / length) ** 2  # slight sideways bend
    v = np.abs(across)

    lp, lb, wb = leaf["petiole"], leaf["blade"], leaf["half_width"]
    p, q = leaf["p"], leaf["q"]
    s = (along - lp) / lb
    s_c = np.clip(s, 0.0, 1.0)
    norm = (p / (p + q)) ** p * (q / (p + q)) ** q  # maximum of s**p (1-s)**q
    amp, freq, phase = leaf["wave"]
    width = wb * s_c**p * (1.0 - s_c) ** q / norm * (1.0 + amp * np.sin(2.0 * np.pi * freq * s_c + phase))
    d_blade = np.maximum(v - width, np.maximum(-s, s - 1.0) * lb)
    stalk = leaf["stalk"] * (0.8 + 0.4 * np.clip(along / max(lp, 1e-6), 0.0, 1.0))
    d_stalk = np.maximum(v - stalk, np.maximum(leaf["r0"] - along, along - (lp + 0.2 * lb)))
    d = np.minimum(d_blade, d_stalk)

    # veins: midrib along the axis, side veins from the midrib towards the margin and the tip
    n_side = leaf["side_veins"]
    pos = lp + lb * (0.12 + 0.7 * np.arange(n_side) / max(n_side - 1, 1))[:, None, None]
    a = leaf["vein_angle"]  # angle between a side vein and the midrib (rad)
    rel = along[None] - pos  # (n_side, h, w)
    side = np.where(rel > -0.5, np.abs(rel * np.sin(a) - v[None] * np.cos(a)), np.inf).min(axis=0)
    return {
        "box": (rows, cols),
        "d": d,
        "t": v / np.maximum(width, 1e-6),
        "s": s,
        "in_blade": d_blade < d_stalk,
        "mid": v,
        "side": side,
    }


def _leaf_color(field: dict, leaf: dict, green: np.ndarray, noise: np.ndarray, sc: float) -> np.ndarray:
    """``(h, w, 3)`` float RGB (0..255) of one leaf on its bounding box."""
    t = np.clip(field["t"], 0.0, 1.0)
    s = np.clip(field["s"], 0.0, 1.0)
    blade = field["in_blade"]
    shade = np.where(blade, (1.0 - 0.3 * t**2) * (0.9 + 0.1 * s), 0.95)
    vein_w = max(0.55 * sc, 0.006 * (leaf["petiole"] + leaf["blade"]))
    mid = np.exp(-((field["mid"] / vein_w) ** 2)) * np.clip((0.92 - s) / 0.25, 0.0, 1.0)
    side = np.exp(-((field["side"] / (0.8 * vein_w)) ** 2)) * np.clip((0.85 - t) / 0.3, 0.0, 1.0)
    vein = np.where(blade, np.maximum(mid, 0.55 * side), 0.6)
    base = green * leaf["gain"] + np.array([255.0, 120.0, 0.0]) * leaf["yellow"]
    pale = base * 1.18 + np.array([25.0, 22.0, 12.0])
    rgb = base * shade[..., None] * (1.0 + 0.05 * noise[..., None])
    return rgb + (pale - rgb) * (0.75 * vein[..., None])


# ----------------------------------------------------------------------------------------------------
# background
# ----------------------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to unit standard deviation."""
    n = ndi.gaussian_filter(rng.standard_normal(shape), max(sigma, 0.3), mode="wrap")
    return n / max(float(n.std()), 1e-9)


def _background(rng: np.random.Generator, h: int, w: int, sc: float, pot: tuple[float, float, float]) -> np.ndarray:
    """``(h, w, 3)`` float RGB (0..255): textured soil with grains, pebbles and moss in a pot, in a tray."""
    u = rng.uniform
    yy = np.arange(h, dtype=np.float64)[:, None]
    xx = np.arange(w, dtype=np.float64)[None, :]
    pcy, pcx, pr = pot
    r_pot = np.hypot(yy - pcy, xx - pcx)

    soil_col = np.array([u(38, 75), u(32, 55), u(22, 40)])
    lum = (
        1.0
        + 0.22 * _smooth_noise(rng, (h, w), 0.6 * sc)
        + 0.15 * _smooth_noise(rng, (h, w), 3.0 * sc)
        + 0.12 * _smooth_noise(rng, (h, w), 12.0 * sc)
    )
    img = soil_col * np.clip(lum, 0.3, 2.0)[..., None]
    # light grains (perlite / sand) and dark crumbs
    grains = _smooth_noise(rng, (h, w), 0.7 * sc)
    g_thr = u(1.6, 2.3)
    grain_col = np.array([u(140, 200), u(100, 150), u(60, 100)])
    img += (grain_col - img) * np.clip((grains - g_thr) * 1.5, 0.0, 1.0)[..., None]
    crumbs = _smooth_noise(rng, (h, w), 1.5 * sc)
    img *= 1.0 - 0.4 * np.clip(crumbs - 1.5, 0.0, 1.0)[..., None]
    # moss: yellow-green patches on some plants
    if u() < 0.35:
        patches = _smooth_noise(rng, (h, w), 14.0 * sc) + 0.8 * _smooth_noise(rng, (h, w), 1.0 * sc)
        m = np.clip((patches - u(0.6, 1.4)) * 0.8, 0.0, 0.9)
        moss_col = np.array([u(120, 170), u(140, 180), u(20, 50)])
        img += (moss_col * (0.8 + 0.2 * _smooth_noise(rng, (h, w), 0.6 * sc))[..., None] - img) * m[..., None]
    # pebbles: small shaded ellipses
    for _ in range(int(rng.integers(3, 25))):
        ry, rx = u(1.2, 4.5) * sc, u(1.2, 4.5) * sc
        ang = u(0.0, np.pi)
        rr = u(0.0, 0.95) * pr
        phi = u(0.0, 2.0 * np.pi)
        cy, cx = pcy + rr * np.sin(phi), pcx + rr * np.cos(phi)
        r0, r1 = int(max(cy - 6 * sc - 2, 0)), int(min(cy + 6 * sc + 3, h))
        c0, c1 = int(max(cx - 6 * sc - 2, 0)), int(min(cx + 6 * sc + 3, w))
        if r0 >= r1 or c0 >= c1:
            continue
        dy, dx = yy[r0:r1] - cy, xx[:, c0:c1] - cx
        a = (dy * np.cos(ang) + dx * np.sin(ang)) / ry
        b = (-dy * np.sin(ang) + dx * np.cos(ang)) / rx
        q = a**2 + b**2
        cover = np.clip((1.0 - q) * 3.0 * min(ry, rx), 0.0, 1.0)
        tone = u(110, 200) * np.array([1.0, u(0.85, 0.97), u(0.7, 0.9)])
        lit = 1.0 - 0.35 * np.clip(q + 0.4 * (dy + dx) / max(ry, rx), 0.0, 1.2)
        patch = img[r0:r1, c0:c1]
        patch += (tone * lit[..., None] - patch) * cover[..., None]
    # pot rim (dark ring) and tray outside it
    rim_w = u(2.5, 5.0) * sc
    tray_col = np.array([u(175, 220), u(90, 125), u(62, 95)])
    tray = (
        tray_col
        * (1.0 + 0.06 * _smooth_noise(rng, (h, w), 2.0 * sc) + 0.05 * _smooth_noise(rng, (h, w), 20 * sc))[..., None]
    )
    groove_period = u(18.0, 35.0) * sc
    groove = 1.0 - 0.25 * np.clip(np.cos(2.0 * np.pi * (yy + u(0, 50)) / groove_period) - 0.7, 0.0, 1.0) / 0.3
    tray = tray * np.broadcast_to(groove, (h, w))[..., None]
    outside = np.clip(r_pot - pr - rim_w + 0.5, 0.0, 1.0)
    rim = np.clip(r_pot - pr + 0.5, 0.0, 1.0) - outside
    rim_col = np.array([45.0, 45.0, 43.0]) * u(0.8, 1.3)
    soil_shadow = 1.0 - 0.45 * np.exp(-np.clip(pr - r_pot, 0.0, None) / (4.0 * sc))  # pot wall shade
    img = img * soil_shadow[..., None]
    img += (rim_col - img) * rim[..., None]
    img += (tray - img) * outside[..., None]
    return img


# ----------------------------------------------------------------------------------------------------
# one plant
# ----------------------------------------------------------------------------------------------------


def generate_rosette(seed: int, image_size: tuple[int, int] = (256, 256)) -> tuple[np.ndarray, np.ndarray]:
    """Generate one synthetic top-view rosette photograph and its leaf instance labels.

    Args:
        seed: seed of ``numpy.random.default_rng``; the output is a pure function of the arguments.
        image_size: ``(H, W)`` in pixels, each at least 64.

    Returns:
        ``(rgb, labels)``: ``rgb`` ``(H, W, 3)`` uint8 and ``labels`` ``(H, W)`` uint8, 0 = background,
        ``1..n`` = the visible part of each leaf in drawing order (1 = oldest, bottom), ``5 <= n <= 20``,
        every id present.
    """
    h, w = (int(v) for v in image_size)
    if h < 64 or w < 64:
        raise ValueError(f"image_size must be at least (64, 64), got {tuple(image_size)}")
    rng = np.random.default_rng(seed)
    u = rng.uniform
    m = min(h, w)
    sc = m / 256.0

    # pot and plant placement
    pot_r = u(0.34, 0.46) * m
    pot = (h / 2 + u(-0.04, 0.04) * h, w / 2 + u(-0.04, 0.04) * w, pot_r)
    cy, cx = pot[0] + u(-0.05, 0.05) * pot_r, pot[1] + u(-0.05, 0.05) * pot_r
    green = np.array([u(60, 115), u(140, 195), u(30, 70)])
    min_px = max(20.0 * sc**2, 6.0)

    # leaves: draw until at least MIN_LEAVES of them are visible enough (rarely more than one try)
    for _attempt in range(20):
        n = int(rng.integers(MIN_LEAVES, MAX_LEAVES + 1))
        reach = m * (0.14 + 0.18 * (n - MIN_LEAVES) / (MAX_LEAVES - MIN_LEAVES) + u(-0.02, 0.06))
        reach = min(reach, 0.92 * pot_r)
        leaves = _draw_leaf_params(rng, n, reach, sc)
        fields = [_leaf_field(leaf, cy, cx, (h, w), sc) for leaf in leaves]
        order = np.zeros((h, w), dtype=np.int32)  # index + 1 of the top leaf per pixel
        areas = np.zeros(n + 1)
        for i, f in enumerate(fields):
            inside = f["d"] < 0.0
            areas[i + 1] = np.count_nonzero(inside)
            order[f["box"]][inside] = i + 1
        visible = np.bincount(order.ravel(), minlength=n + 1)
        keep = [i for i in range(n) if visible[i + 1] >= max(min_px, 0.1 * areas[i + 1]) and areas[i + 1] > 0]
        # removing a hidden leaf only uncovers the leaves below it, so every kept leaf stays visible
        if len(keep) >= MIN_LEAVES:
            break
    leaves = [leaves[i] for i in keep]
    fields = [fields[i] for i in keep]

    img = _background(rng, h, w, sc, pot)
    labels = np.zeros((h, w), dtype=np.uint8)
    shadow_sigma = 1.6 * sc
    shadow_shift = (1.2 * sc, 0.8 * sc)
    leaf_noise = _smooth_noise(rng, (h, w), 0.8 * sc)
    for i, (leaf, f) in enumerate(zip(leaves, fields)):
        rows, cols = f["box"]
        cover = np.clip(0.5 - f["d"], 0.0, 1.0)
        # soft shadow cast on whatever lies below (soil or older leaves)
        shadow = ndi.shift(ndi.gaussian_filter(cover, shadow_sigma), shadow_shift, order=1, mode="constant")
        patch = img[rows, cols]
        patch *= (1.0 - 0.5 * shadow * (1.0 - cover))[..., None]
        color = _leaf_color(f, leaf, green, leaf_noise[rows, cols], sc)
        patch += (color - patch) * cover[..., None]
        labels[rows, cols][f["d"] < 0.0] = i + 1

    # camera: slight blur, noise
    img = ndi.gaussian_filter(img, sigma=(0.5 * sc, 0.5 * sc, 0.0))
    img *= u(0.9, 1.1)
    img += rng.normal(0.0, u(1.0, 3.0), size=img.shape)
    rgb = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return rgb, labels


# ----------------------------------------------------------------------------------------------------
# data set on disk
# ----------------------------------------------------------------------------------------------------


def _plant_name(index: int) -> str:
    return f"plant{index + 1:03d}"


def _read_plants(out_dir: str, data: dict) -> list[dict] | None:
    """The plants of a finished ``out_dir`` (:func:`find_cvppp_plants`), or ``None`` when incomplete."""
    try:
        plants = find_cvppp_plants(out_dir)
        counts = read_leaf_counts(os.path.join(out_dir, "A1.csv"))
    except ValueError:
        return None
    names = [_plant_name(i) for i in range(data["generator"]["num_plants"])]
    if [p["name"] for p in plants] != names or any(p["label"] is None for p in plants) or set(counts) != set(names):
        return None
    return plants


def _write_plants(tmp: str, params: dict) -> dict:
    """Write every plant and ``A1.csv`` into ``tmp``; returns the ``dataset.json`` content."""
    counts = {}
    plants = []
    seeds = []
    for i in range(params["num_plants"]):
        s = generated.case_seed(params["seed"], i)
        seeds.append(s)
        rgb, labels = generate_rosette(s, tuple(params["image_size"]))
        name = _plant_name(i)
        write_cvppp_image(rgb.transpose(2, 0, 1), os.path.join(tmp, f"{name}_rgb.png"))
        write_cvppp_label(labels, os.path.join(tmp, f"{name}_label.png"))
        counts[name] = count_leaves(labels)
        plants.append(
            {"name": name, "image": f"{name}_rgb.png", "label": f"{name}_label.png", "leaf_count": counts[name]}
        )
    write_leaf_counts(counts, os.path.join(tmp, "A1.csv"))
    return {
        "name": "SyntheticLeaves",
        "description": f"Synthetic top-view rosette plants with leaf instance labels (CVPPP A1 layout), "
        f"generated by {_MODULE_ID}",
        "reference": "cosinetrack (synthetic, no real plant data)",
        "licence": "Apache-2.0",
        "layout": "CVPPP A1: plantNNN_rgb.png (RGBA), plantNNN_label.png (palette PNG, index = leaf id), A1.csv",
        "numTraining": params["num_plants"],
        "plants": plants,
        "generator": {"plant_seeds": seeds},
    }


def write_synthetic_leaf_dataset(
    out_dir: str | os.PathLike,
    num_plants: int = 24,
    seed: int = 0,
    image_size: tuple[int, int] = (256, 256),
    overwrite: bool = False,
) -> list[dict]:
    """Write a synthetic leaf data set in the CVPPP A1 layout, atomically, or reuse an up-to-date one.

    Layout: ``out_dir/plantNNN_rgb.png`` (RGBA, alpha 255), ``out_dir/plantNNN_label.png`` (palette PNG,
    index = leaf id), ``out_dir/A1.csv`` (``plantNNN_rgb.png, count``, no header, like the official
    file) and ``out_dir/dataset.json`` (name, plants, and a ``generator`` entry with the module,
    version and parameters). Plant ``i`` (``plant{i+1:03d}``) is ``generate_rosette(generated.case_seed(seed, i),
    image_size)``.

    Atomic and cached (see :func:`cosinetrack.data.generated.write_generated_dataset`); a folder that this
    module did not make is never replaced.

    Args:
        out_dir: the data set folder.
        num_plants: number of plants (1..999).
        seed: master seed.
        image_size: ``(H, W)`` in pixels, each at least 64.
        overwrite: replace a data set that this module generated with other parameters.

    Returns:
        The plants as :func:`cosinetrack.apps.leaf.find_cvppp_plants` lists them
        (``{"name", "image", "label"}`` with absolute paths), sorted by name.

    Raises:
        FileExistsError: ``out_dir`` may not be replaced (see above).
    """
    if not 1 <= int(num_plants) <= 999:
        raise ValueError(f"num_plants must be in 1..999, got {num_plants}")
    size = generated.check_image_size(image_size, 64)
    params = generated.generator_params(
        _MODULE_ID, GENERATOR_VERSION, seed=int(seed), num_plants=int(num_plants), image_size=size
    )
    return generated.write_generated_dataset(
        out_dir, params, _write_plants, _read_plants, overwrite=overwrite, what=_WHAT
    )


def ensure_synthetic_leaf_dataset(cache_dir: str | os.PathLike | None = None, **params: Any) -> str:
    """The folder of the synthetic leaf data set with ``params``, generating it on first use.

    Args:
        cache_dir: parent folder (``None``: :func:`cosinetrack.data.generated.default_cache_dir`,
            i.e. ``$COSINETRACK_CACHE`` or ``~/.cache/cosinetrack``). The data set lives in a subfolder
            named after the generator version and the parameters, e.g.
            ``synthetic_leaves_v1_seed0_n24_256x256``.
        **params: ``num_plants``, ``seed``, ``image_size`` of :func:`write_synthetic_leaf_dataset`
            (defaults as there).

    Returns:
        The absolute path of the data set folder (CVPPP A1 layout, readable with
        :func:`cosinetrack.apps.leaf.find_cvppp_plants`).
    """

    name = f"synthetic_leaves_v{GENERATOR_VERSION}_seed{{seed}}_n{{num_plants}}_{{image_size[0]}}x{{image_size[1]}}"
    return generated.ensure_generated_dataset(write_synthetic_leaf_dataset, cache_dir, params, name, _WHAT)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write (or reuse) a synthetic leaf data set; prints where it is."""
    options = {"num_plants": ("--num-plants", "number of plants")}
    return generated.generator_main(argv, write_synthetic_leaf_dataset, options, _WHAT, "plants", __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
