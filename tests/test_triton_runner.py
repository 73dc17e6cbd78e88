"""``--model triton://HOST:PORT/MODEL``: URIs, a server that is not there, and a real Triton server
(PyTriton, on loopback) serving the local runner's result, compared with the local runner."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from fnet_deploy.backends.base import Runner
from fnet_deploy.backends.torch_runner import TorchRunner
from fnet_deploy.backends.triton_runner import TritonRunner, TritonUri, is_triton_uri
from fnet_deploy.cli import app
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.inference.select import ModelChoice, open_runner
from fnet_deploy.model.weights import load_fnet
from fnet_deploy.serving.repository import ServedModel, write_repository
from fnet_deploy.serving.server import Endpoints, TritonServer
from tests.precision import assert_float32_accurate, float32_and_float64_runs

HAS_CLIENT = importlib.util.find_spec("tritonclient") is not None
HAS_PYTRITON = importlib.util.find_spec("pytriton") is not None
needs_client = pytest.mark.skipif(
    not HAS_CLIENT, reason="needs tritonclient: pip install 'fnet-deploy[serve]'"
)
needs_server = pytest.mark.skipif(
    not (HAS_CLIENT and HAS_PYTRITON),
    reason="needs nvidia-pytriton (the Triton server) and tritonclient: "
    "pip install 'fnet-deploy[serve]'",
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("triton://127.0.0.1:8001/fnet", TritonUri("grpc", "127.0.0.1", 8001, "fnet")),
        ("triton+http://gpu-node:8000/fnet_fp16", TritonUri("http", "gpu-node", 8000, "fnet_fp16")),
        ("triton:/127.0.0.1:8001/fnet", TritonUri("grpc", "127.0.0.1", 8001, "fnet")),
    ],
)
def test_uris_parse(text: str, expected: TritonUri) -> None:
    assert is_triton_uri(text)
    assert TritonUri.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("triton://127.0.0.1/fnet", "the port must be a number 1-65535"),
        ("triton://127.0.0.1:0/fnet", "the port must be a number 1-65535"),
        ("triton://127.0.0.1:65536/fnet", "the port must be a number 1-65535"),
        ("triton://127.0.0.1:80x/fnet", "the port must be a number 1-65535"),
        ("triton://:8001/fnet", "no host"),
        ("triton://127.0.0.1:8001", "no model name"),
        ("triton://127.0.0.1:8001/a/b", "no model name"),
    ],
)
def test_bad_uris_are_one_line_exit_2_before_work(
    tmp_path: Path, crop_pair: tuple[Path, Path], text: str, problem: str
) -> None:
    ir, vis = crop_pair
    out = tmp_path / "fused.png"
    args = ["fuse", "--ir", str(ir), "--vis", str(vis), "--out", str(out), "--model", text]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"--model {text}: {problem}" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_local_model_options_are_refused_with_a_uri() -> None:
    with pytest.raises(FnetError, match="--backend, --weights do not apply"):
        open_runner("triton://127.0.0.1:8001/fnet", backend="torch", weights="w.safetensors")


def free_port() -> int:
    """A loopback port nothing listens on (the OS's pick, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@needs_client
@pytest.mark.parametrize("scheme", ["triton", "triton+http"])
def test_unreachable_server_is_one_line(
    tmp_path: Path, crop_pair: tuple[Path, Path], scheme: str
) -> None:
    ir, vis = crop_pair
    uri = f"{scheme}://127.0.0.1:{free_port()}/fnet"
    out = tmp_path / "fused.png"
    args = ["fuse", "--ir", str(ir), "--vis", str(vis), "--out", str(out), "--model", uri]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith(f"error: --model {uri}: no Triton server answers at 127.0.0.1:")
    # a slow refusal may first show the phase's progress line; the error itself is one line
    assert [line for line in lines if line.startswith("error:")] == lines[-1:]
    assert not out.exists()


@contextlib.contextmanager
def interpreter_libpython_first() -> Iterator[None]:
    """Put this interpreter's libpython first for the server's Python stub (it links the system
    ``libpython3.X.so``; another build's stdlib with it fails at model initialisation)."""
    before = os.environ.get("LD_LIBRARY_PATH")
    libdir = str(sysconfig.get_config_var("LIBDIR"))
    os.environ["LD_LIBRARY_PATH"] = libdir + (f":{before}" if before else "")
    try:
        yield
    finally:
        if before is None:
            del os.environ["LD_LIBRARY_PATH"]
        else:
            os.environ["LD_LIBRARY_PATH"] = before


@pytest.fixture(scope="module")
def server(tiny_weights: Path) -> Iterator[tuple[int, int]]:
    """A real Triton server on loopback (PyTriton) with ``fnet`` (the tiny model's PyTorch deploy
    form, max batch 4, dynamic batching) and ``wrong`` (tensors ``a``, ``b`` -> ``c``).

    Yields:
        (gRPC port, HTTP port).
    """
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    local = open_runner(None, "torch", weights=tiny_weights)
    local.activate()

    @batch
    def fuse(ir: np.ndarray, vis: np.ndarray) -> dict[str, np.ndarray]:
        return local.infer({"ir": ir, "vis": vis})

    @batch
    def wrong(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
        return {"c": a}

    def tensors(*names: str) -> list[Any]:
        return [Tensor(name=name, dtype=np.float32, shape=(1, -1, -1)) for name in names]

    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    config = TritonConfig(
        grpc_address="127.0.0.1",
        grpc_port=grpc_port,
        http_address="127.0.0.1",
        http_port=http_port,
        metrics_port=metrics_port,
    )
    batcher = ModelConfig(
        max_batch_size=4, batcher=DynamicBatcher(max_queue_delay_microseconds=500)
    )
    with interpreter_libpython_first(), Triton(config=config) as triton:
        triton.bind("fnet", fuse, tensors("ir", "vis"), tensors("fused"), config=batcher)
        triton.bind("wrong", wrong, tensors("a", "b"), tensors("c"), config=batcher)
        triton.run()
        yield grpc_port, http_port
    local.deactivate()


@pytest.fixture(scope="module")
def backend_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path
) -> Iterator[tuple[int, int]]:
    """The Triton server that nvidia-pytriton bundles, as ``fnet-deploy serve`` runs it
    (:mod:`fnet_deploy.serving`): a Python-backend ``fnet`` (the tiny model's PyTorch deploy form,
    max batch 4, dynamic batching) whose tensors cross the stub through DLPack, so that they
    survive numpy 2 (see :func:`served_result`).

    Yields:
        (gRPC port, HTTP port).
    """
    root = tmp_path_factory.mktemp("tritonserver")
    model = ServedModel(
        "fnet", ModelChoice(backend="torch", weights=tiny_weights), max_batch=4, threads=1
    )
    models, backends = write_repository(root, model)
    endpoints = Endpoints("127.0.0.1", free_port(), free_port(), free_port())
    server = TritonServer(models, backends, endpoints, root / "server.log")
    server.start()
    try:
        server.wait_ready("fnet", 600.0, lambda: False)
        yield endpoints.grpc_port, endpoints.http_port
    finally:
        server.stop()


def served_result(runner: Runner, feed: dict[str, np.ndarray]) -> np.ndarray:
    """The served ``fused``; a skip where the server's Python backend returns empty outputs.

    Measured with PyTriton 0.7.0 on this project's CPU machines: its backend stub is built for
    numpy 1 (the wheel declares numpy<2); under numpy 2 the stub's ``as_numpy()`` misreads the
    inputs and ``pb_utils.Tensor(name, array)`` sends outputs with their shape and no data.
    PyTriton's proxy uses both; :func:`backend_server` goes through DLPack instead.
    """
    try:
        return runner.infer(feed)["fused"]
    except FnetError as err:
        if "cannot reshape array of size 0" in str(err):
            pytest.skip(
                f"PyTriton's Python backend stub (built for numpy 1) returns empty outputs "
                f"under numpy {np.__version__}: {err}"
            )
        raise


SERVERS = ["server", "backend_server"]
"""PyTriton binding a Python function, and the bundled server running a Python-backend model."""


@needs_server
@pytest.mark.parametrize("scheme", ["triton", "triton+http"])
@pytest.mark.parametrize("server_fixture", SERVERS)
def test_served_model_is_checked_and_fuses_as_the_local_runner(
    request: pytest.FixtureRequest, server_fixture: str, tiny_weights: Path, scheme: str
) -> None:
    server: tuple[int, int] = request.getfixturevalue(server_fixture)
    port = server[0] if scheme == "triton" else server[1]
    runner = open_runner(f"{scheme}://127.0.0.1:{port}/fnet")
    assert isinstance(runner, TritonRunner)
    rng = np.random.default_rng(0)
    ir = cv2.GaussianBlur(rng.random((3, 40, 48), dtype=np.float32), (0, 0), 2.0)[:, None]
    vis = cv2.GaussianBlur(rng.random((3, 40, 48), dtype=np.float32), (0, 0), 2.0)[:, None]
    with runner:
        assert runner.max_batch == 4
        fused = served_result(runner, {"ir": ir, "vis": vis})
    model, _ = load_fnet(tiny_weights)
    baseline32, reference64 = float32_and_float64_runs(model, ir, vis)
    assert fused.shape == ir.shape
    assert_float32_accurate(fused, reference64, baseline32, "served fused")
    with TorchRunner(model) as local:
        assert local.infer({"ir": ir, "vis": vis})["fused"].shape == fused.shape


@needs_server
@pytest.mark.parametrize("server_fixture", SERVERS)
def test_fuse_cli_through_the_server_matches_the_local_runner(
    request: pytest.FixtureRequest,
    server_fixture: str,
    tiny_weights: Path,
    crop_pair: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    server: tuple[int, int] = request.getfixturevalue(server_fixture)
    runner = open_runner(f"triton://127.0.0.1:{server[0]}/fnet")
    probe = np.full((1, 1, 8, 8), 0.5, np.float32)
    with runner:
        served_result(runner, {"ir": probe, "vis": probe})
    assert_fuse_matches_local(server[0], tiny_weights, crop_pair, tmp_path)


def assert_fuse_matches_local(
    grpc_port: int, weights: Path, pair: tuple[Path, Path], tmp_path: Path
) -> None:
    """``fuse --model triton://127.0.0.1:PORT/fnet`` writes what ``fuse`` of ``weights`` (the
    PyTorch deploy form) writes locally, within 1 grey level."""
    ir, vis = pair
    common = ["fuse", "--ir", str(ir), "--vis", str(vis)]
    uri = f"triton://127.0.0.1:{grpc_port}/fnet"
    served = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "s.png"), "--model", uri])
    assert served.exit_code == 0, served.output
    local = CliRunner().invoke(
        app,
        [
            *common,
            "--out",
            str(tmp_path / "l.png"),
            "--weights",
            str(weights),
            "--backend",
            "torch",
        ],
    )
    assert local.exit_code == 0, local.output
    a, b = (cv2.imread(str(tmp_path / name), cv2.IMREAD_UNCHANGED) for name in ("s.png", "l.png"))
    assert a is not None and b is not None and a.shape == b.shape
    assert np.abs(a.astype(np.int16) - b.astype(np.int16)).max() <= 1


@needs_server
def test_missing_model_and_wrong_tensors_are_one_line(server: tuple[int, int]) -> None:
    with pytest.raises(FnetError, match="the server has no ready model 'nope'"):
        open_runner(f"triton://127.0.0.1:{server[0]}/nope").activate()
    with pytest.raises(FnetError, match=r"inputs \['a', 'b'\] -> outputs \['c'\]"):
        open_runner(f"triton+http://127.0.0.1:{server[1]}/wrong").activate()
