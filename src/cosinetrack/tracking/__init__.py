"""Tracking: merging the clusterings of overlapping frame pairs and a CTC-valid lineage (paper §2.3).

``PairTracker`` is the streaming tracker (``update((2, H, W) pair labels) -> (H, W)`` frame with raw
track ids, ``finish()`` -> last frame, ``lineage()`` -> per-frame id mapping and the ``L B E P``
table); ``track_pairs`` runs it on a whole video in memory. ``TrackingSettings`` and ``LineageSettings``
are the checked ``tracking`` and ``lineage`` config sections (one home for their defaults).
``make_lineage_valid`` is the pure lineage post-processing, ``check_ctc_lineage`` lists what makes a CTC result invalid
(``check_tracks_against_labels``, the one tracks-against-masks check, is its part on the masks), and
``greedy_iou_matching`` / ``best_overlapping_instance`` are the overlap rules they use;
``split_merged_instances`` cuts instances that cover several touching objects (the tracker's
``split_min_distance``). ``LINKS`` are the values of the tracker's ``link`` (what a pair's first frame is
matched to: the previous pair's second frame, the paper's, or the previous finalised frame).
"""

from cosinetrack.tracking.lineage import (
    MAX_CTC_LABEL,
    LabelsPerFrame,
    check_ctc_lineage,
    check_tracks_against_labels,
    make_lineage_valid,
    remap_labels,
    track_frames_from_labels,
    tracks_table_from_labels,
)
from cosinetrack.tracking.matching import PARENT_MEASURES, best_overlapping_instance, greedy_iou_matching, iou_pairs
from cosinetrack.tracking.pair_tracker import (
    LINEAGE_OPTIONS,
    TRACKING_OPTIONS,
    PairTracker,
    check_tracking_options,
    track_pairs,
)
from cosinetrack.tracking.settings import LINKS, LineageSettings, TrackingSettings, option_names
from cosinetrack.tracking.splitting import split_by_distance_peaks, split_merged_instances

__all__ = [
    "LINEAGE_OPTIONS",
    "LINKS",
    "MAX_CTC_LABEL",
    "PARENT_MEASURES",
    "TRACKING_OPTIONS",
    "LabelsPerFrame",
    "LineageSettings",
    "PairTracker",
    "TrackingSettings",
    "best_overlapping_instance",
    "check_ctc_lineage",
    "check_tracking_options",
    "check_tracks_against_labels",
    "greedy_iou_matching",
    "iou_pairs",
    "make_lineage_valid",
    "option_names",
    "remap_labels",
    "split_by_distance_peaks",
    "split_merged_instances",
    "track_frames_from_labels",
    "track_pairs",
    "tracks_table_from_labels",
]
