"""``fnet-deploy export`` and ``fnet-deploy check`` end to end on a small model and real crops."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import pytest
import torch
from typer.testing import CliRunner

from fnet_deploy.assets import sample_pair
from fnet_deploy.cli import app
from fnet_deploy.export.onnx_graph import read_metadata
from fnet_deploy.model import FNet, ModelConfig, save_fnet
from fnet_deploy.model.weights import file_sha256

TINY = ModelConfig(filters=4, kernel_size=3, iterations=2)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real crop pairs (of RoadScene FLIR_00211) in ir/ and vis/ folders."""
    root = tmp_path_factory.mktemp("cli")
    ir_path, vis_path = sample_pair()
    for name, (top, left) in (("a", (120, 200)), ("b", (40, 300))):
        for modality, path, flags in (("ir", ir_path, cv2.IMREAD_GRAYSCALE), ("vis", vis_path, 1)):
            image = cv2.imread(str(path), flags)
            (root / modality).mkdir(exist_ok=True)
            cv2.imwrite(
                str(root / modality / f"{name}.png"), image[top : top + 48, left : left + 64]
            )
    return root


@pytest.fixture(scope="module")
def exported(workspace: Path, default_weights: Path) -> tuple[Path, str]:
    """The shipped trained weights exported to out/ (FP32 and FP16), parity checked on pair a."""
    result = CliRunner().invoke(
        app,
        [
            "export",
            "--weights",
            str(default_weights),
            "--out",
            str(workspace / "out"),
            "--precision",
            "fp16",
            "--ir",
            str(workspace / "ir" / "a.png"),
            "--vis",
            str(workspace / "vis" / "a.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    return workspace / "out", result.output


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.slow
def test_export_writes_both_models_and_reports_parity(
    exported: tuple[Path, str], default_weights: Path
) -> None:
    out, output = exported
    assert (out / "fnet.onnx").is_file() and (out / "fnet_fp16.onnx").is_file()
    assert read_metadata(out / "fnet.onnx")["precision"] == "fp32"
    fp16 = read_metadata(out / "fnet_fp16.onnx")
    assert fp16["precision"] == "fp16"
    assert fp16["weights_sha256"] == file_sha256(default_weights)
    text = " ".join(output.split())
    assert "parity fnet.onnx (ORT CPU) vs PyTorch on a 64x48: max" in text
    assert "fnet_fp16.onnx (float16 arithmetic emulated on CPU)" in text
    assert text.count("[PASS") == 2


@pytest.mark.slow
def test_check_passes_an_fp32_model_on_one_pair(
    exported: tuple[Path, str], workspace: Path, default_weights: Path
) -> None:
    out, _ = exported
    code, output = invoke(
        "check",
        str(out / "fnet.onnx"),
        "--ir",
        str(workspace / "ir" / "b.png"),
        "--vis",
        str(workspace / "vis" / "b.png"),
        "--weights",
        str(default_weights),
    )
    assert code == 0, output
    assert "PASS: p99.9" in output and "(tolerance 0.5)" in output
    assert "max" in output and "mean" in output


@pytest.mark.slow
def test_check_reports_every_pair_of_two_folders(
    exported: tuple[Path, str], workspace: Path, default_weights: Path
) -> None:
    out, _ = exported
    code, output = invoke(
        "check",
        str(out / "fnet.onnx"),
        "--ir",
        str(workspace / "ir"),
        "--vis",
        str(workspace / "vis"),
        "--weights",
        str(default_weights),
    )
    assert code == 0, output
    assert "all pixels" in output and "2 pair(s)" in output


@pytest.mark.slow
def test_check_fails_with_exit_1_beyond_the_tolerance(
    exported: tuple[Path, str], workspace: Path, default_weights: Path
) -> None:
    out, _ = exported
    code, output = invoke(
        "check",
        str(out / "fnet_fp16.onnx"),
        "--ir",
        str(workspace / "ir" / "a.png"),
        "--vis",
        str(workspace / "vis" / "a.png"),
        "--weights",
        str(default_weights),
        "--stat",
        "max",
        "--tolerance",
        "0",
    )
    assert code == 1, output
    text = " ".join(output.split())
    assert "FAIL: max" in text and "(onnxruntime, fp16, float16 emulated on CPU)" in text


@pytest.mark.slow
def test_check_compares_several_models_against_one_reference_run(
    exported: tuple[Path, str], workspace: Path, default_weights: Path
) -> None:
    out, _ = exported
    pair = ["--ir", str(workspace / "ir"), "--vis", str(workspace / "vis")]
    models = [str(out / "fnet.onnx"), str(out / "fnet_fp16.onnx")]
    code, output = invoke("check", *models, *pair, "--weights", str(default_weights))
    assert code == 0, output
    text = " ".join(output.split())
    assert "fnet.onnx (onnxruntime, fp32) vs PyTorch fp32" in text
    assert "fnet_fp16.onnx (onnxruntime, fp16, float16 emulated on CPU)" in text
    assert "(tolerance 0.5)" in text and "(tolerance 2)" in text
    assert text.count("PASS:") == 2 and text.count("all pixels") == 2
    code, output = invoke(
        "check", *models, *pair, "--weights", str(default_weights), "--no-emulate-on-cpu"
    )
    assert code == 0, output
    assert "emulated" not in output and "(onnxruntime, fp16)" in " ".join(output.split())


@pytest.mark.slow
def test_check_warns_about_other_weights_and_rejects_bad_input(
    exported: tuple[Path, str], workspace: Path, tmp_path: Path
) -> None:
    out, _ = exported
    torch.manual_seed(99)
    other = tmp_path / "other.safetensors"
    save_fnet(other, FNet(TINY))
    pair = ["--ir", str(workspace / "ir" / "a.png"), "--vis", str(workspace / "vis" / "a.png")]
    code, output = invoke("check", str(out / "fnet.onnx"), *pair, "--weights", str(other))
    assert code == 1 and "was exported from other weights" in output
    missing = str(tmp_path / "missing.png")
    code, output = invoke(
        "check", str(out / "fnet.onnx"), "--ir", missing, "--vis", missing, "--weights", str(other)
    )
    assert code == 2 and f"error: {missing}: file not found" in output


def test_export_checks_the_parity_pair_before_exporting(tmp_path: Path) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    out = tmp_path / "out"
    code, output = invoke(
        "export", "--weights", "w.pth", "--out", str(out), "--ir", str(junk), "--vis", str(junk)
    )
    assert code == 2 and "junk.png: cannot decode image" in output
    assert not out.exists()


def test_export_rejects_inconsistent_options(tmp_path: Path) -> None:
    weights = str(tmp_path / "weights.safetensors")
    code, output = invoke("export", "--weights", weights, "--out", str(tmp_path), "--height", "64")
    assert code == 2 and "both --height and --width" in output
    code, output = invoke(
        "export",
        "--weights",
        weights,
        "--out",
        str(tmp_path),
        "--precision",
        "int8",
        "--calib-ir",
        "ir",
    )
    assert code == 2 and "both --calib-ir and --calib-vis" in output
    code, output = invoke(
        "export", "--weights", weights, "--out", str(tmp_path), "--engine", "--col2im"
    )
    assert code == 2 and "TensorRT does not support" in output


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here"
)
def test_export_engine_without_tensorrt_names_the_extra(tmp_path: Path) -> None:
    code, output = invoke(
        "export",
        "--weights",
        str(tmp_path / "weights.safetensors"),
        "--out",
        str(tmp_path),
        "--engine",
    )
    assert code == 2 and "pip install 'fnet-deploy[tensorrt]'" in output
    assert not (tmp_path / "fnet.onnx").exists()
