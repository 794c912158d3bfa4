"""Export of a Cell Tracking Challenge (CTC) result folder as a GEFF lineage graph.

`GEFF <https://liveimagetrackingtools.org/geff/>`_ (graph exchange file format) is a zarr folder holding
one directed graph: nodes with properties and edges. :func:`write_ctc_geff` turns a result folder
``NN_RES`` (``maskT.tif`` + ``res_track.txt``, see :mod:`cosinetrack.apps.cell.writer`) into ``NN_RES.geff``:

* one node per cell per frame, i.e. per ``(frame, label)`` of the masks, numbered ``0, 1, ...`` in order
  of frame, then label, with the properties ``t`` (frame number), ``y``, ``x`` (centroid in pixels,
  ``y`` = row, ``x`` = column, as ``numpy`` indexes the mask), ``area`` (pixels), ``track_id`` (the CTC
  label, one per track) and ``lineage_id`` (label of the track's root ancestor);
* an edge from each node of a track to the node of the same track in the next frame, and from the last
  node of a parent track to the first node of each of its daughters (``res_track.txt``'s ``P``).

The metadata declare the axes ``t`` (time, unit ``frame``), ``y`` and ``x`` (space, unit ``pixel``), the
tracklet and lineage properties (``track_node_props``) and display hints, and ``extra`` records the
source folder. The graph is read back with geff's own reader, e.g.
``graph, metadata = geff.read("01_RES.geff")`` (a ``networkx.DiGraph``).

:func:`ctc_result_graph` builds the same graph as arrays without writing anything (the napari tracks
layer of :mod:`cosinetrack.apps.cell.napari` uses it). Masks are read one frame at a time. The ``geff``
package is imported only when a file is written, so importing :mod:`cosinetrack.io` stays light.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from cosinetrack.apps.cell.layout import MASK_RE, RES_TRACK, numbered_files
from cosinetrack.apps.cell.reader import read_ctc_label, read_man_track
from cosinetrack.apps.cell.validation import check_tracks
from cosinetrack.distributed import all_gather_objects, init_distributed, is_distributed, shard
from cosinetrack.errors import CosineTrackDataError
from cosinetrack.io.atomic import atomic_directory
from cosinetrack.options import as_flag

__all__ = [
    "GEFF_SUFFIX",
    "CTCGraph",
    "ctc_result_folders",
    "ctc_result_graph",
    "ctc_result_masks",
    "export_geff_for_results",
    "write_ctc_geff",
]

#: Suffix of the GEFF folder written beside a result folder: ``01_RES`` -> ``01_RES.geff``.
GEFF_SUFFIX = ".geff"
_RESULT_RE = re.compile(r"^\d{2,}_RES$")
#: A problem of the shared tracks-against-masks check about one frame (group 1: the frame number).
_FRAME_PROBLEM = re.compile(r"^frame (\d+): ")
#: At most this many disagreements between masks and table are listed in the error.
_MAX_PROBLEMS = 10


def ctc_result_masks(res_dir: str | os.PathLike) -> dict[int, str]:
    """``{frame number: path}`` of the ``maskT.tif`` files of a result folder, sorted by frame.

    The folder is scanned by :func:`~cosinetrack.apps.cell.layout.numbered_files` (names
    :data:`~cosinetrack.apps.cell.layout.MASK_RE`).

    Raises:
        CosineTrackDataError: the folder is missing, holds no mask, mixes digit counts in the mask names,
            or its masks are not numbered ``0..T-1`` without a gap.
    """
    folder = os.path.abspath(os.fspath(res_dir))
    if not os.path.isdir(folder):
        raise CosineTrackDataError(folder, "result folder not found")
    files, _ = numbered_files(folder, MASK_RE)
    if not files:
        raise CosineTrackDataError(folder, "no mask files (maskT.tif) in the result folder")
    missing = sorted(set(range(max(files) + 1)) - set(files))
    if missing:
        raise CosineTrackDataError(folder, f"mask files must cover frames 0..T-1 without gaps; missing {missing[:20]}")
    return files


def ctc_result_folders(output_dir: str | os.PathLike) -> list[str]:
    """The result folders ``NN_RES`` (holding a ``res_track.txt``) directly inside ``output_dir``, sorted.

    E.g. the folders cell inference wrote into its ``output_dir``. Raises
    :class:`~cosinetrack.errors.CosineTrackDataError` when ``output_dir`` is not a folder.
    """
    folder = os.path.abspath(os.fspath(output_dir))
    if not os.path.isdir(folder):
        raise CosineTrackDataError(folder, "output folder not found")
    return [
        os.path.join(folder, name)
        for name in sorted(os.listdir(folder))
        if _RESULT_RE.match(name) and os.path.isfile(os.path.join(folder, name, RES_TRACK))
    ]


@dataclass(frozen=True)
class CTCGraph:
    """The lineage graph of a CTC result: nodes = cells per frame, edges = links forward in time.

    Node ``i`` (``0 .. N-1``, ordered by frame, then label) is label ``track_id[i]`` in frame ``t[i]``.

    Attributes:
        t: ``(N,)`` int64 frame numbers. y, x: ``(N,)`` float64 centroid (row, column) in pixels.
        area: ``(N,)`` int64 pixel counts. track_id: ``(N,)`` int64 CTC labels.
        lineage_id: ``(N,)`` int64 label of the root ancestor of the node's track.
        edges: ``(E, 2)`` int64 ``(source, target)`` node indices, source one frame or more before target.
        tracks: the ``(M, 4)`` ``L B E P`` table of ``res_track.txt``.
        shape: ``(T, H, W)`` of the mask stack.
    """

    t: np.ndarray
    y: np.ndarray
    x: np.ndarray
    area: np.ndarray
    track_id: np.ndarray
    lineage_id: np.ndarray
    edges: np.ndarray
    tracks: np.ndarray
    shape: tuple[int, int, int]

    @property
    def num_nodes(self) -> int:
        return int(self.t.size)

    def parent_links(self) -> dict[int, int]:
        """``{daughter label: parent label}`` of the tracks that have a parent."""
        return {int(label): int(parent) for label, _, _, parent in self.tracks.tolist() if parent > 0}


def _frame_nodes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(labels, area, y, x)`` of the labels > 0 of one ``(H, W)`` mask, sorted by label."""
    flat = mask.ravel()
    labels = np.unique(flat)
    labels = labels[labels > 0]
    if not labels.size:
        empty = np.zeros(0)
        return labels.astype(np.int64), empty.astype(np.int64), empty, empty
    rows, cols = np.nonzero(mask)  # C order, as flat[flat > 0]
    index = np.searchsorted(labels, flat[flat > 0])
    area = np.bincount(index, minlength=labels.size)
    y = np.bincount(index, weights=rows, minlength=labels.size) / area
    x = np.bincount(index, weights=cols, minlength=labels.size) / area
    return labels.astype(np.int64), area.astype(np.int64), y, x


