"""The rules that protect the user's data: outputs never over inputs, no stale temporaries, the umask."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch

from cosinetrack.apps.cell.pipeline import track_folder
from cosinetrack.apps.cell.synthetic import generate_cell_video, write_ctc_sequence
from cosinetrack.errors import CosineTrackDataError
from cosinetrack.io.atomic import atomic_directory, atomic_file, refuse_output_over_inputs, remove_stale_temporaries
from cosinetrack.networks.stacked import RecurrentStackedHourglass


def _tree(folder):
    """``{relative path: bytes}`` of every file below ``folder``, plus the folders (empty ones too)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def inputs(tmp_path):
    """``tmp/data/images/a.nii`` (+ a README), a checkpoint ``tmp/runs/r/model.pt`` and a datalist."""
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "images" / "a.nii").write_bytes(b"image")
    (tmp_path / "data" / "README").write_text("notes")
    (tmp_path / "runs" / "r").mkdir(parents=True)
    (tmp_path / "runs" / "r" / "model.pt").write_bytes(b"weights")
    (tmp_path / "list.json").write_text("[]")
    return tmp_path


REFUSED = [  # output (relative to tmp), how it collides
    ("data", "is the input folder"),
    ("data/images", "the input folder"),  # is one input folder, lies inside another
    ("data/images/pred", "lies inside the input folder"),
    ("data/pred", "lies inside the input folder"),
    (".", "contains the input"),
    ("runs", "contains the input file"),
    ("runs/r/model.pt", "is the input file"),
    ("list.json", "is the input file"),
]
ALLOWED = ["pred", "runs/r/pred", "runs/pred"]


@pytest.mark.parametrize("output, how", REFUSED)
def test_output_over_an_input_is_refused(inputs, output, how):
    ins = [inputs / "data", inputs / "data" / "images", inputs / "runs" / "r" / "model.pt", inputs / "list.json"]
    with pytest.raises(CosineTrackDataError, match=how):
        refuse_output_over_inputs(inputs / output, ins)


@pytest.mark.parametrize("output", ALLOWED)
def test_output_beside_the_inputs_is_allowed(inputs, output):
    ins = [inputs / "data", inputs / "runs" / "r" / "model.pt", None, ""]
    assert refuse_output_over_inputs(inputs / output, ins) == str(inputs / output)


@pytest.mark.parametrize("output, how", REFUSED)
def test_atomic_directory_with_overwrite_never_replaces_an_input(inputs, output, how):
    before = _tree(inputs)
    ins = [inputs / "data", inputs / "data" / "images", inputs / "runs" / "r" / "model.pt", inputs / "list.json"]
    with pytest.raises(CosineTrackDataError, match=how), atomic_directory(inputs / output, overwrite=True, inputs=ins):
        pytest.fail("the body must not run")
    assert _tree(inputs) == before


def test_a_symbolic_link_to_the_input_folder_is_the_input_folder(inputs):
    os.symlink(inputs / "data", inputs / "link")
    with pytest.raises(CosineTrackDataError, match="is the input folder"):
        refuse_output_over_inputs(inputs / "link", [inputs / "data"])


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("kind", ["tmp", "old"])
def test_stale_temporaries_of_a_killed_run_are_removed_and_do_not_block(tmp_path, kind):
    dead, alive = _dead_pid(), os.getpid()
    stale = tmp_path / f".{kind}-out-{dead}-abc123"
    (stale / "x").mkdir(parents=True)
    running = tmp_path / f".tmp-out-{alive}-def456"  # a writer that still runs: kept
    running.mkdir()
    foreign = tmp_path / ".tmp-other-1-zzz"  # another target's: kept
    foreign.mkdir()
    (tmp_path / "out").mkdir()  # the target exists: an ".old" folder is garbage, not a result to restore
    with atomic_directory(tmp_path / "out", overwrite=True) as tmp:
        open(os.path.join(tmp, "f.txt"), "w").close()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", running.name, foreign.name])
    assert os.listdir(tmp_path / "out") == ["f.txt"]


def test_a_folder_moved_aside_by_a_killed_replace_is_restored(tmp_path):
    """``kill -9`` between moving the old result aside and renaming the new one: the old result comes back."""
    aside = tmp_path / f".old-out-{_dead_pid()}-abc123" / "x"
    aside.mkdir(parents=True)
    (aside / "result.txt").write_text("old result")
    assert remove_stale_temporaries(tmp_path / "out") == [str(aside.parent)]
    assert (tmp_path / "out" / "result.txt").read_text() == "old result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize(
    "umask, dir_mode, file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600), (0o002, 0o775, 0o664)]
)
def test_outputs_follow_the_umask(tmp_path, umask, dir_mode, file_mode):
    old = os.umask(umask)
    try:
        with atomic_directory(tmp_path / "out") as tmp, atomic_file(os.path.join(tmp, "f.txt")) as f:
            open(f, "w").close()
        with atomic_file(tmp_path / "g.txt") as g:
            open(g, "w").close()
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == dir_mode
    assert (tmp_path / "out" / "f.txt").stat().st_mode & 0o777 == file_mode
    assert (tmp_path / "g.txt").stat().st_mode & 0o777 == file_mode


