"""The paper's per-data-set parameters for the Cell Tracking Challenge data sets (appendix 2 and 3).

A preset gives HDBSCAN's ``m_pts`` and the coordinate factor ``c`` (clustering), the neighbor radius
``r_N`` of the loss, and the robust-normalization percentages ``i_min`` / ``i_max``. The paper's values
are for the 256 x 256 network canvas the frames are scaled to; :func:`clustering_parameters` converts
``m_pts`` (a number of pixels) and ``c`` (a factor of pixel coordinates) to another canvas or to
full-resolution tiles, so that a cell is clustered with the same settings whatever its size in pixels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from cosinetrack.clustering.transforms import scale_size_options
from cosinetrack.errors import CosineTrackConfigError

__all__ = [
    "CTC_PRESETS",
    "DEFAULT_CTC_PRESET",
    "REFERENCE_CANVAS",
    "clustering_parameters",
    "common_preset",
    "ctc_preset",
    "is_fluorescence",
    "preset_value",
]

#: the numbers of a preset (``name`` aside)
PRESET_KEYS = ("m_pts", "c", "r_N", "i_min", "i_max")

#: the canvas size the paper's m_pts and c refer to (frames scaled to fit 256 x 256)
REFERENCE_CANVAS = (256, 256)

#: paper values; r_N in canvas pixels (50 by default, 150 Fluo-MSC, 25 Fluo-HeLa), i_max 1 % for MSC and SIM+.
#: ``background_margin`` (native pixels, ours, not the paper's): training labels of a data set whose SEG
#: frames are all partial (GOWT1) take as background the pixels that far from every annotated cell
#: (:func:`~cosinetrack.apps.cell.merge_seg_tra`); 25 px because GOWT1's SEG outlines reach at most 14 px beyond
#: their TRA markers (frame 5, a training frame).
CTC_PRESETS: dict[str, dict[str, float]] = {
    "DIC-C2DH-HeLa": {"m_pts": 1000, "c": 0.02, "r_N": 50, "i_min": 20.0, "i_max": 10.0},
    "Fluo-C2DL-MSC": {"m_pts": 500, "c": 0.1, "r_N": 150, "i_min": 20.0, "i_max": 1.0},
    "Fluo-N2DH-GOWT1": {"m_pts": 50, "c": 0.001, "r_N": 50, "i_min": 20.0, "i_max": 10.0, "background_margin": 25},
    "Fluo-N2DL-HeLa": {"m_pts": 25, "c": 0.01, "r_N": 25, "i_min": 20.0, "i_max": 10.0},
    "PhC-C2DH-U373": {"m_pts": 500, "c": 0.005, "r_N": 50, "i_min": 20.0, "i_max": 10.0},
    "Fluo-N2DH-SIM+": {"m_pts": 100, "c": 0.001, "r_N": 50, "i_min": 20.0, "i_max": 1.0},
}

#: any other CTC-layout folder (and the synthetic default, whose nuclei resemble Fluo-N2DH-SIM+)
DEFAULT_CTC_PRESET: dict[str, float] = {"m_pts": 100, "c": 0.001, "r_N": 50, "i_min": 20.0, "i_max": 10.0}


def ctc_preset(
    name: str | None = None, dataset_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None
) -> dict[str, Any]:
    """The parameters of a data set: by ``name``, else guessed from ``dataset_dir``'s name, else the defaults.

    ``dataset_dir`` may be the data set folder (``.../Fluo-N2DH-SIM+``) or a sequence folder in it
    (``.../Fluo-N2DH-SIM+/01``). Returns a copy ``{"m_pts", "c", "r_N", "i_min", "i_max", "name"}``.
    A list of folders (training on several data sets at once) gives :func:`common_preset` of theirs.

    Raises:
        ValueError: an unknown ``name`` (the message lists the known ones).
    """
    if isinstance(dataset_dir, (list, tuple)):
        return common_preset([ctc_preset(name, d) for d in dataset_dir])
    if name:
        if name not in CTC_PRESETS:
            raise ValueError(f"unknown dataset_preset {name!r}; known presets: {', '.join(sorted(CTC_PRESETS))}")
        return {**CTC_PRESETS[name], "name": name}
    if dataset_dir:
        path = os.path.normpath(os.path.abspath(os.fspath(dataset_dir)))
        for candidate in (os.path.basename(path), os.path.basename(os.path.dirname(path))):
            if candidate in CTC_PRESETS:
                return {**CTC_PRESETS[candidate], "name": candidate}
    return {**DEFAULT_CTC_PRESET, "name": "default"}


def common_preset(presets: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The preset of several data sets trained together: each number they share, ``None`` where they differ.

    One preset (or several with one name) is returned as a copy, unchanged. Otherwise the result is
    ``{"name": "A+B", <key>: shared value or None, ..., "presets": {"A": preset A, "B": preset B}}``: a
    ``None`` means "each data set's own value" (the cell bundle normalizes and clusters every sequence
    with its own preset), and :func:`preset_value` names the data sets when one value is needed.
    """
    presets = [dict(p) for p in presets]
    if not presets:
        raise ValueError("common_preset needs at least one preset")
    by_name = {str(p.get("name")): p for p in presets}
    if len(by_name) == 1:
        return presets[0]
    out: dict[str, Any] = {"name": "+".join(by_name)}
    for key in PRESET_KEYS:
        values = {p.get(key) for p in by_name.values()}
        out[key] = values.pop() if len(values) == 1 else None
    out["presets"] = by_name
    return out


