"""The ONNX deploy form of a weights file, exported once and kept in a cache folder.

On a CPU the fastest exact way to run weights is the deploy form exported to ONNX with
``col2im`` (and ``exp_gate``, for accuracy) and run by ONNX Runtime (docs/performance.md).
Exporting takes seconds (about 10 s for the published architecture on 2 cores), so each weights
file is exported once, into

- ``$FNET_DEPLOY_CACHE`` when set, else ``$XDG_CACHE_HOME/fnet-deploy``, else
  ``~/.cache/fnet-deploy``,

under a name derived from everything that shapes the graph (:func:`cache_key`): the weights'
sha256, the export spec (precision, opset, deploy options, dynamic shapes), and the versions of
fnet-deploy, torch, onnx and onnxscript. A file is used only if it loads, passes
``onnx.checker`` and records that same key; otherwise it is exported again. Files are written
atomically, so a crash or a concurrent run never leaves a half-written model behind. Each use
refreshes a file's modification time; each new export prunes the folder to the
:data:`MAX_ENTRIES` most recently used models, none unused for :data:`MAX_AGE_DAYS` days.

Imports ``onnx`` at the top (through :mod:`fnet_deploy.export.onnx_graph`): import it after
``require("onnx")``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from fnet_deploy import __version__
from fnet_deploy.export.onnx_graph import (
    METADATA_PREFIX,
    OnnxSpec,
    build_metadata,
    build_onnx,
    save_onnx,
)
from fnet_deploy.helpers.atomic import check_writable
from fnet_deploy.helpers.optional import require
from fnet_deploy.model.deploy import DeployOptions
from fnet_deploy.model.fnet import FNet
from fnet_deploy.model.weights import WeightsInfo

CACHE_ENV = "FNET_DEPLOY_CACHE"
"""Environment variable naming the cache folder (overrides the XDG default)."""
CPU_SPEC = OnnxSpec(options=DeployOptions(col2im=True, exp_gate=True))
"""What runs fastest on ONNX Runtime's CPU provider (float32, dynamic N x 1 x H x W, col2im),
with the gate's sigmoid from ``Exp`` so that it is as accurate as PyTorch's float32."""
KEY_FIELD = "cache_key"
"""The metadata entry (after :data:`METADATA_PREFIX`) that records a cached file's key."""
MAX_ENTRIES = 8
"""Cached models kept: after each new export, the least recently used beyond this are removed."""
MAX_AGE_DAYS = 30.0
"""Cached models unused for longer than this are removed after each new export."""


def cache_dir() -> Path:
    """The folder of cached exports (not created here)."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fnet-deploy"


def cache_key(weights_sha256: str, spec: OnnxSpec) -> str:
    """A hex digest of the weights' sha256, the export spec and the exporting software."""
    parts = {
        "weights_sha256": weights_sha256,
        "precision": spec.precision,
        "dims": [str(d) for d in spec.input_dims()],
        "opset": spec.opset,
        "deploy_options": spec.options.to_dict(),
        "fnet_deploy": __version__,
        "torch": torch.__version__,
        "onnx": importlib.metadata.version("onnx"),
        "onnxscript": importlib.metadata.version("onnxscript"),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def cached_path(weights_sha256: str, spec: OnnxSpec = CPU_SPEC) -> Path:
    """Where the export of these weights with ``spec`` is cached."""
    return cache_dir() / f"fnet-{cache_key(weights_sha256, spec)[:32]}.onnx"


def is_current(path: Path, key: str) -> bool:
    """Whether ``path`` is a readable, valid ONNX model that records ``key``."""
    onnx = require("onnx")
    try:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
    except Exception:
        return False
    recorded = {prop.key: prop.value for prop in proto.metadata_props}
    return recorded.get(METADATA_PREFIX + KEY_FIELD) == key


def cached_onnx(
    model: FNet,
    info: WeightsInfo,
    spec: OnnxSpec = CPU_SPEC,
    notify: Callable[[str], None] | None = None,
) -> Path:
    """The cached ONNX export of ``model``'s deploy form, exported first if missing or stale.

    Args:
        model: the FNet loaded from ``info.path`` (training form); not modified.
        info: what :func:`fnet_deploy.model.weights.load_fnet` read (its sha256 keys the
            cache).
        spec: the export spec (default: :data:`CPU_SPEC`).
        notify: told, in one line, when an export starts.

    Raises:
        InputError: the cache folder cannot be written.
        FnetError: the exported graph fails its checks.
    """
    key = cache_key(info.sha256, spec)
    path = cached_path(info.sha256, spec)
    if is_current(path, key):
        with contextlib.suppress(OSError):
            os.utime(path)  # its time of last use, for pruning
        return path
    check_writable(path)
    if notify is not None:
        notify(
            f"exporting {info.path.name} to ONNX for ONNX Runtime, once (10-20 s on 2 cores; "
            f"cached in {path.parent}, set by {CACHE_ENV})"
        )
    metadata = build_metadata(info, spec)
    metadata[METADATA_PREFIX + KEY_FIELD] = key
    save_onnx(build_onnx(model, spec, metadata), path)
    prune(keep=path)
    return path


def prune(keep: Path, now: float | None = None) -> list[Path]:
    """Remove cached models beyond the :data:`MAX_ENTRIES` most recently used and those unused
    for :data:`MAX_AGE_DAYS` (never ``keep``); returns what was removed.

    Entries of other weights, options or software versions are never used again once those
    change, so without this the cache would only grow. A file another process removes first,
    or one that cannot be removed, is left to the next prune.
    """
    now = time.time() if now is None else now
    entries: list[tuple[float, Path]] = []
    for entry in keep.parent.glob("fnet-*.onnx"):
        with contextlib.suppress(OSError):
            entries.append((entry.stat().st_mtime, entry))
    entries.sort(reverse=True)
    removed: list[Path] = []
    for rank, (used, entry) in enumerate(entries):
        too_many = rank >= MAX_ENTRIES
        too_old = now - used > MAX_AGE_DAYS * 86400
        if entry != keep and (too_many or too_old):
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed
