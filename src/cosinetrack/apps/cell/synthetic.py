"""Deterministic synthetic fluorescent-nucleus videos in the Cell Tracking Challenge layout: the cell data set.

Each *sequence* mimics a 2D+t fluorescence video of stained nuclei such as Fluo-N2DH-SIM+:

* **nuclei**: ellipses (equivalent radius about 10 px at 256 x 256, aspect 1.1 to 1.7) with a slowly
  varying wavy outline (2nd to 4th harmonics), a domed intensity profile, an internal texture that moves
  and deforms with the nucleus (a few plane waves in the nucleus' own coordinates) and 0 to 3 darker
  nucleoli; brightness varies between nuclei and slowly in time;
* **motion**: a random walk with inertia (Ornstein-Uhlenbeck velocity) plus a common drift of the whole
  sequence; orientation, aspect and outline change slowly; nuclei grow between divisions. Nuclei push
  each other apart (soft repulsion), so they touch but hardly overlap; contested pixels go to the
  nucleus whose outline is farther away (smallest signed distance);
* **entering and leaving**: the simulation runs on the field of view plus a margin; nuclei spawn in
  the margin (mostly on the upstream side of the drift) and move in, nuclei drift out and are dropped;
* **division**: an eligible nucleus (at least 6 frames old and grown to 92 % of its maximum size)
  starts mitosis with probability ``division_prob`` per frame: for 2 frames it brightens and elongates,
  then it is replaced by two smaller (0.68 to 0.76 times the radius), brighter daughters on either
  side of it along its major axis, elongated across that axis, which grow back in about 15 frames;
* **image formation**: background offset with a smooth inhomogeneity, Gaussian blur (point spread
  function), Poisson (shot) noise and Gaussian read noise, rounded to uint16.

Labels and tracks (CTC conventions)
-----------------------------------
* A nucleus is *visible* in a frame when at least ``min_pixels`` of its pixels lie in the field of view
  (nuclei cut by the border count); it gets a track id (1, 2, ... in order of appearance, never reused)
  in the first frame where it is visible. Pixels of a nucleus that is not visible are neither labeled
  nor drawn, so the image never shows an unlabeled nucleus.
* A track ends (``E``) in the last frame where its nucleus is visible: when the nucleus leaves the
  field (or, rarely, is squeezed below ``min_pixels`` by its neighbors, in which case it is removed
  from the simulation), or when it divides. A nucleus that stops being visible never comes back, so every
  track is present on exactly the frames ``B..E``.
* Daughters that are visible in the frame after their mother's last frame start there with ``P`` = the
  mother's id; a daughter first seen later (it was born outside the field) starts a new track with
  ``P = 0``.
* The TRA ground truth holds the full instance masks (like the simulated Fluo-N2DH-SIM+, whose TRA
  "markers" are the whole nuclei), identical to SEG, and SEG is given on every frame.

Arrays are ``(T, H, W)`` (frames, rows, columns); sizes are in pixels for a 256 x 256 image and scale with
``min(H, W) / 256``; speeds are in pixels per frame. Images are uint16 (background about 100, nuclei a few
hundred counts above it); labels are uint16 track ids (0 = background); tracks are ``(N, 4)`` int64 rows
``(L, B, E, P)`` sorted by ``L``.

On disk (:func:`write_synthetic_cell_dataset`) the CTC layout is used, for sequences ``01``, ``02``, ...::

    <out>/01/tTTT.tif                    image, uint16, zlib-compressed TIFF
    <out>/01_GT/SEG/man_segTTT.tif       instance labels, uint16, every frame
    <out>/01_GT/TRA/man_trackTTT.tif     the same labels (full masks as TRA markers)
    <out>/01_GT/TRA/man_track.txt        one "L B E P" line per track
    <out>/dataset.json                   sequences and the generator's parameters

with 3-digit frame numbers (4 digits for more than 1000 frames). Everything is deterministic given the
seed (``numpy.random.default_rng``); sequence ``i`` uses ``case_seed(seed, i)``
(:func:`cosinetrack.data.generated.case_seed`). A 30-frame 256 x 256 video takes about 0.5 s.

Command line::

    python -m cosinetrack.apps.cell.synthetic --out DIR [--num-sequences N] [--frames T]
        [--division-prob P] [--seed S] [--size H W] [--overwrite]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tifffile
from scipy import ndimage as ndi

from cosinetrack.data import generated
from cosinetrack.data.shapes import ellipse_signed_distance, soft_coverage

__all__ = [
    "GENERATOR_VERSION",
    "generate_cell_video",
    "write_ctc_sequence",
    "write_synthetic_cell_dataset",
    "ensure_synthetic_cell_dataset",
    "main",
]

#: Bumped whenever the generated content changes, so that cached data sets are recognized as stale.
GENERATOR_VERSION = 1
_MODULE_ID = "cosinetrack.apps.cell.synthetic"
_WHAT = "synthetic cell data set"

_MIN_AGE = 6  # frames between a nucleus' birth and the start of its mitosis
_GROWN = 0.92  # a nucleus may divide once its radius is this fraction of its maximum
_MITOSIS_FRAMES = 2  # frames of pre-division appearance (brighter, elongated)
_WOBBLE_K = (2, 3, 4)  # harmonics of the outline
_TEXTURE_WAVES = 6


@dataclass
class _Nucleus:
    """State of one simulated nucleus (positions in px of the field of view, sizes in px)."""

    cy: float
    cx: float
    vy: float
    vx: float
    radius: float  # equivalent radius sqrt(a * b)
    radius_max: float  # growth stops here
    growth: float  # relative radius growth per frame
    log_aspect: float  # log(a / b)
    log_aspect_mean: float
    angle: float  # orientation of the major axis (rad; 0 = along the rows)
    wobble_amp: np.ndarray  # (3,) amplitudes of _WOBBLE_K
    wobble_phase: np.ndarray  # (3,)
    brightness: float  # relative, about 1
    brightness_mean: float
    waves: np.ndarray  # (_TEXTURE_WAVES, 3): wave vector (u, v) in normalized nucleus coordinates, phase
    texture_amp: float
    nucleoli: np.ndarray  # (n, 4): u, v (normalized), sigma (normalized), strength (< 0: darker)
    age: int = 0
    mitosis: int = 0  # frames of mitosis left (0: none)
    boost: float = 0.0  # extra relative brightness after mitosis, decaying
    label: int = 0  # track id once visible
    mother: int = 0  # track id of the mother (0: none or not visible)
    born: int = 0  # frame of birth
    box: tuple[slice, slice] | None = field(default=None, repr=False)
    sd: np.ndarray | None = field(default=None, repr=False)

    @property
    def axes(self) -> tuple[float, float]:
        """Semi-axes ``(a, b)`` (major, minor) in px."""
        f = float(np.exp(0.5 * self.log_aspect))
        return self.radius * f, self.radius / f


def _new_nucleus(rng: np.random.Generator, cy: float, cx: float, radius: float) -> _Nucleus:
    """A nucleus with random shape and appearance (fixed draw order)."""
    u = rng.uniform
    log_aspect_mean = np.log(u(1.1, 1.7))
    n_nucleoli = int(rng.integers(0, 4))
    r_nuc = u(0.0, 0.5, n_nucleoli)
    a_nuc = u(0.0, 2 * np.pi, n_nucleoli)
    nucleoli = np.stack(
        [r_nuc * np.cos(a_nuc), r_nuc * np.sin(a_nuc), u(0.1, 0.2, n_nucleoli), -u(0.15, 0.35, n_nucleoli)], axis=1
    )
    wave_len = u(0.3, 0.7, _TEXTURE_WAVES)  # in units of the semi-axes
    wave_dir = u(0.0, 2 * np.pi, _TEXTURE_WAVES)
    k = 2 * np.pi / wave_len
    waves = np.stack([k * np.cos(wave_dir), k * np.sin(wave_dir), u(0.0, 2 * np.pi, _TEXTURE_WAVES)], axis=1)
    brightness = u(0.6, 1.4)
    return _Nucleus(
        cy=cy,
        cx=cx,
        vy=0.0,
        vx=0.0,
        radius=radius,
        radius_max=radius * u(1.05, 1.2),
        growth=u(0.015, 0.03),
        log_aspect=log_aspect_mean + rng.normal(0.0, 0.1),
        log_aspect_mean=log_aspect_mean,
        angle=u(0.0, np.pi),
        wobble_amp=u(0.0, 0.06, len(_WOBBLE_K)),
        wobble_phase=u(0.0, 2 * np.pi, len(_WOBBLE_K)),
        brightness=brightness,
        brightness_mean=brightness,
        waves=waves,
        texture_amp=u(0.1, 0.22),
        nucleoli=nucleoli,
    )


def _daughters(rng: np.random.Generator, mother: _Nucleus, t: int, sc: float) -> list[_Nucleus]:
    """Two daughters on either side of ``mother`` along its major axis, born at frame ``t``."""
    a, _ = mother.axes
    out = []
    for side in (-1.0, 1.0):
        d = _new_nucleus(rng, 0.0, 0.0, mother.radius * rng.uniform(0.68, 0.76))
        off = side * 0.55 * a
        d.cy = mother.cy + off * np.cos(mother.angle)
        d.cx = mother.cx + off * np.sin(mother.angle)
        d.vy = mother.vy + 0.3 * sc * side * np.cos(mother.angle)
        d.vx = mother.vx + 0.3 * sc * side * np.sin(mother.angle)
        d.radius_max = mother.radius_max * rng.uniform(0.95, 1.05)
        d.angle = mother.angle + np.pi / 2 + rng.normal(0.0, 0.2)  # flattened against the sister
        d.log_aspect = np.log(rng.uniform(1.3, 1.6))
        d.brightness = d.brightness_mean = mother.brightness_mean * rng.uniform(0.9, 1.1)
        d.boost = 0.5
        d.mother = mother.label
        d.born = t
        out.append(d)
    return out


def _step(rng: np.random.Generator, c: _Nucleus, drift: tuple[float, float], speed: float) -> None:
    """Move, deform, grow and age ``c`` by one frame (in place)."""
    c.vy = 0.85 * c.vy + rng.normal(0.0, speed)
    c.vx = 0.85 * c.vx + rng.normal(0.0, speed)
    c.cy += drift[0] + c.vy
    c.cx += drift[1] + c.vx
    c.angle += rng.normal(0.0, 0.05)
    target = 0.45 if c.mitosis else c.log_aspect_mean  # mitosis: elongate along the division axis
    c.log_aspect += 0.15 * (target - c.log_aspect) + rng.normal(0.0, 0.02)
    c.wobble_amp = np.clip(c.wobble_amp + 0.1 * (0.03 - c.wobble_amp) + rng.normal(0.0, 0.005, 3), 0.0, 0.08)
    c.wobble_phase = c.wobble_phase + rng.normal(0.0, 0.08, 3)
    c.brightness += 0.1 * (c.brightness_mean - c.brightness) + rng.normal(0.0, 0.02)
    c.radius = min(c.radius * (1.0 + c.growth), c.radius_max)
    c.boost *= 0.7
    c.age += 1


def _repel(cells: list[_Nucleus], iterations: int = 4, touch: float = 0.85) -> None:
    """Push overlapping nuclei apart until their centers are at least ``touch * (r_i + r_j)`` apart."""
    if len(cells) < 2:
        return
    pos = np.array([[c.cy, c.cx] for c in cells])
    rad = np.array([c.radius for c in cells])
    min_d = touch * (rad[:, None] + rad[None, :])
    np.fill_diagonal(min_d, 0.0)
    for _ in range(iterations):
        diff = pos[:, None, :] - pos[None, :, :]
        dist = np.sqrt((diff**2).sum(-1))
        deficit = np.clip(min_d - dist, 0.0, None)
        if not deficit.any():
            break
        unit = diff / np.maximum(dist, 1e-6)[..., None]
        pos += 0.5 * (deficit[..., None] * unit).sum(axis=1)
    for c, (y, x) in zip(cells, pos):
        c.cy, c.cx = float(y), float(x)


def _shape(c: _Nucleus, h: int, w: int) -> None:
    """Bounding box and signed distance (px, < 0 inside) of ``c`` on the field of view (``c.box``/``c.sd``)."""
    a, b = c.axes
    reach = a * (1.0 + float(c.wobble_amp.sum())) + 2.0
    r0, r1 = max(int(np.floor(c.cy - reach)), 0), min(int(np.ceil(c.cy + reach)) + 1, h)
    c0, c1 = max(int(np.floor(c.cx - reach)), 0), min(int(np.ceil(c.cx + reach)) + 1, w)
    if r0 >= r1 or c0 >= c1:
        c.box, c.sd = None, None
        return
    yy = np.arange(r0, r1, dtype=np.float64)[:, None]
    xx = np.arange(c0, c1, dtype=np.float64)[None, :]
    wobble = list(zip(_WOBBLE_K, c.wobble_amp, c.wobble_phase))
    c.box = (slice(r0, r1), slice(c0, c1))
    c.sd = ellipse_signed_distance(yy, xx, c.cy, c.cx, a, b, c.angle, wobble)


def _signal(c: _Nucleus) -> np.ndarray:
    """Relative fluorescence of ``c`` on its box (dome x texture x nucleoli x brightness x edge coverage)."""
    rows, cols = c.box
    a, b = c.axes
    dy = np.arange(rows.start, rows.stop, dtype=np.float64)[:, None] - c.cy
    dx = np.arange(cols.start, cols.stop, dtype=np.float64)[None, :] - c.cx
    cos, sin = np.cos(c.angle), np.sin(c.angle)
    un = (dy * cos + dx * sin) / a  # normalized nucleus coordinates (1 on the ellipse)
    vn = (-dy * sin + dx * cos) / b
    q2 = un**2 + vn**2
    tex = np.zeros_like(q2)
    for ku, kv, ph in c.waves:
        tex += np.cos(ku * un + kv * vn + ph)
    tex *= c.texture_amp / np.sqrt(len(c.waves))
    for nu, nv, sig, strength in c.nucleoli:
        tex += strength * np.exp(-((un - nu) ** 2 + (vn - nv) ** 2) / (2 * sig**2))
    dome = 1.0 - 0.3 * np.clip(q2, 0.0, 1.0)
    gain = max(c.brightness, 0.2) * (1.0 + c.boost + (0.4 if c.mitosis else 0.0))
    return gain * dome * np.clip(1.0 + tex, 0.2, None) * soft_coverage(c.sd)


def _spawn(
    rng: np.random.Generator, h: int, w: int, r_mean: float, sc: float, drift: tuple[float, float]
) -> _Nucleus:
    """A nucleus just outside one border of the field, moving in (mostly from upstream of the drift)."""
    # inward normals of the top, bottom, left, right borders and their lengths
    normals = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    lengths = np.array([w, w, h, h], dtype=np.float64)
    d = np.asarray(drift) / max(float(np.hypot(*drift)), 1e-9)
    weight = lengths * (0.3 + np.clip(normals @ d, 0.0, None))
    side = int(rng.choice(4, p=weight / weight.sum()))
    radius = r_mean * rng.uniform(0.8, 1.2)
    along = rng.uniform(0.0, 1.0)
    out = radius * rng.uniform(0.9, 1.4)  # center distance outside the border
    cy, cx = [(-out, along * w), (h - 1 + out, along * w), (along * h, -out), (along * h, w - 1 + out)][side]
    c = _new_nucleus(rng, cy, cx, radius)
    c.vy, c.vx = normals[side] * rng.uniform(0.8, 1.6) * sc
    c.age = int(rng.integers(0, _MIN_AGE + 10))
    return c


def generate_cell_video(
    seed: int,
    num_frames: int = 30,
    image_size: tuple[int, int] = (256, 256),
    *,
    num_cells: int | tuple[int, int] = (8, 15),
    division_prob: float = 0.03,
    min_pixels: int | None = None,
    noise_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate one synthetic fluorescent-nucleus video with CTC-valid instance labels and lineage.

    Args:
        seed: seed of ``numpy.random.default_rng``; the output is a pure function of the arguments.
        num_frames: ``T``, at least 1.
        image_size: ``(H, W)`` in pixels, each at least 64.
        num_cells: nuclei in the first frame's simulation (placed in and just around the field, so a
            few may start cut by the border): a count, or an inclusive ``(low, high)`` range to draw from.
        division_prob: probability per frame that an eligible nucleus (at least 6 frames old, grown to
            92 % of its maximum size, not dividing) starts its 2-frame mitosis, in ``[0, 1]``.
        min_pixels: pixels inside the field that make a nucleus visible (``None``: ``max(4, 16 s^2)``
            with ``s = min(H, W) / 256``).
        noise_scale: multiplies the Poisson and Gaussian noise; ``0`` gives a noise-free image. The noise
            has its own random stream, so the nuclei and labels do not depend on it (nor on ``num_frames``:
            a shorter video is the beginning of a longer one).

    Returns:
        ``(images, labels, tracks)``: ``images`` uint16 ``(T, H, W)``; ``labels`` uint16 ``(T, H, W)``
        track ids, 0 = background; ``tracks`` int64 ``(N, 4)`` rows ``(L, B, E, P)`` sorted by ``L``, with
        ``L = 1..N``, every id on exactly the frames ``B..E`` and ``E(P) < B`` for every ``P > 0``.
    """
    h, w = (int(v) for v in image_size)
    t_n = int(num_frames)
    if h < 64 or w < 64:
        raise ValueError(f"image_size must be at least (64, 64), got {tuple(image_size)}")
    if t_n < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if not 0.0 <= division_prob <= 1.0:
        raise ValueError(f"division_prob must be in [0, 1], got {division_prob}")
    if noise_scale < 0:
        raise ValueError(f"noise_scale must be >= 0, got {noise_scale}")
    lo, hi = (int(num_cells), int(num_cells)) if np.isscalar(num_cells) else (int(v) for v in num_cells)
    if not 1 <= lo <= hi:
        raise ValueError(f"num_cells must be >= 1 (or a range low <= high), got {num_cells}")
    rng = np.random.default_rng(seed)
    u = rng.uniform
    sc = min(h, w) / 256.0
    min_px = int(min_pixels) if min_pixels is not None else max(4, int(round(16 * sc**2)))

    # ---------------- sequence parameters (fixed draw order) ----------------------------------------
    r_mean = u(8.5, 12.0) * sc
    drift_dir = u(0.0, 2 * np.pi)
    drift_speed = u(0.3, 1.0) * sc
    drift = (drift_speed * np.sin(drift_dir), drift_speed * np.cos(drift_dir))
    speed = u(0.4, 0.8) * sc  # sd of the velocity innovations (px / frame)
    enter_rate = u(0.1, 0.25)  # nuclei spawned outside the field per frame
    margin = 3.0 * r_mean
    background = u(80.0, 120.0)
    amplitude = u(200.0, 450.0)  # nucleus signal above background (counts) at brightness 1
    blur = u(0.8, 1.4) * sc
    counts_per_photon = u(0.5, 1.5) * noise_scale**2
    read_noise = u(3.0, 8.0) * noise_scale
    bg_field = ndi.gaussian_filter(rng.standard_normal((h, w)), 40.0 * sc, mode="reflect")
    bg_field = background * (1.0 + 0.08 * bg_field / max(float(bg_field.std()), 1e-9))
    noise_rng = np.random.default_rng(rng.integers(2**63))  # own stream: the cells do not depend on the noise

    # ---------------- initial nuclei: rejection sampling, no large overlaps ---------------------------
    cells: list[_Nucleus] = []
    for _ in range(int(rng.integers(lo, hi + 1))):
        radius = r_mean * u(0.8, 1.2)
        for _attempt in range(100):
            cy, cx = u(-0.3 * radius, h - 1 + 0.3 * radius), u(-0.3 * radius, w - 1 + 0.3 * radius)
            if all(np.hypot(cy - c.cy, cx - c.cx) > 1.05 * (radius + c.radius) for c in cells):
                break
        c = _new_nucleus(rng, cy, cx, radius)
        c.age = int(rng.integers(0, _MIN_AGE + 10))
        c.radius = c.radius_max * u(0.75, 1.0)
        cells.append(c)

    images = np.empty((t_n, h, w), dtype=np.uint16)
    labels = np.zeros((t_n, h, w), dtype=np.uint16)
    tracks: dict[int, list[int]] = {}  # id -> [B, E, P]
    for t in range(t_n):
        # ---------------- dynamics: divide, move, spawn, repel, drop ---------------------------------
        if t > 0:
            nxt: list[_Nucleus] = []
            for c in cells:
                if c.mitosis == 1:
                    nxt.extend(_daughters(rng, c, t, sc))
                    continue
                if c.mitosis:
                    c.mitosis -= 1
                elif c.age >= _MIN_AGE and c.radius >= _GROWN * c.radius_max and u() < division_prob:
                    c.mitosis = _MITOSIS_FRAMES
                _step(rng, c, drift, speed)
                nxt.append(c)
            cells = nxt
            for _ in range(int(rng.poisson(enter_rate))):
                cells.append(_spawn(rng, h, w, r_mean, sc, drift))
            _repel(cells)
            cells = [c for c in cells if -margin <= c.cy <= h - 1 + margin and -margin <= c.cx <= w - 1 + margin]

        # ---------------- labels: smallest signed distance wins; visibility ---------------------------
        best = np.full((h, w), np.inf)
        owner = np.full((h, w), -1, dtype=np.int64)
        for i, c in enumerate(cells):
            _shape(c, h, w)
            if c.box is None:
                continue
            sub_best, sub_owner = best[c.box], owner[c.box]
            closer = (c.sd < sub_best) & (c.sd < 0.0)
            sub_best[closer] = c.sd[closer]
            sub_owner[closer] = i
        count = np.bincount(owner[owner >= 0], minlength=len(cells))
        visible = count >= min_px
        keep = []
        for i, c in enumerate(cells):
            if visible[i] and c.label == 0:  # a new track
                if len(tracks) == 65535:
                    raise ValueError("more than 65535 tracks: they do not fit uint16 labels")
                c.label = len(tracks) + 1
                parent = c.mother if (c.born == t and c.mother in tracks and tracks[c.mother][1] == t - 1) else 0
                tracks[c.label] = [t, t, parent]
            elif visible[i]:
                tracks[c.label][1] = t
            if c.label and not visible[i]:
                continue  # its track has ended (left the field or squeezed out): drop the nucleus
            keep.append(i)
        lut = np.zeros(len(cells) + 1, dtype=np.uint16)
        for i, c in enumerate(cells):
            lut[i + 1] = c.label if visible[i] else 0
        labels[t] = lut[owner + 1]

        # ---------------- image: visible nuclei only, blur, noise ------------------------------------
        img = bg_field.copy()
        for i, c in enumerate(cells):
            if not visible[i]:
                continue
            rows, cols = c.box
            mine = (owner[c.box] == i) | (owner[c.box] == -1)  # not over a neighbor's pixels
            img[rows, cols] += amplitude * _signal(c) * mine
        img = ndi.gaussian_filter(img, blur, mode="reflect")
        if noise_scale > 0:
            img = counts_per_photon * noise_rng.poisson(np.clip(img, 0.0, None) / counts_per_photon)
            img = img + noise_rng.normal(0.0, read_noise, size=img.shape)
        images[t] = np.clip(np.rint(img), 0, 65535).astype(np.uint16)
        cells = [cells[i] for i in keep]

    table = np.array([[k, *v] for k, v in sorted(tracks.items())], dtype=np.int64).reshape(-1, 4)
    return images, labels, table


