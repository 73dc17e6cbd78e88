"""A small RTSP server on loopback that plays real frames as a live camera would, for the soak test.

It speaks just enough RTSP (RFC 2326: OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN) for
FFmpeg's client, the one OpenCV's ``rtsp://`` sources use, and sends each frame as baseline JPEG
in RTP packets (RFC 2435, payload type 26) interleaved on the RTSP connection (RTP over TCP; a
client asking for UDP is told 461 and FFmpeg then asks for TCP). Frames go out on a wall-clock
tick shared by every server made with the same ``epoch``, so two servers (visible and infrared)
send the same scene moment at the same time, as two synchronised cameras do. :meth:`stop` drops
every connection and the listening socket (the camera dies); :meth:`start` on the same port brings
it back.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

RTP_JPEG = 26
CLOCK_HZ = 90_000
CHUNK = 1400
"""JPEG payload bytes per RTP packet (an Ethernet-sized packet, as cameras send)."""


@dataclass(frozen=True)
class RtpJpeg:
    """One frame as RFC 2435 carries it: the scan data and the two quantisation tables."""

    width: int
    height: int
    tables: bytes
    scan: bytes


def encode_frame(image: np.ndarray, quality: int = 90) -> RtpJpeg:
    """Encode an H x W (grey) or H x W x 3 (BGR) uint8 image for RTP/JPEG.

    H and W must be multiples of 8 (RFC 2435 sends the size in 8-pixel units); grey images are
    sent as colour (RFC 2435 has no one-component type).
    """
    height, width = image.shape[:2]
    if height % 8 or width % 8:
        raise ValueError(f"frame size {width}x{height} is not a multiple of 8")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    params = [
        cv2.IMWRITE_JPEG_QUALITY,
        quality,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
    ]
    ok, data = cv2.imencode(".jpg", image, params)
    if not ok:
        raise ValueError("OpenCV could not encode the frame as JPEG")
    return _split_jpeg(data.tobytes(), width, height)


def _split_jpeg(jpeg: bytes, width: int, height: int) -> RtpJpeg:
    """Take the quantisation tables and the entropy-coded scan out of a baseline JPEG file."""
    tables: dict[int, bytes] = {}
    pos = 2  # after SOI
    while pos < len(jpeg):
        marker = jpeg[pos + 1]
        length = struct.unpack(">H", jpeg[pos + 2 : pos + 4])[0]
        segment = jpeg[pos + 4 : pos + 2 + length]
        if marker == 0xDB:  # DQT: one or more (precision/id, 64 values) tables
            for start in range(0, len(segment), 65):
                if segment[start] >> 4:
                    raise ValueError("16-bit quantisation tables cannot be sent")
                tables[segment[start] & 0x0F] = segment[start + 1 : start + 65]
        elif marker in (0xC1, 0xC2, 0xDD):
            raise ValueError(f"JPEG marker FF{marker:02X}: not baseline without restarts")
        elif marker == 0xDA:  # SOS: the scan runs to the EOI at the end of the file
            end = len(jpeg) - 2 if jpeg[-2:] == b"\xff\xd9" else len(jpeg)
            return RtpJpeg(width, height, tables[0] + tables[1], jpeg[pos + 2 + length : end])
        pos += 2 + length
    raise ValueError("no scan in the JPEG data")


def rtp_packets(frame: RtpJpeg, sequence: int, timestamp: int, ssrc: int) -> list[bytes]:
    """The RTP packets of one frame (sequence numbers from ``sequence``; marker on the last)."""
    packets = []
    offset = 0
    scan = frame.scan
    while offset < len(scan):
        chunk = scan[offset : offset + CHUNK]
        last = offset + len(chunk) >= len(scan)
        header = struct.pack(
            ">BBHII",
            0x80,
            (0x80 if last else 0) | RTP_JPEG,
            (sequence + len(packets)) & 0xFFFF,
            timestamp & 0xFFFFFFFF,
            ssrc,
        )
        # type 1 = 4:2:0; Q 255 = the tables travel in-band, in the first packet
        jpeg_header = struct.pack(
            ">I4B", offset & 0xFFFFFF, 1, 255, frame.width // 8, frame.height // 8
        )
        tables = struct.pack(">BBH", 0, 0, len(frame.tables)) + frame.tables if offset == 0 else b""
        packets.append(header + jpeg_header + tables + chunk)
        offset += len(chunk)
    return packets


class RtspServer:
    """Serves ``frames`` in a loop at ``fps`` on ``rtsp://127.0.0.1:<port>/<path>``.

    Args:
        frames: the sequence, already encoded (see :func:`encode_frame`).
        fps: frames per second of the wall-clock tick.
        epoch: ``time.monotonic()`` of tick 0; servers sharing it send frame ``k`` together.
        port: 0 picks a free port (kept across :meth:`stop` / :meth:`start`).
    """

    def __init__(self, frames: Sequence[RtpJpeg], fps: float, epoch: float, port: int = 0) -> None:
        self.frames = list(frames)
        self.fps = fps
        self.epoch = epoch
        self.port = port
        self.sent = 0
        self.sessions = 0
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def url(self, path: str) -> str:
        """The URL a client opens."""
        return f"rtsp://127.0.0.1:{self.port}/{path}"

    def start(self) -> None:
        """Listen (again) on the port."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(4)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stop.clear()
        self._spawn(self._accept, listener)

    def stop(self) -> None:
        """Drop every client and stop listening (a camera that loses power)."""
        with self._lock:  # no connection is taken on after this
            self._stop.set()
            connections = list(self._connections)
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = [t for t in self._threads if t.is_alive()]
        if self._threads:
            raise RuntimeError(f"RTSP server threads did not end: {self._threads}")

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._stop.is_set():
                    connection.close()
                    return
                self._connections.add(connection)
            self._spawn(self._serve, connection)

    def _serve(self, connection: socket.socket) -> None:
        send_lock = threading.Lock()
        playing = threading.Event()
        buffer = b""
        try:
            while not self._stop.is_set():
                data = connection.recv(4096)
                if not data:
                    return
                buffer += data
                while True:
                    if buffer[:1] == b"$":  # RTCP from the client, interleaved: skip it
                        if len(buffer) < 4:
                            break
                        size = 4 + struct.unpack(">H", buffer[2:4])[0]
                        if len(buffer) < size:
                            break
                        buffer = buffer[size:]
                        continue
                    head, sep, rest = buffer.partition(b"\r\n\r\n")
                    if not sep:
                        break
                    lines = head.decode("latin-1").split("\r\n")
                    headers = dict(
                        (k.strip().lower(), v.strip())
                        for k, _, v in (line.partition(":") for line in lines[1:])
                    )
                    body_size = int(headers.get("content-length", "0"))
                    if len(rest) < body_size:
                        break
                    buffer = rest[body_size:]
                    reply = self._reply(lines[0], headers, playing)
                    with send_lock:
                        connection.sendall(reply)
                    if lines[0].startswith("PLAY") and not playing.is_set():
                        playing.set()
                        self._spawn(self._play, connection, send_lock)
                    if lines[0].startswith("TEARDOWN"):
                        return
        except OSError:
            return
        finally:
            with self._lock:
                self._connections.discard(connection)
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def _reply(self, request: str, headers: dict[str, str], playing: threading.Event) -> bytes:
        method, _, rest = request.partition(" ")
        url = rest.rpartition(" ")[0]
        fields = [f"CSeq: {headers.get('cseq', '0')}"]
        body = ""
        status = "200 OK"
        if method == "OPTIONS":
            fields.append("Public: OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN")
        elif method == "DESCRIBE":
            body = (
                "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=soak\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                f"m=video 0 RTP/AVP {RTP_JPEG}\r\na=rtpmap:{RTP_JPEG} JPEG/{CLOCK_HZ}\r\n"
                f"a=framerate:{self.fps:g}\r\na=control:track0\r\n"
            )
            fields += [
                f"Content-Base: {url.rstrip('/')}/",
                "Content-Type: application/sdp",
                f"Content-Length: {len(body)}",
            ]
        elif method == "SETUP":
            if "interleaved" not in headers.get("transport", ""):
                return f"RTSP/1.0 461 Unsupported Transport\r\n{fields[0]}\r\n\r\n".encode()
            fields += [
                "Session: 5eed;timeout=60",
                "Transport: RTP/AVP/TCP;unicast;interleaved=0-1",
            ]
            self.sessions += 1
        elif method in ("PLAY", "GET_PARAMETER", "TEARDOWN"):
            fields.append("Session: 5eed")
        else:
            status = "405 Method Not Allowed"
        return (
            f"RTSP/1.0 {status}\r\n" + "".join(f + "\r\n" for f in fields) + "\r\n" + body
        ).encode()

    def _play(self, connection: socket.socket, send_lock: threading.Lock) -> None:
        period = 1.0 / self.fps
        tick = int((time.monotonic() - self.epoch) / period) + 1
        sequence = 0
        ssrc = 0x50A4
        while not self._stop.is_set():
            if self._stop.wait(max(0.0, self.epoch + tick * period - time.monotonic())):
                return
            frame = self.frames[tick % len(self.frames)]
            packets = rtp_packets(frame, sequence, round(tick * period * CLOCK_HZ), ssrc)
            sequence += len(packets)
            data = b"".join(b"$\x00" + struct.pack(">H", len(p)) + p for p in packets)
            try:
                with send_lock:
                    connection.sendall(data)
            except OSError:
                return
            with self._lock:
                self.sent += 1
            tick = max(tick + 1, int((time.monotonic() - self.epoch) / period) + 1)
