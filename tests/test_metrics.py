"""Known-answer tests for the fusion metrics on small synthetic images."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from fnet_deploy.metrics import (
    CONVENTIONS,
    METRIC_NAMES,
    METRICS,
    Convention,
    average_gradient,
    compute_metrics,
    cross_entropy,
    entropy,
    mutual_information,
    psnr,
    qabf,
    qcb,
    scd,
    spatial_frequency,
    ssim,
    std_dev,
    vif,
    vifp,
)
from fnet_deploy.metrics.gradient import QABF_DA, QABF_DG, QABF_KA, QABF_KG, QABF_TA, QABF_TG

# Qabf of a pixel whose strength ratio is 1 and orientation difference 0 (the best possible).
Q_PERFECT = (
    QABF_TG
    / (1 + math.exp(QABF_KG * (1 - QABF_DG)))
    * QABF_TA
    / (1 + math.exp(QABF_KA * (1 - QABF_DA)))
)


def textured(seed: int = 0, shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    """A smooth pattern plus mild noise, integer grey levels in [0, 255] as float64."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    phase = rng.uniform(0, 2 * np.pi)
    base = 128 + 70 * np.sin(x / 5.0 + phase) * np.cos(y / 7.0) + rng.normal(0, 8, shape)
    return np.clip(np.rint(base), 0, 255)


def noisy(image: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(image + rng.normal(0, sigma, image.shape)), 0, 255)


# --- EN ---------------------------------------------------------------------------------------


def test_entropy_hand_cases() -> None:
    assert entropy(np.full((4, 4), 77)) == 0.0
    assert entropy(np.array([[0, 0], [255, 255]])) == pytest.approx(1.0)
    assert entropy(np.array([[0, 1], [2, 3]])) == pytest.approx(2.0)
    assert entropy(np.arange(256).reshape(16, 16)) == pytest.approx(8.0)


def test_entropy_rounds_float_values_to_grey_levels() -> None:
    assert entropy(np.array([[0.2, 0.4], [254.6, 255.0]])) == pytest.approx(1.0)


# --- SD ---------------------------------------------------------------------------------------


def test_std_dev_hand_cases() -> None:
    assert std_dev(np.array([[0, 2], [0, 2]])) == pytest.approx(1.0)
    assert std_dev(np.full((3, 3), 200)) == 0.0
    assert std_dev(np.array([[0, 255], [255, 0]])) == pytest.approx(127.5)


# --- SF, AG -----------------------------------------------------------------------------------

RAMP_3X3 = np.array([[0, 1, 3], [2, 3, 5], [4, 5, 7]], dtype=float)


def test_spatial_frequency_hand_cases() -> None:
    image = np.array([[0, 1, 3], [0, 1, 3], [0, 1, 3]], dtype=float)
    # Row differences 1 and 2 in each of 3 rows: sum of squares 15 over 6 differences.
    assert spatial_frequency(image, "paper") == pytest.approx(math.sqrt(15 / 6))
    assert spatial_frequency(image, "standard") == pytest.approx(math.sqrt(15 / 9))
    # Both directions: rows (1, 2) x 3, columns 2 x 6 -> 15 / 6 + 24 / 6.
    assert spatial_frequency(RAMP_3X3, "paper") == pytest.approx(math.sqrt(15 / 6 + 24 / 6))
    assert spatial_frequency(RAMP_3X3, "standard") == pytest.approx(math.sqrt(39 / 9))
    for convention in CONVENTIONS:
        assert spatial_frequency(np.full((5, 5), 9), convention) == 0.0


def test_average_gradient_hand_cases() -> None:
    # paper: x-gradients (1, 1.5, 2) by one-sided/central differences, y-gradient 2 everywhere.
    expected_paper = (math.sqrt(2.5) + math.sqrt(3.125) + math.sqrt(4.0)) / 3
    assert average_gradient(RAMP_3X3, "paper") == pytest.approx(expected_paper)
    # standard: forward differences on the top-left 2 x 2: dx in (1, 2), dy = 2.
    assert average_gradient(RAMP_3X3, "standard") == pytest.approx((math.sqrt(2.5) + 2.0) / 2)
    ramp = np.tile(np.arange(0, 100, 10, dtype=float), (6, 1))
    for convention in CONVENTIONS:
        assert average_gradient(ramp, convention) == pytest.approx(10 / math.sqrt(2))
        assert average_gradient(np.full((5, 5), 9), convention) == 0.0


