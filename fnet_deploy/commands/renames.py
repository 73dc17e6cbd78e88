"""Old spellings of options and values, accepted for one release with a one-line notice.

The vocabulary is one across the commands (docs/backends.md, "One vocabulary"); where a name
changed, the command line given in the old words is rewritten into the new ones before it is
parsed, and each old word used is named once on stderr::

    warning: --ir-gain is deprecated: use --ir-norm (the old spelling goes in 0.3)

Old options whose values change shape (:data:`CONVERTED`) stay hidden in their command, which
converts them and says so with the same notice. Pair keys (``--pair``, pairs files) are renamed
the same way by :mod:`fnet_deploy.commands.pair_specs`, from :data:`PAIR_KEYS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

GOES_IN = "0.3"
"""The release in which the old spellings stop being accepted."""


@dataclass(frozen=True)
class Rename:
    """An option's old spelling.

    Attributes:
        old: the old option (``--ir-gain``).
        new: what it is now (``--ir-norm``).
        value: for an old flag that became a value of ``new`` (``--fp16`` -> ``--precision
            fp16``), that value; ``None`` for a plain rename, whose value follows as before.
    """

    old: str
    new: str
    value: str | None = None

    def now(self) -> str:
        """The new spelling, as the notice shows it."""
        return self.new if self.value is None else f"{self.new} {self.value}"


_STREAM = (
    Rename("--ir-gain", "--ir-norm"),
    Rename("--gain-smoothing", "--ir-smoothing"),
    Rename("--reconnect-timeout", "--reconnect-timeout-s"),
)
OPTIONS: dict[str, tuple[Rename, ...]] = {
    "stream": _STREAM,
    "train": (
        Rename("--batch-size", "--batch"),
        Rename("--max-minutes", "--max-time-min"),
    ),
    "export": (
        Rename("--fp16", "--precision", "fp16"),
        Rename("--int8", "--precision", "int8"),
    ),
    "bench": (Rename("--max-seconds", "--max-time-s"),),
    "check": (
        Rename("--emulate-fp16", "--emulate-on-cpu"),
        Rename("--no-emulate-fp16", "--no-emulate-on-cpu"),
    ),
}
"""Each command's renamed options."""
CONVERTED: dict[str, tuple[Rename, ...]] = {
    "export": (Rename("--height", "--size"), Rename("--width", "--size")),
}
"""Old options that are not plain renames (``--height H --width W`` is ``--size WxH``): each
command keeps them hidden and converts them where it reads its options, with the same notice
(:func:`deprecated`)."""
DEVICE_KINDS = {"tensorrt": "ort-trt"}
"""Renamed device kinds (``--device tensorrt:0`` is now ``--device ort-trt:0``)."""
PAIR_KEYS = {"ir-gain": "ir-norm", "gain-smoothing": "ir-smoothing"}
"""Renamed keys of a pair (``--pair``, pairs files)."""


def deprecated(old: str, new: str) -> str:
    """The one-line notice for an old spelling."""
    return f"warning: {old} is deprecated: use {new} (the old spelling goes in {GOES_IN})"


def modernise(command: str, args: list[str], say: Callable[[str], None]) -> list[str]:
    """``args`` of ``command`` in today's words, each old spelling used said once through
    ``say``; everything else is left as it is (click reports what is wrong with it).

    Handles ``--old value``, ``--old=value`` and old flags; after ``--`` nothing is touched.
    """
    renames = {rename.old: rename for rename in OPTIONS.get(command, ())}
    said: set[str] = set()

    def once(old: str, new: str) -> None:
        if old not in said:
            said.add(old)
            say(deprecated(old, new))

    result: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            result.extend(args[index - 1 :])
            break
        name, eq, value = arg.partition("=")
        rename = renames.get(name)
        if rename is not None:
            once(rename.old, rename.now())
            if rename.value is not None:
                result += [rename.new, rename.value]
            else:
                result.append(f"{rename.new}{eq}{value}" if eq else rename.new)
            continue
        if name == "--device" or (result and result[-1] == "--device" and not arg.startswith("-")):
            arg = _device(arg, once)
        result.append(arg)
    return result


def _device(arg: str, once: Callable[[str, str], None]) -> str:
    """``arg`` (``--device=NAME`` or ``NAME``) with a renamed device kind replaced."""
    prefix, eq, text = arg.rpartition("=") if arg.startswith("--") else ("", "", arg)
    kind, colon, index = text.partition(":")
    new = DEVICE_KINDS.get(kind.strip().lower())
    if new is None:
        return arg
    once(f"--device {kind}", f"--device {new}")
    return f"{prefix}{eq}{new}{colon}{index}"
