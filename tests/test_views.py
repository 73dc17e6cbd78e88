"""Composite views (visible | infrared | fused): pane placement, contents and labels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from fnet_deploy.cli import app
from fnet_deploy.data.views import BACKGROUND, GAP, compose_view, header_height, pane_boxes

H, W = 48, 64
VIS_BGR = (0, 0, 200)  # pure red
IR_LEVEL = 90
FUSED_LEVEL = 170


def constant_panes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vis = np.zeros((H, W, 3), np.uint8)
    vis[:] = VIS_BGR
    ir = np.full((H, W), IR_LEVEL, np.uint8)
    fused = np.full((H, W), FUSED_LEVEL, np.uint8)
    return fused, vis, ir


def crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    top, left, bottom, right = box
    return image[top:bottom, left:right]


def band_above(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    top, left, _, right = box
    return image[top - header_height(H) : top, left:right]


def test_side_by_side_puts_visible_infrared_fused_left_to_right() -> None:
    fused, vis, ir = constant_panes()
    view = compose_view(fused, vis, ir, "side-by-side")
    band = header_height(H)
    assert view.dtype == np.uint8
    assert view.shape == (band + H, 3 * W + 2 * GAP, 3)
    boxes = pane_boxes(H, W, "side-by-side")
    assert boxes["visible"] == (band, 0, band + H, W)
    assert boxes["fused"] == (band, 2 * (W + GAP), band + H, 3 * W + 2 * GAP)
    assert (crop(view, boxes["visible"]) == VIS_BGR).all()
    assert (crop(view, boxes["infrared"]) == IR_LEVEL).all()
    assert (crop(view, boxes["fused"]) == FUSED_LEVEL).all()
    # the gaps between panes are background, not image
    assert (view[band:, W : W + GAP] == BACKGROUND).all()
    assert (view[band:, 2 * W + GAP : 2 * W + 2 * GAP] == BACKGROUND).all()


def test_every_pane_has_its_own_label_in_its_header_band() -> None:
    view = compose_view(*constant_panes(), layout="side-by-side")
    bands = [band_above(view, box) for box in pane_boxes(H, W, "side-by-side").values()]
    for band in bands:
        text = (band != BACKGROUND).any(axis=2)
        assert text.any(), "a header band without a label"
        assert band.max() == 255  # white text
    assert not np.array_equal(bands[0], bands[1])
    assert not np.array_equal(bands[1], bands[2])


def test_grid_adds_a_false_coloured_difference_pane() -> None:
    fused, vis, ir = constant_panes()
    view = compose_view(fused, vis, ir, "grid", diff_range=128)
    band = header_height(H)
    assert view.shape == (2 * (band + H) + GAP, 2 * W + GAP, 3)
    boxes = pane_boxes(H, W, "grid")
    assert boxes["fused"][:2] == (2 * band + H + GAP, 0)
    assert boxes["difference"][:2] == (2 * band + H + GAP, W + GAP)
    assert (crop(view, boxes["visible"]) == VIS_BGR).all()
    assert (crop(view, boxes["infrared"]) == IR_LEVEL).all()
    assert (crop(view, boxes["fused"]) == FUSED_LEVEL).all()
    # |170 - grey(red 200)| = |170 - 60| = 110 grey levels, shown at 110 * 255 / 128 = 219
    vis_grey = int(cv2.cvtColor(vis, cv2.COLOR_BGR2GRAY)[0, 0])
    level = round(abs(FUSED_LEVEL - vis_grey) * 255 / 128)
    expected = cv2.applyColorMap(np.full((1, 1), level, np.uint8), cv2.COLORMAP_INFERNO)[0, 0]
    assert (crop(view, boxes["difference"]) == expected).all()


def test_difference_pane_is_black_where_fused_equals_visible() -> None:
    _, vis, ir = constant_panes()
    view = compose_view(vis, vis, ir, "grid")
    black = cv2.applyColorMap(np.zeros((1, 1), np.uint8), cv2.COLORMAP_INFERNO)[0, 0]
    assert (crop(view, pane_boxes(H, W, "grid")["difference"]) == black).all()


def test_fused_layout_is_the_fused_image_as_bgr() -> None:
    fused, vis, ir = constant_panes()
    fused[10:20, 5:9] = 3
    view = compose_view(fused, vis, ir, "fused")
    assert view.shape == (H, W, 3)
    assert (view == fused[:, :, None]).all()


def test_inputs_of_another_size_are_resized_to_the_fused_size() -> None:
    fused, vis, ir = constant_panes()
    big_vis = cv2.resize(vis, (2 * W, 2 * H), interpolation=cv2.INTER_NEAREST)
    view = compose_view(fused, big_vis, ir[: H // 2, : W // 2], "side-by-side")
    boxes = pane_boxes(H, W, "side-by-side")
    assert (crop(view, boxes["visible"]) == VIS_BGR).all()
    assert (crop(view, boxes["infrared"]) == IR_LEVEL).all()


def test_bad_inputs_are_rejected() -> None:
    fused, vis, ir = constant_panes()
    with pytest.raises(ValueError, match="uint8"):
        compose_view(fused.astype(np.float32), vis, ir, "grid")
    with pytest.raises(ValueError, match="shape"):
        compose_view(fused, vis[:, :, :2], ir, "grid")
    with pytest.raises(ValueError, match="layout"):
        compose_view(fused, vis, ir, "mosaic")  # type: ignore[arg-type]


def fuse_cli(*args: str | Path) -> None:
    result = CliRunner().invoke(app, ["fuse", *map(str, args)])
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_fuse_command_writes_side_by_side_panes(
    tmp_path: Path, crop_pair: tuple[Path, Path], tiny_weights: Path
) -> None:
    ir_path, vis_path = crop_pair
    plain, side = tmp_path / "fused.png", tmp_path / "side.png"
    common = ("--ir", ir_path, "--vis", vis_path, "--weights", tiny_weights)
    fuse_cli(*common, "--out", plain)
    fuse_cli(*common, "--out", side, "--layout", "side-by-side")
    fused = cv2.imread(str(plain), cv2.IMREAD_COLOR)
    view = cv2.imread(str(side), cv2.IMREAD_COLOR)
    height, width = fused.shape[:2]
    boxes = pane_boxes(height, width, "side-by-side")
    assert view.shape == (header_height(height) + height, 3 * width + 2 * GAP, 3)
    assert np.array_equal(crop(view, boxes["fused"]), fused)
    ir = cv2.imread(str(ir_path), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(crop(view, boxes["infrared"]), cv2.cvtColor(ir, cv2.COLOR_GRAY2BGR))
    # the visible pane is the colour input rebuilt from the Y fed to FNet and its own chroma
    vis = cv2.imread(str(vis_path), cv2.IMREAD_COLOR).astype(np.int16)
    assert np.abs(crop(view, boxes["visible"]).astype(np.int16) - vis).max() <= 2


@pytest.mark.slow
def test_fuse_command_grid_in_grey_convention(
    tmp_path: Path, crop_pair: tuple[Path, Path], tiny_weights: Path
) -> None:
    ir_path, vis_path = crop_pair
    plain, grid = tmp_path / "fused.png", tmp_path / "grid.png"
    common = ("--ir", ir_path, "--vis", vis_path, "--weights", tiny_weights)
    fuse_cli(*common, "--color", "gray", "--out", plain)
    fuse_cli(*common, "--color", "gray", "--out", grid, "--layout", "grid")
    fused = cv2.imread(str(plain), cv2.IMREAD_GRAYSCALE)
    view = cv2.imread(str(grid), cv2.IMREAD_COLOR)
    boxes = pane_boxes(*fused.shape, "grid")
    assert np.array_equal(crop(view, boxes["fused"])[:, :, 0], fused)
    vis_grey = cv2.imread(str(vis_path), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(crop(view, boxes["visible"])[:, :, 1], vis_grey)
    assert crop(view, boxes["difference"]).std() > 0  # fusion changed something somewhere
