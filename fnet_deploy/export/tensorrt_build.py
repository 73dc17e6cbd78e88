"""Building serialized TensorRT engines from the exported ONNX models, through Polygraphy.

Polygraphy (NVIDIA's maintained Python toolkit for TensorRT) parses the model
(``NetworkFromOnnxPath``), configures the build (``CreateConfig``: the optimization profile,
the workspace limit, TF32 off, INT8 calibration) and builds (``EngineBytesFromNetwork``).
fnet-deploy adds what those loaders do not do: the JSON sidecar (GPU, TensorRT version,
profile, architecture, the equivalent ``polygraphy`` / ``trtexec`` commands), the replacement of
a timing cache TensorRT rejects, an INT8 calibration cache keyed on model and data, atomic
writes, and one-line errors.

Engine precisions and the ONNX model each is built from (TensorRT 10 and 11 unless noted):

- ``fp32``: ``fnet.onnx``, strongly typed;
- ``fp16``: ``fnet_fp16.onnx`` (float16 inside, float32 at the boundary), strongly typed, so
  TensorRT keeps exactly the graph's types;
- ``int8``: ``fnet_int8.onnx`` (explicit Q/DQ nodes, ``fnet-deploy export --precision int8``),
  strongly typed: TensorRT reads the scales from the graph;
- ``int8`` with implicit calibration (deprecated, TensorRT 10 only; TensorRT 11 removed it):
  ``fnet.onnx``, weakly typed with the INT8 flag and Polygraphy's calibrator over TensorRT's
  entropy calibrator, fed with real image pairs at the profile's opt shape.

TF32 is always off: the gamma = 100 gate of the threshold amplifies the rounding of TF32's
10-bit mantissa. TensorRT and Polygraphy are imported only when a build runs; device memory for
calibration is held by torch CUDA tensors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from fnet_deploy import __version__
from fnet_deploy.backends.base import INPUT_NAMES
from fnet_deploy.backends.device import cuda_index
from fnet_deploy.backends.engine_info import (
    EngineInfo,
    EnginePrecision,
    Shape,
    ShapeProfile,
    write_sidecar,
)
from fnet_deploy.backends.tensor_buffers import TensorBuffers
from fnet_deploy.backends.tensorrt_runner import select_gpu
from fnet_deploy.export.parity import DEFAULT_TOLERANCE, ImagePair
from fnet_deploy.export.tensorrt_commands import EngineRecipe, equivalent_commands
from fnet_deploy.helpers.atomic import write_bytes_atomic
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.helpers.optional import require
from fnet_deploy.model.weights import file_sha256

SUPPORTED_TENSORRT = (10, 11)
"""TensorRT major versions the builder and runner are written for."""


@dataclass(frozen=True)
class EngineBuildOptions:
    """How to build one engine.

    Attributes:
        precision: ``fp32``, ``fp16`` or ``int8``.
        profile: min / opt / max input shape (N x 1 x H x W) for both inputs.
        workspace_mib: limit of TensorRT's scratch memory pool, MiB.
        timing_cache: file to load tactic timings from and save them to (``None``: none).
        device: ``cuda`` or ``cuda:N``.
        calibration: real pairs for implicit INT8 calibration (that path only).
        calibration_cache: file to reuse / store implicit INT8 scales (``None``: none).
    """

    precision: EnginePrecision
    profile: ShapeProfile
    workspace_mib: int = 2048
    timing_cache: Path | None = None
    device: str = "cuda:0"
    calibration: Sequence[ImagePair] = ()
    calibration_cache: Path | None = None


@dataclass(frozen=True)
class BuildMode:
    """How TensorRT builds an engine of one precision from one ONNX model.

    Attributes:
        strongly_typed: the network keeps the ONNX graph's types (everything but implicit INT8).
        implicit_int8: TensorRT calibrates INT8 scales itself (TensorRT 10 only, deprecated).
    """

    strongly_typed: bool
    implicit_int8: bool


def tensorrt_major(version: str) -> int:
    """``"10.13.3.9"`` -> 10 (0 when unreadable)."""
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def onnx_precision_for(precision: EnginePrecision, implicit_int8: bool = False) -> str:
    """The precision of the ONNX model an engine is built from (``fp32`` for implicit INT8)."""
    return "fp32" if implicit_int8 else precision


def build_mode(precision: EnginePrecision, onnx_precision: str, tensorrt_version: str) -> BuildMode:
    """Check that a ``precision`` engine can be built from a model recorded as ``onnx_precision``
    with this TensorRT, and say how.

    Raises:
        FnetError: an unsupported TensorRT, a model of the wrong precision, or implicit INT8
            (an INT8 engine from the float32 model) on TensorRT 11 or newer.
    """
    major = tensorrt_major(tensorrt_version)
    if major < SUPPORTED_TENSORRT[0]:
        raise FnetError(
            f"TensorRT {tensorrt_version} is too old: fnet-deploy builds and runs engines with "
            "TensorRT 10 or 11 (pip install 'fnet-deploy[tensorrt]')"
        )
    if precision == "int8" and onnx_precision == "fp32":
        if major >= 11:
            raise FnetError(
                f"TensorRT {tensorrt_version} has no implicit INT8 calibration (TensorRT 11 "
                "removed it): build the INT8 engine from the Q/DQ model with --precision int8 "
                "instead of --implicit-int8"
            )
        return BuildMode(strongly_typed=False, implicit_int8=True)
    if onnx_precision != precision:
        raise FnetError(
            f"a {precision} engine is built from the {precision} ONNX model, not a "
            f"{onnx_precision} one"
        )
    return BuildMode(strongly_typed=True, implicit_int8=False)


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


def calibration_key_path(cache: Path) -> Path:
    """``int8_calibration.cache`` -> ``int8_calibration.cache.key``."""
    return cache.with_name(cache.name + ".key")


def discard_stale_calibration_cache(cache: Path, key: str) -> bool:
    """Delete a calibration cache (and its key file) not made for ``key``.

    TensorRT skips calibration whenever the cache file exists, whatever model or data it came
    from; only a cache whose ``.key`` file holds ``key`` may be read.

    Returns:
        True when a cache was deleted.
    """
    key_path = calibration_key_path(cache)
    valid = key_path.is_file() and key_path.read_text().strip() == key
    if not cache.exists() or valid:
        return False
    cache.unlink()
    key_path.unlink(missing_ok=True)
    return True


class CalibrationFeeds:
    """Calibration batches as Polygraphy's calibrator reads them: an iterable it can rewind,
    each item ``{"ir", "vis"}`` uploaded into the same device buffers (float32 tensors).

    Args:
        batches: host feeds from :func:`calibration_batches`.
        buffers: where to upload them (``cuda:N`` for TensorRT).
    """

    def __init__(self, batches: list[dict[str, np.ndarray]], buffers: TensorBuffers) -> None:
        self.batches = batches
        self.buffers = buffers

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for feed in self.batches:
            yield {name: self.buffers.upload(name, feed[name]) for name in INPUT_NAMES}


class TimingCacheFile:
    """The timing cache of one build, kept in a file across builds.

    :meth:`attach` loads the file into the builder config (the signature of Polygraphy's
    ``PostprocessConfig`` callbacks); a cache TensorRT rejects (from another GPU or TensorRT
    version) is left out and the build starts from an empty one. :meth:`save` then writes the
    build's cache over the file, so a rejected cache is replaced rather than merged.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.stale = False
        self._config: Any = None

    def attach(self, builder: Any, network: Any, config: Any) -> None:
        """Set the stored cache on ``config`` (a TensorRT ``IBuilderConfig``) if TensorRT takes
        it; otherwise mark it stale and set an empty one."""
        self._config = config
        stored = self.path.read_bytes() if self.path is not None and self.path.is_file() else b""
        if not stored:
            return
        loaded = config.create_timing_cache(stored)
        if loaded is not None and config.set_timing_cache(loaded, ignore_mismatch=False):
            return
        self.stale = True
        if not config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False):
            raise FnetError("TensorRT could not set up an empty timing cache")

    def save(self) -> None:
        """Write the config's timing cache to the file (atomically), if there is one."""
        if self.path is None or self._config is None:
            return
        cache = self._config.get_timing_cache()
        if cache is not None:
            write_bytes_atomic(self.path, bytes(cache.serialize()))


