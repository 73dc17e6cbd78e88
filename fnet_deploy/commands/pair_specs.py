"""Camera pairs for ``fnet-deploy stream``: from ``--pair`` options or a pairs file (TOML).

Each pair names its visible and IR sources and its output, and may set its own registration,
size, timing and gain; every setting it leaves out takes the command-line option of the same
name. ``--pair`` takes ``key=value`` items joined by commas::

    --pair vis=rtsp://cam1/vis,ir=rtsp://cam1/ir,out=north.mp4,ir-offset-ms=-40

(a comma belongs to the value unless a known key and ``=`` follow it, so GStreamer pipelines
keep theirs). A pairs file lists the same keys in ``[[pair]]`` tables::

    [[pair]]
    name = "north"
    vis = "rtsp://cam1/vis"
    ir = "rtsp://cam1/ir"
    out = "north.mp4"
    registration = "north.json"
    ir-percentiles = [1, 99]

Relative paths are relative to the working directory, as on the command line. Everything is
checked before any work: unknown keys, values out of range, two pairs writing one output, an
output that is a pair's input.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fnet_deploy.commands.common import (
    ColorMode,
    notice,
    parse_ir_range,
    parse_percentiles,
    parse_size,
)
from fnet_deploy.commands.renames import PAIR_KEYS, deprecated
from fnet_deploy.data.thermal import THERMAL_NORMS, ThermalNorm
from fnet_deploy.data.views import LAYOUTS, Layout
from fnet_deploy.helpers.errors import FnetError, InputError
from fnet_deploy.runtime.uri import URI, parse_uri, sink_overwrites_source

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

MAX_FPS = 1000.0
"""Highest frame rate accepted (a video writer asked for more fails or, at inf, hangs)."""
MAX_DELAY_MS = 60_000.0
"""Largest pairing gap or camera delay accepted, in ms (a minute)."""
MAX_RECONNECT_S = 86_400.0
"""Longest wait for a lost live source accepted, in s (a day)."""
MIN_SIDE = 8
"""Smallest model input side accepted by ``size``."""
COLORS = ("keep", "gray")
ONE_PAIR = "main"
"""The name of the pair of ``--vis``/``--ir`` (as its Prometheus metrics label it)."""


@dataclass(frozen=True)
class PairSpec:
    """One camera pair as the user described it, checked.

    Attributes:
        name: unique in the run (default ``pair<N>``, N counting from 1).
        vis, ir: the parsed source URIs.
        outs: the parsed sink URIs (one per ``out``; a single pair of ``--vis``/``--ir`` takes
            every ``--out``).
        registration: calibration file, or ``None``.
        size: model input ``(width, height)``, or ``None`` (the registered crop's size).
        fps: frame rate of folder sources without their own.
        out_fps: output frame rate (``None``: the visible source's).
        max_skew_ms: largest pairing gap (``None``: half the slower stream's frame period).
        ir_offset_ms: added to IR timestamps.
        color: ``keep`` or ``gray`` (see ``--color``).
        layout: ``fused``, ``side-by-side`` or ``grid``.
        ir_norm, ir_percentiles, ir_range, ir_smoothing: the IR normalisation (``--ir-norm``
            and the options beside it).
    """

    name: str
    vis: URI
    ir: URI
    outs: tuple[URI, ...]
    registration: Path | None
    size: tuple[int, int] | None
    fps: float
    out_fps: float | None
    max_skew_ms: float | None
    ir_offset_ms: float
    color: ColorMode
    layout: Layout
    ir_norm: ThermalNorm
    ir_percentiles: tuple[float, float]
    ir_range: tuple[float, float] | None
    ir_smoothing: float


Converter = Callable[[Any], Any]


def _text(value: Any) -> str:
    if isinstance(value, Path):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a text, got {value!r}")
    return value.strip()


def _number(low: float, high: float, *, optional: bool = False) -> Converter:
    def convert(value: Any) -> float | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"expected a number, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
        if not (math.isfinite(number) and low <= number <= high):
            raise ValueError(f"expected a number from {low:g} to {high:g}, got {value!r}")
        return number

    return convert


def _two_numbers(low: float, high: float, *, optional: bool = False) -> Converter:
    def convert(value: Any) -> tuple[float, float] | None:
        if value is None and optional:
            return None
        parts = value.split(",") if isinstance(value, str) else value
        if not isinstance(parts, (list, tuple)) or len(parts) != 2:
            raise ValueError(f"expected two numbers low,high, got {value!r}")
        first, second = (_number(low, high)(part) for part in parts)
        assert first is not None and second is not None
        if not first < second:
            raise ValueError(f"expected low < high, got {value!r}")
        return first, second

    return convert


def _size(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        width, height = (int(part) for part in _text(value).lower().split("x"))
    except ValueError:
        raise ValueError(f"expected WIDTHxHEIGHT like 640x480, got {value!r}") from None
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ValueError(f"width and height must be at least {MIN_SIDE}, got {value!r}")
    return width, height


def _choice(choices: tuple[str, ...]) -> Converter:
    def convert(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return str(value)

    return convert


def _path(value: Any) -> Path | None:
    return None if value is None else Path(_text(value))


KEYS: dict[str, Converter] = {
    "name": _text,
    "vis": _text,
    "ir": _text,
    "out": _text,
    "registration": _path,
    "size": _size,
    "fps": _number(0.001, MAX_FPS),
    "out-fps": _number(0.001, MAX_FPS, optional=True),
    "max-skew-ms": _number(0.0, MAX_DELAY_MS, optional=True),
    "ir-offset-ms": _number(-MAX_DELAY_MS, MAX_DELAY_MS),
    "color": _choice(COLORS),
    "layout": _choice(LAYOUTS),
    "ir-norm": _choice(THERMAL_NORMS),
    "ir-percentiles": _two_numbers(0.0, 100.0),
    "ir-range": _two_numbers(-sys.float_info.max, sys.float_info.max, optional=True),
    "ir-smoothing": _number(0.0, 0.999),
}
"""The keys a pair takes (the command-line options' names) and how each value is read."""
REQUIRED = ("vis", "ir", "out")
DEFAULTED = tuple(key for key in KEYS if key not in ("name", *REQUIRED))
"""The keys whose default is the command-line option of the same name."""
_SPLIT = re.compile(
    r",(?=\s*(?:" + "|".join(re.escape(key) for key in (*KEYS, *PAIR_KEYS)) + r")\s*=)"
)
_GLUED_KEY = re.compile(r",\s*([A-Za-z][\w-]*)\s*=")
"""A ``,name=`` inside a value: an unknown key that :data:`_SPLIT` (known keys only, so that a
GStreamer pipeline's ``caps,width=640`` stays whole) left glued to the value before it."""


def read_pairs(
    options: list[str], path: Path | None, single: Mapping[str, object], defaults: Mapping[str, Any]
) -> list[PairSpec]:
    """The pairs of a run given by ``--pair`` options or a ``--pairs`` file, not both.

    Args:
        options: the ``--pair`` values; path: the ``--pairs`` file.
        single: the single-pair options (``--vis``, ``--ir``, ``--out``) and their values,
            which must not be given with pairs.
        defaults: the command-line value of every key in :data:`DEFAULTED`.

    Raises:
        FnetError: pairs given both ways, with single-pair options, or with a problem.
    """
    if set(defaults) != set(DEFAULTED):
        raise ValueError(f"defaults must give exactly {DEFAULTED}, got {sorted(defaults)}")
    given = [option for option, value in single.items() if value is not None]
    if given:
        raise FnetError(
            f"{'/'.join(given)}: single-pair options; with --pair or --pairs, each pair names "
            "its own vis, ir and out"
        )
    if options and path is not None:
        raise FnetError(f"--pair and --pairs {path}: give the pairs one way, not both")
    return (
        pairs_from_file(path, defaults)
        if path is not None
        else pairs_from_options(options, defaults)
    )


def one_pair(vis: str, ir: str, outs: list[str], defaults: Mapping[str, Any]) -> PairSpec:
    """The pair of ``--vis``, ``--ir`` and every ``--out``, with the run's options.

    Args:
        vis, ir, outs: the options' values (each a URI or a bare path).
        defaults: the command-line value of every key in :data:`DEFAULTED`, as typed (sizes
            and number pairs as text).

    Raises:
        FnetError: a value or URI with a problem, named by its option.
        InputError: an output that would overwrite an input, or one output given twice.
    """
    low_high = parse_percentiles(defaults["ir-percentiles"])
    ir_range = defaults["ir-range"]
    vis_uri, ir_uri = parse_uri(vis, "source"), parse_uri(ir, "source")
    out_uris = tuple(parse_uri(text, "sink") for text in outs)
    for number, out_uri in enumerate(out_uris):
        overwritten = sink_overwrites_source(out_uri, [vis_uri, ir_uri])
        if overwritten is not None:
            raise InputError(
                out_uri.path, f"would overwrite the input {overwritten}; choose another --out"
            )
        if sink_overwrites_source(out_uri, list(out_uris[:number])) is not None:
            raise InputError(out_uri.path, "is given twice as --out")
    size = defaults["size"]
    return PairSpec(
        name=ONE_PAIR,
        vis=vis_uri,
        ir=ir_uri,
        outs=out_uris,
        registration=defaults["registration"],
        size=None if size is None else parse_size(size, "--size", minimum=MIN_SIDE),
        fps=defaults["fps"],
        out_fps=defaults["out-fps"],
        max_skew_ms=defaults["max-skew-ms"],
        ir_offset_ms=defaults["ir-offset-ms"],
        color=defaults["color"],
        layout=defaults["layout"],
        ir_norm=defaults["ir-norm"],
        ir_percentiles=low_high,
        ir_range=parse_ir_range(ir_range),
        ir_smoothing=defaults["ir-smoothing"],
    )


def pairs_from_options(texts: list[str], defaults: Mapping[str, Any]) -> list[PairSpec]:
    """The pairs of repeated ``--pair key=value,...`` options.

    Args:
        texts: the options' values, in order.
        defaults: the command-line value of every key in :data:`DEFAULTED`.

    Raises:
        FnetError: one line naming the ``--pair`` (by position) and the problem.
    """
    specs = []
    said: set[str] = set()
    for number, text in enumerate(texts, 1):
        where = f"--pair {number}"
        items: dict[str, str] = {}
        for part in _SPLIT.split(text):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep:
                raise FnetError(f"{where}: expected key=value items joined by commas, got {part!r}")
            if key in items:
                raise FnetError(f"{where}: {key} is given twice")
            glued = _GLUED_KEY.search(value)
            if glued and not value.strip().startswith("gst://"):
                raise FnetError(
                    f"{where}: unknown key {glued.group(1)!r} (accepted: {', '.join(KEYS)})"
                )
            items[key] = value
        specs.append(_spec(_modern(items, said), number, defaults, where))
    check_pairs(specs, "--pair")
    return specs


def pairs_from_file(path: Path, defaults: Mapping[str, Any]) -> list[PairSpec]:
    """The pairs of a pairs file (``[[pair]]`` tables, see the module docstring).

    Raises:
        InputError: the file is missing, not TOML, has keys other than ``pair``, no pair, or
            a pair with a problem (named by its position and name).
    """
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "pairs file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read the pairs file ({err})") from None
    except tomllib.TOMLDecodeError as err:
        raise InputError(path, f"not a TOML pairs file ({err})") from None
    unknown = sorted(set(doc) - {"pair"})
    if unknown:
        raise InputError(
            path, f"unknown key(s) {', '.join(unknown)} (a pairs file holds [[pair]] tables)"
        )
    tables = doc.get("pair")
    if "pair" in doc and not isinstance(tables, list):
        given = "one [pair] table" if isinstance(tables, dict) else f"pair = {tables!r:.40}"
        raise InputError(
            path,
            f"{given} is not a list of tables: write each pair as a [[pair]] table "
            "(two brackets) with vis, ir and out",
        )
    if not isinstance(tables, list) or not tables:
        raise InputError(path, "lists no pair (expected [[pair]] tables with vis, ir and out)")
    specs = []
    said: set[str] = set()
    for number, table in enumerate(tables, 1):
        if not isinstance(table, dict):
            raise InputError(path, f"pair {number} is not a table of keys (write it as [[pair]])")
        label = table.get("name") if isinstance(table.get("name"), str) else None
        where = f"pair {number}" + (f" ({label})" if label else "")
        try:
            specs.append(_spec(_modern(table, said), number, defaults, where))
        except FnetError as err:
            raise InputError(path, str(err)) from None
    try:
        check_pairs(specs, "pairs")
    except FnetError as err:
        raise InputError(path, str(err)) from None
    return specs


def _modern(items: Mapping[str, Any], said: set[str]) -> dict[str, Any]:
    """``items`` with the old keys of :data:`~fnet_deploy.commands.renames.PAIR_KEYS` renamed,
    each said once a run (``said`` holds those said); a key given both ways stays twice, under
    the old name, for :func:`_spec` to refuse."""
    modern: dict[str, Any] = {}
    for key, value in items.items():
        new = PAIR_KEYS.get(key)
        if new is None or new in items:
            modern[key] = value
            continue
        if key not in said:
            said.add(key)
            notice(deprecated(f"pair key {key}", new))
        modern[new] = value
    return modern


def _spec(
    items: Mapping[str, Any], number: int, defaults: Mapping[str, Any], where: str
) -> PairSpec:
    """One pair from its items (strings from ``--pair``, TOML values from a file)."""
    unknown = sorted(set(items) - set(KEYS))
    if unknown:
        raise FnetError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))} (accepted: {', '.join(KEYS)})"
        )
    missing = [key for key in REQUIRED if key not in items]
    if missing:
        raise FnetError(f"{where}: missing {', '.join(missing)} (each pair needs vis, ir and out)")
    values: dict[str, Any] = {}
    for key, convert in KEYS.items():
        given = key in items
        fallback = f"pair{number}" if key == "name" else defaults.get(key)
        raw = items[key] if given else fallback
        try:
            values[key] = convert(raw)
        except ValueError as err:
            source = key if given else f"{key} (from --{key})"
            raise FnetError(f"{where}: {source}: {err}") from None
    try:
        vis, ir = parse_uri(values["vis"], "source"), parse_uri(values["ir"], "source")
        out = parse_uri(values["out"], "sink")
    except FnetError as err:
        raise FnetError(f"{where}: {err}") from None
    for role, uri in (("vis", vis), ("ir", ir)):
        if uri.scheme in ("file", "dir") and not uri.path.exists():
            raise FnetError(f"{where}: {role} {uri.path}: not found")
    return PairSpec(
        name=values["name"],
        vis=vis,
        ir=ir,
        outs=(out,),
        registration=values["registration"],
        size=values["size"],
        fps=values["fps"],
        out_fps=values["out-fps"],
        max_skew_ms=values["max-skew-ms"],
        ir_offset_ms=values["ir-offset-ms"],
        color=values["color"],
        layout=values["layout"],
        ir_norm=values["ir-norm"],
        ir_percentiles=values["ir-percentiles"],
        ir_range=values["ir-range"],
        ir_smoothing=values["ir-smoothing"],
    )


