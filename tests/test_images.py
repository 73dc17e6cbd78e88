"""Image reading, colour conversion and thermal range mapping."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fnet_deploy.assets import sample_pair
from fnet_deploy.data.color import rgb_to_ycbcr, ycbcr_to_rgb
from fnet_deploy.data.images import compose_output, read_ir, read_visible, write_image
from fnet_deploy.data.pairs import pair_folders
from fnet_deploy.data.thermal import normalize_thermal
from fnet_deploy.helpers.errors import InputError
from tests.conftest import fixture_path


def test_ycbcr_matches_matlab_rgb2ycbcr_known_values() -> None:
    rgb = np.array([[[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]]], np.float32)
    ycc = rgb_to_ycbcr(rgb) * 255
    # MATLAB rgb2ycbcr on uint8: black (16,128,128), white (235,128,128), red (81,90,240),
    # green (145,54,34), blue (41,240,110)
    expected = [
        [16, 128, 128],
        [235, 128, 128],
        [81.481, 90.203, 240],
        [144.553, 53.797, 34.214],
        [40.966, 240, 109.786],
    ]
    assert np.allclose(ycc[0], expected, atol=1e-3)


def test_ycbcr_round_trip() -> None:
    rgb = np.random.default_rng(0).random((7, 9, 3), dtype=np.float32)
    assert np.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-6)


def test_compose_output_grey_and_colour() -> None:
    luma = np.array([[-0.2, 0.5, 1.3]], np.float32)
    assert compose_output(luma, None).tolist() == [[0, 128, 255]]
    chroma = np.full((1, 3, 2), 128 / 255, np.float32)
    bgr = compose_output(np.full((1, 3), 235 / 255, np.float32), chroma)
    assert bgr.shape == (1, 3, 3) and (bgr == 255).all()


def test_thermal_8bit_is_divided_by_255() -> None:
    img = np.array([[0, 51, 255]], np.uint8)
    assert np.allclose(normalize_thermal(img, "minmax"), [[0, 0.2, 1.0]])


def test_thermal_16bit_normalisations() -> None:
    img = np.array([[1000, 2000, 3000, 60000]], np.uint16)
    assert np.allclose(normalize_thermal(img, "minmax"), [[0, 1000 / 59000, 2000 / 59000, 1]])
    assert np.allclose(normalize_thermal(img, "fixed"), img / 65535.0)
    ramp = np.arange(10000, 20001, 100, dtype=np.uint16)[None, :]  # 101 values
    out = normalize_thermal(ramp, "percentile", (10, 90))
    assert out[0, 10] == pytest.approx(0.0, abs=1e-6) and out[0, 90] == pytest.approx(1.0, abs=1e-6)
    assert out[0, 0] == 0.0 and out[0, -1] == 1.0 and out[0, 50] == pytest.approx(0.5, abs=1e-6)
    assert (normalize_thermal(np.full((3, 3), 7, np.uint16), "minmax") == 0).all()
    with pytest.raises(ValueError):
        normalize_thermal(img, "percentile", (90, 10))


def test_read_ir_16bit_png(tmp_path: Path) -> None:
    raw = np.linspace(20000, 30000, 64 * 48).reshape(48, 64).astype(np.uint16)
    path = tmp_path / "ir16.png"
    cv2.imwrite(str(path), raw)
    out = read_ir(path, "minmax")
    assert out.dtype == np.float32 and out.shape == (48, 64)
    assert out.min() == 0.0 and out.max() == 1.0


def test_read_visible_conventions(tmp_path: Path) -> None:
    vis_path = sample_pair()[1]  # RoadScene FLIR_00211, colour JPEG
    gray = read_visible(vis_path, "gray")
    assert gray.chroma is None
    assert np.array_equal(
        gray.luma * 255, cv2.imread(str(vis_path), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    )
    ycc = read_visible(vis_path, "ycbcr")
    assert ycc.chroma is not None and ycc.chroma.shape == (*ycc.luma.shape, 2)
    assert ycc.luma.min() >= 16 / 255 - 1e-6 and ycc.luma.max() <= 235 / 255 + 1e-6
    # grey stored as 3 identical channels is luminance as it is
    grey3 = fixture_path("TNO", "vi", "19.png")
    img = read_visible(grey3, "ycbcr")
    assert img.chroma is None
    assert np.array_equal(
        img.luma * 255, cv2.imread(str(grey3), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    )


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_and_missing_images_are_clear_errors(tmp_path: Path, suffix: str) -> None:
    good = tmp_path / f"good{suffix}"
    cv2.imwrite(str(good), (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8))
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match="cannot decode image") as err:
        read_ir(cut)
    assert str(cut) in str(err.value)
    with pytest.raises(InputError, match="file not found"):
        read_visible(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        read_ir(tmp_path / "empty.png")


def test_write_image_is_atomic_and_leaves_no_temp(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "x.png"
    write_image(out, np.zeros((4, 5), np.uint8))
    assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).shape == (4, 5)
    assert [p.name for p in out.parent.iterdir()] == ["x.png"]
    with pytest.raises(InputError, match="cannot encode"):
        write_image(tmp_path / "x.unknownext", np.zeros((4, 5), np.uint8))


def test_pair_folders_reports_unpaired(tmp_path: Path) -> None:
    (tmp_path / "ir").mkdir()
    (tmp_path / "vi").mkdir()
    for name in ["a.png", "b.png", "c.png", "notes.txt"]:
        (tmp_path / "ir" / name).write_bytes(b"x")
    for name in ["a.jpg", "b.png", "d.png"]:
        (tmp_path / "vi" / name).write_bytes(b"x")
    listing = pair_folders(tmp_path / "ir", tmp_path / "vi")
    assert [p.name for p in listing.pairs] == ["a", "b"]
    assert listing.only_ir == ["c"] and listing.only_vis == ["d"]
    assert listing.unpaired_message() == "no visible partner for c; no IR partner for d"
    with pytest.raises(InputError, match="folder not found"):
        pair_folders(tmp_path / "nope", tmp_path / "vi")
