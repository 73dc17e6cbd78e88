"""VIF: Sheikh and Bovik's multi-scale pixel-domain visual information fidelity, per source."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from fnet_deploy.metrics.inputs import Convention, as_gray, as_triple, check_convention

VIF_SCALES = 4
VIF_NOISE_VARIANCE = 2.0
"""sigma_n^2, the variance of the visual (HVS) noise added to both channels."""
_EPS = 1e-10


def _window(scale: int) -> np.ndarray:
    """1-D factor of the scale's normalised Gaussian window, N = 2^(5 - scale) + 1, sigma N / 5."""
    size = 2 ** (VIF_SCALES + 1 - scale) + 1
    sigma = size / 5.0
    x = np.arange(size) - (size - 1) / 2.0
    w = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return w / w.sum()


def _filter_valid(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable filtering with the outer product of ``window``, keeping only the 'valid' part."""
    radius = len(window) // 2
    height, width = image.shape[0] - 2 * radius, image.shape[1] - 2 * radius
    if height <= 0 or width <= 0:
        return np.empty((max(height, 0), max(width, 0)))
    rows = ndimage.correlate1d(image, window, axis=0)[radius : radius + height]
    return ndimage.correlate1d(rows, window, axis=1)[:, radius : radius + width]


def vifp(reference: np.ndarray, distorted: np.ndarray) -> float:
    """Multi-scale pixel-domain VIF of ``distorted`` against ``reference`` (one pair).

    Sheikh, Bovik, "Image information and visual quality", IEEE Trans. Image Process. 15(2), 2006,
    in the pixel-domain multi-scale form of their ``vifp_mscale`` code: 4 scales; at scale s a
    Gaussian window of N = 2^(5 - s) + 1 pixels, sigma N / 5, gives local means, variances and the
    covariance ('valid' positions only); from scale 2 on, both images are first low-passed with that
    window and subsampled by 2. With the local gain g = sigma_RD / sigma_R^2 and the distortion
    variance sigma_V^2 = sigma_D^2 - g sigma_RD (negative gains set to 0, with sigma_V^2 =
    sigma_D^2), VIF = sum log10(1 + g^2 sigma_R^2 / (sigma_V^2 + sigma_n^2)) /
    sum log10(1 + sigma_R^2 / sigma_n^2) with sigma_n^2 = 2, summed over all positions and scales
    (base-10 logs; the base cancels).

    Both images H x W in [0, 255], both sides at least 17. Range [0, inf): 1 for an undistorted
    image, below 1 for information loss, above 1 for a contrast-enhanced one. 1 when the reference
    is constant (0 / 0).
    """
    r = as_gray(reference, "reference")
    d = as_gray(distorted, "distorted")
    if r.shape != d.shape:
        raise ValueError(f"reference {r.shape} and distorted {d.shape} must have the same shape")
    if min(r.shape) < 2**VIF_SCALES + 1:
        raise ValueError(f"VIF needs images of at least 17 x 17 pixels, got {r.shape}")
    numerator = 0.0
    denominator = 0.0
    for scale in range(1, VIF_SCALES + 1):
        window = _window(scale)
        if scale > 1:
            r = _filter_valid(r, window)[::2, ::2]
            d = _filter_valid(d, window)[::2, ::2]
        mu_r = _filter_valid(r, window)
        mu_d = _filter_valid(d, window)
        var_r = np.maximum(_filter_valid(r * r, window) - mu_r * mu_r, 0.0)
        var_d = np.maximum(_filter_valid(d * d, window) - mu_d * mu_d, 0.0)
        cov = _filter_valid(r * d, window) - mu_r * mu_d

        gain = cov / (var_r + _EPS)
        var_v = var_d - gain * cov
        flat_r = var_r < _EPS
        gain = np.where(flat_r, 0.0, gain)
        var_v = np.where(flat_r, var_d, var_v)
        var_r = np.where(flat_r, 0.0, var_r)
        flat_d = var_d < _EPS
        gain = np.where(flat_d, 0.0, gain)
        var_v = np.where(flat_d, 0.0, var_v)
        negative = gain < 0
        var_v = np.where(negative, var_d, var_v)
        gain = np.where(negative, 0.0, gain)
        var_v = np.maximum(var_v, _EPS)

        numerator += float(
            np.sum(np.log10(1.0 + gain * gain * var_r / (var_v + VIF_NOISE_VARIANCE)))
        )
        denominator += float(np.sum(np.log10(1.0 + var_r / VIF_NOISE_VARIANCE)))
    if denominator == 0.0:
        return 1.0
    return numerator / denominator


def vif(
    fused: np.ndarray, ir: np.ndarray, vis: np.ndarray, convention: Convention = "paper"
) -> float:
    """VIF of the fused image against both sources, each source taken as the reference.

    Per source, ``vifp(source, fused)``: Sheikh and Bovik's multi-scale pixel-domain VIF (see
    ``vifp``; 4 scales, Gaussian windows of 2^(5 - s) + 1 pixels with sigma N / 5, sigma_n^2 = 2,
    base-10 logs). This is the "VIFF" of the CDDFuse evaluator, not the fusion-specific VIFF of
    Han, Cai, Cao, Xu (Information Fusion 14(2), 2013), which is a different metric.

    - ``paper``: VIF(A, F) + VIF(B, F) (the CDDFuse evaluator). Typical range [0, 2].
    - ``standard``: (VIF(A, F) + VIF(B, F)) / 2, on the scale of a single VIF. Typical range [0, 1].

    All images H x W in [0, 255], both sides at least 17. Higher is better.
    """
    convention = check_convention(convention)
    f, a, b = as_triple(fused, ir, vis)
    total = vifp(a, f) + vifp(b, f)
    return total if convention == "paper" else total / 2.0