# --- MI ---------------------------------------------------------------------------------------


def test_mutual_information_hand_cases() -> None:
    two_level = np.array([[0, 0], [255, 255]])
    assert mutual_information(two_level, two_level, two_level, "paper") == pytest.approx(
        2 * math.log(2)
    )
    assert mutual_information(two_level, two_level, two_level, "standard") == pytest.approx(2.0)
    # F varies by row, the sources by column: the joint histogram is uniform, MI = 0.
    columns = two_level.T
    for convention in CONVENTIONS:
        assert mutual_information(two_level, columns, columns, convention) == pytest.approx(0.0)
        assert mutual_information(np.full((2, 2), 3), two_level, columns, convention) == 0.0


def test_mutual_information_paper_matches_scikit_learn() -> None:
    f, a, b = textured(1), textured(2), textured(3)
    expected = mutual_info_score(f.ravel(), a.ravel()) + mutual_info_score(f.ravel(), b.ravel())
    assert mutual_information(f, a, b, "paper") == pytest.approx(expected, rel=1e-12)
    assert mutual_information(f, a, b, "standard") == pytest.approx(expected / math.log(2))


def test_mutual_information_of_identical_images_is_twice_the_entropy() -> None:
    a = textured()
    assert mutual_information(a, a, a, "standard") == pytest.approx(2 * entropy(a))


# --- CE ---------------------------------------------------------------------------------------


def test_cross_entropy_hand_case() -> None:
    source = np.array([[0, 0], [1, 1]])
    fused = np.array([[0, 1], [1, 1]])
    # p = (1/2, 1/2), q = (1/4, 3/4): 1/2 log2(2) + 1/2 log2(2/3) for each source, averaged.
    expected = 0.5 + 0.5 * math.log2(2 / 3)
    for convention in CONVENTIONS:
        assert cross_entropy(fused, source, source, convention) == pytest.approx(expected)
        assert cross_entropy(source, source, source, convention) == 0.0


def test_cross_entropy_is_the_mean_over_sources() -> None:
    a, b, f = textured(1), textured(2), textured(3)
    assert cross_entropy(f, a, b) == pytest.approx(
        (cross_entropy(f, a, a) + cross_entropy(f, b, b)) / 2
    )


# --- SCD --------------------------------------------------------------------------------------


def test_scd_hand_cases() -> None:
    a = np.clip(textured(1) / 2, 0, 127)
    b = np.clip(textured(2) / 2, 0, 127)
    for convention in CONVENTIONS:
        # F = A + B: F - B = A and F - A = B, both correlations are 1.
        assert scd(a + b, a, b, convention) == pytest.approx(2.0)
        # F = A = B: the differences are constant, their correlations are defined as 0.
        assert scd(a, a, a, convention) == 0.0
    # F = A: corr(A - B, A) + corr(0, B) = corr(A - B, A); with independent A, B of equal variance
    # that is about 1 / sqrt(2).
    assert scd(a, a, b) == pytest.approx(np.corrcoef(a.ravel() - b.ravel(), a.ravel())[0, 1])


# --- VIF --------------------------------------------------------------------------------------


def test_vifp_hand_case_single_window() -> None:
    # A 17 x 17 image has one 'valid' position at scale 1 and none at coarser scales, so VIF is
    # the single-window formula. With D = 2 R: gain 2, distortion variance 0 (clamped to 1e-10).
    rng = np.random.default_rng(5)
    reference = rng.integers(0, 128, (17, 17)).astype(float)
    x = np.arange(17) - 8.0
    w1 = np.exp(-(x * x) / (2 * 3.4**2))
    weights = np.outer(w1, w1) / np.outer(w1, w1).sum()
    mean = np.sum(weights * reference)
    variance = np.sum(weights * (reference - mean) ** 2)
    expected = math.log10(1 + 4 * variance / (1e-10 + 2)) / math.log10(1 + variance / 2)
    assert vifp(reference, 2 * reference) == pytest.approx(expected, rel=1e-9)


def test_vif_identical_shifted_and_constant() -> None:
    a = textured()
    assert vifp(a, a) == pytest.approx(1.0, abs=1e-9)
    # A brightness shift keeps gain 1 and adds no distortion.
    assert vifp(np.clip(a, 0, 200), np.clip(a, 0, 200) + 50) == pytest.approx(1.0, abs=1e-9)
    # A constant reference carries no information: 0 / 0, defined as 1.
    assert vifp(np.full((32, 32), 80), a[:32, :32]) == 1.0
    assert vif(a, a, a, "paper") == pytest.approx(2.0, abs=1e-9)
    assert vif(a, a, a, "standard") == pytest.approx(1.0, abs=1e-9)


