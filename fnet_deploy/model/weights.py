"""Weights files: the published FNet checkpoint and the project's own safetensors format.

Two formats are read, recognised by content, not by suffix:

- **published** (``FNet_official.pth``): the authors' plain PyTorch state_dict, read with
  ``torch.load(weights_only=True)`` and renamed through :func:`official_to_ours`.
- **fnet-deploy** (``*.safetensors``): the project's own format, the FNet state_dict in
  safetensors with a JSON document under the header metadata key ``fnet_deploy``
  (model config, luminance convention, provenance, package version). No pickle is ever written.

Key mapping, published -> ours (``{b}`` is a block, ``{i}`` = 0, 1, 2 is step ``k = i + 2``):

=========================================  =========================================
``net_u.`` / ``net_v.`` / ``net_z.``        ``unique_ir.`` / ``unique_vis.`` / ``common.``
``{b}.w_ro``, ``{b}.b_ro``                  ``{b}.w_rho``, ``{b}.b_rho``
``{b}.x0_block.conv_in``                    ``{b}.steps.0.encode``
``{b}.x1_block.conv_in``                    ``{b}.steps.1.encode``
``{b}.x1_block.basic_layer.ch_down/up``     ``{b}.steps.1.prev.down/up``
``{b}.IM.{i}.conv_in``                      ``{b}.steps.{i+2}.encode``
``{b}.IM.{i}.basic_layer1.ch_down/up``      ``{b}.steps.{i+2}.prev.down/up``
``{b}.IM.{i}.basic_layer2.ch_down/up``      ``{b}.steps.{i+2}.prev2.down/up``
``conv_u`` / ``conv_v``                     ``proj_ir`` / ``proj_vis``
``decoder.conv_1`` / ``_2`` / ``_3``        ``dec_ir`` / ``dec_common`` / ``dec_vis``
=========================================  =========================================
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError

from fnet_deploy import __version__
from fnet_deploy.assets import asset_path
from fnet_deploy.helpers.atomic import atomic_path
from fnet_deploy.helpers.errors import CheckpointError, FnetError
from fnet_deploy.model.config import ModelConfig

if TYPE_CHECKING:  # torch is imported where weights are read or written, not with this module
    import torch
    from torch import Tensor

    from fnet_deploy.model.fnet import FNet

FORMAT_NAME = "fnet-deploy/1"
METADATA_KEY = "fnet_deploy"
DEFAULT_WEIGHTS = "fnet_default.safetensors"

_BLOCKS = {"net_u": "unique_ir", "net_v": "unique_vis", "net_z": "common"}
_TOP = {
    "conv_u.weight": "proj_ir.weight",
    "conv_v.weight": "proj_vis.weight",
    "decoder.conv_1.weight": "dec_ir.weight",
    "decoder.conv_2.weight": "dec_common.weight",
    "decoder.conv_3.weight": "dec_vis.weight",
}
_IN_BLOCK = [
    (re.compile(r"^w_ro$"), "w_rho"),
    (re.compile(r"^b_ro$"), "b_rho"),
    (re.compile(r"^(w_theta|b_theta)$"), r"\1"),
    (re.compile(r"^x0_block\.conv_in\.weight$"), "steps.0.encode.weight"),
    (re.compile(r"^x1_block\.conv_in\.weight$"), "steps.1.encode.weight"),
    (re.compile(r"^x1_block\.basic_layer\.ch_(down|up)\.weight$"), r"steps.1.prev.\1.weight"),
]
_IM = re.compile(r"^IM\.(\d+)\.(conv_in|basic_layer1|basic_layer2)\.(?:ch_(down|up)\.)?weight$")


@dataclass
class WeightsInfo:
    """What is known about a loaded weights file."""

    path: Path
    sha256: str
    source_format: str
    config: ModelConfig
    luminance: str
    provenance: str
    metadata: dict[str, Any] = field(default_factory=dict)


def official_key_to_ours(key: str) -> str:
    """Rename one published state_dict key to this package's module names.

    Raises:
        KeyError: the key is not part of the published FNet.
    """
    if key in _TOP:
        return _TOP[key]
    block, _, rest = key.partition(".")
    if block not in _BLOCKS:
        raise KeyError(key)
    for pattern, replacement in _IN_BLOCK:
        if pattern.match(rest):
            return f"{_BLOCKS[block]}.{pattern.sub(replacement, rest)}"
    match = _IM.match(rest)
    if match is None:
        raise KeyError(key)
    index, part, direction = match.groups()
    step = int(index) + 2
    if part == "conv_in":
        if direction is not None:
            raise KeyError(key)
        return f"{_BLOCKS[block]}.steps.{step}.encode.weight"
    if direction is None:
        raise KeyError(key)
    term = "prev" if part == "basic_layer1" else "prev2"
    return f"{_BLOCKS[block]}.steps.{step}.{term}.{direction}.weight"


def official_to_ours(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a whole published state_dict (see the module docstring for the table)."""
    return {official_key_to_ours(key): value for key, value in state.items()}


