"""Triton Inference Server backend: FNet served by a (remote or local) Triton server.

``--model triton://HOST:PORT/MODEL`` talks gRPC (Triton's port 8001 by default),
``triton+http://HOST:PORT/MODEL`` HTTP (port 8000). The server runs the model (an exported
repository from ``fnet-deploy export --triton-repo``, or any model with the same tensors);
:class:`TritonRunner` sends the named inputs ``ir``, ``vis`` (N x 1 x H x W float32) and reads
``fused``. ``tritonclient`` (extra ``serve``) is imported when the runner activates.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from fnet_deploy.backends.base import INPUT_NAMES, OUTPUT_NAME, BackendUnavailable, Runner
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.helpers.optional import require

Protocol = Literal["grpc", "http"]
SCHEMES: dict[str, Protocol] = {"triton": "grpc", "triton+http": "http"}
_URI = re.compile(r"^(?P<scheme>[a-z+]+):/{1,2}(?P<host>[^/:]*)(?::(?P<port>[^/]*))?(?P<rest>.*)$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def is_triton_uri(text: str) -> bool:
    """Whether ``text`` names a Triton model (``triton:`` or ``triton+http:``)."""
    scheme, colon, _ = text.partition(":")
    return bool(colon) and scheme.lower() in SCHEMES


RETRY_FIRST_S = 0.5
"""Seconds before the first new try at a server that could not be reached."""
RETRY_MAX_S = 8.0
"""Longest wait between tries (the backoff of lost cameras)."""
_UNREACHABLE = (
    "unavailable",
    "connection refused",
    "failed to connect",
    "connection reset",
    "broken pipe",
    "socket closed",
    "connect call failed",
    "timed out",
    "no available versions",
    "unknown model",
)
"""Words of a failure to reach the server or its model (one that is stopping or starting: a
model missing at activation is refused there)."""


def _unreachable(err: BaseException) -> bool:
    """Whether ``err`` says the server could not be reached (rather than that it failed the
    request): a refused or dropped connection, gRPC's UNAVAILABLE, a timeout, a model that is
    being unloaded or not loaded yet."""
    if isinstance(err, (ConnectionError, TimeoutError)):
        return True
    status = getattr(err, "status", None)
    text = f"{status() if callable(status) else status or ''} {err}".lower()
    return any(word in text for word in _UNREACHABLE)


@dataclass(frozen=True)
class TritonUri:
    """A parsed ``triton://HOST:PORT/MODEL`` (gRPC) or ``triton+http://HOST:PORT/MODEL``."""

    protocol: Protocol
    host: str
    port: int
    model: str

    @property
    def url(self) -> str:
        """``HOST:PORT``, as tritonclient takes it."""
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        scheme = "triton" if self.protocol == "grpc" else "triton+http"
        return f"{scheme}://{self.url}/{self.model}"

    @classmethod
    def parse(cls, text: str) -> TritonUri:
        """Parse a URI; one slash after the scheme is taken as two (``pathlib`` folds ``//``).

        Raises:
            FnetError: an unknown scheme, no host, a missing or out-of-range port, or no model
                name (one line naming ``--model``).
        """
        form = "triton://HOST:PORT/MODEL or triton+http://HOST:PORT/MODEL"
        match = _URI.match(text)
        text = re.sub(r"^([A-Za-z+]+):/(?!/)", r"\1://", text)  # as the user typed it
        scheme = match["scheme"].lower() if match else ""
        if match is None or scheme not in SCHEMES:
            raise FnetError(f"--model {text}: not a Triton model URI (expected {form})")
        if not match["host"]:
            raise FnetError(f"--model {text}: no host (expected {form})")
        port_text = match["port"]
        if port_text is None or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise FnetError(f"--model {text}: the port must be a number 1-65535 (expected {form})")
        model = match["rest"].removeprefix("/")
        if not _MODEL_NAME.match(model):
            raise FnetError(f"--model {text}: no model name after HOST:PORT/ (expected {form})")
        return cls(SCHEMES[scheme], match["host"], int(port_text), model)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class TritonRunner(Runner):
    """Runs FNet on a Triton server.

    Args:
        uri: the server and model.
        timeout_s: seconds a connection or request may take before it is an error.
    """

    name = "triton"

    def __init__(self, uri: TritonUri, timeout_s: float = 30.0) -> None:
        super().__init__()
        self.uri = uri
        self.timeout_s = timeout_s
        self._backoff = 0.0
        self._retry_at = 0.0
        self._client: Any = None
        self._module: Any = None

    def _activate(self) -> None:
        """Connect, check that the server is live and the model ready, read its tensors.

        Raises:
            FnetError: an unreachable server, a missing model, or a model whose inputs or
                output are not ``ir``, ``vis`` -> ``fused`` (N x 1 x H x W, FP32).
        """
        module = require(f"tritonclient.{self.uri.protocol}")
        where = f"--model {self.uri}"
        if self.uri.protocol == "grpc":
            client = module.InferenceServerClient(self.uri.url)
        else:
            client = module.InferenceServerClient(
                self.uri.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s
            )
        bound = {"client_timeout": self.timeout_s} if self.uri.protocol == "grpc" else {}
        try:
            live = client.is_server_live(**bound)
        except Exception as err:  # any failure to connect is the same to a user
            client.close()
            raise FnetError(
                f"{where}: no Triton server answers at {self.uri.url} ({_first_line(err)})"
            ) from None
        try:
            if not live:
                raise FnetError(f"{where}: the Triton server at {self.uri.url} is not live")
            if not client.is_model_ready(self.uri.model):
                raise FnetError(
                    f"{where}: the server has no ready model {self.uri.model!r} "
                    "(is it in the model repository, and did it load?)"
                )
            metadata = self._metadata(client)
            config = self._config(client)
        except Exception:
            client.close()
            raise
        self._check_tensors(metadata, where)
        max_batch = int(config.get("max_batch_size", 0))
        self.max_batch = max_batch if max_batch > 0 else None
        self._client, self._module = client, module

    def _metadata(self, client: Any) -> dict[str, Any]:
        if self.uri.protocol == "grpc":
            return dict(client.get_model_metadata(self.uri.model, as_json=True))
        return dict(client.get_model_metadata(self.uri.model))

    def _config(self, client: Any) -> dict[str, Any]:
        if self.uri.protocol == "grpc":
            return dict(client.get_model_config(self.uri.model, as_json=True)["config"])
        return dict(client.get_model_config(self.uri.model))

    @staticmethod
    def _check_tensors(metadata: dict[str, Any], where: str) -> None:
        """Refuse a model whose tensors are not FNet's (names, FP32, N x 1 x H x W).

        Raises:
            FnetError: what differs, in one line.
        """
        inputs = {t["name"]: t for t in metadata.get("inputs", [])}
        outputs = {t["name"]: t for t in metadata.get("outputs", [])}
        if set(inputs) != set(INPUT_NAMES) or OUTPUT_NAME not in outputs:
            raise FnetError(
                f"{where}: the model's tensors are inputs {sorted(inputs)} -> outputs "
                f"{sorted(outputs)}; FNet's are inputs ['ir', 'vis'] -> output 'fused'"
            )
        for tensor in [*inputs.values(), outputs[OUTPUT_NAME]]:
            shape = [int(d) for d in tensor["shape"]]
            if tensor["datatype"] != "FP32" or len(shape) != 4 or shape[1] not in (1, -1):
                raise FnetError(
                    f"{where}: tensor {tensor['name']} is {tensor['datatype']} {shape}; FNet's "
                    "are FP32 N x 1 x H x W"
                )

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One request: ``ir``, ``vis`` (N x 1 x H x W float32) -> ``fused`` (same shape).

        A server that cannot be reached is tried again with backoff (:data:`RETRY_FIRST_S`
        doubling to :data:`RETRY_MAX_S`): until the next try is due, calls fail at once, without
        a request, so that a stream goes on reading (and counting) its frames.

        Raises:
            BackendUnavailable: the server cannot be reached (now, or at the last try).
            FnetError: the server refused or failed the request.
        """
        now = time.monotonic()
        if now < self._retry_at:
            raise BackendUnavailable(
                f"triton {self.uri}: the server is unreachable; next try in "
                f"{self._retry_at - now:.1f} s"
            )
        inputs = []
        for name in INPUT_NAMES:
            array = np.ascontiguousarray(feed[name], dtype=np.float32)
            tensor = self._module.InferInput(name, list(array.shape), "FP32")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        requested = [self._module.InferRequestedOutput(OUTPUT_NAME)]
        try:
            if self.uri.protocol == "grpc":
                result = self._client.infer(
                    self.uri.model, inputs, outputs=requested, client_timeout=self.timeout_s
                )
            else:
                result = self._client.infer(self.uri.model, inputs, outputs=requested)
            fused = result.as_numpy(OUTPUT_NAME)
        except Exception as err:  # server, network and decoding errors alike
            if _unreachable(err):
                self._backoff = min(max(2 * self._backoff, RETRY_FIRST_S), RETRY_MAX_S)
                self._retry_at = time.monotonic() + self._backoff
                raise BackendUnavailable(
                    f"triton {self.uri}: the server is unreachable ({_first_line(err)}); "
                    f"next try in {self._backoff:g} s"
                ) from None
            raise FnetError(f"triton {self.uri}: inference failed ({_first_line(err)})") from None
        self._backoff, self._retry_at = 0.0, 0.0
        return {OUTPUT_NAME: np.array(fused, dtype=np.float32)}  # writable (torch wraps it)

    def _deactivate(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = self._module = None
