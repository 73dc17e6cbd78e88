"""Two CPU processes (gloo) train as one: identical weights, the same result as one process.

Both runs train in float64 (``speed.precision=fp64``): one process and two processes sum the same
gradients in different orders, and in float32 Adam turns such rounding differences of near-zero
gradient entries into whole steps, so only a float64 comparison is free of float32 luck.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from fnet_deploy.model import FNet
from fnet_deploy.training.config import load_config
from fnet_deploy.training.trainer import train
from tests.test_dataset import write_pair

TINY = [
    "model.filters=4",
    "model.kernel_size=3",
    "model.iterations=2",
    "data.crop=16",
    "log.tensorboard=false",
    "log.plot=false",
    "stages=both",
    "stage1.iterations=3",
    "stage2.iterations=2",
    "optim.ema_decay=0.0",  # the saved average is then the trained weights themselves
    "speed.precision=fp64",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _overrides(data: Path, out: Path, batch: int) -> list[str]:
    return [
        f"data.folders=[{json.dumps(str(data))}]",
        f"out={json.dumps(str(out))}",
        f"data.batch_size={batch}",
        *TINY,
    ]


def _worker(rank: int, world: int, port: int, data: str, out: str, dump: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    result = train(load_config(None, _overrides(Path(data), Path(out), batch=2)))
    for stage, model in result.models.items():
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(Path(dump) / f"rank{rank}_stage{stage}.safetensors"))


@pytest.mark.slow
def test_two_gloo_processes_stay_in_sync_and_match_one_process(tmp_path: Path) -> None:
    data = tmp_path / "pairs"
    for i in range(4):
        write_pair(data, f"p{i}", shape=(24, 28), seed=i)
    dump = tmp_path / "dump"
    dump.mkdir()
    out = tmp_path / "ddp"
    mp.spawn(_worker, args=(2, _free_port(), str(data), str(out), str(dump)), nprocs=2, join=True)
    for stage in (1, 2):
        rank0 = load_file(str(dump / f"rank0_stage{stage}.safetensors"))
        rank1 = load_file(str(dump / f"rank1_stage{stage}.safetensors"))
        assert rank0.keys() == rank1.keys()
        for key in rank0:
            assert torch.equal(rank0[key], rank1[key]), (stage, key)
    saved = load_file(str(out / "fnet.safetensors"))
    assert all(torch.equal(saved[k], rank0[k].float()) for k in rank0)  # saved as float32

    # One process with the global batch (2 x 2) sees the same samples in the same steps. Stage I's
    # loss is a mean over samples, so averaging two ranks' gradients is the one-process gradient:
    # equal up to float64 summation order. Stage II's source weights wA, wB are each process's own
    # batch statistics (as the authors computed them on one GPU), so there the two runs differ by
    # design, by a deterministic small amount (seeded data, float64), not by rounding.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train(load_config(None, _overrides(data, tmp_path / "single", batch=4)))
    finally:
        torch.set_num_threads(threads)
    config = load_config(None, _overrides(data, out, batch=2))
    torch.manual_seed(config.seed)  # the trainer's initialisation
    init = FNet(config.model).state_dict()
    first = load_file(str(dump / "rank0_stage1.safetensors"))
    for key, value in single.models[1].state_dict().items():
        assert value.dtype == torch.float64
        moved = (first[key] - init[key].double()).abs().max()
        assert (value - first[key]).abs().max() <= 1e-9 * max(float(moved), 1e-6), key
    second = load_file(str(dump / "rank0_stage2.safetensors"))
    for key, value in single.models[2].state_dict().items():
        moved = (second[key] - first[key]).abs().max()
        assert (value - second[key]).abs().max() <= 1e-3 * max(float(moved), 1e-6), key
