"""The tap-GEMM convolutions equal PyTorch's convolution, forward and both gradients.

Every comparison is against a float64 run of the native convolution, with the float32 budget of
tests/precision.py (the native float32 run's own error on the same input), never a fixed
tolerance.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fnet_deploy.model import FNet, IFNet
from fnet_deploy.model.config import ModelConfig
from fnet_deploy.model.tap_conv import (
    TapConv2d,
    conv2d_tap,
    conv_form_of,
    eligible,
    set_conv_form,
)
from fnet_deploy.training.losses import stage_two_loss
from fnet_deploy.training.stage import InverseFusion
from tests.conftest import TINY
from tests.precision import assert_float32_accurate

SMALL = ModelConfig(filters=16, kernel_size=5, iterations=2)


def _forward_and_grads(
    fn: object, x: torch.Tensor, w: torch.Tensor, g: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = x.detach().clone().requires_grad_()
    w = w.detach().clone().requires_grad_()
    y = fn(x, w)  # type: ignore[operator]
    y.backward(g)
    assert x.grad is not None and w.grad is not None
    return y.detach(), x.grad, w.grad


def _native(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, w, padding=w.shape[-1] // 2)


@pytest.mark.parametrize(
    ("c_in", "c_out", "kernel", "batch"),
    [(64, 1, 9, 2), (64, 2, 9, 1), (1, 64, 9, 2), (2, 64, 9, 3), (8, 2, 3, 2), (2, 2, 5, 1)],
)
def test_tap_convolution_equals_float64_forward_and_gradients(
    c_in: int, c_out: int, kernel: int, batch: int
) -> None:
    gen = torch.Generator().manual_seed(c_in * 100 + c_out)
    x = torch.rand(batch, c_in, 23, 31, generator=gen)
    w = torch.randn(c_out, c_in, kernel, kernel, generator=gen) / kernel
    g = torch.randn(batch, c_out, 23, 31, generator=gen)
    tap = _forward_and_grads(conv2d_tap, x, w, g)
    base = _forward_and_grads(_native, x, w, g)
    ref = _forward_and_grads(_native, x.double(), w.double(), g.double())
    for name, cand, ref64, base32 in zip(
        ("output", "grad x", "grad w"), tap, ref, base, strict=True
    ):
        assert cand.dtype == torch.float32
        assert_float32_accurate(cand, ref64, base32, f"{c_in}->{c_out} k{kernel} {name}")


def test_tap_convolution_in_float64_matches_to_rounding() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 16, 19, 17, generator=gen, dtype=torch.float64)
    w = torch.randn(2, 16, 9, 9, generator=gen, dtype=torch.float64)
    g = torch.randn(2, 2, 19, 17, generator=gen, dtype=torch.float64)
    for got, want in zip(
        _forward_and_grads(conv2d_tap, x, w, g), _forward_and_grads(_native, x, w, g), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_a_shifted_or_unflipped_tap_would_be_caught() -> None:
    """The comparison is sharp: the native convolution with the kernel flipped (what a missing
    flip in the fold form computes) is far outside the float32 budget."""
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(1, 64, 16, 16, generator=gen)
    w = torch.randn(1, 64, 9, 9, generator=gen)
    ref = _native(x.double(), w.double())
    with pytest.raises(AssertionError, match="exceeds"):
        assert_float32_accurate(_native(x, w.flip(2, 3)), ref, _native(x, w), "flipped")


def test_set_conv_form_keeps_parameters_and_state_dict() -> None:
    torch.manual_seed(0)
    net = InverseFusion(FNet(TINY), IFNet(TINY))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    params = list(net.parameters())
    count = set_conv_form(net, "tap")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert count == len(convs) > 0
    assert all(isinstance(m, TapConv2d) for m in convs)
    assert conv_form_of(net) == "tap"
    assert list(net.parameters()) == params  # the same Parameter objects: an optimiser stays valid
    assert net.state_dict().keys() == before.keys()
    assert set_conv_form(net, "native") == count
    assert conv_form_of(net) == "native"
    assert not any(isinstance(m, TapConv2d) for m in net.modules())


def test_only_exact_shapes_are_eligible() -> None:
    assert eligible(nn.Conv2d(64, 1, 9, padding=4, bias=False))
    assert not eligible(nn.Conv2d(64, 1, 9, padding=4, bias=True))
    assert not eligible(nn.Conv2d(64, 1, 9, padding=0, bias=False))
    assert not eligible(nn.Conv2d(64, 1, 9, padding=4, stride=2, bias=False))
    assert not eligible(nn.Conv2d(64, 64, 9, padding=4, bias=False))
    assert not eligible(nn.Conv2d(64, 2, 4, padding=2, bias=False))


def test_fnet_in_tap_form_trains_as_the_native_form() -> None:
    """A whole stage-II loss and its gradients in the tap form against float64."""
    torch.manual_seed(3)
    native = FNet(SMALL)
    tap = copy.deepcopy(native)
    set_conv_form(tap, "tap")
    ref = copy.deepcopy(native).double()
    gen = torch.Generator().manual_seed(4)
    ir = torch.rand(2, 1, 40, 36, generator=gen)
    vis = torch.rand(2, 1, 40, 36, generator=gen)

    def loss_and_grads(model: nn.Module, dtype: torch.dtype) -> list[torch.Tensor]:
        a, b = ir.to(dtype), vis.to(dtype)
        loss = stage_two_loss(a, b, model(a, b)).total
        grads = torch.autograd.grad(loss, list(model.parameters()))
        return [loss.detach().reshape(1), *grads]

    for index, (cand, ref64, base32) in enumerate(
        zip(
            loss_and_grads(tap, torch.float32),
            loss_and_grads(ref, torch.float64),
            loss_and_grads(native, torch.float32),
            strict=True,
        )
    ):
        assert_float32_accurate(cand, ref64, base32, f"term {index}")