# ----------------------------------------------------------------------------------------------------
# CTC layout on disk
# ----------------------------------------------------------------------------------------------------


def _digits(num_frames: int) -> int:
    return 3 if num_frames <= 1000 else 4


def write_ctc_sequence(
    out_dir: str | os.PathLike, name: str, images: np.ndarray, labels: np.ndarray, tracks: np.ndarray
) -> dict:
    """Write one sequence in the CTC layout (images, SEG and TRA ground truth) under ``out_dir``.

    Args:
        out_dir: the data set folder (created if needed).
        name: the sequence name, e.g. ``"01"``.
        images: ``(T, H, W)`` uint16 frames, written to ``<name>/tTTT.tif``.
        labels: ``(T, H, W)`` uint16 track ids, written to ``<name>_GT/SEG/man_segTTT.tif`` and
            ``<name>_GT/TRA/man_trackTTT.tif`` (full masks as TRA markers).
        tracks: ``(N, 4)`` rows ``(L, B, E, P)``, written to ``<name>_GT/TRA/man_track.txt``.

    Returns:
        The relative paths (``{"name", "images", "seg", "tra", "man_track"}``) of what was written.
    """
    out_dir = os.fspath(out_dir)
    d = _digits(len(images))
    rel = {
        "name": name,
        "images": name,
        "seg": os.path.join(f"{name}_GT", "SEG"),
        "tra": os.path.join(f"{name}_GT", "TRA"),
        "man_track": os.path.join(f"{name}_GT", "TRA", "man_track.txt"),
    }
    for key in ("images", "seg", "tra"):
        os.makedirs(os.path.join(out_dir, rel[key]), exist_ok=True)
    for t in range(len(images)):
        tifffile.imwrite(os.path.join(out_dir, rel["images"], f"t{t:0{d}d}.tif"), images[t], compression="zlib")
        for key, prefix in (("seg", "man_seg"), ("tra", "man_track")):
            path = os.path.join(out_dir, rel[key], f"{prefix}{t:0{d}d}.tif")
            tifffile.imwrite(path, labels[t].astype(np.uint16, copy=False), compression="zlib")
    with open(os.path.join(out_dir, rel["man_track"]), "w", encoding="ascii") as f:
        f.writelines(f"{int(l_)} {int(b)} {int(e)} {int(p)}\n" for l_, b, e, p in tracks)
    return rel


