"""Statistical and structural metrics: SD of the fused image; SSIM, SCD and PSNR against sources."""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from fnet_deploy.metrics.inputs import Convention, as_gray, as_triple, check_convention

PEAK = 255.0
"""Peak signal value of uint8-range images (``standard`` PSNR, ``standard`` SSIM data range)."""

PAPER_SSIM_DATA_RANGE = 2.0
"""The data range old scikit-image versions assumed for any float image (dtype range [-1, 1])."""


def std_dev(fused: np.ndarray, convention: Convention = "paper") -> float:
    """SD: standard deviation of the fused image's grey values (population form, divide by H W).

    The contrast measure of fusion surveys (e.g. Ma, Ma, Li, "Infrared and visible image fusion
    methods and applications: a survey", Information Fusion 45, 2019). Both conventions are the
    same.
    ``fused``: H x W in [0, 255]. Range [0, 127.5]; 0 for a constant image. Higher is better.
    """
    check_convention(convention)
    return float(np.std(as_gray(fused, "fused")))


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two images; 0 when either is constant (no linear relation)."""
    dx = x - x.mean()
    dy = y - y.mean()
    denominator = float(np.sqrt(np.sum(dx * dx) * np.sum(dy * dy)))
    if denominator == 0.0:
        return 0.0
    return float(np.sum(dx * dy)) / denominator


def scd(
    fused: np.ndarray, ir: np.ndarray, vis: np.ndarray, convention: Convention = "paper"
) -> float:
    """SCD: sum of the correlations of differences, corr(F - B, A) + corr(F - A, B).

    Aslantas, Bendes, "A new image quality metric for image fusion: the sum of the correlations of
    differences", AEU Int. J. Electron. Commun. 69(12), 2015. F - B is taken as what F received
    from A, and F - A as what it received from B; corr is the Pearson correlation over all pixels,
    defined here as 0 when one of the two images is constant. Both conventions are the same.
    All images H x W in [0, 255]. Range [-2, 2]. Higher is better.
    """
    check_convention(convention)
    f, a, b = as_triple(fused, ir, vis)
    return _correlation(f - b, a) + _correlation(f - a, b)


def _ssim(x: np.ndarray, y: np.ndarray, convention: Convention) -> float:
    if convention == "paper":
        value = structural_similarity(
            x.astype(np.float32), y.astype(np.float32), data_range=PAPER_SSIM_DATA_RANGE
        )
    else:
        value = structural_similarity(
            x, y, data_range=PEAK, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
    return float(value)


def ssim(
    fused: np.ndarray, ir: np.ndarray, vis: np.ndarray, convention: Convention = "paper"
) -> float:
    """SSIM of the fused image against both sources (Wang, Bovik, Sheikh, Simoncelli, 2004).

    Wang et al., "Image quality assessment: from error visibility to structural similarity", IEEE
    Trans. Image Process. 13(4), 2004, computed by scikit-image's ``structural_similarity`` with
    K1 = 0.01, K2 = 0.03, averaged over the window positions that fit inside the image.

    - ``paper``: SSIM(F, A) + SSIM(F, B), each with a 7 x 7 uniform window, sample covariances and
      data range L = 2 (what old scikit-image assumed for float images in 0..255, as the CDDFuse
      evaluator passes them; C1 and C2 become negligible), computed in float32 like the
      evaluator (it changes the value by up to about 2e-5). Range [-2, 2].
    - ``standard``: (SSIM(F, A) + SSIM(F, B)) / 2, each as Wang et al. define it: 11 x 11 Gaussian
      window with sigma 1.5, population covariances, data range L = 255. Range [-1, 1].

    All images H x W in [0, 255], both sides at least 7 (paper) or 11 (standard) pixels.
    Higher is better.
    """
    convention = check_convention(convention)
    f, a, b = as_triple(fused, ir, vis)
    total = _ssim(f, a, convention) + _ssim(f, b, convention)
    return total if convention == "paper" else total / 2.0


def psnr(
    fused: np.ndarray, ir: np.ndarray, vis: np.ndarray, convention: Convention = "paper"
) -> float:
    """PSNR of the fused image against both sources, 10 log10(peak^2 / MSE), in dB.

    MSE = (MSE(A, F) + MSE(B, F)) / 2, the mean squared error averaged over the two sources
    (Jagalingam, Hegde, "A review of quality metrics for fused image", Aquatic Procedia 4, 2015).

    - ``paper``: peak = max(F), the fused image's own maximum (the CDDFuse evaluator).
    - ``standard``: peak = 255, the uint8 maximum.

    All images H x W in [0, 255]. +inf when F equals both sources. Higher is better.
    """
    convention = check_convention(convention)
    f, a, b = as_triple(fused, ir, vis)
    mse = (np.mean((a - f) ** 2) + np.mean((b - f) ** 2)) / 2.0
    peak = float(f.max()) if convention == "paper" else PEAK
    if mse == 0.0:
        return float("inf")
    if peak == 0.0:
        return float("-inf")
    return float(10.0 * np.log10(peak * peak / mse))
