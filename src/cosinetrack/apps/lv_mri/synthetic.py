"""Deterministic synthetic short-axis cine MRI (2D+t) with ACDC-style labels: the embedded default data set.

Each *case* is one synthetic "patient": a single mid-ventricular short-axis slice over time, drawn
from a random but fully seed-determined anatomy:

* a beating **left ventricle** (LV): a myocardial ring around a bright blood pool. The endocardial
  contour is a slightly non-circular closed curve (low-order Fourier perturbation of a circle); the
  wall thickness varies around the ring. The cavity contracts and relaxes (end-diastole -> end-systole
  -> end-diastole) with a random heart rate of 0.7 to 1.5 cycles per clip, random phase, a shorter
  systole than diastole, and the wall thickens as the cavity contracts: the myocardial area of every
  angular sector is conserved up to a small random gain (at most 15 % at end-systole, mimicking
  through-plane motion). Papillary muscles (dark, labeled as cavity like in ACDC) hug the wall;
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

    python -m cosinetrack.apps.lv_mri.synthetic --out DIR [--num-cases N] [--seed S] [--size H W]
        [--frames T] [--overwrite]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from cosinetrack.data import generated
from cosinetrack.data.generated import case_seed, default_cache_dir
from cosinetrack.data.shapes import ellipse_signed_distance, soft_coverage

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

#: Bumped whenever the generated content changes, so that cached data sets are recognized as stale.
GENERATOR_VERSION = 1
_MODULE_ID = "cosinetrack.apps.lv_mri.synthetic"
_WHAT = "synthetic cine data set"

#: ACDC label convention (as in ``dataset.json``).
LABELS = {"0": "background", "1": "right ventricle", "2": "myocardium", "3": "left ventricle cavity"}


# ----------------------------------------------------------------------------------------------------
# geometry helpers (all vectorised, distances in pixels, negative inside)
# ----------------------------------------------------------------------------------------------------


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
# one case: the random draws, then one helper per stage (static anatomy, heart geometry, composite
# image, labels, image formation)
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CaseDraws:
    """Everything :func:`generate_cine_case` draws from its generator, plus the image size.

    Lengths are in pixels unless said otherwise; "body units" are fractions of the body semi-axes
    ``body_ry`` / ``body_rx``; intensities are pre-normalization signal levels.
    """

    h: int  # image rows H
    w: int  # image columns W
    t_n: int  # frames T
    sc: float  # anatomical scale, min(H, W) / 128
    # body
    alpha: float  # global rotation of the anatomy (rad)
    body_cy: float
    body_cx: float
    body_ry: float
    body_rx: float
    fat_w: float  # subcutaneous fat width
    body_wobble: list[tuple[int, float, float]]  # (k, amplitude, phase) of the body outline
    fat_wobble: list[tuple[int, float, float]]  # ... of the fat width
    wall_w: float  # chest wall width
    # contrast
    i_fat: float
    i_muscle: float
    i_myo: float
    i_blood: float
    i_rv: float
    i_lung: float
    i_liver: float
    i_spine: float
    # lungs, liver, aorta, spine (body units)
    lung_r: tuple[float, float, float, float]  # cy, cx, ry, rx
    lung_l: tuple[float, float, float, float]
    lung_wobble: list[list[tuple[int, float, float]]]  # right lung, left lung, liver
    has_liver: bool
    liver: tuple[float, float, float, float, float]  # cy, cx, ry, rx, rotation
    has_aorta: bool
    aorta: tuple[float, float, float]  # cy, cx (body units), radius (body ry units)
    has_spine: bool
    spine: tuple[float, float, float]  # cy, cx (body units), radius (body ry units)
    # heart
    heart_ey: float  # LV center in the body frame (px)
    heart_ex: float
    r_ed: float  # end-diastolic endocardial radius
    frac_short: float  # radial fractional shortening at end-systole
    myo_gain: float  # myocardial area gain at end-systole (through-plane motion)
    wall_ed: float  # mean end-diastolic wall thickness
    endo_harm: list[tuple[int, float, float]]  # (k, amplitude, phase) of the endocardium
    wall_harm: list[tuple[int, float, float]]  # ... of the wall thickness
    shift_dir: float  # direction (rad) of the LV center's translation at end-systole
    shift_len: float  # its length
    cycles: float  # heart cycles per clip
    phase0: float  # cardiac phase of frame 0, in [0, 1)
    systole: float  # systolic fraction of the cycle
    # right ventricle
    beta: float  # side of the LV the crescent is on (rad; unit vector (sin beta, cos beta) in (row, col))
    rv_span: tuple[float, float]  # half-widths (rad) towards the two insertion points
    rv_depth: float  # RV blood depth at ED (x mean epicardial radius)
    rv_bulge: float  # crescent profile exponent (smaller: blunter ends)
    rv_short: float  # depth shortening at end-systole
    rv_wall: float  # RV free wall thickness
    # pericardium
    peri_pad: float
    peri_dir: float  # direction (rad) of the brightest epicardial fat
    peri_fat: float  # brightest epicardial fat, relative to the blood signal
    # papillary muscles
    n_pap: int
    pap: list[tuple[float, float]]  # (angle offset (rad), radius) of each
    # image formation
    blur: float  # Gaussian blur sigma
    tex_amp: float  # texture amplitude
    bias: np.ndarray  # (5,) coefficients of the bias field
    noise_sd: float  # Rician noise level (times noise_scale)
    tex: np.ndarray  # (H, W) white noise of the static texture
    noise: np.ndarray  # (2, H, W, T) white noise of the real and imaginary channels


def _draw_case(
    rng: np.random.Generator, h: int, w: int, t_n: int, noise_scale: float, cycles_per_clip: float | None
) -> _CaseDraws:
    """Draw the random parameters of a case (fixed draw order: keep it stable for reproducibility).

    ``cycles_per_clip`` (not ``None``) replaces the drawn heart rate after all draws, so that it changes
    nothing else. Noise arrays: ``tex`` ``(H, W)``, ``noise`` ``(2, H, W, T)``.
    """
    sc = min(h, w) / 128.0  # anatomical scale (px per "128-image pixel")
    u = rng.uniform
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
    # contrast (pre-normalization signal levels)
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
    shift_len = u(0.5, 2.0) * sc  # cardiac translation of the LV center at end-systole (px)
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
    return _CaseDraws(
        h=h, w=w, t_n=t_n, sc=sc,
        alpha=alpha, body_cy=body_cy, body_cx=body_cx, body_ry=body_ry, body_rx=body_rx, fat_w=fat_w,
        body_wobble=body_wobble, fat_wobble=fat_wobble, wall_w=wall_w,
        i_fat=i_fat, i_muscle=i_muscle, i_myo=i_myo, i_blood=i_blood, i_rv=i_rv, i_lung=i_lung,
        i_liver=i_liver, i_spine=i_spine,
        lung_r=lung_r, lung_l=lung_l, lung_wobble=lung_wobble, has_liver=has_liver, liver=liver,
        has_aorta=has_aorta, aorta=aorta, has_spine=has_spine, spine=spine,
        heart_ey=heart_ey, heart_ex=heart_ex, r_ed=r_ed, frac_short=frac_short, myo_gain=myo_gain,
        wall_ed=wall_ed, endo_harm=endo_harm, wall_harm=wall_harm, shift_dir=shift_dir, shift_len=shift_len,
        cycles=cycles, phase0=phase0, systole=systole,
        beta=beta, rv_span=rv_span, rv_depth=rv_depth, rv_bulge=rv_bulge, rv_short=rv_short, rv_wall=rv_wall,
        peri_pad=peri_pad, peri_dir=peri_dir, peri_fat=peri_fat, n_pap=n_pap, pap=pap,
        blur=blur, tex_amp=tex_amp, bias=bias, noise_sd=noise_sd, tex=tex, noise=noise,
    )  # fmt: skip


def _static_anatomy(p: _CaseDraws, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """The motionless anatomy: body with fat rim, chest wall, lungs, liver, spine, aorta and texture.

    Args:
        p: the case's draws.
        yy, xx: row ``(H, 1)`` and column ``(1, W)`` coordinates.

    Returns:
        float64 ``(H, W)`` signal (before the heart, blur, bias field and noise).
    """

    def body_ellipse(ey: float, ex: float, ry: float, rx: float, rot: float = 0.0, wobble: Sequence = ()) -> np.ndarray:
        """Signed distance ``(H, W)`` to an ellipse given in body units, rotated with the body."""
        cy, cx = _body_to_image(p.body_cy, p.body_cx, p.alpha, ey * p.body_ry, ex * p.body_rx)
        return ellipse_signed_distance(yy, xx, cy, cx, ry * p.body_ry, rx * p.body_rx, p.alpha + rot, wobble)

    sc = p.sc
    sd_body = ellipse_signed_distance(yy, xx, p.body_cy, p.body_cx, p.body_ry, p.body_rx, p.alpha, p.body_wobble)
    theta_body = np.arctan2(
        -(yy - p.body_cy) * np.sin(p.alpha) + (xx - p.body_cx) * np.cos(p.alpha),
        (yy - p.body_cy) * np.cos(p.alpha) + (xx - p.body_cx) * np.sin(p.alpha),
    )
    fat_local = p.fat_w * (1.0 + sum(a * np.cos(k * theta_body - ph) for k, a, ph in p.fat_wobble))
    static = np.zeros((p.h, p.w))
    static += soft_coverage(sd_body) * p.i_fat
    static += soft_coverage(sd_body + fat_local) * (p.i_muscle - static)
    inner = soft_coverage(sd_body + fat_local + p.wall_w)  # inside the chest wall
    for (cy_, cx_, ry_, rx_), wob in zip((p.lung_r, p.lung_l), p.lung_wobble):
        m = soft_coverage(body_ellipse(cy_, cx_, ry_, rx_, 0.0, wob)) * inner
        static += m * (p.i_lung - static)
    if p.has_liver:
        m = soft_coverage(body_ellipse(*p.liver, wobble=p.lung_wobble[2])) * inner
        static += m * (p.i_liver - static)
    if p.has_spine:
        cy_, cx_ = _body_to_image(p.body_cy, p.body_cx, p.alpha, p.spine[0] * p.body_ry, p.spine[1] * p.body_rx)
        r_sp = p.spine[2] * p.body_ry
        static += soft_coverage(ellipse_signed_distance(yy, xx, cy_, cx_, r_sp + 1.0 * sc, r_sp + 1.0 * sc, 0.0)) * (
            0.3 * p.i_muscle - static
        )
        static += soft_coverage(ellipse_signed_distance(yy, xx, cy_, cx_, r_sp, r_sp, 0.0)) * (p.i_spine - static)
    if p.has_aorta:
        cy_, cx_ = _body_to_image(p.body_cy, p.body_cx, p.alpha, p.aorta[0] * p.body_ry, p.aorta[1] * p.body_rx)
        r_ao = p.aorta[2] * p.body_ry
        static += soft_coverage(ellipse_signed_distance(yy, xx, cy_, cx_, r_ao, r_ao, 0.0)) * (0.9 * p.i_blood - static)
    tex_field = ndi.gaussian_filter(p.tex, 3.0 * sc)
    tex_field /= max(float(tex_field.std()), 1e-9)
    static *= 1.0 + p.tex_amp * tex_field
    return static


class _Heart(NamedTuple):
    """Signed distances (px, negative inside) of the beating heart's contours, all ``(H, W, T)``."""

    sd_endo: np.ndarray  # LV endocardium (the cavity)
    sd_epi: np.ndarray  # LV epicardium (cavity and myocardium)
    sd_rv: np.ndarray  # RV blood pool (outer contour; the LV is inside it too)
    sd_rv_wall: np.ndarray  # outer contour of the RV free wall
    sd_paps: list[np.ndarray]  # papillary muscles, ``n_pap`` of them
    phi: np.ndarray  # angle (rad) of each pixel around the moving LV center


