"""Writing a command's results, and keeping them elsewhere when the place asked for fails late.

Output locations are checked before any work starts (:func:`fnet_deploy.commands.common.
check_output`), but a folder can still be removed or replaced, made read-only or filled while a
long run computes. Then the results are not lost: :class:`Outputs` writes them to a fresh folder
under the system's temporary folder instead and, when the command ends, raises
:class:`~fnet_deploy.helpers.errors.OutputKept`,
whose one line names the place that failed and where the
results are (exit code 1).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from fnet_deploy.helpers.errors import FnetError, InputError, OutputKept

WRITE_ERRORS = (OSError, InputError)
"""What a failed write raises (:mod:`fnet_deploy.helpers.atomic` turns most into
:class:`InputError`)."""


def _failure(path: Path, err: OSError | InputError) -> str:
    """``"<path>: <problem>"`` for a failed write."""
    if isinstance(err, InputError):
        return str(err)
    problem = (err.strerror or str(err) or type(err).__name__).lower()
    return f"{err.filename or path}: {problem}"


class Outputs:
    """The outputs of one command run: each written where asked, or else kept elsewhere.

    Args:
        command: the command's name, part of the fallback folder's name
            (``<tmp>/fnet-deploy-<command>-XXXX``).
    """

    def __init__(self, command: str) -> None:
        self.command = command
        self.kept: list[str] = []
        self._fallback: Path | None = None

    def fallback(self) -> Path:
        """The folder for results that cannot be written where asked (created on first use)."""
        if self._fallback is None:
            self._fallback = Path(tempfile.mkdtemp(prefix=f"fnet-deploy-{self.command}-"))
        return self._fallback

    def write(self, target: Path, write: Callable[[Path], object], what: str) -> Path:
        """``write(target)``; if that fails, ``write(<fallback>/<target's name>)``.

        Args:
            target: the file or folder asked for.
            write: writes the results to the path it is given (a file, or a folder it creates).
            what: the results in words, for the message (``"the fused image"``).

        Returns:
            Where the results are.

        Raises:
            FnetError: writing to the fallback failed too.
        """
        try:
            write(target)
            return target
        except WRITE_ERRORS as err:
            failure = _failure(target, err)
        kept = self.fallback() / target.name
        _write_kept(kept, write, failure, what)
        self.kept.append(f"{failure}; {what} kept in {kept}")
        return kept

    def folder(self, root: Path, what: str) -> OutputFolder:
        """A folder of files written one by one (:class:`OutputFolder`)."""
        return OutputFolder(self, root, what)

    def finish(self) -> None:
        """Raise :class:`OutputKept` if anything was kept elsewhere.

        Raises:
            OutputKept: one line naming each place that failed and where its results are.
        """
        if self.kept:
            raise OutputKept("; ".join(self.kept))


class OutputFolder:
    """A folder whose files are written one by one as a run produces them.

    The first file that cannot be written moves the whole output: the files already written are
    copied (those still readable) to ``<fallback>/<folder name>``, that file and all later ones
    are written there, and :attr:`root` says where the folder now is.
    """

    def __init__(self, outputs: Outputs, root: Path, what: str) -> None:
        self.outputs = outputs
        self.root = root
        self.what = what
        self._written: list[Path] = []
        self._moved = False

    def write(self, relative: str | Path, write: Callable[[Path], object]) -> Path:
        """``write(<root>/<relative>)``, moving the folder if that fails; returns the file.

        Raises:
            FnetError: writing to the moved folder failed too.
        """
        relative = Path(relative)
        try:
            write(self.root / relative)
        except WRITE_ERRORS as err:
            failure = _failure(self.root / relative, err)
            if self._moved:
                raise FnetError(f"keeping {self.what} in {self.root} failed: {failure}") from None
            self._move()
            _write_kept(self.root / relative, write, failure, self.what)
            self.outputs.kept.append(f"{failure}; {self.what} kept in {self.root}")
        self._written.append(relative)
        return self.root / relative

    def _move(self) -> None:
        moved = self.outputs.fallback() / self.root.name
        for relative in self._written:
            copy = moved / relative
            copy.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                shutil.copy2(self.root / relative, copy)
        moved.mkdir(parents=True, exist_ok=True)
        self.root = moved
        self._moved = True


def _write_kept(kept: Path, write: Callable[[Path], object], failure: str, what: str) -> None:
    """``write(kept)`` after ``failure``; a second failure is one line naming both."""
    try:
        write(kept)
    except WRITE_ERRORS as err:
        raise FnetError(
            f"{failure}; keeping {what} in {kept} failed too: {_failure(kept, err)}"
        ) from None