def _config_from_official(state: dict[str, Tensor]) -> ModelConfig:
    steps = [k for k in state if re.match(r"^net_u\.IM\.\d+\.conv_in\.weight$", k)]
    weight = state["net_u.x0_block.conv_in.weight"]
    return ModelConfig(
        filters=int(weight.shape[0]), kernel_size=int(weight.shape[-1]), iterations=len(steps) + 1
    )


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_safetensors(head: bytes) -> bool:
    return len(head) >= 9 and head[8:9] == b"{"


def _is_torch_file(head: bytes) -> bool:
    """A torch.save zip archive, or a legacy pickle (protocol 2+)."""
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def _read_published(path: Path) -> tuple[dict[str, Tensor], ModelConfig]:
    import torch

    try:
        with warnings.catch_warnings():  # the error below says what is wrong, in one line
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        text = str(err).strip()
        if "Weights only load failed" in text:
            reason = "it holds Python objects, not a plain state_dict of tensors"
        else:
            reason = text.splitlines()[0] if text else type(err).__name__
        raise CheckpointError(path, f"not a readable PyTorch checkpoint ({reason})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(path, "does not hold a state_dict of tensors")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    if "net_u.x0_block.conv_in.weight" not in state:
        raise CheckpointError(
            path, "not an FNet checkpoint (no 'net_u.x0_block.conv_in.weight' tensor)"
        )
    try:
        renamed = official_to_ours(state)
    except KeyError as err:
        raise CheckpointError(path, f"unexpected tensor {err.args[0]!r} for FNet") from None
    try:
        config = _config_from_official(state)
    except ValueError as err:
        raise CheckpointError(path, f"inconsistent FNet shapes ({err})") from None
    return renamed, config


def _read_ours(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    from safetensors.torch import load_file

    metadata = read_document(path, METADATA_KEY, FORMAT_NAME, "weights")
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, ValueError, OSError) as err:
        raise CheckpointError(path, f"corrupt weights file ({err})") from None
    return state, metadata


def read_document(path: Path, key: str, format_name: str, kind: str) -> dict[str, Any]:
    """The JSON document a safetensors file keeps under metadata ``key`` (no tensor is read).

    Args:
        path: the file; key: its metadata entry; format_name: the ``format`` the document must
            name; kind: what the file is, for messages (``weights``, ``training-state``).

    Raises:
        CheckpointError: the file is corrupt, has no such entry, or another format.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, ValueError, OSError) as err:
        raise CheckpointError(path, f"corrupt {kind} file ({err})") from None
    raw = metadata.get(key)
    if raw is None:
        raise CheckpointError(path, f"not a {kind} file (no '{key}' metadata)")
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as err:
        raise CheckpointError(path, f"unreadable '{key}' metadata ({err})") from None
    if not isinstance(document, dict) or document.get("format") != format_name:
        found = document.get("format") if isinstance(document, dict) else document
        raise CheckpointError(path, f"unknown {kind} format {found!r}")
    return document


def _load_strict(model: FNet, state: dict[str, Tensor], path: Path) -> None:
    import torch

    expected = model.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (first: {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        raise CheckpointError(path, f"tensors do not match FNet: {'; '.join(detail)}")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                path,
                f"tensor {key} has shape {tuple(tensor.shape)}, FNet expects "
                f"{tuple(expected[key].shape)}",
            )
        if not torch.isfinite(tensor).all():
            raise CheckpointError(path, f"tensor {key} holds NaN or inf values")
    model.load_state_dict(state, strict=True)


def load_fnet(path: str | Path, device: str | torch.device = "cpu") -> tuple[FNet, WeightsInfo]:
    """Load FNet weights (published ``.pth`` or fnet-deploy ``.safetensors``), strictly.

    Returns:
        The model in eval mode on ``device`` and what the file says about itself.

    Raises:
        CheckpointError: the file is missing, unreadable, corrupt, or does not match FNet.
    """
    from fnet_deploy.model.fnet import FNet

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "weights file not found" if not path.exists() else "not a file")
    with path.open("rb") as handle:
        head = handle.read(16)
    if not head:
        raise CheckpointError(path, "empty file")
    if not _is_safetensors(head) and not _is_torch_file(head):
        raise CheckpointError(
            path, "not a weights file (expected a PyTorch .pth or an fnet-deploy .safetensors)"
        )
    if _is_safetensors(head):
        state, metadata = _read_ours(path)
        if metadata.get("model") != "fnet":
            raise CheckpointError(path, f"holds a {metadata.get('model')!r} model, not FNet")
        try:
            config = ModelConfig.from_dict(metadata["config"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(path, f"bad model config in metadata ({err})") from None
        source, luminance = FORMAT_NAME, str(metadata.get("luminance", "ycbcr"))
        provenance = str(metadata.get("provenance", ""))
    else:
        state, config = _read_published(path)
        metadata = {}
        source, luminance = "published-pth", "ycbcr"
        provenance = "published FNet checkpoint (Panda et al., gargi884/FNet-MMIF)"
    model = FNet(config)
    _load_strict(model, state, path)
    info = WeightsInfo(
        path=path,
        sha256=file_sha256(path),
        source_format=source,
        config=config,
        luminance=luminance,
        provenance=provenance,
        metadata=metadata,
    )
    return model.to(device).eval(), info


def save_fnet(
    path: str | Path,
    model: FNet,
    *,
    luminance: str = "ycbcr",
    provenance: str = "",
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``model`` in the fnet-deploy format (safetensors + JSON metadata), atomically.

    Args:
        path: destination, conventionally ``*.safetensors``.
        model: the FNet to save (any device; saved as float32 on CPU).
        luminance: the luminance convention the weights were trained with.
        provenance: free text: where the weights came from (training run, conversion source).
        extra: further JSON-serialisable metadata (training recipe, metrics).
    """
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    metadata = {
        "format": FORMAT_NAME,
        "model": "fnet",
        "config": model.config.to_dict(),
        "luminance": luminance,
        "provenance": provenance,
        "package_version": __version__,
        **(extra or {}),
    }
    state = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()
    }
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})


def packaged_weights() -> Path | None:
    """The default weights shipped inside the package, or ``None`` if this build has none."""
    path = asset_path(DEFAULT_WEIGHTS)
    return path if path.is_file() else None


def resolve_weights(path: str | Path | None) -> Path:
    """The weights to use: ``path`` if given, else the packaged default.

    Raises:
        FnetError: no path given and the package ships no default weights.
    """
    if path is not None:
        return Path(path)
    default = packaged_weights()
    if default is None:
        raise FnetError(
            "no --weights given and this build ships no default weights: pass --weights PATH "
            "(for example the published FNet_official.pth)"
        )
    return default