def _harmonics(terms: list[tuple[int, float, float]], ang: np.ndarray) -> np.ndarray:
    """``1 + sum(a * cos(k * ang - phase))`` over the ``(k, a, phase)`` terms."""
    return 1.0 + sum(a * np.cos(k * ang - ph) for k, a, ph in terms)


def _heart_geometry(p: _CaseDraws, yy: np.ndarray, xx: np.ndarray) -> _Heart:
    """Cardiac motion: the contours of the LV, the RV crescent and the papillary muscles in every frame.

    Args:
        p: the case's draws.
        yy, xx: row ``(H, 1)`` and column ``(1, W)`` coordinates.

    Returns:
        the signed distances, each ``(H, W, T)`` (time parameters are ``(1, 1, T)``).
    """
    t = np.arange(p.t_n, dtype=np.float64)[None, None, :]
    contraction = _cardiac_waveform(p.phase0 + p.cycles * t / p.t_n, p.systole)  # 0 at ED, 1 at ES
    lv_cy0, lv_cx0 = _body_to_image(p.body_cy, p.body_cx, p.alpha, p.heart_ey, p.heart_ex)
    lv_cy = lv_cy0 + contraction * p.shift_len * np.sin(p.shift_dir)
    lv_cx = lv_cx0 + contraction * p.shift_len * np.cos(p.shift_dir)
    y3 = yy[..., None]
    x3 = xx[..., None]
    dy = y3 - lv_cy
    dx = x3 - lv_cx
    r = np.hypot(dy, dx)
    phi = np.arctan2(dy, dx)

    # cos(k phi), sin(k phi) by the angle-addition recurrence (much cheaper than cos on (H, W, T) arrays)
    cos1 = dx / np.maximum(r, 1e-9)
    sin1 = dy / np.maximum(r, 1e-9)
    cos_k, sin_k = [np.ones_like(r), cos1], [np.zeros_like(r), sin1]
    for _ in range(3):
        cos_k.append(cos_k[-1] * cos1 - sin_k[-1] * sin1)
        sin_k.append(sin_k[-1] * cos1 + cos_k[-2] * sin1)

    def harmonics_grid(terms: list[tuple[int, float, float]]) -> np.ndarray:
        return 1.0 + sum(a * (np.cos(ph) * cos_k[k] + np.sin(ph) * sin_k[k]) for k, a, ph in terms)

    endo_shape = harmonics_grid(p.endo_harm)
    wall_shape = np.maximum(harmonics_grid(p.wall_harm), 2.0 / p.wall_ed)  # wall >= 2 px everywhere at ED
    r_endo_ed = p.r_ed * endo_shape
    r_epi_ed = r_endo_ed + p.wall_ed * wall_shape
    myo_c = r_epi_ed**2 - r_endo_ed**2  # sector area density, conserved up to the gain
    r_endo = r_endo_ed * (1.0 - p.frac_short * contraction)
    r_epi = np.sqrt(r_endo**2 + myo_c * (1.0 + p.myo_gain * contraction))
    sd_endo = r - r_endo
    sd_epi = r - r_epi

    # right ventricle: crescent between the epicardium and R_epi + depth * profile(angle), with a thin
    # free wall; profile is 1 at the angle beta and falls to 0 at the insertion points beta -/+ rv_span
    d_ang = np.mod(phi - p.beta + np.pi, 2 * np.pi) - np.pi  # wrapped to [-pi, pi)
    span = np.where(d_ang < 0, p.rv_span[0], p.rv_span[1])
    window = np.cos(0.5 * np.pi * np.clip(np.abs(d_ang) / span, 0.0, 1.0))
    depth = p.rv_depth * (p.r_ed + p.wall_ed) * (1.0 - p.rv_short * contraction)
    r_rv = r_epi + depth * window**p.rv_bulge
    sd_rv = r - r_rv
    sd_rv_wall = r - (r_rv + p.rv_wall * window**0.3)

    # papillary muscles, opposite the RV, hugging the endocardium
    sd_paps = []
    for ang_off, rad in p.pap[: p.n_pap]:
        ang = p.beta + np.pi + ang_off
        endo_at = p.r_ed * _harmonics(p.endo_harm, np.asarray(ang)) * (1.0 - p.frac_short * contraction)
        dist = np.maximum(endo_at - 1.3 * rad, 0.0)
        sd_paps.append(np.hypot(y3 - (lv_cy + dist * np.sin(ang)), x3 - (lv_cx + dist * np.cos(ang))) - rad)
    return _Heart(sd_endo, sd_epi, sd_rv, sd_rv_wall, sd_paps, phi)


