"""The options of ``fnet-deploy export``, each declared once with its help (the shared ones are
in :mod:`fnet_deploy.commands.common`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

EXPORT_PRECISIONS = ("fp32", "fp16", "int8")
"""What ``--precision`` takes (fp32, the reference, is always written)."""

OutFolderOption = Annotated[Path, typer.Option("--out", help="Output folder (created if needed).")]

ExportPrecisionOption = Annotated[
    list[str] | None,
    typer.Option(
        "--precision",
        help="Models to write beside fnet.onnx (fp32, always written as the reference): fp16 "
        "(fnet_fp16.onnx, float16 compute, float32 I/O) and/or int8 (fnet_int8.onnx: explicit "
        "INT8 Q/DQ nodes, ONNX Runtime's static quantization, calibrated on real pairs, "
        "--calib-ir/--calib-vis, default the shipped sample and sequence; with --engine also a "
        "strongly typed INT8 engine built from it). Repeatable or comma-separated: fp16,int8.",
    ),
]

FixedBatchOption = Annotated[
    int | None,
    typer.Option("--batch", min=1, help="Fix the batch N of the ONNX inputs (default: dynamic)."),
]

FixedSizeOption = Annotated[
    str | None,
    typer.Option(
        "--size",
        help="Fix the input size WIDTHxHEIGHT, e.g. 640x480 (default: dynamic).",
    ),
]

OldHeightOption = Annotated[int | None, typer.Option("--height", hidden=True)]
"""``--height H`` (with ``--width``): the old spelling of ``--size WxH``, hidden."""

OldWidthOption = Annotated[int | None, typer.Option("--width", hidden=True)]
"""``--width W`` (with ``--height``): the old spelling of ``--size WxH``, hidden."""

OpsetOption = Annotated[
    int, typer.Option(min=18, help="ONNX opset (ai.onnx; the exporter writes 18 or newer).")
]

MergeEncodersOption = Annotated[
    bool,
    typer.Option(help="Merge all W_k(e) of a block into one conv (measured slower on CPU)."),
]

Col2imOption = Annotated[
    bool,
    typer.Option(
        help="Compute the convolutions with few outputs as 1x1 conv + Col2Im: about 2x "
        "faster on ONNX Runtime's CPU provider; TensorRT does not support Col2Im."
    ),
]

ParityIrOption = Annotated[
    Path | None,
    typer.Option("--ir", help="IR image of the parity pair (default: shipped sample)."),
]

ParityVisOption = Annotated[
    Path | None, typer.Option("--vis", help="Visible image of the parity pair.")
]

EngineOption = Annotated[
    bool, typer.Option(help="Also build TensorRT engines (needs the tensorrt extra and a GPU).")
]

ImplicitInt8Option = Annotated[
    bool,
    typer.Option(
        help="Deprecated, TensorRT 10 only (TensorRT 11 removed it): with --engine, an INT8 "
        "engine from fnet.onnx calibrated by TensorRT itself on --calib-ir/--calib-vis. "
        "Prefer --precision int8 (explicit Q/DQ, TensorRT 10 and 11)."
    ),
]

CalibIrOption = Annotated[Path | None, typer.Option(help="Folder of IR calibration images.")]

CalibVisOption = Annotated[
    Path | None, typer.Option(help="Folder of visible calibration images (paired by name).")
]

CalibLimitOption = Annotated[int, typer.Option(min=1, help="At most this many calibration pairs.")]

CalibMethodOption = Annotated[
    str,
    typer.Option(
        help="With --precision int8: activation ranges from the largest magnitude seen (max), "
        "a percentile of it (percentile) or its entropy (entropy)."
    ),
]

FloatLayersOption = Annotated[
    str | None,
    typer.Option(
        help="With --precision int8: convolutions kept in float32, comma-separated names or "
        "wildcards (e.g. 'unique_*,tail_*', the default: all but the common block), or 'none'."
    ),
]


def _shape_help(which: str) -> str:
    """The help of ``--<which>-shape``."""
    return (
        f"Engine profile {which}: a tensor shape NxCxHxW as trtexec writes it (1x1x480x640), "
        "for both inputs or per input in trtexec's form ir:1x1x480x640,vis:1x1x480x640 (the "
        "two must agree), or an image size WIDTHxHEIGHT (640x480, N = 1)."
    )


MinShapeOption = Annotated[str | None, typer.Option(help=_shape_help("minimum"))]

OptShapeOption = Annotated[str | None, typer.Option(help=_shape_help("optimum (tuned for)"))]

MaxShapeOption = Annotated[str | None, typer.Option(help=_shape_help("maximum"))]

WorkspaceOption = Annotated[int, typer.Option(min=64, help="TensorRT workspace limit, MiB.")]

TimingCacheOption = Annotated[
    Path | None, typer.Option(help="TensorRT timing cache (default: OUT/timing.cache).")
]

BuildDeviceOption = Annotated[
    str,
    typer.Option(
        "--device",
        help="The GPU that builds the engines and runs the Triton model: cuda or cuda:N; cpu "
        "for a Triton model on the CPU (the ONNX models themselves are device-independent).",
    ),
]

TritonRepoOption = Annotated[
    Path | None,
    typer.Option(
        help="Also write a Triton model repository: DIR/NAME/config.pbtxt and "
        "DIR/NAME/1/model.onnx (model.plan and platform tensorrt_plan with --engine)."
    ),
]

TritonNameOption = Annotated[str, typer.Option(help="The Triton model's name.")]

TritonAcceleratorOption = Annotated[
    str,
    typer.Option(
        help="ONNX Runtime's TensorRT provider inside Triton (GPU): none, tensorrt or "
        "tensorrt-fp16."
    ),
]
