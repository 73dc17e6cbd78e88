"""``fnet-deploy export``: ONNX (FP32, FP16) of the deploy form, TensorRT engines, parity.

The options become an :class:`~fnet_deploy.export.plan.ExportPlan` (refused, before any work,
when they contradict each other); :func:`~fnet_deploy.export.run.run_export` carries it out and
this module prints what it says.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated

import typer

from fnet_deploy.commands.common import (
    ColorOption,
    check_output,
    cleans_up_on_signals,
    console,
    luminance_of,
    notice,
    phase,
    reports_errors,
)
from fnet_deploy.commands.outputs import Outputs
from fnet_deploy.export.parity import ErrorStats
from fnet_deploy.export.plan import ExportPlan, export_plan
from fnet_deploy.export.run import run_export
from fnet_deploy.export.triton_repo import DEFAULT_NAME
from fnet_deploy.export.verdicts import int8_onnx_verdict


@reports_errors
@cleans_up_on_signals
def export(
    out: Annotated[Path, typer.Option(help="Output folder (created if needed).")],
    weights: Annotated[
        Path | None,
        typer.Option(help="FNet weights: .safetensors or the published .pth (default: packaged)."),
    ] = None,
    fp16: Annotated[
        bool,
        typer.Option(help="Also write fnet_fp16.onnx (float16 compute, float32 I/O)."),
    ] = False,
    batch: Annotated[int | None, typer.Option(help="Fix N (default: dynamic).")] = None,
    height: Annotated[
        int | None, typer.Option(help="Fix H (with --width; default dynamic).")
    ] = None,
    width: Annotated[
        int | None, typer.Option(help="Fix W (with --height; default dynamic).")
    ] = None,
    opset: Annotated[
        int, typer.Option(min=18, help="ONNX opset (ai.onnx; the exporter writes 18 or newer).")
    ] = 18,
    merge_encoders: Annotated[
        bool,
        typer.Option(help="Merge all W_k(e) of a block into one conv (measured slower on CPU)."),
    ] = False,
    col2im: Annotated[
        bool,
        typer.Option(
            help="Compute the convolutions with few outputs as 1x1 conv + Col2Im: about 2x "
            "faster on ONNX Runtime's CPU provider; TensorRT does not support Col2Im."
        ),
    ] = False,
    ir: Annotated[
        Path | None, typer.Option(help="IR image of the parity pair (default: shipped sample).")
    ] = None,
    vis: Annotated[Path | None, typer.Option(help="Visible image of the parity pair.")] = None,
    color: ColorOption = "keep",
    engine: Annotated[
        bool, typer.Option(help="Also build TensorRT engines (needs the tensorrt extra and a GPU).")
    ] = False,
    int8: Annotated[
        bool,
        typer.Option(
            help="Also write fnet_int8.onnx: explicit INT8 (Q/DQ nodes, ONNX Runtime's static "
            "quantization), calibrated on real pairs (--calib-ir/--calib-vis; default the "
            "shipped sample and sequence); with --engine also an INT8 engine built from it "
            "(strongly typed)."
        ),
    ] = False,
    implicit_int8: Annotated[
        bool,
        typer.Option(
            help="Deprecated, TensorRT 10 only (TensorRT 11 removed it): with --engine, an INT8 "
            "engine from fnet.onnx calibrated by TensorRT itself on --calib-ir/--calib-vis. "
            "Prefer --int8 (explicit Q/DQ, TensorRT 10 and 11)."
        ),
    ] = False,
    calib_ir: Annotated[Path | None, typer.Option(help="Folder of IR calibration images.")] = None,
    calib_vis: Annotated[
        Path | None, typer.Option(help="Folder of visible calibration images (paired by name).")
    ] = None,
    calib_limit: Annotated[
        int, typer.Option(min=1, help="At most this many calibration pairs.")
    ] = 64,
    calib_method: Annotated[
        str,
        typer.Option(
            help="With --int8: activation ranges from the largest magnitude seen (max), a "
            "percentile of it (percentile) or its entropy (entropy)."
        ),
    ] = "max",
    float_layers: Annotated[
        str | None,
        typer.Option(
            help="With --int8: convolutions kept in float32, comma-separated names or wildcards "
            "(e.g. 'unique_*,tail_*', the default: all but the common block), or 'none'."
        ),
    ] = None,
    min_shape: Annotated[
        str | None,
        typer.Option(help="Engine profile minimum: NxCxHxW (1x1x64x64) or WIDTHxHEIGHT (N = 1)."),
    ] = None,
    opt_shape: Annotated[str | None, typer.Option(help="Profile optimum (tuned for).")] = None,
    max_shape: Annotated[str | None, typer.Option(help="Profile maximum.")] = None,
    workspace: Annotated[int, typer.Option(min=64, help="TensorRT workspace limit, MiB.")] = 2048,
    timing_cache: Annotated[
        Path | None, typer.Option(help="TensorRT timing cache (default: OUT/timing.cache).")
    ] = None,
    device: Annotated[
        str, typer.Option(help="GPU for engines and the Triton model: cuda, cuda:N or cpu.")
    ] = "cuda:0",
    triton_repo: Annotated[
        Path | None,
        typer.Option(
            help="Also write a Triton model repository: DIR/NAME/config.pbtxt and "
            "DIR/NAME/1/model.onnx (model.plan and platform tensorrt_plan with --engine)."
        ),
    ] = None,
    triton_name: Annotated[str, typer.Option(help="The Triton model's name.")] = DEFAULT_NAME,
    triton_accelerator: Annotated[
        str,
        typer.Option(
            help="ONNX Runtime's TensorRT provider inside Triton (GPU): none, tensorrt or "
            "tensorrt-fp16."
        ),
    ] = "none",
) -> None:
    """Export FNet's deploy form to ONNX (and TensorRT), checking parity with PyTorch.

    Writes OUT/fnet.onnx (and fnet_fp16.onnx with --fp16, fnet_int8.onnx with --int8, engines
    with --engine), then runs each model on a real image pair (the shipped sample unless
    --ir/--vis) against the PyTorch training form and reports the error in grey levels; exits 1
    if a check fails.
    """
    plan = export_plan(
        out=out,
        weights=weights,
        fp16=fp16,
        batch=batch,
        height=height,
        width=width,
        opset=opset,
        merge_encoders=merge_encoders,
        col2im=col2im,
        ir=ir,
        vis=vis,
        luminance=luminance_of(color),
        engine=engine,
        int8=int8,
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
