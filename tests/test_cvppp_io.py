"""CVPPP A1 reader / writer and the synthetic rosette generator that writes the same layout."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from cosinetrack.apps.leaf.cvppp import (
    CVPPP_PALETTE,
    check_leaf_count,
    count_leaves,
    find_cvppp_plants,
    read_cvppp_image,
    read_cvppp_label,
    read_cvppp_plant,
    read_leaf_counts,
    write_cvppp_image,
    write_cvppp_label,
    write_leaf_counts,
)
from cosinetrack.apps.leaf.synthetic import (
    MAX_LEAVES,
    MIN_LEAVES,
    ensure_synthetic_leaf_dataset,
    generate_rosette,
    main,
    write_synthetic_leaf_dataset,
)
from cosinetrack.errors import CosineTrackDataError

H, W = 7, 11  # non-square on purpose: a transposed read would fail the shape checks


def _rgba(seed: int = 0) -> np.ndarray:
    rgba = np.random.default_rng(seed).integers(0, 256, size=(H, W, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    return rgba


def _labels() -> np.ndarray:
    lab = np.zeros((H, W), dtype=np.uint8)
    lab[1:4, 2:9] = 1
    lab[4:6, 0:3] = 2
    lab[5, 10] = 3  # a corner pixel: row 5, column 10 only exists in the (H, W) orientation
    return lab


def _write_plant(folder, name: str, rgba: np.ndarray, lab: np.ndarray | None) -> None:
    """Write one plant the way the official files are made (PIL RGBA png + palette png), not with our writer."""
    Image.fromarray(rgba).save(folder / f"{name}_rgb.png")
    if lab is not None:
        img = Image.frombytes("P", (lab.shape[1], lab.shape[0]), lab.tobytes())
        img.putpalette([c for rgb in CVPPP_PALETTE[: int(lab.max()) + 1] for c in rgb])
        img.save(folder / f"{name}_label.png")


@pytest.fixture
def a1(tmp_path):
    folder = tmp_path / "A1"
    folder.mkdir()
    _write_plant(folder, "plant002", _rgba(2), _labels())
    _write_plant(folder, "plant010", _rgba(10), _labels())
    _write_plant(folder, "plant001", _rgba(1), None)  # test-set style plant without a label
    (folder / "plant002_fg.png").write_bytes(b"ignored")
    (folder / "A1.csv").write_text("plant002_rgb.png, 3\nplant010_rgb.png, 3\n")
    return folder


# ------------------------------------------------------------------------------------------------
# reader
# ------------------------------------------------------------------------------------------------


def test_find_and_read_official_layout(a1):
    plants = find_cvppp_plants(a1)
    assert [p["name"] for p in plants] == ["plant001", "plant002", "plant010"]
    assert plants[0]["label"] is None
    assert plants[1] == {
        "name": "plant002",
        "image": str(a1 / "plant002_rgb.png"),
        "label": str(a1 / "plant002_label.png"),
    }

    image = read_cvppp_image(plants[1]["image"])
    assert image.shape == (3, H, W) and image.dtype == np.float32
    np.testing.assert_allclose(image, _rgba(2)[..., :3].transpose(2, 0, 1) / 255.0, atol=1e-7)

    label = read_cvppp_label(plants[1]["label"])
    assert label.shape == (H, W) and label.dtype == np.int64
    np.testing.assert_array_equal(label, _labels())
    assert label[5, 10] == 3

    image2, label2 = read_cvppp_plant(plants[2])
    assert image2.shape == (3, H, W) and label2.shape == (H, W)
    assert read_cvppp_plant(plants[0])[1] is None

    counts = read_leaf_counts(a1 / "A1.csv")
    assert counts == {"plant002": 3, "plant010": 3}
    assert check_leaf_count(label, counts["plant002"], plants[1]["label"]) == 3


def test_rgb_without_alpha_is_accepted(tmp_path):
    Image.fromarray(_rgba()[..., :3]).save(tmp_path / "x_rgb.png")
    np.testing.assert_allclose(read_cvppp_image(tmp_path / "x_rgb.png")[:, 5, 10], _rgba()[5, 10, :3] / 255.0)


def test_writer_round_trip(tmp_path):
    lab = _labels()
    write_cvppp_label(lab, tmp_path / "p_label.png")
    img = Image.open(tmp_path / "p_label.png")
    assert img.mode == "P" and img.size == (W, H)
    assert img.getpalette()[:12] == [c for rgb in CVPPP_PALETTE[:4] for c in rgb]
    np.testing.assert_array_equal(read_cvppp_label(tmp_path / "p_label.png"), lab)

    many = np.arange(H * W, dtype=np.int64).reshape(H, W)  # 77 ids: beyond the 21 official colors
    write_cvppp_label(many, tmp_path / "many_label.png")
    np.testing.assert_array_equal(read_cvppp_label(tmp_path / "many_label.png"), many)

    image = np.random.default_rng(3).random((3, H, W)).astype(np.float32)
    write_cvppp_image(image, tmp_path / "p_rgb.png")
    rgba = np.asarray(Image.open(tmp_path / "p_rgb.png"))
    assert rgba.shape == (H, W, 4) and (rgba[..., 3] == 255).all()
    np.testing.assert_allclose(read_cvppp_image(tmp_path / "p_rgb.png"), image, atol=0.5 / 255 + 1e-6)

    write_leaf_counts({"plant002": 3, "plant001": 12}, tmp_path / "A1.csv")
    assert (tmp_path / "A1.csv").read_text() == "plant001_rgb.png, 12\nplant002_rgb.png, 3\n"
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]  # atomic writers leave nothing behind

    with pytest.raises(ValueError, match="0..255"):
        write_cvppp_label(np.full((H, W), -1), tmp_path / "bad_label.png")
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        write_cvppp_image(np.zeros((H, W, 3)), tmp_path / "bad_rgb.png")


def _made(path, content=None):
    """``path`` after creating it: a folder for ``None``, a PNG for an array, else the bytes or text."""
    if content is None:
        path.mkdir()
    elif isinstance(content, np.ndarray):
        Image.fromarray(content).save(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


NOT_A_PNG = b"\x89PNG\r\n\x1a\nthis is not a png"


def _leaf_count_mismatch(path):
    return check_leaf_count(_labels(), 4, path)


#: (make the argument from ``tmp_path`` and the ``a1`` folder, reader, error ``match``, whether the message
#: starts with the argument); the argument is made before the reader is called.
READER_ERRORS = [
    pytest.param(lambda t, a1: t / "missing", find_cvppp_plants, "not found", True, id="missing-folder"),
    pytest.param(lambda t, a1: _made(t / "empty"), find_cvppp_plants, "no CVPPP plants", False, id="empty-folder"),
    pytest.param(
        lambda t, a1: _made(t / "broken_rgb.png", NOT_A_PNG), read_cvppp_image, "cannot read", True, id="broken-image"
    ),
    pytest.param(
        lambda t, a1: _made(t / "broken_rgb.png", NOT_A_PNG), read_cvppp_label, "cannot read", True, id="broken-label"
    ),
    pytest.param(lambda t, a1: t / "nope.png", read_cvppp_image, "file not found", False, id="missing-image"),
    # a color-coded label and a label file given as image
    pytest.param(
        lambda t, a1: _made(t / "rgb_label.png", np.zeros((H, W, 3), np.uint8)),
        read_cvppp_label,
        "palette PNG .* expected",
        False,
        id="rgb-label",
    ),
    pytest.param(lambda t, a1: a1 / "plant002_label.png", read_cvppp_image, "label file", False, id="label-as-image"),
    # csv: missing, malformed, duplicate
    pytest.param(lambda t, a1: t / "none.csv", read_leaf_counts, "not found", False, id="missing-csv"),
    pytest.param(
        lambda t, a1: _made(t / "bad.csv", "plant001_rgb.png, 3\nplant002_rgb.png, many\n"),
        read_leaf_counts,
        "line 2",
        False,
        id="malformed-csv",
    ),
    pytest.param(
        lambda t, a1: _made(t / "dup.csv", "plant001_rgb.png, 3\nplant001_rgb.png, 4\n"),
        read_leaf_counts,
        "twice",
        False,
        id="duplicate-csv",
    ),
    # leaf count check: the label has 3 leaves, the csv says 4
    pytest.param(
        lambda t, a1: a1 / "plant002_label.png",
        _leaf_count_mismatch,
        "3 leaves but .* says 4",
        True,
        id="leaf-count-mismatch",
    ),
    # image and label sizes differ
    pytest.param(
        lambda t, a1: {"image": _made(t / "small_rgb.png", _rgba()[:, :5]), "label": a1 / "plant002_label.png"},
        read_cvppp_plant,
        "differs",
        False,
        id="sizes-differ",
    ),
]


@pytest.mark.parametrize("make_arg, reader, problem, names_arg", READER_ERRORS)
def test_reader_errors(tmp_path, a1, make_arg, reader, problem, names_arg):
    arg = make_arg(tmp_path, a1)
    with pytest.raises(CosineTrackDataError, match=problem) as err:
        reader(arg)
    if names_arg:
        assert str(err.value).startswith(str(arg))


def test_leaf_counts_tolerate_a_header(tmp_path):
    (tmp_path / "head.csv").write_text("image,count\nplant001_rgb.png,3\n")
    assert read_leaf_counts(tmp_path / "head.csv") == {"plant001": 3}


def test_leaf_count_mismatch_can_warn():
    with pytest.warns(UserWarning, match="3 leaves"):
        assert check_leaf_count(_labels(), 4, on_mismatch="warn") == 3


# ------------------------------------------------------------------------------------------------
# synthetic rosettes
# ------------------------------------------------------------------------------------------------


def test_generate_rosette_deterministic_and_valid():
    rgb, lab = generate_rosette(7, (96, 128))
    rgb2, lab2 = generate_rosette(7, (96, 128))
    np.testing.assert_array_equal(rgb, rgb2)
    np.testing.assert_array_equal(lab, lab2)
    assert rgb.shape == (96, 128, 3) and rgb.dtype == np.uint8
    assert lab.shape == (96, 128)
    assert not np.array_equal(generate_rosette(8, (96, 128))[1], lab)

    counts = set()
    for seed in range(6):
        rgb, lab = generate_rosette(seed, (128, 128))
        n = int(lab.max())
        counts.add(n)
        assert MIN_LEAVES <= n <= MAX_LEAVES
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        assert (sizes[1:] >= 6).all(), sizes  # every id 1..n is visible (occluded leaves are dropped)
        assert count_leaves(lab) == n
        # leaves are green, soil is not
        leaf = rgb[lab > 0].astype(float).mean(axis=0)
        soil = rgb[lab == 0].astype(float).mean(axis=0)
        assert leaf[1] > leaf[0] and leaf[1] > leaf[2] and leaf[1] > soil[1]
    assert len(counts) > 1  # the leaf count varies with the seed


def test_synthetic_dataset_layout_and_cache(tmp_path):
    out = tmp_path / "leaves"
    plants = write_synthetic_leaf_dataset(out, num_plants=3, seed=1, image_size=(64, 80))
    assert plants == find_cvppp_plants(out)
    assert [p["name"] for p in plants] == ["plant001", "plant002", "plant003"]
    assert sorted(os.listdir(tmp_path)) == ["leaves"]  # no temporary folder left
    counts = read_leaf_counts(out / "A1.csv")
    assert (out / "A1.csv").read_text().splitlines()[0].startswith("plant001_rgb.png, ")
    rgba = Image.open(plants[0]["image"])
    assert rgba.mode == "RGBA" and Image.open(plants[0]["label"]).mode == "P"
    plant_seeds = json.loads((out / "dataset.json").read_text())["generator"]["plant_seeds"]
    for i, plant in enumerate(plants):
        image, label = read_cvppp_plant(plant)
        assert image.shape == (3, 64, 80) and label.shape == (64, 80)
        check_leaf_count(label, counts[plant["name"]], plant["label"])
        rgb, lab = generate_rosette(plant_seeds[i], (64, 80))
        np.testing.assert_array_equal(label, lab)
        np.testing.assert_allclose(image, rgb.transpose(2, 0, 1) / 255.0, atol=1e-7)

    # cache hit: nothing rewritten
    mtime = os.stat(plants[0]["image"]).st_mtime_ns
    assert write_synthetic_leaf_dataset(out, num_plants=3, seed=1, image_size=(64, 80)) == plants
    assert os.stat(plants[0]["image"]).st_mtime_ns == mtime
    # other parameters: refused unless overwrite
    with pytest.raises(FileExistsError, match="other parameters"):
        write_synthetic_leaf_dataset(out, num_plants=2, seed=1, image_size=(64, 80))
    assert len(write_synthetic_leaf_dataset(out, num_plants=2, seed=1, image_size=(64, 80), overwrite=True)) == 2
    # a folder not made by the generator is never touched
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not made by"):
        write_synthetic_leaf_dataset(foreign, num_plants=1, image_size=(64, 64), overwrite=True)
    assert (foreign / "keep.txt").read_text() == "mine"


def test_ensure_and_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COSINETRACK_CACHE", str(tmp_path / "cache"))
    folder = ensure_synthetic_leaf_dataset(num_plants=2, seed=3, image_size=(64, 64))
    assert folder == str(tmp_path / "cache" / "synthetic_leaves_v1_seed3_n2_64x64")
    assert len(find_cvppp_plants(folder)) == 2
    assert ensure_synthetic_leaf_dataset(num_plants=2, seed=3, image_size=(64, 64)) == folder
    with pytest.raises(TypeError, match="unknown"):
        ensure_synthetic_leaf_dataset(num_cases=2)

    assert main(["--out", str(tmp_path / "cli"), "--num-plants", "1", "--seed", "3", "--size", "64", "64"]) == 0
    assert "1 plants" in capsys.readouterr().out
    np.testing.assert_array_equal(
        read_cvppp_label(tmp_path / "cli" / "plant001_label.png"),
        read_cvppp_label(os.path.join(folder, "plant001_label.png")),
    )


# ------------------------------------------------------------------------------------------------
# real data
# ------------------------------------------------------------------------------------------------


@pytest.mark.real_data
def test_real_cvppp_a1(shared_data):
    folder = shared_data / "cvppp" / "A1"
    plants = find_cvppp_plants(folder)
    assert len(plants) == 96 and all(p["label"] is not None for p in plants)
    counts = read_leaf_counts(folder / "A1.csv")
    assert set(counts) == {p["name"] for p in plants}
    for plant in (plants[0], plants[1], plants[-1]):
        image, label = read_cvppp_plant(plant)
        assert image.shape == (3, 530, 500) and image.dtype == np.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert label.shape == (530, 500) and label.dtype == np.int64
        n = check_leaf_count(label, counts[plant["name"]], plant["label"])
        assert n == counts[plant["name"]] and label.max() == n  # ids are 1..n
        # leaves are greener than the background
        assert image[1][label > 0].mean() > image[1][label == 0].mean()
