"""Loopback HTTP servers for tests: replay bodies in small random pieces, record requests.

``ReplayServer`` is a real threaded HTTP/1.1 server on 127.0.0.1. Each response
is queued per method and path (a queue; the last entry repeats) and its body is
sent in random pieces of 1-9 bytes (seeded), one ``send`` and flush per piece,
with TCP_NODELAY, so the client sees the cuts TCP can make. Every request that
arrives is recorded (method, path, query, headers, body, JSON) before it is
answered, so a test can assert what reached the server once the reply is in.

    with ReplayServer() as srv:
        srv.add("POST", "/v1/chat/completions", body=sse_bytes, seed=3)
        client(base_url=srv.url)                       # http://127.0.0.1:PORT/v1
        assert srv.requests[0].json["stream"] is True

Faults: ``cut_after=N`` closes the connection after N body bytes (``reset=True``
sends a TCP RST instead of FIN); ``hang_after=N`` sends N body bytes and then
nothing until the server closes; ``first_byte_delay`` waits before the status
line; ``delay`` sleeps between pieces.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import struct
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = ["RecordedRequest", "ReplayServer", "Reply", "pieces", "read_headers_file"]

Framing = Literal["length", "chunked", "close"]

_TYPES = {".sse": "text/event-stream", ".json": "application/json", ".png": "image/png"}
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection"}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None when it is empty or not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


@dataclass
class Reply:
    """One queued response and how to deliver it."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunk_sizes: tuple[int, int] = (1, 9)
    seed: int | None = 0
    delay: float = 0.0
    first_byte_delay: float = 0.0
    framing: Framing | None = None
    cut_after: int | None = None
    reset: bool = False
    hang_after: int | None = None

    def resolved_framing(self) -> Framing:
        """``chunked`` for event streams, else ``length``, unless set."""
        if self.framing is not None:
            return self.framing
        content_type = {k.lower(): v for k, v in self.headers.items()}.get("content-type", "")
        return "chunked" if content_type.startswith("text/event-stream") else "length"


Responder = Callable[[RecordedRequest], Reply]


def pieces(data: bytes, chunk_sizes: tuple[int, int] = (1, 9), seed: int | None = 0) -> list[bytes]:
    """Split ``data`` into random pieces with sizes in ``chunk_sizes`` (inclusive)."""
    low, high = chunk_sizes
    rng = random.Random(seed)
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        size = rng.randint(low, high)
        out.append(data[pos : pos + size])
        pos += size
    return out