def _read_sequences(out_dir: str, data: dict) -> list[dict] | None:
    """Absolute paths of the sequences of a finished ``out_dir``, or ``None`` when a file is missing."""
    gen = data["generator"]
    t_n = gen["num_frames"]
    d = _digits(t_n)
    out = []
    for seq in data.get("sequences", []):
        item = {k: os.path.join(out_dir, v) if k != "name" else v for k, v in seq.items() if k in _SEQ_KEYS}
        files = [item["man_track"]]
        for t in range(t_n):
            files += [
                os.path.join(item["images"], f"t{t:0{d}d}.tif"),
                os.path.join(item["seg"], f"man_seg{t:0{d}d}.tif"),
                os.path.join(item["tra"], f"man_track{t:0{d}d}.tif"),
            ]
        if not all(os.path.isfile(f) for f in files):
            return None
        out.append(item)
    return out if len(out) == gen["num_sequences"] else None


_SEQ_KEYS = ("name", "images", "seg", "tra", "man_track")


def _write_sequences(tmp: str, params: dict) -> dict:
    """Write every sequence into ``tmp``; returns the ``dataset.json`` content."""
    sequences, seeds = [], []
    for i in range(params["num_sequences"]):
        s = generated.case_seed(params["seed"], i)
        seeds.append(s)
        images, labels, tracks = generate_cell_video(
            s,
            params["num_frames"],
            tuple(params["image_size"]),
            num_cells=tuple(params["num_cells"]),
            division_prob=params["division_prob"],
        )
        rel = write_ctc_sequence(tmp, f"{i + 1:02d}", images, labels, tracks)
        n_div = len({int(p) for p in tracks[:, 3] if p > 0})
        sequences.append({**rel, "num_frames": len(images), "num_tracks": len(tracks), "num_divisions": n_div})
    return {
        "name": "SyntheticCells",
        "description": "Synthetic 2D+t fluorescent-nucleus videos with instance labels and lineage "
        f"(Cell Tracking Challenge layout), generated by {_MODULE_ID}",
        "reference": "cosinetrack (synthetic, no real cell data)",
        "licence": "Apache-2.0",
        "layout": "CTC: NN/tTTT.tif (uint16), NN_GT/SEG/man_segTTT.tif (every frame), NN_GT/TRA/man_trackTTT.tif "
        "(full masks, same as SEG), NN_GT/TRA/man_track.txt (L B E P)",
        "axes": {"0": "rows (H)", "1": "columns (W)"},
        "numSequences": params["num_sequences"],
        "sequences": sequences,
        "generator": {"sequence_seeds": seeds},
    }


