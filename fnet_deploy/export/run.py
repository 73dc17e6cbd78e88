"""Carrying out an :class:`~fnet_deploy.export.plan.ExportPlan`: the ONNX models (FP32, FP16,
Q/DQ INT8), their parity with PyTorch, the TensorRT engines and the Triton model repository.

Everything that can refuse the run (a missing extra, too old a torch or onnx, the ONNX spec, an
unreadable parity pair or weights file, a float-layer pattern the model lacks, bad calibration
folders) is checked before the first model is exported.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fnet_deploy.assets import sample_pair
from fnet_deploy.export.engines import ENGINE_FILES, build_engines
from fnet_deploy.export.int8 import (
    CalibrationSet,
    Int8Spec,
    default_calibration_pairs,
    folder_pairs,
    layer_names,
    select_layers,
)
from fnet_deploy.export.parity import ImagePair, pair_error, read_pair
from fnet_deploy.export.plan import ExportPlan, TritonPlan
from fnet_deploy.export.report import ExportReport, OutputWriter
from fnet_deploy.export.triton_repo import graph_facts, write_repo
from fnet_deploy.export.verdicts import ParityVerdict, int8_onnx_verdict, parity_verdict
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.helpers.optional import require
from fnet_deploy.model.weights import WeightsInfo, load_fnet, resolve_weights

if TYPE_CHECKING:  # PyTorch and ONNX are imported by the run, not with the plan
    from fnet_deploy.export.onnx_graph import OnnxPrecision, OnnxSpec
    from fnet_deploy.model.fnet import FNet

ONNX_FILES = {"fp32": "fnet.onnx", "fp16": "fnet_fp16.onnx", "int8": "fnet_int8.onnx"}
"""Each ONNX model's file name in the output folder, by precision."""


@dataclass(frozen=True)
class _Inputs:
    """What the run reads: the model, the parity pair and the INT8 calibration pairs."""

    model: FNet
    info: WeightsInfo
    pair: ImagePair
    calibration: list[ImagePair]


def run_export(plan: ExportPlan, report: ExportReport, outputs: OutputWriter) -> int:
    """Export, check and build what ``plan`` asks for, saying so through ``report`` and writing
    the models through ``outputs``.

    Returns:
        The number of parity checks that failed (the files are written all the same).

    Raises:
        FnetError: the run cannot start (see the module doc; nothing written then), or a step
            failed (an engine build).
    """
    specs = _onnx_specs(plan, report)
    inputs = _read_inputs(plan)
    onnx_paths = _write_onnx(plan, specs, inputs, report, outputs)
    with report.phase("checking the parity with PyTorch"):
        failures = _onnx_parity(inputs.model, onnx_paths, inputs.pair, plan.batch or 1, report)
    if plan.engines is not None:
        calibration = inputs.calibration if plan.engines.implicit_int8 else []
        with report.phase("building TensorRT engines"):
            failures += build_engines(
                inputs.model,
                inputs.info,
                onnx_paths,
                inputs.pair,
                plan.engines,
                calibration,
                report,
            )
    if plan.triton is not None:
        engine = plan.out / ENGINE_FILES["fp32"] if plan.engines is not None else None
        _write_triton(plan.triton, onnx_paths["fp32"], engine, report)
    return failures


def _onnx_specs(plan: ExportPlan, report: ExportReport) -> list[OnnxSpec]:
    """The ONNX models to export, once the installed packages can export them.

    Raises:
        MissingDependencyError: an extra the plan needs is not installed.
        FnetError: implicit INT8 on a TensorRT without it, torch too old, a bad ONNX spec
            (--height without --width, ...), an opset the installed onnx does not know.
    """
    engines = plan.engines
    needed = ["onnxruntime", "onnx", "onnxscript"] + (["tensorrt", "polygraphy"] if engines else [])
    for module in needed:
        require(module)
    if engines is not None and engines.implicit_int8:
        from fnet_deploy.export.tensorrt_build import build_mode

        build_mode("int8", "fp32", str(require("tensorrt").__version__))
        report.notice(
            "note: --implicit-int8 is deprecated (TensorRT 10 only; TensorRT 11 removed implicit "
            "INT8 calibration): prefer --precision int8, the explicitly quantized (Q/DQ) model"
        )
    import torch

    from fnet_deploy.export.onnx_graph import MIN_TORCH, OnnxSpec
    from fnet_deploy.model.deploy import DeployOptions

    if torch.__version__ < MIN_TORCH:
        raise FnetError(
            f"export needs torch >= {MIN_TORCH} (its ExportedProgram-based ONNX exporter); "
            f"this is torch {torch.__version__}"
        )
    options = DeployOptions(merge_encoders=plan.merge_encoders, col2im=plan.col2im)
    precisions: tuple[OnnxPrecision, ...] = ("fp32", "fp16") if plan.fp16 else ("fp32",)
    specs = [
        OnnxSpec(precision, plan.batch, plan.height, plan.width, plan.opset, options)
        for precision in precisions
    ]
    known = require("onnx").defs.onnx_opset_version()
    if plan.opset > known:
        raise FnetError(f"--opset {plan.opset}: the installed onnx knows opsets up to {known}")
    return specs