def check_pairs(specs: list[PairSpec], what: str) -> None:
    """Refuse pairs that would collide: one name twice, one output twice (or a folder output
    holding another), an output that is any pair's input.

    Linear in the number of pairs: each path is resolved once, and collisions are looked up by
    path (a folder output holding another path is found among that path's parents).

    Raises:
        FnetError: a collision, naming both pairs.
    """
    seen: dict[str, PairSpec] = {}
    for spec in specs:
        if spec.name in seen:
            raise FnetError(f"{what}: two pairs are named {spec.name!r}")
        seen[spec.name] = spec
    outputs: dict[Path | tuple[str, str], tuple[PairSpec, URI]] = {}
    folders: dict[Path, tuple[PairSpec, URI]] = {}  # dir:// outputs hold the files under them
    for spec in specs:
        for out in spec.outs:
            path = _local_path(out)
            key = path if path is not None else (out.scheme, out.location)
            if key in outputs:
                _both_write(what, outputs[key], (spec, out))
            outputs[key] = (spec, out)
            if path is not None and out.scheme == "dir":
                folders[path] = (spec, out)
    for spec in specs:
        for out in spec.outs:
            path = _local_path(out)
            holder = _folder_holding(path, folders) if path is not None else None
            if holder is not None:
                _both_write(what, holder, (spec, out))
    for spec in specs:
        for source in (spec.vis, spec.ir):
            path = _local_path(source)
            if path is None:
                continue
            found = outputs.get(path) or _folder_holding(path, folders)
            if found is not None:
                owner, out = found
                whose = "its own" if owner is spec else f"pair {spec.name!r}'s"
                raise FnetError(
                    f"{what}: pair {owner.name!r} would write its output {out} over "
                    f"{whose} input {source}"
                )


def _local_path(uri: URI) -> Path | None:
    """The resolved path of a ``file://`` or ``dir://`` URI, else ``None``."""
    return uri.path.resolve() if uri.scheme in ("file", "dir") else None


def _folder_holding(
    path: Path, folders: dict[Path, tuple[PairSpec, URI]]
) -> tuple[PairSpec, URI] | None:
    """The pair and folder output that lie above ``path``, if any."""
    return next((folders[parent] for parent in path.parents if parent in folders), None)


def _both_write(what: str, one: tuple[PairSpec, URI], other: tuple[PairSpec, URI]) -> None:
    (first, first_out), (second, second_out) = one, other
    raise FnetError(
        f"{what}: pairs {first.name!r} and {second.name!r} both write to "
        f"{first_out} / {second_out}; give each pair its own out"
    )
