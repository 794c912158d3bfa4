"""Intensity transforms on raw frames: imaging-noise augmentation and the Gaussian smoothing before the
normalization.

Microscopy videos of the same kind differ most in noise and in how bright the nuclei are relative to the
background: a model trained on one clean video found only bright fragments of the cells of a noisier
video. :class:`RandImagingNoised` adds camera-like noise to the *raw* frames, before the Gaussian
smoothing and the robust normalization that inference applies too, so the network learns from noise as
the pipeline will show it. Its strength is relative to the clip's contrast (the 99.5th percentile minus
the median), so one setting serves 8-bit and 16-bit data alike.

:class:`RandInstanceContrastd` dims single cells (their contrast to the background), so that a model trained
on a video of evenly bright nuclei still finds the dim nuclei of another.

:class:`RandGlowd` adds a dim out-of-focus halo around bright objects (background in the labels), so that a model
trained on sharp synthetic nuclei does not read another video's halos as cells.

:class:`SmoothFramesd` is the Gaussian smoothing of the paper's cell setting (2 px), MONAI's
``GaussianSmooth`` with a choice of what lies beyond the frame: ``"zeros"`` (MONAI's) darkens a band of about
``4 sigma`` px along every edge of a frame whose background is not 0 (a cell cut by the frame's edge comes
out dim, and adding a constant to the frame changes the normalized result), ``"edge"`` repeats the border
pixels, so a brightness offset normalizes away as it should.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import GaussianSmooth, MapTransform, RandomizableTransform
from scipy.ndimage import gaussian_filter

from cosinetrack.errors import CosineTrackConfigError

__all__ = [
    "SMOOTH_PADDINGS",
    "RandBackgroundTextured",
    "RandGlowd",
    "RandImagingNoised",
    "RandInstanceContrastd",
    "SmoothFramesd",
]

#: what :class:`SmoothFramesd` takes beyond a frame's edge: zeros (MONAI's ``GaussianSmooth``) or the edge pixels
SMOOTH_PADDINGS = ("zeros", "edge")


def _float32_copy(value: object) -> tuple[np.ndarray, bool]:
    """A float32 numpy copy of an image (tensor or array) and whether it was a tensor (to hand back the same kind)."""
    is_tensor = isinstance(value, torch.Tensor)
    x = value.detach().cpu().numpy() if is_tensor else np.asarray(value)
    return x.astype(np.float32, copy=True), is_tensor


class SmoothFramesd(MapTransform):
    """Gaussian smoothing of ``(C, *spatial)`` images over their spatial axes (one sigma for all).

    The kernel is MONAI's (``GaussianSmooth``, ``erf`` approximation, tails of ``4 sigma``). With
    ``padding="zeros"`` the result is MONAI's; with ``"edge"`` the image is first extended by its border
    pixels by the kernel's tail, so the inside is the same and the edges are not darkened.

    Args:
        keys: image keys.
        sigma: standard deviation in pixels, ``> 0``.
        padding: ``"zeros"`` or ``"edge"`` (:data:`SMOOTH_PADDINGS`).
    """

    def __init__(self, keys: KeysCollection, sigma: float, padding: str = "edge", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0.0 < float(sigma) < np.inf:
            raise ValueError(f"sigma: expected a finite number > 0, got {sigma!r}")
        if padding not in SMOOTH_PADDINGS:
            raise ValueError(f"smooth_padding: expected one of {SMOOTH_PADDINGS}, got {padding!r}")
        self.sigma = float(sigma)
        self.padding = padding
        self.tail = int(max(self.sigma * 4.0, 0.5) + 0.5)  # MONAI's kernel tail (gaussian_1d, truncated 4)
        self.smooth = GaussianSmooth(self.sigma)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            x = torch.as_tensor(d[key]).as_subclass(torch.Tensor).to(torch.float32)
            if self.padding == "zeros":
                d[key] = self.smooth(x)
                continue
            spatial = x.ndim - 1
            if not 1 <= spatial <= 3:
                raise ValueError(f"{key}: expected (C, *spatial) with 1 to 3 spatial axes, got shape {tuple(x.shape)}")
            r = self.tail
            padded = F.pad(x[None], (r, r) * spatial, mode="replicate")[0]
            inside = (slice(None),) + (slice(r, -r),) * spatial
            d[key] = torch.as_tensor(self.smooth(padded))[inside]
        return d


class RandImagingNoised(RandomizableTransform, MapTransform):
    """Add Gaussian noise of a random strength to raw clips ``(L, H, W)``; one draw per clip.

    With probability ``prob``, draw ``k ~ U(0, max_std)`` and add ``N(0, (k * s)^2)`` to every pixel of
    every frame, where ``s`` is the clip's 99.5th percentile minus its median (its contrast). With
    ``poisson_prob``, the noise is signal dependent instead (shot noise): the standard deviation of a
    pixel is ``k * s * sqrt(max(x - m_0, 0) / s + 0.1)``, ``m_0`` the clip's 1st percentile, so bright
    nuclei get noisier than the background, as photon counting makes them.

    Args:
        keys: image keys (raw intensities, before smoothing and normalization).
        prob: probability that a clip gets noise at all.
        max_std: largest noise level, as a fraction of the clip's contrast ``s``; ``None``: every item must
            carry ``max_std_key`` (an item without it is an error, not a clip without noise).
        poisson_prob: probability that the noise is signal dependent (given that there is noise).
        max_std_key: an item that holds this key (a number ``>= 0``) uses it instead of ``max_std``, so one
            pipeline gives the clips of each data set their own strength (0: none); the cell bundle's
            ``augmentation#noise_std`` as a mapping ``{data set name: max_std}`` puts it into each case
            (:func:`~cosinetrack.apps.cell.read_ctc_cases`). ``None`` (default): every item uses ``max_std``.
    """

    backend = [np.ndarray.__name__]

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.5,
        max_std: float | None = 0.2,
        poisson_prob: float = 0.5,
        max_std_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        if not 0.0 <= prob <= 1.0 or not 0.0 <= poisson_prob <= 1.0:
            raise ValueError(f"prob and poisson_prob must lie in [0, 1], got {prob}, {poisson_prob}")
        if max_std is None and max_std_key is None:
            raise ValueError("max_std None needs a max_std_key that every item carries")
        if max_std is not None and max_std < 0:
            raise ValueError(f"max_std must be >= 0, got {max_std}")
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.max_std = None if max_std is None else float(max_std)
        self.poisson_prob = float(poisson_prob)
        self.max_std_key = max_std_key
        self._u = 0.0
        self._k = 0.0
        self._poisson = False

    def randomize(self, data=None) -> None:
        super().randomize(None)
        self._u = float(self.R.uniform(0.0, 1.0))  # the level is this share of the item's max_std
        self._poisson = bool(self.R.uniform() < self.poisson_prob)

    def item_max_std(self, data: Mapping[Hashable, object]) -> float:
        """The largest noise level of the item ``data``: its ``max_std_key`` value, else ``max_std``."""
        if self.max_std_key is None or self.max_std_key not in data:
            if self.max_std is None:
                raise CosineTrackConfigError(
                    "augmentation#noise_std",
                    f"given per data set, but a training item has no {self.max_std_key!r}: only readers that know "
                    "each case's data set set it (the cell bundle's CTC reader); give one number for other data",
                )
            return self.max_std
        value = data[self.max_std_key]
        try:
            value = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"item key {self.max_std_key!r}: expected a number >= 0, got {value!r}") from None
        if not 0.0 <= value < np.inf:
            raise ValueError(f"item key {self.max_std_key!r}: expected a number >= 0, got {value!r}")
        return value

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        self.randomize()
        self._k = self._u * self.item_max_std(d)
        if not self._do_transform or self._k == 0.0:
            return d
        for key in self.key_iterator(d):
            x, is_tensor = _float32_copy(d[key])
            low, mid, high = np.percentile(x, [1.0, 50.0, 99.5])
            s = max(float(high - mid), 1e-6)
            std = self._k * s
            if self._poisson:
                std = std * np.sqrt(np.clip(x - low, 0.0, None) / s + 0.1)
            x += (self.R.standard_normal(x.shape) * std).astype(np.float32)
            d[key] = torch.as_tensor(x) if is_tensor else x
        return d


class RandInstanceContrastd(RandomizableTransform, MapTransform):
    """Dim single instances of raw clips ``(L, H, W)``: each cell its own brightness, as in real videos.

    Nuclei of one video differ in brightness, and a model trained on a video whose nuclei are all bright
    misses the dim ones of another (Fluo-N2DH-SIM+ to GOWT1, ``docs/results_cell.md``); a global gamma or gain
    cannot teach that, since the robust normalization undoes it. Here each instance id of ``label_key`` (the same
    id in every frame of the clip: one cell, one draw) is picked with probability ``prob`` and its contrast to
    the clip's background level ``b`` (the clip's median) multiplied by ``f ~ U(min_factor, 1)``:
    ``x <- b + (x - b) * g``, where ``g`` is the per-pixel factor map (``f`` inside a picked instance, 1
    elsewhere) smoothed by a Gaussian of ``sigma`` px, so the nucleus' rim outside its label fades with it.

    Args:
        keys: image keys (raw intensities, before smoothing and normalization).
        label_key: the instance labels ``(L, H, W)`` (``> 0`` instances; ``0`` background and ``< 0`` no label
            are never changed).
        prob: probability that an instance is dimmed.
        min_factor: the smallest contrast factor, in ``[0, 1]``.
        sigma: smoothing of the factor map in pixels (``0``: hard edges).
    """

    backend = [np.ndarray.__name__]

    def __init__(
        self,
        keys: KeysCollection,
        label_key: str = "label",
        prob: float = 0.3,
        min_factor: float = 0.2,
        sigma: float = 2.0,
        allow_missing_keys: bool = False,
    ) -> None:
        for name, value, high in (("prob", prob, 1.0), ("min_factor", min_factor, 1.0), ("sigma", sigma, np.inf)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= high:
                raise ValueError(f"{name}: expected a number in [0, {high}], got {value!r}")
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, 1.0)
        self.label_key = label_key
        self.instance_prob = float(prob)
        self.min_factor = float(min_factor)
        self.sigma = float(sigma)

    def factor_map(self, label: np.ndarray) -> np.ndarray:
        """The per-pixel contrast factor ``(L, H, W)`` float32 for ``label`` (a fresh random draw)."""
        ids = np.unique(label)
        ids = ids[ids > 0]
        picked = ids[self.R.uniform(size=ids.size) < self.instance_prob]
        g = np.ones(label.shape, dtype=np.float32)
        if picked.size == 0:
            return g
        factors = self.R.uniform(self.min_factor, 1.0, size=picked.size).astype(np.float32)
        lookup = np.ones(int(ids.max()) + 1, dtype=np.float32)
        lookup[picked] = factors
        inside = label > 0
        g[inside] = lookup[label[inside]]
        if self.sigma > 0:
            g = np.stack([gaussian_filter(frame, self.sigma) for frame in g]).astype(np.float32)
        return g

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        if self.label_key not in d:
            raise KeyError(f"RandInstanceContrastd: the item has no {self.label_key!r} (instance labels)")
        label_value = d[self.label_key]
        label = label_value.detach().cpu().numpy() if isinstance(label_value, torch.Tensor) else np.asarray(label_value)
        label = label.astype(np.int64, copy=False)
        g = self.factor_map(label)
        if np.all(g == 1.0):
            return d
        for key in self.key_iterator(d):
            x, is_tensor = _float32_copy(d[key])
            if x.shape != label.shape:
                raise ValueError(f"{key}: shape {x.shape} differs from {self.label_key} {label.shape}")
            b = float(np.median(x))
            x = b + (x - b) * g
            d[key] = torch.as_tensor(x) if is_tensor else x
        return d


class _RandAmountAndBlur(RandomizableTransform, MapTransform):
    """Shared by :class:`RandGlowd` and :class:`RandBackgroundTextured`: applied to a clip with probability
    ``prob``, one draw per clip of a strength ``a ~ U(0, max_amount)`` and a blur ``s ~ U(sigma / 2, 3 sigma / 2)``
    raw-frame px (``_amount``, ``_blur``), the arguments checked here."""

    backend = [np.ndarray.__name__]

    def __init__(
        self, keys: KeysCollection, prob: float, max_amount: float, sigma: float, allow_missing_keys: bool = False
    ) -> None:
        for name, value, low, high in (("prob", prob, 0.0, 1.0), ("max_amount", max_amount, 0.0, np.inf)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= float(value) <= high:
                raise ValueError(f"{name}: expected a number in [{low}, {high}], got {value!r}")
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0.0 < float(sigma) < np.inf:
            raise ValueError(f"sigma: expected a number of pixels > 0, got {sigma!r}")
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.max_amount = float(max_amount)
        self.sigma = float(sigma)
        self._amount = 0.0
        self._blur = self.sigma

    def randomize(self, data: object = None) -> None:
        super().randomize(None)
        self._amount = float(self.R.uniform(0.0, self.max_amount))
        self._blur = float(self.R.uniform(0.5 * self.sigma, 1.5 * self.sigma))


class RandGlowd(_RandAmountAndBlur):
    """Add out-of-focus glow to raw clips ``(L, H, W)``: a dim halo around every bright object.

    Real nuclei often sit in a dim halo (out-of-focus light, the labelled protein in the cytoplasm; GOWT1's
    cells), which a model trained on sharp synthetic nuclei (Fluo-N2DH-SIM+) reads as further cells: on a
    GOWT1 dev split 83 % of the SIM+-only model's false instances lie within 20 px of a nucleus, pieces of
    rings around it. With probability ``prob`` per clip (one draw for the whole clip: a property of the
    video), ``x <- x + a * (G_s(x) - b)`` for every frame, where ``G_s`` is a Gaussian blur of
    ``s ~ U(sigma / 2, 3 sigma / 2)`` px, ``a ~ U(0, max_amount)`` and ``b`` the clip's median (the background
    stays where it was). The labels do not change: the halo is background. A SIM+-only model trained with
    it at ``prob`` 0.5 had fewer such false cells but split GOWT1 nuclei and lost on its own video (rule R19,
    ``docs/results_cell.md``, session 19): off in the bundles.

    Args:
        keys: image keys (raw intensities, before smoothing and normalization).
        prob: probability that a clip gets a glow.
        max_amount: the largest ``a`` (``>= 0``; 1: the blurred copy as strong as the frame itself).
        sigma: the typical blur in raw-frame pixels (``> 0``).
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.5,
        max_amount: float = 1.0,
        sigma: float = 12.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, prob, max_amount, sigma, allow_missing_keys)

    def glow(self, x: np.ndarray, amount: float, sigma: float) -> np.ndarray:
        """``x`` ``(L, H, W)`` (or ``(H, W)``) with a glow of ``amount`` and blur ``sigma`` px, float32."""
        x = np.asarray(x, dtype=np.float32)
        b = float(np.median(x))
        blur = gaussian_filter(x, (0.0,) * (x.ndim - 2) + (sigma, sigma), mode="nearest")
        return (x + amount * (blur - b)).astype(np.float32)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        self.randomize()
        if not self._do_transform or self._amount == 0.0:
            return d
        for key in self.key_iterator(d):
            x, is_tensor = _float32_copy(d[key])
            x = self.glow(x, self._amount, self._blur)
            d[key] = torch.as_tensor(x) if is_tensor else x
        return d


