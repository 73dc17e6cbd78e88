"""``fnet-deploy export``: ONNX (FP32, FP16) of the deploy form, TensorRT engines, parity."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from fnet_deploy.assets import sample_pair
from fnet_deploy.backends.base import Runner
from fnet_deploy.backends.device import parse_device
from fnet_deploy.backends.engine_info import EnginePrecision, ShapeProfile, format_shape
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
from fnet_deploy.export.int8 import (
    CalibrationMethod,
    CalibrationSet,
    Int8Spec,
    default_calibration_pairs,
    folder_pairs,
    layer_names,
    parse_float_layers,
    select_layers,
)
from fnet_deploy.export.parity import (
    DEFAULT_TOLERANCE,
    ErrorStats,
    ImagePair,
    compare_runners,
    read_pair,
)
from fnet_deploy.export.triton_repo import (
    DEFAULT_MAX_BATCH,
    DEFAULT_NAME,
    Accelerator,
    TritonOptions,
    graph_facts,
    write_repo,
)
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.helpers.optional import require
from fnet_deploy.model.weights import WeightsInfo, load_fnet, resolve_weights

if TYPE_CHECKING:  # PyTorch is imported by the export itself, not with `export --help`
    from fnet_deploy.model.fnet import FNet

DEFAULT_PROFILE = ((1, 1, 64, 64), (1, 1, 512, 640), (1, 1, 1088, 1920))
"""Engine profile (min, opt, max N x 1 x H x W) when no --min/--opt/--max-shape is given."""
ENGINE_FILES: dict[EnginePrecision, str] = {
    "fp32": "fnet.engine",
    "fp16": "fnet_fp16.engine",
    "int8": "fnet_int8.engine",
}


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
    if (ir is None) != (vis is None):
        raise FnetError("give both --ir and --vis, or neither (to check on the shipped sample)")
    if (calib_ir is None) != (calib_vis is None):
        raise FnetError("give both --calib-ir and --calib-vis, or neither")
    if not (int8 or implicit_int8) and calib_ir is not None:
        raise FnetError("--calib-ir/--calib-vis calibrate INT8: add --int8")
    if not int8 and (calib_method != "max" or float_layers is not None):
        option = "--calib-method" if calib_method != "max" else "--float-layers"
        raise FnetError(f"{option} shapes the INT8 model: add --int8")
    int8_spec = (
        Int8Spec(cast(CalibrationMethod, calib_method), parse_float_layers(float_layers))
        if int8
        else None
    )
    if implicit_int8 and not engine:
        raise FnetError("--implicit-int8 builds a TensorRT engine: add --engine")
    if implicit_int8 and int8:
        raise FnetError("--int8 and --implicit-int8 both build fnet_int8.engine: choose one")
    if implicit_int8 and (calib_ir is None or calib_vis is None):
        raise FnetError(
            "--implicit-int8 needs real calibration pairs: --calib-ir DIR --calib-vis DIR"
        )
    if engine and col2im:
        raise FnetError(
            "--col2im graphs use Col2Im, which TensorRT does not support: build engines "
            "without --col2im"
        )
    triton = (
        _triton_options(triton_name, triton_accelerator, device, engine)
        if triton_repo is not None
        else None
    )
    import torch

    check_output(out, "--out", folder=True, inputs=(ir, vis, weights))
    if triton_repo is not None:
        check_output(triton_repo, "--triton-repo", folder=True, inputs=(ir, vis, weights))
    if timing_cache is not None:
        check_output(timing_cache, "--timing-cache", inputs=(ir, vis, weights))
    needed = ["onnxruntime", "onnx", "onnxscript"] + (["tensorrt", "polygraphy"] if engine else [])
    for module in needed:
        require(module)
    if implicit_int8:
        from fnet_deploy.export.tensorrt_build import build_mode

        build_mode("int8", "fp32", str(require("tensorrt").__version__))
        notice(
            "note: --implicit-int8 is deprecated (TensorRT 10 only; TensorRT 11 removed implicit "
            "INT8 calibration): prefer --int8, the explicitly quantized (Q/DQ) model"
        )
    from fnet_deploy.export.int8 import quantize_int8
    from fnet_deploy.export.onnx_graph import (
        MIN_TORCH,
        OnnxSpec,
        build_metadata,
        build_onnx,
        save_onnx,
    )
    from fnet_deploy.model.deploy import DeployOptions, to_deploy

    if torch.__version__ < MIN_TORCH:
        raise FnetError(
            f"export needs torch >= {MIN_TORCH} (its ExportedProgram-based ONNX exporter); "
            f"this is torch {torch.__version__}"
        )
    options = DeployOptions(merge_encoders=merge_encoders, col2im=col2im)
    specs = [OnnxSpec("fp32", batch, height, width, opset, options)]
    if fp16:
        specs.append(OnnxSpec("fp16", batch, height, width, opset, options))
    profile = _profile(specs[0].input_dims(), min_shape, opt_shape, max_shape) if engine else None

    onnx = require("onnx")
    if opset > onnx.defs.onnx_opset_version():
        raise FnetError(
            f"--opset {opset}: the installed onnx knows opsets up to "
            f"{onnx.defs.onnx_opset_version()}"
        )
    ir_path, vis_path = (ir, vis) if ir is not None and vis is not None else sample_pair()
    luminance = luminance_of(color)
    pair = read_pair(ir_path, vis_path, luminance)
    if height is not None and width is not None:
        pair = pair.resized(height, width)
    model, info = load_fnet(resolve_weights(weights))
    if int8_spec is not None:
        select_layers(int8_spec.float_layers, layer_names(info.config))
    calibration: list[ImagePair] = []
    if calib_ir is not None and calib_vis is not None:
        calibration = folder_pairs(calib_ir, calib_vis, luminance, calib_limit)
    elif int8:
        calibration = default_calibration_pairs(luminance)
    convs = to_deploy(model, options).convolution_count()
    onnx_paths: dict[str, Path] = {}
    outputs = Outputs("export")
    for spec in specs:
        name = "fnet.onnx" if spec.precision == "fp32" else "fnet_fp16.onnx"
        with phase(f"exporting {name}"):
            proto = build_onnx(model, spec, build_metadata(info, spec))
        path = outputs.write(out / name, functools.partial(save_onnx, proto), name)
        onnx_paths[spec.precision] = path
        shape = " x ".join(str(d) for d in spec.input_dims())
        console.print(
            f"wrote {path}  ({spec.precision}, opset {spec.opset}, inputs {shape}, "
            f"{convs} convolutions, weights {info.path.name})"
        )

    if int8_spec is not None:
        with phase(f"quantizing fnet_int8.onnx (calibrating on {len(calibration)} pairs)"):
            quantized = quantize_int8(
                onnx_paths["fp32"], CalibrationSet.of(calibration), int8_spec, info.config
            )
        path = outputs.write(
            out / "fnet_int8.onnx",
            functools.partial(save_onnx, quantized.proto),
            "fnet_int8.onnx",
        )
        onnx_paths["int8"] = path
        console.print(
            f"wrote {path}  (int8 Q/DQ: {len(quantized.int8_layers)} of {convs} convolutions "
            f"in INT8, {quantized.int8_share:.0%} of the multiply-accumulates; activations "
            f"calibrated by {int8_spec.method} on {len(calibration)} pairs)"
        )

    with phase("checking the parity with PyTorch"):
        failures = _onnx_parity(model, onnx_paths, pair, batch or 1)

    if engine and profile is not None:
        precisions: list[EnginePrecision] = ["fp32", "fp16"] if fp16 else ["fp32"]
        if int8 or implicit_int8:
            precisions.append("int8")
        plan = EnginePlan(
            precisions,
            profile,
            workspace,
            timing_cache or out / "timing.cache",
            device,
            calibration if implicit_int8 else [],
            implicit_int8,
        )
        with phase("building TensorRT engines"):
            failures += _engines(model, info, onnx_paths, pair, plan)
    if triton_repo is not None and triton is not None:
        engine_path = out / ENGINE_FILES["fp32"] if engine else None
        facts = graph_facts(onnx.load(onnx_paths["fp32"]))
        written = write_repo(triton_repo, onnx_paths["fp32"], facts, triton, engine_path)
        console.print(f"wrote {written}/config.pbtxt  (Triton {triton.platform}, {triton.name})")
    outputs.finish()
    if failures:
        raise typer.Exit(1)


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
    declared: list[int | str], min_text: str | None, opt_text: str | None, max_text: str | None
) -> ShapeProfile:
    """The profile from the options, or the default one with fixed ONNX dimensions kept."""
    if min_text is None and opt_text is None and max_text is None:
        shapes = [
            tuple(
                d if isinstance(d, int) else fallback
                for d, fallback in zip(declared, default, strict=True)
            )
            for default in DEFAULT_PROFILE
        ]
        return ShapeProfile(*shapes)  # type: ignore[arg-type]
    if min_text is None or opt_text is None or max_text is None:
        raise FnetError("give all of --min-shape, --opt-shape and --max-shape, or none")
    return ShapeProfile.parse(min_text, opt_text, max_text)


def _report(label: str, stats: ErrorStats, precision: str) -> bool:
    limit = DEFAULT_TOLERANCE[precision]
    passed = stats.passed("p99.9", limit)
    verdict = "PASS" if passed else "FAIL"
    console.print(f"parity {label}: {stats.describe()}  [{verdict}, p99.9 <= {limit:g}]")
    return passed


def _check(reference: Runner, candidate: Runner, pair: ImagePair, batch: int) -> ErrorStats:
    with candidate:
        return compare_runners(reference, [candidate], [pair], batch=batch)[0].overall


def _onnx_parity(model: FNet, onnx_paths: dict[str, Path], pair: ImagePair, batch: int) -> int:
    """ORT (CPU) against the PyTorch training form; FP16 through its float16 emulation, INT8 as
    its Q/DQ graph."""
    from fnet_deploy.backends.onnx_runner import OnnxRunner
    from fnet_deploy.backends.torch_runner import TorchRunner

    failures = 0
    size = f"{pair.ir.shape[1]}x{pair.ir.shape[0]}"
    with TorchRunner(model) as reference:
        stats = _check(reference, OnnxRunner(onnx_paths["fp32"]), pair, batch)
        failures += not _report(
            f"fnet.onnx (ORT CPU) vs PyTorch on {pair.name} {size}", stats, "fp32"
        )
        if "fp16" in onnx_paths:
            stats = _check(
                reference, OnnxRunner(onnx_paths["fp16"], emulate_fp16=True), pair, batch
            )
            failures += not _report(
                f"fnet_fp16.onnx (float16 arithmetic emulated on CPU) vs PyTorch fp32 on "
                f"{pair.name} {size}",
                stats,
                "fp16",
            )
        if "int8" in onnx_paths:
            stats = _check(reference, OnnxRunner(onnx_paths["int8"]), pair, batch)
            failures += not _report_int8(
                f"fnet_int8.onnx (ORT CPU) vs PyTorch fp32 on {pair.name} {size}", stats
            )
    return failures


INT8_EXPECTED_P999 = 4.0
"""Grey levels (p99.9) up to which an INT8 model that misses the 2-level criterion is what INT8
gives FNet, not a broken export: the default mix measured 0.5-2.8 on the real test sets and 3.4
on black, white and saturated-IR frames with the published weights, and no mix with a useful
share of INT8 holds 2 with them (docs/performance.md, "INT8"); every convolution in INT8 is
4-9."""


def _report_int8(label: str, stats: ErrorStats) -> bool:
    """The INT8 model's parity line; False (a failed export) only beyond what INT8 gives FNet
    (:data:`INT8_EXPECTED_P999`) or with NaN/inf pixels. A miss of the 2-level criterion within
    it is written with its verdict, so that the default ``export --int8`` does not fail on weights
    of the published quality, which no INT8 mix holds to 2 levels."""
    limit = DEFAULT_TOLERANCE["int8"]
    expected = stats.nonfinite == 0 and stats.quantile(0.999) <= INT8_EXPECTED_P999
    if stats.passed("p99.9", limit):
        verdict = f"PASS, p99.9 <= {limit:g}"
    elif expected:
        verdict = (
            f"OVER the {limit:g}-level criterion, as INT8 is for FNet with weights of the "
            f"published quality (up to {INT8_EXPECTED_P999:g}; docs/performance.md, INT8): "
            "written; check it on your own images (fnet-deploy check) or use --fp16"
        )
    else:
        verdict = f"FAIL, p99.9 > {INT8_EXPECTED_P999:g} or NaN/inf: not what INT8 should give"
    console.print(f"parity {label}: {stats.describe()}  [{verdict}]")
    return expected


@dataclass(frozen=True)
class EnginePlan:
    """Which engines to build and how (``implicit_int8``: the INT8 engine from fnet.onnx with
    TensorRT 10's own calibration on ``calibration``, not from the Q/DQ fnet_int8.onnx)."""

    precisions: list[EnginePrecision]
    profile: ShapeProfile
    workspace_mib: int
    timing_cache: Path
    device: str
    calibration: list[ImagePair]
    implicit_int8: bool = False


def _engines(
    model: FNet, info: WeightsInfo, onnx_paths: dict[str, Path], pair: ImagePair, plan: EnginePlan
) -> int:
    """Build the planned engines, then check each against PyTorch on the parity pair."""
    import torch

    from fnet_deploy.backends.tensorrt_runner import TensorRTRunner
    from fnet_deploy.backends.torch_runner import TorchRunner
    from fnet_deploy.export.tensorrt_build import (
        EngineBuildOptions,
        build_engine,
        onnx_precision_for,
    )

    profile, device = plan.profile, plan.device
    _, _, opt_h, opt_w = profile.opt
    check_pair = pair if profile.fits(pair.feed()["ir"].shape) else pair.resized(opt_h, opt_w)
    failures = 0
    reference_device = device if torch.cuda.is_available() else "cpu"
    with TorchRunner(model, reference_device) as reference:
        for precision in plan.precisions:
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
                profile=profile,
                workspace_mib=plan.workspace_mib,
                timing_cache=plan.timing_cache,
                device=device,
                calibration=plan.calibration,
                calibration_cache=onnx_path.parent / "int8_calibration.cache",
            )
            console.print(f"building {engine_path.name} ({precision}) on {device}...")
            built = build_engine(
                onnx_path,
                engine_path,
                options,
                onnx_precision=onnx_precision,
                weights_file=info.path.name,
                weights_sha256=info.sha256,
                model_config=info.config.to_dict(),
            )
            console.print(
                f"wrote {engine_path} (TensorRT {built.tensorrt_version}, {built.gpu_name}, "
                f"profile {format_shape(profile.min)}..{format_shape(profile.max)}, opt "
                f"{format_shape(profile.opt)})"
            )
            commands = built.notes["equivalent_commands"]
            notice(f"  the same build with Polygraphy: {commands['polygraphy_convert'][0]}")
            notice(f"  with trtexec: {commands['trtexec'][0]}")
            notice(
                f"  compared with ONNX Runtime by the polygraphy_run lines of {engine_path}.json"
            )
            stats = _check(reference, TensorRTRunner(engine_path, device), check_pair, 1)
            failures += not _report(f"{engine_path.name} vs PyTorch", stats, precision)
    return failures