def test_vif_contrast_enhancement_exceeds_one_and_noise_falls_below() -> None:
    a = np.clip(textured(), 20, 140)
    assert vifp(a, 1.5 * a) > 1.0
    assert 0.0 < vifp(a, noisy(a, 20)) < vifp(a, noisy(a, 5)) < 1.0


# --- Qabf -------------------------------------------------------------------------------------


def test_qabf_hand_case_half_contrast_edge() -> None:
    # A vertical step edge; B all zero (no edges, zero weight); F = A / 2 halves every Sobel
    # response and keeps every orientation: G = 1/2, A = 1 wherever A has an edge.
    a = np.zeros((8, 8))
    a[:, 4:] = 200.0
    b = np.zeros_like(a)
    expected = QABF_TG / 2 * QABF_TA / (1 + math.exp(QABF_KA * (1 - QABF_DA)))
    for convention in CONVENTIONS:
        assert qabf(a / 2, a, b, convention) == pytest.approx(expected)


def test_qabf_identical_images() -> None:
    a = textured()
    assert qabf(a, a, a, "standard") == pytest.approx(Q_PERFECT)
    # paper: tied strengths use g_F (>= 1 for integer images) instead of 1, so Q_g -> Tg.
    paper = qabf(a, a, a, "paper")
    assert Q_PERFECT < paper <= QABF_TG * QABF_TA / (1 + math.exp(QABF_KA * (1 - QABF_DA)))


def test_qabf_without_source_edges_is_nan() -> None:
    zero = np.zeros((8, 8))
    assert math.isnan(qabf(textured()[:8, :8], zero, zero))


def test_qabf_falls_with_noise() -> None:
    a = textured()
    assert 0.0 < qabf(noisy(a, 20), a, a) < qabf(noisy(a, 5), a, a) < qabf(a, a, a)


# --- Qcb --------------------------------------------------------------------------------------


def test_qcb_identical_and_affine_sources() -> None:
    a = textured()
    assert qcb(a, a, a) == pytest.approx(1.0)
    # Qcb min-max stretches every image first, so an affine copy of A is the same source.
    levels = np.arange(0, 256, 51, dtype=float)
    rng = np.random.default_rng(3)
    steps = levels[rng.integers(0, 6, (32, 32))]
    assert qcb(steps, steps, steps / 3 + 10) == pytest.approx(1.0)


def test_qcb_constant_image_is_nan() -> None:
    a = textured()
    assert math.isnan(qcb(a, np.full_like(a, 40), a))
    assert math.isnan(qcb(np.full_like(a, 40), a, a))


def test_qcb_falls_with_noise() -> None:
    a = textured()
    assert 0.0 < qcb(noisy(a, 20), a, a) < qcb(noisy(a, 5), a, a) < 1.0


# --- SSIM -------------------------------------------------------------------------------------


def test_ssim_identical_images() -> None:
    a = textured()
    assert ssim(a, a, a, "paper") == pytest.approx(2.0)
    assert ssim(a, a, a, "standard") == pytest.approx(1.0)


def test_ssim_constant_images_hand_case() -> None:
    # Constant images: all variances 0, so SSIM is the luminance term
    # (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) with C1 = (0.01 L)^2.
    f = np.full((16, 16), 100.0)
    a = np.full((16, 16), 100.0)
    b = np.full((16, 16), 50.0)

    def luminance(c1: float) -> float:
        return (2 * 100 * 50 + c1) / (100**2 + 50**2 + c1)

    assert ssim(f, a, b, "paper") == pytest.approx(1 + luminance((0.01 * 2) ** 2), rel=1e-6)
    assert ssim(f, a, b, "standard") == pytest.approx(
        (1 + luminance((0.01 * 255) ** 2)) / 2, rel=1e-6
    )


def test_ssim_falls_with_noise() -> None:
    a = textured()
    for convention in CONVENTIONS:
        clean = ssim(a, a, a, convention)
        assert ssim(noisy(a, 20), a, a, convention) < ssim(noisy(a, 5), a, a, convention) < clean


# --- PSNR -------------------------------------------------------------------------------------


