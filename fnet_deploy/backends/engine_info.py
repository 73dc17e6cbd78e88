"""The JSON sidecar next to a TensorRT engine, and the shapes of its optimization profile.

A serialized TensorRT engine only runs with the TensorRT version and on the GPU model it was
built for. The sidecar (``fnet.engine`` -> ``fnet.engine.json``) records both, with the
precision, the profile, the SHA-256 of the ONNX model, the architecture the ONNX model records
and how the engine was built (``notes``: strongly typed or implicit INT8, TF32 off, a replaced
timing cache, the equivalent ``polygraphy`` / ``trtexec`` commands), so that a mismatch is
reported as one clear line with the command that rebuilds the engine. Nothing here imports
TensorRT.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from fnet_deploy.backends.base import INPUT_NAMES, SizeRange
from fnet_deploy.helpers.atomic import write_bytes_atomic
from fnet_deploy.helpers.errors import FnetError, InputError

EnginePrecision = Literal["fp32", "fp16", "int8"]
ENGINE_PRECISIONS: tuple[EnginePrecision, ...] = ("fp32", "fp16", "int8")
SIDECAR_FORMAT = "fnet-deploy-engine/1"

Shape = tuple[int, int, int, int]


def parse_shape(text: str, option: str) -> Shape:
    """A tensor shape ``"1x1x480x640"`` (N x C x H x W, as TensorRT and trtexec write it), the
    same per input in trtexec's form ``"ir:1x1x480x640,vis:1x1x480x640"``, or an image size
    ``"640x480"`` (WIDTHxHEIGHT, the command line's order for sizes; N = 1) -> ``(N, 1, H, W)``.

    Raises:
        FnetError: not 2 or 4 positive integers separated by ``x``, a channel count other
            than 1, or per-input shapes that name other inputs or differ.
    """
    if ":" in text:
        return _per_input_shape(text, option)
    try:
        parts = [int(part) for part in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 2:
        width, height = parts
        parts = [1, 1, height, width]
    if len(parts) != 4 or min(parts) < 1:
        raise FnetError(
            f"{option} expects NxCxHxW like 1x1x480x640 or WIDTHxHEIGHT like 640x480, got {text!r}"
        )
    if parts[1] != 1:
        raise FnetError(f"{option}: FNet inputs have 1 channel, got {parts[1]} in {text!r}")
    return parts[0], parts[1], parts[2], parts[3]


def _per_input_shape(text: str, option: str) -> Shape:
    """trtexec's ``ir:NxCxHxW,vis:NxCxHxW``: the one shape both of FNet's inputs take.

    Raises:
        FnetError: an input other than ``ir`` and ``vis``, one named twice or missing, or two
            shapes that differ.
    """
    shapes: dict[str, Shape] = {}
    for part in text.split(","):
        name, _, shape = part.partition(":")
        name = name.strip()
        if name not in INPUT_NAMES or name in shapes or not shape:
            raise FnetError(
                f"{option} expects NxCxHxW per input like ir:1x1x480x640,vis:1x1x480x640 (each "
                f"input once), got {text!r}"
            )
        shapes[name] = parse_shape(shape.strip(), option)
    missing = [name for name in INPUT_NAMES if name not in shapes]
    if missing:
        raise FnetError(f"{option} {text!r}: no shape for input {missing[0]} (give ir: and vis:)")
    ir, vis = (shapes[name] for name in INPUT_NAMES)
    if ir != vis:
        raise FnetError(
            f"{option}: FNet's inputs take one shape, got ir {format_shape(ir)} and vis "
            f"{format_shape(vis)}"
        )
    return ir


def format_shape(shape: Shape | list[int]) -> str:
    """``(1, 1, 480, 640)`` -> ``"1x1x480x640"``."""
    return "x".join(str(d) for d in shape)


@dataclass(frozen=True)
class ShapeProfile:
    """A TensorRT optimization profile for both inputs: smallest, tuned-for and largest shape."""

    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        if not all(a <= b <= c for a, b, c in zip(self.min, self.opt, self.max, strict=True)):
            raise FnetError(
                "optimization profile needs min <= opt <= max in every dimension, got "
                f"min {format_shape(self.min)}, opt {format_shape(self.opt)}, "
                f"max {format_shape(self.max)}"
            )

    @classmethod
    def parse(cls, min_text: str, opt_text: str, max_text: str) -> ShapeProfile:
        """From the ``--min-shape/--opt-shape/--max-shape`` texts."""
        return cls(
            parse_shape(min_text, "--min-shape"),
            parse_shape(opt_text, "--opt-shape"),
            parse_shape(max_text, "--max-shape"),
        )

    def fits(self, shape: tuple[int, ...]) -> bool:
        """Whether ``shape`` lies inside the profile."""
        return len(shape) == 4 and all(
            lo <= d <= hi for lo, d, hi in zip(self.min, shape, self.max, strict=True)
        )

    def conflicts(self, declared: list[int | str]) -> list[str]:
        """Dimensions where a fixed ONNX input shape (ints; names are dynamic) and the profile
        disagree."""
        return [
            f"dimension {axis} is fixed to {want} in the ONNX model but the profile spans "
            f"{lo}..{hi}"
            for axis, (want, lo, hi) in enumerate(zip(declared, self.min, self.max, strict=False))
            if isinstance(want, int) and not lo == want == hi
        ]

    def to_dict(self) -> dict[str, list[int]]:
        """JSON form."""
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    def size_range(self) -> SizeRange:
        """The image sizes (H x W) the profile takes."""
        return SizeRange((self.min[2], self.min[3]), (self.max[2], self.max[3]))


@dataclass
class EngineInfo:
    """What the sidecar records about one engine."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: EnginePrecision
    profile: dict[str, list[int]]
    onnx_file: str
    onnx_sha256: str
    workspace_mib: int
    package_version: str
    weights_file: str = ""
    weights_sha256: str = ""
    model_config: dict[str, Any] | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    format: str = SIDECAR_FORMAT

    @property
    def implicit_int8(self) -> bool:
        """Whether TensorRT calibrated the engine itself (the deprecated TensorRT 10 path)
        rather than reading the scales of an explicitly quantized (Q/DQ) ONNX model."""
        return bool(self.notes.get("implicit_int8", False))

    def shape_profile(self) -> ShapeProfile:
        """The recorded optimization profile."""
        shapes = [tuple(self.profile[key]) for key in ("min", "opt", "max")]
        return ShapeProfile(*shapes)  # type: ignore[arg-type]


def sidecar_path(engine_path: Path) -> Path:
    """``fnet.engine`` -> ``fnet.engine.json``."""
    return engine_path.with_name(engine_path.name + ".json")


def write_sidecar(engine_path: Path, info: EngineInfo) -> Path:
    """Write the sidecar of ``engine_path`` atomically; returns its path."""
    path = sidecar_path(engine_path)
    text = json.dumps(asdict(info), indent=2, sort_keys=True) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))
    return path


