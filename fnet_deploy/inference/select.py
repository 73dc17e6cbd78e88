"""Choosing a runner: by ``--backend``, or by the model file's type and the device.

- no model, ``.pth``, ``.safetensors`` without ``--backend``: the fastest exact form of the
  weights on the device (:func:`fastest_runner`): on a CPU with ONNX Runtime (and the exporter,
  onnx and onnxscript) installed, the deploy form exported once to a cached ONNX model with
  ``col2im`` (:mod:`fnet_deploy.export.onnx_cache`) run by :class:`OnnxRunner`; otherwise, and on
  CUDA, the PyTorch deploy form (:class:`TorchRunner`);
- ``--backend torch``: the PyTorch deploy form; ``--backend torch-training``: the PyTorch
  training form (the reference the other forms are measured against);
- ``.onnx``: ``onnxruntime`` (:class:`OnnxRunner`);
- ``.engine``, ``.plan``: ``tensorrt`` (:class:`TensorRTRunner`);
- ``triton://HOST:PORT/MODEL`` (gRPC), ``triton+http://HOST:PORT/MODEL``: a model served by
  Triton Inference Server (:class:`~fnet_deploy.backends.triton_runner.TritonRunner`).

A missing optional dependency of an asked-for backend is reported as
:class:`MissingDependencyError` naming the extra to install, before anything is loaded; the
default choice falls back to PyTorch instead, saying so in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from fnet_deploy.backends.base import Runner
from fnet_deploy.backends.device import parse_device
from fnet_deploy.backends.model_files import check_model_file
from fnet_deploy.helpers.atomic import check_writable
from fnet_deploy.helpers.errors import FnetError, InputError, MissingDependencyError
from fnet_deploy.helpers.optional import require
from fnet_deploy.model.weights import WeightsInfo, load_fnet, resolve_weights

Backend = Literal["torch", "torch-training", "onnxruntime", "tensorrt"]
BACKENDS: tuple[Backend, ...] = ("torch", "torch-training", "onnxruntime", "tensorrt")

_BY_SUFFIX: dict[str, Backend] = {
    ".pth": "torch",
    ".pt": "torch",
    ".safetensors": "torch",
    ".onnx": "onnxruntime",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
}
_REQUIRES: dict[Backend, tuple[str, ...]] = {
    "torch": (),
    "torch-training": (),
    "onnxruntime": ("onnxruntime",),
    "tensorrt": ("tensorrt",),
}
"""The optional packages of each backend (import names, see
:data:`fnet_deploy.helpers.optional.EXTRAS`)."""


def backend_for(path: Path) -> Backend:
    """The backend that runs a model file, by its suffix.

    Raises:
        InputError: an unknown suffix.
    """
    backend = _BY_SUFFIX.get(path.suffix.lower())
    if backend is None:
        known = ", ".join(sorted(_BY_SUFFIX))
        raise InputError(path, f"unknown model type '{path.suffix}' (expected one of {known})")
    return backend


@dataclass(frozen=True)
class ModelChoice:
    """The model a command runs, as its options name it: a model file or server URI, or
    weights; the backend, device and precision (``None``: the default). :meth:`open` is
    :func:`open_runner` of it."""

    model: Path | None = None
    backend: str | None = None
    device: str = "cpu"
    precision: str | None = None
    weights: Path | None = None

    def open(self, notify: Callable[[str], None] | None = None) -> Runner:
        """The (not yet activated) runner; raises as :func:`open_runner`."""
        return open_runner(
            self.model, self.backend, self.device, self.precision, self.weights, notify=notify
        )


def open_runner(
    model: str | Path | None,
    backend: str | None = None,
    device: str = "cpu",
    precision: str | None = None,
    weights: str | Path | None = None,
    emulate_fp16: bool = False,
    notify: Callable[[str], None] | None = None,
) -> Runner:
    """A (not yet activated) runner for a model file or weights.

    Args:
        model: an exported ``.onnx``, a TensorRT ``.engine`` / ``.plan``, a weights file
            (``.pth`` / ``.safetensors``), a Triton URI (``triton://HOST:PORT/MODEL``,
            ``triton+http://...``; a ``Path`` of one, whose ``//`` became ``/``, too), or
            ``None`` to run ``weights``.
        backend: ``torch`` (deploy form), ``torch-training`` (training form), ``onnxruntime`` or
            ``tensorrt``; ``None`` chooses by file type, and for weights the fastest exact form
            on the device (:func:`fastest_runner`).
        device: ``cpu`` / ``cuda[:N]`` (torch); ``cpu`` / ``cuda[:N]`` / ``ort-trt[:N]``
            (onnxruntime execution providers); ``cuda[:N]`` (tensorrt; ``cpu`` is taken as
            ``cuda:0``).
        precision: ``fp32`` / ``fp16`` (torch: the compute precision, default fp32); for
            exported models a check that the file has this precision (``None``: any).
        weights: the weights when ``model`` is ``None`` (``None``: the packaged default).
        emulate_fp16: onnxruntime on ``cpu`` only: run an FP16 model as its float16 emulation
            (what a parity check on a CPU should measure; see :class:`OnnxRunner`).
        notify: told in one line what the default choice did beyond the obvious (a first
            export into the cache, a fallback to PyTorch).

    Raises:
        FnetError: contradictory arguments (``model`` and ``weights`` both given) or an unknown
            backend.
        InputError: a model file that is missing, not a file or broken
            (:func:`~fnet_deploy.backends.model_files.check_model_file`), of an unknown type
            (or, for the default choice, unreadable weights).
        MissingDependencyError: the backend's optional packages are not installed.
    """
    runner = _runner_for(model, backend, device, precision, weights, emulate_fp16, notify)
    runner.source = str(model if model is not None else resolve_weights(weights))
    return runner


def _runner_for(
    model: str | Path | None,
    backend: str | None,
    device: str,
    precision: str | None,
    weights: str | Path | None,
    emulate_fp16: bool,
    notify: Callable[[str], None] | None,
) -> Runner:
    """The runner :func:`open_runner` describes (its :attr:`~Runner.source` not set yet)."""
    from fnet_deploy.backends.triton_runner import is_triton_uri

    if model is not None and is_triton_uri(str(model)):
        return _triton_runner(str(model), backend, precision, weights)
    path = Path(model) if model is not None else None
    if path is not None and weights is not None:
        raise FnetError(
            f"give --model or --weights, not both: --model {path.name} is the model to run "
            f"(an exported model carries its own weights), --weights {Path(weights).name} "
            "would be ignored"
        )
    metadata = check_model_file(path, tuple(sorted(_BY_SUFFIX))) if path is not None else {}
    if backend is not None and backend not in BACKENDS:
        raise FnetError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    chosen = cast(Backend, backend) if backend else (backend_for(path) if path else "torch")
    family = "torch" if chosen == "torch-training" else chosen
    if path is not None and backend_for(path) != family:
        raise FnetError(
            f"{path.name} is a {backend_for(path)} model; the {chosen} backend cannot run it"
        )
    for module in _REQUIRES[chosen]:
        require(module)
    if family == "torch":
        from fnet_deploy.backends.torch_runner import TorchRunner

        _check_torch_options(device, precision)
        source = path if path is not None else resolve_weights(weights)
        if backend is None:
            return fastest_runner(source, device, precision, notify)[0]
        return TorchRunner(
            source,
            device=device,
            precision="fp16" if precision == "fp16" else "fp32",
            form="training" if chosen == "torch-training" else "deploy",
        )
    if path is None:
        raise FnetError(
            f"the {chosen} backend needs an exported model file (make one with fnet-deploy export)"
        )
    if chosen == "onnxruntime":
        from fnet_deploy.backends.onnx_runner import PRECISION_KEY, OnnxRunner

        if emulate_fp16 and device == "cpu" and metadata.get(PRECISION_KEY) == "fp16":
            require("onnx")  # the float16 emulation is built with onnx

        return OnnxRunner(
            path, device=device, expected_precision=precision, emulate_fp16=emulate_fp16
        )
    from fnet_deploy.backends.tensorrt_runner import TensorRTRunner

    return TensorRTRunner(
        path, device="cuda:0" if device == "cpu" else device, expected_precision=precision
    )


def _triton_runner(
    uri: str, backend: str | None, precision: str | None, weights: str | Path | None
) -> Runner:
    """A (not yet activated) runner of a Triton-served model.

    Raises:
        FnetError: a bad URI, or options that only a local model takes.
    """
    from fnet_deploy.backends.triton_runner import TritonRunner, TritonUri

    parsed = TritonUri.parse(uri)
    given = [
        option
        for option, value in (
            ("--backend", backend),
            ("--precision", precision),
            ("--weights", weights),
        )
        if value is not None
    ]
    if given:
        raise FnetError(
            f"--model {parsed}: the Triton server runs its own model; {', '.join(given)} "
            "do not apply"
        )
    require("tritonclient")
    return TritonRunner(parsed)


def _check_torch_options(device: str, precision: str | None) -> str:
    """The type (``cpu``, ``cuda``) of a device PyTorch can run weights on in ``precision``.

    Raises:
        FnetError: an unknown device or precision.
    """
    if precision not in (None, "fp32", "fp16"):
        raise FnetError(f"the torch backend runs fp32 or fp16, not {precision!r}")
    return parse_device(device).kind


def fastest_runner(
    weights: str | Path,
    device: str = "cpu",
    precision: str | None = None,
    notify: Callable[[str], None] | None = None,
) -> tuple[Runner, WeightsInfo]:
    """A (not yet activated) runner of the fastest exact form of ``weights`` on ``device``.

    - ``cpu`` in fp32, with onnx, onnxscript and onnxruntime installed: the deploy form with
      ``col2im``, exported once into the cache when the runner first activates
      (:class:`CachedOnnxRunner`), run by ONNX Runtime's CPU provider;
    - otherwise (CUDA, fp16, those packages missing or the cache folder not writable): the
      PyTorch deploy form, in fp32 unless ``precision`` is ``fp16``.

    Every form computes the training form's function; only float32 rounding differs (judged
    against float64 in tests/test_fastest.py).

    Args:
        weights: a ``.safetensors`` / published ``.pth`` file; loaded (and checked) here.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``None`` / ``fp32`` or ``fp16`` (CUDA).
        notify: told in one line about a first export (on activation) or a fallback to
            PyTorch.

    Returns:
        The runner, and what the weights file says about itself (config, sha256).

    Raises:
        FnetError: an unknown device or precision.
        CheckpointError: the weights cannot be loaded.
    """
    from fnet_deploy.backends.torch_runner import TorchRunner
    from fnet_deploy.model.deploy import to_deploy

    kind = _check_torch_options(device, precision)
    model, info = load_fnet(weights)
    if kind == "cpu" and precision in (None, "fp32") and _can_cache_onnx(info, notify):
        from fnet_deploy.inference.cached_onnx_runner import CachedOnnxRunner

        return CachedOnnxRunner(model, info, notify), info
    # The weights are loaded once, here: the runner converts the loaded model when it activates.
    runner = TorchRunner(
        lambda: to_deploy(model), device, "fp16" if precision == "fp16" else "fp32", form="deploy"
    )
    return runner, info


def _can_cache_onnx(info: WeightsInfo, notify: Callable[[str], None] | None) -> bool:
    """Whether the packages the cached ONNX form needs are installed and its cache folder can be
    written; if not, says so through ``notify`` (the caller then runs PyTorch)."""
    say = notify or (lambda _: None)
    missing: list[str] = []
    for module in ("onnx", "onnxscript", "onnxruntime"):
        try:
            require(module)
        except MissingDependencyError:
            missing.append(module)
        except FnetError as err:
            say(f"running the PyTorch deploy form ({err})")
            return False
    if missing:
        say(
            f"running the PyTorch deploy form; ONNX Runtime runs it faster on a CPU with "
            f"{', '.join(missing)} installed (pip install 'fnet-deploy[onnx]')"
        )
        return False
    from fnet_deploy.export.onnx_cache import cached_path

    try:
        check_writable(cached_path(info.sha256))
    except InputError as err:
        say(f"running the PyTorch deploy form: the ONNX export cannot be cached ({err})")
        return False
    return True
