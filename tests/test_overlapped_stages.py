"""Reading, network and clustering + tracking + writing in three threads (``overlap_stages``): the same
result as the serial loop, and an error in any stage stops the others and reaches the caller."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import tifffile
import torch

from cosinetrack.apps.cell.pipeline import track_sequence_part
from cosinetrack.apps.cell.reader import find_ctc_sequences
from cosinetrack.apps.cell.sequence import VideoPart
from cosinetrack.apps.cell.synthetic import generate_cell_video, write_ctc_sequence
from cosinetrack.apps.cell.writer import CTCResultWriter
from cosinetrack.inference.segmenter import ScaledPairSegmenter
from cosinetrack.inference.video import in_background, segment_and_track_video
from cosinetrack.networks.stacked import RecurrentStackedHourglass


def _threads_settle(before: int, timeout: float = 5.0) -> bool:
    """True once no more threads than ``before`` are alive (threads end just after ``join`` returns)."""
    end = time.monotonic() + timeout
    while threading.active_count() > before and time.monotonic() < end:
        time.sleep(0.01)
    return threading.active_count() <= before


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    images, labels, tracks = generate_cell_video(5, num_frames=8, image_size=(64, 72), num_cells=(3, 5))
    root = tmp_path_factory.mktemp("overlap_cells")
    write_ctc_sequence(root, "01", images, labels, tracks)
    (seq,) = find_ctc_sequences(root)
    return seq


def _masks(folder) -> list[np.ndarray]:
    return [tifffile.imread(p) for p in sorted(folder.glob("mask*.tif"))]


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_overlapped_stages_write_the_same_result_as_the_serial_loop(video, tmp_path, mode):
    torch.manual_seed(0)
    net = RecurrentStackedHourglass(1, 4, num_levels=2, num_filters=4).eval()
    part = VideoPart("01", video, video.frames)
    kwargs = {"min_samples": 5, "mode": mode, "split_components": True}
    results = {}
    for overlap in (False, True):
        res_dir = tmp_path / f"{overlap}_RES"
        out = track_sequence_part(
            net, part, str(res_dir), (32, 32), kwargs, i_min=20.0, i_max=1.0, smooth_sigma=1.0,
            num_figure_frames=3, overlap_stages=overlap,
        )  # fmt: skip
        results[overlap] = (out, _masks(res_dir), (res_dir / "res_track.txt").read_text())
    (serial, serial_masks, serial_tracks), (threaded, threaded_masks, threaded_tracks) = results[False], results[True]
    assert len(serial_masks) == len(threaded_masks) == len(video.frames)
    assert any(m.max() > 0 for m in serial_masks), "the test should produce instances"
    for a, b in zip(serial_masks, threaded_masks):
        np.testing.assert_array_equal(a, b)
    assert serial_tracks == threaded_tracks
    # the figure frames (input, embedding, instances) are the same too
    for a, b in zip(serial["sample"]["embedding"], threaded["sample"]["embedding"]):
        np.testing.assert_array_equal(a, b)
    assert set(threaded["timings"]) == {"network", "clustering", "tracking", "writing"}


class _FailingNet(torch.nn.Module):
    """Steps like a 1-channel identity network and raises at its ``fail_at``-th step."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at, self.steps = fail_at, 0

    def step(self, x, state):
        self.steps += 1
        if self.steps == self.fail_at:
            raise RuntimeError("network failed at step 3")
        return [torch.cat([x, -x, torch.ones_like(x)], dim=1)], state


def _frames(n: int, fail_at: int | None = None):
    for t in range(n):
        if t == fail_at:
            raise OSError(f"frame {t}: unreadable")
        yield t, torch.rand(1, 20, 24)


@pytest.mark.parametrize(
    "net_fails_at, read_fails_at, error, message",
    [(3, None, RuntimeError, "network failed at step 3"), (None, 4, OSError, "frame 4: unreadable")],
)
def test_an_error_in_any_stage_reaches_the_caller_and_stops_the_threads(
    tmp_path, net_fails_at, read_fails_at, error, message
):
    before = threading.active_count()
    seg = ScaledPairSegmenter(_FailingNet(net_fails_at or 0), (16, 16), {"min_samples": 3})
    with pytest.raises(error, match=message), CTCResultWriter(str(tmp_path / "res")) as writer:
        segment_and_track_video(seg, _frames(8, read_fails_at), writer, overlap_stages=True)
    assert not (tmp_path / "res").exists()  # nothing half-written
    assert _threads_settle(before), "a stage thread is still running"


def test_a_frame_gap_is_an_error_with_the_stages_overlapped(tmp_path):
    before = threading.active_count()
    seg = ScaledPairSegmenter(_FailingNet(0), (16, 16), {"min_samples": 3})
    gapped = ((2 * t, frame) for t, frame in _frames(6))
    with pytest.raises(ValueError, match="without gaps"), CTCResultWriter(str(tmp_path / "gap")) as writer:
        segment_and_track_video(seg, gapped, writer, overlap_stages=True)
    assert _threads_settle(before)


def test_in_background_keeps_order_stays_bounded_and_stops_when_closed():
    produced: list[int] = []
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                produced.append(i)
                yield i
                i += 1
        finally:
            closed.set()

    before = threading.active_count()
    items = in_background(endless(), maxsize=2)
    assert [next(items) for _ in range(5)] == [0, 1, 2, 3, 4]
    time.sleep(0.2)
    assert len(produced) <= 5 + 2 + 1  # at most maxsize ahead, plus the one being put
    items.close()
    assert closed.wait(5.0), "the producer's generator was not closed"
    assert _threads_settle(before)
    assert list(in_background(iter(range(4)))) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="maxsize"):
        next(in_background(iter([]), maxsize=0))