def write_synthetic_cell_dataset(
    out_dir: str | os.PathLike,
    num_sequences: int = 2,
    seed: int = 0,
    image_size: tuple[int, int] = (256, 256),
    num_frames: int = 30,
    num_cells: int | tuple[int, int] = (8, 15),
    division_prob: float = 0.03,
    overwrite: bool = False,
) -> list[dict]:
    """Write a synthetic cell data set in the CTC layout, atomically, or reuse an up-to-date one.

    Sequence ``i`` (``f"{i + 1:02d}"``) is ``generate_cell_video(generated.case_seed(seed, i), num_frames, image_size,
    num_cells=num_cells, division_prob=division_prob)`` written by :func:`write_ctc_sequence`; a
    ``dataset.json`` lists the sequences (with track and division counts) and the generator's parameters.

    Atomic and cached (see :func:`cosinetrack.data.generated.write_generated_dataset`); a folder that this
    module did not make is never replaced.

    Args:
        out_dir: the data set folder.
        num_sequences: number of sequences (1..99).
        seed: master seed.
        image_size: ``(H, W)`` in pixels, each at least 64.
        num_frames: frames per sequence (1..9999).
        num_cells: initial nuclei per sequence, a count or an inclusive ``(low, high)`` range.
        division_prob: probability per frame that an eligible nucleus starts dividing.
        overwrite: replace a data set that this module generated with other parameters.

    Returns:
        One dict per sequence, in order, with ``name`` (``"01"``, ...) and the absolute paths ``images``
        (frames folder), ``seg`` and ``tra`` (ground-truth folders) and ``man_track`` (lineage file).

    Raises:
        FileExistsError: ``out_dir`` may not be replaced (see above).
    """
    if not 1 <= int(num_sequences) <= 99:
        raise ValueError(f"num_sequences must be in 1..99, got {num_sequences}")
    if not 1 <= int(num_frames) <= 9999:
        raise ValueError(f"num_frames must be in 1..9999, got {num_frames}")
    size = generated.check_image_size(image_size, 64)
    cells = (int(num_cells), int(num_cells)) if np.isscalar(num_cells) else tuple(int(v) for v in num_cells)
    params = generated.generator_params(
        _MODULE_ID, GENERATOR_VERSION, seed=int(seed), num_sequences=int(num_sequences), image_size=size,
        num_frames=int(num_frames), num_cells=cells, division_prob=float(division_prob),
    )
    return generated.write_generated_dataset(
        out_dir, params, _write_sequences, _read_sequences, overwrite=overwrite, what=_WHAT
    )


