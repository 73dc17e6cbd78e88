"""Training state on disk: everything needed to continue a stage exactly where it stopped.

One file per stage, ``state/stage{n}.safetensors``, replaced atomically (written beside and
renamed), so a crash or kill leaves the previous complete checkpoint. Tensors (model, IFNet,
moving average, optimiser moments, torch RNG states) are safetensors tensors; everything else
(step, optimiser hyper-parameters, scheduler, Python and NumPy RNG states, the run config) is one
JSON document in the header metadata under ``fnet_deploy_train``. No pickle is written or read.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from fnet_deploy.helpers.atomic import atomic_path
from fnet_deploy.helpers.errors import CheckpointError
from fnet_deploy.model.weights import read_document

FORMAT_NAME = "fnet-deploy-train/1"
METADATA_KEY = "fnet_deploy_train"
_SEP = "/"


@dataclass
class TrainState:
    """A stage's complete training state at an iteration boundary.

    Attributes:
        stage: 1 or 2.
        step: optimiser steps completed.
        modules: named state_dicts (``fnet``, ``ema``, and ``ifnet`` in stage I).
        optimizer: ``torch.optim.Optimizer.state_dict()``.
        scheduler: the learning-rate scheduler's ``state_dict()`` (JSON-serialisable).
        rng: :func:`capture_rng` of the saving process.
        info: JSON-serialisable facts about the run (config, data, losses, world size).
    """

    stage: int
    step: int
    modules: dict[str, dict[str, Tensor]]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)


def capture_rng() -> dict[str, Any]:
    """States of Python's, NumPy's and torch's (CPU and CUDA) global random generators."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng` (CUDA states only when CUDA is present)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _split_optimizer(optimizer: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors: dict[str, Tensor] = {}
    plain: dict[str, Any] = {}
    for index, entries in optimizer["state"].items():
        for name, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer{_SEP}{index}{_SEP}{name}"] = value
            else:
                plain.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": optimizer["param_groups"], "plain_state": plain}


def save_train_state(path: str | Path, state: TrainState) -> None:
    """Write ``state`` to ``path`` atomically (and flushed to disk before the rename)."""
    path = Path(path)
    tensors: dict[str, Tensor] = {}
    for module, weights in state.modules.items():
        for key, value in weights.items():
            tensors[f"{module}{_SEP}{key}"] = value
    optimizer_tensors, optimizer_plain = _split_optimizer(state.optimizer)
    tensors.update(optimizer_tensors)
    rng = dict(state.rng)
    tensors[f"rng{_SEP}torch"] = rng.pop("torch")
    for index, cuda_state in enumerate(rng.pop("cuda", [])):
        tensors[f"rng{_SEP}cuda{_SEP}{index}"] = cuda_state
    document = {
        "format": FORMAT_NAME,
        "stage": state.stage,
        "step": state.step,
        "modules": sorted(state.modules),
        "optimizer": optimizer_plain,
        "scheduler": state.scheduler,
        "rng": rng,
        "info": state.info,
    }
    tensors = {key: value.detach().to("cpu").contiguous().clone() for key, value in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(document)})
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())


def read_train_info(path: str | Path) -> dict[str, Any]:
    """The JSON document of a training-state file (no tensors are loaded).

    Raises:
        CheckpointError: missing, corrupt, or not a training-state file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "training state not found")
    return read_document(path, METADATA_KEY, FORMAT_NAME, "training-state")


def load_train_state(path: str | Path, device: str | torch.device = "cpu") -> TrainState:
    """Read a file written by :func:`save_train_state`.

    Args:
        path: the training-state file.
        device: where to put the model, moving-average and optimiser tensors (RNG states stay
            on the CPU).

    Raises:
        CheckpointError: missing, corrupt, or not a training-state file.
    """
    path = Path(path)
    document = read_train_info(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as err:
        raise CheckpointError(path, f"corrupt training state ({err})") from None
    modules: dict[str, dict[str, Tensor]] = {name: {} for name in document["modules"]}
    optimizer_state: dict[int, dict[str, Any]] = {}
    rng: dict[str, Any] = dict(document["rng"])
    cuda: dict[int, Tensor] = {}
    for key, value in tensors.items():
        head, _, rest = key.partition(_SEP)
        if head in modules:
            modules[head][rest] = value.to(device)
        elif head == "optimizer":
            index, _, name = rest.partition(_SEP)
            moved = value if name == "step" else value.to(device)
            optimizer_state.setdefault(int(index), {})[name] = moved
        elif rest == "torch":
            rng["torch"] = value
        elif rest.startswith(f"cuda{_SEP}"):
            cuda[int(rest.partition(_SEP)[2])] = value
        else:
            raise CheckpointError(path, f"unexpected tensor {key!r} in training state")
    if cuda:
        rng["cuda"] = [cuda[i] for i in sorted(cuda)]
    for index, entries in document["optimizer"]["plain_state"].items():
        optimizer_state.setdefault(int(index), {}).update(entries)
    return TrainState(
        stage=int(document["stage"]),
        step=int(document["step"]),
        modules=modules,
        optimizer={
            "state": optimizer_state,
            "param_groups": document["optimizer"]["param_groups"],
        },
        scheduler=document["scheduler"],
        rng=rng,
        info=document["info"],
    )
