"""What an export run needs from its caller: somewhere to say what it does, and a way to write
its files (:func:`fnet_deploy.export.run.run_export` prints nothing and writes through these)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol


class ExportReport(Protocol):
    """Where the run's lines go, as they happen."""

    def line(self, text: str) -> None:
        """A result: a file written, a parity verdict."""

    def notice(self, text: str) -> None:
        """A remark beside the results, as plain text (a deprecation, an equivalent command)."""

    def phase(self, label: str) -> AbstractContextManager[object]:
        """Long work (``label``: what it does), for the caller's progress display."""


class OutputWriter(Protocol):
    """How the run's files are written (:class:`fnet_deploy.commands.outputs.Outputs` keeps
    them elsewhere when the place asked for fails late)."""

    def write(self, target: Path, write: Callable[[Path], object], what: str) -> Path:
        """``write(target)``, or to a place of the writer's choosing; returns where it went."""
