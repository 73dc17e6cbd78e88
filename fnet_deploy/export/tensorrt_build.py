"""Building serialized TensorRT engines from the exported ONNX models (TensorRT 10 Python API).

- ``fp32``: ``fnet.onnx``, strongly typed network;
- ``fp16``: ``fnet_fp16.onnx`` (float16 inside, float32 at the boundary), strongly typed, so
  TensorRT keeps exactly the graph's types;
- ``int8``: ``fnet.onnx``, weakly typed with the INT8 flag and an entropy calibrator fed with
  real image pairs at the profile's opt shape (implicit quantization; deprecated by TensorRT
  10.1 in favour of explicit Q/DQ, still supported; layers without INT8 kernels run in FP32).

TF32 is always off: the gamma = 100 gate of the threshold amplifies the rounding of TF32's
10-bit mantissa. Every build uses one optimization profile for both inputs, a timing cache
(loaded and saved; one TensorRT rejects, from another GPU or version, is replaced) and a
workspace limit, and writes the engine and then its JSON sidecar atomically. The INT8
calibration cache is reused only for the same ONNX model and calibration data. TensorRT 10 is
required (TensorRT 11 removed implicit INT8). TensorRT and cuda-python are imported only when a
build runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fnet_deploy import __version__
from fnet_deploy.atomic import write_bytes_atomic
from fnet_deploy.backends.base import INPUT_NAMES
from fnet_deploy.backends.cuda_buffers import (
    DeviceBuffer,
    create_stream,
    destroy_stream,
    select_device,
    synchronize,
)
from fnet_deploy.backends.device import cuda_index
from fnet_deploy.backends.engine_info import (
    EngineInfo,
    EnginePrecision,
    Shape,
    ShapeProfile,
    format_shape,
    write_sidecar,
)
from fnet_deploy.errors import FnetError
from fnet_deploy.export.parity import ImagePair
from fnet_deploy.model.weights import file_sha256
from fnet_deploy.optional import require

ONNX_PRECISION: dict[str, str] = {"fp32": "fp32", "fp16": "fp16", "int8": "fp32"}
"""The ONNX model each engine precision is built from."""


@dataclass(frozen=True)
class EngineBuildOptions:
    """How to build one engine.

    Attributes:
        precision: ``fp32``, ``fp16`` or ``int8``.
        profile: min / opt / max input shape (N x 1 x H x W) for both inputs.
        workspace_mib: limit of TensorRT's scratch memory pool, MiB.
        timing_cache: file to load tactic timings from and save them to (``None``: none).
        device: ``cuda`` or ``cuda:N``.
        calibration: real pairs for INT8 calibration (required for ``int8``).
        calibration_cache: file to reuse / store INT8 scales (``None``: none).
    """

    precision: EnginePrecision
    profile: ShapeProfile
    workspace_mib: int = 2048
    timing_cache: Path | None = None
    device: str = "cuda:0"
    calibration: Sequence[ImagePair] = ()
    calibration_cache: Path | None = None


def calibration_batches(pairs: Sequence[ImagePair], shape: Shape) -> list[dict[str, np.ndarray]]:
    """Real pairs resized to ``shape`` (N x 1 x H x W) and grouped into full batches of N.

    Returns:
        Feeds ``{"ir", "vis"}`` of N x 1 x H x W float32 in [0, 1]; an incomplete last batch is
        dropped.

    Raises:
        FnetError: fewer than N pairs.
    """
    batch, _, height, width = shape
    if len(pairs) < batch:
        raise FnetError(f"INT8 calibration needs at least {batch} pairs, got {len(pairs)}")
    resized = [
        {
            name: cv2.resize(getattr(pair, name), (width, height), interpolation=cv2.INTER_AREA)
            for name in INPUT_NAMES
        }
        for pair in pairs
    ]
    return [
        {
            name: np.ascontiguousarray(
                np.stack([item[name] for item in resized[start : start + batch]])[:, None],
                np.float32,
            )
            for name in INPUT_NAMES
        }
        for start in range(0, len(resized) - batch + 1, batch)
    ]


def calibration_key(onnx_path: Path, batches: list[dict[str, np.ndarray]]) -> str:
    """SHA-256 over the ONNX model and the calibration data: what an INT8 cache is valid for."""
    digest = hashlib.sha256(file_sha256(onnx_path).encode())
    for feed in batches:
        for name in INPUT_NAMES:
            digest.update(str(feed[name].shape).encode())
            digest.update(feed[name].tobytes())
    return digest.hexdigest()


def _entropy_calibrator(
    trt: Any, batches: list[dict[str, np.ndarray]], cache: Path | None, key: str
) -> Any:
    """An INT8 entropy calibrator over ``batches``.

    The cache is reused only when ``<cache>.key`` holds ``key`` (same ONNX model, same
    calibration pairs, same shape); otherwise TensorRT calibrates again and both are rewritten.
    """
    key_path = cache.with_name(cache.name + ".key") if cache is not None else None

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """Feeds real pairs to TensorRT's INT8 entropy calibration, one batch at a time."""

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.remaining = iter(batches)
            self.buffers = {name: DeviceBuffer() for name in INPUT_NAMES}
            self.stream = create_stream()

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            feed = next(self.remaining, None)
            if feed is None:
                return None
            pointers = [self.buffers[name].upload(feed[name], self.stream) for name in names]
            synchronize(self.stream)
            return pointers

        def read_calibration_cache(self) -> bytes | None:
            if cache is None or key_path is None or not cache.is_file():
                return None
            if not key_path.is_file() or key_path.read_text().strip() != key:
                return None
            return cache.read_bytes()

        def write_calibration_cache(self, data: Any) -> None:
            if cache is not None and key_path is not None:
                write_bytes_atomic(cache, bytes(data))
                write_bytes_atomic(key_path, key.encode())

        def release(self) -> None:
            for buffer in self.buffers.values():
                buffer.free()
            destroy_stream(self.stream)

    return EntropyCalibrator()