# ------------------------------------------------------------------------------------------------------
# cell inference: every input checked before the output exists; the output folder as a whole atomic
# ------------------------------------------------------------------------------------------------------


@pytest.fixture
def videos(tmp_path):
    """A data set folder with two short synthetic sequences ``01`` and ``02`` (no ground truth needed)."""
    root = tmp_path / "videos"
    for i, name in enumerate(("01", "02")):
        images, labels, tracks = generate_cell_video(i, num_frames=4, image_size=(64, 64), num_cells=(2, 3))
        write_ctc_sequence(root, name, images, labels, tracks)
    return root


TRACK = dict(image_size=(32, 32), clustering={"min_samples": 5, "max_points": 1000})


def _net():
    torch.manual_seed(0)
    return RecurrentStackedHourglass(1, 4, num_levels=2, num_filters=4)


def _break(root, case):
    """Damage the second sequence so that it fails: (what, expected error fragment)."""
    frame = root / "02" / "t002.tif"
    if case == "nan":
        image = tifffile.imread(frame).astype(np.float32)
        image[3, 4] = np.nan
        tifffile.imwrite(frame, image)
        return "NaN or infinite"
    if case == "gap":
        frame.unlink()
        return "t002.tif"
    if case == "size":
        tifffile.imwrite(frame, np.zeros((20, 32), np.uint16))
        return "differs from the first frame"
    if case == "unreadable":
        frame.write_bytes(b"not a tiff")
        return "cannot read the TIFF"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["nan", "gap", "size", "unreadable"])
def test_a_bad_second_sequence_leaves_no_output_and_no_input_change(videos, tmp_path, case):
    fragment = _break(videos, case)
    before = _tree(videos)
    out = tmp_path / "results"
    with pytest.raises(CosineTrackDataError, match=fragment):
        track_folder(_net(), str(videos), str(out), None, **TRACK)
    assert not out.exists() and _tree(videos) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["videos"]  # no temporary left either


@pytest.mark.parametrize("output", ["videos", "videos/01/results", "videos/02_GT/res", "."])
def test_cell_output_over_the_input_creates_nothing(videos, tmp_path, output):
    (videos / "02_GT").mkdir(exist_ok=True)
    before = _tree(tmp_path)
    with pytest.raises(CosineTrackDataError, match="input folder"):
        track_folder(_net(), str(videos), str(tmp_path / output), None, overwrite=True, **TRACK)
    assert _tree(tmp_path) == before


def test_cell_output_appears_whole_after_a_failed_run(videos, tmp_path):
    out = tmp_path / "results"
    (videos / "02" / "t001.tif").rename(tmp_path / "t001.tif")  # a gap: the first run fails
    with pytest.raises(CosineTrackDataError):
        track_folder(_net(), str(videos), str(out), None, **TRACK)
    (tmp_path / "t001.tif").rename(videos / "02" / "t001.tif")
    written = track_folder(_net(), str(videos), str(out), None, **TRACK)  # the re-run is not blocked
    assert [os.path.basename(w) for w in written] == ["01_RES", "02_RES"]
    assert sorted(os.listdir(out)) == ["01_RES", "02_RES"]


@pytest.mark.parametrize("bundle", ["lv_mri", "leaf", "cell"])
def test_a_failed_bundle_run_ends_with_the_file_and_the_problem(tmp_path, bundle):
    """The user reads the last line: it names the file and the problem, not MONAI's wrapper."""
    from conftest import REPO_ROOT

    data = tmp_path / "my data"
    data.mkdir()
    (data / "notes.txt").write_text("not an image")
    configs = str([f"bundles/{bundle}/train.json", f"bundles/{bundle}/inference.json"])
    cmd = [sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file", configs]
    cmd += ["--input_dir", str(data), "--output_dir", str(tmp_path / "out"), "--ckpt_path", str(data / "notes.txt")]
    env = {k: v for k, v in os.environ.items() if k != "COSINETRACK_DEBUG"}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: {data}") and "Failed to evaluate" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my data"]


@pytest.mark.parametrize(
    "value, expect",
    [(True, True), (False, False), (None, False), (1, True), (0, False), ("true", True), ("False", False),
     ("false", False), ("no", False), ("YES", True), ("0", False), ("maybe", ValueError), (2, ValueError)],
)  # fmt: skip
def test_command_line_flags_mean_what_they_say(value, expect):
    from cosinetrack.options import as_flag

    if expect is ValueError:
        with pytest.raises(ValueError, match="overwrite: expected true or false"):
            as_flag(value, "overwrite")
    else:
        assert as_flag(value, "overwrite") is expect


@pytest.mark.parametrize("overwrite", [False, "false", "False", "no", "0"])
def test_overwrite_false_from_the_command_line_keeps_the_existing_output(tmp_path, overwrite):
    """``--overwrite false`` arrives as the string "false": it must not replace anything."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError), atomic_directory(tmp_path / "out", overwrite=overwrite):
        pytest.fail("the body must not run")
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep"
