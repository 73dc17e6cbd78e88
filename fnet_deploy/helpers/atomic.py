"""Writing files so that they appear complete or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fnet_deploy.helpers.errors import InputError

_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
"""Permissions of a newly created file under this process's umask."""


def _unwritable(path: Path, err: OSError) -> InputError:
    """The error for an output path that cannot be written, naming the actual obstacle."""
    if path.is_dir():
        return InputError(path, "cannot write a file here: it is a folder")
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        return InputError(path, f"cannot write here: {blocking} is a file, not a folder")
    return InputError(path, f"cannot write here: {(err.strerror or type(err).__name__).lower()}")


def check_writable(path: str | Path, *, folder: bool = False) -> None:
    """Raise :class:`InputError` unless ``path`` could be written, leaving nothing behind.

    ``path`` is a file to write (or, with ``folder``, a folder to write files into): it must not
    be a folder (a regular file), and the nearest existing folder above it must be a folder, not
    a regular file, in which a file can be created: this is tried (a hidden probe file, removed
    at once), since permission bits and ``os.access`` say yes to root where creating fails
    (``/proc``, an immutable or read-only folder).
    """
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise InputError(path, "exists and is not a folder")
    if not folder and path.is_dir():
        raise InputError(path, "cannot write a file here: it is a folder")
    start = path if folder else path.parent
    existing = next(p for p in (start, *start.parents) if p.exists())
    if not existing.is_dir():
        raise InputError(path, f"cannot write here: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".fnet-deploy-probe-", dir=existing)
    except OSError as err:
        problem = (err.strerror or type(err).__name__).lower()
        raise InputError(
            path, f"cannot write here: {existing} is not writable ({problem})"
        ) from None
    os.close(fd)
    os.unlink(probe)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces ``path`` when the block succeeds.

    The caller writes the temporary file by any means (a library's ``save``, ``open``); on normal
    exit it is given ordinary file permissions and renamed onto ``path`` (atomic on POSIX); on an
    exception it is removed and ``path`` is left as it was. Parent folders are created.

    Raises:
        InputError: ``path`` cannot be written (its folder cannot be created or written, or
            ``path`` is a folder).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _unwritable(path, err) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        try:
            os.replace(tmp, path)
        except OSError as err:
            raise _unwritable(path, err) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns ``path``."""
    return write_bytes_atomic(path, text.encode("utf-8"))
