"""ONNX export of the deploy form: graph checks, metadata, ONNX Runtime against PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from fnet_deploy import __version__
from fnet_deploy.backends.onnx_runner import OnnxRunner
from fnet_deploy.export.onnx_graph import (
    OnnxSpec,
    build_metadata,
    build_onnx,
    graph_problems,
    read_metadata,
    save_onnx,
)
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.model import FNet, ModelConfig, WeightsInfo, load_fnet, save_fnet
from fnet_deploy.model.deploy import DeployOptions
from tests.precision import assert_float32_accurate, float32_and_float64_runs

TINY = ModelConfig(filters=4, kernel_size=3, iterations=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[FNet, WeightsInfo]:
    """A small random FNet saved and re-loaded, so that it has a real WeightsInfo."""
    torch.manual_seed(7)
    path = tmp_path_factory.mktemp("tiny") / "tiny.safetensors"
    save_fnet(path, FNet(TINY), luminance="gray", provenance="unit test")
    return load_fnet(path)


@pytest.fixture(scope="module")
def tiny_onnx(tiny: tuple[FNet, WeightsInfo], tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, info = tiny
    path = tmp_path_factory.mktemp("onnx") / "fnet.onnx"
    save_onnx(build_onnx(model, OnnxSpec(), build_metadata(info, OnnxSpec())), path)
    return path


def assert_onnx_accurate(fused: np.ndarray, model: FNet, ir: np.ndarray, vis: np.ndarray) -> None:
    """ONNX Runtime's output is as close to float64 PyTorch as float32 PyTorch is."""
    out32, ref64 = float32_and_float64_runs(model, ir, vis)
    assert_float32_accurate(fused, ref64, out32, "ONNX Runtime")


def test_graph_is_valid_dynamic_and_made_of_plain_operators(tiny_onnx: Path) -> None:
    proto = onnx.load(str(tiny_onnx))
    onnx.checker.check_model(proto, full_check=True)
    assert graph_problems(proto, OnnxSpec()) == []
    assert {entry.domain: entry.version for entry in proto.opset_import}[""] == 18
    for value in (*proto.graph.input, *proto.graph.output):
        dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        assert dims == ["batch", 1, "height", "width"]
    ops = {node.op_type for node in proto.graph.node}
    assert ops <= {"Conv", "Mul", "Sub", "Add", "Sigmoid", "Sign", "Slice", "Concat"}
    convs = [node for node in proto.graph.node if node.op_type == "Conv"]
    assert len(convs) == 3 * (1 + 2 * TINY.iterations) + 3
    for node in convs:
        attributes = {attr.name: attr for attr in node.attribute}
        assert list(attributes["pads"].ints) == [1, 1, 1, 1]
        assert attributes.get("auto_pad") is None or attributes["auto_pad"].s == b"NOTSET"
    assert all(not node.metadata_props for node in proto.graph.node)


def test_metadata_records_config_luminance_weights_and_version(
    tiny_onnx: Path, tiny: tuple[FNet, WeightsInfo]
) -> None:
    _, info = tiny
    meta = read_metadata(tiny_onnx)
    assert json.loads(meta["model_config"]) == TINY.to_dict()
    assert meta["luminance"] == "gray"
    assert meta["weights_sha256"] == info.sha256 and len(info.sha256) == 64
    assert meta["package_version"] == __version__
    assert meta["precision"] == "fp32"
    assert meta["opset"] == "18"
    assert "dynamo=True" in meta["exporter"]
    assert json.loads(meta["deploy_options"]) == {
        "merge_encoders": False,
        "col2im": False,
        "exp_gate": False,
    }


def test_onnx_runtime_matches_torch_at_several_shapes(
    tiny_onnx: Path, tiny: tuple[FNet, WeightsInfo]
) -> None:
    model, _ = tiny
    rng = np.random.default_rng(0)
    runner = OnnxRunner(tiny_onnx, intra_op_threads=1)
    with runner:
        assert runner.providers == ["CPUExecutionProvider"]
        assert runner.precision == "fp32"
        for shape in [(2, 1, 40, 56), (1, 1, 33, 17), (1, 1, 1, 5)]:
            ir, vis = (rng.random(shape, dtype=np.float32) for _ in range(2))
            fused = runner.infer({"ir": ir, "vis": vis})["fused"]
            assert fused.shape == shape and fused.dtype == np.float32
            assert_onnx_accurate(fused, model, ir, vis)


def test_fixed_shape_export_rejects_other_sizes_clearly(
    tiny: tuple[FNet, WeightsInfo], tmp_path: Path
) -> None:
    model, info = tiny
    spec = OnnxSpec(batch=1, height=24, width=32)
    proto = build_onnx(model, spec, build_metadata(info, spec))
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, 24, 32]
    path = tmp_path / "fixed.onnx"
    save_onnx(proto, path)
    rng = np.random.default_rng(1)
    ir, vis = (rng.random((1, 1, 24, 32), dtype=np.float32) for _ in range(2))
    with OnnxRunner(path) as runner:
        fused = runner.infer({"ir": ir, "vis": vis})["fused"]
        assert_onnx_accurate(fused, model, ir, vis)
        with pytest.raises(FnetError, match=r"1x1x30x32.*1x1x24x32.*--size"):
            runner.infer({"ir": np.zeros((1, 1, 30, 32), np.float32), "vis": ir[:, :, :30]})


def test_graph_problems_reports_a_graph_that_breaks_its_promise(tiny_onnx: Path) -> None:
    proto = onnx.load(str(tiny_onnx))
    problems = graph_problems(proto, OnnxSpec(height=8, width=8, opset=17))
    assert any("opset" in p for p in problems)
    assert any("expected ['batch', 1, 8, 8]" in p for p in problems)
    proto.graph.input[0].name = "thermal"
    assert graph_problems(proto, OnnxSpec())


def test_col2im_export_matches_torch_and_keeps_dynamic_shapes(
    tiny: tuple[FNet, WeightsInfo], tmp_path: Path
) -> None:
    model, info = tiny
    spec = OnnxSpec(options=DeployOptions(col2im=True))
    proto = build_onnx(model, spec, build_metadata(info, spec))
    assert sum(node.op_type == "Col2Im" for node in proto.graph.node) == 3 * TINY.iterations + 3
    path = tmp_path / "col2im.onnx"
    save_onnx(proto, path)
    rng = np.random.default_rng(3)
    with OnnxRunner(path) as runner:
        for shape in [(1, 1, 29, 41), (2, 1, 16, 8)]:
            ir, vis = (rng.random(shape, dtype=np.float32) for _ in range(2))
            fused = runner.infer({"ir": ir, "vis": vis})["fused"]
            assert_onnx_accurate(fused, model, ir, vis)


def test_spec_validation() -> None:
    with pytest.raises(FnetError, match="both --height and --width"):
        OnnxSpec(height=480)
    with pytest.raises(FnetError, match="--batch must be >= 1"):
        OnnxSpec(batch=0)
    with pytest.raises(FnetError, match="--col2im needs opset >= 18"):
        OnnxSpec(opset=17, options=DeployOptions(col2im=True))
