"""The export's TensorRT engines: each planned engine built from its ONNX model, then checked
against PyTorch on the parity pair."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fnet_deploy.backends.engine_info import EnginePrecision, format_shape
from fnet_deploy.export.parity import ImagePair, pair_error
from fnet_deploy.export.plan import EnginePlan
from fnet_deploy.export.report import ExportReport
from fnet_deploy.export.verdicts import parity_verdict
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.model.weights import WeightsInfo

if TYPE_CHECKING:  # PyTorch is imported by the build itself
    from fnet_deploy.model.fnet import FNet

ENGINE_FILES: dict[EnginePrecision, str] = {
    "fp32": "fnet.engine",
    "fp16": "fnet_fp16.engine",
    "int8": "fnet_int8.engine",
}
"""Each engine's file name in the output folder."""


def build_engines(
    model: FNet,
    info: WeightsInfo,
    onnx_paths: dict[str, Path],
    pair: ImagePair,
    plan: EnginePlan,
    calibration: list[ImagePair],
    report: ExportReport,
) -> int:
    """Build the planned engines beside their ONNX models (``onnx_paths`` by precision), then
    check each against PyTorch on ``pair`` (resized to the profile's optimum if it does not fit).

    Args:
        calibration: with ``plan.implicit_int8``, the pairs TensorRT calibrates the INT8 engine
            on.

    Returns:
        The number of engines that failed their parity check.

    Raises:
        FnetError: an engine's ONNX model was not exported, or TensorRT failed to build it.
    """
    import torch

    from fnet_deploy.backends.tensorrt_runner import TensorRTRunner
    from fnet_deploy.backends.torch_runner import TorchRunner

    profile, device = plan.profile, plan.device
    _, _, opt_h, opt_w = profile.opt
    check_pair = pair if profile.fits(pair.feed()["ir"].shape) else pair.resized(opt_h, opt_w)
    failures = 0
    reference_device = device if torch.cuda.is_available() else "cpu"
    with TorchRunner(model, reference_device) as reference:
        for precision in plan.precisions:
            engine_path = _build(precision, info, onnx_paths, plan, calibration, report)
            stats = pair_error(reference, TensorRTRunner(engine_path, device), check_pair)
            verdict = parity_verdict(f"{engine_path.name} vs PyTorch", stats, precision)
            report.line(verdict.line())
            failures += not verdict.passed
    return failures


def _build(
    precision: EnginePrecision,
    info: WeightsInfo,
    onnx_paths: dict[str, Path],
    plan: EnginePlan,
    calibration: list[ImagePair],
    report: ExportReport,
) -> Path:
    """Build the ``precision`` engine and say so, with its equivalent commands; its path."""
    from fnet_deploy.export.tensorrt_build import (
        EngineBuildOptions,
        build_engine,
        onnx_precision_for,
    )

    implicit = precision == "int8" and plan.implicit_int8
    onnx_precision = onnx_precision_for(precision, implicit)
    if onnx_precision not in onnx_paths:
        raise FnetError(
            f"a {precision} engine is built from the {onnx_precision} ONNX model, which "
            "this export did not write"
        )
    onnx_path = onnx_paths[onnx_precision]
    engine_path = onnx_path.parent / ENGINE_FILES[precision]
    options = EngineBuildOptions(
        precision=precision,
        profile=plan.profile,
        workspace_mib=plan.workspace_mib,
        timing_cache=plan.timing_cache,
        device=plan.device,
        calibration=calibration,
        calibration_cache=onnx_path.parent / "int8_calibration.cache",
    )
    report.line(f"building {engine_path.name} ({precision}) on {plan.device}...")
    built = build_engine(
        onnx_path,
        engine_path,
        options,
        onnx_precision=onnx_precision,
        weights_file=info.path.name,
        weights_sha256=info.sha256,
        model_config=info.config.to_dict(),
    )
    profile = plan.profile
    report.line(
        f"wrote {engine_path} (TensorRT {built.tensorrt_version}, {built.gpu_name}, "
        f"profile {format_shape(profile.min)}..{format_shape(profile.max)}, opt "
        f"{format_shape(profile.opt)})"
    )
    commands = built.notes["equivalent_commands"]
    report.notice(f"  the same build with Polygraphy: {commands['polygraphy_convert'][0]}")
    report.notice(f"  with trtexec: {commands['trtexec'][0]}")
    report.notice(f"  compared with ONNX Runtime by the polygraphy_run lines of {engine_path}.json")
    return engine_path
