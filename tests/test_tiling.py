"""Tiled fusion equals whole-image fusion."""

from __future__ import annotations

import torch

from fnet_deploy.model import FNet, ModelConfig
from fnet_deploy.model.tiling import tiled_forward
from tests.precision import assert_float32_accurate, float32_and_float64_runs


def test_tiled_equals_untiled_in_float64() -> None:
    torch.manual_seed(0)
    model = FNet(ModelConfig(filters=4, kernel_size=3, iterations=2)).double().eval()
    ir, vis = (
        torch.rand(1, 1, 45, 37, dtype=torch.float64),
        torch.rand(1, 1, 45, 37, dtype=torch.float64),
    )
    with torch.no_grad():
        whole = model(ir, vis)
        tiled = tiled_forward(model, ir, vis, tile=16, margin=model.receptive_radius)
        short = tiled_forward(model, ir, vis, tile=16, margin=model.receptive_radius - 4)
    assert torch.allclose(tiled, whole, atol=1e-12, rtol=0)
    assert not torch.allclose(short, whole, atol=1e-6)


def test_tiled_equals_untiled_for_the_published_architecture(default_model: FNet) -> None:
    torch.manual_seed(1)
    model = default_model
    ir, vis = torch.rand(1, 1, 24, 240), torch.rand(1, 1, 24, 240)
    whole, reference64 = float32_and_float64_runs(model, ir, vis)
    with torch.no_grad():
        tiled = tiled_forward(model, ir, vis, tile=64, margin=model.receptive_radius)
    assert model.receptive_radius == 80
    assert_float32_accurate(tiled, reference64, whole, "tiled run")