def _read_inputs(plan: ExportPlan) -> _Inputs:
    """The parity pair (sized as the fixed ONNX inputs), the model and the calibration pairs.

    Raises:
        FnetError: an unreadable image, weights file or calibration folder, or a --float-layers
            pattern that matches no convolution of the model.
    """
    ir, vis = (plan.ir, plan.vis) if plan.ir is not None and plan.vis is not None else sample_pair()
    pair = read_pair(ir, vis, plan.luminance)
    if plan.height is not None and plan.width is not None:
        pair = pair.resized(plan.height, plan.width)
    model, info = load_fnet(resolve_weights(plan.weights))
    if plan.int8 is not None:
        select_layers(plan.int8.float_layers, layer_names(info.config))
    calibration: list[ImagePair] = []
    if plan.calibration is not None:
        folders = plan.calibration
        calibration = folder_pairs(folders.ir, folders.vis, plan.luminance, folders.limit)
    elif plan.int8 is not None:
        calibration = default_calibration_pairs(plan.luminance)
    return _Inputs(model, info, pair, calibration)


def _write_onnx(
    plan: ExportPlan,
    specs: list[OnnxSpec],
    inputs: _Inputs,
    report: ExportReport,
    outputs: OutputWriter,
) -> dict[str, Path]:
    """Export the ONNX models of ``specs`` (and with ``plan.int8`` quantize the FP32 one);
    where each went, by precision."""
    from fnet_deploy.export.onnx_graph import build_metadata, build_onnx, save_onnx
    from fnet_deploy.model.deploy import to_deploy

    info = inputs.info
    convs = to_deploy(inputs.model, specs[0].options).convolution_count()
    onnx_paths: dict[str, Path] = {}
    for spec in specs:
        name = ONNX_FILES[spec.precision]
        with report.phase(f"exporting {name}"):
            proto = build_onnx(inputs.model, spec, build_metadata(info, spec))
        path = outputs.write(plan.out / name, functools.partial(save_onnx, proto), name)
        onnx_paths[spec.precision] = path
        shape = " x ".join(str(d) for d in spec.input_dims())
        report.line(
            f"wrote {path}  ({spec.precision}, opset {spec.opset}, inputs {shape}, "
            f"{convs} convolutions, weights {info.path.name})"
        )
    if plan.int8 is not None:
        onnx_paths["int8"] = _write_int8(
            plan, plan.int8, onnx_paths["fp32"], inputs, convs, report, outputs
        )
    return onnx_paths


def _write_int8(
    plan: ExportPlan,
    spec: Int8Spec,
    fp32_path: Path,
    inputs: _Inputs,
    convs: int,
    report: ExportReport,
    outputs: OutputWriter,
) -> Path:
    """Quantize the FP32 model on the calibration pairs into fnet_int8.onnx; where it went."""
    from fnet_deploy.export.int8 import quantize_int8
    from fnet_deploy.export.onnx_graph import save_onnx

    count = len(inputs.calibration)
    with report.phase(f"quantizing fnet_int8.onnx (calibrating on {count} pairs)"):
        quantized = quantize_int8(
            fp32_path, CalibrationSet.of(inputs.calibration), spec, inputs.info.config
        )
    name = ONNX_FILES["int8"]
    path = outputs.write(plan.out / name, functools.partial(save_onnx, quantized.proto), name)
    report.line(
        f"wrote {path}  (int8 Q/DQ: {len(quantized.int8_layers)} of {convs} convolutions "
        f"in INT8, {quantized.int8_share:.0%} of the multiply-accumulates; activations "
        f"calibrated by {spec.method} on {count} pairs)"
    )
    return path


def _onnx_parity(
    model: FNet, onnx_paths: dict[str, Path], pair: ImagePair, batch: int, report: ExportReport
) -> int:
    """ORT (CPU) against the PyTorch training form, each verdict said as it comes; FP16 through
    its float16 emulation, INT8 as its Q/DQ graph. Returns the number of failed checks."""
    from fnet_deploy.backends.onnx_runner import OnnxRunner
    from fnet_deploy.backends.torch_runner import TorchRunner

    on = f"{pair.name} {pair.ir.shape[1]}x{pair.ir.shape[0]}"
    failures = 0

    def say(verdict: ParityVerdict) -> None:
        nonlocal failures
        report.line(verdict.line())
        failures += not verdict.passed

    with TorchRunner(model) as reference:
        stats = pair_error(reference, OnnxRunner(onnx_paths["fp32"]), pair, batch)
        say(parity_verdict(f"fnet.onnx (ORT CPU) vs PyTorch on {on}", stats, "fp32"))
        if "fp16" in onnx_paths:
            emulated = OnnxRunner(onnx_paths["fp16"], emulate_fp16=True)
            stats = pair_error(reference, emulated, pair, batch)
            label = f"fnet_fp16.onnx (float16 arithmetic emulated on CPU) vs PyTorch fp32 on {on}"
            say(parity_verdict(label, stats, "fp16"))
        if "int8" in onnx_paths:
            stats = pair_error(reference, OnnxRunner(onnx_paths["int8"]), pair, batch)
            say(int8_onnx_verdict(f"fnet_int8.onnx (ORT CPU) vs PyTorch fp32 on {on}", stats))
    return failures


def _write_triton(
    triton: TritonPlan, fp32_path: Path, engine: Path | None, report: ExportReport
) -> None:
    """The Triton model repository of the FP32 model (serving ``engine``, the FP32 TensorRT
    engine, where there is one)."""
    facts = graph_facts(require("onnx").load(fp32_path))
    written = write_repo(triton.repo, fp32_path, facts, triton.options, engine)
    report.line(
        f"wrote {written}/config.pbtxt  (Triton {triton.options.platform}, {triton.options.name})"
    )
