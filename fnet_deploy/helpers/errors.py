"""Errors that the CLI reports as one clear line and a non-zero exit."""

from __future__ import annotations

from pathlib import Path


class FnetError(Exception):
    """A user-facing error: the CLI prints ``str(err)`` on one line and exits with
    :attr:`exit_code`."""

    exit_code = 2


class InputError(FnetError):
    """A bad input file: ``"<path>: <problem>"``."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class CheckpointError(InputError):
    """A weights file that is missing, corrupt or does not match the model."""


class MissingDependencyError(FnetError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, *alternatives: str) -> None:
        self.package = package
        self.extras = (extra, *alternatives)
        installs = " or ".join(f"'fnet-deploy[{name}]'" for name in self.extras)
        super().__init__(f"this needs the optional package '{package}': pip install {installs}")


class OutputKept(FnetError):
    """The work was done, but an output could not be written where asked (a place checked before
    the work, then removed, made read-only or filled): the results were written elsewhere, which
    the message names. Exit code 1: the run failed, not its input."""

    exit_code = 1
