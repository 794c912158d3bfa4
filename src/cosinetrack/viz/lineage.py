"""Lineage (family tree) figure of a Cell Tracking Challenge (CTC) track table.

A track table is an ``(N, 4)`` integer array with one row ``L B E P`` per track: label, first frame,
last frame (inclusive) and parent label (``0``: none). :func:`lineage_tree_figure` draws time (frames)
on the x axis and one horizontal line per track from ``B`` to ``E``; a connector runs from a mother's
end ``(E, row)`` to each daughter's start ``(B, row)``. Rows come from :func:`lineage_tree_layout`, a
depth-first layout of the forest: the leaves of a family get consecutive rows, an internal track sits
at the mean row of its daughters (so daughters bracket their mother) and families are separated by a
small gap. Colors are per root family.

Tables need not be valid: a parent that is missing from the table, the track itself, or part of a
parent cycle is ignored (the track becomes a root; in a cycle the track with the earliest start, then
the smallest label, is cut loose), and a label that occurs twice keeps its first row. Layout and
figure are linear in the number of tracks and never loop forever.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

__all__ = ["lineage_tree_figure", "lineage_tree_layout"]

#: tracks are labeled (text at each line start) only up to this many tracks
MAX_LABELLED_TRACKS = 80


def _track_table(tracks: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    """``tracks`` as an ``(N, 4)`` int64 array with unique labels (the first row of a label wins)."""
    array = np.asarray(tracks)
    if array.size == 0:
        return np.zeros((0, 4), dtype=np.int64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"tracks must be an (N, 4) array of 'L B E P' rows, got shape {array.shape}")
    array = array.astype(np.int64)
    _, first = np.unique(array[:, 0], return_index=True)
    return array[np.sort(first)]


def _forest(table: np.ndarray) -> tuple[list[int], dict[int, list[int]]]:
    """Roots and daughters (both ordered by first frame, then label) of a deduplicated ``(N, 4)`` table.

    Parents that are ``0``, missing, the track itself or on a cycle are dropped (those tracks are roots).
    """
    labels = table[:, 0].tolist()
    begin = dict(zip(labels, table[:, 1].tolist()))
    parent: dict[int, int | None] = {}
    for label, p in zip(labels, table[:, 3].tolist()):
        parent[label] = p if p != 0 and p != label and p in begin else None
    # break cycles: follow each chain of parents once (0 unseen, 1 on the current chain, 2 finished)
    state: dict[int, int] = {}
    for label in labels:
        chain: list[int] = []
        node: int | None = label
        while node is not None and state.get(node, 0) == 0:
            state[node] = 1
            chain.append(node)
            node = parent[node]
        if node is not None and state[node] == 1:  # the chain ran back into itself
            cycle = chain[chain.index(node) :]
            parent[min(cycle, key=lambda n: (begin[n], n))] = None
        for n in chain:
            state[n] = 2
    order = sorted(labels, key=lambda n: (begin[n], n))
    roots = [n for n in order if parent[n] is None]
    children: dict[int, list[int]] = {}
    for n in order:
        p = parent[n]
        if p is not None:
            children.setdefault(p, []).append(n)
    return roots, children


def _preorder(roots: Sequence[int], children: dict[int, list[int]]) -> list[tuple[int, int]]:
    """``(label, family index)`` of every track, depth first, mothers before daughters."""
    out: list[tuple[int, int]] = []
    for family, root in enumerate(roots):
        stack = [root]
        while stack:
            node = stack.pop()
            out.append((node, family))
            stack.extend(reversed(children.get(node, ())))
    return out


def _rows(roots: Sequence[int], children: dict[int, list[int]], family_gap: float) -> dict[int, float]:
    """Depth-first rows: consecutive rows for leaves, mean of the daughters' rows for mothers."""
    rows: dict[int, float] = {}
    next_row = 0.0
    for i, root in enumerate(roots):
        if i:
            next_row += family_gap
        stack: list[tuple[int, bool]] = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            kids = children.get(node, ())
            if not kids:
                rows[node] = next_row
                next_row += 1.0
            elif expanded:
                rows[node] = float(np.mean([rows[k] for k in kids]))
            else:
                stack.append((node, True))
                stack.extend((k, False) for k in reversed(kids))
    return rows


def lineage_tree_layout(tracks: np.ndarray | Sequence[Sequence[int]], family_gap: float = 0.5) -> dict[int, float]:
    """Rows of a compact lineage-tree drawing of a track table.

    Families (trees of tracks linked by parent labels) are laid out one after another, ordered by the
    first frame (then label) of their root; within a family a depth-first walk gives the leaves
    consecutive rows ``r, r + 1, ...`` (daughters in order of first frame, then label) and puts each
    mother at the mean row of its daughters. Consecutive families are ``1 + family_gap`` rows apart.
    Invalid parents (missing, self, cycles) make a track a root, see the module docstring.

    Args:
        tracks: ``(N, 4)`` integer ``L B E P`` rows (``N = 0`` allowed).
        family_gap: extra space between the last leaf of a family and the first leaf of the next.

    Returns:
        ``{label: row}`` for every distinct label, rows are floats from ``0`` (top of the figure) on.
    """
    table = _track_table(tracks)
    if not len(table):
        return {}
    roots, children = _forest(table)
    return _rows(roots, children, family_gap)


