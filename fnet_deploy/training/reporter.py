"""What the trainer tells its user while it runs: notes and per-stage progress."""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    """Receives progress from the trainer (the CLI draws a progress bar from it)."""

    def note(self, text: str) -> None:
        """A message for the user (warnings, what is being resumed)."""

    def stage_started(self, stage: int, total: int, done: int) -> None:
        """``stage`` runs to ``total`` iterations; ``done`` are already complete."""

    def step_done(self, stage: int, step: int, losses: dict[str, float]) -> None:
        """Iteration ``step`` (1-based) finished; ``losses`` has ``loss`` and its parts."""

    def stage_finished(self, stage: int) -> None:
        """The stage reached its last iteration."""


class SilentReporter:
    """A :class:`Reporter` that shows nothing (non-zero ranks, library use)."""

    def note(self, text: str) -> None:
        pass

    def stage_started(self, stage: int, total: int, done: int) -> None:
        pass

    def step_done(self, stage: int, step: int, losses: dict[str, float]) -> None:
        pass

    def stage_finished(self, stage: int) -> None:
        pass
