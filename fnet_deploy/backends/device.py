"""Device names, parsed once for every backend: ``cpu``, ``cuda``, ``cuda:N``, ``ort-trt[:N]``.

``--device`` means the same thing everywhere: where the model computes. PyTorch runs on ``cpu``
and ``cuda[:N]``; ONNX Runtime also takes ``ort-trt[:N]`` (its TensorRT execution provider on
GPU N, named apart from the ``tensorrt`` backend of native engines); a TensorRT engine runs on
``cuda[:N]`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fnet_deploy.helpers.errors import FnetError

if TYPE_CHECKING:  # torch is imported by the functions that make torch devices
    import torch


@dataclass(frozen=True)
class Device:
    """A parsed device name.

    Attributes:
        kind: ``cpu``, ``cuda`` or ``ort-trt``.
        index: the GPU's index (0 when the name gave none; 0 for ``cpu``).
    """

    kind: str
    index: int = 0

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"{self.kind}:{self.index}"

    @property
    def is_gpu(self) -> bool:
        """Whether the model computes on a GPU."""
        return self.kind != "cpu"

    def as_torch(self) -> torch.device:
        """The PyTorch device of the processor it names (``ort-trt:N`` is ``cuda:N``); not
        checked against this machine (:func:`torch_device` does that)."""
        import torch

        return torch.device("cuda", self.index) if self.is_gpu else torch.device("cpu")


ANY_KIND: tuple[str, ...] = ("cpu", "cuda", "ort-trt")
"""Every kind some backend runs on."""


def parse_device(
    text: str, kinds: tuple[str, ...] = ("cpu", "cuda"), who: str = "PyTorch"
) -> Device:
    """Parse ``text`` (``cpu``, ``cuda``, ``cuda:N``, ``ort-trt``, ``ort-trt:N``).

    Args:
        text: the device name as the user wrote it.
        kinds: the kinds the caller can run on.
        who: what runs on it, for the message (``PyTorch``, ``onnxruntime``, ``TensorRT``).

    Raises:
        FnetError: a name that is not one of ``kinds`` (one line naming ``--device``).
    """
    kind, colon, index = text.strip().lower().partition(":")
    valid = kind in kinds and (not colon or (kind != "cpu" and index.isdigit()))
    if not valid:
        expected = ", ".join(k if k == "cpu" else f"{k}[:N]" for k in kinds)
        raise FnetError(f"--device {text!r}: unknown device ({who} runs on {expected})")
    return Device(kind, int(index) if colon else 0)


def torch_device(text: str) -> torch.device:
    """The PyTorch device for ``text`` (``cpu`` / ``cuda[:N]``), checked against this machine.

    Raises:
        FnetError: an unknown name, or CUDA asked for where there is none.
    """
    import torch

    device = parse_device(text)
    if device.kind == "cuda":
        if not torch.cuda.is_available():
            raise FnetError(f"--device {text}: CUDA is not available on this machine (use cpu)")
        if device.index >= torch.cuda.device_count():
            raise FnetError(
                f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return torch.device("cuda", device.index)
    return torch.device("cpu")


def cuda_index(text: str) -> int:
    """The GPU index of a TensorRT device (``cuda`` / ``cuda:N``).

    Raises:
        FnetError: any other name.
    """
    return parse_device(text, ("cuda",), "TensorRT").index
