"""The optional packages and the pip extras that install them, and the one way to import them.

Every import of an optional package goes through :func:`require`: it returns the module, or
raises :class:`~fnet_deploy.helpers.errors.MissingDependencyError` (one line naming the extra to
install; the CLI exits with code 2). Commands call it for everything they will need before any
work starts; the code that uses a package calls it again where it imports it (a dictionary
lookup once imported). The modules built on ONNX itself (:mod:`fnet_deploy.export.onnx_graph`,
:mod:`fnet_deploy.backends.fp16`) import ``onnx`` at the top for its types and are imported only
after ``require("onnx")``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from fnet_deploy.helpers.errors import FnetError, MissingDependencyError

EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "onnx": ("onnx", ("export",)),
    "onnxscript": ("onnxscript", ("export",)),
    "onnxruntime": ("onnxruntime", ("onnx", "onnx-gpu")),
    "matplotlib": ("matplotlib", ("plot",)),
    "tensorboard": ("tensorboard", ("train",)),
    "tensorrt": ("tensorrt", ("tensorrt",)),
    "polygraphy": ("polygraphy", ("tensorrt",)),
    "gi": ("pygobject", ("rtsp-server",)),
    "tritonclient": ("tritonclient", ("serve",)),
    "pytriton": ("nvidia-pytriton", ("serve",)),
}
"""Top-level import name -> (pip package, extras that install it; the first is the usual one).
Mirrors ``[project.optional-dependencies]`` in pyproject.toml (a test keeps them in step)."""


def require(module: str) -> ModuleType:
    """Import the optional ``module`` (dotted names allowed, e.g. ``"matplotlib.colors"``).

    Raises:
        MissingDependencyError: its package is not installed (the message names the extra).
        FnetError: it is installed but fails to import (a broken installation).
        KeyError: ``module`` is not one of :data:`EXTRAS` (a programming error).
    """
    top = module.partition(".")[0]
    package, extras = EXTRAS[top]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        name = err.name if isinstance(err, ModuleNotFoundError) else None
        if name is not None and name.partition(".")[0] == top:
            raise MissingDependencyError(package, *extras) from None
        text = str(err).strip()
        first = text.splitlines()[0] if text else type(err).__name__
        raise FnetError(
            f"the optional package '{package}' is installed but cannot be imported: {first}"
        ) from None
