"""Deterministic synthetic short-axis cine MRI (2D+t) with ACDC-style labels: the embedded default data set.

Each *case* is one synthetic "patient": a single mid-ventricular short-axis slice over time, drawn
from a random but fully seed-determined anatomy:

* a beating **left ventricle** (LV): a myocardial ring around a bright blood pool. The endocardial
  contour is a slightly non-circular closed curve (low-order Fourier perturbation of a circle); the
  wall thickness varies around the ring. The cavity contracts and relaxes (end-diastole -> end-systole
  -> end-diastole) with a random heart rate of 0.7 to 1.5 cycles per clip, random phase, a shorter
  systole than diastole, and the wall thickens as the cavity contracts: the myocardial area of every
  angular sector is conserved up to a small random gain (at most 15 % at end-systole, mimicking
  through-plane motion). Papillary muscles (dark, labelled as cavity like in ACDC) hug the wall;
* a crescent-shaped **right ventricle** (RV) blood pool wrapped around one side of the LV (an ellipse
  minus the LV), with a thin dark free wall, beating with the same rhythm;
* a pericardial layer (partly bright epicardial fat), the **body** outline (an ellipse of soft tissue
  with a bright subcutaneous fat rim), dark **lungs**, and optionally a liver-like blob, the descending
  aorta and a vertebral body; dark air outside the body;
* MR-like image formation: partial-volume edges (1-pixel linear ramps plus a small Gaussian blur), a
  static low-frequency tissue texture, a smooth multiplicative intensity inhomogeneity (bias field) and
  Rician noise (magnitude of a complex image with Gaussian noise, independent per frame). Finally the
  clip is scaled so that its 99.8th percentile is 1 and clipped to ``[0, 1]`` (like the ACDC files,
  where air is about 0, myocardium about 0.1-0.15, blood about 0.3-0.5 and fat about 1).

Sizes, position, orientation, heart rate, contrast (blood / myocardium / tissue / fat intensities),
bias field, blur and noise level all vary between seeds. Anatomical sizes are given in pixels for a
128 x 128 image and scale with ``min(H, W) / 128`` (one pixel is "about 2.5 mm"; the data carry no
physical units: the NIfTI files have an identity affine).

Conventions
-----------
* Arrays are ``(H, W, T)``: axis 0 = image rows (H, "y", top to bottom = anterior to posterior),
  axis 1 = image columns (W, "x"), axis 2 = time (cine frames, equally spaced over the clip).
* Images are float32 in ``[0, 1]`` (arbitrary MR signal units); labels are uint8 with the ACDC values
  ``0`` background, ``1`` right-ventricle blood pool, ``2`` left-ventricle myocardium, ``3`` left-ventricle
  cavity (papillary muscles included).
* On disk (:func:`write_synthetic_cine_dataset`) the MSD layout ``imagesTr/synthNNN.nii.gz`` +
  ``labelsTr/synthNNN.nii.gz`` + ``dataset.json`` is used; each NIfTI file stores the ``(H, W, T)``
  array as is (``nibabel.load(f).get_fdata()`` returns exactly the generated array), with an identity
  affine and pixdim ``(1, 1, 1)`` (the third "voxel size" is one frame). These are 2D+t files: read
  them with ``file_layout="xyt"`` (what ``"auto"`` picks for 3D files without a frame pattern).

Everything is deterministic given the seed (``numpy.random.default_rng(seed)``); case ``i`` of a data
set uses a seed derived from ``(seed, i)`` with :class:`numpy.random.SeedSequence`. One 128 x 128 x 20
case takes about 0.1 s (vectorised NumPy, no per-pixel loops).

Command line::

    python -m cosinetrack.data.synthetic_cine --out DIR [--num-cases N] [--seed S] [--size H W]
        [--frames T] [--overwrite]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from cosinetrack.data import generated
from cosinetrack.data.generated import case_seed, default_cache_dir

__all__ = [
    "GENERATOR_VERSION",
    "LABELS",
    "case_seed",
    "generate_cine_case",
    "write_synthetic_cine_dataset",
    "ensure_synthetic_cine_dataset",
    "default_cache_dir",
    "main",
]

#: Bumped whenever the generated content changes, so that cached data sets are recognised as stale.
GENERATOR_VERSION = 1
_MODULE_ID = "cosinetrack.data.synthetic_cine"
_WHAT = "synthetic cine data set"

#: ACDC label convention (as in ``dataset.json``).
LABELS = {"0": "background", "1": "right ventricle", "2": "myocardium", "3": "left ventricle cavity"}


# ----------------------------------------------------------------------------------------------------
# geometry helpers (all vectorised, distances in pixels, negative inside)
# ----------------------------------------------------------------------------------------------------


def _soft(sd: np.ndarray) -> np.ndarray:
    """Partial-volume coverage of a pixel by a shape from its signed distance ``sd`` (px, < 0 inside)."""
    return np.clip(0.5 - sd, 0.0, 1.0)


def _ellipse_sd(
    yy: np.ndarray,
    xx: np.ndarray,
    cy: Any,
    cx: Any,
    ry: Any,
    rx: Any,
    angle: float,
    wobble: Sequence[tuple[int, float, float]] = (),
) -> np.ndarray:
    """Approximate signed distance (px, negative inside) to an ellipse, exact on the boundary to first order.

    Args:
        yy, xx: row / column coordinates (broadcastable arrays).
        cy, cx: centre (scalars or arrays broadcastable with ``yy``).
        ry, rx: semi-axes (px) along the ellipse's own "row" and "column" axes.
        angle: rotation (radians) of the ellipse axes.
        wobble: ``(k, amplitude, phase)`` terms: the radius is scaled by
            ``1 + sum(amplitude * cos(k * theta - phase))`` at the elliptic angle ``theta``.
    """
    dy = yy - cy
    dx = xx - cx
    c, s = np.cos(angle), np.sin(angle)
    u = dy * c + dx * s
    v = -dy * s + dx * c
    q = np.sqrt((u / ry) ** 2 + (v / rx) ** 2)
    grad = np.sqrt((u / ry**2) ** 2 + (v / rx**2) ** 2) / np.maximum(q, 1e-9)
    scale = 1.0
    if wobble:
        theta = np.arctan2(v / rx, u / ry)
        scale = 1.0 + sum(a * np.cos(k * theta - p) for k, a, p in wobble)
    return (q - scale) / np.maximum(grad, 1e-9)


def _body_to_image(cy: float, cx: float, alpha: float, ey: float, ex: float) -> tuple[float, float]:
    """Image coordinates of the body-frame offset ``(ey, ex)`` (px) for a body rotated by ``alpha``."""
    c, s = np.cos(alpha), np.sin(alpha)
    return cy + ey * c - ex * s, cx + ey * s + ex * c


def _cardiac_waveform(phase: np.ndarray, systole: float) -> np.ndarray:
    """Contraction state in ``[0, 1]`` (0 = end-diastole, 1 = end-systole) of the cardiac phase in [0, 1).

    Smooth (C1) and periodic: cosine contraction over the first ``systole`` fraction of the cycle,
    slower cosine relaxation over the rest.
    """
    p = np.mod(phase, 1.0)
    contract = 0.5 * (1.0 - np.cos(np.pi * p / systole))
    relax = 0.5 * (1.0 + np.cos(np.pi * (p - systole) / (1.0 - systole)))
    return np.where(p < systole, contract, relax)


# ----------------------------------------------------------------------------------------------------
# one case
# ----------------------------------------------------------------------------------------------------


def generate_cine_case(
    seed: int,
    image_size: tuple[int, int] = (128, 128),
    num_frames: int = 20,
    *,
    cycles_per_clip: float | None = None,
    noise_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate one synthetic short-axis cine slice (2D+t) and its ACDC-style label map.

    Args:
        seed: seed of ``numpy.random.default_rng``; the output is a pure function of the arguments.
        image_size: ``(H, W)`` in pixels, each at least 32.
        num_frames: ``T``, number of cine frames (equally spaced over the clip), at least 1.
        cycles_per_clip: heart cycles per clip; ``None`` draws it from U(0.7, 1.5). Overriding it does
            not change anything else that the seed draws (anatomy, contrast, noise).
        noise_scale: multiplies the (random) Rician noise level; ``0`` gives a noise-free image.

    Returns:
        ``(image, label)``: image float32 ``(H, W, T)`` in ``[0, 1]`` and label uint8 ``(H, W, T)`` with
        0 background, 1 RV blood pool, 2 LV myocardium, 3 LV cavity. Axis 0 = rows, 1 = columns,
        2 = time.
    """
    h, w = (int(v) for v in image_size)
    t_n = int(num_frames)
    if h < 32 or w < 32:
        raise ValueError(f"image_size must be at least (32, 32), got {tuple(image_size)}")
    if t_n < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if noise_scale < 0:
        raise ValueError(f"noise_scale must be >= 0, got {noise_scale}")
    rng = np.random.default_rng(seed)
    sc = min(h, w) / 128.0  # anatomical scale (px per "128-image pixel")
    u = rng.uniform

    # ---------------- random parameters (fixed draw order: keep it stable for reproducibility) -------
    # body
    alpha = u(-0.35, 0.35)  # global rotation of the anatomy (rad, about +-20 degrees)
    body_cy = h / 2 + u(-0.04, 0.04) * h
    body_cx = w / 2 + u(-0.04, 0.04) * w
    body_ry = u(0.34, 0.44) * h
    body_rx = u(0.42, 0.50) * w
    fat_w = u(2.0, 5.0) * sc
    body_wobble = [(k, u(0.0, 0.03), u(0, 2 * np.pi)) for k in (2, 3, 4)]
    fat_wobble = [(k, u(0.0, 0.3), u(0, 2 * np.pi)) for k in (1, 2)]
    wall_w = u(3.0, 7.0) * sc
    # contrast (pre-normalisation signal levels)
    i_fat = u(0.6, 0.9)
    i_muscle = u(0.12, 0.22)
    i_myo = u(0.09, 0.16)
    i_blood = u(0.38, 0.6)
    i_rv = i_blood * u(0.85, 1.0)
    i_lung = u(0.0, 0.04)
    i_liver = u(0.18, 0.3)
    i_spine = u(0.22, 0.4)
    # lungs, liver, aorta, spine (body frame, in units of the body semi-axes)
    lung_r = (u(0.0, 0.25), u(-0.55, -0.45), u(0.5, 0.65), u(0.28, 0.36))  # cy, cx, ry, rx
    lung_l = (u(0.05, 0.3), u(0.5, 0.62), u(0.45, 0.6), u(0.25, 0.33))
    lung_wobble = [[(k, u(0.0, 0.08), u(0, 2 * np.pi)) for k in (2, 3, 4)] for _ in range(3)]
    has_liver = u() < 0.6
    liver = (u(0.5, 0.7), u(-0.6, -0.35), u(0.35, 0.5), u(0.35, 0.5), u(-0.5, 0.5))
    has_aorta = u() < 0.8
    aorta = (u(0.5, 0.6), u(0.08, 0.18), u(0.07, 0.1))  # cy, cx (body units), radius (body ry units)
    has_spine = u() < 0.8
    spine = (u(0.72, 0.8), u(-0.08, 0.05), u(0.1, 0.14))
    # heart
    heart_ey = u(-0.2, 0.05) * body_ry
    heart_ex = u(0.0, 0.2) * body_rx
    r_ed = u(9.0, 14.0) * sc  # end-diastolic endocardial radius (px)
    frac_short = u(0.2, 0.38)  # radial fractional shortening at end-systole
    myo_gain = u(0.0, 0.15)  # myocardial area gain at end-systole (through-plane motion)
    wall_ed = max(u(3.0, 4.5) * sc, 2.0)  # mean end-diastolic wall thickness (px)
    endo_harm = [(k, u(0.0, amp), u(0, 2 * np.pi)) for k, amp in ((2, 0.08), (3, 0.04), (4, 0.02))]
    wall_harm = [(k, u(0.0, amp), u(0, 2 * np.pi)) for k, amp in ((1, 0.25), (2, 0.1))]
    shift_dir = u(0, 2 * np.pi)
    shift_len = u(0.5, 2.0) * sc  # cardiac translation of the LV centre at end-systole (px)
    cycles = u(0.7, 1.5)
    phase0 = u(0.0, 1.0)
    systole = u(0.3, 0.42)
    # right ventricle: a crescent on the side beta of the LV (unit vector (sin beta, cos beta) in (row, col))
    beta = u(np.deg2rad(195), np.deg2rad(240)) - alpha
    rv_span = (u(np.deg2rad(50), np.deg2rad(80)), u(np.deg2rad(50), np.deg2rad(80)))  # half-widths
    rv_depth = u(0.45, 0.9)  # RV blood depth at ED (x mean epicardial radius)
    rv_bulge = u(0.4, 0.8)  # crescent profile exponent (smaller: blunter ends)
    rv_short = u(0.25, 0.45)  # depth shortening at end-systole
    rv_wall = u(1.0, 1.8) * sc
    # pericardium
    peri_pad = u(1.5, 3.5) * sc
    peri_dir = u(0, 2 * np.pi)
    peri_fat = u(0.4, 0.75)  # brightest epicardial fat, relative to the blood signal
    # papillary muscles
    n_pap = int(rng.integers(0, 3))
    pap = [(u(np.deg2rad(35), np.deg2rad(65)) * sgn, u(1.0, 1.8) * sc) for sgn in (1, -1)]
    # image formation
    blur = u(0.4, 0.8) * sc
    tex_amp = u(0.04, 0.1)
    bias = rng.normal(0.0, [0.18, 0.18, 0.1, 0.1, 0.08])
    noise_sd = u(0.008, 0.03) * noise_scale
    tex = rng.standard_normal((h, w))
    noise = rng.standard_normal((2, h, w, t_n))
    if cycles_per_clip is not None:
        cycles = float(cycles_per_clip)

    yy = np.arange(h, dtype=np.float64)[:, None]
    xx = np.arange(w, dtype=np.float64)[None, :]

    # ---------------- static anatomy (H, W) ----------------------------------------------------------
    def body_ellipse(
        ey: float, ex: float, ry: float, rx: float, rot: float = 0.0, wobble: Sequence = ()
    ) -> np.ndarray:
        cy, cx = _body_to_image(body_cy, body_cx, alpha, ey * body_ry, ex * body_rx)
        return _ellipse_sd(yy, xx, cy, cx, ry * body_ry, rx * body_rx, alpha + rot, wobble)

    sd_body = _ellipse_sd(yy, xx, body_cy, body_cx, body_ry, body_rx, alpha, body_wobble)
    theta_body = np.arctan2(
        -(yy - body_cy) * np.sin(alpha) + (xx - body_cx) * np.cos(alpha),
        (yy - body_cy) * np.cos(alpha) + (xx - body_cx) * np.sin(alpha),
    )
    fat_local = fat_w * (1.0 + sum(a * np.cos(k * theta_body - p) for k, a, p in fat_wobble))
    static = np.zeros((h, w))
    static += _soft(sd_body) * i_fat
    static += _soft(sd_body + fat_local) * (i_muscle - static)
    inner = _soft(sd_body + fat_local + wall_w)  # inside the chest wall
    for (cy_, cx_, ry_, rx_), wob in zip((lung_r, lung_l), lung_wobble):
        m = _soft(body_ellipse(cy_, cx_, ry_, rx_, 0.0, wob)) * inner
        static += m * (i_lung - static)
    if has_liver:
        m = _soft(body_ellipse(*liver, wobble=lung_wobble[2])) * inner
        static += m * (i_liver - static)
    if has_spine:
        cy_, cx_ = _body_to_image(body_cy, body_cx, alpha, spine[0] * body_ry, spine[1] * body_rx)
        r_sp = spine[2] * body_ry
        static += _soft(_ellipse_sd(yy, xx, cy_, cx_, r_sp + 1.0 * sc, r_sp + 1.0 * sc, 0.0)) * (
            0.3 * i_muscle - static
        )
        static += _soft(_ellipse_sd(yy, xx, cy_, cx_, r_sp, r_sp, 0.0)) * (i_spine - static)
    if has_aorta:
        cy_, cx_ = _body_to_image(body_cy, body_cx, alpha, aorta[0] * body_ry, aorta[1] * body_rx)
        r_ao = aorta[2] * body_ry
        static += _soft(_ellipse_sd(yy, xx, cy_, cx_, r_ao, r_ao, 0.0)) * (0.9 * i_blood - static)
    tex_field = ndi.gaussian_filter(tex, 3.0 * sc)
    tex_field /= max(float(tex_field.std()), 1e-9)
    static *= 1.0 + tex_amp * tex_field

    # ---------------- cardiac motion, (1, 1, T) time parameters -------------------------------------
    t = np.arange(t_n, dtype=np.float64)[None, None, :]
    contraction = _cardiac_waveform(phase0 + cycles * t / t_n, systole)  # 0 at ED, 1 at ES
    lv_cy0, lv_cx0 = _body_to_image(body_cy, body_cx, alpha, heart_ey, heart_ex)
    lv_cy = lv_cy0 + contraction * shift_len * np.sin(shift_dir)
    lv_cx = lv_cx0 + contraction * shift_len * np.cos(shift_dir)
    y3 = yy[..., None]
    x3 = xx[..., None]
    dy = y3 - lv_cy
    dx = x3 - lv_cx
    r = np.hypot(dy, dx)
    phi = np.arctan2(dy, dx)

    def harmonics(terms: list[tuple[int, float, float]], ang: np.ndarray) -> np.ndarray:
        return 1.0 + sum(a * np.cos(k * ang - p) for k, a, p in terms)

    # cos(k phi), sin(k phi) by the angle-addition recurrence (much cheaper than cos on (H, W, T) arrays)
    cos1 = dx / np.maximum(r, 1e-9)
    sin1 = dy / np.maximum(r, 1e-9)
    cos_k, sin_k = [np.ones_like(r), cos1], [np.zeros_like(r), sin1]
    for _ in range(3):
        cos_k.append(cos_k[-1] * cos1 - sin_k[-1] * sin1)
        sin_k.append(sin_k[-1] * cos1 + cos_k[-2] * sin1)

    def harmonics_grid(terms: list[tuple[int, float, float]]) -> np.ndarray:
        return 1.0 + sum(a * (np.cos(p) * cos_k[k] + np.sin(p) * sin_k[k]) for k, a, p in terms)

    endo_shape = harmonics_grid(endo_harm)
    wall_shape = np.maximum(harmonics_grid(wall_harm), 2.0 / wall_ed)  # wall >= 2 px everywhere at ED
    r_endo_ed = r_ed * endo_shape
    r_epi_ed = r_endo_ed + wall_ed * wall_shape
    myo_c = r_epi_ed**2 - r_endo_ed**2  # sector area density, conserved up to the gain
    r_endo = r_endo_ed * (1.0 - frac_short * contraction)
    r_epi = np.sqrt(r_endo**2 + myo_c * (1.0 + myo_gain * contraction))
    sd_endo = r - r_endo
    sd_epi = r - r_epi

    # right ventricle: crescent between the epicardium and R_epi + depth * profile(angle), with a thin
    # free wall; profile is 1 at the angle beta and falls to 0 at the insertion points beta -/+ rv_span
    d_ang = np.mod(phi - beta + np.pi, 2 * np.pi) - np.pi  # wrapped to [-pi, pi)
    span = np.where(d_ang < 0, rv_span[0], rv_span[1])
    window = np.cos(0.5 * np.pi * np.clip(np.abs(d_ang) / span, 0.0, 1.0))
    depth = rv_depth * (r_ed + wall_ed) * (1.0 - rv_short * contraction)
    r_rv = r_epi + depth * window**rv_bulge
    sd_rv = r - r_rv
    sd_rv_wall = r - (r_rv + rv_wall * window**0.3)

    # papillary muscles, opposite the RV, hugging the endocardium
    sd_paps = []
    for ang_off, rad in pap[:n_pap]:
        ang = beta + np.pi + ang_off
        endo_at = r_ed * harmonics(endo_harm, np.asarray(ang)) * (1.0 - frac_short * contraction)
        dist = np.maximum(endo_at - 1.3 * rad, 0.0)
        sd_paps.append(np.hypot(y3 - (lv_cy + dist * np.sin(ang)), x3 - (lv_cx + dist * np.cos(ang))) - rad)

    # ---------------- composite (H, W, T) ------------------------------------------------------------
    img = np.repeat(static[..., None], t_n, axis=2)
    sd_heart = np.minimum(sd_epi, sd_rv_wall)
    peri_bright = max(i_blood * peri_fat, i_muscle)
    peri_val = i_muscle + (peri_bright - i_muscle) * np.clip(np.cos(phi - peri_dir), 0.0, 1.0) ** 2
    img += _soft(sd_heart - peri_pad) * (peri_val - img)
    img += _soft(sd_rv_wall) * (i_myo - img)
    img += _soft(sd_rv) * (i_rv - img)
    img += _soft(sd_epi) * (i_myo - img)
    img += _soft(sd_endo) * (i_blood - img)
    for sd_p in sd_paps:
        img += _soft(sd_p) * (i_myo - img)

    label = np.zeros((h, w, t_n), dtype=np.uint8)
    label[(sd_rv < 0) & (sd_epi >= 0)] = 1
    label[sd_epi < 0] = 2
    label[sd_endo < 0] = 3

    # ---------------- image formation ----------------------------------------------------------------
    img = ndi.gaussian_filter(img, sigma=(blur, blur, 0.0))
    ny = (yy - h / 2) / (h / 2)
    nx = (xx - w / 2) / (w / 2)
    field = np.exp(bias[0] * ny + bias[1] * nx + bias[2] * ny**2 + bias[3] * nx**2 + bias[4] * ny * nx)
    img *= (field / field.mean())[..., None]
    img = np.hypot(img + noise_sd * noise[0], noise_sd * noise[1])
    img /= max(float(np.percentile(img, 99.8)), 1e-6)
    np.clip(img, 0.0, 1.0, out=img)
    return img.astype(np.float32), label


