"""Streaming instance segmentation and tracking of a video (paper §2.3): frame -> network -> pair -> tracks.

A video is read one frame at a time. Each frame goes through the recurrent network (``step``, the GRU
state carried), the embeddings of the frame and of the one before it are clustered together
(:func:`~cosinetrack.clustering.cluster_embeddings` on the pair), the pair's labels go to a
:class:`~cosinetrack.tracking.PairTracker`, and every frame the tracker finalises is written to a
:class:`~cosinetrack.io.CTCResultWriter` at once. At the end the lineage is made CTC-valid and the
written masks are relabelled frame by frame. Peak memory holds one frame, two frames' embeddings, the
tracker's short history and the network state: it does not grow with the video's length.

A *pair segmenter* turns normalised frames into pair labels; it has ``push(frame) -> (2, H, W) | None``,
``reset()``, ``timings`` (seconds spent per stage) and ``last_embedding``:

* :class:`ScaledPairSegmenter` (the paper): each frame is scaled to fit the network input size, the
  pair is clustered on that canvas, and the labels are resampled to the frame's size.
* :class:`~cosinetrack.engines.tiling.TiledPairSegmenter`: full resolution in overlapping tiles.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from cosinetrack.clustering import check_cluster_kwargs, cluster_embeddings, restore_label_size
from cosinetrack.data.ctc import check_ctc_frames, find_ctc_sequences, iter_ctc_frames, read_ctc_frame
from cosinetrack.data.ctc_presets import clustering_parameters
from cosinetrack.distributed import init_distributed, rank_device, shard
from cosinetrack.engines.checkpoint import load_weights
from cosinetrack.engines.inferer import autocast_context, resolve_amp
from cosinetrack.engines.progress import FrameProgress
from cosinetrack.engines.tiling import TiledPairSegmenter
from cosinetrack.io.atomic import refuse_output_over_inputs, shared_atomic_directory
from cosinetrack.io.ctc import CTCResultWriter, write_ctc_subsequence
from cosinetrack.metrics.ctc import ctc_scores
from cosinetrack.options import as_flag
from cosinetrack.tracking import PairTracker
from cosinetrack.transforms.augment import clip_eval_transforms
from cosinetrack.transforms.spatial import fit_to_size

logger = logging.getLogger("cosinetrack")

__all__ = [
    "FrameKeeper",
    "PairSegmenter",
    "ScaledPairSegmenter",
    "VideoTrackingStep",
    "clustering_for_part",
    "make_pair_segmenter",
    "normalize_frame",
    "segment_and_track_video",
    "track_folder",
    "track_sequence_part",
]


class PairSegmenter(Protocol):
    timings: dict[str, float]
    last_embedding: torch.Tensor | None

    def reset(self) -> None: ...

    def push(self, frame: torch.Tensor) -> np.ndarray | None: ...


def normalize_frame(frame: np.ndarray, i_min: float, i_max: float, smooth_sigma: float = 0.0) -> torch.Tensor:
    """One raw frame ``(H, W)`` (or ``(C, H, W)``) as the network input ``(C, H, W)`` float32.

    The same robust normalisation as training and validation (median of the lowest ``i_min`` % and of
    the highest ``i_max`` % mapped to -1 and 1), after an optional Gaussian smoothing of ``smooth_sigma`` px.
    """
    x = np.asarray(frame, dtype=np.float32)
    x = x[None] if x.ndim == 2 else x
    out = _frame_transform(float(i_min), float(i_max), float(smooth_sigma))({"image": x})["image"]
    return torch.as_tensor(out, dtype=torch.float32)


@functools.lru_cache(maxsize=8)
def _frame_transform(i_min: float, i_max: float, smooth_sigma: float):
    """The evaluation transform of :func:`normalize_frame`, built once per setting (not once per frame)."""

    return clip_eval_transforms(i_min, i_max, per_channel=False, smooth_sigma=smooth_sigma)


class ScaledPairSegmenter:
    """The paper's inference: frames scaled to fit ``image_size``, pairs clustered on that canvas.

    Args:
        network: a :class:`~cosinetrack.networks.RecurrentStackedHourglass` in eval mode.
        image_size: network input ``(h, w)``.
        cluster_kwargs: options of :func:`~cosinetrack.clustering.cluster_embeddings` (``min_samples``
            = m_pts, ``coordinate_scale`` = c, ...); coordinates and ``t_size`` are in canvas pixels.
        device: where the network runs.
        stack: which stack's output is clustered (the paper: the last).
        padding_mode: how the canvas around a frame that does not fill it is padded: the training
            augmentation's ``padding_mode`` (``"reflection"`` for cells), so that the network sees at
            inference what it saw in training. Zeros (mid-grey after the robust normalisation) next to
            a frame border produced thin spurious instances along that border.
        amp: run the network under :func:`~cosinetrack.engines.inferer.autocast_context` (bfloat16 on
            CPU; ``"auto"``: where the CPU has native bfloat16, see
            :func:`~cosinetrack.engines.inferer.resolve_amp`); the embeddings handed to clustering are
            float32 either way.

    ``push(frame)`` takes a normalised frame ``(C, H, W)`` and returns ``None`` for the first frame,
    then the labels ``(2, H, W)`` int32 of the pair (previous frame, this frame), 0 = background.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        image_size: Sequence[int],
        cluster_kwargs: Mapping[str, Any],
        device: str | torch.device = "cpu",
        stack: int = -1,
        padding_mode: str = "zeros",
        amp: bool | str | None = False,
    ) -> None:
        self.network = network
        resolve_amp(amp)  # validates
        self.amp = amp
        self.padding_mode = padding_mode
        fit_to_size(torch.zeros(1, 1, 2, 2), (2, 2), padding_mode=padding_mode)  # validates it now
        self.image_size = tuple(int(s) for s in image_size)
        self.cluster_kwargs = check_cluster_kwargs(dict(cluster_kwargs))
        self.device = torch.device(device)
        self.stack = stack
        self.timings: dict[str, float] = {"network": 0.0, "clustering": 0.0}
        self.reset()

    def reset(self) -> None:
        """Forget the video: zero GRU state, no previous frame."""
        self.state = None
        self.previous: torch.Tensor | None = None
        self.last_embedding: torch.Tensor | None = None

    @torch.inference_mode()
    def embed(self, frame: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(D, h, w)`` on the network canvas of one frame ``(C, H, W)``; advances the state."""
        t0 = time.perf_counter()
        x, _ = fit_to_size(frame[None].to(self.device), self.image_size, padding_mode=self.padding_mode)
        with autocast_context(self.device, self.amp):
            out, self.state = self.network.step(x, self.state)
        out = out[self.stack] if isinstance(out, (tuple, list)) else out
        emb = out[0].float().cpu()  # float32 for the clustering, also under amp
        self.timings["network"] += time.perf_counter() - t0
        return emb

    def push(self, frame: torch.Tensor) -> np.ndarray | None:
        return self.push_embedding(self.embed(frame), frame.shape[-2:])

    def push_embedding(self, emb: torch.Tensor, frame_size: Sequence[int]) -> np.ndarray | None:
        """The clustering half of :meth:`push`: ``emb`` ``(D, h, w)`` from :meth:`embed` of a frame of
        ``frame_size`` ``(H, W)``; returns ``None`` for the first frame, then the pair's labels ``(2, H, W)``.

        :meth:`embed` (the GRU state) and this (the previous embedding) share no state, so the two may
        run in different threads, one frame apart (:func:`segment_and_track_video` with ``overlap_stages``).
        """
        self.last_embedding = emb
        previous, self.previous = self.previous, emb
        if previous is None:
            return None
        t0 = time.perf_counter()
        labels = cluster_embeddings(torch.stack([previous, emb]), **self.cluster_kwargs)
        labels = restore_label_size(labels, tuple(frame_size)).numpy()
        self.timings["clustering"] += time.perf_counter() - t0
        return labels


def segment_and_track_video(
    segmenter: PairSegmenter,
    frames: Iterable[tuple[int, torch.Tensor]],
    writer: Any,
    tracker_kwargs: Mapping[str, Any] | None = None,
    lineage_kwargs: Mapping[str, Any] | None = None,
    on_frame: Callable[[int, torch.Tensor, torch.Tensor | None, np.ndarray], None] | None = None,
    overlap_stages: bool = False,
) -> dict[str, Any]:
    """Segment and track a video, writing each frame as soon as it is final; return the track table and timings.

    Args:
        segmenter: a pair segmenter (see the module docstring); it is reset first.
        frames: ``(t, frame)`` with ``t = 0, 1, 2, ...`` consecutive and ``frame`` the normalised
            network input ``(C, H, W)`` (e.g. :func:`normalize_frame` of what
            :func:`~cosinetrack.data.iter_ctc_frames` yields), read lazily.
        writer: an open :class:`~cosinetrack.io.CTCResultWriter` (``write_frame(t, labels)``,
            ``relabel(mapping)``); the caller closes it with the returned ``tracks``.
        tracker_kwargs: options of :class:`~cosinetrack.tracking.PairTracker`.
        lineage_kwargs: options of :func:`~cosinetrack.tracking.make_lineage_valid`.
        on_frame: optional ``on_frame(t, frame, embedding (D, h, w) or None, labels (H, W) raw ids)``
            called for every finalised frame (e.g. to keep a few frames for a figure).
        overlap_stages: run the stages in three threads instead of one after the other: reading (the
            iteration of ``frames``: decoding, normalisation, smoothing) in one, the network in another
            (a segmenter with ``embed`` and ``push_embedding``, such as :class:`ScaledPairSegmenter`;
            other segmenters run whole in the calling thread), and clustering, tracking and writing in
            the calling thread, each at most two frames ahead of the next. The result is the same; while
            the network steps frame ``t``, frame ``t + 1`` is read and the pair ``(t - 2, t - 1)`` is
            clustered, tracked and written. ``timings`` are then each thread's own (they add up to more
            than the wall time). An exception in any stage stops the others and is raised here.

    Returns:
        ``{"tracks": (N, 4) "L B E P", "num_frames", "timings": {"network", "clustering", "tracking",
        "writing"} seconds}``.
    """
    segmenter.reset()
    tracker = PairTracker(**dict(tracker_kwargs or {}))
    timings = {"tracking": 0.0, "writing": 0.0}
    expected = 0
    pending: list[tuple[int, torch.Tensor, torch.Tensor | None]] = []  # frames waiting for the tracker
    size: tuple[int, ...] = ()

    def emit(labels: np.ndarray) -> None:
        t, frame, emb = pending.pop(0)
        t0 = time.perf_counter()
        writer.write_frame(t, labels)
        timings["writing"] += time.perf_counter() - t0
        if on_frame is not None:
            on_frame(t, frame, emb, labels)

    keep = on_frame is not None
    pairs = _overlapped_pairs(segmenter, frames, keep) if overlap_stages else _serial_pairs(segmenter, frames, keep)
    try:
        for t, frame, emb, pair in pairs:
            if t != expected:
                gap = f"got frame {t} after {expected - 1}"
                raise ValueError(f"frames must be numbered 0, 1, 2, ... without gaps; {gap}")
            expected += 1
            size = tuple(frame.shape[-2:])
            pending.append((t, frame if keep else None, emb))
            if pair is None:
                continue
            t0 = time.perf_counter()
            done = tracker.update(pair)
            timings["tracking"] += time.perf_counter() - t0
            emit(done)
    finally:
        pairs.close()  # stops the reading and network threads of overlap_stages, also after an error here
    if expected == 0:
        raise ValueError("the video has no frames")
    t0 = time.perf_counter()
    if expected == 1:  # a single frame: cluster it alone
        if hasattr(segmenter, "cluster_last_frame"):
            single = np.asarray(segmenter.cluster_last_frame())[None]
        else:
            labels = cluster_embeddings(segmenter.last_embedding[None], **getattr(segmenter, "cluster_kwargs", {}))
            single = restore_label_size(labels, size).numpy()
        emit(tracker.update(single))
    last = tracker.finish()
    timings["tracking"] += time.perf_counter() - t0
    if last is not None:
        emit(last)
    t0 = time.perf_counter()
    mappings, tracks = tracker.lineage(**dict(lineage_kwargs or {}))
    timings["tracking"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    writer.relabel(mappings)
    timings["writing"] += time.perf_counter() - t0
    return {"tracks": tracks, "num_frames": expected, "timings": {**segmenter.timings, **timings}}


_DONE = object()


def in_background(items: Iterable[Any], maxsize: int = 2, name: str = "cosinetrack-stage") -> Iterator[Any]:
    """Iterate ``items`` in a daemon thread, at most ``maxsize`` items ahead of the caller; yield them in order.

    An exception raised while producing an item is raised in the caller at that item. Closing the
    returned generator (or leaving a ``for`` loop over it by an exception) stops the thread after the
    item it is computing, closes ``items`` if it is a generator, and waits for the thread.
    """
    if maxsize < 1:
        raise ValueError(f"maxsize must be >= 1, got {maxsize}")
    results: queue.Queue = queue.Queue(maxsize)
    stop = threading.Event()

    def put(entry: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                results.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, raised there
            put((False, err))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
            put((True, _DONE))

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            ok, item = results.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _serial_pairs(
    segmenter: PairSegmenter, frames: Iterable[tuple[int, torch.Tensor]], keep_embedding: bool
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None, np.ndarray | None]]:
    """``(t, frame, embedding or None, pair labels or None)`` per frame, every stage in the calling thread;
    the embedding only with ``keep_embedding`` (the tiled segmenter assembles it from its tiles)."""
    for t, frame in frames:
        pair = segmenter.push(frame)
        yield t, frame, segmenter.last_embedding if keep_embedding else None, pair


def _overlapped_pairs(
    segmenter: PairSegmenter, frames: Iterable[tuple[int, torch.Tensor]], keep_embedding: bool
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None, np.ndarray | None]]:
    """As :func:`_serial_pairs`, with reading and (where the segmenter splits) the network in threads."""
    read = in_background(frames, name="cosinetrack-reading")
    try:
        if not (hasattr(segmenter, "embed") and hasattr(segmenter, "push_embedding")):
            yield from _serial_pairs(segmenter, read, keep_embedding)
            return
        embedded = in_background(((t, x, segmenter.embed(x)) for t, x in read), name="cosinetrack-network")
        try:
            for t, frame, emb in embedded:
                pair = segmenter.push_embedding(emb, frame.shape[-2:])
                yield t, frame, emb if keep_embedding else None, pair
        finally:
            embedded.close()
    finally:
        read.close()


def make_pair_segmenter(
    network: torch.nn.Module,
    image_size: Sequence[int],
    cluster_kwargs: Mapping[str, Any],
    resolution: str = "scaled",
    tile_overlap: int | None = None,
    device: str | torch.device = "cpu",
    padding_mode: str = "zeros",
    amp: bool | str | None = False,
) -> PairSegmenter:
    """A :class:`ScaledPairSegmenter` (``resolution="scaled"``, the paper) or a tiled one (``"tiled"``);
    ``amp``: bfloat16 autocast of the network on CPU (see :class:`ScaledPairSegmenter`)."""
    if resolution == "scaled":
        return ScaledPairSegmenter(network, image_size, cluster_kwargs, device, padding_mode=padding_mode, amp=amp)
    if resolution == "tiled":

        kwargs = {} if tile_overlap is None else {"overlap": tile_overlap}
        return TiledPairSegmenter(network, image_size, cluster_kwargs, device=device, amp=amp, **kwargs)
    raise ValueError(f"resolution must be 'scaled' or 'tiled', got {resolution!r}")


class FrameKeeper:
    """``on_frame`` callback of :func:`segment_and_track_video` that keeps ``num_frames`` evenly spread frames.

    The kept frames (input, embedding, instances) are what the MLflow panels draw; frame positions are
    chosen from the known video length, so only those frames are ever held.
    """

    def __init__(self, num_video_frames: int, num_frames: int = 4) -> None:
        n = max(1, min(num_frames, num_video_frames))
        self.wanted = set(np.unique(np.linspace(0, num_video_frames - 1, n).round().astype(int)).tolist())
        self.kept: list[tuple[int, np.ndarray, np.ndarray | None, np.ndarray]] = []

    def __call__(self, t: int, frame: torch.Tensor, embedding: torch.Tensor | None, labels: np.ndarray) -> None:
        if t in self.wanted:
            emb = None if embedding is None else embedding.numpy().copy()
            self.kept.append((t, frame.numpy().copy(), emb, np.asarray(labels).copy()))

    def sample(self, title: str = "") -> dict[str, Any]:
        """The kept frames in the format of :func:`cosinetrack.viz.embedding_sample`."""
        return {
            "image": [f for _, f, _, _ in self.kept],
            "embedding": [e for _, _, e, _ in self.kept],
            "instances": [lab for _, _, _, lab in self.kept],
            "label": None,
            "title": f"{title}frames {[t for t, _, _, _ in self.kept]}",
        }


def track_sequence_part(
    network: torch.nn.Module,
    part: Mapping[str, Any],
    res_dir: str,
    image_size: Sequence[int],
    cluster_kwargs: Mapping[str, Any],
    i_min: float = 20.0,
    i_max: float = 10.0,
    smooth_sigma: float = 0.0,
    resolution: str = "scaled",
    tile_overlap: int | None = None,
    tracker_kwargs: Mapping[str, Any] | None = None,
    lineage_kwargs: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    num_figure_frames: int = 0,
    padding_mode: str = "zeros",
    amp: bool | str | None = False,
    progress: FrameProgress | None = None,
    overlap_stages: bool | str = False,
) -> dict[str, Any]:
    """Segment and track the frames ``part["frames"]`` of a CTC sequence into the result folder ``res_dir``.

    ``part`` is ``{"name", "sequence": find_ctc_sequences entry, "frames": [t, ...]}`` (consecutive
    frames; written as ``mask000.tif, ...`` renumbered from 0, as the held-out ground truth of
    :func:`~cosinetrack.io.write_ctc_subsequence` is). Frames are read, normalised and streamed one at
    a time; ``res_dir`` appears complete (and CTC-valid) or not at all. ``padding_mode``: see
    :class:`ScaledPairSegmenter` (pass the training augmentation's). ``amp``: bfloat16 autocast of the
    network on CPU (the bundles' ``amp``, see :func:`~cosinetrack.engines.inferer.resolve_amp`).
    ``progress``: counts every frame tracked (:class:`~cosinetrack.engines.progress.FrameProgress`).
    ``overlap_stages``: reading, the network and the rest in three threads (same result; see
    :func:`segment_and_track_video`).

    Returns:
        ``{"res_dir", "tracks", "num_frames", "timings", "sample"}`` (``sample``: kept frames for the
        figures, when ``num_figure_frames`` > 0).
    """

    seq = dict(part["sequence"])
    frames = list(part["frames"])
    network.eval()
    segmenter = make_pair_segmenter(
        network, image_size, cluster_kwargs, resolution, tile_overlap, device, padding_mode=padding_mode, amp=amp
    )
    keeper = FrameKeeper(len(frames), num_figure_frames) if num_figure_frames > 0 else None
    inputs = [seq.get("image_dir"), seq.get("gt_dir")]
    stream = (
        (i, normalize_frame(image, i_min, i_max, smooth_sigma))
        for i, (_, image) in enumerate(iter_ctc_frames(seq, frames))
    )
    if progress is not None:
        stream = progress.wrap(stream)
    with CTCResultWriter(res_dir, digits=int(seq.get("digits", 3)), overwrite=overwrite, input_dirs=inputs) as writer:
        result = segment_and_track_video(
            segmenter, stream, writer, tracker_kwargs, lineage_kwargs, keeper,
            overlap_stages=as_flag(overlap_stages, "overlap_stages"),
        )  # fmt: skip
        writer.close(result["tracks"])
    result["res_dir"] = res_dir
    result["sample"] = keeper.sample(f"{part['name']}, ") if keeper is not None else None
    return result


def clustering_for_part(
    part: Mapping[str, Any],
    image_size: Sequence[int],
    resolution: str,
    preset: Mapping[str, Any] | None,
    cluster_kwargs: Mapping[str, Any] | None = None,
    cluster_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The clustering options of a video part: ``cluster_kwargs`` when given, else the preset's m_pts
    and c converted to this network canvas (:func:`~cosinetrack.data.clustering_parameters`; tiled mode
    reads the first frame's size) plus ``cluster_options`` (e.g. ``max_points``).

    The preset is the part's own (``part["sequence"]["preset"]``, which
    :func:`~cosinetrack.data.find_ctc_datasets` gives every sequence, so that each data set of a
    training on several is clustered with its own m_pts and c) when it has one, else ``preset``."""

    if cluster_kwargs is not None:
        return dict(cluster_kwargs)
    seq = part["sequence"]
    preset = seq.get("preset") or preset
    if preset is None:
        raise ValueError("the clustering needs cluster_kwargs or a data-set preset")
    frame_size = read_ctc_frame(seq["images"][part["frames"][0]]).shape
    return clustering_parameters(preset, image_size, frame_size, resolution, **dict(cluster_options or {}))


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
    cluster_kwargs: Mapping[str, Any] | None = None,
    cluster_options: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    progress_every: int = 100,
    **settings: Any,
) -> list[str]:
    """Track every sequence of a CTC-layout folder into ``output_dir/<NN>_RES`` (``maskTTT.tif`` + ``res_track.txt``).

    ``input_dir`` is a data set folder (``01``, ``02``, ...) or one sequence folder; ground truth is not
    needed. The clustering options come from :func:`clustering_for_part`; ``settings`` are further
    keyword arguments of :func:`track_sequence_part` (``i_min``, ``i_max``, ``smooth_sigma``,
    ``tile_overlap``, ``tracker_kwargs``, ``lineage_kwargs``, ``padding_mode``, ``amp``, ``overlap_stages``).

    Every input is checked before anything is created: all sequences are listed and their frame numbers
    checked (:func:`~cosinetrack.data.check_ctc_frames`: no gap), the checkpoint is loaded, and
    ``output_dir`` may not be, contain or lie inside the input folder, a sequence or ground-truth folder
    or the checkpoint (with or without ``overwrite``). ``output_dir`` as a whole is then written
    atomically: it appears with every ``NN_RES`` complete, or not at all (a failure on the second of two
    sequences leaves no folder behind, so a re-run is not blocked). An existing ``output_dir`` is
    replaced only with ``overwrite``.

    Progress: a bar (frames done, frames per second) when stderr is a terminal, else a log line every
    ``progress_every`` frames (:class:`~cosinetrack.engines.progress.FrameProgress`).

    Under ``torchrun`` (``torchrun --nproc_per_node N -m monai.bundle run inference ...``) the sequences
    are split over the ranks (each tracks every N-th), which write into one shared temporary folder that
    rank 0 renames once all succeeded (:func:`~cosinetrack.io.atomic.shared_atomic_directory`):
    the output is still every ``NN_RES`` or nothing. Every rank checks every input first.

    Returns:
        the written result folders (all of them, on every rank).
    """
    init_distributed(backend="gloo")  # a no-op without torchrun; only small objects are exchanged
    sequences = find_ctc_sequences(input_dir)
    for seq in sequences:
        check_ctc_frames(seq)
    inputs = [input_dir, ckpt_path]
    inputs += [folder for seq in sequences for folder in (seq.get("image_dir"), seq.get("gt_dir"))]
    out = refuse_output_over_inputs(output_dir, inputs)
    overwrite = as_flag(overwrite, "overwrite")
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"{output_dir}: already exists; choose another output_dir or set overwrite")
    device = rank_device(device)
    network.to(device)
    if ckpt_path:
        load_weights(network, ckpt_path, map_location=device)
    parts = []
    for seq in sequences:
        part = {"name": seq["name"], "sequence": seq, "frames": list(seq["frames"])}
        parts.append((part, clustering_for_part(part, image_size, resolution, preset, cluster_kwargs, cluster_options)))
    mine = shard(parts)
    written = []
    progress = FrameProgress("cell inference", sum(len(p["frames"]) for p, _ in mine), progress_every)
    with progress, shared_atomic_directory(out, overwrite=overwrite, inputs=inputs) as folder:
        for part, kwargs in mine:
            name = f"{part['name']}_RES"
            try:
                result = track_sequence_part(
                    network, part, os.path.join(folder.path, name), image_size, kwargs, resolution=resolution,
                    device=device, progress=progress, **settings,
                )
            except Exception as exc:
                done = f"; {', '.join(os.path.basename(w) for w in written)} finished but discarded" if written else ""
                if hasattr(exc, "add_note"):  # Python >= 3.11
                    exc.add_note(f"sequence {part['name']} failed: nothing was written to {out}{done}")
                raise
            result["res_dir"] = os.path.join(out, name)
            logger.info(describe_tracking(part["name"], result))
            written.append(os.path.join(out, name))
            folder.results.append(os.path.join(out, name))
    return folder.merged


