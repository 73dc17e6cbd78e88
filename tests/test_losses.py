"""Training losses against definitions written out independently of kornia."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity

from fnet_deploy.training.config import StageTwoConfig
from fnet_deploy.training.losses import (
    gradient_weights,
    reconstruction_loss,
    sobel_l1,
    spatial_gradient,
    ssim,
    stage_one_loss,
    stage_two_loss,
)

SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=torch.float64)
SOBEL_Y = SOBEL_X.T.contiguous()


def _images(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator, dtype=torch.float64)


def _sobel(x: torch.Tensor, border: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw Sobel responses by explicit 3x3 cross-correlation; ``border`` zero or replicate."""
    padded = F.pad(x, (1, 1, 1, 1), mode="constant" if border == "zero" else "replicate")
    gx = F.conv2d(padded, SOBEL_X.to(x.dtype)[None, None])
    gy = F.conv2d(padded, SOBEL_Y.to(x.dtype)[None, None])
    return gx, gy


def _ssim_wang(x: torch.Tensor, y: torch.Tensor, padding: int = 0) -> torch.Tensor:
    """Wang et al. 2004: 11x11 Gaussian (sigma 1.5, sum 1), K1 0.01, K2 0.03; valid positions
    (``padding=0``), or pytorch-ssim's every pixel over zero-padded images (``padding=5``)."""
    offsets = torch.arange(11, dtype=x.dtype) - 5
    g = torch.exp(-(offsets**2) / (2 * 1.5**2))
    window = torch.outer(g, g)
    window = (window / window.sum())[None, None]

    def blur(a: torch.Tensor) -> torch.Tensor:
        return F.conv2d(a, window, padding=padding)

    c1, c2 = 0.01**2, 0.03**2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    ssim_map = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return ssim_map.mean()


def test_spatial_gradient_is_normalised_sobel_with_replicated_border() -> None:
    x = _images((2, 1, 20, 24))
    gx, gy = _sobel(x, "replicate")
    grad = spatial_gradient(x)
    assert grad.shape == (2, 1, 2, 20, 24)
    torch.testing.assert_close(grad[:, :, 0], gx / 8, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad[:, :, 1], gy / 8, rtol=0, atol=1e-12)


def test_spatial_gradient_backward_matches_replicate_padding() -> None:
    # The border is built from slices (a fixed summation order on CUDA too); its gradient is
    # that of F.pad's replicate mode, corners collecting four contributions and edges two.
    x = _images((2, 1, 9, 11)).requires_grad_()
    weights = _images((2, 1, 2, 9, 11), seed=1)
    (spatial_gradient(x) * weights).sum().backward()
    reference = x.detach().clone().requires_grad_()
    gx, gy = _sobel(reference, "replicate")
    ((gx * weights[:, :, 0] + gy * weights[:, :, 1]) / 8).sum().backward()
    assert x.grad is not None and reference.grad is not None
    torch.testing.assert_close(x.grad, reference.grad, rtol=0, atol=1e-12)


def test_spatial_gradient_border_differs_from_zero_padding_only_on_the_outer_ring() -> None:
    # kornia replicates the border; a zero-padded Sobel sees a step to 0 outside the image.
    x = torch.full((1, 1, 12, 12), 0.5, dtype=torch.float64)
    grad = spatial_gradient(x)
    gx_zero, _ = _sobel(x, "zero")
    assert grad.abs().max() == 0
    assert gx_zero[..., 1:-1, 1:-1].abs().max() == 0
    assert gx_zero[..., :, 0].abs().min() > 0


def test_spatial_gradient_of_a_ramp_is_its_slope() -> None:
    ramp = torch.arange(16, dtype=torch.float64).repeat(10, 1)[None, None] * 0.05
    grad = spatial_gradient(ramp)
    torch.testing.assert_close(grad[0, 0, 0, :, 1:-1], torch.full((10, 14), 0.05, dtype=ramp.dtype))
    assert grad[0, 0, 1].abs().max() < 1e-12