def _naming_mask_files(problems: list[str], masks: dict[int, str]) -> list[str]:
    """The problems of :func:`~cosinetrack.apps.cell.validation.check_tracks`, ``frame T: ...`` ones naming
    the frame's mask file (``frame 3 (mask003.tif): mask label 7 is not a track``)."""

    def name(match: re.Match) -> str:
        t = int(match.group(1))
        return f"frame {t} ({os.path.basename(masks[t])}): " if t in masks else match.group(0)

    return [_FRAME_PROBLEM.sub(name, problem, count=1) for problem in problems]


def _lineage_roots(tracks: np.ndarray) -> dict[int, int]:
    """``{label: root ancestor label}`` (``read_man_track`` guarantees parents exist and end earlier)."""
    parent = {int(label): int(p) for label, _, _, p in tracks.tolist()}
    roots: dict[int, int] = {}
    for label in parent:
        chain = [label]
        while parent[chain[-1]] > 0 and chain[-1] not in roots:
            chain.append(parent[chain[-1]])
        root = roots.get(chain[-1], chain[-1])
        for node in chain:
            roots[node] = root
    return roots


def ctc_result_graph(res_dir: str | os.PathLike) -> CTCGraph:
    """Build the lineage graph of a CTC result folder (``maskT.tif`` + ``res_track.txt``); see the module doc.

    Masks are read one frame at a time with :func:`~cosinetrack.apps.cell.read_ctc_label` and the table with
    :func:`~cosinetrack.apps.cell.read_man_track`.

    Raises:
        CosineTrackDataError: missing or unreadable files, masks not numbered ``0..T-1``, frames of different
            sizes, or masks and table that disagree (a label in a frame that no track covers, or a track
            whose label is absent from a frame between its first and last: the one check,
            :func:`~cosinetrack.apps.cell.validation.check_tracks`); the error names ``res_track.txt`` and
            the mask file of each frame at fault.
    """
    folder = os.path.abspath(os.fspath(res_dir))
    masks = ctc_result_masks(folder)
    track_path = os.path.join(folder, RES_TRACK)
    tracks = read_man_track(track_path)
    columns: list[tuple[np.ndarray, ...]] = []
    node_of: dict[tuple[int, int], int] = {}
    shape = None
    for t, path in masks.items():
        mask = read_ctc_label(path)
        if shape is None:
            shape = mask.shape
        elif mask.shape != shape:
            raise CosineTrackDataError(path, f"mask size {mask.shape} differs from the first mask's {shape}")
        labels, area, y, x = _frame_nodes(mask)
        for label in labels.tolist():
            node_of[(t, label)] = len(node_of)
        columns.append((np.full(labels.size, t, dtype=np.int64), y, x, area, labels))
    problems = check_tracks(tracks, {t: column[4] for t, column in zip(masks, columns)}, _MAX_PROBLEMS)
    if problems:
        raise CosineTrackDataError(
            track_path, f"does not agree with the masks: {'; '.join(_naming_mask_files(problems, masks))}"
        )
    span = {int(label): (int(b), int(e)) for label, b, e, _ in tracks.tolist()}
    edges = [(node_of[(t, label)], node_of[(t + 1, label)]) for label, (b, e) in span.items() for t in range(b, e)]
    edges += [
        (node_of[(span[parent][1], parent)], node_of[(begin, label)])
        for label, begin, _, parent in tracks.tolist()
        if parent > 0
    ]
    t_all, y_all, x_all, area_all, ids = (np.concatenate(c) for c in zip(*columns))
    roots = _lineage_roots(tracks)
    lineage = np.array([roots[int(label)] for label in ids.tolist()], dtype=np.int64)
    edge_array = np.array(sorted(edges), dtype=np.int64).reshape(-1, 2)
    return CTCGraph(
        t=t_all, y=y_all.astype(np.float64), x=x_all.astype(np.float64), area=area_all, track_id=ids,
        lineage_id=lineage, edges=edge_array, tracks=tracks, shape=(len(masks), *shape),
    )


