"""Two CPU processes (gloo) train as one: identical weights, the same result as one process."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

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
    assert all(torch.equal(saved[k], rank0[k]) for k in rank0)

    # One process with the global batch (2 x 2) sees the same samples in the same steps and
    # averages the same gradients: equal up to float32 summation order.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train(load_config(None, _overrides(data, tmp_path / "single", batch=4)))
    finally:
        torch.set_num_threads(threads)
    start = load_file(str(out / "fnet_stage1.safetensors"))
    for key, value in single.models[2].state_dict().items():
        moved = (rank0[key] - start[key]).abs().max()
        assert (value - rank0[key]).abs().max() <= 1e-3 * max(float(moved), 1e-3), key
