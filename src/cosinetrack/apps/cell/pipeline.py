"""Cell videos end to end: a CTC folder -> pair segmenter -> tracker -> CTC result, and the cell validation step."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from cosinetrack.apps.cell.geff import export_geff_for_results
from cosinetrack.apps.cell.presets import clustering_parameters
from cosinetrack.apps.cell.reader import check_ctc_frames, find_ctc_sequences, iter_ctc_frames, read_ctc_frame
from cosinetrack.apps.cell.scoring import ctc_scores
from cosinetrack.apps.cell.sequence import VideoPart
from cosinetrack.apps.cell.writer import CTCResultWriter, write_ctc_subsequence
from cosinetrack.clustering.options import check_cluster_kwargs
from cosinetrack.distributed import init_distributed, rank_device, shard
from cosinetrack.errors import CosineTrackConfigError
from cosinetrack.inference.amp import resolve_amp
from cosinetrack.inference.progress import FrameProgress
from cosinetrack.inference.segmenter import PairSegmenter, ScaledPairSegmenter, normalize_frame
from cosinetrack.inference.tiling import TiledPairSegmenter
from cosinetrack.inference.video import FrameKeeper, segment_and_track_video
from cosinetrack.io.atomic import refuse_output_over_inputs, shared_atomic_directory
from cosinetrack.io.paths import require_dir
from cosinetrack.options import as_flag, check_option_names
from cosinetrack.tracking.settings import LineageSettings, TrackingSettings
from cosinetrack.transforms.normalize import Normalization
from cosinetrack.transforms.spatial import PAD_MODES
from cosinetrack.workflows.checkpoint import load_weights, stored_image_size

__all__ = [
    "RESOLUTIONS",
    "TILING_OPTIONS",
    "inference_canvas",
    "make_pair_segmenter",
    "track_sequence_part",
    "clustering_for_part",
    "track_folder",
    "VideoTracker",
    "VideoTrackingStep",
]


logger = logging.getLogger("cosinetrack")

#: how frames meet the network: scaled to fit its canvas (the paper), or cut into tiles at native resolution
RESOLUTIONS = ("scaled", "tiled")
#: the names a ``tiling`` config section may hold (options of the tiled segmenter; the overlap is ``tile_overlap``)
TILING_OPTIONS = ("min_iou", "min_overlap", "batch_size", "cluster_stride", "storage_dtype", "storage")


def inference_canvas(model_path: str, image_size: Sequence[int], resolution: str = "scaled") -> list[int]:
    """The network input ``(h, w)`` of cell evaluation and inference for the model file ``model_path``.

    ``resolution="scaled"``: the canvas the model was trained on, as its file records it
    (:func:`~cosinetrack.workflows.stored_image_size`; ``image_size``, the bundle's, for a file without it).
    ``"tiled"``: ``image_size`` itself, the tile size (frames stay at native resolution).
    """
    if resolution not in RESOLUTIONS:
        raise CosineTrackConfigError("resolution", f"expected one of {RESOLUTIONS}, got {resolution!r}")
    if resolution == "tiled":
        return [int(v) for v in image_size]
    return stored_image_size(model_path, image_size)


def make_pair_segmenter(
    network: torch.nn.Module,
    image_size: Sequence[int],
    cluster_kwargs: Mapping[str, Any],
    resolution: str = "scaled",
    tile_overlap: int | None = None,
    device: str | torch.device = "cpu",
    padding_mode: str = "zeros",
    amp: bool | str | None = False,
    tiling: Mapping[str, Any] | None = None,
    canvas_margin: int = 0,
    test_time_flips: bool = False,
) -> PairSegmenter:
    """A :class:`ScaledPairSegmenter` (``resolution="scaled"``, the paper) or a tiled one (``"tiled"``);
    ``amp``: bfloat16 autocast of the network on CPU (see :class:`ScaledPairSegmenter`); ``tiling``:
    further options of :class:`~cosinetrack.inference.TiledPairSegmenter` (:data:`TILING_OPTIONS`);
    ``canvas_margin``: the scaled segmenter's ``margin`` (unused by the tiled one, whose tiles overlap);
    ``test_time_flips``: the scaled segmenter's (four flipped views per frame; not for tiles)."""
    if resolution == "scaled":
        return ScaledPairSegmenter(
            network, image_size, cluster_kwargs, device, padding_mode=padding_mode, amp=amp, margin=canvas_margin,
            test_time_flips=test_time_flips,
        )  # fmt: skip
    if test_time_flips:
        raise CosineTrackConfigError("test_time_flips", "only for resolution 'scaled', not for tiles")
    if resolution == "tiled":
        kwargs = check_option_names("tiling", tiling, TILING_OPTIONS)
        if tile_overlap is not None:
            kwargs["overlap"] = tile_overlap
        return TiledPairSegmenter(network, image_size, cluster_kwargs, device=device, amp=amp, **kwargs)
    raise ValueError(f"resolution must be 'scaled' or 'tiled', got {resolution!r}")


def track_sequence_part(
    network: torch.nn.Module,
    part: VideoPart,
    res_dir: str,
    image_size: Sequence[int],
    cluster_kwargs: Mapping[str, Any],
    i_min: float = 20.0,
    i_max: float = 10.0,
    smooth_sigma: float = 0.0,
    smooth_padding: str = "edge",
    upper: str = "percentile",
    resolution: str = "scaled",
    tile_overlap: int | None = None,
    tracking: Mapping[str, Any] | TrackingSettings | None = None,
    lineage: Mapping[str, Any] | LineageSettings | None = None,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    num_figure_frames: int = 0,
    padding_mode: str = "zeros",
    amp: bool | str | None = False,
    progress: FrameProgress | None = None,
    overlap_stages: bool | str = False,
    tiling: Mapping[str, Any] | None = None,
    canvas_margin: int = 0,
    test_time_flips: bool = False,
) -> dict[str, Any]:
    """Segment and track the frames ``part.frames`` of a CTC sequence into the result folder ``res_dir``.

    The part's frames are written as ``mask000.tif, ...`` renumbered from 0, as the held-out ground truth
    of :func:`~cosinetrack.apps.cell.write_ctc_subsequence` is. Frames are read, normalized and streamed one at
    a time; ``res_dir`` appears complete (and CTC-valid) or not at all. ``padding_mode``: see
    :class:`ScaledPairSegmenter` (pass the training augmentation's). ``amp``: bfloat16 autocast of the
    network on CPU (the bundles' ``amp``, see :func:`~cosinetrack.inference.resolve_amp`).
    ``progress``: counts every frame tracked (:class:`~cosinetrack.inference.FrameProgress`).
    ``overlap_stages``: reading, the network and the rest in three threads (same result; see
    :func:`segment_and_track_video`). ``canvas_margin``: see :class:`ScaledPairSegmenter` (``margin``);
    ``test_time_flips``: see :class:`ScaledPairSegmenter`.

    Returns:
        ``{"res_dir", "tracks", "num_frames", "timings", "sample"}`` (``sample``: kept frames for the
        figures, when ``num_figure_frames`` > 0).
    """

    seq = part.sequence
    frames = list(part.frames)
    network.eval()
    segmenter = make_pair_segmenter(
        network, image_size, cluster_kwargs, resolution, tile_overlap, device, padding_mode, amp, tiling, canvas_margin,
        test_time_flips,
    )
    keeper = FrameKeeper(len(frames), num_figure_frames) if num_figure_frames > 0 else None
    inputs = [seq.image_dir, seq.gt_dir]
    stream = (
        (i, normalize_frame(image, i_min, i_max, smooth_sigma, smooth_padding, upper))
        for i, (_, image) in enumerate(iter_ctc_frames(seq, frames))
    )
    if progress is not None:
        stream = progress.wrap(stream)
    with CTCResultWriter(res_dir, digits=seq.digits or 3, overwrite=overwrite, input_dirs=inputs) as writer:
        result = segment_and_track_video(
            segmenter, stream, writer, tracking, lineage, keeper,
            overlap_stages=as_flag(overlap_stages, "overlap_stages"),
        )  # fmt: skip
        writer.close(result["tracks"])
    result["res_dir"] = res_dir
    if keeper is not None:
        result["sample"] = keeper.sample(f"{part.name}, ", tracks=result["tracks"], num_frames=result["num_frames"])
    else:
        result["sample"] = None
    return result


def clustering_for_part(
    part: VideoPart,
    image_size: Sequence[int],
    resolution: str,
    preset: Mapping[str, Any] | None,
    clustering: Mapping[str, Any] | None = None,
    clustering_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The clustering options of a video part: ``clustering`` when given (e.g. ``min_samples`` and
    ``coordinate_scale`` on the canvas for every part), else the preset's m_pts and c converted to this
    network canvas (:func:`~cosinetrack.apps.cell.clustering_parameters`; tiled mode reads the first frame's
    size); either way on top of ``clustering_options`` (``mode``, ``max_points``, ...), so that replacing
    m_pts and c keeps the fast clustering and the component split.

    The preset is the part's own (``part.sequence.preset``, which
    :func:`~cosinetrack.apps.cell.find_ctc_datasets` gives every sequence, so that each data set of a
    training on several is clustered with its own m_pts and c) when it has one, else ``preset``."""

    if clustering is not None:
        return {**dict(clustering_options or {}), **dict(clustering)}
    seq = part.sequence
    preset = seq.preset or preset
    if preset is None:
        raise ValueError("the clustering needs clustering options or a data-set preset")
    frame_size = read_ctc_frame(seq.images[part.frames[0]]).shape
    return clustering_parameters(preset, image_size, frame_size, resolution, **dict(clustering_options or {}))


def describe_tracking(name: str, result: Mapping[str, Any]) -> str:
    """One line about a tracked video: frames, tracks, result folder and seconds per frame of each stage."""
    per_frame = {k: v / max(1, result["num_frames"]) for k, v in result["timings"].items()}
    timing = ", ".join(f"{k} {v:.2f}" for k, v in per_frame.items())
    frames, tracks = result["num_frames"], len(result["tracks"])
    return f"{name}: {frames} frames, {tracks} tracks -> {result['res_dir']} (s/frame: {timing})"


def track_folder(
    network: torch.nn.Module,
    input_dir: str,
    output_dir: str,
    ckpt_path: str | None,
    image_size: Sequence[int],
    preset: Mapping[str, Any] | None = None,
    resolution: str = "scaled",
    clustering: Mapping[str, Any] | None = None,
    clustering_options: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    progress_every: int = 100,
    i_min: float | None = 20.0,
    i_max: float | None = 10.0,
    smooth_sigma: float = 0.0,
    smooth_padding: str = "edge",
    upper: str = "percentile",
    tile_overlap: int | None = None,
    tracking: Mapping[str, Any] | None = None,
    lineage: Mapping[str, Any] | None = None,
    padding_mode: str = "zeros",
    amp: bool | str | None = False,
    overlap_stages: bool | str = False,
    tiling: Mapping[str, Any] | None = None,
    canvas_margin: int = 0,
    test_time_flips: bool | str = False,
) -> list[str]:
    """Track every sequence of a CTC-layout folder into ``output_dir/<NN>_RES`` (masks + ``res_track.txt``).

    The functional form of :meth:`VideoTracker.track_folder`: builds the tracker from these arguments (the
    bundle's sections under the same names; ``i_min`` / ``i_max`` / ``smooth_sigma`` / ``smooth_padding`` /
    ``upper`` are its ``normalization``) and runs it; see there for the checks, the atomic output folder and
    ``torchrun``.

    Returns:
        the written result folders (all of them, on every rank).
    """
    tracker = VideoTracker(
        image_size,
        preset=preset,
        resolution=resolution,
        tile_overlap=tile_overlap,
        clustering=clustering,
        clustering_options=clustering_options,
        tracking=tracking,
        lineage=lineage,
        normalization={
            "i_min": i_min, "i_max": i_max, "smooth_sigma": smooth_sigma, "smooth_padding": smooth_padding,
            "upper": upper,
        },  # fmt: skip
        padding_mode=padding_mode,
        device=device,
        amp=amp,
        overlap_stages=overlap_stages,
        tiling=tiling,
        canvas_margin=canvas_margin,
        test_time_flips=test_time_flips,
    )
    return tracker.track_folder(network, input_dir, output_dir, ckpt_path, overwrite, progress_every=progress_every)


class VideoTracker:
    """Segment and track cell videos: every inference setting of the cell bundle as one checked value.

    The bundle builds it from its sections when the config is parsed (``tracker`` in
    ``bundles/cell/train.json``), so a misspelt or refused option stops the run before any data is read;
    validation (:class:`VideoTrackingStep`) and inference (:meth:`track_folder`) then use the same one.

    Each video part is tracked with its own sequence's preset (``part.sequence.preset``, from
    :func:`~cosinetrack.apps.cell.find_ctc_datasets`; ``preset`` when the sequence has none), so a
    validation over several data sets treats each with its own settings. The rule, per setting:

    * normalization: ``normalization#i_min`` / ``i_max`` when not ``None`` (one value for every part: a
      number for one data set, or set on the command line), else the part's preset's;
    * clustering: ``clustering`` when given (``--clustering``: m_pts and c for all), else the part's
      preset's m_pts and c converted to the canvas (:func:`clustering_for_part`), on top of
      ``clustering_options`` either way.

    Args:
        image_size: the network canvas ``(h, w)`` (tiles of this size with ``resolution="tiled"``).
        preset: the data set preset for parts whose sequence has none (``m_pts``, ``c``, ``i_min``, ...).
        resolution: ``"scaled"`` (frames scaled to fit the canvas, the paper) or ``"tiled"``.
        tile_overlap: overlap of the tiles in pixels (``None``: a quarter of the tile).
        clustering: clustering options for every part (replacing the preset's), or ``None``.
        clustering_options: further options of :func:`~cosinetrack.clustering.cluster_embeddings`.
        tracking: :class:`~cosinetrack.tracking.TrackingSettings` names (the ``tracking`` section).
        lineage: :class:`~cosinetrack.tracking.LineageSettings` names (the ``lineage`` section).
        normalization: :class:`~cosinetrack.transforms.Normalization` names (the ``normalization`` section).
        padding_mode: how frames are padded to the canvas (pass the training augmentation's).
        device: where the network runs.
        amp: bfloat16 autocast of the network on CPU (``True``, ``False`` or ``"auto"``).
        overlap_stages: reading, the network and the rest in three threads (same result).
        tiling: further options of the tiled segmenter (:data:`TILING_OPTIONS`: the stitching thresholds
            ``min_iou`` / ``min_overlap``, ``batch_size``, ``cluster_stride``, ``storage_dtype``, ``storage``).
        canvas_margin: canvas pixels mirrored around the canvas at inference and cropped after the network
            (``resolution="scaled"``; :class:`ScaledPairSegmenter`'s ``margin``); 0: none (the paper).
        test_time_flips: every frame also runs mirrored left-right, upside down and both, each view with its
            own GRU state, and the pairs are clustered on the merged embeddings (``resolution="scaled"``
            only; :class:`ScaledPairSegmenter`); four times the network's work. Off: the paper.

    Raises:
        CosineTrackConfigError: a misspelt name or a refused value in a section, naming the section, or a
            bad ``image_size``, ``resolution``, ``tile_overlap``, ``padding_mode``, ``amp``, ``overlap_stages``,
            ``canvas_margin`` or ``test_time_flips`` (which needs ``resolution="scaled"``).
    """

    def __init__(
        self,
        image_size: Sequence[int],
        preset: Mapping[str, Any] | None = None,
        resolution: str = "scaled",
        tile_overlap: int | None = None,
        clustering: Mapping[str, Any] | None = None,
        clustering_options: Mapping[str, Any] | None = None,
        tracking: Mapping[str, Any] | None = None,
        lineage: Mapping[str, Any] | None = None,
        normalization: Mapping[str, Any] | None = None,
        padding_mode: str = "zeros",
        device: str | torch.device = "cpu",
        amp: bool | str | None = False,
        overlap_stages: bool | str = False,
        tiling: Mapping[str, Any] | None = None,
        canvas_margin: int = 0,
        test_time_flips: bool | str = False,
    ) -> None:
        size = tuple(image_size) if isinstance(image_size, Sequence) and not isinstance(image_size, str) else ()
        if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
            raise CosineTrackConfigError("image_size", f"expected two positive ints (h, w), got {image_size!r}")
        if resolution not in RESOLUTIONS:
            raise CosineTrackConfigError("resolution", f"expected one of {RESOLUTIONS}, got {resolution!r}")
        if tile_overlap is not None and (not isinstance(tile_overlap, int) or tile_overlap < 0):
            raise CosineTrackConfigError("tile_overlap", f"expected pixels >= 0 or null, got {tile_overlap!r}")
        if padding_mode not in PAD_MODES:
            raise CosineTrackConfigError("padding_mode", f"expected one of {tuple(PAD_MODES)}, got {padding_mode!r}")
        if isinstance(canvas_margin, bool) or not isinstance(canvas_margin, int) or not 0 <= canvas_margin < min(size):
            raise CosineTrackConfigError(
                "canvas_margin", f"expected whole pixels >= 0 and below the canvas size {size}, got {canvas_margin!r}"
            )
        self.canvas_margin = canvas_margin
        self.image_size = size
        self.preset = None if preset is None else dict(preset)
        self.resolution = resolution
        self.tile_overlap = None if tile_overlap is None else int(tile_overlap)
        self.clustering = None if clustering is None else check_cluster_kwargs(clustering, "clustering")
        self.clustering_options = check_cluster_kwargs(clustering_options, "clustering_options")
        self.tracking = TrackingSettings.from_mapping(tracking)
        self.lineage = LineageSettings.from_mapping(lineage)
        self.normalization = Normalization.from_mapping(normalization)
        self.tiling = check_option_names("tiling", tiling, TILING_OPTIONS)
        self.padding_mode = padding_mode
        self.device = device
        try:
            resolve_amp(amp, device)  # checks the value
            self.overlap_stages = as_flag(overlap_stages, "overlap_stages")
            self.test_time_flips = as_flag(test_time_flips, "test_time_flips")
        except ValueError as e:
            raise CosineTrackConfigError(str(e).split(":")[0], str(e).split(": ", 1)[-1]) from e
        if self.test_time_flips and resolution != "scaled":
            raise CosineTrackConfigError("test_time_flips", f"only for resolution 'scaled', not {resolution!r}")
        self.amp = amp

    def clustering_for(self, part: VideoPart) -> dict[str, Any]:
        """The clustering options of ``part`` (the rule in the class docstring)."""
        return clustering_for_part(
            part, self.image_size, self.resolution, self.preset, self.clustering, self.clustering_options
        )

    def normalization_for(self, part: VideoPart) -> dict[str, Any]:
        """``{"i_min", "i_max", "smooth_sigma", "smooth_padding", "upper"}`` of ``part``: the ``normalization``
        section's values, a ``None`` one taken from the part's preset.

        Raises:
            ValueError: a value is ``None`` and the part's data set has no preset value (the part is named).
        """
        values = self.normalization.as_dict()
        preset = part.sequence.preset or self.preset or {}
        for key in ("i_min", "i_max"):
            if values[key] is None:
                if preset.get(key) is None:
                    raise ValueError(f"{part.name}: {key} is None and the part's data set has no preset value")
                values[key] = float(preset[key])
        return values

    def track_part(
        self,
        network: torch.nn.Module,
        part: VideoPart,
        res_dir: str,
        overwrite: bool = False,
        num_figure_frames: int = 0,
        progress: FrameProgress | None = None,
        device: str | torch.device | None = None,
    ) -> dict[str, Any]:
        """Track ``part`` into the CTC result folder ``res_dir`` (:func:`track_sequence_part`).

        ``device``: where the network runs (default: the tracker's).
        """
        return track_sequence_part(
            network,
            part,
            res_dir,
            self.image_size,
            self.clustering_for(part),
            resolution=self.resolution,
            tile_overlap=self.tile_overlap,
            tracking=self.tracking,
            lineage=self.lineage,
            device=self.device if device is None else device,
            overwrite=overwrite,
            num_figure_frames=num_figure_frames,
            padding_mode=self.padding_mode,
            amp=self.amp,
            progress=progress,
            overlap_stages=self.overlap_stages,
            tiling=self.tiling,
            canvas_margin=self.canvas_margin,
            test_time_flips=self.test_time_flips,
            **self.normalization_for(part),
        )

    def track_folder(
        self,
        network: torch.nn.Module,
        input_dir: str,
        output_dir: str,
        ckpt_path: str | None = None,
        overwrite: bool | str = False,
        export_geff: bool | str = False,
        progress_every: int = 100,
    ) -> list[str]:
        """Track every sequence of a CTC-layout folder into ``output_dir/<NN>_RES`` (``maskTTT.tif`` +
        ``res_track.txt``); with ``export_geff``, also ``NN_RES.geff`` beside each.

        ``input_dir`` is a data set folder (``01``, ``02``, ...) or one sequence folder; ground truth is not
        needed. Every input is checked before anything is created: all sequences are listed and their frame
        numbers checked (:func:`~cosinetrack.apps.cell.check_ctc_frames`: no gap), the checkpoint is loaded,
        and ``output_dir`` may not be, contain or lie inside the input folder, a sequence or ground-truth
        folder or the checkpoint (with or without ``overwrite``). ``output_dir`` as a whole is then written
        atomically: it appears with every ``NN_RES`` complete, or not at all (a failure on the second of two
        sequences leaves no folder behind, so a re-run is not blocked). An existing ``output_dir`` is
        replaced only with ``overwrite``.

        Progress: a bar (frames done, frames per second) when stderr is a terminal, else a log line every
        ``progress_every`` frames (:class:`~cosinetrack.inference.FrameProgress`).

        Under ``torchrun`` (``torchrun --nproc_per_node N -m monai.bundle run inference ...``) the sequences
        are split over the ranks (each tracks every N-th), which write into one shared temporary folder that
        rank 0 renames once all succeeded (:func:`~cosinetrack.io.atomic.shared_atomic_directory`): the
        output is still every ``NN_RES`` or nothing. Every rank checks every input first.

        Returns:
            the written result folders (all of them, on every rank).
        """
        input_dir = require_dir(input_dir, "input_dir")
        init_distributed(backend="gloo")  # a no-op without torchrun; only small objects are exchanged
        sequences = find_ctc_sequences(input_dir)
        for seq in sequences:
            check_ctc_frames(seq)
        inputs = [input_dir, ckpt_path]
        inputs += [folder for seq in sequences for folder in (seq.image_dir, seq.gt_dir)]
        out = refuse_output_over_inputs(output_dir, inputs)
        overwrite = as_flag(overwrite, "overwrite")
        if os.path.exists(out) and not overwrite:
            raise FileExistsError(f"{output_dir}: already exists; choose another output_dir or set overwrite")
        device = rank_device(self.device)
        network.to(device)
        if ckpt_path:
            load_weights(network, ckpt_path, map_location=device)
        parts = [VideoPart(seq.name, seq, seq.frames) for seq in sequences]
        for part in parts:
            self.clustering_for(part)  # reads each video's first frame size: fails before anything is written
        mine = shard(parts)
        written = []
        progress = FrameProgress("cell inference", sum(len(p.frames) for p in mine), progress_every)
        with progress, shared_atomic_directory(out, overwrite=overwrite, inputs=inputs) as folder:
            for part in mine:
                name = f"{part.name}_RES"
                try:
                    result = self.track_part(
                        network, part, os.path.join(folder.path, name), progress=progress, device=device
                    )
                except Exception as exc:
                    finished = ", ".join(os.path.basename(w) for w in written)
                    done = f"; {finished} finished but discarded" if written else ""
                    if hasattr(exc, "add_note"):  # Python >= 3.11
                        exc.add_note(f"sequence {part.name} failed: nothing was written to {out}{done}")
                    raise
                result["res_dir"] = os.path.join(out, name)
                logger.info(describe_tracking(part.name, result))
                written.append(os.path.join(out, name))
                folder.results.append(os.path.join(out, name))
        export_geff_for_results(folder.merged, export_geff)
        return folder.merged


class VideoTrackingStep:
    """``iteration_update`` of a MONAI evaluator whose items are video parts: track one part, score it.

    Each iteration's batch holds one ``part`` (a :class:`~cosinetrack.apps.cell.VideoPart`, see
    :class:`~cosinetrack.apps.cell.VideoPartDataset`); ``tracker`` tracks it (:meth:`VideoTracker.track_part`,
    with the evaluator's network and device) into ``work_dir/<name>_RES`` (replaced at every validation),
    its ground truth is cut out once into ``work_dir/gt/<name>`` with
    :func:`~cosinetrack.apps.cell.write_ctc_subsequence`, and py-ctcmetrics scores the result
    (:func:`~cosinetrack.apps.cell.ctc_scores`). ``engine.state.output`` becomes ``{"name", "scores",
    "res_dir", "tracks", "timings", "sample"}`` for :class:`~cosinetrack.apps.cell.TrackingScores` and the
    figure handler.

    A part none of whose frames has a SEG file is scored without SEG and OP_CTB (``nan``, left out of
    the means of :class:`~cosinetrack.apps.cell.TrackingScores`; see :meth:`metrics_for`).

    Args:
        tracker: the bundle's :class:`VideoTracker`.
        work_dir: folder of the results and the ground-truth copies.
        num_figure_frames: frames kept per part for the figures.
        metrics: the CTC measures to score.
    """

    def __init__(
        self,
        tracker: VideoTracker,
        work_dir: str,
        num_figure_frames: int = 4,
        metrics: Sequence[str] = ("SEG", "TRA", "DET"),
    ) -> None:
        if not isinstance(tracker, VideoTracker):
            raise TypeError(f"VideoTrackingStep: tracker must be a VideoTracker, got {type(tracker).__name__}")
        self.tracker = tracker
        self.work_dir = os.path.abspath(work_dir)
        self.num_figure_frames = int(num_figure_frames)
        self.metrics = tuple(metrics)

    def metrics_for(self, part: VideoPart) -> tuple[str, ...]:
        """``metrics``, less ``SEG`` (and so ``OP_CTB``: both ``nan``) when no frame of ``part`` has a SEG file
        (e.g. the last frames of Fluo-N2DH-GOWT1/01, segmented only in frames 2-47), with a warning."""
        if "SEG" not in self.metrics or any(t in part.sequence.seg for t in part.frames):
            return self.metrics
        logger.warning("%s: no SEG ground truth in these frames; scored without SEG and OP_CTB", part.name)
        return tuple(m for m in self.metrics if m not in ("SEG", "OP_CTB"))

    def _ground_truth(self, part: VideoPart) -> str | None:
        seq = part.sequence
        if seq.man_track is None:
            return None
        root = os.path.join(self.work_dir, "gt", _safe(part.name))
        gt_dir = os.path.join(root, "01_GT")
        if not os.path.isdir(gt_dir):
            write_ctc_subsequence(seq, list(part.frames), root, name="01")
        return gt_dir

    def __call__(self, engine: Any, batch: Mapping[str, Any]) -> dict[str, Any]:
        part = batch["part"]
        part = part[0] if isinstance(part, (list, tuple)) else part
        if not isinstance(part, VideoPart):
            raise TypeError(f"VideoTrackingStep: the batch's 'part' must be a VideoPart, got {type(part).__name__}")
        res_dir = os.path.join(self.work_dir, f"{_safe(part.name)}_RES")
        result = self.tracker.track_part(
            engine.network,
            part,
            res_dir,
            overwrite=True,
            num_figure_frames=self.num_figure_frames,
            device=engine.state.device,
        )
        logger.info(describe_tracking(part.name, result))
        gt_dir = self._ground_truth(part)
        metrics = self.metrics_for(part)
        scores = ctc_scores(res_dir, gt_dir, metrics=metrics) if gt_dir is not None else {}
        if scores and "SEG" not in metrics:
            scores.update(SEG=float("nan"), OP_CTB=float("nan"))  # not measurable here (an empty result reads 0)
        return {"name": part.name, "scores": scores, **result}


def _safe(name: str) -> str:
    """A folder-name-safe version of a part name such as ``01[50:65]``."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_")
