"""A loopback HTTP server for benchmarks: serves prepared bodies as fast as it can, or paced.

Unlike the tests' ``ReplayServer`` (which cuts bodies into 1-9 byte pieces to
exercise parsers), this one writes in large pieces so that the client, not the
server, is what a benchmark measures. Every POST gets the reply that
``set_reply`` last queued (the request body is read and dropped).

    with BenchServer() as srv:
        srv.set_reply(sse_body(tokens))              # as fast as it can
        srv.set_reply(events, rate=500)              # 500 events per second
        sent = srv.set_reply(events, pauses={1: 0.3})  # sent[1]: when event 1 left
        srv.url                                      # http://127.0.0.1:PORT/v1
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from socketserver import StreamRequestHandler, ThreadingTCPServer
from typing import Any

__all__ = ["BenchServer", "completion_body", "sse_body", "sse_events"]

WRITE = 64 * 1024


def sse_events(tokens: Sequence[str]) -> list[bytes]:
    """One ``data:`` event per token, as OpenAI streams them, plus finish and ``[DONE]``."""
    out = [
        b'data: {"id":"b","object":"chat.completion.chunk","model":"bench","choices":'
        b'[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
    ]
    for tok in tokens:
        chunk = {
            "id": "b",
            "object": "chat.completion.chunk",
            "model": "bench",
            "choices": [{"index": 0, "delta": {"content": tok}, "finish_reason": None}],
        }
        out.append(b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n")
    out.append(
        b'data: {"id":"b","object":"chat.completion.chunk","model":"bench","choices":'
        b'[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    )
    out.append(b"data: [DONE]\n\n")
    return out


def sse_body(tokens: Sequence[str]) -> bytes:
    """The whole event stream for ``tokens``."""
    return b"".join(sse_events(tokens))


def completion_body(content: str) -> bytes:
    """A non-streamed chat completion whose message content is ``content``."""
    obj = {
        "id": "b",
        "object": "chat.completion",
        "model": "bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass
class _Reply:
    events: list[bytes]
    content_type: str
    rate: float | None
    pauses: dict[int, float] = field(default_factory=dict)
    sent_at: dict[int, float] = field(default_factory=dict)


class _Handler(StreamRequestHandler):
    server: _TCPServer

    def handle(self) -> None:
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while self._one():
            pass

    def _one(self) -> bool:
        length = 0
        first = self.rfile.readline()
        if not first:
            return False
        while True:
            line = self.rfile.readline()
            if not line or line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length:
            self.rfile.read(length)
        reply = self.server.reply
        chunked = reply.content_type.startswith("text/event-stream")
        head = [b"HTTP/1.1 200 OK", b"Content-Type: " + reply.content_type.encode()]
        if chunked:
            head.append(b"Transfer-Encoding: chunked")
        else:
            head.append(b"Content-Length: %d" % sum(len(e) for e in reply.events))
        self.wfile.write(b"\r\n".join(head) + b"\r\n\r\n")
        self.wfile.flush()
        send = self.connection.sendall
        if not chunked:
            for event in reply.events:
                for i in range(0, len(event), WRITE):
                    send(event[i : i + WRITE])
            return True
        if reply.rate is None:
            cuts = sorted(i for i in reply.pauses if 0 < i < len(reply.events))
            for a, b in zip([0, *cuts], [*cuts, len(reply.events)], strict=True):
                if a in reply.pauses:
                    time.sleep(reply.pauses[a])
                    reply.sent_at[a] = time.time()
                body = b"".join(reply.events[a:b])
                for i in range(0, len(body), WRITE):
                    piece = body[i : i + WRITE]
                    send(b"%x\r\n%s\r\n" % (len(piece), piece))
        else:
            start = time.perf_counter()
            i = 0
            n = len(reply.events)
            while i < n:
                wait = start + i / reply.rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                # every event that is due by now goes in one write
                j = i + 1
                now = time.perf_counter() - start
                while j < n and j / reply.rate <= now:
                    j += 1
                piece = b"".join(reply.events[i:j])
                send(b"%x\r\n%s\r\n" % (len(piece), piece))
                i = j
        send(b"0\r\n\r\n")
        return True


class _TCPServer(ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    reply: _Reply

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that closes early (a bare loop stops at [DONE]) is not news


class BenchServer:
    """A threaded server on 127.0.0.1 answering every request with the queued reply."""

    def __init__(self) -> None:
        self._server = _TCPServer(("127.0.0.1", 0), _Handler)
        self._server.reply = _Reply([b"data: [DONE]\n\n"], "text/event-stream", None)
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def set_reply(
        self,
        body: bytes | list[bytes],
        *,
        content_type: str = "text/event-stream",
        rate: float | None = None,
        pauses: dict[int, float] | None = None,
    ) -> dict[int, float]:
        """Answer with ``body`` (a list: one item per event).

        ``rate``: events per second (else as fast as possible); ``pauses``: seconds
        to wait before event i. Returns a dict that will hold ``time.time()`` when
        each paused event was sent.
        """
        events = body if isinstance(body, list) else [body]
        reply = _Reply(list(events), content_type, rate, dict(pauses or {}))
        self._server.reply = reply
        return reply.sent_at

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> BenchServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