def _declared_input_dims(network: Any) -> list[int | str]:
    shape = network.get_input(0).shape
    return [int(d) if int(d) >= 0 else "dynamic" for d in shape]


def _has_qdq(trt: Any, network: Any) -> bool:
    kinds = (trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE)
    return any(network.get_layer(i).type in kinds for i in range(network.num_layers))


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    options: EngineBuildOptions,
    *,
    onnx_precision: str,
    weights_file: str = "",
    weights_sha256: str = "",
    model_config: dict[str, Any] | None = None,
) -> EngineInfo:
    """Build a serialized TensorRT engine from an exported ONNX model, with its sidecar.

    Args:
        onnx_path: ``fnet.onnx`` (fp32, implicit int8), ``fnet_fp16.onnx`` (fp16) or
            ``fnet_int8.onnx`` (Q/DQ int8).
        engine_path: where to write the engine (the sidecar goes to ``<engine>.json``).
        options: precision, profile, workspace, timing cache, device, calibration data.
        onnx_precision: the precision recorded in the ONNX model's metadata.
        weights_file: name of the weights the ONNX model came from (for the sidecar).
        weights_sha256: their SHA-256 (for the sidecar).
        model_config: the architecture (``ModelConfig.to_dict()``, for the sidecar).

    Returns:
        What the sidecar records.

    Raises:
        MissingDependencyError: TensorRT or Polygraphy is not installed.
        FnetError: no GPU, a model / profile mismatch, implicit INT8 on TensorRT 11, or
            TensorRT failed to parse or build.
    """
    trt = require("tensorrt")
    loaders = require("polygraphy.backend.trt")
    polygraphy_error = require("polygraphy.exception").PolygraphyException
    log = require("polygraphy.logger").G_LOGGER
    version = str(trt.__version__)
    precision = options.precision
    mode = build_mode(precision, onnx_precision, version)
    if mode.implicit_int8 and not options.calibration:
        raise FnetError("implicit INT8 needs calibration pairs (--calib-ir/--calib-vis)")
    gpu = select_gpu(cuda_index(options.device))
    timing = TimingCacheFile(options.timing_cache)
    calibrator = None
    key = ""
    with log.verbosity(log.WARNING):
        try:
            builder, network, parser = loaders.NetworkFromOnnxPath(
                str(onnx_path), strongly_typed=mode.strongly_typed
            )()
            conflicts = options.profile.conflicts(_declared_input_dims(network))
            if conflicts:
                raise FnetError(f"{onnx_path.name}: {'; '.join(conflicts)}")
            if onnx_precision == "int8" and not _has_qdq(trt, network):
                raise FnetError(
                    f"{onnx_path.name} is recorded as int8 but has no Q/DQ nodes: re-export it "
                    "with fnet-deploy export --precision int8"
                )
            profile = loaders.Profile()
            for name in INPUT_NAMES:
                profile.add(
                    name, min=options.profile.min, opt=options.profile.opt, max=options.profile.max
                )
            if mode.implicit_int8:
                batches = calibration_batches(options.calibration, options.profile.opt)
                key = calibration_key(onnx_path, batches)
                cache = options.calibration_cache
                if cache is not None:
                    discard_stale_calibration_cache(cache, key)
                feeds = CalibrationFeeds(batches, TensorBuffers(gpu.device))
                calibrator = loaders.Calibrator(feeds, cache=None if cache is None else str(cache))
            config = loaders.CreateConfig(
                tf32=False,
                int8=mode.implicit_int8,
                calibrator=calibrator,
                profiles=[profile],
                memory_pool_limits={trt.MemoryPoolType.WORKSPACE: options.workspace_mib << 20},
            )
            serialized = loaders.EngineBytesFromNetwork(
                (builder, network, parser), config=loaders.PostprocessConfig(config, timing.attach)
            )()
        except polygraphy_error as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else "see above"
            raise FnetError(
                f"{onnx_path.name}: TensorRT could not build the {precision} engine ({reason})"
            ) from None
        finally:
            if calibrator is not None:
                calibrator.free()
    recipe = EngineRecipe(
        onnx=onnx_path,
        engine=engine_path,
        precision=precision,
        profile=options.profile,
        workspace_mib=options.workspace_mib,
        timing_cache=options.timing_cache,
        implicit_int8=mode.implicit_int8,
        calibration_cache=options.calibration_cache if mode.implicit_int8 else None,
        tensorrt_major=tensorrt_major(version),
    )
    info = EngineInfo(
        tensorrt_version=version,
        gpu_name=gpu.name,
        compute_capability=gpu.capability,
        precision=precision,
        profile=options.profile.to_dict(),
        onnx_file=onnx_path.name,
        onnx_sha256=file_sha256(onnx_path),
        workspace_mib=options.workspace_mib,
        package_version=__version__,
        weights_file=weights_file,
        weights_sha256=weights_sha256,
        model_config=model_config,
        notes={
            "strongly_typed": mode.strongly_typed,
            "implicit_int8": mode.implicit_int8,
            "tf32": False,
            "stale_timing_cache_replaced": timing.stale,
            "equivalent_commands": equivalent_commands(recipe, DEFAULT_TOLERANCE[precision]),
        },
    )
    write_bytes_atomic(engine_path, bytes(serialized))
    write_sidecar(engine_path, info)
    timing.save()
    cache = options.calibration_cache
    if mode.implicit_int8 and cache is not None and cache.is_file():
        write_bytes_atomic(calibration_key_path(cache), key.encode())
    return info
