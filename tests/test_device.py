"""``--device`` names: one parser for every backend (fnet_deploy.backends.device)."""

from __future__ import annotations

import pytest
import torch

from fnet_deploy.backends.device import Device, cuda_index, parse_device, torch_device
from fnet_deploy.helpers.errors import FnetError


@pytest.mark.parametrize(
    ("text", "kinds", "expected"),
    [
        ("cpu", ("cpu", "cuda"), Device("cpu")),
        (" CUDA ", ("cpu", "cuda"), Device("cuda", 0)),
        ("cuda:3", ("cpu", "cuda"), Device("cuda", 3)),
        ("ort-trt:1", ("cpu", "cuda", "ort-trt"), Device("ort-trt", 1)),
    ],
)
def test_parse_device(text: str, kinds: tuple[str, ...], expected: Device) -> None:
    assert parse_device(text, kinds) == expected


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("gpu", ("cpu", "cuda")),
        ("cpu:0", ("cpu", "cuda")),
        ("cuda:", ("cpu", "cuda")),
        ("cuda:-1", ("cpu", "cuda")),
        ("cuda:x", ("cpu", "cuda")),
        ("ort-trt", ("cpu", "cuda")),
        ("mps", ("cpu", "cuda")),
        ("cpu", ("cuda",)),
    ],
)
def test_unknown_devices_are_one_line_naming_the_option(text: str, kinds: tuple[str, ...]) -> None:
    with pytest.raises(FnetError, match=rf"^--device '{text}': unknown device \(") as err:
        parse_device(text, kinds)
    assert "\n" not in str(err.value)


def test_device_names_round_trip() -> None:
    assert str(parse_device("cuda")) == "cuda:0"
    assert str(parse_device("cpu")) == "cpu"
    assert not parse_device("cpu").is_gpu and parse_device("cuda:1").is_gpu


def test_torch_device_checks_the_machine() -> None:
    assert torch_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        assert torch_device("cuda") == torch.device("cuda", 0)
    else:
        with pytest.raises(FnetError, match="CUDA is not available on this machine"):
            torch_device("cuda")


def test_tensorrt_takes_cuda_only() -> None:
    assert cuda_index("cuda:2") == 2
    with pytest.raises(FnetError, match="TensorRT runs on cuda"):
        cuda_index("cpu")
