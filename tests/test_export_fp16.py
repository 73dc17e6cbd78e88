"""FP16 export: float16 inside / float32 at the boundary, and its accuracy in grey levels.

ONNX Runtime's CPU provider computes most of a float16 graph in float32 (no float16 Conv on
x86), so the accuracy checks run the float16 emulation of the exported graph (every tensor
rounded to float16) and cross-check that emulation against PyTorch's own float16 arithmetic.
The check over all real pairs is benchmarks/validate_fp16.py.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto

from fnet_deploy.assets import sample_pair
from fnet_deploy.backends.fp16 import float16_emulation, float16_problems
from fnet_deploy.backends.onnx_runner import OnnxRunner
from fnet_deploy.export.onnx_graph import OnnxSpec, build_onnx, save_onnx
from fnet_deploy.export.parity import ErrorStats, read_pair
from fnet_deploy.model import FNet, ModelConfig
from fnet_deploy.model.deploy import DeployOptions, to_deploy
from tests.conftest import fixture_pair
from tests.precision import assert_float32_accurate, float32_and_float64_runs

TINY = ModelConfig(filters=4, kernel_size=3, iterations=2)
REAL_PAIRS = [  # (name, (ir, visible), top-left of the crop)
    ("RoadScene/FLIR_00211", sample_pair(), (120, 200)),
    ("TNO/19", fixture_pair("TNO", "19.png"), (60, 30)),
    ("MSRS_train/00001D", fixture_pair("MSRS_train", "00001D.png"), (32, 64)),
]
SIZE = 64


def session(proto: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
    feed = {"ir": ir[None, None].astype(np.float32), "vis": vis[None, None].astype(np.float32)}
    return np.asarray(sess.run(["fused"], feed)[0])


def frames() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Real 64 x 64 crops from three data sets, then all-black, all-white and saturated IR."""
    real = []
    for name, (ir, vis), (top, left) in REAL_PAIRS:
        pair = read_pair(ir, vis, "ycbcr")
        crop = np.s_[top : top + SIZE, left : left + SIZE]
        real.append((name, pair.ir[crop], pair.vis[crop]))
    black, white = np.zeros((SIZE, SIZE), np.float32), np.ones((SIZE, SIZE), np.float32)
    return [
        *real,
        ("black", black, black),
        ("white", white, white),
        ("saturated IR", white, real[0][2]),
    ]


@pytest.fixture(scope="module")
def tiny_fp16() -> onnx.ModelProto:
    torch.manual_seed(3)
    return build_onnx(FNet(TINY), OnnxSpec(precision="fp16"), {})


@pytest.fixture(scope="module")
def trained_protos(default_model: FNet) -> dict[str, onnx.ModelProto]:
    return {
        precision: build_onnx(default_model, OnnxSpec(precision=precision), {})
        for precision in ("fp32", "fp16")
    }


def test_fp16_graph_is_float16_inside_and_float32_at_the_boundary(
    tiny_fp16: onnx.ModelProto,
) -> None:
    assert float16_problems(tiny_fp16) == []
    graph = tiny_fp16.graph
    casts = [node for node in graph.node if node.op_type == "Cast"]
    assert len(casts) == 3
    assert {node.input[0] for node in casts} >= {"ir", "vis"}
    assert not any(node.op_type == "Exp" for node in graph.node)
    assert any(node.op_type == "Sigmoid" for node in graph.node)
    floats = [i for i in graph.initializer if i.data_type != TensorProto.INT64]
    assert floats and all(i.data_type == TensorProto.FLOAT16 for i in floats)
    for value in (*graph.input, *graph.output):
        assert value.type.tensor_type.elem_type == TensorProto.FLOAT


def test_float16_problems_flags_float32_compute(tiny_fp16: onnx.ModelProto) -> None:
    problems = float16_problems(float16_emulation(tiny_fp16))
    assert any("initializer" in p for p in problems)
    assert any("Cast" in p and "inside the graph" in p for p in problems)
    assert any("intermediate tensor" in p for p in problems)


def test_emulation_rounds_every_tensor_and_runs_in_float32(tiny_fp16: onnx.ModelProto) -> None:
    emulated = float16_emulation(tiny_fp16)
    onnx.checker.check_model(emulated, full_check=True)
    floats = [i for i in emulated.graph.initializer if i.data_type != TensorProto.INT64]
    assert all(i.data_type == TensorProto.FLOAT for i in floats)
    compute = [n for n in tiny_fp16.graph.node if n.op_type != "Cast"]
    rounding = [
        n for n in emulated.graph.node if n.op_type == "Cast" and n.output[0].endswith("__f16")
    ]
    # One rounding per float16 tensor: every compute output and the two boundary casts.
    assert len(rounding) == sum(len(n.output) for n in compute) + 2
    x = np.linspace(0, 1, 24 * 24, dtype=np.float32).reshape(24, 24)
    out = run(session(emulated), x, x.T.copy())
    assert out.shape == (1, 1, 24, 24) and np.isfinite(out).all()
    # Every value the emulation produces is representable in float16.
    assert np.array_equal(out.astype(np.float16).astype(np.float32), out)


