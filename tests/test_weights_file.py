"""Weights files: the published checkpoint (strict, renamed) and our safetensors format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fnet_deploy.helpers.errors import CheckpointError
from fnet_deploy.model import FNet, ModelConfig, load_fnet, save_fnet
from fnet_deploy.model.weights import (
    official_key_to_ours,
    official_to_ours,
    packaged_weights,
    resolve_weights,
)

SMALL = ModelConfig(filters=4, kernel_size=3, iterations=2)


def published_layout(model: FNet) -> dict[str, torch.Tensor]:
    """``model``'s tensors under the published checkpoint's key names (the mapping, inverted)."""
    per_block = ["w_ro", "b_ro", "w_theta", "b_theta"]
    per_block += ["x0_block.conv_in.weight", "x1_block.conv_in.weight"]
    per_block += [f"x1_block.basic_layer.ch_{d}.weight" for d in ("down", "up")]
    for i in range(model.config.iterations - 1):
        per_block.append(f"IM.{i}.conv_in.weight")
        per_block += [
            f"IM.{i}.basic_layer{n}.ch_{d}.weight" for n in (1, 2) for d in ("down", "up")
        ]
    keys = [f"{net}.{name}" for net in ("net_u", "net_v", "net_z") for name in per_block]
    keys += ["conv_u.weight", "conv_v.weight", *(f"decoder.conv_{n}.weight" for n in (1, 2, 3))]
    ours = model.state_dict()
    layout = {key: ours[official_key_to_ours(key)].clone() for key in keys}
    assert len(layout) == len(ours)
    return layout


def test_every_published_key_maps_onto_a_distinct_model_tensor(official_weights: Path) -> None:
    published = torch.load(official_weights, map_location="cpu", weights_only=True)
    assert len(published) == 74
    assert set(published) == set(published_layout(FNet()))
    renamed = official_to_ours(published)
    ours = FNet().state_dict()
    assert set(renamed) == set(ours)
    for key, value in renamed.items():
        assert value.shape == ours[key].shape, key


@pytest.mark.parametrize(
    ("published", "ours"),
    [
        ("net_u.w_ro", "unique_ir.w_rho"),
        ("net_v.b_theta", "unique_vis.b_theta"),
        ("net_z.x0_block.conv_in.weight", "common.steps.0.encode.weight"),
        ("net_u.x1_block.basic_layer.ch_down.weight", "unique_ir.steps.1.prev.down.weight"),
        ("net_u.IM.0.conv_in.weight", "unique_ir.steps.2.encode.weight"),
        ("net_v.IM.2.basic_layer1.ch_up.weight", "unique_vis.steps.4.prev.up.weight"),
        ("net_z.IM.1.basic_layer2.ch_down.weight", "common.steps.3.prev2.down.weight"),
        ("conv_u.weight", "proj_ir.weight"),
        ("decoder.conv_1.weight", "dec_ir.weight"),
        ("decoder.conv_2.weight", "dec_common.weight"),
        ("decoder.conv_3.weight", "dec_vis.weight"),
    ],
)
def test_key_mapping_table(published: str, ours: str) -> None:
    assert official_key_to_ours(published) == ours


@pytest.mark.parametrize("bad", ["net_q.w_ro", "net_u.IM.0.conv_in.ch_up.weight", "head.weight"])
def test_unknown_published_keys_are_rejected(bad: str) -> None:
    with pytest.raises(KeyError):
        official_key_to_ours(bad)


def test_published_checkpoint_loads_strictly(official_weights: Path) -> None:
    model, info = load_fnet(official_weights)
    assert info.source_format == "published-pth"
    assert info.sha256 == "46665448c3012d0466c0a7c7ee46d48da7f1e59c58a98368801a948da715afec"
    assert info.config == ModelConfig()
    published = torch.load(official_weights, map_location="cpu", weights_only=True)
    assert torch.equal(
        model.common.steps[3].prev2.up.weight, published["net_z.IM.1.basic_layer2.ch_up.weight"]
    )
    assert torch.equal(model.unique_vis.w_rho, published["net_v.w_ro"])
    assert not model.training


def test_safetensors_round_trip_keeps_weights_and_metadata(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = FNet(SMALL)
    path = tmp_path / "w.safetensors"
    save_fnet(path, model, luminance="gray", provenance="unit test", extra={"recipe": {"lr": 1e-4}})
    assert path.read_bytes()[:2] != b"PK"  # not a pickle/zip archive
    loaded, info = load_fnet(path)
    assert info.config == SMALL
    assert info.luminance == "gray"
    assert info.provenance == "unit test"
    assert info.metadata["recipe"] == {"lr": 1e-4}
    assert info.metadata["package_version"]
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert not list(tmp_path.glob(".*tmp"))


def write_bad(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found") as err:
        load_fnet(tmp_path / "nope.pth")
    assert "nope.pth" in str(err.value)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.pth", b"", "empty file"),
        ("garbage.pth", b"this is not a checkpoint at all", "not a weights file"),
        ("cut.pth", b"PK\x03\x04 truncated zip", "not a readable PyTorch checkpoint"),
        ("fake.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all", "corrupt"),
    ],
)
def test_corrupt_files(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        load_fnet(write_bad(tmp_path, name, content))


def test_published_layout_of_trained_weights_loads_back(
    tmp_path: Path, default_model: FNet
) -> None:
    torch.save(published_layout(default_model), tmp_path / "renamed.pth")
    model, info = load_fnet(tmp_path / "renamed.pth")
    assert info.source_format == "published-pth" and info.config == default_model.config
    expected = default_model.state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in model.state_dict().items())


def test_truncated_published_checkpoint(tmp_path: Path) -> None:
    torch.save(published_layout(FNet(SMALL)), tmp_path / "whole.pth")
    data = (tmp_path / "whole.pth").read_bytes()
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_fnet(write_bad(tmp_path, "cut.pth", data[: len(data) // 2]))


def test_mismatched_checkpoints(tmp_path: Path, default_model: FNet) -> None:
    published = published_layout(default_model)
    missing = dict(published)
    del missing["decoder.conv_3.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="1 missing"):
        load_fnet(tmp_path / "missing.pth")

    reshaped = dict(published)
    reshaped["conv_u.weight"] = torch.zeros(1, 64, 7, 7)
    torch.save(reshaped, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match="has shape"):
        load_fnet(tmp_path / "shape.pth")

    nan = dict(published)
    nan["net_u.w_theta"] = torch.tensor([float("nan")])
    torch.save(nan, tmp_path / "nan.pth")
    with pytest.raises(CheckpointError, match="NaN"):
        load_fnet(tmp_path / "nan.pth")

    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not an FNet checkpoint"):
        load_fnet(tmp_path / "other.pth")


def test_safetensors_without_our_metadata_is_rejected(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="metadata"):
        load_fnet(tmp_path / "plain.safetensors")


def test_safetensors_with_wrong_config_is_rejected(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in FNet(SMALL).state_dict().items()}
    meta = {"format": "fnet-deploy/1", "model": "fnet", "config": ModelConfig().to_dict()}
    save_file(state, str(tmp_path / "w.safetensors"), metadata={"fnet_deploy": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="do not match FNet: 30 missing"):
        load_fnet(tmp_path / "w.safetensors")


def test_checkpoint_with_python_objects_is_refused_without_unsafe_advice(tmp_path: Path) -> None:
    torch.save({"weights": FNet(SMALL).state_dict(), "note": object}, tmp_path / "pickled.pth")
    with pytest.raises(CheckpointError, match="holds Python objects") as err:
        load_fnet(tmp_path / "pickled.pth")
    assert "weights_only" not in str(err.value)


def test_shipped_default_weights_came_from_the_trainer() -> None:
    path = packaged_weights()
    assert path is not None, "the package ships assets/fnet_default.safetensors"
    assert resolve_weights(None) == path
    model, info = load_fnet(path)
    assert isinstance(model, FNet)
    assert info.config == ModelConfig()
    assert info.provenance.startswith("fnet-deploy train: stages I+II")
    training = info.metadata["training"]
    assert training["stage1"]["total"] > 0
    assert training["stage2"]["total"] > 0
    assert training["stage2"]["data"] == ["MSRS_train", "RoadScene_train"]
    assert training["stage2"]["config"]["model"] == info.metadata["config"]