def read_sidecar(engine_path: Path) -> EngineInfo:
    """Read and validate the sidecar of ``engine_path``.

    Raises:
        InputError: the sidecar is missing, unreadable or not an fnet-deploy engine record.
    """
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise InputError(
            engine_path,
            f"no sidecar {path.name} next to the engine (it records the GPU and TensorRT "
            "version the engine needs); rebuild with fnet-deploy export --engine",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"unreadable engine sidecar ({err})") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise InputError(path, "not an fnet-deploy engine sidecar")
    try:
        info = EngineInfo(**data)
        info.shape_profile()
    except (TypeError, KeyError, ValueError, FnetError) as err:
        raise InputError(path, f"malformed engine sidecar ({err})") from None
    if info.precision not in ENGINE_PRECISIONS:
        raise InputError(path, f"unknown engine precision {info.precision!r}")
    return info


def compatibility_problems(
    info: EngineInfo, tensorrt_version: str, gpu_name: str, compute_capability: str
) -> list[str]:
    """How this machine differs from the one the engine was built for (empty if it does not).

    TensorRT engines need the same TensorRT version and the same GPU model (name and compute
    capability) at load time.
    """
    problems = []
    if info.tensorrt_version != tensorrt_version:
        problems.append(
            f"built with TensorRT {info.tensorrt_version}, this machine has {tensorrt_version}"
        )
    if info.compute_capability != compute_capability or info.gpu_name != gpu_name:
        problems.append(
            f"built for {info.gpu_name} (compute capability {info.compute_capability}), this "
            f"GPU is {gpu_name} (compute capability {compute_capability})"
        )
    return problems


def rebuild_command(engine_path: Path, info: EngineInfo) -> str:
    """The ``fnet-deploy export`` command that rebuilds this engine on the current machine.

    INT8 engines are rebuilt from the Q/DQ model (``--precision int8``), or, for one TensorRT
    calibrated itself, with the deprecated ``--implicit-int8`` (TensorRT 10 only).
    """
    int8 = "--implicit-int8" if info.implicit_int8 else "--precision int8"
    calibration = "--calib-ir IR_DIR --calib-vis VIS_DIR"
    flags = {"fp32": "", "fp16": " --precision fp16", "int8": f" {int8} {calibration}"}
    profile = info.profile
    return (
        f"fnet-deploy export --weights {info.weights_file or 'WEIGHTS'} "
        f"--out {engine_path.parent} --engine{flags[info.precision]} "
        f"--min-shape {format_shape(profile['min'])} --opt-shape {format_shape(profile['opt'])} "
        f"--max-shape {format_shape(profile['max'])}"
    )
