"""Registration: calibration files, the valid crop, and warping real frames into alignment."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from fnet_deploy.backends.torch_runner import TorchRunner
from fnet_deploy.helpers.errors import FnetError, InputError
from fnet_deploy.model import FNet, ModelConfig
from fnet_deploy.runtime.gain import ThermalGain
from fnet_deploy.runtime.pipeline import StreamOptions, StreamPipeline
from fnet_deploy.runtime.registration import (
    FORMAT_NAME,
    Registrar,
    Registration,
    covered_rectangle,
    largest_rectangle,
    project,
)
from fnet_deploy.runtime.sink_uri import open_sink
from fnet_deploy.runtime.sources import open_source
from fnet_deploy.runtime.uri import parse_uri
from tests.conftest import nato


def brute_force_rectangle(mask: np.ndarray) -> int:
    best = 0
    h, w = mask.shape
    for top in range(h):
        for left in range(w):
            for bottom in range(top, h):
                for right in range(left, w):
                    if mask[top : bottom + 1, left : right + 1].all():
                        best = max(best, (bottom - top + 1) * (right - left + 1))
    return best


def test_largest_rectangle_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random((7, 9)) < 0.75
        x, y, w, h = largest_rectangle(mask)
        assert w * h == brute_force_rectangle(mask)
        assert mask[y : y + h, x : x + w].all()


def test_largest_rectangle_on_a_large_mask_stays_inside() -> None:
    mask = np.zeros((1100, 1300), bool)
    mask[37:1000, 101:1250] = True
    x, y, w, h = largest_rectangle(mask)
    assert mask[y : y + h, x : x + w].all()
    assert w * h >= 0.99 * (963 * 1149)


def test_covered_rectangle_of_a_shift() -> None:
    shift = np.array([[1.0, 0, 5.0], [0, 1.0, -3.0], [0, 0, 1]])
    x, y, w, h = covered_rectangle(shift, (100, 80), (100, 80))
    # IR pixels 0..99 land on 5..104 and rows -3..76; the cover is x 5..99, y 0..76 minus a
    # one-pixel safety margin at the edges the IR frame ends inside the visible frame.
    assert (x, y) == (6, 0) and (x + w, y + h) == (100, 76)


def test_calibration_file_round_trip(tmp_path: Path) -> None:
    matrix = np.array([[1.02, 0.01, 4.5], [-0.01, 0.99, -1.2], [1e-5, 2e-5, 1.0]])
    reg = Registration(matrix, "homography", (360, 270), (640, 480), (10, 5, 300, 250), {"a": 1})
    path = tmp_path / "cal.json"
    reg.save(path)
    doc = json.loads(path.read_text())
    assert doc["format"] == FORMAT_NAME and doc["valid_crop"] == [10, 5, 300, 250]
    back = Registration.load(path)
    np.testing.assert_allclose(back.matrix, matrix)
    assert (back.ir_size, back.vis_size, back.valid_crop, back.fit) == (
        (360, 270),
        (640, 480),
        (10, 5, 300, 250),
        {"a": 1},
    )
    del doc["valid_crop"]
    path.write_text(json.dumps(doc))
    assert Registration.load(path).valid_crop == covered_rectangle(matrix, (360, 270), (640, 480))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "other/1"}, "format is 'other/1'"),
        ({"ir_to_vis": [[1, 0], [0, 1]]}, "3 x 3 matrix"),
        ({"ir_to_vis": [[1, 0, 0], [2, 0, 0], [0, 0, 1]]}, "singular"),
        ({"transform": "spline"}, "transform must be one of"),
        ({"valid_crop": [0, 0, 500, 10]}, "outside the visible frame"),
        ({"ir_size": "big"}, "missing or malformed field"),
    ],
)
def test_bad_calibration_files(tmp_path: Path, change: dict, message: str) -> None:
    doc = Registration(np.eye(3), "affine", (64, 48), (64, 48), (0, 0, 64, 48)).to_dict()
    doc.update(change)
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=message):
        Registration.load(path)
    with pytest.raises(InputError, match="calibration file not found"):
        Registration.load(tmp_path / "missing.json")
    path.write_text("{not json")
    with pytest.raises(InputError, match="not a readable JSON"):
        Registration.load(path)


def test_registrar_aligns_a_displaced_real_frame() -> None:
    vis = nato("vi")
    # An "IR camera" seeing the visible scene 7 px further right and 4 px higher.
    to_ir = np.array([[1.0, 0, -7.0], [0, 1.0, 4.0], [0, 0, 1]])
    ir = cv2.warpPerspective(vis, to_ir, (360, 270))
    matrix = np.linalg.inv(to_ir)
    reg = Registration(
        matrix,
        "translation",
        (360, 270),
        (360, 270),
        covered_rectangle(matrix, (360, 270), (360, 270)),
    )
    registrar = Registrar(reg)
    ir_out, vis_out = registrar(ir, vis)
    x, y, w, h = reg.valid_crop
    assert registrar.size == (w, h) == (ir_out.shape[1], ir_out.shape[0])
    assert vis_out.shape == ir_out.shape
    np.testing.assert_array_equal(vis_out, vis[y : y + h, x : x + w])
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(ir_out[inner].astype(int) - vis_out[inner].astype(int)).max() <= 1
    unregistered = np.abs(ir[y : y + h, x : x + w].astype(int) - vis_out.astype(int))
    assert (
        unregistered[inner].mean() > 5 * np.abs(ir_out[inner].astype(int) - vis_out[inner]).mean()
    )


def test_registrar_resizes_to_the_model_size_and_keeps_colour() -> None:
    vis = cv2.cvtColor(nato("vi"), cv2.COLOR_GRAY2BGR)
    ir = cv2.resize(nato("ir"), (180, 135), interpolation=cv2.INTER_AREA).astype(np.uint16) * 200
    registrar = Registrar(None, out_size=(128, 96))
    ir_out, vis_out = registrar(ir, vis)
    assert ir_out.shape == (96, 128) and ir_out.dtype == np.uint16
    assert vis_out.shape == (96, 128, 3) and vis_out.dtype == np.uint8
    # Without calibration a smaller IR frame is stretched over the whole visible frame.
    assert registrar.registration is not None
    corners = project(registrar.registration.matrix, np.array([[-0.5, -0.5], [179.5, 134.5]]))
    np.testing.assert_allclose(corners, [[-0.5, -0.5], [359.5, 269.5]])


def test_identity_registration_passes_frames_through() -> None:
    ir, vis = nato("ir"), nato("vi")
    ir_out, vis_out = Registrar(None)(ir, vis)
    assert ir_out is ir
    np.testing.assert_array_equal(vis_out, vis)


def test_frames_that_do_not_fit_the_calibration(tmp_path: Path) -> None:
    reg = Registration(np.eye(3), "affine", (640, 512), (640, 480), (0, 0, 640, 480))
    with pytest.raises(FnetError, match=r"calibration is for IR 640x512 .* deliver IR 360x270"):
        Registrar(reg)(nato("ir"), nato("vi"))
    path = tmp_path / "cams.json"
    reg.save(path)
    with pytest.raises(FnetError, match=r"cams\.json is for IR 640x512 .* calibrate these"):
        Registrar(Registration.load(path))(nato("ir"), nato("vi"))


def test_a_frame_size_change_without_calibration_names_the_sizes(tmp_path: Path) -> None:
    registrar = Registrar(None)
    registrar(nato("ir"), nato("vi"))
    with pytest.raises(FnetError, match="from IR 360x270 and visible 360x270 to IR 180x135") as err:
        registrar(cv2.resize(nato("ir"), (180, 135)), nato("vi"))
    assert "calibration" not in str(err.value)
    # through the stream pipeline: the error names the sources and frames
    for modality in ("ir", "vi"):
        (tmp_path / modality).mkdir()
        for n in (2, 3):
            frame = nato(modality, n)
            if modality == "ir" and n == 3:
                frame = cv2.resize(frame, (180, 135))
            cv2.imwrite(str(tmp_path / modality / f"{n:06d}.png"), frame)
    pipeline = StreamPipeline(
        open_source(parse_uri(f"dir://{tmp_path / 'vi'}", "source")),
        open_source(parse_uri(f"dir://{tmp_path / 'ir'}", "source")),
        TorchRunner(FNet(ModelConfig(filters=2, kernel_size=3, iterations=1))),
        open_sink(parse_uri(f"dir://{tmp_path / 'out'}", "sink")),
        Registrar(None),
        ThermalGain(),
        StreamOptions(),
    )
    with pipeline.runner, pytest.raises(FnetError) as err:
        pipeline.run()
    assert str(err.value).startswith(f"dir://{tmp_path / 'ir'} frame 1 with dir://")
    assert "changed mid-stream" in str(err.value) and "calibration" not in str(err.value)
