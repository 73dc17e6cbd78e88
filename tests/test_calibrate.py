"""Estimating the IR-to-visible map: point fits, plausibility checks, ecc and features on real
frames, and the ``calibrate`` command."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from fnet_deploy.calibration.estimate import (
    Plausibility,
    check_plausible,
    edge_agreement,
    estimate_from_images,
    estimate_from_points,
    fit_points,
    read_points,
    reprojection_errors,
    rotation_degrees,
)
from fnet_deploy.cli import app
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.runtime.registration import Registration, project
from tests.conftest import NATO, fixture_path, nato

H_TRUE = np.array([[1.05, 0.02, 12.0], [-0.015, 0.98, -6.0], [2e-5, -1e-5, 1.0]])


def corner_error(found: np.ndarray, true: np.ndarray, size: tuple[int, int]) -> float:
    w, h = size
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    return float(np.abs(project(found, corners) - project(true, corners)).max())


def test_fit_points_recovers_each_transform() -> None:
    rng = np.random.default_rng(1)
    ir = rng.uniform(0, 300, (8, 2))
    affine = H_TRUE.copy()
    affine[2] = [0, 0, 1]
    shift = np.array([[1, 0, 3.5], [0, 1, -2.0], [0, 0, 1]])
    for kind, true in (("homography", H_TRUE), ("affine", affine), ("translation", shift)):
        found = fit_points(ir, project(true, ir), kind)  # type: ignore[arg-type]
        assert corner_error(found, true, (360, 270)) < 1e-3
    with pytest.raises(FnetError, match="needs at least 4 point pairs, got 3"):
        fit_points(ir[:3], ir[:3], "homography")
    with pytest.raises(FnetError, match="collinear"):
        line = np.array([[0, 0], [1, 1], [2, 2], [3, 3.0]])
        fit_points(line, line, "affine")


def test_points_with_noise_give_rms_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    ir = rng.uniform(0, 350, (40, 2))
    vis = project(H_TRUE, ir) + rng.normal(0, 0.5, (40, 2))
    reg = estimate_from_points(ir, vis, "homography", (360, 270), (400, 300))
    assert 0.2 < reg.fit["rms_error_px"] < 0.8
    assert reg.fit["rms_error_px"] == pytest.approx(
        np.sqrt(np.mean(reprojection_errors(reg.matrix, ir, vis) ** 2)), abs=1e-4
    )
    assert corner_error(reg.matrix, H_TRUE, (360, 270)) < 2.0
    with pytest.raises(FnetError, match=r"rms reprojection error .* > 0\.1"):
        estimate_from_points(
            ir, vis, "homography", (360, 270), (400, 300), Plausibility(max_rms_error=0.1)
        )


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.zeros((3, 3)), "degenerate"),
        (np.array([[-1.0, 0, 359], [0, 1, 0], [0, 0, 1]]), "mirrored or folded"),
        (np.diag([20.0, 20.0, 1.0]), "scale 20 outside"),
        (np.array([[1.0, 1.5, 0], [0, 1.0, 0], [0, 0, 1]]), "shear/anisotropy"),
        (np.array([[1.0, 0, 0], [0, 1, 0], [0.004, 0, 1]]), "perspective ratio"),
        (np.array([[1.0, 0, 0], [0, 1, 0], [-0.004, 0, 1]]), "crosses the horizon"),
        (np.array([[1.0, 0, 340], [0, 1, 250], [0, 0, 1]]), "common area"),
    ],
)
def test_implausible_maps_are_rejected(matrix: np.ndarray, message: str) -> None:
    with pytest.raises(FnetError, match=message):
        check_plausible(matrix, (360, 270), (360, 270), Plausibility(), rms_error=0.5)


def test_read_points_formats(tmp_path: Path) -> None:
    path = tmp_path / "pts.csv"
    path.write_text("x_ir,y_ir,x_vis,y_vis\n1,2,3,4\n# comment\n5 6 7 8  # trailing\n")
    ir, vis = read_points(path)
    np.testing.assert_array_equal(ir, [[1, 2], [5, 6]])
    np.testing.assert_array_equal(vis, [[3, 4], [7, 8]])
    path.write_text("1,2,3\n")
    with pytest.raises(FnetError, match="line 1: expected four numbers"):
        read_points(path)


def test_ecc_on_the_real_sequence_finds_the_documented_offset() -> None:
    # shared/data/sequences/README.md: visible features lie about 4 px right of the IR ones,
    # 0-2 px vertically (measured there independently, by gradient cross-correlation).
    for number in (2, 7, 13):
        reg = estimate_from_images(nato("ir", number), nato("vi", number), "translation")
        tx, ty = reg.matrix[0, 2], reg.matrix[1, 2]
        assert 3.0 <= tx <= 6.0 and abs(ty) <= 2.5
        assert reg.fit["method"] == "ecc" and reg.fit["correlation"] > 0.3
        np.testing.assert_allclose(reg.matrix[:2, :2], np.eye(2))


def test_ecc_follows_a_known_extra_warp_of_the_real_ir_frame() -> None:
    ir, vis = nato("ir", 8), nato("vi", 8)
    base = estimate_from_images(ir, vis, "affine").matrix
    extra = np.array([[0.97, 0.03, 6.0], [-0.02, 1.01, -4.0], [0, 0, 1.0]])
    # The IR camera moved: its new frame is the old one seen through extra^-1 (reflected at the
    # border, so that the synthetic frame has no artificial black edge to lock onto).
    moved = cv2.warpPerspective(
        ir,
        np.linalg.inv(extra),
        (360, 270),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )
    reg = estimate_from_images(moved, vis, "affine")
    assert corner_error(reg.matrix, base @ extra, (360, 270)) < 1.0


def test_affine_and_homography_from_the_real_frames_are_accepted() -> None:
    # The maps beyond a translation, on whole frames, stay near the documented ~4.5 px shift
    # (scale 0.97-0.99, well under a degree) and pass the comparison with the simpler maps.
    for number in (2, 7, 13):
        ir, vis = nato("ir", number), nato("vi", number)
        shift = estimate_from_images(ir, vis, "translation").matrix
        for kind in ("affine", "homography"):
            reg = estimate_from_images(ir, vis, kind)  # type: ignore[arg-type]
            assert corner_error(reg.matrix, shift, (360, 270)) < 12.0
            assert abs(rotation_degrees(reg.matrix, np.array([179.5, 134.5]))) < 1.0
            assert edge_agreement(reg.matrix, ir, vis) > edge_agreement(shift, ir, vis)


@pytest.mark.parametrize(
    ("top", "left", "message"),
    [
        # ecc's affine fit turns this 48 x 48 corner of the real pair by 32 degrees
        (16, 288, r"rotation -32 degrees > 10"),
        # ... and here keeps 47 % of the translation's common area, matching worse
        (
            32,
            240,
            r"implausible affine .*common area 47% of the translation fit's; edges agree "
            r"less than with the translation fit .*use --transform translation",
        ),
    ],
)
def test_affine_fits_that_a_translation_beats_are_refused(
    top: int, left: int, message: str
) -> None:
    # The true map of every crop of the pair is the same few-pixel shift.
    ir = nato("ir")[top : top + 48, left : left + 48]
    vis = nato("vi")[top : top + 48, left : left + 48]
    with pytest.raises(FnetError, match=message):
        estimate_from_images(ir, vis, "affine")


def test_rotation_limit() -> None:
    turn = cv2.getRotationMatrix2D((179.5, 134.5), 12.0, 1.0)
    matrix = np.vstack([turn, [0.0, 0.0, 1.0]])
    assert rotation_degrees(matrix, np.array([179.5, 134.5])) == pytest.approx(-12.0)
    with pytest.raises(FnetError, match=r"rotation -12 degrees > 10"):
        check_plausible(matrix, (360, 270), (360, 270), Plausibility())
    check_plausible(matrix, (360, 270), (360, 270), Plausibility(max_rotation=15.0))


def test_features_recover_a_homography_between_similar_frames() -> None:
    vis = nato("vi", 13)
    ir = cv2.warpPerspective(vis, np.linalg.inv(H_TRUE), (360, 270), flags=cv2.INTER_LINEAR)
    reg = estimate_from_images(ir, vis, "homography", method="orb")
    assert reg.fit["inliers"] >= 12
    assert corner_error(reg.matrix, H_TRUE, (360, 270)) < 2.0


def test_cross_modal_features_fail_with_a_clear_message() -> None:
    with pytest.raises(FnetError, match=r"feature matches .*try --method ecc"):
        estimate_from_images(nato("ir"), nato("vi"), "homography", method="orb")


def test_unrelated_frames_are_rejected() -> None:
    other = cv2.imread(str(fixture_path("MSRS_train", "vi", "00001D.png")), cv2.IMREAD_GRAYSCALE)
    with pytest.raises(FnetError, match=r"implausible map|did not converge"):
        estimate_from_images(nato("ir"), other, "translation")


def test_calibrate_command_from_points_and_from_frames(tmp_path: Path) -> None:
    ir_path = NATO / "ir" / "000005.png"
    vis_path = NATO / "vi" / "000005.png"
    rng = np.random.default_rng(4)
    ir_pts = rng.uniform(20, 250, (6, 2))
    vis_pts = ir_pts + np.array([4.0, -1.0])
    points = tmp_path / "points.txt"
    points.write_text(
        "\n".join(" ".join(f"{v:.3f}" for v in row) for row in np.hstack([ir_pts, vis_pts]))
    )
    out = tmp_path / "cal.json"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "calibrate",
            "--ir",
            str(ir_path),
            "--vis",
            str(vis_path),
            "--points",
            str(points),
            "--transform",
            "affine",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    reg = Registration.load(out)
    np.testing.assert_allclose(reg.matrix[:2, 2], [4.0, -1.0], atol=1e-6)
    assert reg.fit["method"] == "points" and reg.fit["pairs"] == 6

    folder = NATO
    result = runner.invoke(
        app,
        [
            "calibrate",
            "--ir",
            f"dir://{folder / 'ir'}",
            "--vis",
            f"dir://{folder / 'vi'}",
            "--frame",
            "3",
            "--transform",
            "translation",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["fit"]["method"] == "ecc"


def test_calibrate_command_errors(tmp_path: Path) -> None:
    ir_path = NATO / "ir" / "000005.png"
    points = tmp_path / "points.txt"
    points.write_text("1 2 3 4\n5 6 7 8\n9 10 11 12\n400 10 400 10\n")
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "calibrate",
            "--ir",
            str(ir_path),
            "--vis",
            str(ir_path),
            "--points",
            str(points),
            "--out",
            str(tmp_path / "c.json"),
        ],
    )
    assert result.exit_code == 2
    assert "pair 4: IR point outside the 360x270 frame" in result.output
    result = runner.invoke(
        app, ["calibrate", "--ir", str(ir_path), "--vis", str(tmp_path / "none.png")]
    )
    assert result.exit_code == 2 and "not found" in result.output
    assert not (tmp_path / "c.json").exists()