def write_ctc_geff(
    res_dir: str | os.PathLike,
    out_path: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    zarr_format: int = 2,
) -> str:
    """Write the lineage graph of a CTC result folder as a GEFF zarr folder, atomically; return its path.

    Args:
        res_dir: the result folder ``NN_RES`` (``maskT.tif`` + ``res_track.txt``).
        out_path: the GEFF folder to write; default ``NN_RES.geff`` beside ``res_dir``. It may not be,
            contain or lie inside ``res_dir``.
        overwrite: replace an existing ``out_path`` (once the new one is complete); otherwise an existing
            one raises ``FileExistsError`` before anything is written.
        zarr_format: 2 (default, read by every GEFF reader) or 3.

    Returns:
        ``out_path`` as an absolute path.

    Raises:
        CosineTrackDataError: as :func:`ctc_result_graph`, or ``out_path`` over the input folder.
        FileExistsError: ``out_path`` exists and ``overwrite`` is false.
    """
    from geff.core_io import write_arrays
    from geff_spec import Axis, DisplayHint, GeffMetadata, PropMetadata

    res_dir = os.path.abspath(os.fspath(res_dir))
    out = os.path.abspath(os.fspath(out_path)) if out_path is not None else res_dir.rstrip(os.sep) + GEFF_SUFFIX
    if os.path.exists(out) and not overwrite:  # fail before reading the masks
        raise FileExistsError(f"{out}: already exists; choose another path or allow overwriting")
    graph = ctc_result_graph(res_dir)
    described = {
        "t": ("frame number (the N of maskN.tif)", "frame"),
        "y": ("centroid row", "pixel"),
        "x": ("centroid column", "pixel"),
        "area": ("pixels of the cell in this frame", None),
        "track_id": ("CTC track label (the value in the mask, L of res_track.txt)", None),
        "lineage_id": ("label of the root ancestor of the track", None),
    }
    node_props = {name: {"values": getattr(graph, name), "missing": None} for name in described}
    metadata = GeffMetadata(
        directed=True,
        axes=[Axis(name="t", type="time", unit="frame"), Axis(name="y", type="space", unit="pixel"),
              Axis(name="x", type="space", unit="pixel")],
        node_props_metadata={
            name: PropMetadata(identifier=name, dtype=str(node_props[name]["values"].dtype), description=text,
                               unit=unit)
            for name, (text, unit) in described.items()
        },
        edge_props_metadata={},
        track_node_props={"tracklet": "track_id", "lineage": "lineage_id"},
        display_hints=DisplayHint(display_horizontal="x", display_vertical="y", display_time="t"),
        extra={"cosinetrack": {"source": os.path.basename(res_dir), "shape": list(graph.shape),
                               "format": "Cell Tracking Challenge result (maskT.tif + res_track.txt)"}},
    )
    node_ids = np.arange(graph.num_nodes, dtype=np.uint64)
    with atomic_directory(out, overwrite=overwrite, inputs=[res_dir], key="out_path") as tmp:
        os.rmdir(tmp)  # geff refuses any existing path; it creates the (still temporary) folder itself
        write_arrays(tmp, node_ids, node_props, graph.edges.astype(np.uint64), None, metadata,
                     zarr_format=zarr_format)
    return out