class RandBackgroundTextured(_RandAmountAndBlur):
    """Add a smooth random texture to raw clips ``(L, H, W)``: faint blobs in the background, as real videos have.

    Real fluorescence backgrounds are not flat (cell bodies, debris, uneven illumination; GOWT1), and a model
    trained on a flat synthetic background (Fluo-N2DH-SIM+) reads the faint blobs as cells: on a GOWT1 dev split
    half of the SIM+-only model's false instances left after the halo filter have less than 2 % of their pixels
    in the bright foreground (the false instances lie a median 50 px from a nucleus). With probability ``prob``
    per clip, one field ``n`` (white noise blurred by a Gaussian of ``s ~ U(sigma / 2, 3 sigma / 2)`` px, scaled
    to unit standard deviation) is drawn for the clip and ``x <- x + a * c * n`` added to every frame,
    ``a ~ U(0, max_amount)``, ``c`` the clip's contrast (99.5th percentile minus median). The texture stays in
    place over the clip, as GOWT1's does over several frames. The labels do not change: the texture is background.

    Args:
        keys: image keys (raw intensities, before smoothing and normalization).
        prob: probability that a clip gets a texture.
        max_amount: the largest ``a`` (``>= 0``), in units of the clip's contrast.
        sigma: the typical blob size (Gaussian sigma) in raw-frame pixels (``> 0``).
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.5,
        max_amount: float = 0.05,
        sigma: float = 10.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, prob, max_amount, sigma, allow_missing_keys)

    def field(self, shape: tuple[int, ...], sigma: float) -> np.ndarray:
        """A smooth random field ``(H, W)`` float32 of unit standard deviation (a fresh draw)."""
        n = gaussian_filter(self.R.standard_normal(shape[-2:]).astype(np.float32), sigma, mode="wrap")
        return (n / max(float(n.std()), 1e-12)).astype(np.float32)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        self.randomize()
        if not self._do_transform or self._amount == 0.0:
            return d
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        first, _ = _float32_copy(d[keys[0]])
        noise = self.field(first.shape, self._blur)
        for key in keys:
            x, is_tensor = _float32_copy(d[key])
            contrast = float(np.percentile(x, 99.5) - np.median(x))
            x = (x + self._amount * contrast * noise).astype(np.float32)
            d[key] = torch.as_tensor(x) if is_tensor else x
        return d
