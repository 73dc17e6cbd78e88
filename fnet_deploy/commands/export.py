"""``fnet-deploy export``: ONNX (FP32, FP16) of the deploy form, TensorRT engines, parity.

The options become an :class:`~fnet_deploy.export.plan.ExportPlan` (refused, before any work,
when they contradict each other); :func:`~fnet_deploy.export.run.run_export` carries it out and
this module prints what it says.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

import typer

from fnet_deploy.commands.common import (
    ColorOption,
    WeightsOption,
    check_output,
    cleans_up_on_signals,
    console,
    luminance_of,
    notice,
    parse_size,
    phase,
    reports_errors,
)
from fnet_deploy.commands.export_options import (
    EXPORT_PRECISIONS,
    BuildDeviceOption,
    CalibIrOption,
    CalibLimitOption,
    CalibMethodOption,
    CalibVisOption,
    Col2imOption,
    EngineOption,
    ExportPrecisionOption,
    FixedBatchOption,
    FixedSizeOption,
    FloatLayersOption,
    ImplicitInt8Option,
    MaxShapeOption,
    MergeEncodersOption,
    MinShapeOption,
    OldHeightOption,
    OldWidthOption,
    OpsetOption,
    OptShapeOption,
    OutFolderOption,
    ParityIrOption,
    ParityVisOption,
    TimingCacheOption,
    TritonAcceleratorOption,
    TritonNameOption,
    TritonRepoOption,
    WorkspaceOption,
)
from fnet_deploy.commands.outputs import Outputs
from fnet_deploy.commands.renames import deprecated
from fnet_deploy.export.parity import ErrorStats
from fnet_deploy.export.plan import ExportPlan, export_plan
from fnet_deploy.export.run import run_export
from fnet_deploy.export.triton_repo import DEFAULT_NAME
from fnet_deploy.export.verdicts import int8_onnx_verdict
from fnet_deploy.helpers.errors import FnetError


@reports_errors
@cleans_up_on_signals
def export(
    out: OutFolderOption,
    weights: WeightsOption = None,
    precision: ExportPrecisionOption = None,
    batch: FixedBatchOption = None,
    size: FixedSizeOption = None,
    height: OldHeightOption = None,
    width: OldWidthOption = None,
    opset: OpsetOption = 18,
    merge_encoders: MergeEncodersOption = False,
    col2im: Col2imOption = False,
    ir: ParityIrOption = None,
    vis: ParityVisOption = None,
    color: ColorOption = "keep",
    engine: EngineOption = False,
    implicit_int8: ImplicitInt8Option = False,
    calib_ir: CalibIrOption = None,
    calib_vis: CalibVisOption = None,
    calib_limit: CalibLimitOption = 64,
    calib_method: CalibMethodOption = "max",
    float_layers: FloatLayersOption = None,
    min_shape: MinShapeOption = None,
    opt_shape: OptShapeOption = None,
    max_shape: MaxShapeOption = None,
    workspace: WorkspaceOption = 2048,
    timing_cache: TimingCacheOption = None,
    device: BuildDeviceOption = "cuda:0",
    triton_repo: TritonRepoOption = None,
    triton_name: TritonNameOption = DEFAULT_NAME,
    triton_accelerator: TritonAcceleratorOption = "none",
) -> None:
    """Export FNet's deploy form to ONNX (and TensorRT), checking parity with PyTorch.

    Writes OUT/fnet.onnx (and fnet_fp16.onnx with --precision fp16, fnet_int8.onnx with
    --precision int8, engines with --engine), then runs each model on a real image pair (the
    shipped sample unless --ir/--vis) against the PyTorch training form and reports the error in
    grey levels; exits 1 if a check fails.
    """
    fixed_height, fixed_width = fixed_size(size, height, width)
    precisions = parse_precisions(precision or [])
    plan = export_plan(
        out=out,
        weights=weights,
        fp16="fp16" in precisions,
        batch=batch,
        height=fixed_height,
        width=fixed_width,
        opset=opset,
        merge_encoders=merge_encoders,
        col2im=col2im,
        ir=ir,
        vis=vis,
        luminance=luminance_of(color),
        engine=engine,
        int8="int8" in precisions,
        implicit_int8=implicit_int8,
        calib_ir=calib_ir,
        calib_vis=calib_vis,
        calib_limit=calib_limit,
        calib_method=calib_method,
        float_layers=float_layers,
        min_shape=min_shape,
        opt_shape=opt_shape,
        max_shape=max_shape,
        workspace=workspace,
        timing_cache=timing_cache,
        device=device,
        triton_repo=triton_repo,
        triton_name=triton_name,
        triton_accelerator=triton_accelerator,
    )
    _check_outputs(plan, timing_cache)
    outputs = Outputs("export")
    failures = run_export(plan, _ConsoleReport(), outputs)
    outputs.finish()
    if failures:
        raise typer.Exit(1)


def fixed_size(
    size: str | None, height: int | None, width: int | None
) -> tuple[int | None, int | None]:
    """The fixed (height, width) of the ONNX inputs: from ``--size WIDTHxHEIGHT``, or from the
    old ``--height H --width W`` with a one-line notice; ``(None, None)``: dynamic.

    Raises:
        FnetError: a bad ``--size``, the old options beside it, or one of them alone.
    """
    if height is None and width is None:
        if size is None:
            return None, None
        fixed_width, fixed_height = parse_size(size, "--size")
        return fixed_height, fixed_width
    if size is not None:
        raise FnetError("--size and the old --height/--width both fix the size: give --size alone")
    if height is None or width is None:
        raise FnetError("give both --height and --width, or better --size WIDTHxHEIGHT")
    typer.echo(deprecated("--height/--width", "--size WIDTHxHEIGHT"), err=True)
    return height, width


def parse_precisions(values: list[str]) -> frozenset[str]:
    """``--precision`` (repeated, each comma-separated) -> the precisions to write; fp32, the
    reference, is always written.

    Raises:
        FnetError: a name other than fp32, fp16 and int8.
    """
    chosen = frozenset(part.strip().lower() for value in values for part in value.split(","))
    unknown = sorted(chosen - set(EXPORT_PRECISIONS))
    if unknown:
        raise FnetError(
            f"--precision: expected fp32, fp16 or int8 (repeatable or comma-separated: "
            f"fp16,int8), got {unknown[0]!r}"
        )
    return chosen


def _check_outputs(plan: ExportPlan, timing_cache: Path | None) -> None:
    """Refuse the output folder, the Triton repository and a --timing-cache given, before any
    work (:func:`check_output`)."""
    check_output(plan.out, "--out", folder=True, inputs=plan.inputs)
    if plan.triton is not None:
        check_output(plan.triton.repo, "--triton-repo", folder=True, inputs=plan.inputs)
    if timing_cache is not None:
        check_output(timing_cache, "--timing-cache", inputs=plan.inputs)


class _ConsoleReport:
    """The export's lines on the commands' console (stderr), its phases as progress lines."""

    def line(self, text: str) -> None:
        """A result line (rich markup)."""
        console.print(text)

    def notice(self, text: str) -> None:
        """A plain status line."""
        notice(text)

    def phase(self, label: str) -> AbstractContextManager[object]:
        """Progress lines while the work lasts (:func:`phase`)."""
        return phase(label)


def _report_int8(label: str, stats: ErrorStats) -> bool:
    """Print the INT8 model's parity line (:func:`int8_onnx_verdict`); whether it passed."""
    verdict = int8_onnx_verdict(label, stats)
    _ConsoleReport().line(verdict.line())
    return verdict.passed
