"""The model Triton's Python backend runs for ``fnet-deploy serve``.

The server's Python stub imports the repository's ``model.py``, which takes
:class:`TritonPythonModel` from here. It opens the runner the ``runner`` parameter of the model's
``config.pbtxt`` names (:class:`~fnet_deploy.inference.select.ModelChoice` as JSON), once per
model instance, and fuses each request's ``ir`` and ``vis`` (N x 1 x H x W float32 in [0, 1])
into ``fused`` (N x 1 x H x W float32).

Tensors cross the stub through DLPack: nvidia-pytriton 0.7.0's stub is built for numpy 1, and
under numpy 2 its ``as_numpy()`` misreads inputs and ``Tensor(name, array)`` sends outputs with
their shape and no data (docs/serving.md); DLPack does not depend on numpy's ABI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fnet_deploy.backends.base import INPUT_NAMES, OUTPUT_NAME, Runner
from fnet_deploy.inference.select import ModelChoice

RUNNER_PARAMETER = "runner"
"""The ``config.pbtxt`` parameter holding the served :class:`ModelChoice` as JSON."""
THREADS_PARAMETER = "threads"
"""The ``config.pbtxt`` parameter: CPU threads of each instance (``0``: the library's default)."""


def choice_to_json(choice: ModelChoice) -> str:
    """``choice`` as the ``runner`` parameter's text."""
    fields = {
        "model": None if choice.model is None else str(choice.model),
        "backend": choice.backend,
        "device": choice.device,
        "precision": choice.precision,
        "weights": None if choice.weights is None else str(choice.weights),
    }
    return json.dumps(fields)


def choice_from_json(text: str) -> ModelChoice:
    """The :class:`ModelChoice` of a ``runner`` parameter."""
    fields = json.loads(text)
    return ModelChoice(
        model=None if fields["model"] is None else Path(fields["model"]),
        backend=fields["backend"],
        device=fields["device"],
        precision=fields["precision"],
        weights=None if fields["weights"] is None else Path(fields["weights"]),
    )


class TritonPythonModel:
    """Triton's Python-backend interface: ``initialize``, ``execute``, ``finalize``."""

    runner: Runner

    def initialize(self, args: dict[str, str]) -> None:
        """Open and activate the runner of the model's ``runner`` parameter."""
        parameters = json.loads(args["model_config"]).get("parameters", {})
        threads = int(parameters.get(THREADS_PARAMETER, {}).get("string_value", "0"))
        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        choice = choice_from_json(parameters[RUNNER_PARAMETER]["string_value"])
        self.runner = choice.open()
        self.runner.activate()
        self._sent: list[np.ndarray] = []

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request: its ``fused`` output, or its error (the others go on)."""
        import triton_python_backend_utils as pb_utils

        responses = []
        self._sent = []  # the arrays behind the DLPack outputs, alive until the next call
        for request in requests:
            try:
                feed = {name: _array(pb_utils, request, name) for name in INPUT_NAMES}
                fused = np.ascontiguousarray(self.runner.infer(feed)[OUTPUT_NAME], np.float32)
            except Exception as err:  # a bad request fails alone, reported to its client
                error = pb_utils.TritonError(f"{type(err).__name__}: {err}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            self._sent.append(fused)
            tensor = pb_utils.Tensor.from_dlpack(OUTPUT_NAME, fused)
            responses.append(pb_utils.InferenceResponse([tensor]))
        return responses

    def finalize(self) -> None:
        """Release the runner."""
        self.runner.deactivate()


def _array(pb_utils: Any, request: Any, name: str) -> np.ndarray:
    """Input ``name`` of ``request`` as a float32 numpy array, read through DLPack."""
    import torch

    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise ValueError(f"the request has no input {name!r}")
    return np.ascontiguousarray(torch.from_dlpack(tensor.to_dlpack()).numpy(), np.float32)