def _declared_input_dims(network: Any) -> list[int | str]:
    shape = network.get_input(0).shape
    return [int(d) if int(d) >= 0 else "dynamic" for d in shape]


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    options: EngineBuildOptions,
    *,
    onnx_precision: str,
    weights_file: str = "",
    weights_sha256: str = "",
) -> EngineInfo:
    """Build a serialized TensorRT engine from an exported ONNX model, with its sidecar.

    Args:
        onnx_path: ``fnet.onnx`` (fp32, int8 engines) or ``fnet_fp16.onnx`` (fp16 engines).
        engine_path: where to write the engine (the sidecar goes to ``<engine>.json``).
        options: precision, profile, workspace, timing cache, device, calibration data.
        onnx_precision: the precision recorded in the ONNX model's metadata.
        weights_file: name of the weights the ONNX model came from (for the sidecar).
        weights_sha256: their SHA-256 (for the sidecar).

    Returns:
        What the sidecar records.

    Raises:
        MissingDependencyError: TensorRT or cuda-python is not installed.
        FnetError: no GPU, a model / profile mismatch, or TensorRT failed to parse or build.
    """
    trt = require("tensorrt")
    precision = options.precision
    if ONNX_PRECISION[precision] != onnx_precision:
        raise FnetError(
            f"a {precision} engine is built from the {ONNX_PRECISION[precision]} ONNX model, "
            f"{onnx_path.name} is {onnx_precision}"
        )
    if precision == "int8" and not options.calibration:
        raise FnetError("an INT8 engine needs calibration pairs (--calib-ir/--calib-vis)")
    gpu_name, capability = select_device(cuda_index(options.device))

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if precision != "int8":
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise FnetError(f"{onnx_path}: TensorRT cannot parse the model ({errors})")
    conflicts = options.profile.conflicts(_declared_input_dims(network))
    if conflicts:
        raise FnetError(f"{onnx_path.name}: {'; '.join(conflicts)}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    profile = builder.create_optimization_profile()
    for name in INPUT_NAMES:
        profile.set_shape(name, options.profile.min, options.profile.opt, options.profile.max)
    if config.add_optimization_profile(profile) < 0:
        shapes = " / ".join(
            format_shape(shape)
            for shape in (options.profile.min, options.profile.opt, options.profile.max)
        )
        raise FnetError(f"TensorRT rejected the profile min / opt / max {shapes}")
    config.clear_flag(trt.BuilderFlag.TF32)
    calibrator = None
    if precision == "int8":
        if _major(trt.__version__) >= 11:
            raise FnetError(
                f"TensorRT {trt.__version__} has no implicit INT8 calibration (removed in "
                "TensorRT 11); install tensorrt<11 for --int8"
            )
        config.set_flag(trt.BuilderFlag.INT8)
        batches = calibration_batches(options.calibration, options.profile.opt)
        key = calibration_key(onnx_path, batches)
        calibrator = _entropy_calibrator(trt, batches, options.calibration_cache, key)
        config.int8_calibrator = calibrator
        if not config.set_calibration_profile(profile):
            raise FnetError("TensorRT rejected the calibration profile")
    stale_cache = _use_timing_cache(config, options.timing_cache)

    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.release()
    if serialized is None:
        raise FnetError(f"TensorRT failed to build a {precision} engine from {onnx_path.name}")
    info = EngineInfo(
        tensorrt_version=str(trt.__version__),
        gpu_name=gpu_name,
        compute_capability=capability,
        precision=precision,
        profile=options.profile.to_dict(),
        onnx_file=onnx_path.name,
        onnx_sha256=file_sha256(onnx_path),
        workspace_mib=options.workspace_mib,
        package_version=__version__,
        weights_file=weights_file,
        weights_sha256=weights_sha256,
        notes={
            "strongly_typed": precision != "int8",
            "tf32": False,
            "stale_timing_cache_replaced": stale_cache,
        },
    )
    write_bytes_atomic(engine_path, bytes(serialized))
    write_sidecar(engine_path, info)
    if options.timing_cache is not None:
        cache = config.get_timing_cache()
        if cache is not None:
            write_bytes_atomic(options.timing_cache, bytes(cache.serialize()))
    return info


def _major(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def _use_timing_cache(config: Any, path: Path | None) -> bool:
    """Load the timing cache at ``path`` into ``config`` (an empty one if none or unusable).

    Returns:
        True when a cache file existed but TensorRT rejected it (another GPU or TensorRT
        version); the build then starts from an empty cache, which replaces the file.
    """
    stored = path.read_bytes() if path is not None and path.is_file() else b""
    if stored:
        loaded = config.create_timing_cache(stored)
        if loaded is not None and config.set_timing_cache(loaded, ignore_mismatch=False):
            return False
    if not config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False):
        raise FnetError("TensorRT could not set up an empty timing cache")
    return bool(stored)