# ----------------------------------------------------------------------------------------------------
# data set on disk
# ----------------------------------------------------------------------------------------------------


def _case_name(index: int) -> str:
    return f"synth{index:03d}"


def _entries(out_dir: str, data: dict) -> list[dict] | None:
    """The absolute image / label paths of the cases, or ``None`` when the folder is incomplete."""
    out = []
    for item in data.get("training", []):
        out.append({k: os.path.normpath(os.path.join(out_dir, item[k])) for k in ("image", "label")})
    if len(out) != data["generator"]["num_cases"] or not all(
        os.path.isfile(e["image"]) and os.path.isfile(e["label"]) for e in out
    ):
        return None
    return out


def _save_nifti(array: np.ndarray, path: str, description: str) -> None:
    img = nib.Nifti1Image(array, np.eye(4))
    img.set_data_dtype(array.dtype)
    img.header.set_zooms((1.0, 1.0, 1.0))
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = description.encode()[:79]
    nib.save(img, path)


def _write_cases(tmp: str, params: dict) -> dict:
    """Write the NIfTI files of every case into ``tmp``; returns the ``dataset.json`` content."""
    os.makedirs(os.path.join(tmp, "imagesTr"))
    os.makedirs(os.path.join(tmp, "labelsTr"))
    training = []
    seeds = []
    for i in range(params["num_cases"]):
        s = case_seed(params["seed"], i)
        seeds.append(s)
        image, label = generate_cine_case(s, tuple(params["image_size"]), params["num_frames"])
        name = _case_name(i)
        for sub, array, what in (("imagesTr", image, "synthetic cine"), ("labelsTr", label, "labels")):
            _save_nifti(array, os.path.join(tmp, sub, f"{name}.nii.gz"), f"{what} {name} axes (H,W,T)")
        training.append({"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"})
    return {
        "name": "SyntheticCine",
        "description": "Synthetic short-axis cine MRI slices (2D+t) with ACDC-style labels, generated by "
        f"{_MODULE_ID}",
        "reference": "cosinetrack (synthetic, no patient data)",
        "licence": "Apache-2.0",
        "release": f"generator version {GENERATOR_VERSION}",
        "tensorImageSize": "3D",
        "axes": {"0": "rows (H)", "1": "columns (W)", "2": "time (frames)"},
        "modality": {"0": "cine MRI"},
        "labels": dict(LABELS),
        "numTraining": params["num_cases"],
        "numTest": 0,
        "training": training,
        "test": [],
        "generator": {"case_seeds": seeds},
    }


