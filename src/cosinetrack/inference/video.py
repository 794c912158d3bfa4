"""The streaming video loop (paper §2.3): frame -> network -> pair -> tracks, optionally in three threads.

A video is read one frame at a time (:func:`segment_and_track_video`). Each frame goes through the recurrent
network (``step``, the GRU state carried), the embeddings of the frame and of the one before it are
clustered together (:func:`~cosinetrack.clustering.cluster_embeddings` on the pair), the pair's labels go to
a :class:`~cosinetrack.tracking.PairTracker`, and every frame the tracker finalizes is handed to a writer at
once (the cell wing's :class:`~cosinetrack.apps.cell.CTCResultWriter`). At the end the lineage is made
CTC-valid and the written masks are relabeled frame by frame. Peak memory holds one frame, two frames'
embeddings, the tracker's short history and the network state: it does not grow with the video's length.
With ``overlap_stages`` the reading and the network run a frame or two ahead in their own threads
(:func:`in_background`); the result is the same. :class:`FrameKeeper` keeps a few frames for the figures.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from cosinetrack.clustering.embedding_clustering import cluster_embeddings
from cosinetrack.inference.segmenter import PairSegmenter
from cosinetrack.tracking.pair_tracker import PairTracker
from cosinetrack.tracking.settings import LineageSettings, TrackingSettings
from cosinetrack.transforms.normalize import bright_foreground
from cosinetrack.transforms.spatial import restore_label_size

__all__ = ["segment_and_track_video", "FrameKeeper"]


logger = logging.getLogger("cosinetrack")


def segment_and_track_video(
    segmenter: PairSegmenter,
    frames: Iterable[tuple[int, torch.Tensor]],
    writer: Any,
    tracking: Mapping[str, Any] | TrackingSettings | None = None,
    lineage: Mapping[str, Any] | LineageSettings | None = None,
    on_frame: Callable[[int, torch.Tensor, torch.Tensor | None, np.ndarray], None] | None = None,
    overlap_stages: bool = False,
) -> dict[str, Any]:
    """Segment and track a video, writing each frame as soon as it is final; return the track table and timings.

    Args:
        segmenter: a pair segmenter (see the module docstring); it is reset first.
        frames: ``(t, frame)`` with ``t = 0, 1, 2, ...`` consecutive and ``frame`` the normalized
            network input ``(C, H, W)`` (e.g. :func:`normalize_frame` of what
            :func:`~cosinetrack.apps.cell.iter_ctc_frames` yields), read lazily.
        writer: an open :class:`~cosinetrack.apps.cell.CTCResultWriter` (``write_frame(t, labels)``,
            ``relabel(mapping)``); the caller closes it with the returned ``tracks``.
        tracking: options of :class:`~cosinetrack.tracking.PairTracker` (a bundle's ``tracking`` section or
            :class:`~cosinetrack.tracking.TrackingSettings`).
        lineage: options of :func:`~cosinetrack.tracking.make_lineage_valid` (a ``lineage`` section or
            :class:`~cosinetrack.tracking.LineageSettings`).
        on_frame: optional ``on_frame(t, frame, embedding (D, h, w) or None, labels (H, W) raw ids)``
            called for every finalised frame (e.g. to keep a few frames for a figure).
        overlap_stages: run the stages in three threads instead of one after the other: reading (the
            iteration of ``frames``: decoding, normalization, smoothing) in one, the network in another
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
    settings = TrackingSettings.from_mapping(tracking)
    tracker = PairTracker(**settings.as_dict())
    # the frames' bright foreground, only when the tracker drops instances outside it
    brightness = settings.min_foreground_fraction > 0 or settings.halo_distance > 0
    foregrounds: list[np.ndarray] = []
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
            if brightness:
                foregrounds = [*foregrounds[-1:], bright_foreground(frame.float().mean(0).cpu().numpy())]
            if pair is None:
                continue
            t0 = time.perf_counter()
            done = tracker.update(pair, np.stack(foregrounds) if brightness else None)
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
        emit(tracker.update(single, np.stack(foregrounds) if brightness else None))
    last = tracker.finish()
    timings["tracking"] += time.perf_counter() - t0
    if last is not None:
        emit(last)
    t0 = time.perf_counter()
    mappings, tracks = tracker.lineage(**LineageSettings.from_mapping(lineage).as_dict())
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

    def sample(
        self, title: str = "", tracks: np.ndarray | None = None, num_frames: int | None = None
    ) -> dict[str, Any]:
        """The kept frames in the format of :func:`cosinetrack.viz.embedding_sample`, built complete here
        (``tracks``: the video's ``L B E P`` table and ``num_frames`` its length, for the lineage figure of
        :func:`cosinetrack.viz.tracking_figures`; left out when ``None``)."""
        sample = {
            "image": [f for _, f, _, _ in self.kept],
            "embedding": [e for _, _, e, _ in self.kept],
            "instances": [lab for _, _, _, lab in self.kept],
            "label": None,
            "title": f"{title}frames {[t for t, _, _, _ in self.kept]}",
        }
        if tracks is not None:
            sample["tracks"] = tracks
        if num_frames is not None:
            sample["num_frames"] = int(num_frames)
        return sample
