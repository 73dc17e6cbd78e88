import math

import pytest
import torch

from fnet_deploy.model.threshold import smooth_l0, soft_l1


def exp_form(
    x: torch.Tensor, theta: float, gamma: float = 100.0, alpha: float = 0.1
) -> torch.Tensor:
    return torch.sign(x) * (x.abs() - alpha * theta) / (1 + torch.exp(-gamma * (x.abs() - theta)))


def test_smooth_l0_equals_the_papers_exp_form_in_float64() -> None:
    x = torch.linspace(-2, 2, 4001, dtype=torch.float64)
    theta = torch.tensor(0.3, dtype=torch.float64)
    assert torch.allclose(smooth_l0(x, theta), exp_form(x, 0.3), atol=1e-15, rtol=0)


def test_smooth_l0_hand_values() -> None:
    theta = torch.tensor(0.5, dtype=torch.float64)
    x = torch.tensor([0.5, -0.5, 0.0, 3.0], dtype=torch.float64)
    out = smooth_l0(x, theta)
    # at |x| = theta the gate is exactly one half: (0.5 - 0.05) / 2
    assert out[0].item() == pytest.approx(0.225, abs=1e-15)
    assert out[1].item() == pytest.approx(-0.225, abs=1e-15)
    assert out[2].item() == 0.0
    # far above theta the gate is open: x - alpha * theta
    assert out[3].item() == pytest.approx(3.0 - 0.05, abs=1e-12)


def test_smooth_l0_is_odd_and_nearly_zero_below_threshold() -> None:
    x = torch.linspace(-1, 1, 201, dtype=torch.float64)
    theta = torch.tensor(0.4, dtype=torch.float64)
    out = smooth_l0(x, theta)
    assert torch.allclose(out, -smooth_l0(-x, theta))
    below = x.abs() < 0.3
    assert out[below].abs().max().item() < 0.4 * math.exp(-100 * 0.1) * 1.01


def test_smooth_l0_does_not_overflow_in_float16() -> None:
    x = torch.tensor([0.0, 1e-4, -1e-3, 0.05, 10.0, -60000.0], dtype=torch.float16)
    theta = torch.tensor(0.2, dtype=torch.float16)
    # the exp form overflows here: exp(100 * 0.2) = 4.8e8 > float16 max
    assert torch.isinf(torch.exp(-100 * (x.abs() - theta))[0])
    out = smooth_l0(x, theta)
    assert torch.isfinite(out).all()
    assert out[4].item() == pytest.approx(10.0 - 0.02, abs=1e-2)


def test_soft_l1_values() -> None:
    x = torch.tensor([-2.0, -0.5, 0.0, 0.25, 1.5])
    out = soft_l1(x, torch.tensor(0.5))
    assert out.tolist() == [-1.5, 0.0, 0.0, 0.0, 1.0]