def write_synthetic_cine_dataset(
    out_dir: str | os.PathLike,
    num_cases: int = 12,
    seed: int = 0,
    image_size: tuple[int, int] = (128, 128),
    num_frames: int = 20,
    overwrite: bool = False,
) -> list[dict]:
    """Write a synthetic cine data set in the MSD layout, atomically, or reuse an up-to-date one.

    Layout: ``out_dir/imagesTr/synthNNN.nii.gz`` (float32 ``(H, W, T)``), ``out_dir/labelsTr/synthNNN.nii.gz``
    (uint8 ``(H, W, T)``, ACDC labels) and ``out_dir/dataset.json`` (MSD-like, with a ``generator`` entry
    holding the module, version and parameters). Case ``i`` is ``generate_cine_case(case_seed(seed, i),
    image_size, num_frames)``.

    Atomic and cached (see :func:`cosinetrack.data.generated.write_generated_dataset`); a folder that this
    module did not make is never replaced.

    Args:
        out_dir: the data set folder.
        num_cases: number of cases (>= 1).
        seed: master seed.
        image_size: ``(H, W)`` in pixels.
        num_frames: frames per case.
        overwrite: replace a data set that this module generated with other parameters.

    Returns:
        One ``{"image": absolute path, "label": absolute path}`` dict per case, in case order.

    Raises:
        FileExistsError: ``out_dir`` may not be replaced (see above).
    """
    if int(num_cases) < 1:
        raise ValueError(f"num_cases must be at least 1, got {num_cases}")
    size = generated.check_image_size(image_size, 32)
    params = generated.generator_params(
        _MODULE_ID, GENERATOR_VERSION, seed=int(seed), num_cases=int(num_cases), image_size=size,
        num_frames=int(num_frames),
    )
    return generated.write_generated_dataset(out_dir, params, _write_cases, _entries, overwrite=overwrite, what=_WHAT)


