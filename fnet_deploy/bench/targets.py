"""The names of the benchmark targets, importable without PyTorch (for ``bench --help``).

:data:`fnet_deploy.bench.matrix.BACKENDS` maps each name to how it is built and run, in this
order (a test keeps the two in step).
"""

from __future__ import annotations

TARGET_NAMES: tuple[str, ...] = (
    "torch-training",
    "torch",
    "torch-nhwc",
    "torch-graph",
    "torch-nhwc-graph",
    "torch-col2im-graph",
    "torch-compile",
    "onnxruntime",
    "onnxruntime-col2im",
    "tensorrt",
)
"""Every ``bench --backend`` name (see :data:`fnet_deploy.bench.matrix.BACKENDS`)."""
