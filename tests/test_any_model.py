"""Every command that fuses images runs any model form: weights, ONNX, (TensorRT on a GPU).

``fuse`` and ``eval`` take ``--model`` beside ``--weights``; the result of an exported model
matches the weights it came from within one grey level (the two round differently in float32,
and the output is quantised to 8 bits), whole or in tiles. A model that takes a range of sizes
(a fixed-size export, a TensorRT profile) gets tiles that fit it, or a one-line refusal.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fnet_deploy.backends.base import SizeRange
from fnet_deploy.backends.torch_runner import TorchRunner
from fnet_deploy.cli import app
from fnet_deploy.export.onnx_graph import OnnxSpec, build_metadata, build_onnx, save_onnx
from fnet_deploy.inference.images import FuseOptions, ImageFuser
from fnet_deploy.model import FNet
from fnet_deploy.model.weights import load_fnet, save_fnet
from tests.conftest import TINY, fixture_path

pytest.importorskip("onnxruntime", reason="the onnx extra runs exported models")


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Weights of a small seeded FNet, its dynamic ONNX export and a 64 x 80 fixed-size one."""
    folder = tmp_path_factory.mktemp("any_model")
    torch.manual_seed(5)
    weights = folder / "tiny.safetensors"
    save_fnet(weights, FNet(TINY))
    model, info = load_fnet(weights)
    files = {"weights": weights}
    for name, spec in (("dynamic", OnnxSpec()), ("fixed", OnnxSpec(height=64, width=80))):
        files[name] = folder / f"{name}.onnx"
        save_onnx(build_onnx(model, spec, build_metadata(info, spec)), files[name])
    return files


def fuse(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["fuse", *map(str, args)])
    return result.exit_code, result.output


def grey_levels(a: Path, b: Path) -> int:
    """Largest difference between two 8-bit images."""
    first, second = (cv2.imread(str(p), cv2.IMREAD_UNCHANGED).astype(int) for p in (a, b))
    assert first.shape == second.shape
    return int(np.abs(first - second).max())


def test_fuse_runs_an_onnx_model_like_its_weights(
    tmp_path: Path, crop_pair: tuple[Path, Path], tiny_files: dict[str, Path]
) -> None:
    ir, vis = crop_pair
    reference = tmp_path / "weights.png"
    code, output = fuse(
        "--ir", ir, "--vis", vis, "--out", reference, "--weights", tiny_files["weights"],
        "--backend", "torch-training",
    )  # fmt: skip
    assert code == 0, output
    for name, extra in (("dynamic", ()), ("fixed", ()), ("dynamic", ("--tile", "16"))):
        out = tmp_path / f"{name}{len(extra)}.png"
        code, output = fuse(
            "--ir", ir, "--vis", vis, "--out", out, "--model", tiny_files[name], *extra
        )
        assert code == 0, output
        assert f"model: {name}.onnx, onnxruntime" in " ".join(output.split())
        assert grey_levels(out, reference) <= 1, (name, extra)


def test_a_fixed_size_model_refuses_other_sizes_in_one_line(
    tmp_path: Path, crop_pair: tuple[Path, Path], tiny_files: dict[str, Path]
) -> None:
    ir, vis = crop_pair
    small_ir, small_vis = tmp_path / "small_ir.png", tmp_path / "small_vis.png"
    cv2.imwrite(str(small_ir), cv2.imread(str(ir))[:40, :50])
    cv2.imwrite(str(small_vis), cv2.imread(str(vis))[:40, :50])
    out = tmp_path / "out.png"
    cases = [
        ((small_ir, small_vis), (), "50x40 (W x H) is smaller than the model takes (80x64"),
        ((ir, vis), ("--tile", "16"), "exceed what the model takes (80x64 (W x H) only); fuse "
         "without --tile"),
    ]  # fmt: skip
    for (ir_path, vis_path), extra, message in cases:
        code, output = fuse(
            "--ir", ir_path, "--vis", vis_path, "--out", out, "--model", tiny_files["fixed"],
            *extra,
        )  # fmt: skip
        lines = [line for line in output.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1, output
        assert lines[0].startswith("error: ") and message in lines[0], output
        assert not out.exists()


def test_an_unknown_model_file_is_one_line(tmp_path: Path, crop_pair: tuple[Path, Path]) -> None:
    ir, vis = crop_pair
    model = tmp_path / "fnet.tflite"
    model.write_bytes(b"x")
    code, output = fuse("--ir", ir, "--vis", vis, "--out", tmp_path / "o.png", "--model", model)
    assert code == 2 and "unknown model type '.tflite'" in output, output


class RangeRunner(TorchRunner):
    """A torch runner that, like a TensorRT engine with a profile, takes 16..40 pixel sides
    only, and records the window sizes it was given."""

    def __init__(self, model: FNet) -> None:
        super().__init__(model, form="training")
        self.windows: list[tuple[int, int]] = []

    def _activate(self) -> None:
        super()._activate()
        self.size_range = SizeRange((16, 16), (40, 40))

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        height, width = feed["ir"].shape[-2:]
        assert self.size_range is not None and self.size_range.fits(height, width)
        self.windows.append((height, width))
        return super()._infer(feed)


def test_a_size_range_gets_tiles_that_fit_it(
    crop_pair: tuple[Path, Path], tiny_files: dict[str, Path]
) -> None:
    model = load_fnet(tiny_files["weights"])[0]
    ir, vis = crop_pair
    told: list[str] = []
    with RangeRunner(model) as limited, TorchRunner(model, form="training") as whole:
        tiled = ImageFuser(limited, None, torch.device("cpu"), FuseOptions(), told.append)
        expected = ImageFuser(whole, None, torch.device("cpu"), FuseOptions())
        got = tiled.fuse_files(ir, vis)
        assert np.abs(got.astype(int) - expected.fuse_files(ir, vis).astype(int)).max() <= 1
    radius = TINY.receptive_radius
    assert len(limited.windows) > 1
    assert all(max(window) <= 40 for window in limited.windows)
    largest = 40 - 2 * radius  # the windows of a tile are the tile plus the radius each side
    assert told == [
        "fusing 80x64 is larger than the model takes (W x H from 16x16 to 40x40): fusing in "
        f"tiles of {largest} (exact; --tile sets the size)"
    ]


def test_eval_fuses_with_an_exported_model(tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    for sub in ("ir", "vi"):
        (tmp_path / sub).mkdir()
        for name in ("19", "20"):
            image = cv2.imread(str(fixture_path("TNO", sub, f"{name}.png")))
            cv2.imwrite(str(tmp_path / sub / f"{name}.png"), image[:48, :64])
    out = tmp_path / "ev"
    args = ["--ir", tmp_path / "ir", "--vis", tmp_path / "vi", "--out", out]
    result = CliRunner().invoke(
        app, ["eval", *map(str, args), "--model", str(tiny_files["dynamic"])]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "results.json").read_text())
    assert "fnet" in json.dumps(summary)
    assert sorted(p.name for p in (out / "fused" / "fnet").iterdir()) == ["19.png", "20.png"]
