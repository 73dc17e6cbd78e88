"""The ``polygraphy`` and ``trtexec`` command lines equivalent to an engine fnet-deploy builds.

Every engine ``fnet-deploy export --engine`` (or ``bench``) builds is one ONNX model, one
optimization profile for both inputs, a workspace limit, a timing cache, TF32 off, and either a
strongly typed network (FP32, FP16 and Q/DQ INT8 models) or TensorRT 10's implicit INT8 with a
calibration cache. The same recipe written for NVIDIA's tools lets a user rebuild and check an
engine without fnet-deploy:

- ``polygraphy convert``: builds the engine through the same Polygraphy loaders;
- ``trtexec``: builds it with TensorRT's own command-line tool (TensorRT 11 makes every network
  strongly typed and drops ``--stronglyTyped``, ``--int8`` and ``--calib``);
- ``polygraphy run`` (two lines): ONNX Runtime runs the ONNX model on Polygraphy's seeded random
  inputs in [0, 1] at the opt shape and saves its output, then Polygraphy runs the engine on the
  same inputs and compares: the 99.9th percentile of the absolute error within fnet-deploy's
  parity tolerance for that precision (grey levels / 255).

The commands are recorded in the engine's sidecar and printed by ``export``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from fnet_deploy.backends.base import INPUT_NAMES
from fnet_deploy.backends.engine_info import EnginePrecision, Shape, ShapeProfile, format_shape

ERROR_QUANTILE = 0.999
"""The error quantile ``polygraphy run`` checks, as fnet-deploy's parity check does (p99.9)."""


@dataclass(frozen=True)
class EngineRecipe:
    """What one engine build consists of.

    Attributes:
        onnx: the ONNX model the engine is built from.
        engine: the engine file.
        precision: ``fp32``, ``fp16`` or ``int8``.
        profile: min / opt / max shape of both inputs.
        workspace_mib: TensorRT's workspace limit, MiB.
        timing_cache: the timing cache file, or ``None``.
        implicit_int8: TensorRT 10's INT8 calibration (weakly typed network) instead of a
            strongly typed one.
        calibration_cache: the INT8 calibration cache (implicit INT8 only), or ``None``.
        tensorrt_major: the TensorRT major version the commands are written for.
    """

    onnx: Path
    engine: Path
    precision: EnginePrecision
    profile: ShapeProfile
    workspace_mib: int
    timing_cache: Path | None
    implicit_int8: bool
    calibration_cache: Path | None
    tensorrt_major: int


def _polygraphy_shapes(shape: Shape) -> list[str]:
    """``ir:[1,1,64,64] vis:[1,1,64,64]``, one word per input."""
    dims = ",".join(str(d) for d in shape)
    return [f"{name}:[{dims}]" for name in INPUT_NAMES]


def _trtexec_shapes(shape: Shape) -> str:
    """``ir:1x1x64x64,vis:1x1x64x64``."""
    return ",".join(f"{name}:{format_shape(shape)}" for name in INPUT_NAMES)


def polygraphy_convert(recipe: EngineRecipe) -> str:
    """The ``polygraphy convert`` line that builds the same engine."""
    words = ["polygraphy", "convert", str(recipe.onnx)]
    if recipe.implicit_int8:
        words += ["--int8"]
        if recipe.calibration_cache is not None:
            words += ["--calibration-cache", str(recipe.calibration_cache)]
    else:
        words += ["--strongly-typed"]
    for option, shape in (
        ("--trt-min-shapes", recipe.profile.min),
        ("--trt-opt-shapes", recipe.profile.opt),
        ("--trt-max-shapes", recipe.profile.max),
    ):
        words += [option, *_polygraphy_shapes(shape)]
    words += ["--pool-limit", f"workspace:{recipe.workspace_mib}M"]
    if recipe.timing_cache is not None:
        cache = str(recipe.timing_cache)
        words += ["--load-timing-cache", cache, "--save-timing-cache", cache]
    words += ["-o", str(recipe.engine)]
    return shlex.join(words)


def trtexec_build(recipe: EngineRecipe) -> str:
    """The ``trtexec`` line that builds the same engine."""
    words = ["trtexec", f"--onnx={recipe.onnx}", f"--saveEngine={recipe.engine}"]
    if recipe.implicit_int8:
        words += ["--int8"]
        if recipe.calibration_cache is not None:
            words += [f"--calib={recipe.calibration_cache}"]
    elif recipe.tensorrt_major < 11:
        words += ["--stronglyTyped"]
    words += [
        f"--minShapes={_trtexec_shapes(recipe.profile.min)}",
        f"--optShapes={_trtexec_shapes(recipe.profile.opt)}",
        f"--maxShapes={_trtexec_shapes(recipe.profile.max)}",
        f"--memPoolSize=workspace:{recipe.workspace_mib}M",
        "--noTF32",
    ]
    if recipe.timing_cache is not None:
        words += [f"--timingCacheFile={recipe.timing_cache}"]
    return shlex.join(words)


def polygraphy_check(recipe: EngineRecipe, tolerance_grey: float) -> list[str]:
    """The two ``polygraphy run`` lines that compare the engine with ONNX Runtime.

    Args:
        recipe: the engine.
        tolerance_grey: the largest p99.9 absolute error accepted, in grey levels (0-255).

    Returns:
        The ONNX Runtime run that saves the reference output, then the engine run that loads
        and compares it.
    """
    shapes = _polygraphy_shapes(recipe.profile.opt)
    reference = recipe.engine.with_name(recipe.engine.stem + "_onnxrt_outputs.json")
    save = ["polygraphy", "run", str(recipe.onnx), "--onnxrt", "--input-shapes", *shapes]
    save += ["--save-outputs", str(reference)]
    compare = ["polygraphy", "run", str(recipe.engine), "--model-type", "engine", "--trt"]
    compare += ["--input-shapes", *shapes, "--load-outputs", str(reference)]
    compare += ["--atol", f"{tolerance_grey / 255:.3g}", "--rtol", "0"]
    compare += ["--check-error-stat", "quantile", "--error-quantile", f"{ERROR_QUANTILE:g}"]
    return [shlex.join(save), shlex.join(compare)]


def equivalent_commands(recipe: EngineRecipe, tolerance_grey: float) -> dict[str, list[str]]:
    """All of the above, as the sidecar records them (``notes["equivalent_commands"]``)."""
    return {
        "polygraphy_convert": [polygraphy_convert(recipe)],
        "trtexec": [trtexec_build(recipe)],
        "polygraphy_run": polygraphy_check(recipe, tolerance_grey),
    }
