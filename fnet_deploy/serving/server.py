"""The ``tritonserver`` that nvidia-pytriton bundles, run on a repository of :mod:`.repository`.

PyTriton starts this same binary for its bound Python functions; ``serve`` starts it on its own
repository instead, because PyTriton's proxy model passes tensors through numpy's buffers, which
its numpy-1 stub misreads under numpy 2 (docs/serving.md). Two things the server needs from the
environment, set here rather than left to the user:

- the stub links the system ``libpython3.X.so``; with another build of the same Python (pyenv,
  conda) the interpreter's own library folder must come first in ``LD_LIBRARY_PATH``, or model
  initialisation fails inside the stdlib;
- the stub imports this package, so the folder holding it goes on ``PYTHONPATH``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import fnet_deploy
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.helpers.optional import require

READY_POLL_S = 0.25
"""Seconds between readiness checks while the server starts."""
STOP_GRACE_S = 30
"""Seconds the server may take to finish the requests in flight after SIGTERM
(``--exit-timeout-secs``) before it is killed."""


@dataclass(frozen=True)
class Endpoints:
    """Where a server listens.

    Attributes:
        address: the bind address of gRPC and HTTP (``127.0.0.1``: this machine only).
        grpc_port, http_port: the inference ports; metrics_port: Triton's Prometheus metrics
            (``/metrics``), on the same address.
    """

    address: str = "127.0.0.1"
    grpc_port: int = 8001
    http_port: int = 8000
    metrics_port: int = 8002

    @property
    def local_host(self) -> str:
        """The host a client on this machine reaches the server at."""
        return "127.0.0.1" if self.address in ("0.0.0.0", "::") else self.address

    def model_uris(self, model: str) -> tuple[str, str]:
        """The ``--model`` URIs of ``model`` for a client on this machine (gRPC, HTTP)."""
        host = self.local_host
        return (
            f"triton://{host}:{self.grpc_port}/{model}",
            f"triton+http://{host}:{self.http_port}/{model}",
        )

    @property
    def metrics_url(self) -> str:
        """Triton's Prometheus endpoint, for a client on this machine."""
        return f"http://{self.local_host}:{self.metrics_port}/metrics"


def server_environment() -> dict[str, str]:
    """The environment of the server process (see the module docstring)."""
    distribution = require("pytriton.utils.distribution")
    env = dict(os.environ)
    libraries = [str(sysconfig.get_config_var("LIBDIR")), str(distribution.get_libs_path())]
    if env.get("LD_LIBRARY_PATH"):
        libraries.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(libraries)
    package_parent = str(Path(fnet_deploy.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(
        [package_parent, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    return env


class TritonServer:
    """One ``tritonserver`` process.

    Args:
        models: the model repository; backends: the backend directory (as
            :func:`~fnet_deploy.serving.repository.write_repository` returns them).
        endpoints: where it listens.
        log: where its own output goes (a file; read back for the message when it fails).
    """

    def __init__(self, models: Path, backends: Path, endpoints: Endpoints, log: Path) -> None:
        self.models = models
        self.backends = backends
        self.endpoints = endpoints
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def command(self) -> list[str]:
        """The server's command line."""
        distribution = require("pytriton.utils.distribution")
        binary = Path(distribution.get_root_module_path()) / "tritonserver" / "bin" / "tritonserver"
        ends = self.endpoints
        return [
            str(binary),
            f"--model-repository={self.models}",
            f"--backend-directory={self.backends}",
            f"--grpc-address={ends.address}",
            f"--grpc-port={ends.grpc_port}",
            f"--http-address={ends.address}",
            f"--http-port={ends.http_port}",
            f"--metrics-address={ends.address}",
            f"--metrics-port={ends.metrics_port}",
            f"--exit-timeout-secs={STOP_GRACE_S}",
            "--strict-readiness=true",
        ]

    def start(self) -> None:
        """Start the process (it is ready once :meth:`wait_ready` returns)."""
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            self.command(),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=server_environment(),
            start_new_session=True,  # a Ctrl-C in the terminal reaches us, and we stop it
        )

    def wait_ready(self, model: str, timeout_s: float, stopping: Callable[[], bool]) -> None:
        """Return once ``model`` is ready.

        Raises:
            FnetError: the server exited, or was not ready within ``timeout_s`` (one line, with
                the server's own last error line), or ``stopping()`` turned true.
        """
        client_module = require("tritonclient.http")
        host = (
            "127.0.0.1" if self.endpoints.address in ("0.0.0.0", "::") else self.endpoints.address
        )
        client = client_module.InferenceServerClient(f"{host}:{self.endpoints.http_port}")
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                code = self.process.poll() if self.process is not None else 1
                if code is not None:
                    raise FnetError(f"the Triton server exited ({code}): {self.last_error()}")
                with contextlib.suppress(Exception):
                    if client.is_server_ready() and client.is_model_ready(model):
                        return
                if stopping():
                    raise FnetError("stopped while the Triton server was starting")
                if time.monotonic() > deadline:
                    raise FnetError(
                        f"the Triton server was not ready after {timeout_s:g} s: "
                        f"{self.last_error()}"
                    )
                time.sleep(READY_POLL_S)
        finally:
            client.close()

    def last_error(self) -> str:
        """The server's last line that reports an error (its log tail when none does)."""
        with contextlib.suppress(OSError):
            lines = [
                line.strip()
                for line in self.log.read_text(errors="replace").splitlines()
                if line.strip()
            ]
            errors = [line for line in lines if line.startswith("E") or "error" in line.lower()]
            if errors or lines:
                return (errors or lines)[-1][:300]
        return f"see {self.log}"

    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int | None:
        """SIGTERM: the server finishes the requests in flight (up to :data:`STOP_GRACE_S`),
        then exits; killed if it does not. Returns its exit code."""
        process = self.process
        try:
            if process is None:
                return None
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(STOP_GRACE_S + 10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            return process.returncode
        finally:
            if self._log_file is not None:
                self._log_file.close()
