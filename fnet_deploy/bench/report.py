"""What a benchmark run needs from its caller to say what it does
(:func:`fnet_deploy.bench.run.run_bench` prints nothing)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # PyTorch is imported by the benchmark itself
    from fnet_deploy.bench.matrix import CellResult


class CellProgress(Protocol):
    """Progress through the matrix, one cell at a time."""

    def start(self, description: str) -> None:
        """A cell begins (``description``: backend, precision, size, batch)."""

    def advance(self) -> None:
        """The cell is done."""


class BenchReport(Protocol):
    """Where the run's lines, progress and results go, as they happen."""

    def line(self, text: str) -> None:
        """A result line: the peaks measured, a file written."""

    def phase(self, label: str) -> AbstractContextManager[object]:
        """Long work before the cells (``label``: what it does)."""

    def cells(self, total: int) -> AbstractContextManager[CellProgress]:
        """Progress through the ``total`` cells while they run."""

    def results(self, results: list[CellResult]) -> None:
        """The cells that ran, speed-ups filled in, once the matrix is done or stopped."""
