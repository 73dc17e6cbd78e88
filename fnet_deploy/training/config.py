"""Training configuration: one TOML document, every field overridable from the command line.

The document has top-level run settings and one table per section::

    seed = 0
    device = "cpu"
    threads = 0
    out = "runs/fnet"
    stages = "both"
    max_minutes = 0.0

    [model]   # ModelConfig: filters, kernel_size, iterations, threshold, gamma, alpha
    [data]    # folders, ir_dir, vis_dir, crop, batch_size, small_images, bad_pairs, cache, workers
    [optim]   # lr, betas, ema_decay, ema_warmup, schedule, warmup, clip_norm
    [stage1]  # iterations
    [stage2]  # iterations, init, intensity_weight, gradient_weight, ssim_weight,
              # ssim_positions
    [val]     # folders, pairs, crop
    [log]     # checkpoint_every, log_every, tensorboard, plot, validate_every
    [speed]   # cuda_graph, channels_last, tf32, precision, conv

Defaults are the paper's recipe (docs/model.md §5). Overrides are ``section.field=value`` strings
whose value is read as a TOML value (``stage1.iterations=10``, ``data.folders=["a", "b"]``); a
value that is not valid TOML is taken as a plain string (``device=cuda``).
"""

from __future__ import annotations

import copy
import json
import math
import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from fnet_deploy.helpers.errors import FnetError, InputError
from fnet_deploy.model.config import ModelConfig

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

Stages = Literal["1", "2", "both"]
SmallImages = Literal["pad", "skip"]
BadPairs = Literal["error", "skip"]
Schedule = Literal["constant", "cosine"]
StepPrecision = Literal["fp32", "bf16", "fp64"]
ConvChoice = Literal["auto", "native", "tap"]
SsimPositions = Literal["same", "valid"]

SSIM_WINDOW = 11


class ConfigError(FnetError):
    """A training configuration that cannot be used: names the field and the problem."""


