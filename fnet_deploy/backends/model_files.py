"""Checks of a model file that run before anything is loaded, so that a wrong path or a broken
file is refused in one line before any work (or progress line) starts.

:func:`check_model_file` refuses a missing file, a folder, a symlink loop, an empty file and, for
``.onnx``, a file that is not a protobuf ``ModelProto`` with a graph: it walks the top-level
fields of the message (a handful: versions, producer, the graph, opset imports, metadata),
skipping each field's bytes but the metadata's, so it reads a few hundred bytes of any model,
with no package needed. It returns that metadata (what ``fnet-deploy export`` records: the
precision, the weights' sha256), which tells what a model needs before it is loaded.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path
from typing import BinaryIO

from fnet_deploy.helpers.errors import InputError

_ONNX_GRAPH_FIELD = 7
"""``ModelProto.graph``'s field number (onnx.proto)."""
_ONNX_METADATA_FIELD = 14
"""``ModelProto.metadata_props``' field number: ``StringStringEntryProto`` {1: key, 2: value}."""
_WIRE_VARINT, _WIRE_FIXED64, _WIRE_LENGTH, _WIRE_FIXED32 = 0, 1, 2, 5


def check_model_file(path: Path, suffixes: tuple[str, ...]) -> dict[str, str]:
    """Refuse a model path that cannot be a model file, before any model is loaded; return an
    ONNX model's metadata (empty for other files).

    Args:
        path: the model file.
        suffixes: the model types known (lower case, with the dot), named when ``path`` has
            another suffix.

    Raises:
        InputError: a symlink loop, a folder, an unknown suffix, not found, another kind of
            non-file, unreadable, empty, or (``.onnx``) not a readable ONNX model.
    """
    try:
        info: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise InputError(path, "is a symlink loop (a link that leads back to itself)") from None
        raise InputError(path, f"cannot read the model file ({err.strerror or err})") from None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise InputError(path, f"is a folder, expected a model file ({', '.join(suffixes)})")
    if path.suffix.lower() not in suffixes:
        raise InputError(
            path, f"unknown model type '{path.suffix}' (expected one of {', '.join(suffixes)})"
        )
    if info is None:
        raise InputError(path, "model file not found")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(path, "is not a regular file, expected a model file")
    if info.st_size == 0:
        raise InputError(path, "empty file, expected a model file")
    if path.suffix.lower() != ".onnx":
        return {}
    metadata: dict[str, str] = {}
    try:
        with open(path, "rb") as handle:
            problem = onnx_structure_problem(handle, info.st_size, metadata)
    except OSError as err:
        raise InputError(path, f"cannot read the model file ({err.strerror or err})") from None
    if problem is not None:
        raise InputError(path, f"not a readable ONNX model ({problem})")
    return metadata


def onnx_structure_problem(
    handle: BinaryIO, size: int, metadata: dict[str, str] | None = None
) -> str | None:
    """What makes the bytes of ``handle`` (``size`` long) not an ONNX ``ModelProto`` with a
    graph, or ``None``: an invalid field tag or wire type, a field running past the end, or no
    graph field. Only the top-level fields are walked; their contents are skipped, except the
    metadata entries, which go into ``metadata`` when given."""
    has_graph = False
    while handle.tell() < size:
        at = handle.tell()
        tag = _varint(handle)
        if tag is None:
            return f"truncated field tag at byte {at}"
        field, wire = tag >> 3, tag & 7
        if field == 0:
            return f"field number 0 at byte {at}"
        if wire == _WIRE_VARINT:
            if _varint(handle) is None:
                return f"truncated number at byte {at}"
            continue
        if wire == _WIRE_LENGTH:
            length = _varint(handle)
            if length is None or handle.tell() + length > size:
                return f"field {field} at byte {at} runs past the end of the file"
            has_graph = has_graph or field == _ONNX_GRAPH_FIELD
            if field == _ONNX_METADATA_FIELD and metadata is not None:
                _metadata_entry(handle.read(length), metadata)
            else:
                handle.seek(length, os.SEEK_CUR)
            continue
        width = {_WIRE_FIXED64: 8, _WIRE_FIXED32: 4}.get(wire)
        if width is None:
            return f"invalid wire type {wire} at byte {at}"
        if handle.tell() + width > size:
            return f"field {field} at byte {at} runs past the end of the file"
        handle.seek(width, os.SEEK_CUR)
    return None if has_graph else "no graph in the file"


def _metadata_entry(data: bytes, metadata: dict[str, str]) -> None:
    """Add one ``StringStringEntryProto`` (key 1, value 2) to ``metadata``; an entry that does
    not parse is left out (ONNX Runtime, which loads the model, is the judge of its content)."""
    fields: dict[int, str] = {}
    handle = io.BytesIO(data)
    while handle.tell() < len(data):
        tag = _varint(handle)
        length = _varint(handle) if tag is not None and tag & 7 == _WIRE_LENGTH else None
        if tag is None or length is None or handle.tell() + length > len(data):
            return
        fields[tag >> 3] = handle.read(length).decode("utf-8", "replace")
    if 1 in fields:
        metadata[fields[1]] = fields.get(2, "")


def _varint(handle: BinaryIO) -> int | None:
    """A protobuf varint read from ``handle``, or ``None`` at the end of the file or after 10
    bytes (longer than any 64-bit value)."""
    value = 0
    for shift in range(0, 70, 7):
        byte = handle.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
    return None
