"""Scoring CTC results: py-ctcmetrics SEG/TRA/DET/OP_CTB of a folder, and the Ignite metric over video parts.

:func:`ctc_scores` scores one result folder ``NN_RES`` (``maskT.tif`` + ``res_track.txt``, as written by
:class:`~cosinetrack.apps.cell.CTCResultWriter`) against its ground truth folder ``NN_GT``
(``SEG/man_segT.tif``, ``TRA/man_trackT.tif``, ``TRA/man_track.txt``) with py-ctcmetrics'
``evaluate_sequence``, in this process, with its printing silenced. The measures (Maška et al., Nature
Methods 2023; Matula et al., PLoS ONE 2015):

* ``SEG``: mean Jaccard index over the reference SEG cells, a reference cell counting as matched by the
  result cell that covers more than half of it (0 when none does). Only frames with a SEG file count.
* ``DET``: ``1 - min(AOGM_D, AOGM_D0) / AOGM_D0``, the detection part of the acyclic oriented graph
  matching against the TRA markers (weights: split 5, false negative 10, false positive 1).
* ``TRA``: ``1 - min(AOGM, AOGM_0) / AOGM_0``, adding the edge operations (redundant 1, missing 1.5,
  wrong semantics 1) to DET's vertex operations.
* ``OP_CTB = (SEG + TRA) / 2``, the challenge's overall performance of the Cell Tracking Benchmark.

A result that is not CTC-valid (:func:`~cosinetrack.apps.cell.validation.check_ctc_result_files` and
py-ctcmetrics' check) gets no scores, as in the challenge: the measures are ``nan``, ``valid`` is False and
``problems`` says why. :func:`format_ctc_table` renders rows of such dicts as a markdown table.

:class:`TrackingScores` is the Ignite metric of the cell validation: the CTC measures of each tracked
video part (:class:`~cosinetrack.apps.cell.VideoTrackingStep`), their mean and standard deviation.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine
from ignite.metrics import Metric

from cosinetrack.apps.cell.layout import MAN_TRACK, SEG_RE, TRA_RE, numbered_files
from cosinetrack.apps.cell.reader import read_man_track
from cosinetrack.apps.cell.validation import check_ctc_result_files, validate_ctc_result
from cosinetrack.errors import CosineTrackDataError

__all__ = ["CTC_MEASURES", "lineage_counts", "ctc_scores", "format_ctc_table", "part_metric_name", "TrackingScores"]


#: The measures :func:`ctc_scores` always returns (``nan`` when not requested or not computable).
CTC_MEASURES = ("SEG", "TRA", "DET", "OP_CTB")


def lineage_counts(tracks: np.ndarray) -> dict[str, int]:
    """Cheap counts of an ``(N, 4)`` ``L B E P`` table.

    Returns:
        ``{"tracks": N, "divisions": parents with at least two daughters, "parent_links": tracks with a
        parent}`` (a single daughter is how the CTC links a cell across missed frames, not a division).
    """
    tracks = np.asarray(tracks, dtype=np.int64).reshape(-1, 4)
    parents = tracks[tracks[:, 3] > 0, 3]
    _, daughters = np.unique(parents, return_counts=True)
    return {
        "tracks": int(len(tracks)),
        "divisions": int((daughters >= 2).sum()),
        "parent_links": int(parents.size),
    }


def _check_metrics(metrics: Sequence[str]) -> list[str]:
    from ctc_metrics.metrics import ALL_METRICS

    if isinstance(metrics, str):
        metrics = (metrics,)
    names = list(dict.fromkeys(str(m) for m in metrics))
    unknown = [m for m in names if m not in ALL_METRICS and not re.fullmatch(r"BC\(\d+\)", m)]
    if unknown or not names:
        raise ValueError(f"metrics: unknown name(s) {unknown} (py-ctcmetrics knows {ALL_METRICS})")
    if "OP_CTB" in names:  # derived from SEG and TRA
        names += [m for m in ("SEG", "TRA") if m not in names]
    return names


def ctc_scores(
    res_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    metrics: Sequence[str] = ("SEG", "TRA", "DET"),
    threads: int = 1,
) -> dict[str, Any]:
    """CTC measures of one result folder against its ground truth, with py-ctcmetrics.

    Args:
        res_dir: the result folder ``NN_RES``: ``maskT.tif`` for every frame ``0..T-1`` and ``res_track.txt``.
        gt_dir: the ground truth folder ``NN_GT``: ``TRA/man_trackT.tif`` for the same ``T`` frames and
            ``TRA/man_track.txt``, and ``SEG/man_segT.tif`` (any subset of frames) when ``SEG`` is asked for.
        metrics: py-ctcmetrics measure names (``"SEG"``, ``"TRA"``, ``"DET"``, ``"LNK"``, ``"BC(i)"``, ...);
            ``"OP_CTB"`` needs ``SEG`` and ``TRA`` and is added whenever both are computed.
        threads: worker processes of py-ctcmetrics' mask matching (``1``: in this process, ``0``: all CPUs).

    Returns:
        ``{"SEG", "TRA", "DET", "OP_CTB"}`` floats (``nan`` when not requested, or when the result is
        invalid); ``"valid"`` bool; ``"problems"`` tuple of sentences (why it is invalid, empty when
        valid); cheap counts ``"num_frames"``, ``"num_tracks"``, ``"num_divisions"`` (parents with two or
        more daughters), ``"num_parent_links"``, ``"gt_tracks"``, ``"gt_divisions"``, ``"seg_frames"``
        (GT frames with a SEG file); with ``TRA``: ``"AOGM"``, ``"AOGM_0"`` and the operation counts
        ``"AOGM_NS"``, ``"AOGM_FN"``, ``"AOGM_FP"``, ``"AOGM_ED"``, ``"AOGM_EA"``, ``"AOGM_EC"``; any
        further measure py-ctcmetrics returns for ``metrics`` (as float; one whose name is taken by the
        counts above is prefixed ``ctcmetrics_``, e.g. BC's ``"ctcmetrics_gt_divisions"``); ``"res_dir"``,
        ``"gt_dir"``.

    A result folder whose layout is wrong (:func:`~cosinetrack.apps.cell.validation.check_ctc_result_files`)
    is invalid without calling py-ctcmetrics; its validity check decides the rest.

    Raises:
        CosineTrackDataError: a missing folder (``res_dir``, ``gt_dir``, ``gt_dir/TRA``), no ground-truth
            TRA markers or ``man_track.txt``, ground-truth file names that mix 3 and 4 digits, no SEG
            file while ``SEG`` is asked for, a result whose
            number of mask files differs from the number of TRA files (wrong ground truth folder?), or
            py-ctcmetrics failing on a result our validity check finds valid.
        ValueError: an unknown measure name.
    """
    names = _check_metrics(metrics)
    res_dir = os.path.abspath(os.fspath(res_dir))
    gt_dir = os.path.abspath(os.fspath(gt_dir))
    if not os.path.isdir(res_dir):
        raise CosineTrackDataError(
            res_dir, "CTC result folder not found (expected NN_RES with maskT.tif and res_track.txt)"
        )
    if not os.path.isdir(gt_dir):
        raise CosineTrackDataError(gt_dir, "CTC ground truth folder not found (expected NN_GT with SEG/ and TRA/)")
    tra_dir, seg_dir = os.path.join(gt_dir, "TRA"), os.path.join(gt_dir, "SEG")
    tra_frames = list(numbered_files(tra_dir, TRA_RE)[0])
    if not tra_frames:
        raise CosineTrackDataError(tra_dir, "no ground truth TRA markers (man_trackT.tif)")
    man_track = os.path.join(tra_dir, MAN_TRACK)
    gt_tracks = read_man_track(man_track)  # raises naming the file when missing or bad
    seg_frames = list(numbered_files(seg_dir, SEG_RE)[0])
    if "SEG" in names and not seg_frames:
        raise CosineTrackDataError(
            seg_dir, "no ground truth SEG files (man_segT.tif); leave 'SEG' (and 'OP_CTB') out of metrics"
        )
    # The result folder's layout (validation.check_ctc_result_files): problems py-ctcmetrics would not
    # report but stumble over (it takes every .tif as a frame, in name order, and crashes on an unreadable
    # or empty track table) make the result invalid without calling it.
    masks, res_tracks, problems = check_ctc_result_files(res_dir)
    mask_frames = list(masks)
    if mask_frames and len(mask_frames) != len(tra_frames):
        raise CosineTrackDataError(
            res_dir,
            f"{len(mask_frames)} mask files but the ground truth {tra_dir} has {len(tra_frames)} TRA files; a result "
            "needs one mask per ground truth frame (is this the right ground truth folder?)",
        )
    late_seg = [t for t in seg_frames if mask_frames and t > mask_frames[-1]]
    if late_seg:
        raise CosineTrackDataError(
            seg_dir, f"SEG frame(s) {late_seg[:10]} after the last result mask {mask_frames[-1]}"
        )

    out: dict[str, Any] = {m: math.nan for m in CTC_MEASURES}
    gt_counts = lineage_counts(gt_tracks)
    out.update(
        valid=False,
        problems=(),
        num_frames=len(mask_frames),
        num_tracks=0,
        num_divisions=0,
        num_parent_links=0,
        gt_tracks=gt_counts["tracks"],
        gt_divisions=gt_counts["divisions"],
        seg_frames=len(seg_frames),
        res_dir=res_dir,
        gt_dir=gt_dir,
    )

    if res_tracks is not None:
        counts = lineage_counts(res_tracks)
        out.update(
            num_tracks=counts["tracks"], num_divisions=counts["divisions"], num_parent_links=counts["parent_links"]
        )
        if not len(res_tracks):
            check = validate_ctc_result(res_dir)
            if check.valid:  # an empty result: nothing found, every measure 0 (py-ctcmetrics cannot parse it)
                out.update({m: 0.0 for m in ("SEG", "TRA", "DET", "OP_CTB") if m in names or m == "OP_CTB"})
                out.update(valid=True, problems=())
                return out
            problems = list(check.problems)  # the layout problems and those of the masks
    if problems:
        out["problems"] = tuple(problems)
        return out

    from ctc_metrics.scripts.evaluate import evaluate_sequence

    ask = list(dict.fromkeys(["Valid", *names]))
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("always")
            results = evaluate_sequence(res_dir, gt_dir, metrics=ask, threads=int(threads))
    except Exception as exc:  # py-ctcmetrics asserts on some invalid results
        check = validate_ctc_result(res_dir)
        if check.valid:
            raise CosineTrackDataError(
                res_dir, f"py-ctcmetrics failed on a result that validates ({type(exc).__name__}: {exc})"
            ) from exc
        out["problems"] = check.problems
        return out
    trajectory = any(m != "SEG" for m in names)  # py-ctcmetrics checks validity only with trajectory data
    if trajectory:
        valid = bool(results.get("Valid"))
        problems = list(dict.fromkeys(f"py-ctcmetrics: {w.message}" for w in caught)) if not valid else []
    else:
        check = validate_ctc_result(res_dir)
        valid, problems = check.valid, list(check.problems)
    out["valid"] = valid
    if not valid:
        if not problems:
            problems = list(validate_ctc_result(res_dir).problems) or [f"{res_dir}: py-ctcmetrics finds it invalid"]
        out["problems"] = tuple(problems)
        return out
    ours = {k for k in out if k not in CTC_MEASURES}  # e.g. BC's "gt_divisions" must not replace our count
    for key, value in results.items():
        if key == "Valid" or value is None:
            continue
        key = f"ctcmetrics_{key}" if key in ours else key
        out[key] = float(value) if isinstance(value, (int, float, np.integer, np.floating)) else value
    if not math.isnan(out["SEG"]) and not math.isnan(out["TRA"]):
        out["OP_CTB"] = 0.5 * (out["SEG"] + out["TRA"])  # py-ctcmetrics' op_ctb, also when not asked for
    return out


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if value is None:
        return "n/a"
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "n/a"
        return f"{value:.{digits}f}"
    if isinstance(value, (tuple, list)):
        return "; ".join(str(v) for v in value) or "-"
    return str(value).replace("|", "\\|")


def format_ctc_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, digits: int = 3) -> str:
    """A markdown table of score dicts (e.g. :func:`ctc_scores` plus ``"data set"``, ``"frames"`` keys).

    Args:
        rows: one dict per line.
        columns: the keys to show, in order (default: ``"data set"``, ``"frames"`` when present, then
            ``SEG``, ``TRA``, ``DET``, ``OP_CTB``, ``valid``, then the other keys of the first row that hold
            numbers, except the folders and the AOGM details).
        digits: decimals of floats (``nan`` and missing values are ``n/a``, booleans ``yes``/``no``).

    Returns:
        The table, one line per row after the header and the separator, ending with a newline.
    """
    rows = list(rows)
    if columns is None:
        first = rows[0] if rows else {}
        columns = [c for c in ("data set", "frames") if c in first]
        columns += [*CTC_MEASURES, "valid"]
        columns += [
            k
            for k, v in first.items()
            if k not in columns
            and not k.startswith("AOGM")
            and k not in ("res_dir", "gt_dir", "problems")
            and isinstance(v, (int, float, np.integer, np.floating, str))
        ]
    header = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    lines = [header, rule]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c), digits) for c in columns) + " |")
    return "\n".join(lines) + "\n"


_METRIC_NAME_BAD = re.compile(r"[^/\w.\- :]")  # MLflow metric names: letters, digits, _ - . / : and spaces


def part_metric_name(prefix: str, part: str) -> str:
    """``<prefix>/<part>`` with the characters MLflow refuses in a metric name (``+``, ``[``, ``]``, ...) as ``_``:
    ``part_metric_name("val_SEG", "Fluo-N2DH-SIM+/01[50:65]") == "val_SEG/Fluo-N2DH-SIM_/01_50:65"``."""
    return f"{prefix}/{_METRIC_NAME_BAD.sub('_', str(part)).strip('_')}"


class TrackingScores(Metric):
    """Collect ``output["scores"]`` (SEG, TRA, DET, OP_CTB, ... of :func:`~cosinetrack.apps.cell.ctc_scores`)
    of every evaluated video part; ``compute()`` is the mean of ``key`` (default ``OP_CTB``).

    :meth:`completed` also writes ``<name>_<score>`` and ``<name>_<score>_std`` (mean and std over parts)
    into ``engine.state.metrics`` and the per-part rows into ``engine.state.case_metrics``; with
    ``part_metrics``, also each part's own scores as ``<name>_<score>/<part name>``
    (:func:`part_metric_name`, e.g. ``val_SEG/Fluo-N2DH-GOWT1/01_77:92``), one curve per part in MLflow.

    Args:
        key: the score that is the key metric (checkpoint selection).
        scores: which scores to report (others in ``output["scores"]`` are ignored).
        output_transform: maps ``engine.state.output`` to a 1-tuple ``(scores dict,)`` (a tuple, because
            Ignite reads a bare dict as ``{"y_pred", "y"}``).
        part_metrics: also report every part's scores under its name (``engine.state.output["name"]``),
            e.g. when the parts come from several data sets whose scores differ.
    """

    def __init__(
        self,
        key: str = "OP_CTB",
        scores: Sequence[str] = ("SEG", "TRA", "DET", "OP_CTB"),
        output_transform: Callable = lambda output: (output["scores"],),
        device: str | torch.device = "cpu",
        part_metrics: bool = False,
    ) -> None:
        self.key = key
        self.scores = tuple(scores)
        self.part_metrics = bool(part_metrics)
        self.rows: list[dict[str, float]] = []
        self.names: list[str] = []
        super().__init__(output_transform=output_transform, device=device)

    def reset(self) -> None:
        self.rows = []
        self.names = []

    def iteration_completed(self, engine: Engine) -> None:
        output = engine.state.output
        name = output.get("name") if isinstance(output, Mapping) else None
        self.names.append(str(len(self.names)) if name is None else str(name))
        super().iteration_completed(engine)

    def update(self, output) -> None:
        output = output[0] if isinstance(output, (tuple, list)) else output
        self.rows.append({s: float(output.get(s, np.nan)) for s in self.scores})

    def _mean(self, name: str) -> tuple[float, float]:
        values = np.array([r[name] for r in self.rows], dtype=float)
        values = values[np.isfinite(values)]
        return (float(values.mean()), float(values.std())) if values.size else (float("nan"), float("nan"))

    def compute(self) -> float:
        return self._mean(self.key)[0]

    def completed(self, engine: Engine, name: str) -> None:
        engine.state.metrics[name] = self.compute()
        for s in self.scores:
            mean, std = self._mean(s)
            engine.state.metrics[f"{name}_{s}"] = mean
            engine.state.metrics[f"{name}_{s}_std"] = std
        if self.part_metrics:
            for part, row in zip(self.names, self.rows):
                for s in self.scores:
                    engine.state.metrics[part_metric_name(f"{name}_{s}", part)] = row[s]
        engine.state.case_metrics = list(self.rows)