def ensure_synthetic_cell_dataset(cache_dir: str | os.PathLike | None = None, **params: Any) -> str:
    """The folder of the synthetic cell data set with ``params``, generating it on first use.

    Args:
        cache_dir: parent folder (``None``: :func:`cosinetrack.data.generated.default_cache_dir`,
            i.e. ``$COSINETRACK_CACHE`` or ``~/.cache/cosinetrack``). The data set lives in a subfolder
            named after the generator version and the parameters, e.g.
            ``synthetic_cells_v1_seed0_n2_256x256x30_c8-15_d0.03``.
        **params: ``num_sequences``, ``seed``, ``image_size``, ``num_frames``, ``num_cells``,
            ``division_prob`` of :func:`write_synthetic_cell_dataset` (defaults as there).

    Returns:
        The absolute path of the data set folder (CTC layout: ``01``, ``01_GT``, ..., ``dataset.json``).
    """
    if "num_cells" in params and np.isscalar(params["num_cells"]):
        params = {**params, "num_cells": (int(params["num_cells"]), int(params["num_cells"]))}
    name = (
        f"synthetic_cells_v{GENERATOR_VERSION}_seed{{seed}}_n{{num_sequences}}"
        "_{image_size[0]}x{image_size[1]}x{num_frames}_c{num_cells[0]}-{num_cells[1]}_d{division_prob}"
    )
    return generated.ensure_generated_dataset(write_synthetic_cell_dataset, cache_dir, params, name, _WHAT)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write (or reuse) a synthetic cell data set; prints where it is."""
    options = {
        "num_sequences": ("--num-sequences", "number of sequences"),
        "num_frames": ("--frames", "frames per sequence"),
        "division_prob": ("--division-prob", "probability per frame that an eligible nucleus divides"),
    }
    return generated.generator_main(argv, write_synthetic_cell_dataset, options, _WHAT, "sequences", __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
