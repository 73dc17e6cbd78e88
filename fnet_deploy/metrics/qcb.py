"""Qcb: Chen and Blum's human-perception-based fusion metric, as the VIFB benchmark computes it."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from fnet_deploy.metrics.inputs import Convention, as_triple, check_convention

# Contrast sensitivity function (difference of Gaussians in frequency, Mannos-Sakrison-like fit).
CSF_F0, CSF_F1, CSF_A = 15.3870, 1.3456, 0.7622
CSF_CYCLES_DIVISOR = 30.0
"""Frequencies are scaled by (image side / 30), the DoG1 setting of the reference code."""
# Local band-limited contrast: Gaussians with these sigmas on a 31 x 31 support (not normalised).
CONTRAST_SIGMAS = (2.0, 4.0)
CONTRAST_RADIUS = 15
# Contrast masking k C^p / (h C^q + Z).
MASK_K, MASK_H, MASK_P, MASK_Q, MASK_Z = 1.0, 1.0, 3.0, 2.0, 1e-4


def _normalise(image: np.ndarray) -> np.ndarray:
    """Stretch to [0, 255] and round half away from zero (MATLAB ``round``)."""
    low, high = image.min(), image.max()
    return np.floor((image - low) / (high - low) * 255.0 + 0.5)


def _frequency_grid(size: int) -> np.ndarray:
    """MATLAB ``freqspace`` for one axis: (k - floor(size / 2)) * 2 / size, k = 0..size-1."""
    return (np.arange(size) - size // 2) * (2.0 / size)


def _csf(shape: tuple[int, int]) -> np.ndarray:
    """CSF filter on the unshifted FFT grid of an image of ``shape``."""
    height, width = shape
    v = _frequency_grid(height)[:, None] * (height / CSF_CYCLES_DIVISOR)
    u = _frequency_grid(width)[None, :] * (width / CSF_CYCLES_DIVISOR)
    r = np.sqrt(u * u + v * v)
    response = np.exp(-((r / CSF_F0) ** 2)) - CSF_A * np.exp(-((r / CSF_F1) ** 2))
    return np.fft.ifftshift(response)


def _gaussian_1d(sigma: float) -> np.ndarray:
    """1-D factor of exp(-(x^2 + y^2) / (2 sigma^2)) / (2 pi sigma^2) on x in [-15, 15]."""
    x = np.arange(-CONTRAST_RADIUS, CONTRAST_RADIUS + 1, dtype=np.float64)
    return np.exp(-(x * x) / (2.0 * sigma * sigma)) / np.sqrt(2.0 * np.pi * sigma * sigma)


def _blur(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable 'same'-size filtering with zero padding (MATLAB ``filter2(..., 'same')``)."""
    rows = ndimage.correlate1d(image, kernel, axis=0, mode="constant")
    return ndimage.correlate1d(rows, kernel, axis=1, mode="constant")


def _masked_contrast(image: np.ndarray, csf: np.ndarray) -> np.ndarray:
    """Masked local contrast C' = k |C|^p / (h |C|^q + Z) of one CSF-filtered image."""
    filtered = np.fft.ifft2(np.fft.fft2(image) * csf).real
    fine, coarse = (_blur(filtered, _gaussian_1d(s)) for s in CONTRAST_SIGMAS)
    contrast = np.abs(fine / coarse - 1.0)
    return MASK_K * contrast**MASK_P / (MASK_H * contrast**MASK_Q + MASK_Z)


def _preservation(source: np.ndarray, fused: np.ndarray) -> np.ndarray:
    """min / max of the masked contrasts; 1 where both are 0 (contrast trivially preserved)."""
    low = np.minimum(source, fused)
    high = np.maximum(source, fused)
    return np.divide(low, high, out=np.ones_like(low), where=high != 0)


def qcb(
    fused: np.ndarray, ir: np.ndarray, vis: np.ndarray, convention: Convention = "paper"
) -> float:
    """Qcb: contrast preservation of the sources in F, weighted by saliency (Chen and Blum, 2009).

    Chen, Blum, "A new automated quality assessment algorithm for image fusion", Image and Vision
    Computing 27(10), 2009, as Z. Liu's ``metricChenBlum.m`` (used unchanged by the VIFB benchmark)
    computes it. Each image is min-max stretched to [0, 255] and rounded, filtered in frequency by
    the contrast sensitivity function S(r) = exp(-(r / 15.3870)^2) - 0.7622 exp(-(r / 1.3456)^2)
    (r: MATLAB ``freqspace`` frequencies scaled by height / 30 and width / 30); its local contrast
    is C = |(I * G_2) / (I * G_4) - 1| with unnormalised 31 x 31 Gaussians of sigma 2 and 4 (zero
    padding) and is masked as C' = C^3 / (C^2 + 0.0001). With Q^SF = min(C'_S, C'_F) / max(C'_S,
    C'_F) and saliency weights lambda_A = C'_A^2 / (C'_A^2 + C'_B^2), lambda_B = 1 - lambda_A,
    Qcb = mean(lambda_A Q^AF + lambda_B Q^BF). Where the reference code divides 0 by 0, Q^SF is 1
    and lambda_A = lambda_B = 1/2. Both conventions are the same.

    All images H x W in [0, 255]. Range [0, 1]; 1 when F equals both sources. NaN when any of the
    three images is constant (the min-max stretch is undefined). Higher is better.
    """
    check_convention(convention)
    images = as_triple(fused, ir, vis)
    if any(image.min() == image.max() for image in images):
        return float("nan")
    csf = _csf(images[0].shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        c_f, c_a, c_b = (_masked_contrast(_normalise(image), csf) for image in images)
        q_a = _preservation(c_a, c_f)
        q_b = _preservation(c_b, c_f)
        energy_a = c_a * c_a
        energy_b = c_b * c_b
        total = energy_a + energy_b
        weight_a = np.divide(energy_a, total, out=np.full_like(total, 0.5), where=total != 0)
        return float(np.mean(weight_a * q_a + (1.0 - weight_a) * q_b))
