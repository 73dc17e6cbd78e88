"""Comparing float32 results without float32 luck.

FNet's gate ``sigmoid(100 (|x| - theta))`` amplifies rounding: two exact forms of the model, run
in float32, differ by amounts that depend on the summation order, hence on the thread count and
the machine's load. A fixed tolerance measured once on one machine is therefore a coin toss.
Every float32 comparison in the suite goes through one of these helpers instead:

- :func:`assert_float32_accurate` compares float32 results with a float64 run of the same
  function and bounds the *extra* error of a candidate by the error that a plain float32 run of
  the reference implementation makes on that very input (measured in the same test, so it moves
  with threads and load);
- :func:`float32_budget` is that bound, for tests that need the number itself;
- :func:`float32_and_float64_runs` gives the float32 baseline and float64 reference of a model.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray

# How much worse than the plain float32 run a rewritten float32 run may be. Both worst errors
# come from the few pixels whose pre-gate value sits at a threshold; measured ratios of the deploy
# forms' to the training form's worst error on real images were 0.8-2.5 (1 and 2 threads, idle
# and loaded), so 8 leaves room for a summation order that lands on the other side of a gate.
# A wrong rewrite (a misfolded momentum, a shifted tap) is off by 1e-2 and more.
FACTOR = 8.0

# Floor of the budget in units of float32 epsilon times the output scale, for inputs where the
# reference float32 run happens to be nearly exact (smooth images, tiny models).
ULPS = 64


def _as_float64(value: ArrayLike) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().to(torch.float64).numpy()
    return np.asarray(value, dtype=np.float64)


def float32_budget(reference64: ArrayLike, baseline32: ArrayLike, factor: float = FACTOR) -> float:
    """Largest error a float32 computation may make on this input.

    Args:
        reference64: the function computed in float64, any shape.
        baseline32: the same function computed in float32 by its reference implementation
            (e.g. the training form in PyTorch), same shape.
        factor: allowed ratio to the baseline's own worst error.

    Returns:
        ``factor * max|baseline32 - reference64|``, floored at ``ULPS`` float32 epsilons of the
        output's scale.
    """
    ref = _as_float64(reference64)
    base = _as_float64(baseline32)
    scale = max(float(np.abs(ref).max()), 1.0)
    floor = ULPS * float(np.finfo(np.float32).eps) * scale
    return max(factor * float(np.abs(base - ref).max()), floor)


def assert_float32_accurate(
    candidate32: ArrayLike,
    reference64: ArrayLike,
    baseline32: ArrayLike,
    what: str = "result",
    factor: float = FACTOR,
) -> None:
    """Assert that a float32 result is as accurate as float32 allows on this input.

    Args:
        candidate32: the float32 result under test (a rewrite, an exported graph, a tiled run).
        reference64: the same function in float64, same shape.
        baseline32: the reference implementation in float32 on the same input, same shape.
        what: a name for the failure message.
        factor: allowed ratio of the candidate's worst error to the baseline's.
    """
    ref = _as_float64(reference64)
    cand = _as_float64(candidate32)
    assert cand.shape == ref.shape, f"{what}: shape {cand.shape} != {ref.shape}"
    assert np.isfinite(cand).all(), f"{what}: not finite"
    error = float(np.abs(cand - ref).max())
    budget = float32_budget(ref, baseline32, factor)
    assert error <= budget, (
        f"{what}: max error {error:.3g} against float64 exceeds {budget:.3g} "
        f"({factor:g} x the plain float32 run's error on this input)"
    )


def float32_and_float64_runs(
    model: torch.nn.Module, ir: ArrayLike, vis: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Run a float32 FNet-like model and a float64 copy of it on the same inputs.

    Args:
        model: a float32 module called as ``model(ir, vis)``; it is not modified.
        ir, vis: B x 1 x H x W inputs in [0, 1] (arrays or tensors).

    Returns:
        ``(out32, ref64)``: the float32 output and the float64 reference, as NumPy arrays.
    """
    ir32 = torch.as_tensor(_as_float64(ir), dtype=torch.float32)
    vis32 = torch.as_tensor(_as_float64(vis), dtype=torch.float32)
    model64 = copy.deepcopy(model).double()
    with torch.no_grad():
        out32 = model(ir32, vis32).numpy()
        ref64 = model64(ir32.double(), vis32.double()).numpy()
    return out32, ref64