def export_geff_for_results(
    result_dirs: Iterable[str | os.PathLike], enabled: bool | str = True, *, overwrite: bool = False
) -> list[str]:
    """Write ``NN_RES.geff`` beside each result folder ``NN_RES`` (:func:`write_ctc_geff`); return their paths.

    E.g. ``export_geff_for_results(track_folder(...))``, or for what an earlier run wrote,
    ``export_geff_for_results(ctc_result_folders(output_dir))``. ``enabled`` is the bundle's ``export_geff``
    option (a bool, or ``"true"`` / ``"false"`` from the command line): false writes nothing and returns ``[]``.
    Under ``torchrun`` the result folders are split over the ranks (each writes every N-th) and every rank
    returns all paths.
    """
    if not as_flag(enabled, "export_geff"):
        return []
    result_dirs = list(result_dirs)
    if not init_distributed(backend="gloo") or not is_distributed():  # a plain process
        return [write_ctc_geff(res_dir, overwrite=overwrite) for res_dir in result_dirs]
    mine, error = [], None
    try:
        mine = [write_ctc_geff(res_dir, overwrite=overwrite) for res_dir in shard(result_dirs)]
    except Exception as exc:  # told to the other ranks first, so none waits forever
        error = exc
    per_rank = all_gather_objects((None if error is None else f"{type(error).__name__}: {error}", mine))
    if error is not None:
        raise error
    failed = [e for e, _ in per_rank if e is not None]
    if failed:
        raise RuntimeError(f"GEFF export failed on another rank: {'; '.join(failed)}")
    return [per_rank[i % len(per_rank)][1][i // len(per_rank)] for i in range(len(result_dirs))]
