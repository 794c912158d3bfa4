"""MONAI's ``ckpt_export`` and ``verify_net_in_out`` on every bundle (``configs/export.json`` overlay).

Run in-process (``monai.bundle.scripts``) from the repository root, as the README's commands do, on a
model file saved from a tiny network of the bundle's own ``network_def``: the TorchScript file must give
the eager network's last stack (a clip and frame-by-frame streaming), carry the bundle's metadata and
configs, and fit the bundle's ``network_data_format``. Everything is written under ``tmp_path``.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO_ROOT
from monai.bundle import ConfigParser
from monai.bundle.scripts import ckpt_export, verify_net_in_out

from cosinetrack.errors import CosineTrackDataError
from cosinetrack.networks.export import StackedHourglassExport
from cosinetrack.networks.stacked import RecurrentStackedHourglass
from cosinetrack.workflows.checkpoint import network_settings

# MONAI 1.6's ckpt_export is built on TorchScript, which torch 2.13 marks deprecated
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")

BUNDLES = ["lv_mri", "leaf", "cell"]
TINY = {"num_levels": 3, "num_filters": 4}


@pytest.fixture(autouse=True)
def _repo_root_single_thread(monkeypatch):
    """Bundle macros (``%configs/...``) are relative to the working directory: run from the repository root."""
    monkeypatch.chdir(REPO_ROOT)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _files(bundle: str) -> tuple[str, list[str]]:
    return f"bundles/{bundle}/metadata.json", [f"bundles/{bundle}/train.json", "configs/export.json"]


def _training_network(bundle: str, seed: int = 0, **overrides) -> RecurrentStackedHourglass:
    """The bundle's training ``network_def`` (train.json alone), tiny, with non-trivial gates."""
    parser = ConfigParser()
    parser.read_config(f"bundles/{bundle}/train.json")
    for k, v in {**TINY, **overrides}.items():
        parser[k] = v
    torch.manual_seed(seed)
    net = parser.get_parsed_content("network_def")
    assert type(net) is RecurrentStackedHourglass  # training keeps the fused network
    with torch.no_grad():  # the ConvGRU gate kernels start at zero: make the recurrence matter
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net.eval()


def _save(net: torch.nn.Module, path) -> str:
    torch.save({"model": net.state_dict(), "network": network_settings(net)}, path)
    return str(path)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_ckpt_export_matches_eager_and_verify_net_in_out(bundle, tmp_path):
    meta_file, config_file = _files(bundle)
    meta = json.loads((REPO_ROOT / meta_file).read_text())["network_data_format"]
    image, pred = meta["inputs"]["image"], meta["outputs"]["pred"]
    net = _training_network(bundle)
    assert image["num_channels"] == net.in_channels and pred["num_channels"] == net.out_channels
    clip = len(image["spatial_shape"]) == 3  # (B, C, T, H, W) for the video bundles, else (B, C, H, W)
    assert clip == (bundle != "leaf") and len(pred["spatial_shape"]) == len(image["spatial_shape"])

    ts_file = tmp_path / "model.ts"
    ckpt_export(
        "network_def",
        filepath=str(ts_file),
        ckpt_file=_save(net, tmp_path / "model.pt"),
        meta_file=meta_file,
        config_file=config_file,
        **TINY,
    )
    extra = {"metadata.json": "", "train.json": "", "export.json": ""}
    ts = torch.jit.load(str(ts_file), _extra_files=extra)
    assert json.loads(extra["metadata.json"])["network_data_format"] == meta
    assert json.loads(extra["export.json"])["network_def#_target_"] == "cosinetrack.networks.StackedHourglassExport"

    torch.manual_seed(1)
    frames = torch.randn(2, 3, net.in_channels, 12, 20)  # (B, T, C, H, W), H and W not multiples of 4
    with torch.no_grad():
        if clip:
            expected = net(frames)[-1]  # (B, T, C_out, H, W)
            out = ts(frames.transpose(1, 2))  # (B, C, T, H, W)
            assert out.shape == (2, net.out_channels, 3, 12, 20)
            torch.testing.assert_close(out.transpose(1, 2), expected, rtol=1e-4, atol=1e-5)
        else:
            expected = net(frames[:, 0])[-1]  # (B, C_out, H, W)
            out = ts(frames[:, 0])
            torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
        state: list[torch.Tensor] = []
        eager_state = None
        for t in range(frames.shape[1]):  # streaming, as inference runs a video
            out, state = ts.step(frames[:, t], state)
            ref, eager_state = net.step(frames[:, t], eager_state)
            torch.testing.assert_close(out, ref[-1], rtol=1e-4, atol=1e-5)
        assert len(state) == (net.num_stacks * net.num_levels if net.recurrent else 0)

    verify_net_in_out("network_def", meta_file=meta_file, config_file=config_file, device="cpu", any=2, **TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.ts"]


@pytest.mark.parametrize("recurrent", [True, False])
def test_export_twin_has_the_training_networks_weights(recurrent):
    net = RecurrentStackedHourglass(2, 5, num_stacks=3, recurrent=recurrent, **TINY)
    twin = StackedHourglassExport.from_network(net)
    assert twin.state_dict().keys() == net.state_dict().keys()
    x = torch.randn(1, 2, 2, 9, 8)  # (B, C, T, H, W)
    with torch.no_grad():
        torch.testing.assert_close(twin(x).transpose(1, 2), net(x.transpose(1, 2))[-1], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\) or \(B, C, H, W\) with C = 2"):
        twin(torch.randn(1, 1, 2, 8, 8))
    if recurrent:
        _, state = twin.step(x[:, :, 0], [])
        with pytest.raises(ValueError, match="state does not match the input"):
            twin.step(x[:, :, 0, :4], state)


def test_ckpt_export_key_in_ckpt_and_mismatched_settings(tmp_path):
    meta_file, config_file = _files("cell")
    ckpt = _save(_training_network("cell"), tmp_path / "model.pt")
    # MONAI's nested-checkpoint option reads the weights only
    ckpt_export(
        "network_def",
        filepath=str(tmp_path / "a.ts"),
        ckpt_file=ckpt,
        meta_file=meta_file,
        config_file=config_file,
        key_in_ckpt="model",
        **TINY,
    )
    assert (tmp_path / "a.ts").is_file()
    # without the overrides the model was trained with: the stored settings name the fix
    with pytest.raises(CosineTrackDataError, match="num_filters=4 .this network: 8.; run with --num_filters 4"):
        ckpt_export(
            "network_def",
            filepath=str(tmp_path / "b.ts"),
            ckpt_file=ckpt,
            meta_file=meta_file,
            config_file=config_file,
            num_levels=3,
            num_filters=8,
        )
    assert not (tmp_path / "b.ts").exists()