def test_psnr_hand_cases() -> None:
    f = np.full((4, 4), 10.0)
    a = np.zeros((4, 4))
    b = np.full((4, 4), 20.0)
    # MSE(A, F) = MSE(B, F) = 100.
    assert psnr(f, a, b, "paper") == pytest.approx(0.0)
    assert psnr(f, a, b, "standard") == pytest.approx(10 * math.log10(255**2 / 100))
    # A +-5 checkerboard on a clean image: MSE exactly 25.
    clean = np.clip(textured(), 5, 250)
    checker = np.indices(clean.shape).sum(axis=0) % 2 * 10 - 5
    assert psnr(clean + checker, clean, clean, "standard") == pytest.approx(
        10 * math.log10(255**2 / 25)
    )


def test_psnr_identical_images_is_infinite() -> None:
    a = textured()
    for convention in CONVENTIONS:
        assert psnr(a, a, a, convention) == math.inf


# --- all metrics --------------------------------------------------------------------------------


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_swapping_sources_changes_nothing(convention: Convention) -> None:
    f, a, b = textured(1), textured(2), textured(3)
    forward = compute_metrics(f, a, b, convention).values
    swapped = compute_metrics(f, b, a, convention).values
    assert forward == pytest.approx(swapped, rel=1e-12)


def test_identical_images_known_answers() -> None:
    a = textured()
    en_bits = entropy(a)
    paper = compute_metrics(a, a, a, "paper").values
    standard = compute_metrics(a, a, a, "standard").values
    assert paper["MI"] == pytest.approx(2 * en_bits * math.log(2))
    assert standard["MI"] == pytest.approx(2 * en_bits)
    for values, sum_scale in ((paper, 2.0), (standard, 1.0)):
        assert values["CE"] == 0.0
        assert values["SCD"] == 0.0
        assert values["VIF"] == pytest.approx(sum_scale, abs=1e-9)
        assert values["SSIM"] == pytest.approx(sum_scale)
        assert values["Qcb"] == pytest.approx(1.0)
        assert values["PSNR"] == math.inf


def test_conventions_agree_where_documented_as_the_same() -> None:
    # F = A, so Qabf sees tied edge strengths, where its two conventions differ.
    a, b = textured(2), textured(3)
    f = a
    paper = compute_metrics(f, a, b, "paper").values
    standard = compute_metrics(f, a, b, "standard").values
    for name, spec in METRICS.items():
        if spec.standard == "same as paper":
            assert paper[name] == standard[name], name
        else:
            assert paper[name] != pytest.approx(standard[name], rel=1e-9), name


def test_compute_metrics_reports_convention_and_order() -> None:
    a = textured()
    scores = compute_metrics(a, a, a, "standard")
    assert scores.convention == "standard"
    assert tuple(scores.values) == METRIC_NAMES
    subset = compute_metrics(a, a, a, names=["SSIM", "EN"])
    assert subset.convention == "paper"
    assert list(subset.values) == ["SSIM", "EN"]
    assert all(isinstance(value, float) for value in scores.values.values())


def test_uint8_and_float_inputs_agree() -> None:
    f, a, b = textured(1), textured(2), textured(3)
    as_float = compute_metrics(f, a, b).values
    as_uint8 = compute_metrics(f.astype(np.uint8), a.astype(np.uint8), b.astype(np.uint8)).values
    assert as_float == as_uint8


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ((np.zeros((8, 8)), np.zeros((8, 9)), np.zeros((8, 8))), "same shape"),
        ((np.zeros((8, 8, 3)), np.zeros((8, 8)), np.zeros((8, 8))), "2-D"),
        ((np.full((8, 8), 256.0), np.zeros((8, 8)), np.zeros((8, 8))), "uint8 range"),
        ((np.full((8, 8), np.nan), np.zeros((8, 8)), np.zeros((8, 8))), "non-finite"),
        ((np.zeros((1, 8)), np.zeros((1, 8)), np.zeros((1, 8))), "at least 2 x 2"),
    ],
)
def test_bad_inputs_raise(images: tuple[np.ndarray, np.ndarray, np.ndarray], message: str) -> None:
    fused, ir, vis = images
    with pytest.raises(ValueError, match=message):
        compute_metrics(fused, ir, vis, names=["EN", "MI"])


def test_unknown_convention_and_metric_raise() -> None:
    a = textured()
    with pytest.raises(ValueError, match="convention"):
        compute_metrics(a, a, a, "matlab")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(a, a, a, names=["NIQE"])
