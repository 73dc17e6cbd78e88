"""What an evaluation run needs from its caller: somewhere to say what it does, and a results
folder to write into (:func:`fnet_deploy.evaluation.run.run_eval` prints nothing)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from fnet_deploy.metrics.report import Evaluation

Advance = Callable[[int], None]
"""Counts ``n`` more steps done."""


class EvalReport(Protocol):
    """Where the run's lines, progress and results go, as they happen."""

    def warning(self, text: str) -> None:
        """Input skipped (files without a partner), said once."""

    def notice(self, text: str) -> None:
        """A plain status line (a model exported before it runs)."""

    def phase(self, label: str) -> AbstractContextManager[object]:
        """Long work (``label``: what it does), for the caller's progress display."""

    def steps(self, label: str, total: int) -> AbstractContextManager[Advance]:
        """Progress through ``total`` steps (images fused, metrics computed)."""

    def summary(self, evaluation: Evaluation, speed: dict[str, float]) -> None:
        """The methods' means, and the ms per frame of those fused on the fly."""


class ResultsFolder(Protocol):
    """A folder written file by file (:class:`fnet_deploy.commands.outputs.OutputFolder` moves
    it elsewhere when the place asked for fails late)."""

    root: Path

    def write(self, relative: str | Path, write: Callable[[Path], object]) -> Path:
        """``write(<root>/<relative>)``, or in the folder's new place; returns the file."""


class ResultsWriter(Protocol):
    """Where the run's results folder comes from (:class:`fnet_deploy.commands.outputs.
    Outputs`)."""

    def folder(self, root: Path, what: str) -> ResultsFolder:
        """The folder ``root`` for ``what`` (in words, for messages)."""