@dataclass(frozen=True)
class DataConfig:
    """Where the training pairs are and how they are cut into batches.

    Attributes:
        folders: data set folders, each holding ``ir_dir`` and ``vis_dir`` sub-folders whose
            images pair by file name (the MSRS layout); several folders are combined.
        ir_dir: name of the infrared sub-folder.
        vis_dir: name of the visible sub-folder.
        crop: edge in pixels of the square random crop (the same window in both images).
        batch_size: crops per iteration and per process (the global batch is this times the
            number of processes).
        small_images: images smaller than ``crop``: ``pad`` (mirror-padded to the crop) or
            ``skip`` (left out); either way they are listed before training starts.
        bad_pairs: pairs without a partner, of mismatched sizes or unreadable: ``error`` stops
            before training and names them all, ``skip`` names them and trains on the rest.
        cache: keep the decoded images on the training device (GPU memory on CUDA; about
            2.5 MB per 480x640 pair) and cut each batch there by indexing; false reads every
            crop from disk through a DataLoader instead (the same samples either way).
        workers: DataLoader worker processes when ``cache`` is off (0 loads in the training
            process).
    """

    folders: tuple[str, ...] = ()
    ir_dir: str = "ir"
    vis_dir: str = "vi"
    crop: int = 128
    batch_size: int = 16
    small_images: SmallImages = "pad"
    bad_pairs: BadPairs = "error"
    cache: bool = True
    workers: int = 0

    def __post_init__(self) -> None:
        _check(
            self.crop >= SSIM_WINDOW,
            "data.crop",
            f"must be >= {SSIM_WINDOW} (the SSIM window), got {self.crop}",
        )
        _check(self.batch_size >= 1, "data.batch_size", f"must be >= 1, got {self.batch_size}")
        _check(self.workers >= 0, "data.workers", f"must be >= 0, got {self.workers}")
        seen: dict[Path, str] = {}
        for folder in self.folders:
            where = Path(folder).expanduser().resolve()
            _check(
                where not in seen,
                "data.folders (--data)",
                f"lists {where} twice ({seen.get(where)!r} and {folder!r}); its pairs would be "
                "trained on twice: give each folder once",
            )
            seen[where] = folder


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser, learning-rate schedule and weight averaging, shared by both stages.

    Attributes:
        lr: Adam learning rate.
        betas: Adam (beta1, beta2).
        ema_decay: decay of the exponential moving average of the FNet weights (the averaged
            copy is what gets saved for inference).
        ema_warmup: ramp the average's decay up as ``min(ema_decay, (1 + n) / (10 + n))`` at
            step ``n`` of each stage, so that short runs do not keep their starting weights in
            the average (off in the paper's recipe; see ``ModelEMA``).
        schedule: ``constant`` (the paper) or ``cosine`` decay to zero over the stage.
        warmup: iterations of linear warm-up from 0 (0 = none).
        clip_norm: clip the gradient's global L2 norm (over every trained parameter) to this
            before each Adam step (0: no clipping, the paper's recipe).
    """

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    ema_decay: float = 0.999
    ema_warmup: bool = False
    schedule: Schedule = "constant"
    warmup: int = 0
    clip_norm: float = 0.0

    def __post_init__(self) -> None:
        _check(self.lr > 0 and math.isfinite(self.lr), "optim.lr", f"must be > 0, got {self.lr}")
        _check(
            all(0.0 <= b < 1.0 for b in self.betas),
            "optim.betas",
            f"must be in [0, 1), got {list(self.betas)}",
        )
        _check(
            0.0 <= self.ema_decay < 1.0,
            "optim.ema_decay",
            f"must be in [0, 1), got {self.ema_decay}",
        )
        _check(self.warmup >= 0, "optim.warmup", f"must be >= 0, got {self.warmup}")
        _check(
            self.clip_norm >= 0, "optim.clip_norm", f"must be >= 0 (0: off), got {self.clip_norm}"
        )


@dataclass(frozen=True)
class StageOneConfig:
    """Stage I: FNet and IFNet trained together on the inverse-fusion reconstruction loss."""

    iterations: int = 20_000

    def __post_init__(self) -> None:
        _check(self.iterations >= 1, "stage1.iterations", f"must be >= 1, got {self.iterations}")


@dataclass(frozen=True)
class StageTwoConfig:
    """Stage II: FNet alone on the intensity / gradient / SSIM loss.

    Attributes:
        iterations: optimiser steps of the stage.
        init: FNet weights to start from (any file ``load_fnet`` reads); empty means stage I's
            result in the same output folder (trained weights and their moving average).
        intensity_weight: weight of ``|fused - max(ir, vis)|_1``.
        gradient_weight: weight of ``|sobel(fused) - max(sobel(ir), sobel(vis))|_1``.
        ssim_weight: weight of ``1 - (wA SSIM(ir, fused) + wB SSIM(vis, fused))``.
        ssim_positions: where that SSIM is averaged: ``same`` (every pixel, local moments over
            the zero-padded crop: pytorch-ssim, the authors' loss) or ``valid`` (only where the
            11 x 11 window fits, MATLAB's reference SSIM).
    """

    iterations: int = 20_000
    init: str = ""
    intensity_weight: float = 20.0
    gradient_weight: float = 20.0
    ssim_weight: float = 15.0
    ssim_positions: SsimPositions = "same"

    def __post_init__(self) -> None:
        _check(self.iterations >= 1, "stage2.iterations", f"must be >= 1, got {self.iterations}")
        for key in ("intensity_weight", "gradient_weight", "ssim_weight"):
            value = getattr(self, key)
            _check(value >= 0, f"stage2.{key}", f"must be >= 0, got {value}")


@dataclass(frozen=True)
class ValConfig:
    """Held-out pairs the moving-average weights are scored on during training
    (:mod:`fnet_deploy.training.validation`).

    Attributes:
        folders: validation folders (``ir_dir`` / ``vis_dir`` layout, like the training data);
            none: no validation. Never the test sets (TNO, RoadScene) the weights are judged on.
        pairs: pairs picked evenly by name from each folder; those from a folder that is also
            training data are left out of training.
        crop: edge of the centre crop each picked pair is scored on (pixels).
    """

    folders: tuple[str, ...] = ()
    pairs: int = 6
    crop: int = 192

    def __post_init__(self) -> None:
        _check(self.pairs >= 1, "val.pairs", f"must be >= 1, got {self.pairs}")
        _check(
            self.crop >= SSIM_WINDOW,
            "val.crop",
            f"must be >= {SSIM_WINDOW} (the metrics' largest window), got {self.crop}",
        )


@dataclass(frozen=True)
class LogConfig:
    """How often the run is saved and logged.

    Attributes:
        checkpoint_every: iterations between training-state checkpoints (also written at the
            end of a stage and on Ctrl-C / SIGTERM).
        log_every: iterations between rows of ``log.csv`` (and TensorBoard points).
        tensorboard: also log to TensorBoard when it is installed.
        plot: draw ``loss_curves.png`` from the log when the run ends (needs matplotlib).
        validate_every: iterations between validations on ``val.folders`` (also at the end of
            each stage; 0: only there).
    """

    checkpoint_every: int = 500
    log_every: int = 10
    tensorboard: bool = True
    plot: bool = True
    validate_every: int = 500

    def __post_init__(self) -> None:
        _check(
            self.checkpoint_every >= 1,
            "log.checkpoint_every",
            f"must be >= 1, got {self.checkpoint_every}",
        )
        _check(self.log_every >= 1, "log.log_every", f"must be >= 1, got {self.log_every}")
        _check(
            self.validate_every >= 0,
            "log.validate_every",
            f"must be >= 0, got {self.validate_every}",
        )


@dataclass(frozen=True)
class SpeedConfig:
    """How the training step is executed; none of it changes what is computed in float32.

    Attributes:
        cuda_graph: on CUDA, with one process and a constant learning rate, capture the whole
            step (forward, loss, backward, Adam, moving average) in a CUDA graph after a few
            eager warm-up steps and replay it (no per-kernel launch cost). Elsewhere the same
            step runs eagerly.
        channels_last: keep the convolutions' activations in NHWC layout (often faster on
            tensor cores; the same arithmetic).
        tf32: let cuDNN compute float32 convolutions with TF32 tensor cores on CUDA (PyTorch's
            own default; recorded in the run's metadata). False forces IEEE float32.
        precision: ``fp32``, or ``bf16`` autocast for forward and loss (opt-in only: the
            gamma = 100 gate amplifies rounding; compare loss curves before relying on it), or
            ``fp64``: model, optimizer and step in float64, a slow reference that tests use to
            check the trainer's arithmetic without float32 rounding (weights are saved as
            float32 all the same).
        conv: how FNet's few-channel convolutions are computed: ``native`` (PyTorch's
            convolution), ``tap`` (tap-GEMM, :mod:`fnet_deploy.model.tap_conv`: the same sums as
            large matrix products, several times faster on CPUs), or ``auto`` (``tap`` on the
            CPU, ``native`` elsewhere, where cuDNN is fast and a CUDA graph captures it).
    """

    cuda_graph: bool = True
    channels_last: bool = False
    tf32: bool = True
    precision: StepPrecision = "fp32"
    conv: ConvChoice = "auto"

    def conv_form(self, device: str) -> Literal["native", "tap"]:
        """The convolution form used on ``device`` (``cpu``, ``cuda``, ``cuda:N``)."""
        if self.conv == "auto":
            return "tap" if device.startswith("cpu") else "native"
        return self.conv


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved beside its checkpoints as ``config.toml``.

    Attributes:
        seed: seeds model initialisation and the crop/flip/rotation stream (>= 0).
        device: ``cpu``, ``cuda`` or ``cuda:N`` (under torchrun each process uses its local GPU).
        threads: CPU threads torch may use (0: torch's default, one per core); 1 is faster on a
            CPU that other jobs keep busy.
        out: output folder (checkpoints, logs, weights).
        stages: ``1``, ``2`` or ``both``.
        max_minutes: time box of one invocation in minutes of wall time (0: none): the run
            stops after the last iteration that fits, with its full state saved, and continues
            with ``--resume``.
    """

    seed: int = 0
    device: str = "cpu"
    threads: int = 0
    out: str = "runs/fnet"
    stages: Stages = "both"
    max_minutes: float = 0.0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    stage1: StageOneConfig = field(default_factory=StageOneConfig)
    stage2: StageTwoConfig = field(default_factory=StageTwoConfig)
    val: ValConfig = field(default_factory=ValConfig)
    log: LogConfig = field(default_factory=LogConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)

    def __post_init__(self) -> None:
        _check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        _check(self.threads >= 0, "threads", f"must be >= 0, got {self.threads}")
        _check(
            self.max_minutes >= 0,
            "max_minutes",
            f"must be >= 0 (0: no limit), got {self.max_minutes}",
        )

    def stage_list(self) -> list[int]:
        """The stages this run trains, in order."""
        return [1, 2] if self.stages == "both" else [int(self.stages)]

    def iterations(self, stage: int) -> int:
        """Optimiser steps of ``stage`` (1 or 2)."""
        return self.stage1.iterations if stage == 1 else self.stage2.iterations

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists for tuples), the form written to TOML and JSON."""
        return _to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a nested dict (missing fields take defaults; unknown ones are errors)."""
        result = _build(cls, data, "")
        assert isinstance(result, TrainConfig)
        return result


