"""Float16 models: float16 compute inside, float32 inputs and outputs at the boundary.

The FP16 ONNX model is the deploy form with float16 weights, wrapped by :class:`Float16Boundary`
so that the graph starts with ``Cast(ir|vis -> float16)`` and ends with
``Cast(fused -> float32)``. Every other tensor is float16 and every operator sees inputs of one
type, as TensorRT's strongly typed mode requires. The threshold uses the sigmoid form, so no
``Exp`` can overflow.

ONNX Runtime's CPU provider has no float16 ``Conv`` on x86: it inserts casts and computes most
of such a graph in float32, so running the FP16 model there says little about float16 accuracy.
:func:`float16_emulation` gives an honest CPU stand-in: the same graph in float32 with every
intermediate tensor rounded to float16 (float16 storage and float16 results of every operator,
float32 accumulation inside convolutions, as GPU float16 kernels do).
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper, numpy_helper
from torch import Tensor, nn

from fnet_deploy.model.deploy import DeployFNet


class Float16Boundary(nn.Module):
    """Runs a float16 deploy form on float32 inputs and returns float32.

    ``ir`` and ``vis`` are N x 1 x H x W float32 in [0, 1]; the output is N x 1 x H x W float32.
    """

    def __init__(self, inner: DeployFNet) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, ir: Tensor, vis: Tensor) -> Tensor:
        return self.inner(ir.half(), vis.half()).float()


def _cast_target(node: onnx.NodeProto) -> int:
    return next(attr.i for attr in node.attribute if attr.name == "to")


def float16_problems(model: onnx.ModelProto) -> list[str]:
    """Why ``model`` is not a clean float16-inside, float32-outside graph (empty when it is).

    Checks: float32 graph inputs and outputs; every float initializer float16; Cast nodes only
    at the boundary (inputs -> float16, output -> float32); no ``Exp``; every intermediate float
    tensor inferred as float16.
    """
    problems: list[str] = []
    graph = model.graph
    boundary_in = {value.name for value in graph.input}
    boundary_out = {value.name for value in graph.output}
    for value in (*graph.input, *graph.output):
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            problems.append(f"graph input/output {value.name} is not float32")
    for init in graph.initializer:
        if init.data_type in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.BFLOAT16):
            problems.append(
                f"initializer {init.name} is {TensorProto.DataType.Name(init.data_type)}"
            )
    for node in graph.node:
        if node.op_type == "Exp":
            problems.append(f"node {node.name} computes Exp (use the sigmoid form)")
        if node.op_type != "Cast":
            continue
        target = _cast_target(node)
        if node.input[0] in boundary_in and target == TensorProto.FLOAT16:
            continue
        if node.output[0] in boundary_out and target == TensorProto.FLOAT:
            continue
        problems.append(f"Cast {node.name} ({node.input[0]} -> {node.output[0]}) inside the graph")
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    for value in inferred.graph.value_info:
        elem = value.type.tensor_type.elem_type
        if elem in (TensorProto.FLOAT, TensorProto.DOUBLE):
            problems.append(f"intermediate tensor {value.name} is not float16")
    return problems


def float16_emulation(model: onnx.ModelProto) -> onnx.ModelProto:
    """A float32 graph that rounds every tensor of a float16 graph to float16.

    Every float16 initializer becomes the same values in float32 (exact), and every node output
    is followed by ``Cast(-> float16)`` and ``Cast(-> float32)``. The result runs on any float32
    runtime and reproduces float16 storage and rounding of ``model`` (see the module docstring).

    Args:
        model: a graph that passes :func:`float16_problems`.

    Returns:
        A new model; ``model`` is not modified.
    """
    emulated = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    graph = emulated.graph
    half = {
        value.name
        for value in graph.value_info
        if value.type.tensor_type.elem_type == TensorProto.FLOAT16
    }
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        names = [name for name in node.output if name in half]
        for index, name in enumerate(node.output):
            if name in half:
                node.output[index] = f"{name}__f32"
        nodes.append(node)
        for name in names:
            nodes.append(
                helper.make_node("Cast", [f"{name}__f32"], [f"{name}__f16"], to=TensorProto.FLOAT16)
            )
            nodes.append(helper.make_node("Cast", [f"{name}__f16"], [name], to=TensorProto.FLOAT))
    del graph.node[:]
    graph.node.extend(nodes)
    for index, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT16:
            values = numpy_helper.to_array(init).astype("float32")
            graph.initializer[index].CopyFrom(numpy_helper.from_array(values, init.name))
    del graph.value_info[:]
    return emulated
