"""Streaming segmentation and tracking of a video: pair segmenters, the frame loop, CTC results, scores."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage

from cosinetrack.apps.cell.pipeline import (
    VideoTracker,
    VideoTrackingStep,
    clustering_for_part,
    track_folder,
    track_sequence_part,
)
from cosinetrack.apps.cell.reader import find_ctc_sequences
from cosinetrack.apps.cell.scoring import ctc_scores
from cosinetrack.apps.cell.sequence import CTCSequence, VideoPart
from cosinetrack.apps.cell.synthetic import generate_cell_video, write_ctc_sequence
from cosinetrack.apps.cell.validation import validate_ctc_result
from cosinetrack.apps.cell.writer import CTCResultWriter
from cosinetrack.errors import CosineTrackConfigError
from cosinetrack.inference.segmenter import ScaledPairSegmenter
from cosinetrack.inference.video import FrameKeeper, segment_and_track_video
from cosinetrack.networks.stacked import RecurrentStackedHourglass
from cosinetrack.transforms.spatial import fit_to_size


class OracleSegmenter:
    """A pair segmenter that returns the ground-truth labels of each pair, with ids shuffled per pair."""

    def __init__(self, labels: np.ndarray, seed: int = 0) -> None:
        self.labels = labels.astype(np.int64)
        self.rng = np.random.default_rng(seed)
        self.timings = {"network": 0.0, "clustering": 0.0}
        self.cluster_kwargs = {}
        self.reset()

    def reset(self) -> None:
        self.t = -1
        self.last_embedding = None

    def push(self, frame: torch.Tensor):
        self.t += 1
        self.last_embedding = torch.zeros(3, *frame.shape[-2:])
        if self.t == 0:
            return None
        pair = self.labels[self.t - 1 : self.t + 1]
        perm = np.concatenate([[0], self.rng.permutation(np.arange(1, pair.max() + 1)) + 100])
        return perm[pair]

    def cluster_last_frame(self):
        return self.labels[self.t]


@pytest.fixture(scope="module")
def cell_video(tmp_path_factory):
    images, labels, tracks = generate_cell_video(
        3, num_frames=10, image_size=(64, 64), num_cells=(4, 6), division_prob=0.2
    )
    root = tmp_path_factory.mktemp("cells")
    write_ctc_sequence(root, "01", images, labels, tracks)
    return root, images, labels, tracks


def _frames(images):
    return ((t, torch.as_tensor(im, dtype=torch.float32)[None]) for t, im in enumerate(images))


def test_oracle_pairs_give_a_valid_result_that_scores_one(cell_video, tmp_path):
    root, images, labels, tracks = cell_video
    assert (tracks[:, 3] > 0).any(), "the test video should hold a division"
    res = tmp_path / "01_RES"
    with CTCResultWriter(str(res)) as writer:
        out = segment_and_track_video(
            OracleSegmenter(labels), _frames(images), writer, lineage={"min_track_length": 1}
        )
        writer.close(out["tracks"])
    assert out["num_frames"] == 10 and validate_ctc_result(str(res))
    scores = ctc_scores(str(res), str(root / "01_GT"))
    # TRA just below 1: the ground truth has a mother with one visible daughter, which the lineage rules
    # merge into one track (a documented choice), costing one edge operation
    assert scores["SEG"] == pytest.approx(1.0) and 0.99 < scores["TRA"] <= 1.0
    assert scores["num_divisions"] == int((np.bincount(tracks[tracks[:, 3] > 0, 3]) >= 2).sum())


@pytest.mark.parametrize("overlap_stages", [False, True])
def test_min_foreground_fraction_drops_instances_in_the_dark_background(cell_video, tmp_path, overlap_stages):
    """A false cell added in the frames' dark background (no pixel of it bright) is gone from the result with
    ``tracking#min_foreground_fraction``, and the real cells stay; without it, it is tracked."""
    root, images, labels, _ = cell_video
    fake = labels.copy()
    dark = np.argwhere((labels == 0).all(0) & (np.asarray(images) < np.median(images)).all(0))
    y, x = dark[len(dark) // 2]
    box = (slice(None), slice(max(y - 1, 0), y + 2), slice(max(x - 1, 0), x + 2))
    fake[box] = np.where(labels[box] == 0, fake.max() + 1, labels[box])
    counts = {}
    for fraction in (0.0, 0.5):
        res = tmp_path / f"{fraction}_{overlap_stages}" / "01_RES"
        with CTCResultWriter(str(res)) as writer:
            out = segment_and_track_video(
                OracleSegmenter(fake), _frames(images), writer, tracking={"min_foreground_fraction": fraction},
                lineage={"min_track_length": 1}, overlap_stages=overlap_stages,
            )  # fmt: skip
            writer.close(out["tracks"])
        assert validate_ctc_result(str(res))
        counts[fraction] = len(out["tracks"])
        if fraction:
            assert ctc_scores(str(res), str(root / "01_GT"))["SEG"] == pytest.approx(1.0)
    assert counts[0.0] == counts[0.5] + 1


def test_halo_distance_drops_a_dim_instance_next_to_a_cell_and_keeps_the_cells(cell_video, tmp_path):
    """A false instance in the dark background a few pixels from a real cell, in every frame (a nucleus'
    halo read as a cell), is gone with ``tracking#halo_distance``; the real cells stay (SEG 1)."""
    root, images, labels, _ = cell_video
    fake, boxes = labels.copy(), []
    for t in range(len(labels)):
        near = ndimage.distance_transform_edt(labels[t] == 0)  # px to the nearest cell
        dark = np.argwhere((near >= 5) & (near <= 6) & (images[t] < np.median(images[t])))
        y, x = dark[len(dark) // 2]
        boxes.append((t, slice(y - 1, y + 2), slice(x - 1, x + 2)))
        fake[boxes[-1]] = labels.max() + 1 + t  # 3x3, at least 4 px from every cell
    for distance in (0.0, 2.0):  # the cells are 3-5 px across: 2 typical diameters reach the false instance
        res = tmp_path / f"halo_{distance}" / "01_RES"
        with CTCResultWriter(str(res)) as writer:
            out = segment_and_track_video(
                OracleSegmenter(fake), _frames(images), writer, tracking={"halo_distance": distance},
                lineage={"min_track_length": 1},
            )  # fmt: skip
            writer.close(out["tracks"])
        assert validate_ctc_result(str(res))
        found = [bool(tifffile.imread(res / f"mask{t:03d}.tif")[tuple(box)].all()) for t, *box in boxes]
        assert found == [not distance] * len(boxes)
        if distance:
            assert ctc_scores(str(res), str(root / "01_GT"))["SEG"] == pytest.approx(1.0)


def test_single_frame_video_and_frame_gaps(cell_video, tmp_path):
    _, images, labels, _ = cell_video
    with CTCResultWriter(str(tmp_path / "one")) as writer:
        out = segment_and_track_video(OracleSegmenter(labels[:1]), _frames(images[:1]), writer)
        writer.close(out["tracks"])
    assert out["num_frames"] == 1 and validate_ctc_result(str(tmp_path / "one"))
    with pytest.raises(ValueError, match="without gaps"), CTCResultWriter(str(tmp_path / "gap")) as writer:
        segment_and_track_video(OracleSegmenter(labels), ((t * 2, f) for t, f in _frames(images)), writer)
    assert not (tmp_path / "gap").exists()  # nothing half-written


def test_scaled_segmenter_streams_the_same_embeddings_as_a_clip_forward():
    torch.manual_seed(0)
    net = RecurrentStackedHourglass(1, 4, num_levels=2, num_filters=4).eval()
    frames = torch.randn(5, 1, 30, 40)
    seg = ScaledPairSegmenter(net, (32, 32), {"min_samples": 5})
    streamed = torch.stack([seg.embed(f) for f in frames])
    canvas = torch.stack([fit_to_size(f[None], (32, 32))[0][0] for f in frames])  # (T, 1, 32, 32)
    with torch.no_grad():
        clip = net(canvas[None])[-1][0]
    torch.testing.assert_close(streamed, clip, atol=1e-5, rtol=1e-5)


def test_frame_keeper_keeps_only_the_frames_drawn():
    keeper = FrameKeeper(100, 4)
    for t in range(100):
        keeper(t, torch.zeros(1, 4, 4), torch.zeros(3, 4, 4), np.zeros((4, 4), np.int32))
    assert [k[0] for k in keeper.kept] == [0, 33, 66, 99]
    assert len(keeper.sample()["image"]) == 4


def test_track_folder_writes_valid_ctc_results_and_refuses_existing_output(cell_video, tmp_path):
    root, *_ = cell_video
    torch.manual_seed(0)
    net = RecurrentStackedHourglass(1, 4, num_levels=2, num_filters=4)
    out = tmp_path / "results"
    kwargs = dict(image_size=(32, 32), clustering={"min_samples": 5, "max_points": 2000})
    written = track_folder(net, str(root), str(out), None, **kwargs)
    assert [p.split("/")[-1] for p in written] == ["01_RES"] and validate_ctc_result(written[0])
    with pytest.raises(FileExistsError):
        track_folder(net, str(root), str(out), None, **kwargs)
    with pytest.raises(ValueError, match="input folder"):
        track_folder(net, str(root), str(root / "01"), None, overwrite=True, **kwargs)


def test_video_tracking_step_scores_a_held_out_part(cell_video, tmp_path):
    root, *_ = cell_video
    (seq,) = find_ctc_sequences(root)
    part = VideoPart("01[6:10]", seq, (6, 7, 8, 9))
    net = RecurrentStackedHourglass(1, 4, num_levels=2, num_filters=4)
    tracker = VideoTracker((32, 32), {"m_pts": 100, "c": 0.001}, clustering_options={"max_points": 2000},
                           normalization={"i_min": 20.0, "i_max": 10.0})
    step = VideoTrackingStep(tracker, str(tmp_path / "work"), num_figure_frames=2)

    class Engine:
        network = net

        class state:  # noqa: N801
            device = torch.device("cpu")

    out = step(Engine, {"part": [part], "name": ["01[6:10]"]})
    assert set(out["scores"]) >= {"SEG", "TRA", "DET", "OP_CTB"} and out["num_frames"] == 4
    assert validate_ctc_result(out["res_dir"]) and len(out["sample"]["image"]) == 2
    again = step(Engine, {"part": [part], "name": ["01[6:10]"]})  # validations repeat: replaced
    assert again["res_dir"] == out["res_dir"]


def test_track_sequence_part_streams_a_subset_renumbered_from_zero(cell_video, tmp_path):
    root, *_ = cell_video
    (seq,) = find_ctc_sequences(root)
    net = RecurrentStackedHourglass(1, 4, num_levels=2, num_filters=4)
    part = VideoPart("tail", seq, (7, 8, 9))
    res = track_sequence_part(net, part, str(tmp_path / "tail_RES"), (32, 32), {"min_samples": 5})
    names = sorted(p.name for p in (tmp_path / "tail_RES").iterdir())
    assert names[:3] == ["mask000.tif", "mask001.tif", "mask002.tif"]
    assert set(res["timings"]) == {"network", "clustering", "tracking", "writing"}


class _Recorder(torch.nn.Module):
    """A stand-in network whose ``step`` records its input and returns it as a 1-d embedding."""

    def step(self, x, state):
        self.seen = x.clone()
        return [x], state


@pytest.mark.parametrize("mode, pad_value", [("zeros", lambda f: torch.zeros(4)), ("reflection", lambda f: f[:, 1])])
def test_scaled_segmenter_pads_the_canvas_as_training_does(mode, pad_value):
    frame = torch.linspace(-1, 1, 4 * 3).reshape(1, 4, 3)  # 4 x 3 frame on a 4 x 5 canvas: one column each side
    seg = ScaledPairSegmenter(_Recorder(), (4, 5), {"min_samples": 2}, padding_mode=mode)
    seg.embed(frame)
    canvas = seg.network.seen[0, 0]
    torch.testing.assert_close(canvas[:, 1:4], frame[0])
    torch.testing.assert_close(canvas[:, 0], pad_value(frame[0]))


@pytest.mark.parametrize("margin", [0, 1, 2])
def test_canvas_margin_mirrors_the_canvas_and_crops_the_output(margin):
    """The network sees the canvas with ``margin`` mirrored pixels on every side; the embedding handed on
    is the canvas again (the recorder returns its input, so the crop must give back the canvas)."""
    frame = torch.linspace(-1, 1, 4 * 3).reshape(1, 4, 3)
    seg = ScaledPairSegmenter(_Recorder(), (4, 5), {"min_samples": 2}, padding_mode="reflection", margin=margin)
    emb = seg.embed(frame)
    seen = seg.network.seen[0, 0]
    assert seen.shape == (4 + 2 * margin, 5 + 2 * margin)
    canvas = seen[margin : margin + 4, margin : margin + 5]
    torch.testing.assert_close(emb[0], canvas)
    torch.testing.assert_close(canvas[:, 1:4], frame[0])
    if margin:
        torch.testing.assert_close(seen[margin - 1, margin:-margin], canvas[1])  # the row above: canvas row 1
        torch.testing.assert_close(seen[margin:-margin, margin - 1], canvas[:, 1])


@pytest.mark.parametrize("margin", [-1, 4, 1.5, True])
def test_bad_canvas_margin_is_refused(margin):
    with pytest.raises(ValueError, match="margin"):
        ScaledPairSegmenter(_Recorder(), (4, 5), {"min_samples": 2}, margin=margin)
    with pytest.raises(CosineTrackConfigError, match="canvas_margin"):
        VideoTracker((4, 5), canvas_margin=margin)


class _StatefulRecorder(torch.nn.Module):
    """A stand-in network that returns its input as a 1-d embedding and counts its steps per batch item."""

    def step(self, x, state):
        self.seen = x.clone()
        state = torch.zeros(x.shape[0]) if state is None else state
        return [x], state + 1


def test_test_time_flips_run_four_views_with_their_own_state_and_merge_them():
    """Each frame runs as a batch of four views (as is, left-right, upside down, both), each view's GRU
    state carried separately; the views are flipped back, so for a network that returns its input every
    view's part of the merged embedding is the (unit-length) canvas itself."""
    frame = torch.linspace(0.5, 1, 4 * 5).reshape(1, 4, 5)
    seg = ScaledPairSegmenter(_StatefulRecorder(), (4, 5), {"min_samples": 2}, test_time_flips=True)
    emb = seg.embed(frame)
    seen = seg.network.seen[:, 0]
    assert seen.shape == (4, 4, 5)
    for view, dims in zip(seen, [(), (-1,), (-2,), (-2, -1)]):
        torch.testing.assert_close(view, frame[0].flip(dims) if dims else frame[0])
    assert emb.shape == (4, 4, 5)
    torch.testing.assert_close(emb, torch.full_like(emb, 0.5))  # 1-d unit embeddings, four views, / sqrt(4)
    seg.embed(frame)
    torch.testing.assert_close(seg.state, torch.full((4,), 2.0))
    assert seg.cluster_kwargs["views"] == 4  # the clustering decides the background per view


def test_views_are_the_segmenters_to_set():
    assert "views" not in ScaledPairSegmenter(_Recorder(), (4, 5), {"min_samples": 2}).cluster_kwargs
    with pytest.raises(ValueError, match="'views' is set by the segmenter from test_time_flips"):
        ScaledPairSegmenter(_Recorder(), (4, 5), {"min_samples": 2, "views": 4}, test_time_flips=True)


def test_test_time_flips_track_a_video(cell_video, tmp_path):
    root, *_ = cell_video
    (seq,) = find_ctc_sequences(root)
    torch.manual_seed(0)
    net = RecurrentStackedHourglass(1, 4, num_levels=2, num_filters=4)
    part = VideoPart("tail", seq, (6, 7, 8, 9))
    res = track_sequence_part(net, part, str(tmp_path / "RES"), (32, 32), {"min_samples": 5}, test_time_flips=True)
    assert validate_ctc_result(str(tmp_path / "RES")) and res["num_frames"] == 4


@pytest.mark.parametrize(
    "options, problem",
    [
        ({"test_time_flips": "sometimes"}, "test_time_flips"),
        ({"test_time_flips": True, "resolution": "tiled"}, "scaled"),
    ],
)
def test_bad_test_time_flips_are_refused_at_parse_time(options, problem):
    with pytest.raises(CosineTrackConfigError, match=problem):
        VideoTracker((32, 32), **options)


def test_unknown_padding_mode_fails_at_construction():
    with pytest.raises(ValueError, match="padding_mode"):
        ScaledPairSegmenter(_Recorder(), (4, 5), {"min_samples": 2}, padding_mode="mirror")


@pytest.mark.parametrize(
    "clustering, options, expected",
    [
        ({"min_samples": 60}, {"mode": "fast", "max_points": 9}, {"mode": "fast", "max_points": 9, "min_samples": 60}),
        ({"min_samples": 60, "mode": "exact"}, {"mode": "fast"}, {"mode": "exact", "min_samples": 60}),
        ({"coordinate_scale": 0.002}, None, {"coordinate_scale": 0.002}),
    ],
)
def test_a_clustering_override_keeps_the_clustering_options(clustering, options, expected):
    """``--clustering`` replaces m_pts and c for every part; the fast mode and other options stay."""
    seq = CTCSequence("01", "/data", "/data/01", frames=range(3))
    part = VideoPart("01", seq, (0, 1, 2))
    assert clustering_for_part(part, (256, 256), "scaled", None, clustering, options) == expected


def test_functional_track_folder_forwards_every_tracker_option(monkeypatch):
    """``track_folder(...)`` builds the same ``VideoTracker`` as the bundle would: no option is dropped."""
    import inspect

    from cosinetrack.apps.cell import pipeline

    tracker_options = set(inspect.signature(pipeline.VideoTracker.__init__).parameters) - {"self", "image_size"}
    seen = {}

    class Recorder:
        def __init__(self, image_size, **kwargs):
            seen.update(kwargs, image_size=image_size)

        def track_folder(self, *args, **kwargs):
            return []

    monkeypatch.setattr(pipeline, "VideoTracker", Recorder)
    options = {"canvas_margin": 3, "tiling": {"batch_size": 2}, "smooth_padding": "zeros"}
    pipeline.track_folder(None, "in", "out", None, (32, 32), **options)
    assert seen["canvas_margin"] == 3 and seen["tiling"] == {"batch_size": 2}
    assert seen["normalization"]["smooth_padding"] == "zeros"
    assert tracker_options <= set(seen), f"not forwarded: {tracker_options - set(seen)}"
