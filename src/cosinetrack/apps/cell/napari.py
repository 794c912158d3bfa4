"""A cell tracking result in `napari <https://napari.org>`_: image, labels and tracks layers.

napari is not a dependency of cosinetrack; install it beside it (``pip install "napari[all]"``), then::

    python -c "import napari; from cosinetrack.apps.cell.napari import view_ctc; \\
view_ctc('my_videos/01', 'my_results/01_RES'); napari.run()"

:func:`ctc_napari_layers` builds the layers' data without napari (napari's ``LayerData`` tuples
``(data, kwargs, layer_type)``, as a reader plugin returns them), so it is tested headlessly;
:func:`view_ctc` imports napari and adds them to a viewer:

* ``image``: the ``(T, H, W)`` float32 frames ``tTTT.tif`` of the input sequence, as stored;
* ``labels``: the ``(T, H, W)`` result masks ``maskTTT.tif`` (value = CTC track label);
* ``tracks``: ``(N, 4)`` float rows ``track_id, t, y, x`` (one per cell per frame, centroid in pixels,
  sorted by track, then frame) with ``graph = {daughter label: [parent label]}`` from ``res_track.txt``
  and per-point ``features`` ``area`` and ``lineage_id``. It is left out when the result holds no cell
  (napari's tracks layer needs at least one point).

The tracks are the nodes of :func:`cosinetrack.apps.cell.ctc_result_graph`, the graph that is also
exported to GEFF, so napari and the GEFF file show the same centroids.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from cosinetrack.apps.cell.geff import ctc_result_graph, ctc_result_masks
from cosinetrack.apps.cell.reader import find_ctc_sequences, read_ctc_label, read_ctc_video
from cosinetrack.errors import CosineTrackDataError

__all__ = ["ctc_napari_layers", "view_ctc"]

LayerData = tuple[Any, dict[str, Any], str]


def _label_stack(res_dir: str) -> np.ndarray:
    """The ``(T, H, W)`` masks of a result folder in the smallest unsigned type holding its labels."""
    frames = [read_ctc_label(path) for path in ctc_result_masks(res_dir).values()]
    top = max(int(frame.max()) if frame.size else 0 for frame in frames)
    return np.stack(frames).astype(np.min_scalar_type(top))


def ctc_napari_layers(image_dir: str | os.PathLike | None, res_dir: str | os.PathLike) -> list[LayerData]:
    """napari layer data of a CTC result: ``[(image, kwargs, "image"), (labels, ...), (tracks, ...)]``.

    Args:
        image_dir: the input sequence folder (``tTTT.tif`` frames, e.g. ``my_videos/01``), or ``None`` for
            the labels and tracks only.
        res_dir: its result folder (``maskTTT.tif`` + ``res_track.txt``, e.g. ``my_results/01_RES``).

    Returns:
        ``(data, kwargs, layer_type)`` tuples (see the module doc), ready for
        ``getattr(viewer, f"add_{layer_type}")(data, **kwargs)``. Everything is read into memory.

    Raises:
        CosineTrackDataError: unreadable or inconsistent files, an ``image_dir`` holding several
            sequences, or images whose count or size differs from the masks'.
    """
    res_dir = os.path.abspath(os.fspath(res_dir))
    graph = ctc_result_graph(res_dir)
    labels = _label_stack(res_dir)
    name = os.path.basename(res_dir.rstrip(os.sep))
    layers: list[LayerData] = []
    if image_dir is not None:
        sequences = find_ctc_sequences(image_dir)
        if len(sequences) != 1:
            raise CosineTrackDataError(
                os.path.abspath(os.fspath(image_dir)),
                f"holds {len(sequences)} sequences; give one sequence folder (e.g. .../01), the input of {name}",
            )
        image = read_ctc_video(sequences[0])
        if image.shape != labels.shape:
            raise CosineTrackDataError(
                sequences[0].image_dir,
                f"frames (T, H, W) = {image.shape} do not match the result {res_dir}: {labels.shape}",
            )
        layers.append((image, {"name": sequences[0].name, "colormap": "gray", "blending": "additive"}, "image"))
    layers.append((labels, {"name": f"{name} labels", "opacity": 0.5}, "labels"))
    if graph.num_nodes:
        order = np.lexsort((graph.t, graph.track_id))
        tracks = np.stack([graph.track_id, graph.t, graph.y, graph.x], axis=1)[order].astype(np.float64)
        kwargs = {
            "name": f"{name} tracks",
            "graph": {daughter: [parent] for daughter, parent in graph.parent_links().items()},
            "features": {"area": graph.area[order], "lineage_id": graph.lineage_id[order]},
            "tail_length": 10,
        }
        layers.append((tracks, kwargs, "tracks"))
    return layers


def view_ctc(image_dir: str | os.PathLike | None, res_dir: str | os.PathLike, viewer: Any = None) -> Any:
    """Show a CTC result in napari (image, labels and tracks layers); return the viewer.

    ``viewer`` (anything with napari's ``add_image`` / ``add_labels`` / ``add_tracks``) defaults to a new
    ``napari.Viewer()``; call ``napari.run()`` afterwards in a script. napari must then be installed
    (``pip install "napari[all]"``); it is imported here only.
    """
    if viewer is None:
        try:
            import napari
        except ImportError as exc:
            hint = 'view_ctc needs napari, which cosinetrack does not install: pip install "napari[all]"'
            raise ImportError(hint) from exc
        viewer = napari.Viewer()
    for data, kwargs, layer_type in ctc_napari_layers(image_dir, res_dir):
        getattr(viewer, f"add_{layer_type}")(data, **kwargs)
    return viewer
