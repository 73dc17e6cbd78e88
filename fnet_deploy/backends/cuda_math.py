"""CUDA numeric settings that change float32 results by rounding: TF32 in cuDNN convolutions.

Recorded wherever numbers are produced on a GPU (training metadata, benchmark JSON), since PyTorch
lets cuDNN use TF32 (10-bit mantissa operands) for float32 convolutions by default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def tf32_convolutions(enabled: bool) -> Iterator[None]:
    """Allow (or forbid) cuDNN's TF32 tensor cores for float32 convolutions inside the block,
    restoring the previous setting after it. TF32 rounds the operands to a 10-bit mantissa.

    Uses torch's per-operator setting where it exists (torch >= 2.9); inside a ``False`` block
    torch then refuses to answer the legacy ``torch.backends.cudnn.allow_tf32`` query: read
    :func:`tf32_allowed` instead.
    """
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        before = conv.fp32_precision
        conv.fp32_precision = "tf32" if enabled else "ieee"
        try:
            yield
        finally:
            conv.fp32_precision = before
        return
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved


def tf32_allowed() -> bool:
    """Whether cuDNN may use TF32 for float32 convolutions now (for the run's metadata)."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is None or not hasattr(conv, "fp32_precision"):
        return bool(torch.backends.cudnn.allow_tf32)
    # "none" defers to the enclosing level: cuDNN, then all backends.
    for level in (conv, torch.backends.cudnn, torch.backends):
        value = getattr(level, "fp32_precision", "none")
        if value != "none":
            return bool(value == "tf32")
    return False
