"""``export --triton-repo``: the config.pbtxt parses as Triton's own ModelConfig and agrees with
the exported ONNX graph (names, types, dims, batch), on the tiny model and real crops."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fnet_deploy.cli import app
from fnet_deploy.export.triton_repo import (
    DEFAULT_MAX_BATCH,
    DEFAULT_QUEUE_DELAY_US,
    FUSED_RANGE,
    GraphFacts,
    TensorFacts,
    TritonOptions,
    config_text,
)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tritonclient") is None or importlib.util.find_spec("onnx") is None,
    reason="needs tritonclient (its ModelConfig protobuf: pip install 'fnet-deploy[serve]') "
    "and onnx",
)

ONNX_TO_TRITON = {1: "TYPE_FP32", 10: "TYPE_FP16"}


def parse(text: str) -> Any:
    """The text as Triton's ModelConfig message (what the server reads)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(text, model_config_pb2.ModelConfig())


def onnx_dims(value: Any) -> list[int]:
    return [
        d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim
    ]


def check_against_graph(config: Any, graph: Any, batching: bool) -> None:
    """Every input and output of the config is the graph's, in order, with its type and dims."""
    from tritonclient.grpc import model_config_pb2

    pairs = [(config.input, graph.input), (config.output, graph.output)]
    for tensors, values in pairs:
        assert [t.name for t in tensors] == [v.name for v in values]
        for tensor, value in zip(tensors, values, strict=True):
            expected = ONNX_TO_TRITON[value.type.tensor_type.elem_type]
            assert model_config_pb2.DataType.Name(tensor.data_type) == expected
            dims = onnx_dims(value)
            assert list(tensor.dims) == (dims[1:] if batching else dims)


@pytest.fixture(scope="module")
def exported_repo(tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path) -> Path:
    """The tiny model exported with --triton-repo (CPU instance) to repo/ (parity on the crop)."""
    root = tmp_path_factory.mktemp("triton")
    result = CliRunner().invoke(
        app,
        [
            "export",
            "--weights",
            str(tiny_weights),
            "--out",
            str(root / "out"),
            "--triton-repo",
            str(root / "repo"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    return root


def test_exported_repository_is_a_triton_model_config_of_the_graph(exported_repo: Path) -> None:
    import onnx

    folder = exported_repo / "repo" / "fnet"
    config = parse((folder / "config.pbtxt").read_text())
    graph = onnx.load(folder / "1" / "model.onnx").graph
    assert (folder / "1" / "model.onnx").read_bytes() == (
        exported_repo / "out" / "fnet.onnx"
    ).read_bytes()
    assert config.name == "fnet"
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == DEFAULT_MAX_BATCH
    assert [v.name for v in graph.input] == ["ir", "vis"]
    assert [v.name for v in graph.output] == ["fused"]
    assert all(onnx_dims(v)[0] == -1 for v in [*graph.input, *graph.output])
    check_against_graph(config, graph, batching=True)
    assert [list(t.dims) for t in config.input] == [[1, -1, -1], [1, -1, -1]]
    assert config.dynamic_batching.max_queue_delay_microseconds == DEFAULT_QUEUE_DELAY_US
    assert len(config.instance_group) == 1
    assert config.instance_group[0].kind == config.instance_group[0].KIND_CPU
    assert config.parameters["fused_range"].string_value == FUSED_RANGE
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator


def fnet_facts(batch: int, height: int, width: int) -> GraphFacts:
    """The I/O of an FNet graph with these dims (``-1``: dynamic)."""
    shape = (batch, 1, height, width)
    return GraphFacts(
        (TensorFacts("ir", "TYPE_FP32", shape), TensorFacts("vis", "TYPE_FP32", shape)),
        (TensorFacts("fused", "TYPE_FP32", shape),),
    )


def test_gpu_instance_with_the_fp16_tensorrt_accelerator() -> None:
    options = TritonOptions(name="fusion", gpu=1, accelerator="tensorrt-fp16", queue_delay_us=100)
    config = parse(config_text(fnet_facts(-1, -1, -1), options))
    assert config.name == "fusion"
    group = config.instance_group[0]
    assert group.kind == group.KIND_GPU and list(group.gpus) == [1]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert accelerator.parameters["precision_mode"] == "FP16"


def test_a_fixed_batch_graph_is_served_unbatched_with_its_whole_shape() -> None:
    config = parse(config_text(fnet_facts(2, 480, 640), TritonOptions(gpu=None)))
    assert config.max_batch_size == 0
    assert not config.HasField("dynamic_batching")
    assert [list(t.dims) for t in config.output] == [[2, 1, 480, 640]]


def test_fixed_size_graph_keeps_its_height_and_width() -> None:
    config = parse(config_text(fnet_facts(-1, 480, 640), TritonOptions(gpu=None)))
    assert config.max_batch_size == DEFAULT_MAX_BATCH
    assert [list(t.dims) for t in config.input] == [[1, 480, 640], [1, 480, 640]]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--triton-accelerator", "tensorrt", "--device", "cpu"], "--triton-repo: the TensorRT"),
        (["--triton-accelerator", "fast"], "--triton-repo: Triton accelerator 'fast'"),
        (["--triton-name", "a/b"], "--triton-repo: Triton model name 'a/b'"),
    ],
)
def test_bad_triton_options_are_one_line_before_work(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    result = CliRunner().invoke(
        app,
        ["export", "--out", str(tmp_path / "out"), "--triton-repo", str(tmp_path / "r"), *args],
    )
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "r").exists()
