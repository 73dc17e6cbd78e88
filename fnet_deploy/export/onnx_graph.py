"""ONNX export of FNet's deploy form, with the graph checks every export must pass.

Exporter path (pinned): the deploy form is captured with ``torch.export.export(strict=False)``
and converted by ``torch.onnx.export(dynamo=True)`` (the ExportedProgram-based exporter of
torch >= 2.9, with its onnxscript graph optimisation). The TorchScript exporter
(``dynamo=False``) gives an equally correct graph but leaves 150 ``Constant`` nodes and is
deprecated; the dynamo path gives every constant as an initializer and clean dynamic dimensions.

The graph: inputs ``ir`` and ``vis`` (N x 1 x H x W float32 in [0, 1]), output ``fused``
(N x 1 x H x W float32, unclamped); N, H, W are symbolic (``batch``, ``height``, ``width``)
unless fixed. Convolutions carry explicit ``pads`` (no ``auto_pad``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import onnx
import torch
from onnx import TensorProto

from fnet_deploy import __version__
from fnet_deploy.backends.base import INPUT_NAMES, OUTPUT_NAME
from fnet_deploy.backends.fp16 import Float16Boundary, float16_problems
from fnet_deploy.helpers.atomic import write_bytes_atomic
from fnet_deploy.helpers.errors import FnetError, InputError
from fnet_deploy.model.deploy import DeployOptions, to_deploy
from fnet_deploy.model.fnet import FNet
from fnet_deploy.model.weights import WeightsInfo

OnnxPrecision = Literal["fp32", "fp16"]

MIN_TORCH = "2.9"
"""The oldest torch with the pinned exporter path (pyproject.toml's lower bound for torch)."""

OPSET = 18
"""Default ONNX opset (ai.onnx). TensorRT 10 and ONNX Runtime >= 1.14 support it."""

METADATA_PREFIX = "fnet_deploy."
FORMAT_NAME = "fnet-deploy-onnx/1"
DYNAMIC_DIMS = ("batch", "height", "width")
_EXAMPLE_SIZE = 64


@dataclass(frozen=True)
class OnnxSpec:
    """What to export.

    Attributes:
        precision: ``fp32``, or ``fp16`` (float16 compute, float32 inputs and outputs).
        batch: fixed N, or ``None`` for a dynamic batch.
        height: fixed H, or ``None`` for dynamic (give both height and width or neither).
        width: fixed W, or ``None`` for dynamic.
        opset: ai.onnx opset version.
        options: deploy-form conversion options.
    """

    precision: OnnxPrecision = "fp32"
    batch: int | None = None
    height: int | None = None
    width: int | None = None
    opset: int = OPSET
    options: DeployOptions = field(default_factory=DeployOptions)

    def __post_init__(self) -> None:
        if (self.height is None) != (self.width is None):
            raise FnetError("give both --height and --width, or neither (dynamic size)")
        for name in ("batch", "height", "width"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise FnetError(f"--{name} must be >= 1, got {value}")
        if self.precision not in ("fp32", "fp16"):
            raise FnetError(f"unknown ONNX precision {self.precision!r} (fp32 or fp16)")
        if self.options.col2im and self.opset < 18:
            raise FnetError(f"--col2im needs opset >= 18 (Col2Im), got --opset {self.opset}")

    def input_dims(self) -> list[int | str]:
        """The declared input shape: ints for fixed dimensions, names for dynamic ones."""
        return [
            self.batch if self.batch is not None else "batch",
            1,
            self.height if self.height is not None else "height",
            self.width if self.width is not None else "width",
        ]


def exporter_description() -> str:
    """The pinned exporter path, with the torch version, for metadata and reports."""
    return (
        "torch.export.export(strict=False) + torch.onnx.export(dynamo=True), "
        f"torch {torch.__version__}"
    )


def build_metadata(info: WeightsInfo, spec: OnnxSpec) -> dict[str, str]:
    """The ``metadata_props`` of an exported model (all values are strings)."""
    values: dict[str, Any] = {
        "format": FORMAT_NAME,
        "precision": spec.precision,
        "model_config": json.dumps(info.config.to_dict(), sort_keys=True),
        "deploy_options": json.dumps(spec.options.to_dict(), sort_keys=True),
        "luminance": info.luminance,
        "weights_sha256": info.sha256,
        "weights_file": info.path.name,
        "weights_provenance": info.provenance,
        "package_version": __version__,
        "exporter": exporter_description(),
        "opset": str(spec.opset),
        "io": "inputs ir, vis: N x 1 x H x W float32 in [0, 1]; output fused: N x 1 x H x W "
        "float32, unclamped (clamp to [0, 1] before display)",
    }
    return {f"{METADATA_PREFIX}{key}": str(value) for key, value in values.items()}


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence the exporter's warnings about optional packages and deprecated internals."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def build_onnx(model: FNet, spec: OnnxSpec, metadata: dict[str, str]) -> onnx.ModelProto:
    """Export the deploy form of ``model`` to an in-memory ONNX model and check it.

    Args:
        model: the trained FNet (training form, any device); not modified.
        spec: precision, fixed or dynamic shapes, opset and conversion options.
        metadata: ``metadata_props`` to attach (see :func:`build_metadata`).

    Raises:
        FnetError: the exported graph fails a check (:func:`graph_problems`).
    """
    if spec.precision == "fp16":
        half = to_deploy(model, spec.options, torch.float16).cpu()
        module: torch.nn.Module = Float16Boundary(half)
    else:
        module = to_deploy(model, spec.options, torch.float32).cpu()
    dims = spec.input_dims()
    example = torch.rand(
        *(d if isinstance(d, int) else (2 if d == "batch" else _EXAMPLE_SIZE) for d in dims)
    )
    symbolic = {i: torch.export.Dim(d) for i, d in enumerate(dims) if isinstance(d, str)}
    dynamic_shapes = {name: dict(symbolic) for name in INPUT_NAMES} if symbolic else None
    with quiet_exporter(), torch.no_grad():
        program = torch.export.export(
            module, (example, example.clone()), dynamic_shapes=dynamic_shapes, strict=False
        )
        onnx_program = torch.onnx.export(
            program,
            (example, example.clone()),
            dynamic_shapes=dynamic_shapes,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            opset_version=spec.opset,
            dynamo=True,
            optimize=True,
            external_data=False,
            verbose=False,
        )
    assert onnx_program is not None
    proto = onnx_program.model_proto
    _clean(proto, metadata)
    problems = graph_problems(proto, spec)
    if problems:
        raise FnetError(f"exported ONNX graph failed its checks: {'; '.join(problems[:5])}")
    return proto


def _clean(proto: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Drop the exporter's per-node debug records (stack traces) and attach our metadata."""
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for value in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info):
        del value.metadata_props[:]
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, metadata)
    proto.graph.name = "fnet_deploy_form"
    proto.doc_string = (
        "FNet (l0-regularised sparse-coding fusion network) in deploy form, exported by "
        f"fnet-deploy {__version__}"
    )


def _declared(value: onnx.ValueInfoProto) -> list[int | str]:
    return [
        dim.dim_param if dim.HasField("dim_param") else dim.dim_value
        for dim in value.type.tensor_type.shape.dim
    ]


def graph_problems(proto: onnx.ModelProto, spec: OnnxSpec) -> list[str]:
    """Why an exported graph is not what :class:`OnnxSpec` promises (empty list when it is).

    Runs ``onnx.checker.check_model(full_check=True)`` and strict shape inference, and checks
    the opset, the input and output names, types and shapes, explicit padding, and the precision
    of the graph (:func:`fnet_deploy.backends.fp16.float16_problems` for fp16).
    """
    try:
        onnx.checker.check_model(proto, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        return [f"onnx checker: {str(err).strip().splitlines()[0]}"]
    problems: list[str] = []
    opsets = {entry.domain: entry.version for entry in proto.opset_import}
    if opsets.get("", opsets.get("ai.onnx")) != spec.opset:
        problems.append(f"opset {opsets} is not {spec.opset}")
    names = ([v.name for v in proto.graph.input], [v.name for v in proto.graph.output])
    if names != (list(INPUT_NAMES), [OUTPUT_NAME]):
        problems.append(f"inputs/outputs are {names}, expected {list(INPUT_NAMES)}/{OUTPUT_NAME}")
    expected = spec.input_dims()
    for value in (*proto.graph.input, *proto.graph.output):
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            problems.append(f"{value.name} is not float32")
        if _declared(value) != expected:
            problems.append(f"{value.name} has shape {_declared(value)}, expected {expected}")
    produced = {v.name: _declared(v) for v in inferred.graph.output}
    if produced.get(OUTPUT_NAME) != expected:
        problems.append(f"shape inference gives {OUTPUT_NAME} {produced.get(OUTPUT_NAME)}")
    for node in proto.graph.node:
        attributes = {attr.name: attr for attr in node.attribute}
        auto_pad = attributes.get("auto_pad")
        if node.op_type == "Conv" and auto_pad is not None and auto_pad.s not in (b"", b"NOTSET"):
            problems.append(f"Conv {node.name} uses auto_pad {auto_pad.s.decode()}")
    if spec.precision == "fp16":
        problems.extend(float16_problems(proto))
    else:
        problems.extend(
            f"initializer {init.name} is {TensorProto.DataType.Name(init.data_type)}"
            for init in proto.graph.initializer
            if init.data_type in (TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)
        )
    return problems


def save_onnx(proto: onnx.ModelProto, path: Path) -> None:
    """Write ``proto`` to ``path`` atomically (complete or not at all)."""
    write_bytes_atomic(path, proto.SerializeToString())


def read_metadata(path: Path) -> dict[str, str]:
    """The fnet-deploy ``metadata_props`` of an ONNX file, prefix removed.

    Raises:
        InputError: the file is missing or not an ONNX model.
    """
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except Exception as err:
        raise InputError(path, f"not a readable ONNX model ({type(err).__name__})") from None
    return {
        prop.key.removeprefix(METADATA_PREFIX): prop.value
        for prop in proto.metadata_props
        if prop.key.startswith(METADATA_PREFIX)
    }