def preset_value(preset: Mapping[str, Any], key: str, option: str | None = None) -> Any:
    """``preset[key]``, or a clear error when the data sets of a :func:`common_preset` disagree on it.

    Raises:
        CosineTrackConfigError: the value is ``None`` because the data sets' presets differ (the message
            names each data set's value, and the option ``option`` that sets one value for all).
    """
    value = preset.get(key)
    if value is not None:
        return value
    values = ", ".join(f"{n}: {p.get(key)}" for n, p in dict(preset.get("presets") or {}).items())
    fix = f"; set --{option} to choose one value for all of them" if option else ""
    problem = f"the data sets' presets differ in {key} ({values or 'no value'}){fix}"
    raise CosineTrackConfigError(option or key, problem)


def clustering_parameters(
    preset: Mapping[str, Any],
    network_size: Sequence[int],
    frame_size: Sequence[int] | None = None,
    resolution: str = "scaled",
    **extra: Any,
) -> dict[str, Any]:
    """Clustering options (:func:`~cosinetrack.clustering.cluster_embeddings`) for a network canvas.

    The paper's ``m_pts`` counts pixels and ``c`` multiplies pixel coordinates on the 256 x 256 canvas.
    With pixels ``k`` times smaller in each direction (a larger canvas, or full-resolution tiles) a cell
    covers ``k**2`` times more pixels and its coordinates are ``k`` times larger, so ``m_pts`` is scaled
    by ``k**2`` (at least 5) and ``c`` by ``1 / k``; ``t_size`` stays ``m_pts / 2``. A numeric ``min_size``
    (``t_size``) and a ``min_cluster_size`` among ``extra`` are pixels of the reference canvas too and scale
    by ``k**2`` (``min_cluster_size`` at least 2).

    Args:
        preset: a :func:`ctc_preset` dict (``m_pts``, ``c``).
        network_size: the network input ``(h, w)`` (canvas in ``"scaled"`` mode, tile size in ``"tiled"``).
        frame_size: ``(H, W)`` of the video's frames; needed for ``"tiled"`` (there ``k`` is the scale
            at which the frame would fit the reference canvas).
        resolution: ``"scaled"`` (frames scaled to fit ``network_size``) or ``"tiled"`` (native pixels).
        extra: further :func:`cluster_embeddings` options, passed through (e.g. ``split_components``)
            except ``min_size`` and ``min_cluster_size``, converted as above.
    """
    ref_h, ref_w = REFERENCE_CANVAS
    if resolution == "scaled":
        k = (float(network_size[0]) * float(network_size[1]) / (ref_h * ref_w)) ** 0.5
    elif resolution == "tiled":
        if frame_size is None:
            raise ValueError("clustering_parameters: frame_size is needed for resolution='tiled'")
        k = 1.0 / min(ref_h / float(frame_size[0]), ref_w / float(frame_size[1]))
    else:
        raise ValueError(f"resolution must be 'scaled' or 'tiled', got {resolution!r}")
    return {
        "min_samples": max(5, int(round(float(preset["m_pts"]) * k * k))),
        "coordinate_scale": float(preset["c"]) / k,
        **scale_size_options(extra, k),
    }


#: the CTC name prefixes of transmitted-light data sets (cells not brighter than the background)
TRANSMITTED_LIGHT_PREFIXES = ("DIC-", "PhC-", "BF-")


def is_fluorescence(preset: Mapping[str, Any]) -> bool:
    """Whether a preset's video is fluorescence (cells brighter than the background), by the CTC name prefix.

    False for a transmitted-light data set (``DIC-``, ``PhC-``, ``BF-``), or for a joint preset ``A+B`` of which
    any part is one; True otherwise, the default preset included (it stands for the synthetic default,
    fluorescence-like). The brightness-based tracking filters (``tracking#halo_distance``) are on only for these.
    """
    name = str(preset.get("name") or "default")
    return not any(part.startswith(TRANSMITTED_LIGHT_PREFIXES) for part in name.split("+") if part)
