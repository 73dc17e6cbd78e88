"""``fnet-deploy serve``: serve FNet to other machines through Triton Inference Server."""

from __future__ import annotations

import signal
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from fnet_deploy.backends.triton_runner import is_triton_uri
from fnet_deploy.commands.common import (
    BackendOption,
    ModelOption,
    PrecisionOption,
    RunDeviceOption,
    WeightsOption,
    console,
    notice,
    phase,
    reports_errors,
)
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.helpers.optional import require
from fnet_deploy.helpers.signals import signal_exit_code, stop_signals_handled
from fnet_deploy.inference.select import ModelChoice
from fnet_deploy.serving.repository import ServedModel, write_repository
from fnet_deploy.serving.server import Endpoints, TritonServer


@dataclass(frozen=True)
class ServePlan:
    """What one ``serve`` run offers, checked.

    Attributes:
        model: the served model (:class:`~fnet_deploy.serving.repository.ServedModel`).
        endpoints: where it listens (:class:`~fnet_deploy.serving.server.Endpoints`).
        ready_timeout_s: how long the server may take to become ready.
    """

    model: ServedModel
    endpoints: Endpoints
    ready_timeout_s: float


@reports_errors
def serve(
    weights: WeightsOption = None,
    model: ModelOption = None,
    backend: BackendOption = None,
    device: RunDeviceOption = "cpu",
    precision: PrecisionOption = None,
    name: Annotated[str, typer.Option(help="The model's name: triton://HOST:PORT/NAME.")] = "fnet",
    address: Annotated[
        str,
        typer.Option(
            help="Bind address of every endpoint: 127.0.0.1 (this machine only) or 0.0.0.0 "
            "(every interface: other machines can reach it)."
        ),
    ] = "127.0.0.1",
    grpc_port: Annotated[int, typer.Option(min=1, max=65535, help="gRPC port.")] = 8001,
    http_port: Annotated[int, typer.Option(min=1, max=65535, help="HTTP port.")] = 8000,
    metrics_port: Annotated[
        int, typer.Option(min=1, max=65535, help="Triton's Prometheus metrics port (/metrics).")
    ] = 8002,
    max_batch: Annotated[
        int, typer.Option(min=1, max=64, help="Most frames per model call (Triton batches).")
    ] = 8,
    max_queue_delay_ms: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1000.0,
            help="How long a request may wait for others to share its call (Triton's dynamic "
            "batcher, to the microsecond).",
        ),
    ] = 0.5,
    instances: Annotated[
        int, typer.Option(min=1, max=16, help="Model instances run side by side.")
    ] = 1,
    threads: Annotated[
        int, typer.Option(min=0, max=256, help="CPU threads of each instance (0: the default).")
    ] = 0,
    ready_timeout_s: Annotated[
        float, typer.Option(min=1.0, max=3600.0, help="Seconds the server may take to start.")
    ] = 300.0,
) -> None:
    """Serve FNet through Triton Inference Server (gRPC, HTTP, Prometheus metrics).

    Runs the model that --weights or --model name (as fuse and stream run it: weights as their
    fastest exact form on the device) inside the Triton server that nvidia-pytriton bundles, with
    dynamic batching. Clients use --model triton://HOST:GRPC_PORT/NAME in fuse, stream, eval
    and check. Listens on 127.0.0.1 unless --address says otherwise. Ctrl-C or SIGTERM lets the
    requests in flight finish and stops (exit code 130 or 143).
    """
    choice = ModelChoice(model, backend, device, precision, weights)
    if model is not None and is_triton_uri(str(model)):
        raise FnetError(f"--model {model}: serve runs a local model file, not a server's")
    for module in ("pytriton", "tritonclient.http"):  # the extra, before any work
        require(module)
    ports = {"--grpc-port": grpc_port, "--http-port": http_port, "--metrics-port": metrics_port}
    _check_ports(address, ports)
    plan = ServePlan(
        ServedModel(name, choice, max_batch, round(max_queue_delay_ms * 1000), instances, threads),
        Endpoints(address, grpc_port, http_port, metrics_port),
        ready_timeout_s,
    )
    run_serve(plan)


def _check_ports(address: str, ports: dict[str, int]) -> None:
    """Refuse, in one line, a port given twice or one that cannot be bound on ``address``."""
    seen: dict[int, str] = {}
    for option, port in ports.items():
        if port in seen:
            raise FnetError(f"{option} {port}: also given as {seen[port]}")
        seen[port] = option
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((address, port))
        except OSError as err:
            reason = err.strerror or str(err)
            raise FnetError(f"{option} {port}: cannot listen on {address} ({reason})") from None


def run_serve(plan: ServePlan) -> None:
    """Prepare the runner, start the server, say where it listens, and wait for a stop signal.

    Raises:
        FnetError: the model cannot be opened, or the server does not start.
        typer.Exit: 128 + the signal that stopped it.
    """
    model, endpoints = plan.model, plan.endpoints
    runner = model.choice.open(notify=notice)  # checked here, before any server starts
    with phase(f"preparing {runner.name}"):  # a first use exports into the cache now
        runner.activate()
        runner.deactivate()
    stopped = threading.Event()
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stopped.set()

    with tempfile.TemporaryDirectory(prefix="fnet-serve-") as work, stop_signals_handled(handler):
        root = Path(work)
        models, backends = write_repository(root, model)
        server = TritonServer(models, backends, endpoints, root / "tritonserver.log")
        try:
            server.start()
            with phase(f"starting Triton with {model.name} ({runner.name})"):
                server.wait_ready(model.name, plan.ready_timeout_s, stopped.is_set)
            grpc, http = endpoints.model_uris(model.name)
            console.print(
                f"serving {model.name} ({runner.name}, batches of up to {model.max_batch}) at "
                f"{grpc} and {http}; metrics at {endpoints.metrics_url}",
                markup=False,
                highlight=False,
            )
            while not stopped.wait(0.5):
                if not server.running():
                    raise FnetError(f"the Triton server stopped: {server.last_error()}")
        finally:
            code = server.stop()
    if received:
        notice(f"stopped by {signal.Signals(received[0]).name} (server exit code {code})")
        raise typer.Exit(signal_exit_code(received[0]))