def test_sobel_l1_is_zero_padded_sobel_everywhere() -> None:
    x = _images((3, 1, 17, 21), seed=1)
    gx, gy = _sobel(x, "zero")
    torch.testing.assert_close(sobel_l1(x), gx.abs() + gy.abs(), rtol=0, atol=1e-12)


def test_ssim_matches_wang_definition() -> None:
    x = _images((2, 1, 32, 40), seed=2)
    y = (0.6 * x + 0.4 * _images((2, 1, 32, 40), seed=3)).clamp(0, 1)
    torch.testing.assert_close(ssim(x, y, "valid"), _ssim_wang(x, y), rtol=0, atol=1e-12)
    x32, y32 = x.float(), y.float()
    torch.testing.assert_close(ssim(x32, y32, "valid"), _ssim_wang(x, y).float(), rtol=0, atol=2e-6)


def test_ssim_matches_scikit_image_gaussian_ssim() -> None:
    x = _images((1, 1, 40, 48), seed=4)
    y = (x + 0.1 * _images((1, 1, 40, 48), seed=5)).clamp(0, 1)
    reference = structural_similarity(
        x[0, 0].numpy(),
        y[0, 0].numpy(),
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert float(ssim(x, y, "valid")) == pytest.approx(reference, abs=1e-10)


def test_ssim_of_identical_images_is_one_and_of_inverted_ones_negative() -> None:
    x = _images((1, 1, 24, 24), seed=6)
    for positions in ("same", "valid"):
        assert float(ssim(x, x, positions)) == pytest.approx(1.0, abs=1e-12)
        assert float(ssim(x, 1 - x, positions)) < 0


def test_reconstruction_loss_of_a_shifted_image_is_the_shift() -> None:
    target = _images((2, 1, 16, 16), seed=8)
    assert float(reconstruction_loss(target + 0.1, target)) == pytest.approx(0.1, abs=1e-12)
    assert float(reconstruction_loss(target, target)) == 0.0


def test_stage_one_loss_sums_both_reconstructions() -> None:
    ir, vis = _images((2, 1, 16, 16), seed=9), _images((2, 1, 16, 16), seed=10)
    terms = stage_one_loss(ir, vis, ir + 0.1, vis - 0.2)
    assert float(terms.parts["rec_ir"]) == pytest.approx(0.1, abs=1e-12)
    assert float(terms.parts["rec_vis"]) == pytest.approx(0.2, abs=1e-12)
    assert float(terms.total) == pytest.approx(0.3, abs=1e-12)


def test_gradient_weights_share_of_sobel_magnitude() -> None:
    ir, vis = _images((2, 1, 16, 16), seed=11), _images((2, 1, 16, 16), seed=12) * 0.25
    gx, gy = _sobel(ir, "zero")
    mean_ir = float((gx.abs() + gy.abs()).mean())
    gx, gy = _sobel(vis, "zero")
    mean_vis = float((gx.abs() + gy.abs()).mean())
    w_ir, w_vis = gradient_weights(ir, vis)
    assert float(w_ir) == pytest.approx(mean_ir / (mean_ir + mean_vis), abs=1e-12)
    assert float(w_ir + w_vis) == pytest.approx(1.0, abs=1e-15)
    flat = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    assert [float(w) for w in gradient_weights(flat, flat)] == [0.5, 0.5]


def _authors_stage_two(ir: torch.Tensor, vis: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """The authors' stage-II loss (gargi884/FNet-MMIF models/loss_stage2.py, loss_ssim.py),
    written out again: their Sobel pair (d/dx, and d/dy as [[1, 2, 1], [0, 0, 0], [-1, -2, -1]])
    with one zero pixel of padding, |x| + |y|; batch-wide SSIM weights; pytorch-ssim."""
    kx = SOBEL_X[None, None]
    ky = torch.tensor([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]], dtype=torch.float64)

    def grad(a: torch.Tensor) -> torch.Tensor:
        return F.conv2d(a, kx, padding=1).abs() + F.conv2d(a, ky[None, None], padding=1).abs()

    g_ir, g_vis = grad(ir), grad(vis)
    w_ir = g_ir.mean() / (g_ir.mean() + g_vis.mean())
    w_vis = g_vis.mean() / (g_ir.mean() + g_vis.mean())
    intensity = F.l1_loss(f, torch.max(ir, vis))
    gradient = F.l1_loss(grad(f), torch.max(g_ir, g_vis))
    structure = w_ir * _ssim_wang(ir, f, padding=5) + w_vis * _ssim_wang(vis, f, padding=5)
    return 20 * intensity + 20 * gradient + 15 * (1 - structure)


def test_default_stage_two_loss_is_the_authors_formula_on_random_crops() -> None:
    for seed in range(3):
        ir, vis = _images((3, 1, 128, 128), seed=20 + seed), _images((3, 1, 128, 128), seed=30)
        fused = _images((3, 1, 128, 128), seed=40 + seed)
        got = stage_two_loss(ir, vis, fused).total
        torch.testing.assert_close(got, _authors_stage_two(ir, vis, fused), rtol=0, atol=1e-12)


def test_same_and_valid_ssim_differ_only_near_the_border() -> None:
    x, y = _images((1, 1, 64, 64), seed=50), _images((1, 1, 64, 64), seed=51)
    same, valid = ssim(x, y, "same"), ssim(x, y, "valid")
    torch.testing.assert_close(same, _ssim_wang(x, y, padding=5), rtol=0, atol=1e-12)
    torch.testing.assert_close(valid, _ssim_wang(x, y), rtol=0, atol=1e-12)
    assert float(same) != pytest.approx(float(valid), abs=1e-6)
    assert float(ssim(x, x, "same")) == pytest.approx(1.0, abs=1e-12)


def test_stage_two_loss_matches_its_definition() -> None:
    ir, vis = _images((2, 1, 24, 24), seed=13), _images((2, 1, 24, 24), seed=14)
    fused = (0.5 * ir + 0.5 * vis).requires_grad_(True)
    terms = stage_two_loss(ir, vis, fused, StageTwoConfig(ssim_positions="valid"))

    def sobel(a: torch.Tensor) -> torch.Tensor:
        gx, gy = _sobel(a, "zero")
        return gx.abs() + gy.abs()

    f = fused.detach()
    intensity = (f - torch.maximum(ir, vis)).abs().mean()
    gradient = (sobel(f) - torch.maximum(sobel(ir), sobel(vis))).abs().mean()
    w_ir = sobel(ir).mean() / (sobel(ir).mean() + sobel(vis).mean())
    structure = 1 - (w_ir * _ssim_wang(ir, f) + (1 - w_ir) * _ssim_wang(vis, f))
    expected = 20 * intensity + 20 * gradient + 15 * structure
    torch.testing.assert_close(terms.total.detach(), expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(terms.parts["ssim"].detach(), 15 * structure, rtol=0, atol=1e-10)
    terms.total.backward()
    assert fused.grad is not None and torch.isfinite(fused.grad).all()
    assert fused.grad.abs().sum() > 0


def test_stage_two_weights_are_configurable() -> None:
    ir, vis = _images((1, 1, 16, 16), seed=15), _images((1, 1, 16, 16), seed=16)
    fused = torch.maximum(ir, vis)
    default = stage_two_loss(ir, vis, fused)
    halved = stage_two_loss(
        ir, vis, fused, StageTwoConfig(intensity_weight=10, gradient_weight=10, ssim_weight=7.5)
    )
    assert float(default.parts["intensity"]) == 0.0
    torch.testing.assert_close(halved.total, default.total / 2)
    assert np.isfinite(float(default.total))
