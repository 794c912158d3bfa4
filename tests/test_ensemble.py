"""An ensemble of trained runs read as one network: the merged embedding, streaming, and its model file."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO_ROOT

from cosinetrack.errors import CosineTrackDataError
from cosinetrack.inference.stepping import concat_states, split_state, step_network
from cosinetrack.networks import EmbeddingEnsemble, RecurrentStackedHourglass
from cosinetrack.workflows import load_weights, network_for_model, network_settings
from cosinetrack.workflows.combine import combine_model_files

NET = dict(in_channels=1, out_channels=4, num_levels=2, num_filters=4)


def _member(path, seed, **extra):
    torch.manual_seed(seed)
    net = RecurrentStackedHourglass(**NET)
    with torch.no_grad():  # the ConvGRU gates start at zero: give every weight a value so the members differ
        for p in net.parameters():
            p.normal_(0, 0.3)
    torch.save({"model": net.state_dict(), "network": network_settings(net), **extra}, path)
    return net


def _pair_cosine(emb, i, j):
    """Cosine similarity of pixels ``i`` and ``j`` ((y, x)) of an embedding ``(D, H, W)``."""
    return F.cosine_similarity(emb[:, i[0], i[1]], emb[:, j[0], j[1]], dim=0)


@pytest.mark.parametrize("members", [2, 3])
def test_a_pixel_pairs_similarity_is_the_mean_of_the_members(tmp_path, members):
    nets = [_member(tmp_path / f"m{k}.pt", k) for k in range(members)]
    out = tmp_path / "ensemble.pt"
    combine_model_files([str(tmp_path / f"m{k}.pt") for k in range(members)], str(out))
    ensemble = load_weights(network_for_model(str(out)), str(out)).eval()
    assert isinstance(ensemble, EmbeddingEnsemble) and ensemble.members == members
    x = torch.randn(1, 3, 1, 12, 10)
    with torch.no_grad():
        merged = ensemble(x)
        own = [net.eval()(x) for net in nets]
    assert len(merged) == 2 and merged[-1].shape == (1, 3, members * 4, 12, 10)
    torch.testing.assert_close(merged[-1].norm(dim=2), torch.ones(1, 3, 12, 10))
    for i, j in [((0, 0), (5, 7)), ((11, 9), (3, 2))]:
        mean = sum(_pair_cosine(o[-1][0, 2], i, j) for o in own) / members
        torch.testing.assert_close(_pair_cosine(merged[-1][0, 2], i, j), mean, atol=1e-5, rtol=0)
    with torch.no_grad():  # still images (B, C, H, W), as the leaf bundle runs them
        still = ensemble(x[:, 0])
    assert still[-1].shape == (1, members * 4, 12, 10)
    torch.testing.assert_close(still[-1], merged[-1][:, 0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config", ["bundles/lv_mri/evaluate.json", "bundles/lv_mri/inference.json"])
def test_the_lv_bundle_refuses_ensembles_of_class_scores(config):
    import json

    assert json.loads((REPO_ROOT / config).read_text())["network_def"]["allow_ensemble"] is False


def test_streaming_gives_the_clip_outputs_and_a_state_the_stepping_helpers_handle(tmp_path):
    for k in range(2):
        _member(tmp_path / f"m{k}.pt", k)
    out = tmp_path / "e.pt"
    combine_model_files([str(tmp_path / "m0.pt"), str(tmp_path / "m1.pt")], str(out))
    ensemble = load_weights(network_for_model(str(out)), str(out)).eval()
    x = torch.randn(2, 4, 1, 9, 11)
    with torch.no_grad():
        clip = ensemble(x)[-1]
        state, frames = None, []
        for t in range(4):
            emb, state = step_network(ensemble, x[:, t], state)
            frames.append(emb)
            if t == 1:  # batch split and joined again (tiles) keeps the members' states apart
                state = concat_states(split_state(state, [1, 1]))
    torch.testing.assert_close(torch.stack(frames, 1), clip, atol=1e-5, rtol=1e-5)
    assert len(state) == 2 * ensemble.num_stacks
    with pytest.raises(ValueError, match="2 members x 2 stacks"):
        ensemble.step(x[:, 0], state[:2])


def test_the_ensemble_file_records_members_their_hashes_and_the_shared_entries(tmp_path):
    extra = {"image_size": [64, 64], "fit": "scale", "normalization": {"upper": "foreground"}}
    for k in range(2):
        _member(tmp_path / f"m{k}.pt", k, **extra)
    out = tmp_path / "models" / "model.pt"
    combine_model_files([str(tmp_path / "m0.pt"), str(tmp_path / "m1.pt")], str(out))
    state = torch.load(out, weights_only=True)
    assert state["network"] == {
        "members": 2,
        **network_settings(RecurrentStackedHourglass(**NET)),
        "background": "mean",
    }
    assert {k: state[k] for k in extra} == extra
    assert state["ensemble"]["files"] == ["m0.pt", "m1.pt"] and all(len(h) == 64 for h in state["ensemble"]["sha256"])
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.pt"]  # no temporary left


def _bad_member(tmp_path):
    _member(tmp_path / "m0.pt", 0, image_size=[64, 64])
    return tmp_path / "other.pt"


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: _member(p, 1, image_size=[32, 32]), r"image_size=\[32, 32\] \(first member"),
        (
            lambda p: torch.save(
                {
                    "model": RecurrentStackedHourglass(**{**NET, "num_filters": 8}).state_dict(),
                    "network": {**NET, "num_filters": 8, "num_stacks": 2, "recurrent": True},
                    "image_size": [64, 64],
                },
                p,
            ),
            "num_filters",
        ),  # fmt: skip
        (lambda p: torch.save({"model": {}, "network": {"members": 2}}, p), "already an ensemble"),
        (lambda p: torch.save({"model": {}}, p), "not a model file with recorded network settings"),
        (lambda p: torch.save({"model": {}, "network": {}, "optimizer": {}}, p), "unexpected entries"),
        (lambda p: p.write_text("no"), "cannot read"),
    ],
    ids=["canvas", "shape", "nested", "no settings", "training checkpoint", "not torch"],
)
def test_members_that_do_not_fit_are_refused_naming_the_file(tmp_path, make, fragment):
    other = _bad_member(tmp_path)
    make(other)
    out = tmp_path / "e.pt"
    with pytest.raises(CosineTrackDataError, match=fragment) as err:
        combine_model_files([str(tmp_path / "m0.pt"), str(other)], str(out))
    assert str(err.value).startswith(str(other)) and not out.exists()


def test_one_member_or_an_output_over_a_member_is_refused(tmp_path):
    _member(tmp_path / "m0.pt", 0)
    with pytest.raises(CosineTrackDataError, match="at least two"):
        combine_model_files([str(tmp_path / "m0.pt")], str(tmp_path / "e.pt"))
    _member(tmp_path / "m1.pt", 1)
    before = (tmp_path / "m1.pt").read_bytes()
    with pytest.raises((CosineTrackDataError, FileExistsError)):
        combine_model_files([str(tmp_path / "m0.pt"), str(tmp_path / "m1.pt")], str(tmp_path / "m1.pt"))
    assert (tmp_path / "m1.pt").read_bytes() == before


def test_an_ensemble_file_and_a_single_network_do_not_load_into_each_other(tmp_path):
    for k in range(2):
        _member(tmp_path / f"m{k}.pt", k)
    out = tmp_path / "e.pt"
    combine_model_files([str(tmp_path / "m0.pt"), str(tmp_path / "m1.pt")], str(out))
    with pytest.raises(
        CosineTrackDataError, match="an ensemble of 2 networks, the network to load it into one network"
    ):
        load_weights(RecurrentStackedHourglass(**NET), str(out))
    with pytest.raises(CosineTrackDataError, match="is one network, the network to load it into an ensemble of 2"):
        load_weights(EmbeddingEnsemble(members=2, **NET), str(tmp_path / "m0.pt"))
    with pytest.raises(CosineTrackDataError, match="this bundle runs one network") as err:
        network_for_model(str(out), allow_ensemble=False)  # the LV bundle: class scores cannot be merged
    assert str(err.value).startswith(str(out))


def test_the_torchscript_export_refuses_an_ensemble_file(tmp_path):
    from cosinetrack.networks import StackedHourglassExport

    for k in range(2):
        _member(tmp_path / f"m{k}.pt", k)
    out = tmp_path / "e.pt"
    combine_model_files([str(tmp_path / "m0.pt"), str(tmp_path / "m1.pt")], str(out))
    with pytest.raises(CosineTrackDataError, match="an ensemble of 2 networks; the TorchScript export takes one"):
        StackedHourglassExport(**NET).load_state_dict(torch.load(out, weights_only=True))


@pytest.mark.parametrize(
    "background, flips, views", [("mean", False, None), ("mean", True, 4), ("votes", False, 2), ("votes", True, 8)]
)
def test_members_that_vote_become_views_of_the_clustering(tmp_path, background, flips, views):
    from cosinetrack.inference.segmenter import ScaledPairSegmenter

    for k in range(2):
        _member(tmp_path / f"m{k}.pt", k)
    out = tmp_path / "e.pt"
    combine_model_files([str(tmp_path / "m0.pt"), str(tmp_path / "m1.pt")], str(out), background=background)
    assert torch.load(out, weights_only=True)["network"]["background"] == background
    ensemble = load_weights(network_for_model(str(out)), str(out)).eval()
    assert ensemble.background == background
    segmenter = ScaledPairSegmenter(ensemble, (16, 16), {"min_samples": 5}, test_time_flips=flips)
    assert segmenter.cluster_kwargs.get("views") == views
    segmenter.push(torch.rand(1, 20, 18))
    labels = segmenter.push(torch.rand(1, 20, 18))  # 2 members x (flips) views of 4 channels split evenly
    assert labels.shape == (2, 20, 18)


def test_a_sure_member_outvotes_one_that_sees_a_cell_in_the_background():
    """Votes: a pixel is background where at least half of the members' views say so; the mean of a member
    that finds it background (similarity 1) and one that does not (similarity -0.2) is above the threshold of
    0.5 for neither rule on its own, so the two rules part exactly there."""
    from cosinetrack.clustering import cluster_embeddings

    d, h, w = 4, 12, 12
    bg0, bg1 = torch.eye(d)[0], torch.eye(d)[1]
    a = bg0[:, None, None].expand(d, h, w).clone()  # member A: all background
    b = bg1[:, None, None].expand(d, h, w).clone()  # member B: background, but a "cell" in the middle
    b[:, 4:8, 4:8] = (torch.eye(d)[2] - 0.2 * bg1)[:, None, None]
    merged = torch.cat([a, b]) / 2**0.5
    emb = torch.stack([merged, merged])  # the pair (2, 2 d, h, w)
    options = {"min_samples": 4, "background": "dominant", "background_threshold": 0.5, "min_size": 1}
    mean = cluster_embeddings(emb, **options)
    votes = cluster_embeddings(emb, **options, views=2)
    assert (mean[:, 4:8, 4:8] > 0).all() and (mean[:, :4] == 0).all()  # mean similarity 0.4: a cell
    assert (votes == 0).all()  # member A's vote is half of the views: background


@pytest.mark.parametrize("members", [1, 0, True, 2.0])
def test_an_ensemble_needs_two_or_more_members(members):
    with pytest.raises(ValueError, match="members must be an int >= 2"):
        EmbeddingEnsemble(members=members, **NET)


def test_an_unknown_background_rule_is_refused(tmp_path):
    with pytest.raises(ValueError, match="background must be one of"):
        EmbeddingEnsemble(members=2, background="max", **NET)
    _member(tmp_path / "m0.pt", 0)
    with pytest.raises(CosineTrackDataError, match="background: expected one of"):
        combine_model_files([str(tmp_path / "m0.pt")] * 2, str(tmp_path / "e.pt"), background="max")


def test_command_line_writes_the_ensemble_and_ends_a_bad_member_with_one_error_line(tmp_path):
    for k in range(2):
        _member(tmp_path / f"m{k}.pt", k)
    cmd = [sys.executable, "-m", "cosinetrack.workflows.combine", str(tmp_path / "m0.pt"), str(tmp_path / "m1.pt")]
    done = subprocess.run([*cmd, "--output", str(tmp_path / "e.pt")], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert "an ensemble of 2 networks" in done.stdout and (tmp_path / "e.pt").is_file()
    assert "Warning" not in done.stderr, done.stderr  # e.g. runpy's, were the package to import the module itself
    (tmp_path / "bad.pt").write_text("no")
    bad = [*cmd[:-1], str(tmp_path / "bad.pt"), "--output", str(tmp_path / "f.pt")]
    done = subprocess.run(bad, capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith(f"Error: {tmp_path / 'bad.pt'}: cannot read")


@pytest.mark.parametrize("background, flips, views", [("votes", True, 8), ("votes", False, 2), ("mean", True, 4)])
def test_leaf_segmentation_of_an_ensemble_clusters_with_its_views(tmp_path, monkeypatch, background, flips, views):
    import numpy as np

    import cosinetrack.apps.leaf.pipeline as leaf

    seen = []

    def spy(emb, **kwargs):
        seen.append((emb.shape[0], kwargs.get("views")))
        return torch.zeros(emb.shape[-2:], dtype=torch.int32)

    monkeypatch.setattr(leaf, "cluster_embeddings", spy)
    ensemble = EmbeddingEnsemble(members=2, background=background, **NET).eval()
    image = np.random.default_rng(0).normal(size=(1, 20, 22)).astype(np.float32)
    with torch.inference_mode():
        labels = leaf.segment_image_instances(ensemble, image, (16, 16), {"min_samples": 5}, test_time_flips=flips)
    assert labels.shape == (20, 22)
    assert seen == [((4 if flips else 1) * 2 * 4, views)]
