"""The served model as a Triton model repository, and the Python backend that runs it.

``fnet-deploy serve`` writes, in a folder of its own::

    backends/python/                   the Python backend nvidia-pytriton bundles, and its stub
                                       for this interpreter's Python version
    models/<name>/config.pbtxt         what the model takes and gives (declared once, checked by
                                       the server): ir, vis -> fused, N x 1 x H x W float32,
                                       dynamic batching, CPU instances, the runner to open
    models/<name>/1/model.py           one import: fnet_deploy.serving.python_model
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fnet_deploy.backends.base import INPUT_NAMES, OUTPUT_NAME
from fnet_deploy.helpers.optional import require
from fnet_deploy.inference.select import ModelChoice
from fnet_deploy.serving.python_model import RUNNER_PARAMETER, THREADS_PARAMETER, choice_to_json

MODEL_PY = (
    '"""FNet, served by fnet-deploy."""\n\n'
    "from fnet_deploy.serving.python_model import TritonPythonModel  # noqa: F401\n"
)
"""The repository's ``model.py``: the model itself is package code."""


@dataclass(frozen=True)
class ServedModel:
    """One model as ``serve`` offers it.

    Attributes:
        name: the model's name in Triton (``triton://HOST:PORT/<name>``).
        choice: the runner each instance opens.
        max_batch: most frames per model call (Triton's ``max_batch_size``).
        queue_delay_us: how long Triton's dynamic batcher holds a request for others, in
            microseconds (``max_queue_delay_microseconds``).
        instances: model instances (each its own runner), run side by side.
        threads: CPU threads of each instance (``0``: the library's default).
    """

    name: str = "fnet"
    choice: ModelChoice = field(default_factory=ModelChoice)
    max_batch: int = 8
    queue_delay_us: int = 500
    instances: int = 1
    threads: int = 0


def model_config(model: ServedModel) -> str:
    """The model's ``config.pbtxt`` text."""
    tensors = ", ".join(
        f'{{ name: "{name}" data_type: TYPE_FP32 dims: [1, -1, -1] }}' for name in INPUT_NAMES
    )
    parameters = {RUNNER_PARAMETER: choice_to_json(model.choice), THREADS_PARAMETER: model.threads}
    lines = [
        f'name: "{model.name}"',
        'backend: "python"',
        f"max_batch_size: {model.max_batch}",
        f"input [ {tensors} ]",
        f'output [ {{ name: "{OUTPUT_NAME}" data_type: TYPE_FP32 dims: [1, -1, -1] }} ]',
        f"dynamic_batching {{ max_queue_delay_microseconds: {model.queue_delay_us} }}",
        f"instance_group [ {{ count: {model.instances} kind: KIND_CPU }} ]",
        *(
            f"parameters {{ key: {_quoted(key)} value: {{ string_value: {_quoted(str(value))} }} }}"
            for key, value in parameters.items()
        ),
    ]
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    """``text`` as a protobuf text-format string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_repository(root: Path, model: ServedModel) -> tuple[Path, Path]:
    """Write the backend folder and the model repository under ``root``.

    Returns:
        ``(model repository, backend directory)``, as ``tritonserver`` takes them.

    Raises:
        MissingDependencyError: nvidia-pytriton (extra ``serve``) is not installed.
        FnetError: it has no Python-backend stub for this interpreter's Python version.
    """
    from fnet_deploy.helpers.errors import FnetError

    distribution = require("pytriton.utils.distribution")
    bundled = Path(distribution.get_root_module_path()) / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = Path(distribution.get_stub_path(version))
    if not stub.is_file():
        raise FnetError(
            f"nvidia-pytriton has no Python backend stub for Python {version} ({stub} is missing)"
        )
    backends = root / "backends"
    python = backends / "python"
    python.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy(bundled / "backends" / "python" / name, python / name)
    shutil.copy(stub, python / "triton_python_backend_stub")
    models = root / "models"
    version_dir = models / model.name / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    (version_dir / "model.py").write_text(MODEL_PY)
    (models / model.name / "config.pbtxt").write_text(model_config(model))
    return models, backends