def _check(ok: bool, name: str, problem: str) -> None:
    if not ok:
        raise ConfigError(f"{name} {problem}")


def _to_plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple | list):
        return [_to_plain(v) for v in value]
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        name = where.rstrip(".") or "config"
        raise ConfigError(f"{name} must be a table, got {type(data).__name__}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown field {where}{unknown[0]} (known: {', '.join(sorted(known))})")
    values = {name: _coerce(hints[name], raw, f"{where}{name}") for name, raw in data.items()}
    try:
        return cls(**values)
    except ValueError as err:
        raise ConfigError(f"{where.rstrip('.') or 'config'}: {err}") from None


def _coerce(hint: Any, raw: Any, name: str) -> Any:
    if isinstance(hint, type) and is_dataclass(hint):
        return _build(hint, raw, f"{name}.")
    origin = get_origin(hint)
    if origin is Literal:
        choices = get_args(hint)
        if isinstance(raw, int) and not isinstance(raw, bool) and str(raw) in choices:
            raw = str(raw)
        if raw not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}, got {raw!r}")
        return raw
    if origin is tuple:
        if not isinstance(raw, list | tuple):
            raise ConfigError(f"{name} must be a list, got {raw!r}")
        args = get_args(hint)
        item_types = [args[0]] * len(raw) if args[-1] is Ellipsis else list(args)
        if len(item_types) != len(raw):
            raise ConfigError(f"{name} must have {len(item_types)} items, got {len(raw)}")
        return tuple(_coerce(t, v, name) for t, v in zip(item_types, raw, strict=True))
    if origin in (Union, types.UnionType):
        raise ConfigError(f"{name}: unsupported field type {hint}")
    if hint is bool:
        if not isinstance(raw, bool):
            raise ConfigError(f"{name} must be true or false, got {raw!r}")
        return raw
    if hint is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(f"{name} must be an integer, got {raw!r}")
        return raw
    if hint is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ConfigError(f"{name} must be a number, got {raw!r}")
        if not math.isfinite(raw):
            raise ConfigError(f"{name} must be a finite number, got {raw!r}")
        return float(raw)
    if hint is str:
        if not isinstance(raw, str):
            raise ConfigError(f"{name} must be a string, got {raw!r}")
        return raw
    raise ConfigError(f"{name}: unsupported field type {hint}")