def _composite(p: _CaseDraws, static: np.ndarray, heart: _Heart) -> np.ndarray:
    """Draw the heart (pericardium, RV wall and pool, myocardium, LV pool, papillary muscles) over the
    static anatomy ``(H, W)``; returns float64 ``(H, W, T)`` partial-volume signal."""
    img = np.repeat(static[..., None], p.t_n, axis=2)
    sd_heart = np.minimum(heart.sd_epi, heart.sd_rv_wall)
    peri_bright = max(p.i_blood * p.peri_fat, p.i_muscle)
    peri_val = p.i_muscle + (peri_bright - p.i_muscle) * np.clip(np.cos(heart.phi - p.peri_dir), 0.0, 1.0) ** 2
    img += soft_coverage(sd_heart - p.peri_pad) * (peri_val - img)
    img += soft_coverage(heart.sd_rv_wall) * (p.i_myo - img)
    img += soft_coverage(heart.sd_rv) * (p.i_rv - img)
    img += soft_coverage(heart.sd_epi) * (p.i_myo - img)
    img += soft_coverage(heart.sd_endo) * (p.i_blood - img)
    for sd_p in heart.sd_paps:
        img += soft_coverage(sd_p) * (p.i_myo - img)
    return img


def _labels(heart: _Heart) -> np.ndarray:
    """ACDC labels of the heart: uint8 ``(H, W, T)``, 1 RV blood pool, 2 LV myocardium, 3 LV cavity
    (papillary muscles included), 0 elsewhere."""
    label = np.zeros(heart.sd_epi.shape, dtype=np.uint8)
    label[(heart.sd_rv < 0) & (heart.sd_epi >= 0)] = 1
    label[heart.sd_epi < 0] = 2
    label[heart.sd_endo < 0] = 3
    return label


