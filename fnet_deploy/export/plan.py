"""What one ``fnet-deploy export`` run makes and checks, decided from its options before any work.

:func:`export_plan` turns the command's options into an :class:`ExportPlan` and refuses options
that contradict each other, each with one line naming them
(:class:`~fnet_deploy.helpers.errors.FnetError`, exit 2), so that nothing is read, exported or
written for a command line that cannot run.
:func:`fnet_deploy.export.run.run_export` carries the plan out. Nothing here imports PyTorch or
ONNX: checks that need them (the installed versions, the ONNX spec) run at the start of the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

from fnet_deploy.backends.device import parse_device
from fnet_deploy.backends.engine_info import EnginePrecision, Shape, ShapeProfile
from fnet_deploy.data.color import Luminance
from fnet_deploy.export.int8 import CalibrationMethod, Int8Spec, parse_float_layers
from fnet_deploy.export.triton_repo import DEFAULT_MAX_BATCH, Accelerator, TritonOptions
from fnet_deploy.helpers.errors import FnetError

DEFAULT_PROFILE: tuple[Shape, Shape, Shape] = (
    (1, 1, 64, 64),
    (1, 1, 512, 640),
    (1, 1, 1088, 1920),
)
"""Engine profile (min, opt, max N x 1 x H x W) when no --min/--opt/--max-shape is given."""


@dataclass(frozen=True)
class CalibrationFolders:
    """``--calib-ir/--calib-vis``: INT8 calibration pairs read from two folders (paired by file
    name), at most ``limit`` of them."""

    ir: Path
    vis: Path
    limit: int


@dataclass(frozen=True)
class EnginePlan:
    """Which TensorRT engines to build and how (``implicit_int8``: the INT8 engine from fnet.onnx
    with TensorRT 10's own calibration on the calibration folders, not from the Q/DQ
    fnet_int8.onnx)."""

    precisions: tuple[EnginePrecision, ...]
    profile: ShapeProfile
    workspace_mib: int
    timing_cache: Path
    device: str
    implicit_int8: bool = False


@dataclass(frozen=True)
class TritonPlan:
    """``--triton-repo``: the Triton model repository's folder and the model's serving choices."""

    repo: Path
    options: TritonOptions


@dataclass(frozen=True)
class ExportPlan:
    """Everything one export run does, from its options.

    Attributes:
        out: the output folder (fnet.onnx and the other models, engines, the timing cache).
        weights: the FNet weights file (``None``: the packaged weights).
        ir: the parity pair's IR image (``None``, with ``vis``: the shipped sample pair).
        vis: the parity pair's visible image.
        luminance: how colour visible images feed the network.
        batch: fixed N of the ONNX inputs (``None``: dynamic).
        height: fixed H (``None``: dynamic), with ``width``.
        width: fixed W.
        opset: the ai.onnx opset.
        merge_encoders: the deploy form's option of one convolution for a block's encoders.
        col2im: the deploy form's option of 1x1 conv + Col2Im for convolutions with few outputs.
        fp16: also fnet_fp16.onnx.
        int8: how to quantize fnet_int8.onnx (``None``: no Q/DQ model).
        calibration: the INT8 calibration folders (``None``: the shipped pairs with ``int8``).
        engines: the TensorRT engines to build (``None``: none).
        triton: the Triton model repository to write (``None``: none).
    """

    out: Path
    weights: Path | None
    ir: Path | None
    vis: Path | None
    luminance: Luminance
    batch: int | None
    height: int | None
    width: int | None
    opset: int
    merge_encoders: bool
    col2im: bool
    fp16: bool
    int8: Int8Spec | None
    calibration: CalibrationFolders | None
    engines: EnginePlan | None
    triton: TritonPlan | None

    @property
    def inputs(self) -> tuple[Path | None, ...]:
        """The files the run reads, which no output may replace."""
        return (self.ir, self.vis, self.weights)


def export_plan(
    *,
    out: Path,
    weights: Path | None,
    fp16: bool,
    batch: int | None,
    height: int | None,
    width: int | None,
    opset: int,
    merge_encoders: bool,
    col2im: bool,
    ir: Path | None,
    vis: Path | None,
    luminance: Luminance,
    engine: bool,
    int8: bool,
    implicit_int8: bool,
    calib_ir: Path | None,
    calib_vis: Path | None,
    calib_limit: int,
    calib_method: str,
    float_layers: str | None,
    min_shape: str | None,
    opt_shape: str | None,
    max_shape: str | None,
    workspace: int,
    timing_cache: Path | None,
    device: str,
    triton_repo: Path | None,
    triton_name: str,
    triton_accelerator: str,
) -> ExportPlan:
    """The plan of the export the options (the command's, by parameter name) ask for.

    Raises:
        FnetError: options that contradict each other or a bad value among them, in one line
            naming the options.
    """
    if (ir is None) != (vis is None):
        raise FnetError("give both --ir and --vis, or neither (to check on the shipped sample)")
    int8_spec = _int8_spec(int8, implicit_int8, calib_ir, calib_vis, calib_method, float_layers)
    if implicit_int8 and not engine:
        raise FnetError("--implicit-int8 builds a TensorRT engine: add --engine")
    if implicit_int8 and int8:
        raise FnetError(
            "--precision int8 and --implicit-int8 both build fnet_int8.engine: choose one"
        )
    if implicit_int8 and calib_ir is None:
        raise FnetError(
            "--implicit-int8 needs real calibration pairs: --calib-ir DIR --calib-vis DIR"
        )
    if engine and col2im:
        raise FnetError(
            "--col2im graphs use Col2Im, which TensorRT does not support: build engines "
            "without --col2im"
        )
    triton = (
        TritonPlan(triton_repo, _triton_options(triton_name, triton_accelerator, device, engine))
        if triton_repo is not None
        else None
    )
    engines = None
    if engine:
        precisions: list[EnginePrecision] = ["fp32", "fp16"] if fp16 else ["fp32"]
        if int8 or implicit_int8:
            precisions.append("int8")
        engines = EnginePlan(
            tuple(precisions),
            _profile((batch, 1, height, width), min_shape, opt_shape, max_shape),
            workspace,
            timing_cache or out / "timing.cache",
            device,
            implicit_int8,
        )
    calibration = (
        CalibrationFolders(calib_ir, calib_vis, calib_limit)
        if calib_ir is not None and calib_vis is not None
        else None
    )
    return ExportPlan(
        out=out,
        weights=weights,
        ir=ir,
        vis=vis,
        luminance=luminance,
        batch=batch,
        height=height,
        width=width,
        opset=opset,
        merge_encoders=merge_encoders,
        col2im=col2im,
        fp16=fp16,
        int8=int8_spec,
        calibration=calibration,
        engines=engines,
        triton=triton,
    )


def _int8_spec(
    int8: bool,
    implicit_int8: bool,
    calib_ir: Path | None,
    calib_vis: Path | None,
    calib_method: str,
    float_layers: str | None,
) -> Int8Spec | None:
    """The Q/DQ model's quantization with ``--precision int8`` (else ``None``), its options checked.

    Raises:
        FnetError: a calibration option without the INT8 model it shapes, half of
            --calib-ir/--calib-vis, a bad --calib-method or --float-layers.
    """
    if (calib_ir is None) != (calib_vis is None):
        raise FnetError("give both --calib-ir and --calib-vis, or neither")
    if not (int8 or implicit_int8) and calib_ir is not None:
        raise FnetError("--calib-ir/--calib-vis calibrate INT8: add --precision int8")
    if not int8 and (calib_method != "max" or float_layers is not None):
        option = "--calib-method" if calib_method != "max" else "--float-layers"
        raise FnetError(f"{option} shapes the INT8 model: add --precision int8")
    if not int8:
        return None
    return Int8Spec(cast(CalibrationMethod, calib_method), parse_float_layers(float_layers))


def _triton_options(name: str, accelerator: str, device: str, engine: bool) -> TritonOptions:
    """The Triton model's choices from the options (instance on ``--device``; a plan with
    ``--engine``, its batch bounded by the default profile's).

    Raises:
        FnetError: a bad --triton-name, --triton-accelerator or --device, in one line.
    """
    parsed = parse_device(device)
    gpu = None if parsed.kind == "cpu" else parsed.index
    try:
        return TritonOptions(
            name=name,
            platform="tensorrt_plan" if engine else "onnxruntime_onnx",
            max_batch_size=DEFAULT_PROFILE[2][0] if engine else DEFAULT_MAX_BATCH,
            gpu=gpu,
            accelerator=cast(Accelerator, accelerator),
        )
    except FnetError as err:
        raise FnetError(f"--triton-repo: {err}") from None


def _profile(
    fixed: tuple[int | None, ...],
    min_text: str | None,
    opt_text: str | None,
    max_text: str | None,
) -> ShapeProfile:
    """The engine profile from --min/--opt/--max-shape, or the default one with the fixed
    dimensions of the ONNX inputs (``fixed``: N, C, H, W, ``None`` where dynamic) kept.

    Raises:
        FnetError: some of the three shapes given but not all, or a bad shape.
    """
    if min_text is None and opt_text is None and max_text is None:
        shapes = [
            tuple(
                d if d is not None else fallback for d, fallback in zip(fixed, default, strict=True)
            )
            for default in DEFAULT_PROFILE
        ]
        return ShapeProfile(*shapes)  # type: ignore[arg-type]
    if min_text is None or opt_text is None or max_text is None:
        raise FnetError("give all of --min-shape, --opt-shape and --max-shape, or none")
    return ShapeProfile.parse(min_text, opt_text, max_text)
