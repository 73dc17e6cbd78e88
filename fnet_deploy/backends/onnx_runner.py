"""ONNX Runtime backend: an exported ``fnet.onnx`` / ``fnet_fp16.onnx`` on CPU, CUDA or TensorRT.

``device`` picks the execution providers:

- ``cpu``: CPUExecutionProvider;
- ``cuda`` / ``cuda:N``: CUDAExecutionProvider on GPU N, CPU for anything it lacks;
- ``ort-trt`` / ``ort-trt:N``: ONNX Runtime's TensorrtExecutionProvider on GPU N (its engines
  cached next to the model), then CUDA, then CPU.

The GPU providers need the ``onnxruntime-gpu`` build. FP16 models (float32 inputs and outputs)
run like FP32 ones; note that the CPU provider computes most of an FP16 graph in float32 (see
:mod:`fnet_deploy.backends.fp16`). With ``emulate_fp16`` an FP16 model on the CPU provider runs as
its float16 emulation instead (every tensor rounded to float16, as GPU float16 kernels store them),
which is what parity checks on a CPU should measure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fnet_deploy.backends.base import INPUT_NAMES, OUTPUT_NAME, Runner, SizeRange
from fnet_deploy.backends.device import parse_device
from fnet_deploy.helpers.errors import FnetError, InputError, MissingDependencyError
from fnet_deploy.helpers.optional import require
from fnet_deploy.model.config import ModelConfig

ORT_FATAL_ONLY = 4
"""ONNX Runtime's log severity that prints fatal messages only (0 verbose ... 3 error, 4 fatal)."""
PRECISION_KEY = "fnet_deploy.precision"
CONFIG_KEY = "fnet_deploy.model_config"


def execution_providers(
    device: str, available: list[str], cache_dir: Path
) -> list[str | tuple[str, dict[str, Any]]]:
    """ONNX Runtime providers (with options) for a ``device`` string.

    Raises:
        FnetError: unknown device, or its provider is not in ``available``.
    """
    parsed = parse_device(device, ("cpu", "cuda", "ort-trt"), "onnxruntime")
    kind, device_id = parsed.kind, parsed.index
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    wanted = ["CUDAExecutionProvider"]
    providers: list[str | tuple[str, dict[str, Any]]] = [
        ("CUDAExecutionProvider", {"device_id": device_id}),
        "CPUExecutionProvider",
    ]
    if kind == "ort-trt":
        wanted.insert(0, "TensorrtExecutionProvider")
        options = {
            "device_id": device_id,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache_dir),
            "trt_timing_cache_enable": True,
        }
        providers.insert(0, ("TensorrtExecutionProvider", options))
    missing = [name for name in wanted if name not in available]
    if missing:
        raise FnetError(
            f"onnxruntime: {', '.join(missing)} not available in this onnxruntime build "
            f"(available: {', '.join(available)}); install onnxruntime-gpu for --device {device}"
        )
    return providers


