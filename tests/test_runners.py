"""open_runner's choices and the ONNX Runtime runner's error handling."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from fnet_deploy.backends.onnx_runner import OnnxRunner, execution_providers
from fnet_deploy.backends.tensorrt_runner import TensorRTRunner
from fnet_deploy.backends.torch_runner import TorchRunner
from fnet_deploy.export.onnx_graph import OnnxSpec, build_metadata, build_onnx, save_onnx
from fnet_deploy.helpers.errors import FnetError, InputError, MissingDependencyError
from fnet_deploy.inference.select import backend_for, open_runner
from fnet_deploy.model import FNet, ModelConfig, load_fnet, save_fnet
from tests.precision import assert_float32_accurate, float32_and_float64_runs

TINY = ModelConfig(filters=4, kernel_size=3, iterations=1)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(weights.safetensors, fnet.onnx) of one small random FNet."""
    folder = tmp_path_factory.mktemp("runners")
    torch.manual_seed(11)
    weights = folder / "tiny.safetensors"
    save_fnet(weights, FNet(TINY))
    model, info = load_fnet(weights)
    onnx_path = folder / "fnet.onnx"
    save_onnx(build_onnx(model, OnnxSpec(), build_metadata(info, OnnxSpec())), onnx_path)
    return weights, onnx_path


@pytest.mark.parametrize(
    ("name", "backend"),
    [
        ("w.pth", "torch"),
        ("w.safetensors", "torch"),
        ("m.ONNX", "onnxruntime"),
        ("m.engine", "tensorrt"),
        ("m.plan", "tensorrt"),
    ],
)
def test_backend_follows_the_file_type(name: str, backend: str) -> None:
    assert backend_for(Path(name)) == backend


def test_unknown_model_type_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"model\.tflite: unknown model type '\.tflite'"):
        open_runner("model.tflite")


def test_open_runner_builds_the_right_runner(
    tiny_files: tuple[Path, Path], onnx_cache: Path
) -> None:
    weights, onnx_path = tiny_files
    for default in (open_runner(None, weights=weights), open_runner(weights)):
        # weights without a backend on a CPU: the cached ONNX deploy form (tests/test_fastest.py)
        assert isinstance(default, OnnxRunner) and default.model_path.parent == onnx_cache
    deploy, training = open_runner(weights, "torch"), open_runner(weights, "torch-training")
    assert isinstance(deploy, TorchRunner) and deploy.form == "deploy"
    assert isinstance(training, TorchRunner) and training.form == "training"
    assert isinstance(open_runner(onnx_path), OnnxRunner)
    assert isinstance(open_runner(onnx_path, backend="onnxruntime"), OnnxRunner)


def test_open_runner_refuses_contradictions(tiny_files: tuple[Path, Path]) -> None:
    weights, onnx_path = tiny_files
    with pytest.raises(FnetError, match="unknown backend 'tflite'"):
        open_runner(onnx_path, backend="tflite")
    with pytest.raises(FnetError, match="onnxruntime model; the torch backend cannot run it"):
        open_runner(onnx_path, backend="torch")
    with pytest.raises(FnetError, match="needs an exported model file"):
        open_runner(None, backend="onnxruntime", weights=weights)
    with pytest.raises(FnetError, match="give --model or --weights, not both"):
        open_runner(weights, weights=weights)
    with pytest.raises(FnetError, match="--device 'gpu0': unknown device"):
        open_runner(weights, device="gpu0")


def test_missing_optional_dependency_names_the_extra(
    tiny_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    with pytest.raises(MissingDependencyError, match=r"fnet-deploy\[onnx\]"):
        open_runner(tiny_files[1])


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here"
)
def test_engine_without_tensorrt_names_the_tensorrt_extra(tmp_path: Path) -> None:
    engine = tmp_path / "fnet.engine"
    engine.write_bytes(b"an engine this machine cannot load")
    with pytest.raises(MissingDependencyError, match=r"fnet-deploy\[tensorrt\]"):
        open_runner(engine)


def test_a_missing_engine_is_not_found_not_a_missing_extra(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"fnet\.engine: model file not found"):
        open_runner(tmp_path / "fnet.engine")


def test_onnx_runner_matches_the_torch_runner(tiny_files: tuple[Path, Path]) -> None:
    weights, onnx_path = tiny_files
    rng = np.random.default_rng(2)
    feed = {name: rng.random((1, 1, 20, 28), dtype=np.float32) for name in ("ir", "vis")}
    with open_runner(onnx_path) as ort_runner, open_runner(weights, "torch") as torch_runner:
        fused = ort_runner.infer(feed)["fused"]
        from_torch = torch_runner.infer(feed)["fused"]
        assert ort_runner.last_inference_time > 0
    out32, ref64 = float32_and_float64_runs(load_fnet(weights)[0], feed["ir"], feed["vis"])
    assert_float32_accurate(fused, ref64, out32, "ONNX Runtime runner")
    assert_float32_accurate(from_torch, ref64, out32, "torch runner")
    assert not ort_runner.is_active


def test_onnx_runner_checks_the_recorded_precision(tiny_files: tuple[Path, Path]) -> None:
    runner = open_runner(tiny_files[1], precision="fp16")
    with pytest.raises(InputError, match="is a fp32 model, but fp16 was requested"):
        runner.activate()


def test_onnx_runner_thread_settings_reach_the_session(tiny_files: tuple[Path, Path]) -> None:
    runner = OnnxRunner(tiny_files[1], intra_op_threads=1, inter_op_threads=1)
    with runner:
        options = runner.session_options
        assert options.intra_op_num_threads == 1
        assert options.inter_op_num_threads == 1
        assert not options.enable_mem_pattern  # on the CPU: 37 % less peak memory, same speed


def test_onnx_runner_rejects_missing_corrupt_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="model file not found"):
        OnnxRunner(tmp_path / "absent.onnx").activate()
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a protobuf at all")
    with pytest.raises(InputError, match="ONNX Runtime cannot load the model"):
        OnnxRunner(corrupt).activate()
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "other",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), foreign)
    with pytest.raises(InputError, match=r"not an FNet model: inputs \['x'\]"):
        OnnxRunner(foreign).activate()


def test_execution_providers_by_device(tmp_path: Path) -> None:
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert execution_providers("cpu", ["CPUExecutionProvider"], tmp_path) == [
        "CPUExecutionProvider"
    ]
    cuda = execution_providers("cuda:1", gpu, tmp_path)
    assert cuda == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    trt = execution_providers("ort-trt", gpu, tmp_path)
    assert trt[0][0] == "TensorrtExecutionProvider"
    assert trt[0][1]["trt_engine_cache_path"] == str(tmp_path)  # type: ignore[index]
    assert [p if isinstance(p, str) else p[0] for p in trt[1:]] == gpu[1:]
    with pytest.raises(FnetError, match="install onnxruntime-gpu"):
        execution_providers("cuda", ["CPUExecutionProvider"], tmp_path)
    with pytest.raises(FnetError, match="--device 'gpu': unknown device"):
        execution_providers("gpu", gpu, tmp_path)


def test_tensorrt_runner_accepts_only_cuda_devices() -> None:
    with pytest.raises(
        FnetError, match=r"--device 'cpu': unknown device \(TensorRT runs on cuda\[:N\]\)"
    ):
        TensorRTRunner("fnet.engine", device="cpu")
    assert TensorRTRunner("fnet.engine", device="cuda:1").device_index == 1
