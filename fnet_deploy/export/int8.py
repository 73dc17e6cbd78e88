"""Explicit INT8: the deploy form's ONNX model with Q/DQ nodes, quantized by ONNX Runtime.

``fnet_int8.onnx`` is ``fnet.onnx`` with ``QuantizeLinear`` / ``DequantizeLinear`` (Q/DQ) nodes in
front of the convolutions that run in INT8, made by ONNX Runtime's static quantization
(``onnxruntime.quantization.quantize_static``, QDQ format) in the form TensorRT builds strongly
typed (TensorRT 10 and 11):

- weights int8 per output channel, symmetric (zero point 0);
- the input of each INT8 convolution int8 per tensor, symmetric, its scale calibrated on real
  image pairs: ``max`` (the largest magnitude seen), ``percentile`` or ``entropy`` (of a
  histogram of magnitudes);
- convolution outputs and everything pointwise (the smooth-l0 gate, the momentum terms) stay
  float32, as do the convolutions named by the float layers.

A quantized tensor is read through its Q/DQ pair by every consumer (ONNX Runtime's QDQ
convention), so the momentum terms of an INT8 step use the quantized code too.

Convolutions are named by their place in the deploy form (:mod:`fnet_deploy.model.deploy`):
``<block>.encoder``, ``<block>.reads.<k>``, ``<block>.mixes.<k>`` for the blocks ``unique_ir``,
``unique_vis`` and ``common``, and ``tail_ir``, ``tail_vis``, ``tail_common``. Measured
(docs/performance.md, "INT8"): quantizing every convolution costs about 2 grey levels on average
and 9 at p99.9; the convolutions that read the unique blocks' codes and the images are the
sensitive ones, so by default only the common block runs in INT8.

Calibration runs one pair at a time (ORT's histogram calibrators need equal shapes within a
run); pairs larger than :data:`CALIBRATION_TILE` are cut into tiles, which bounds the memory of
the calibration run (every convolution's input and output is kept for one tile).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io
import json
import logging
import math
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fnet_deploy.assets import asset_path, sample_pair
from fnet_deploy.backends.base import INPUT_NAMES
from fnet_deploy.data.color import Luminance
from fnet_deploy.data.pairs import pair_folders
from fnet_deploy.export.parity import ImagePair, iter_pairs, read_pair
from fnet_deploy.helpers.errors import FnetError, InputError
from fnet_deploy.helpers.optional import require
from fnet_deploy.model.config import ModelConfig

CalibrationMethod = Literal["max", "percentile", "entropy"]
CALIBRATION_METHODS: tuple[CalibrationMethod, ...] = ("max", "percentile", "entropy")
DEFAULT_PERCENTILE = 99.999
"""Percentile of |x| that sets a tensor's range with ``percentile`` calibration."""

DEFAULT_FLOAT_LAYERS: tuple[str, ...] = ("unique_ir.*", "unique_vis.*", "tail_*")
"""Convolutions kept in float32 by default: all but the common block's (docs/performance.md)."""

CALIBRATION_TILE = (480, 640)
"""Largest calibration input (H, W); larger pairs are cut into tiles of at most this size."""

METADATA_KEYS = ("int8_quantizer", "int8_calibration", "int8_layers", "int8_float_layers")
"""The ``fnet_deploy.*`` metadata keys an INT8 model adds to those of its FP32 source."""

_BLOCKS = ("unique_ir", "unique_vis", "common")
_TAILS = ("tail_ir", "tail_vis", "tail_common")


def layer_names(config: ModelConfig) -> list[str]:
    """Every convolution of the deploy form, in graph order per block (see the module doc)."""
    steps = range(config.iterations)
    names = [
        name
        for block in _BLOCKS
        for name in (
            f"{block}.encoder",
            *(f"{block}.reads.{k}" for k in steps),
            *(f"{block}.mixes.{k}" for k in steps),
        )
    ]
    return names + list(_TAILS)


def parse_float_layers(text: str | None) -> tuple[str, ...]:
    """``--float-layers``: ``None`` -> the default, ``none`` -> no float layer, else patterns.

    Patterns are comma-separated layer names or shell-style wildcards (``common.reads.*``).

    Raises:
        FnetError: an empty pattern.
    """
    if text is None:
        return DEFAULT_FLOAT_LAYERS
    if text.strip().lower() == "none":
        return ()
    patterns = tuple(part.strip() for part in text.split(","))
    if not all(patterns):
        raise FnetError(f"--float-layers {text!r}: an empty layer name (comma-separated names)")
    return patterns