def read_headers_file(path: Path) -> tuple[int, dict[str, str]]:
    """Parse a ``*.headers.txt`` fixture: status line, then ``name: value`` lines."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    return status, headers


def _not_queued(request: RecordedRequest) -> Reply:
    message = f"replay server: nothing queued for {request.method} {request.path}"
    error = {"message": message, "type": "not_found", "param": None, "code": None}
    body = json.dumps({"error": error}).encode()
    return Reply(status=404, headers={"Content-Type": "application/json"}, body=body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = RecordedRequest(
            method=self.command,
            path=parts.path,
            query=parts.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        self.server.owner._record(request)
        reply = self.server.owner._next_reply(request)
        self._send(reply)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _any

    def _send(self, reply: Reply) -> None:
        closing = self.server.owner._closing
        if reply.first_byte_delay and closing.wait(reply.first_byte_delay):
            return
        framing = reply.resolved_framing()
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        if framing == "length":
            self.send_header("Content-Length", str(len(reply.body)))
        elif framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        if framing == "close" or reply.cut_after is not None:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.flush()
        if self.command == "HEAD":
            return
        stop_at, fault = (
            (reply.hang_after, "hang") if reply.hang_after is not None else (reply.cut_after, "cut")
        )
        body = reply.body if stop_at is None else reply.body[:stop_at]
        for index, piece in enumerate(pieces(body, reply.chunk_sizes, reply.seed)):
            if reply.delay and index and closing.wait(reply.delay):
                return
            self._write(piece, framing)
        if stop_at is not None:
            self._fault(fault, reply)
        elif framing == "chunked":
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def _write(self, piece: bytes, framing: Framing) -> None:
        if not piece:
            return
        if framing == "chunked":
            piece = b"%x\r\n%s\r\n" % (len(piece), piece)
        self.wfile.write(piece)
        self.wfile.flush()

    def _fault(self, fault: str, reply: Reply) -> None:
        if fault == "hang":
            self.server.owner._closing.wait()
        elif reply.reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops SYNs when a batch opens 8+ connections at once.
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, owner: ReplayServer) -> None:
        self.owner = owner
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._sockets.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class ReplayServer:
    """A threaded loopback HTTP server that replays queued responses (see module doc)."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._queues: dict[tuple[str, str], list[Reply | Responder]] = {}
        self._lock = threading.Condition()
        self._closing = threading.Event()
        self._server = _Server(self)
        self.port: int = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base_url}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def __enter__(self) -> ReplayServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url_for(self, path: str) -> str:
        """The absolute URL of ``path`` (``/img/a.png`` -> ``http://127.0.0.1:PORT/img/a.png``)."""
        return self.base_url + path

    def add(
        self,
        method: str,
        path: str,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        body: bytes | str = b"",
        **delivery: Any,
    ) -> Reply:
        """Queue a response for ``method path`` (full path, e.g. ``/v1/chat/completions``).

        ``delivery`` takes the other ``Reply`` fields: ``chunk_sizes``, ``seed``,
        ``delay``, ``first_byte_delay``, ``framing``, ``cut_after``, ``reset``,
        ``hang_after``.
        """
        data = body.encode("utf-8") if isinstance(body, str) else body
        reply = Reply(status=status, headers=dict(headers or {}), body=data, **delivery)
        self._queue(method, path).append(reply)
        return reply

    def add_json(
        self, method: str, path: str, obj: Any, status: int = 200, **delivery: Any
    ) -> Reply:
        """Queue a JSON response."""
        headers = {"Content-Type": "application/json"}
        return self.add(method, path, status, headers, json.dumps(obj).encode(), **delivery)

    def add_sse(self, method: str, path: str, body: bytes | str, **delivery: Any) -> Reply:
        """Queue a ``text/event-stream`` response (chunked, like real servers)."""
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        return self.add(method, path, 200, headers, body, **delivery)

    def add_file(
        self,
        fixture: Path,
        method: str = "POST",
        path: str = "/v1/chat/completions",
        **delivery: Any,
    ) -> Reply:
        """Queue a wire fixture; status and headers come from ``<stem>.headers.txt`` if present.

        The content type follows the suffix (``.sse`` -> ``text/event-stream``).
        """
        content_type = _TYPES.get(fixture.suffix, "application/octet-stream")
        status, headers = 200, {"Content-Type": content_type}
        headers_file = fixture.with_name(fixture.stem + ".headers.txt")
        if headers_file.exists():
            status, headers = read_headers_file(headers_file)
        return self.add(method, path, status, headers, fixture.read_bytes(), **delivery)

    def add_handler(self, method: str, path: str, responder: Responder) -> None:
        """Queue a function that builds the ``Reply`` from the request it answers."""
        self._queue(method, path).append(responder)

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """The recorded requests for ``path`` (and ``method`` if given), in order."""
        with self._lock:
            return [r for r in self.requests if r.path == path and method in (None, r.method)]

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests have arrived; raise TimeoutError if not."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(
                    f"replay server got {len(self.requests)} requests, expected {count} "
                    f"within {timeout} s"
                )
            return list(self.requests)

    def close(self) -> None:
        """Stop serving, release hanging replies and close every connection."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._server.shutdown()
        self._server.drop_connections()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __iter__(self) -> Iterator[RecordedRequest]:
        return iter(list(self.requests))

    def _queue(self, method: str, path: str) -> list[Reply | Responder]:
        with self._lock:
            return self._queues.setdefault((method.upper(), path), [])

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)
            self._lock.notify_all()

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            queue = self._queues.get((request.method, request.path))
            if not queue:
                entry: Reply | Responder = _not_queued(request)
            else:
                entry = queue.pop(0) if len(queue) > 1 else queue[0]
        return entry if isinstance(entry, Reply) else entry(request)
