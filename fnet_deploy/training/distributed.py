"""Several processes, one training run: torch.distributed as launched by ``torchrun``.

``torchrun --nproc_per_node G [--nnodes N ...] -m fnet_deploy.training ...`` sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous variables; :func:`setup` reads them, joins the
process group (NCCL on GPUs, gloo on CPUs) and pins each process to its local GPU. The model is
wrapped in DistributedDataParallel, gradients are averaged across processes, and only rank 0
writes logs, checkpoints and weights. Without those variables everything is a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from fnet_deploy.backends.device import torch_device
from fnet_deploy.helpers.errors import FnetError


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run.

    Attributes:
        device: the device this process trains on.
        rank: global process index (0 writes logs and checkpoints).
        world_size: number of processes.
        local_rank: index on this node (selects the GPU).
        owns_group: this process created the process group and destroys it at the end.
    """

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """True on the process that writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise FnetError(f"environment variable {name}={value!r} is not an integer") from None


def setup(device_name: str) -> DistContext:
    """Join the run described by the torchrun environment (or a single process without it).

    Args:
        device_name: ``cpu``, ``cuda`` or ``cuda:N``; under torchrun, ``cuda`` means this
            process's local GPU (``cuda:LOCAL_RANK``).

    Raises:
        FnetError: the device is not available, or fewer GPUs than local processes.
    """
    device = torch_device(device_name)
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1 and not dist.is_initialized():
        return DistContext(device=device)
    local_rank = _env_int("LOCAL_RANK", 0)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise FnetError(
                f"process with LOCAL_RANK={local_rank} needs a GPU but this node has "
                f"{torch.cuda.device_count()}"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    return DistContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        device=device,
        owns_group=owns,
    )


def teardown(ctx: DistContext) -> None:
    """Leave the process group if this process created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, ctx: DistContext) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel when several processes train, else as is.

    Wrapping broadcasts rank 0's parameters, so every process starts from the same weights.
    """
    if not ctx.distributed:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def agree(losses: list[Tensor], stop: bool, ctx: DistContext) -> tuple[list[float], bool]:
    """Means of the scalar ``losses`` over the processes and whether any process asked to stop.

    One all-reduce per iteration, so that every process takes the same decision (stop, or
    halt on a non-finite loss) at the same step and logs the same numbers.
    """
    device = losses[0].device
    values = torch.stack(
        [loss.detach().float() for loss in losses] + [torch.tensor(float(stop), device=device)]
    )
    if ctx.distributed:
        dist.all_reduce(values)
        values[:-1] /= ctx.world_size
    *means, stops = values.tolist()
    return means, stops > 0


def launched_rank() -> int:
    """This process's rank as set by the launcher (0 without torchrun), before :func:`setup`."""
    return _env_int("RANK", 0)


def barrier(ctx: DistContext) -> None:
    """Wait for every process (no-op for one process)."""
    if ctx.distributed:
        dist.barrier()
