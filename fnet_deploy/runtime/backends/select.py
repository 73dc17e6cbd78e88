"""Choosing a runner: by ``--backend``, or by the model file's type.

- no model, ``.pth``, ``.safetensors``: ``torch`` (:class:`TorchRunner`, training form);
- ``.onnx``: ``onnxruntime`` (:class:`OnnxRunner`);
- ``.engine``, ``.plan``: ``tensorrt`` (:class:`TensorRTRunner`).

A missing optional dependency is reported as :class:`MissingDependencyError` naming the extra
to install, before anything is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, cast

from fnet_deploy.errors import FnetError, InputError
from fnet_deploy.optional import require
from fnet_deploy.runtime.backends.base import Runner

Backend = Literal["torch", "onnxruntime", "tensorrt"]
BACKENDS: tuple[Backend, ...] = ("torch", "onnxruntime", "tensorrt")

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
    "onnxruntime": ("onnxruntime",),
    "tensorrt": ("tensorrt", "cuda"),
}
"""The optional packages (import names, :data:`fnet_deploy.optional.EXTRAS`) of each backend."""


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


def open_runner(
    model: str | Path | None,
    backend: str | None = None,
    device: str = "cpu",
    precision: str | None = None,
    weights: str | Path | None = None,
    emulate_fp16: bool = False,
) -> Runner:
    """A (not yet activated) runner for a model file or weights.

    Args:
        model: an exported ``.onnx``, a TensorRT ``.engine`` / ``.plan``, a weights file
            (``.pth`` / ``.safetensors``), or ``None`` to run ``weights`` with PyTorch.
        backend: ``torch``, ``onnxruntime`` or ``tensorrt``; ``None`` chooses by file type.
        device: ``cpu`` / ``cuda[:N]`` (torch); ``cpu`` / ``cuda[:N]`` / ``tensorrt[:N]``
            (onnxruntime execution providers); ``cuda[:N]`` (tensorrt; ``cpu`` is taken as
            ``cuda:0``).
        precision: ``fp32`` / ``fp16`` (torch: the compute precision, default fp32); for
            exported models a check that the file has this precision (``None``: any).
        weights: the weights for the torch backend when ``model`` is ``None`` (``None``: the
            packaged default).
        emulate_fp16: onnxruntime on ``cpu`` only: run an FP16 model as its float16 emulation
            (what a parity check on a CPU should measure; see :class:`OnnxRunner`).

    Raises:
        FnetError: contradictory arguments or an unknown backend.
        InputError: an unknown model file type.
        MissingDependencyError: the backend's optional packages are not installed.
    """
    path = Path(model) if model is not None else None
    if backend is not None and backend not in BACKENDS:
        raise FnetError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    chosen = cast(Backend, backend) if backend else (backend_for(path) if path else "torch")
    if path is not None and backend_for(path) != chosen:
        raise FnetError(
            f"{path.name} is a {backend_for(path)} model; the {chosen} backend cannot run it"
        )
    for module in _REQUIRES[chosen]:
        require(module)
    if chosen == "torch":
        import torch

        from fnet_deploy.model.checkpoint import resolve_weights
        from fnet_deploy.runtime.backends.torch_runner import TorchRunner

        if path is not None and weights is not None:
            raise FnetError("give the weights once: as the model or as --weights, not both")
        if precision not in (None, "fp32", "fp16"):
            raise FnetError(f"the torch backend runs fp32 or fp16, not {precision!r}")
        try:
            torch.device(device)
        except RuntimeError:
            raise FnetError(
                f"torch backend: unknown device {device!r} (cpu, cuda or cuda:N)"
            ) from None
        source = path if path is not None else resolve_weights(weights)
        return TorchRunner(
            source, device=device, precision="fp16" if precision == "fp16" else "fp32"
        )
    if path is None:
        raise FnetError(
            f"the {chosen} backend needs an exported model file (make one with fnet-deploy export)"
        )
    if chosen == "onnxruntime":
        from fnet_deploy.runtime.backends.onnx_runner import OnnxRunner

        return OnnxRunner(
            path, device=device, expected_precision=precision, emulate_fp16=emulate_fp16
        )
    from fnet_deploy.runtime.backends.tensorrt_runner import TensorRTRunner

    return TensorRTRunner(
        path, device="cuda:0" if device == "cpu" else device, expected_precision=precision
    )