def lineage_tree_figure(
    tracks: np.ndarray | Sequence[Sequence[int]],
    num_frames: int | None = None,
    title: str = "",
    max_tracks: int | None = None,
):
    """A lineage (family tree) plot of a track table: frames on x, one horizontal line per track.

    Each track is a line from ``(B, row)`` to ``(E, row)`` (a single-frame track a short stub around
    ``B``) with rows from :func:`lineage_tree_layout`; a thin connector joins a mother's end to each
    daughter's start. Lines are colored by root family. Up to :data:`MAX_LABELLED_TRACKS` drawn tracks
    get their label written small above the line start; line widths shrink with the number of tracks.
    Track lines and connectors are two :class:`~matplotlib.collections.LineCollection` s with ``gid``
    ``"tracks"`` and ``"connectors"`` (one segment per track / per drawn parent link).

    Args:
        tracks: ``(N, 4)`` integer ``L B E P`` rows; an empty table gives a figure with a note.
        num_frames: length of the video: the x axis spans frames ``0 .. num_frames - 1``; default: up
            to the largest ``E``.
        title: first line of the title (a summary of tracks, families and divisions follows).
        max_tracks: draw at most this many tracks (at least one): the first ones in depth-first order
            (mothers before daughters, families by first frame), so every drawn track's ancestors are
            drawn too; the title says how many were left out.

    Returns:
        a matplotlib Figure (the caller saves and closes it).
    """
    table = _track_table(tracks)
    if not len(table):
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no tracks", ha="center", va="center", transform=ax.transAxes, fontsize=10)
        if title:
            ax.set_title(title, fontsize=8)
        return fig

    roots, children = _forest(table)
    order = _preorder(roots, children)
    total = len(order)
    if max_tracks is not None and total > max(int(max_tracks), 0):
        keep = {label for label, _ in order[: max(int(max_tracks), 1)]}
        order = [(n, f) for n, f in order if n in keep]
        roots = [n for n in roots if n in keep]
        children = {p: [k for k in ks if k in keep] for p, ks in children.items() if p in keep}
    rows = _rows(roots, children, family_gap=0.5)
    by_label = {int(row[0]): row for row in table}
    n = len(order)

    begin = np.array([by_label[label][1] for label, _ in order], dtype=float)
    end = np.array([by_label[label][2] for label, _ in order], dtype=float)
    y = np.array([rows[label] for label, _ in order], dtype=float)
    stub = end <= begin  # single-frame (or reversed) tracks: a short stub so the track shows up
    start = np.where(stub, np.minimum(begin, end) - 0.3, begin)
    stop = np.where(stub, np.maximum(begin, end) + 0.3, end)
    palette = np.asarray(matplotlib.colormaps["tab10"].colors)
    color = palette[np.array([family for _, family in order]) % len(palette)]

    links = [(mother, kid) for mother, kids in children.items() for kid in kids]
    link_segments = [((by_label[m][2], rows[m]), (by_label[k][1], rows[k])) for m, k in links]
    index = {label: i for i, (label, _) in enumerate(order)}
    link_color = [color[index[k]] for _, k in links]

    height = float(np.clip(1.5 + 0.16 * (max(y.max(), 0.0) + 1.0), 3.0, 20.0))
    fig, ax = plt.subplots(figsize=(10, height))
    width = float(np.clip(120.0 / max(n, 1), 0.4, 2.5))
    ax.add_collection(
        LineCollection(
            np.stack([np.stack([start, y], 1), np.stack([stop, y], 1)], 1),
            colors=color,
            linewidths=width,
            capstyle="butt",
            gid="tracks",
        )
    )
    ax.add_collection(
        LineCollection(
            link_segments if link_segments else np.zeros((0, 2, 2)),
            colors=link_color if link_color else None,
            linewidths=max(width * 0.5, 0.3),
            alpha=0.8,
            gid="connectors",
        )
    )
    if n <= MAX_LABELLED_TRACKS:
        fontsize = 7 if n <= 30 else 5
        for (label, _), b, r in zip(order, begin, y):
            ax.text(b, r - 0.12, str(label), fontsize=fontsize, ha="left", va="bottom", clip_on=True)

    last = int(table[:, 2].max())
    frames = int(num_frames) if num_frames is not None else last + 1
    first = min(0, int(table[:, 1].min()))
    ax.set_xlim(first - 0.5, max(frames, first + 1) - 0.5)
    ax.set_ylim(y.max() + 0.8, y.min() - 0.8)  # first family at the top
    ax.set_yticks([])
    ax.set_xlabel("frame")
    ax.set_ylabel("tracks")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    divisions = sum(1 for kids in children.values() if len(kids) >= 2)
    summary = f"{n} tracks" if n == total else f"first {n} of {total} tracks"
    summary += f", {len(roots)} families, {divisions} divisions"
    ax.set_title((f"{title}\n" if title else "") + summary, fontsize=8)
    fig.tight_layout()
    return fig