def read_config(path: str | Path) -> dict[str, Any]:
    """Parse a TOML config file into a nested dict.

    Raises:
        InputError: the file is missing or is not valid TOML.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "config file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read config file ({err})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InputError(path, f"not valid TOML ({err})") from None


def parse_value(text: str) -> Any:
    """A command-line value as TOML (``10``, ``1e-4``, ``true``, ``["a", "b"]``), else a string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def set_fields(data: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``dotted.key -> value`` set (tables created).

    Raises:
        ConfigError: a dotted prefix names a value that is not a table.
    """
    result = copy.deepcopy(data)
    for key, value in values.items():
        *tables, name = key.split(".")
        target = result
        for table in tables:
            node = target.setdefault(table, {})
            if not isinstance(node, dict):
                raise ConfigError(f"cannot set {key}: {table} is not a table")
            target = node
        target[name] = value
    return result


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``dotted.key=value`` override applied in order.

    Raises:
        ConfigError: an override is not of the form ``key=value``.
    """
    result = copy.deepcopy(data)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form section.field=value")
        result = set_fields(result, {key: parse_value(text.strip())})
    return result


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> TrainConfig:
    """Defaults, then the TOML file ``path`` (if any), then ``overrides``, validated."""
    data = read_config(path) if path is not None else {}
    return TrainConfig.from_dict(apply_overrides(data, overrides))


def with_overrides(config: TrainConfig, overrides: Iterable[str]) -> TrainConfig:
    """``config`` with ``section.field=value`` overrides applied and validated again."""
    return TrainConfig.from_dict(apply_overrides(config.to_dict(), overrides))


def differences(old: TrainConfig, new: TrainConfig) -> list[str]:
    """``section.field: old -> new`` for every field that differs (dotted names, sorted)."""
    flat_old, flat_new = _flatten(old.to_dict()), _flatten(new.to_dict())
    return [
        f"{key}: {flat_old.get(key)!r} -> {flat_new.get(key)!r}"
        for key in sorted(flat_old.keys() | flat_new.keys())
        if flat_old.get(key) != flat_new.get(key)
    ]


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def to_toml(config: TrainConfig) -> str:
    """The config as a TOML document that :func:`load_config` reads back to an equal config."""
    data = config.to_dict()
    lines = [
        f"{key} = {_toml_value(value)}"
        for key, value in data.items()
        if not isinstance(value, dict)
    ]
    for table, values in data.items():
        if isinstance(values, dict):
            lines.append("")
            lines.append(f"[{table}]")
            lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