def _image_formation(p: _CaseDraws, img: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """MR image formation of the signal ``img`` ``(H, W, T)``: blur, bias field, Rician noise, scaling so
    that the 99.8th percentile is 1, clipping to ``[0, 1]``; returns float32 ``(H, W, T)``."""
    h, w = p.h, p.w
    img = ndi.gaussian_filter(img, sigma=(p.blur, p.blur, 0.0))
    ny = (yy - h / 2) / (h / 2)
    nx = (xx - w / 2) / (w / 2)
    bias = p.bias
    field = np.exp(bias[0] * ny + bias[1] * nx + bias[2] * ny**2 + bias[3] * nx**2 + bias[4] * ny * nx)
    img *= (field / field.mean())[..., None]
    img = np.hypot(img + p.noise_sd * p.noise[0], p.noise_sd * p.noise[1])
    img /= max(float(np.percentile(img, 99.8)), 1e-6)
    np.clip(img, 0.0, 1.0, out=img)
    return img.astype(np.float32)


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
    draws = _draw_case(rng, h, w, t_n, noise_scale, cycles_per_clip)
    yy = np.arange(h, dtype=np.float64)[:, None]
    xx = np.arange(w, dtype=np.float64)[None, :]
    static = _static_anatomy(draws, yy, xx)  # (H, W)
    heart = _heart_geometry(draws, yy, xx)  # signed distances (H, W, T)
    img = _composite(draws, static, heart)  # (H, W, T)
    label = _labels(heart)
    return _image_formation(draws, img, yy, xx), label


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