class OnnxRunner(Runner):
    """Runs an exported FNet ONNX model with ONNX Runtime.

    Args:
        model_path: the ``.onnx`` file (inputs ``ir``, ``vis``; output ``fused``).
        device: ``cpu``, ``cuda[:N]`` or ``ort-trt[:N]`` (see the module docstring).
        intra_op_threads: threads inside one operator (``None``: ONNX Runtime's default, all
            physical cores).
        inter_op_threads: threads across independent operators (``None``: default).
        expected_precision: if given, the model's recorded precision (``fp32`` / ``fp16``)
            must match it.
        emulate_fp16: on ``cpu``, run an FP16 model as its float16 emulation
            (:func:`fnet_deploy.backends.fp16.float16_emulation`); FP32 models and other devices
            are unaffected. :attr:`emulated` tells whether it applied (in the last activation).
    """

    name = "onnxruntime"

    def __init__(
        self,
        model_path: str | Path,
        device: str = "cpu",
        *,
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
        expected_precision: str | None = None,
        emulate_fp16: bool = False,
    ) -> None:
        super().__init__()
        self.model_path = Path(model_path)
        self.device = device
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self.expected_precision = expected_precision
        self.emulate_fp16 = emulate_fp16
        self.emulated = False
        self.metadata: dict[str, str] = {}
        self._session: Any = None
        self._input_dims: dict[str, list[int | None]] = {}

    @property
    def precision(self) -> str:
        """The model's precision as recorded at export (``fp32`` if unrecorded)."""
        return self.metadata.get(PRECISION_KEY, "fp32")

    @property
    def providers(self) -> list[str]:
        """The execution providers the active session uses, in priority order."""
        return list(self._session.get_providers()) if self._session is not None else []

    @property
    def session_options(self) -> Any:
        """The active session's ``onnxruntime.SessionOptions`` (threads, optimisation level)."""
        if self._session is None:
            raise RuntimeError("onnxruntime: session options exist after activate()")
        return self._session.get_session_options()

    def _activate(self) -> None:
        ort = require("onnxruntime")
        path = self.model_path
        if not path.is_file():
            raise InputError(path, "model file not found" if not path.exists() else "not a file")
        providers = execution_providers(
            self.device, list(ort.get_available_providers()), path.parent / "ort_trt_cache"
        )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ONNX Runtime's own log lines (coloured, with source locations: a failed allocation
        # prints several) never reach the user raw: what fails comes back as an exception, which
        # the command reports in one line.
        options.log_severity_level = ORT_FATAL_ONLY
        ort.set_default_logger_severity(ORT_FATAL_ONLY)
        if providers == ["CPUExecutionProvider"]:
            # ONNX Runtime's memory pattern planning keeps a per-shape plan on top of its arena:
            # off, the peak of a 360x270 stream frame drops from 1,004 to 630 MiB (PyTorch's
            # level) at the same CPU time (docs/performance.md).
            options.enable_mem_pattern = False
        if self.intra_op_threads is not None:
            options.intra_op_num_threads = self.intra_op_threads
        if self.inter_op_threads is not None:
            options.inter_op_num_threads = self.inter_op_threads
        self.emulated = False
        source: str | bytes = str(path)
        if self.emulate_fp16 and self.device == "cpu":
            source = self._emulated_source(path, ort)
        try:
            session = ort.InferenceSession(source, options, providers=providers)
        except Exception as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InputError(path, f"ONNX Runtime cannot load the model ({first})") from None
        inputs = [value.name for value in session.get_inputs()]
        outputs = [value.name for value in session.get_outputs()]
        if sorted(inputs) != sorted(INPUT_NAMES) or outputs != [OUTPUT_NAME]:
            raise InputError(
                path,
                f"not an FNet model: inputs {inputs}, outputs {outputs} "
                f"(expected inputs {list(INPUT_NAMES)}, output {OUTPUT_NAME!r})",
            )
        wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
        if wanted not in session.get_providers():
            raise FnetError(
                f"onnxruntime: {wanted} failed to initialise for {path.name} "
                f"(session uses {session.get_providers()}); check the CUDA/TensorRT installation"
            )
        self.metadata = dict(session.get_modelmeta().custom_metadata_map)
        if self.expected_precision is not None and self.precision != self.expected_precision:
            raise InputError(
                path, f"is a {self.precision} model, but {self.expected_precision} was requested"
            )
        self._input_dims = {
            value.name: [dim if isinstance(dim, int) else None for dim in value.shape]
            for value in session.get_inputs()
        }
        self.model_config = _recorded_config(self.metadata)
        height, width = self._input_dims[INPUT_NAMES[0]][2:]
        self.size_range = SizeRange((height, width), (height, width)) if height and width else None
        self.max_batch = self._input_dims[INPUT_NAMES[0]][0]
        self._session = session

    def _emulated_source(self, path: Path, ort: Any) -> str | bytes:
        """The float16 emulation of a model with float16 weights, or the path of any other model.

        Building the emulation needs onnx; without it, a model recorded as fp32 runs as it is
        and only one recorded as fp16 raises :class:`MissingDependencyError`.
        """
        try:
            onnx = require("onnx")
        except MissingDependencyError:
            if _recorded_precision(ort, path) == "fp16":
                raise
            return str(path)
        from fnet_deploy.backends.fp16 import float16_emulation, float16_problems

        try:
            model = onnx.load(str(path))
        except Exception as err:
            raise InputError(path, f"not a readable ONNX model ({type(err).__name__})") from None
        if all(init.data_type != onnx.TensorProto.FLOAT16 for init in model.graph.initializer):
            return str(path)
        problems = float16_problems(model)
        if problems:
            raise InputError(path, f"cannot emulate float16: {problems[0]}")
        self.emulated = True
        return float16_emulation(model).SerializeToString()

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = {name: np.ascontiguousarray(feed[name], np.float32) for name in INPUT_NAMES}
        for name, array in arrays.items():
            dims = self._input_dims[name]
            if array.ndim != len(dims) or any(
                want is not None and want != got
                for want, got in zip(dims, array.shape, strict=True)
            ):
                expected = "x".join("?" if d is None else str(d) for d in dims)
                raise FnetError(
                    f"{self.model_path.name}: input {name} is {'x'.join(map(str, array.shape))}, "
                    f"the model takes {expected}; re-export with dynamic shapes or a matching "
                    "--size"
                )
        (fused,) = self._session.run([OUTPUT_NAME], arrays)
        return {OUTPUT_NAME: np.asarray(fused, np.float32)}

    def _deactivate(self) -> None:
        self._session = None


def _recorded_precision(ort: Any, path: Path) -> str:
    """The precision an exported model records (``fp32`` if unrecorded or unreadable: the
    session that runs it then reports why it cannot be read)."""
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception:
        return "fp32"
    return str(session.get_modelmeta().custom_metadata_map.get(PRECISION_KEY, "fp32"))


def _recorded_config(metadata: dict[str, str]) -> ModelConfig | None:
    """The architecture an exported model records (``None`` when absent or unreadable)."""
    text = metadata.get(CONFIG_KEY)
    if text is None:
        return None
    try:
        return ModelConfig.from_dict(json.loads(text))
    except (ValueError, TypeError):
        return None