def select_layers(patterns: Sequence[str], names: Sequence[str]) -> list[str]:
    """The names (in their order) matched by any of ``patterns``.

    Raises:
        FnetError: a pattern matches no layer (the message lists the layer names).
    """
    for pattern in patterns:
        if not fnmatch.filter(names, pattern):
            blocks = ", ".join(f"{block}.*" for block in _BLOCKS)
            raise FnetError(
                f"--float-layers: {pattern!r} matches no convolution (names: {blocks} "
                f"with encoder, reads.K, mixes.K; {', '.join(_TAILS)})"
            )
    return [name for name in names if any(fnmatch.fnmatchcase(name, p) for p in patterns)]


def default_calibration_pairs(luminance: Luminance) -> list[ImagePair]:
    """The shipped sample pair and the 12 frames of the shipped Nato camp sequence."""
    ir, vis = sample_pair()
    sequence = asset_path("sequences", "nato_camp")
    return [read_pair(ir, vis, luminance), *iter_pairs(sequence / "ir", sequence / "vi", luminance)]


def folder_pairs(ir: Path, vis: Path, luminance: Luminance, limit: int) -> list[ImagePair]:
    """The first ``limit`` pairs of two folders paired by file name (``--calib-ir/--calib-vis``).

    Raises:
        InputError: a folder is missing or holds no images, no name is in both, or a pair is
            unreadable or of two sizes.
    """
    listing = pair_folders(ir, vis)
    if not listing.pairs:
        raise InputError(ir, f"no image shares a file name with one in {vis}")
    return [read_pair(p.ir, p.vis, luminance, p.name) for p in listing.pairs[:limit]]


def tiles(pair: ImagePair, tile: tuple[int, int] = CALIBRATION_TILE) -> list[ImagePair]:
    """``pair`` cut into near-equal tiles of at most ``tile`` (H, W); itself if it fits."""
    height, width = pair.ir.shape
    rows, cols = math.ceil(height / tile[0]), math.ceil(width / tile[1])
    if rows == cols == 1:
        return [pair]
    ys = np.linspace(0, height, rows + 1).astype(int)
    xs = np.linspace(0, width, cols + 1).astype(int)
    return [
        ImagePair(
            f"{pair.name} tile {r * cols + c + 1}/{rows * cols}",
            np.ascontiguousarray(pair.ir[ys[r] : ys[r + 1], xs[c] : xs[c + 1]]),
            np.ascontiguousarray(pair.vis[ys[r] : ys[r + 1], xs[c] : xs[c + 1]]),
        )
        for r in range(rows)
        for c in range(cols)
    ]


@dataclass(frozen=True)
class CalibrationSet:
    """The real pairs INT8 scales are calibrated on.

    Attributes:
        pairs: the network inputs, H x W float32 in [0, 1] each, in calibration order.
        names: a name per pair (file stems).
        sha256: SHA-256 over every pair's shape and float32 pixels (``ir`` then ``vis``).
    """

    pairs: tuple[ImagePair, ...]
    names: tuple[str, ...]
    sha256: str

    @classmethod
    def of(cls, pairs: Sequence[ImagePair]) -> CalibrationSet:
        """The set of ``pairs`` with its hash.

        Raises:
            FnetError: no pair.
        """
        if not pairs:
            raise FnetError("INT8 calibration needs at least one image pair")
        digest = hashlib.sha256()
        for pair in pairs:
            for name in INPUT_NAMES:
                image = np.ascontiguousarray(getattr(pair, name), np.float32)
                digest.update(str(image.shape).encode())
                digest.update(image.tobytes())
        return cls(tuple(pairs), tuple(pair.name for pair in pairs), digest.hexdigest())


@dataclass(frozen=True)
class Int8Spec:
    """How to quantize.

    Attributes:
        method: activation calibration, ``max``, ``percentile`` or ``entropy``.
        float_layers: patterns of the convolutions kept in float32 (:func:`select_layers`).
        percentile: with ``percentile``, the percentile of |x| taken as the range.
    """

    method: CalibrationMethod = "max"
    float_layers: tuple[str, ...] = DEFAULT_FLOAT_LAYERS
    percentile: float = DEFAULT_PERCENTILE

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise FnetError(
                f"--calib-method must be one of {', '.join(CALIBRATION_METHODS)}, "
                f"got {self.method!r}"
            )
        if not 50.0 < self.percentile <= 100.0:
            raise FnetError(
                f"the calibration percentile must be in (50, 100], got {self.percentile}"
            )


@dataclass(frozen=True)
class Int8Model:
    """What :func:`quantize_int8` made.

    Attributes:
        proto: the Q/DQ model (an ``onnx.ModelProto``; save it with ``save_onnx``).
        int8_layers: convolutions with Q/DQ inputs.
        float_layers: convolutions left in float32.
        int8_share: fraction of the multiply-accumulates in INT8 convolutions.
        metadata: the ``fnet_deploy.*`` metadata added (without the prefix).
    """

    proto: Any
    int8_layers: tuple[str, ...]
    float_layers: tuple[str, ...]
    int8_share: float
    metadata: dict[str, str]


