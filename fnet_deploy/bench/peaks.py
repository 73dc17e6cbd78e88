"""Measuring the machine's compute and memory-bandwidth peaks, the floors of every timing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Peaks:
    """Best sustained rates measured on one device and dtype.

    Attributes:
        device: ``cpu`` or ``cuda:N``.
        dtype: ``float32`` or ``float16``.
        flops_per_s: the higher of a large matmul and a 64 -> 64 9x9 convolution.
        bytes_per_s: a large device-to-device copy (bytes read + bytes written per second).
        matmul_flops_per_s: the matmul figure alone.
        conv_flops_per_s: the convolution figure alone.
    """

    device: str
    dtype: str
    flops_per_s: float
    bytes_per_s: float
    matmul_flops_per_s: float
    conv_flops_per_s: float


def _best_time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def measure_peaks(
    device: str = "cpu", dtype: torch.dtype = torch.float32, repeats: int = 5
) -> Peaks:
    """Measure compute and bandwidth peaks (takes a few seconds on a CPU).

    Sizes are chosen per device: large enough to reach steady state, small enough for a laptop.
    """
    dev = torch.device(device)
    gpu = dev.type == "cuda"
    n = 8192 if gpu else 1536
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    matmul = 2.0 * n**3 / _best_time(lambda: a @ b, dev, repeats)

    side = 256 if gpu else 96
    batch = 16 if gpu else 1
    x = torch.randn(batch, 64, side, side, device=dev, dtype=dtype)
    w = torch.randn(64, 64, 9, 9, device=dev, dtype=dtype)
    conv_flops = 2.0 * w.numel() * batch * side * side
    conv = conv_flops / _best_time(lambda: F.conv2d(x, w, padding=4), dev, repeats)

    elements = (1 << 28) if gpu else (1 << 25)
    src = torch.empty(elements, device=dev, dtype=dtype)
    dst = torch.empty_like(src)
    copy_bytes = 2.0 * src.numel() * src.element_size()
    bandwidth = copy_bytes / _best_time(lambda: dst.copy_(src), dev, repeats)
    return Peaks(
        device=str(dev),
        dtype=str(dtype).removeprefix("torch."),
        flops_per_s=max(matmul, conv),
        bytes_per_s=bandwidth,
        matmul_flops_per_s=matmul,
        conv_flops_per_s=conv,
    )


def peak_dtype(precision: str, device: str) -> torch.dtype:
    """The dtype whose peaks bound a cell of ``precision`` on ``device``: float16 for fp16 on
    CUDA (tensor cores), float32 otherwise (fp32; int8 is bounded by the float32 figures here;
    fp16 off CUDA does not run)."""
    cuda = torch.device(device).type == "cuda"
    return torch.float16 if precision == "fp16" and cuda else torch.float32


def peaks_per_precision(
    precisions: list[str],
    device: str,
    measure: Callable[[str, torch.dtype], Peaks] = measure_peaks,
) -> dict[str, Peaks]:
    """Each precision's peaks, measured once per dtype (:func:`peak_dtype`) in that dtype, so
    that fp32 cells are judged by float32 figures and fp16 cells by float16 ones.

    Args:
        precisions: the matrix's precisions (``fp32``, ``fp16``, ``int8``).
        device: where the cells run.
        measure: ``(device, dtype) -> Peaks`` (default :func:`measure_peaks`).
    """
    by_dtype: dict[torch.dtype, Peaks] = {}
    found = {}
    for precision in precisions:
        dtype = peak_dtype(precision, device)
        if dtype not in by_dtype:
            by_dtype[dtype] = measure(device, dtype)
        found[precision] = by_dtype[dtype]
    return found