def ensure_synthetic_cine_dataset(cache_dir: str | os.PathLike | None = None, **params: Any) -> str:
    """The folder of the synthetic cine data set with ``params``, generating it on first use.

    Args:
        cache_dir: parent folder (``None``: :func:`default_cache_dir`, i.e. ``$COSINETRACK_CACHE`` or
            ``~/.cache/cosinetrack``). The data set lives in a subfolder named after the generator
            version and the parameters, e.g. ``synthetic_cine_v1_seed0_n12_128x128x20``.
        **params: ``num_cases``, ``seed``, ``image_size``, ``num_frames`` of
            :func:`write_synthetic_cine_dataset` (defaults as there).

    Returns:
        The absolute path of the data set folder (with ``dataset.json``, ``imagesTr``, ``labelsTr``).
    """
    name = (
        f"synthetic_cine_v{GENERATOR_VERSION}_seed{{seed}}_n{{num_cases}}"
        "_{image_size[0]}x{image_size[1]}x{num_frames}"
    )
    return generated.ensure_generated_dataset(write_synthetic_cine_dataset, cache_dir, params, name, _WHAT)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write (or reuse) a synthetic cine data set; prints where it is."""
    options = {"num_cases": ("--num-cases", "number of cases"), "num_frames": ("--frames", "frames per case")}
    return generated.generator_main(argv, write_synthetic_cine_dataset, options, _WHAT, "cases", __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