class _Feeds:
    """The calibration set as ONNX Runtime's ``CalibrationDataReader``, with the range interface
    its strided collection uses (one tile per collection, so shapes may differ)."""

    def __init__(self, pairs: Sequence[ImagePair]) -> None:
        self.items = [piece for pair in pairs for piece in tiles(pair)]
        self.position = 0
        self.end = len(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.position, self.end = start_index, min(end_index, len(self.items))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= self.end:
            return None
        self.position += 1
        return self.items[self.position - 1].feed()


def _conv_layers(proto: Any) -> dict[str, tuple[str, int]]:
    """Layer name -> (Conv node name, weight element count) of an exported FP32 model."""
    graph = proto.graph
    weights = {init.name: int(np.prod(init.dims)) for init in graph.initializer}
    found = {}
    for node in graph.node:
        if node.op_type == "Conv" and node.input[1] in weights:
            layer = node.input[1].removesuffix(".weight").removesuffix(".taps")
            found[layer] = (node.name, weights[node.input[1]])
    return found


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantizer prints progress and advice (stdout, root logger): hide them."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def quantize_int8(
    fp32_model: Path, calibration: CalibrationSet, spec: Int8Spec, config: ModelConfig
) -> Int8Model:
    """The Q/DQ INT8 form of the exported FP32 model ``fp32_model``.

    The FP32 model's metadata is kept, its precision set to ``int8``, and :data:`METADATA_KEYS`
    added: the quantizer and its settings, the calibration (method, pairs, their SHA-256), the
    INT8 and float32 layers.

    Raises:
        MissingDependencyError: onnx or onnxruntime is not installed.
        FnetError: a float-layer pattern matches nothing, the model's convolutions are not the
            deploy form's, or the quantizer failed.
    """
    onnx = require("onnx")
    ort = require("onnxruntime")
    quantization = require("onnxruntime.quantization")
    from fnet_deploy.export.onnx_graph import METADATA_PREFIX

    proto = onnx.load(str(fp32_model))
    layers = _conv_layers(proto)
    expected = layer_names(config)
    if sorted(layers) != sorted(expected):
        raise FnetError(
            f"{fp32_model.name}: its convolutions are not those of the deploy form "
            f"({len(layers)} found, {len(expected)} expected)"
        )
    kept = select_layers(spec.float_layers, expected)
    int8_layers = tuple(name for name in expected if name not in kept)
    if not int8_layers:
        raise FnetError("--float-layers keeps every convolution in float32: nothing to quantize")
    methods = quantization.CalibrationMethod
    method = {"max": methods.MinMax, "percentile": methods.Percentile, "entropy": methods.Entropy}
    options = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "OpTypesToExcludeOutputQuantization": ["Conv"],
        "CalibStridedMinMax": 1,
        "CalibPercentile": spec.percentile,
    }
    with tempfile.TemporaryDirectory(prefix="fnet-int8-") as work:
        quantized = Path(work) / "int8.onnx"
        try:
            with _quiet():
                quantization.quantize_static(
                    str(fp32_model),
                    str(quantized),
                    _Feeds(calibration.pairs),
                    quant_format=quantization.QuantFormat.QDQ,
                    op_types_to_quantize=["Conv"],
                    per_channel=True,
                    activation_type=quantization.QuantType.QInt8,
                    weight_type=quantization.QuantType.QInt8,
                    nodes_to_quantize=[layers[name][0] for name in int8_layers],
                    calibrate_method=method[spec.method],
                    calibration_providers=["CPUExecutionProvider"],
                    extra_options=options,
                )
        except (ValueError, RuntimeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise FnetError(f"ONNX Runtime could not quantize {fp32_model.name}: {first}") from None
        result = onnx.load(str(quantized))
    added = {
        "precision": "int8",
        "int8_quantizer": json.dumps(
            {
                "library": "onnxruntime.quantization.quantize_static",
                "onnxruntime": ort.__version__,
                "format": "QDQ",
                "weights": "int8, per output channel, symmetric",
                "activations": "int8, per tensor, symmetric (inputs of INT8 convolutions)",
            }
        ),
        "int8_calibration": json.dumps(
            {
                "method": spec.method,
                **({"percentile": spec.percentile} if spec.method == "percentile" else {}),
                "pairs": len(calibration.pairs),
                "names": list(calibration.names),
                "sha256": calibration.sha256,
            }
        ),
        "int8_layers": json.dumps(list(int8_layers)),
        "int8_float_layers": json.dumps(kept),
    }
    props = {prop.key: prop.value for prop in proto.metadata_props}
    props.update({METADATA_PREFIX + key: value for key, value in added.items()})
    del result.metadata_props[:]
    for key, value in props.items():
        result.metadata_props.add(key=key, value=value)
    total = sum(count for _, count in layers.values())
    share = sum(layers[name][1] for name in int8_layers) / total
    return Int8Model(result, int8_layers, tuple(kept), share, added)
