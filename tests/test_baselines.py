"""Tests of the classical fusion baselines."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fnet_deploy.assets import sample_pair
from fnet_deploy.metrics import spatial_frequency
from fnet_deploy.metrics.baselines import BASELINES, average, laplacian_pyramid, maximum
from tests.conftest import fixture_pair


def read_unit(path: Path) -> np.ndarray:
    """A grey image as float32 in [0, 1], as the model reads it."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert image is not None, path
    return image.astype(np.float32) / 255


def random_image(shape: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def test_average_of_constants() -> None:
    fused = average(np.full((5, 7), 0.2, np.float32), np.full((5, 7), 0.6, np.float32))
    assert fused.dtype == np.float32
    np.testing.assert_allclose(fused, 0.4, atol=1e-7)


def test_max_picks_the_larger_pixel() -> None:
    ir = np.array([[0.1, 0.9], [0.5, 0.0]], np.float32)
    vis = np.array([[0.3, 0.2], [0.5, 1.0]], np.float32)
    expected = np.array([[0.3, 0.9], [0.5, 1.0]], np.float32)
    np.testing.assert_array_equal(maximum(ir, vis), expected)


@pytest.mark.parametrize("shape", [(64, 64), (37, 53), (301, 496)])
def test_pyramid_of_identical_inputs_returns_the_input(shape: tuple[int, int]) -> None:
    image = random_image(shape, seed=1)
    fused = laplacian_pyramid(image, image)
    assert fused.dtype == np.float32
    assert fused.shape == shape
    np.testing.assert_allclose(fused, image, atol=1e-5)


def test_pyramid_of_constants_is_their_average() -> None:
    fused = laplacian_pyramid(
        np.full((40, 40), 0.2, np.float32), np.full((40, 40), 0.8, np.float32)
    )
    np.testing.assert_allclose(fused, 0.5, atol=1e-5)


def test_pyramid_keeps_detail_that_averaging_halves() -> None:
    # IR: a sharp bright bar on grey; visible: flat grey. Max-abs selection keeps the bar's full
    # contrast on the detail levels, averaging halves it.
    ir = np.full((64, 64), 0.5, np.float32)
    ir[:, 30:34] = 0.9
    vis = np.full((64, 64), 0.5, np.float32)
    pyramid = laplacian_pyramid(ir, vis)
    assert pyramid[32, 31] - pyramid[32, 10] > 0.3
    assert spatial_frequency(255 * pyramid) > 1.5 * spatial_frequency(255 * average(ir, vis))


def test_pyramid_levels_adapt_to_small_images_and_are_checked() -> None:
    image = random_image((5, 6), seed=2)
    np.testing.assert_allclose(laplacian_pyramid(image, image, levels=10), image, atol=1e-5)
    with pytest.raises(ValueError, match="levels"):
        laplacian_pyramid(image, image, levels=0)


@pytest.mark.parametrize(
    ("ir", "vis"),
    [
        fixture_pair("TNO", "19.png"),
        sample_pair(),
    ],
    ids=["TNO-19-crop", "RoadScene-FLIR_00211"],
)
def test_baselines_on_real_images_keep_shape_and_range(ir: Path, vis: Path) -> None:
    a = read_unit(ir)
    b = read_unit(vis)
    for name, baseline in BASELINES.items():
        fused = baseline(a, b)
        assert fused.dtype == np.float32, name
        assert fused.shape == a.shape, name
        assert fused.min() >= 0.0 and fused.max() <= 1.0, name
    # Max-abs detail selection keeps more detail than the average of the sources.
    assert spatial_frequency(255 * laplacian_pyramid(a, b)) > spatial_frequency(255 * average(a, b))


def test_registry_and_input_checks() -> None:
    assert set(BASELINES) == {"average", "max", "laplacian"}
    image = random_image((8, 8), seed=3)
    for baseline in BASELINES.values():
        with pytest.raises(ValueError, match="same shape"):
            baseline(image, image[:, :7])
        with pytest.raises(ValueError, match="2-D"):
            baseline(np.dstack([image] * 3), image)