class VideoTrackingStep:
    """``iteration_update`` of a MONAI evaluator whose items are video parts: track one part, score it.

    Each iteration's batch holds ``index`` (see :class:`~cosinetrack.data.VideoPartDataset`); the part
    ``parts[index]`` is tracked with :func:`track_sequence_part` into ``work_dir/<name>_RES`` (replaced
    at every validation), its ground truth is cut out once into ``work_dir/gt/<name>`` with
    :func:`~cosinetrack.io.write_ctc_subsequence`, and py-ctcmetrics scores the result
    (:func:`~cosinetrack.metrics.ctc_scores`). ``engine.state.output`` becomes ``{"name", "scores",
    "res_dir", "tracks", "timings", "sample"}`` for :class:`~cosinetrack.metrics.TrackingScores` and the
    figure handler. ``settings`` are further keyword arguments of :func:`track_sequence_part`
    (``i_min``, ``i_max``, ``smooth_sigma``, ``padding_mode``, ``tile_overlap``, ``tracker_kwargs``,
    ``lineage_kwargs``, ``amp``: bfloat16 autocast of the network on CPU, pass the bundle's ``@amp``).

    Each part is tracked with its own sequence's preset (``part["sequence"]["preset"]``, from
    :func:`~cosinetrack.data.find_ctc_datasets`; ``preset`` when the sequence has none), so a validation
    over several data sets scores each with its own settings. The rule, per setting:

    * normalisation: ``i_min`` / ``i_max`` of ``settings`` when not ``None`` (one value for every part:
      the cell bundle passes ``@augmentation#i_min`` / ``i_max``, numbers for one data set or when set
      on the command line), else the part's preset's;
    * clustering: ``cluster_kwargs`` when given (``--clustering``), else the part's preset's m_pts and c
      (:func:`clustering_for_part`) plus ``cluster_options``.

    A part none of whose frames has a SEG file is scored without SEG and OP_CTB (``nan``, left out of
    the means of :class:`~cosinetrack.metrics.TrackingScores`; see :meth:`metrics_for`).
    """

    def __init__(
        self,
        parts: Sequence[Mapping[str, Any]],
        work_dir: str,
        image_size: Sequence[int],
        preset: Mapping[str, Any] | None = None,
        resolution: str = "scaled",
        cluster_kwargs: Mapping[str, Any] | None = None,
        cluster_options: Mapping[str, Any] | None = None,
        num_figure_frames: int = 4,
        metrics: Sequence[str] = ("SEG", "TRA", "DET"),
        **settings: Any,
    ) -> None:
        self.parts = list(parts)
        self.work_dir = os.path.abspath(work_dir)
        self.image_size = tuple(int(s) for s in image_size)
        self.preset = None if preset is None else dict(preset)
        self.resolution = resolution
        self.cluster_kwargs = None if cluster_kwargs is None else dict(cluster_kwargs)
        self.cluster_options = dict(cluster_options or {})
        self.num_figure_frames = num_figure_frames
        self.metrics = tuple(metrics)
        self.settings = dict(settings)

    def settings_for(self, part: Mapping[str, Any]) -> dict[str, Any]:
        """``settings`` for ``part``: ``i_min`` / ``i_max`` that are ``None`` (or absent) taken from its preset
        (absent ones without a preset keep :func:`track_sequence_part`'s defaults).

        Raises:
            ValueError: ``i_min`` or ``i_max`` is ``None`` and no preset has it (the part is named).
        """
        settings = dict(self.settings)
        preset = part["sequence"].get("preset") or self.preset or {}
        for key in ("i_min", "i_max"):
            if settings.get(key) is None and preset.get(key) is not None:
                settings[key] = float(preset[key])
            elif key in settings and settings[key] is None:
                raise ValueError(f"{part['name']}: {key} is None and the part's data set has no preset value")
        return settings

    def metrics_for(self, part: Mapping[str, Any]) -> tuple[str, ...]:
        """``metrics``, less ``SEG`` (and so ``OP_CTB``: both ``nan``) when no frame of ``part`` has a SEG file
        (e.g. the last frames of Fluo-N2DH-GOWT1/01, segmented only in frames 2-47), with a warning."""
        if "SEG" not in self.metrics or any(t in part["sequence"].get("seg", {}) for t in part["frames"]):
            return self.metrics
        logger.warning("%s: no SEG ground truth in these frames; scored without SEG and OP_CTB", part["name"])
        return tuple(m for m in self.metrics if m not in ("SEG", "OP_CTB"))

    def _ground_truth(self, part: Mapping[str, Any]) -> str | None:

        seq = part["sequence"]
        if seq.get("man_track") is None:
            return None
        root = os.path.join(self.work_dir, "gt", _safe(part["name"]))
        gt_dir = os.path.join(root, "01_GT")
        if not os.path.isdir(gt_dir):
            write_ctc_subsequence(dict(seq), list(part["frames"]), root, name="01")
        return gt_dir

    def __call__(self, engine: Any, batch: Mapping[str, Any]) -> dict[str, Any]:

        index = batch["index"]
        index = int(index[0] if isinstance(index, (list, tuple, torch.Tensor, np.ndarray)) else index)
        part = self.parts[index]
        kwargs = clustering_for_part(
            part, self.image_size, self.resolution, self.preset, self.cluster_kwargs, self.cluster_options
        )
        res_dir = os.path.join(self.work_dir, f"{_safe(part['name'])}_RES")
        result = track_sequence_part(
            engine.network, part, res_dir, self.image_size, kwargs, resolution=self.resolution,
            device=engine.state.device, overwrite=True, num_figure_frames=self.num_figure_frames,
            **self.settings_for(part),
        )
        logger.info(describe_tracking(part["name"], result))
        gt_dir = self._ground_truth(part)
        metrics = self.metrics_for(part)
        scores = ctc_scores(res_dir, gt_dir, metrics=metrics) if gt_dir is not None else {}
        if scores and "SEG" not in metrics:
            scores.update(SEG=float("nan"), OP_CTB=float("nan"))  # not measurable here (an empty result reads 0)
        if result["sample"] is not None:
            result["sample"]["tracks"] = result["tracks"]
            result["sample"]["num_frames"] = result["num_frames"]
        return {"name": part["name"], "scores": scores, **result}


def _safe(name: str) -> str:
    """A folder-name-safe version of a part name such as ``01[50:65]``."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_")