@pytest.mark.slow
def test_trained_fp32_export_matches_pytorch_on_real_crops(
    default_model: FNet, trained_protos: dict[str, onnx.ModelProto]
) -> None:
    fp32 = session(trained_protos["fp32"])
    for name, ir, vis in frames()[: len(REAL_PAIRS)]:
        out32, ref64 = float32_and_float64_runs(default_model, ir[None, None], vis[None, None])
        assert_float32_accurate(run(fp32, ir, vis), ref64, out32, f"FP32 ONNX on {name}")


@pytest.mark.slow
def test_fp16_stays_within_two_grey_levels_on_real_and_extreme_frames(
    trained_protos: dict[str, onnx.ModelProto],
) -> None:
    fp32 = session(trained_protos["fp32"])
    emulated = session(float16_emulation(trained_protos["fp16"]))
    ort_fp16 = session(trained_protos["fp16"])
    total = ErrorStats()
    for name, ir, vis in frames():
        reference = run(fp32, ir, vis)
        stats = ErrorStats()
        stats.add(reference, run(emulated, ir, vis))
        assert stats.nonfinite == 0, name
        assert stats.fraction_within(2.0) >= 0.999, f"{name}: {stats.describe()}"
        total.merge(stats)
        assert np.isfinite(run(ort_fp16, ir, vis)).all(), name
    assert total.max > 0.01, "float16 rounding should show up"
    assert total.quantile(0.999) <= 2.0


@pytest.mark.slow
def test_emulation_agrees_with_pytorch_float16_arithmetic(
    default_model: FNet, trained_protos: dict[str, onnx.ModelProto]
) -> None:
    name, ir, vis = frames()[0]
    ir, vis = ir[:24, :24].copy(), vis[:24, :24].copy()
    half = to_deploy(copy.deepcopy(default_model), dtype=torch.float16)
    with torch.no_grad():
        torch_fp16 = half(
            torch.from_numpy(ir)[None, None].half(), torch.from_numpy(vis)[None, None].half()
        )
    emulated = run(session(float16_emulation(trained_protos["fp16"])), ir, vis)
    reference = run(session(trained_protos["fp32"]), ir, vis)
    emulation_error, torch_error, between = ErrorStats(), ErrorStats(), ErrorStats()
    emulation_error.add(reference, emulated)
    torch_error.add(reference, torch_fp16.float().numpy())
    between.add(torch_fp16.float().numpy(), emulated)
    assert between.max < 1.5, name
    assert 0.25 < emulation_error.mean / max(torch_error.mean, 1e-9) < 4.0


def test_fp16_export_has_no_float32_compute_with_l1_and_col2im() -> None:
    torch.manual_seed(5)
    model = FNet(ModelConfig(filters=4, kernel_size=3, iterations=1, threshold="l1"))
    proto = build_onnx(model, OnnxSpec(precision="fp16", options=DeployOptions(col2im=True)), {})
    assert float16_problems(proto) == []
    ops = {node.op_type for node in proto.graph.node}
    assert {"Relu", "Col2Im"} <= ops


def test_onnx_runner_emulates_float16_models_on_request(
    tiny_fp16: onnx.ModelProto, tmp_path: Path
) -> None:
    torch.manual_seed(3)
    paths = {"fp16": tmp_path / "fp16.onnx", "fp32": tmp_path / "fp32.onnx"}
    save_onnx(tiny_fp16, paths["fp16"])
    save_onnx(build_onnx(FNet(TINY), OnnxSpec(), {}), paths["fp32"])
    x = np.linspace(0, 1, 20 * 28, dtype=np.float32).reshape(20, 28)
    feed = {"ir": x[None, None], "vis": x.T.copy().reshape(1, 1, 20, 28)}
    with OnnxRunner(paths["fp16"], emulate_fp16=True) as runner:
        emulated = runner.infer(feed)["fused"]
        assert runner.emulated
    expected = run(session(float16_emulation(tiny_fp16)), feed["ir"][0, 0], feed["vis"][0, 0])
    assert np.array_equal(emulated, expected)
    with OnnxRunner(paths["fp16"]) as runner:
        assert not runner.emulated
    with OnnxRunner(paths["fp32"], emulate_fp16=True) as runner:
        assert not runner.emulated
