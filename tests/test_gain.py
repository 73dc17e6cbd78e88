"""Thermal gain control: per-frame ranges as normalize_thermal, temporal smoothing, 8 bit."""

from __future__ import annotations

import numpy as np
import pytest

from fnet_deploy.data.thermal import normalize_thermal
from fnet_deploy.runtime.gain import ThermalGain
from tests.conftest import nato


def raw_frames() -> list[np.ndarray]:
    """Real IR frames turned into 14-bit-like raw counts (offset + gain, as a core delivers)."""
    return [(nato("ir", n).astype(np.uint16) * 24 + 7000).astype(np.uint16) for n in range(2, 8)]


@pytest.mark.parametrize("mode", ["minmax", "percentile", "fixed"])
def test_without_smoothing_equals_normalize_thermal(mode: str) -> None:
    gain = ThermalGain(mode, (2.0, 98.0), smoothing=0.0)  # type: ignore[arg-type]
    for frame in raw_frames()[:3]:
        expected = normalize_thermal(frame, mode, (2.0, 98.0))  # type: ignore[arg-type]
        np.testing.assert_allclose(gain(frame), expected, atol=1e-5)


def test_eight_bit_frames_are_divided_by_255_in_every_mode() -> None:
    frame = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for mode in ("minmax", "percentile", "fixed"):
        out = ThermalGain(mode)(frame)  # type: ignore[arg-type]
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, frame / np.float32(255))


def test_fixed_range_maps_raw_counts() -> None:
    frame = np.array([[0, 8191, 16383, 30000]], np.uint16)
    out = ThermalGain("fixed", fixed_range=(0, 16383))(frame)
    np.testing.assert_allclose(out, [[0.0, 8191 / 16383, 1.0, 1.0]])


def test_images_and_streams_map_a_fixed_range_alike() -> None:
    """``fuse --ir-norm fixed --ir-range`` (images) and ``stream`` (frames) are one option set."""
    for frame in raw_frames()[:2]:
        stream = ThermalGain("fixed", smoothing=0.0, fixed_range=(7000.0, 13000.0))(frame)
        image = normalize_thermal(frame, "fixed", fixed_range=(7000.0, 13000.0))
        np.testing.assert_allclose(stream, image, atol=1e-6)
        assert image.min() >= 0.0 and image.max() <= 1.0 and 0.0 < image.mean() < 1.0


def test_smoothing_steadies_the_picture_when_a_hot_object_appears() -> None:
    frames = raw_frames()
    hot = frames[3].copy()
    hot[100:140, 150:200] = 16000  # a hot exhaust enters for one frame
    sequence = [*frames[:3], hot, *frames[4:]]
    background = (slice(0, 60), slice(0, 80))

    def change(smoothing: float) -> float:
        gain = ThermalGain("minmax", smoothing=smoothing)
        outs = [gain(f)[background] for f in sequence]
        return float(np.abs(outs[3] - outs[2]).mean())

    assert change(0.9) < 0.25 * change(0.0)


def test_smoothed_range_converges_and_resets() -> None:
    frame = raw_frames()[0]
    gain = ThermalGain("minmax", smoothing=0.5)
    gain(frame)
    gain((frame.astype(np.int32) + 1000).astype(np.uint16))
    low, high = gain.range or (0, 0)
    assert low == pytest.approx(float(frame.min()) + 500)
    assert high == pytest.approx(float(frame.max()) + 500)
    gain.reset()
    assert gain.range is None


def test_constant_frame_maps_to_zero_and_bad_arguments_raise() -> None:
    assert not ThermalGain("minmax")(np.full((4, 4), 9000, np.uint16)).any()
    with pytest.raises(ValueError, match="smoothing"):
        ThermalGain(smoothing=1.0)
    with pytest.raises(ValueError, match="percentiles"):
        ThermalGain(percentiles=(50.0, 10.0))
    with pytest.raises(ValueError, match="unknown gain mode"):
        ThermalGain("auto")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="low < high"):
        ThermalGain("fixed", fixed_range=(10.0, 10.0))
