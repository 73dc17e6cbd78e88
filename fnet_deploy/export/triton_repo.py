"""A Triton Inference Server model repository from an exported FNet graph.

Triton serves a folder ``REPO/<name>/`` holding ``config.pbtxt`` and the model file in a version
folder (``1/model.onnx`` for ``onnxruntime_onnx``, ``1/model.plan`` for ``tensorrt_plan``).
:func:`graph_facts` reads what the config must agree with from the ONNX graph (tensor names,
types, shapes, whether the batch dimension is free), :func:`config_text` turns those facts and
the serving choices (:class:`TritonOptions`) into the config text, and :func:`write_repo` writes
the folder. The graph's inputs ``ir``, ``vis`` (N x 1 x H x W float32) and output ``fused``
(N x 1 x H x W float32, unclamped, nominally in [0, 1]) become Triton tensors of dims
``[1, -1, -1]`` with ``max_batch_size`` > 0 when N is dynamic, or the full fixed shape with
``max_batch_size: 0`` when the graph fixes N.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from fnet_deploy.helpers.atomic import write_text_atomic
from fnet_deploy.helpers.errors import FnetError

if TYPE_CHECKING:
    import onnx

Platform = Literal["onnxruntime_onnx", "tensorrt_plan"]
Accelerator = Literal["none", "tensorrt", "tensorrt-fp16"]
ACCELERATORS: tuple[Accelerator, ...] = ("none", "tensorrt", "tensorrt-fp16")
DEFAULT_NAME = "fnet"
DEFAULT_MAX_BATCH = 8
DEFAULT_QUEUE_DELAY_US = 500
"""How long Triton's dynamic batcher holds a request to join others (microseconds): well under one
frame of a 30 fps stream, long enough for requests of several streams to meet."""
FUSED_RANGE = (
    "float32, unclamped; nominally [0, 1]: clip to [0, 1] and scale by 255 for an 8-bit image"
)
"""The fused output's range, stated in the config as the parameter ``fused_range``."""

_TRITON_TYPES: dict[int, str] = {1: "TYPE_FP32", 10: "TYPE_FP16", 11: "TYPE_FP64"}
"""ONNX ``TensorProto`` element types -> Triton data types (those an FNet graph can have)."""


@dataclass(frozen=True)
class TensorFacts:
    """One graph input or output as Triton sees it.

    Attributes:
        name: the tensor's name in the graph (``ir``, ``vis``, ``fused``).
        data_type: Triton's type name (``TYPE_FP32``).
        shape: the full declared shape, ``-1`` for a dynamic dimension (N x 1 x H x W).
    """

    name: str
    data_type: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class GraphFacts:
    """What a Triton config must agree with in an exported graph."""

    inputs: tuple[TensorFacts, ...]
    outputs: tuple[TensorFacts, ...]

    @property
    def dynamic_batch(self) -> bool:
        """Whether every tensor's first dimension (N) is free, so that Triton may batch."""
        return all(t.shape[0] == -1 for t in self.inputs + self.outputs)


@dataclass(frozen=True)
class TritonOptions:
    """The serving choices of a Triton model.

    Attributes:
        name: the model's name (its folder in the repository, the ``MODEL`` of
            ``triton://HOST:PORT/MODEL``).
        platform: ``onnxruntime_onnx`` or ``tensorrt_plan``.
        max_batch_size: the largest batch Triton forms (ignored when the graph fixes N).
        queue_delay_us: the dynamic batcher's ``max_queue_delay_microseconds``.
        gpu: GPU index of the instance group, or ``None`` for ``KIND_CPU``.
        accelerator: ``onnxruntime_onnx`` on a GPU only: ONNX Runtime's TensorRT execution
            provider in FP32 (``tensorrt``) or FP16 (``tensorrt-fp16``), or ``none``.
    """

    name: str = DEFAULT_NAME
    platform: Platform = "onnxruntime_onnx"
    max_batch_size: int = DEFAULT_MAX_BATCH
    queue_delay_us: int = DEFAULT_QUEUE_DELAY_US
    gpu: int | None = 0
    accelerator: Accelerator = "none"

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise FnetError(f"Triton model name {self.name!r}: give a plain folder name")
        if self.max_batch_size < 1:
            raise FnetError(f"Triton max_batch_size {self.max_batch_size}: must be 1 or more")
        if self.accelerator not in ACCELERATORS:
            raise FnetError(
                f"Triton accelerator {self.accelerator!r}: choose from {', '.join(ACCELERATORS)}"
            )
        if self.accelerator != "none" and (self.gpu is None or self.platform != "onnxruntime_onnx"):
            raise FnetError(
                "the TensorRT accelerator is an ONNX Runtime option on a GPU: not with "
                "--device cpu or a TensorRT plan"
            )


def graph_facts(proto: onnx.ModelProto) -> GraphFacts:
    """The names, Triton types and shapes (``-1`` for symbolic dims) of a graph's I/O.

    Raises:
        FnetError: a tensor type Triton's FNet config does not cover, or a non-4-D tensor.
    """

    def facts(value: onnx.ValueInfoProto) -> TensorFacts:
        tensor = value.type.tensor_type
        if tensor.elem_type not in _TRITON_TYPES:
            raise FnetError(f"graph tensor {value.name}: element type {tensor.elem_type} unknown")
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
        if len(dims) != 4:
            raise FnetError(f"graph tensor {value.name}: {len(dims)}-D, expected N x 1 x H x W")
        return TensorFacts(value.name, _TRITON_TYPES[tensor.elem_type], dims)

    return GraphFacts(
        tuple(facts(v) for v in proto.graph.input), tuple(facts(v) for v in proto.graph.output)
    )


def config_text(facts: GraphFacts, options: TritonOptions) -> str:
    """``config.pbtxt`` (protobuf text of Triton's ``ModelConfig``) for a graph and choices."""
    batching = facts.dynamic_batch
    max_batch = options.max_batch_size if batching else 0

    def dims(tensor: TensorFacts) -> str:
        shown = tensor.shape[1:] if batching else tensor.shape
        return ", ".join(str(d) for d in shown)

    def tensors(kind: str, items: tuple[TensorFacts, ...]) -> list[str]:
        lines = [f"{kind} ["]
        for i, tensor in enumerate(items):
            comma = "," if i < len(items) - 1 else ""
            lines.append(
                f'  {{ name: "{tensor.name}" data_type: {tensor.data_type} '
                f"dims: [ {dims(tensor)} ] }}{comma}"
            )
        return [*lines, "]"]

    lines = [
        "# FNet visible/thermal fusion, written by fnet-deploy export --triton-repo.",
        "# Inputs ir, vis: N x 1 x H x W float32 in [0, 1] (grey levels / 255).",
        f"# Output fused: {FUSED_RANGE}.",
        f'name: "{options.name}"',
        f'platform: "{options.platform}"',
        f"max_batch_size: {max_batch}",
        *tensors("input", facts.inputs),
        *tensors("output", facts.outputs),
    ]
    if batching:
        lines.append(
            f"dynamic_batching {{ max_queue_delay_microseconds: {options.queue_delay_us} }}"
        )
    if options.gpu is None:
        lines.append("instance_group [ { count: 1 kind: KIND_CPU } ]")
    else:
        lines.append(f"instance_group [ {{ count: 1 kind: KIND_GPU gpus: [ {options.gpu} ] }} ]")
    if options.accelerator != "none":
        mode = "FP16" if options.accelerator == "tensorrt-fp16" else "FP32"
        lines += [
            "optimization { execution_accelerators { gpu_execution_accelerator: [ {",
            '  name: "tensorrt"',
            f'  parameters {{ key: "precision_mode" value: "{mode}" }}',
            '  parameters { key: "max_workspace_size_bytes" value: "1073741824" }',
            "} ] } }",
        ]
    lines.append(f'parameters {{ key: "fused_range" value: {{ string_value: "{FUSED_RANGE}" }} }}')
    return "\n".join(lines) + "\n"


def write_repo(
    repo: Path, onnx_file: Path, facts: GraphFacts, options: TritonOptions, plan: Path | None = None
) -> Path:
    """Write ``repo/<name>/config.pbtxt``, ``repo/<name>/1/model.onnx`` (and ``model.plan``).

    Args:
        repo: the model repository (created if needed; other models in it are kept).
        onnx_file: the exported FP32 ``.onnx``.
        facts: its I/O (:func:`graph_facts`).
        options: the serving choices; ``tensorrt_plan`` serves ``plan``.
        plan: a TensorRT engine built from ``onnx_file``, copied to ``1/model.plan``.

    Returns:
        The model's folder ``repo/<name>``.

    Raises:
        FnetError: a ``tensorrt_plan`` platform without ``plan``.
    """
    if options.platform == "tensorrt_plan" and plan is None:
        raise FnetError("a tensorrt_plan Triton model needs the engine (model.plan)")
    folder = repo / options.name
    version = folder / "1"
    version.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_file, version / "model.onnx")
    if plan is not None:
        shutil.copyfile(plan, version / "model.plan")
    write_text_atomic(folder / "config.pbtxt", config_text(facts, options))
    return folder
