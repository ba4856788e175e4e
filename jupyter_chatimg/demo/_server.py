"""The HTTP side of the demo: a threaded stdlib server speaking OpenAI's wire format.

HTTP/1.1 with keep-alive; streamed replies use chunked transfer encoding, so a
``cut`` fault is seen by clients as an incomplete body, as with a real proxy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import select
import socket
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from ._answer import ChatAnswer, answer_chat, answer_images
from ._batches import BatchAPI
from ._faults import FaultCounter, Faults, FaultSyntaxError, injected_error, parse_faults
from ._images_reply import error_payload, stream_events
from ._models import DEMO_MODELS, Reply
from ._protocol import (
    DONE,
    ContentEncoder,
    Envelope,
    choice,
    dumps,
    error_body,
    images_field,
    model_object,
    models_list,
    tool_call_deltas,
)
from ._request import ChatRequest, DemoHTTPError

MAX_BODY = 64 * 1024 * 1024
MAX_FILES = 64
_DISCONNECT = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)
_CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
_MODELS_PATHS = ("/v1/models", "/models")
_IMAGES_PATHS = (
    "/v1/images/generations",
    "/images/generations",
    "/v1/images/edits",
    "/images/edits",
)
_LEAK_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)
_HTML_PAGE = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx (demo fault)</center>\r\n"
    "</body>\r\n</html>\r\n"
)


class _Abort(Exception):
    """Stop answering this request and close the connection."""


class _StreamEnd(Exception):
    """The stream was ended on purpose (a fault): the connection may stay open."""


class DemoHTTPServer(ThreadingHTTPServer):
    """The listening server; its handler threads are daemons."""

    daemon_threads = True
    # socketserver's default backlog of 5 drops SYNs when a batch opens 8+ connections at once.
    request_queue_size = 128
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], batch_delay: float = 0.0) -> None:
        super().__init__(address, _Handler)
        self.closing = threading.Event()
        self.faults = FaultCounter()
        self.leaks: list[str] = []
        self.files: OrderedDict[str, bytes] = OrderedDict()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.batch_api = BatchAPI(self.server_address[1], self.publish, self.faults, batch_delay)

    def track(self, conn: socket.socket, add: bool) -> None:
        """Remember open connections so ``close_all`` can end hung or slow ones."""
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def close_all(self) -> None:
        """Shut down every open client connection."""
        self.closing.set()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)

    def publish(self, png: bytes, mode: str) -> str:
        """Keep ``png`` for ``GET /v1/files/NAME`` (the last ``MAX_FILES``); returns its URL.

        ``mode`` ``404`` gives a URL that is not served; ``notimage`` one that serves HTML
        labelled image/png."""
        name = hashlib.sha256(png).hexdigest()[:20] + ".png"
        if mode == "404":
            name = "gone-" + name
        elif mode == "notimage":
            name = "fake-" + name
        with self._lock:
            if mode != "404":
                self.files[name] = (
                    png if mode == "ok" else b"<html><body>not an image</body></html>"
                )
                self.files.move_to_end(name)
                while len(self.files) > MAX_FILES:
                    self.files.popitem(last=False)
        return f"http://127.0.0.1:{self.server_address[1]}/v1/files/{name}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Client disconnects are normal; anything else gets one line, never a traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, _DISCONNECT) or self.closing.is_set():
            return
        print(f"jupyter_chatimg demo server: {type(exc).__name__}: {exc}", file=sys.stderr)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "jupyter-chatimg-demo/0.1"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 300  # idle keep-alive connections
    server: DemoHTTPServer

    # -- plumbing -----------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: never log requests (they may carry keys or private images)."""

    def _send(
        self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, dumps(obj), "application/json", headers)

    def _send_error(self, err: DemoHTTPError) -> None:
        body = error_body(err.message, err.type, err.code, err.param)
        self._send(err.status, body, "application/json", err.headers)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                total += size
                if total > MAX_BODY:
                    self.close_connection = True
                    raise DemoHTTPError(413, "The request body is too large (limit 64 MB).")
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        if length is None:
            if self.command == "POST":
                self.close_connection = True
                raise DemoHTTPError(411, "Send a Content-Length header with the request body.")
            return b""
        try:
            n = int(length)
        except ValueError:
            self.close_connection = True
            raise DemoHTTPError(400, "The Content-Length header is not a number.") from None
        if n > MAX_BODY:
            self.close_connection = True
            raise DemoHTTPError(413, "The request body is too large (limit 64 MB).")
        return self.rfile.read(n)

    def _wait(self, seconds: float) -> None:
        if self.server.closing.wait(seconds):
            raise _Abort

    def _hang(self) -> None:
        """Answer nothing until the client goes away or the server closes."""
        sock = self.connection
        while not self.server.closing.is_set():
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                try:
                    if not sock.recv(1, socket.MSG_PEEK):
                        break
                except OSError:
                    break
                self._wait(0.1)
        raise _Abort

    def end_headers(self) -> None:
        self._headers_sent = True
        super().end_headers()

    def _dispatch(self, method: str) -> None:
        self._headers_sent = False
        try:
            try:
                self._route(method)
            except DemoHTTPError as e:
                self._send_error(e)
            except FaultSyntaxError as e:
                self._send_error(DemoHTTPError(400, str(e), param="X-Demo-Fault"))
        except _StreamEnd:
            pass
        except (_Abort, *_DISCONNECT):
            self.close_connection = True
        except Exception as e:  # a bug: one line to the client and to stderr, no traceback
            self.close_connection = True
            msg = f"demo server bug: {type(e).__name__}: {e}"
            if not self.server.closing.is_set():
                print(f"jupyter_chatimg {msg}", file=sys.stderr)
            if not self._headers_sent:  # else the reply is cut: closing is all we can do
                with contextlib.suppress(OSError):
                    self._send(500, error_body(msg, "server_error", None), "application/json")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    # -- routing ------------------------------------------------------------------------

    def _route(self, method: str) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        body = self._read_body()
        header_spec = self.headers.get("X-Demo-Fault")
        if path.startswith("/v1/files/") and path.endswith(".png") and method == "GET":
            with self.server._lock:
                data = self.server.files.get(path.rsplit("/", 1)[1])
            if data is None:
                raise DemoHTTPError(404, "No such file (demo files are kept in memory only).")
            self._send(200, data, "image/png")
            return
        if path == "/leak":
            self.server.leaks.append(self.path)
            self._send(200, _LEAK_PNG, "image/png", {"Cache-Control": "no-store"})
            return
        suffix = _model_suffix(body) if method == "POST" and path in _CHAT_PATHS else None
        faults = parse_faults(header_spec, suffix)
        if not self.server.faults.active(faults):
            faults = Faults()
        self._before_headers(faults)
        ctype, query = self.headers.get("Content-Type"), urlsplit(self.path).query
        api = self.server.batch_api.route(method, path, query, ctype, body, faults)
        if api is not None:  # /v1/files, /v1/batches
            self._send(api.status, api.body, api.content_type)
            return
        if path in _CHAT_PATHS:
            if method != "POST":
                raise DemoHTTPError(
                    405,
                    f"Use POST for {path}.",
                    headers={"Allow": "POST"},
                    code="method_not_allowed",
                )
            self._chat(body, faults)
        elif path in _IMAGES_PATHS and method == "POST":
            self._images(path, body, faults)
        elif path in _MODELS_PATHS:
            if method != "GET":
                raise DemoHTTPError(405, f"Use GET for {path}.", headers={"Allow": "GET"})
            self._send_json(200, models_list(DEMO_MODELS))
        elif path.startswith(tuple(p + "/" for p in _MODELS_PATHS)) and method == "GET":
            model = path.rsplit("/", 1)[1]
            if model not in DEMO_MODELS:
                raise DemoHTTPError(
                    404,
                    f"The model '{model}' does not exist. Available models: "
                    f"{', '.join(DEMO_MODELS)}.",
                    param="model",
                    code="model_not_found",
                )
            self._send_json(200, model_object(model))
        elif path in ("/", "/v1") and method == "GET":
            text = (
                "jupyter_chatimg offline demo server (OpenAI-compatible).\n"
                f"Models: {', '.join(DEMO_MODELS)}. Endpoints: GET /v1/models, "
                "POST /v1/chat/completions, POST /v1/images/generations, POST /v1/images/edits.\n"
            )
            self._send(200, text.encode(), "text/plain; charset=utf-8")
        else:
            raise DemoHTTPError(404, f"Invalid URL ({method} {path}).", code="not_found")

    def _before_headers(self, f: Faults) -> None:
        if f.delay:
            self._wait(f.delay)
        if f.hang:
            self._hang()
        if f.html is not None:
            reason = self.responses.get(f.html, ("Error",))[0]
            page = _HTML_PAGE.format(code=f.html, reason=reason).encode()
            self._send(f.html, page, "text/html", _retry_headers(f))
            raise _StreamEnd
        if f.status is not None:
            raise injected_error(f.status, _retry_headers(f))

    # -- chat ---------------------------------------------------------------------------

    def _chat(self, body: bytes, faults: Faults) -> None:
        ans = answer_chat(body, faults, self.server.server_address[1], self.server.publish)
        if ans.req.stream:
            with contextlib.suppress(_StreamEnd):
                self._stream(ans.req, ans.env, ans.replies, ans.usage, faults, ans.headers)
        else:
            self._complete(ans, faults)

    def _complete(self, ans: ChatAnswer, f: Faults) -> None:
        # the body comes from ChatAnswer.completion(), which batch lines use too
        self._send_whole(dumps(ans.completion()), f, ans.headers)

    def _send_whole(self, body: bytes, f: Faults, headers: dict[str, str]) -> None:
        """A whole JSON reply, with the faults that apply to one (error, malformed, cut)."""
        if f.error is not None or f.event_error is not None:
            body = error_body(
                _fault_message(f.error or f.event_error or 0), "server_error", "demo_fault"
            )
        elif f.malformed is not None:
            body = body[: max(1, len(body) // 2)]
        elif f.cut is not None or f.eof is not None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            raise _Abort
        self._send(200, body, "application/json", headers)

    def _stream(
        self,
        req: ChatRequest,
        env: Envelope,
        replies: list[Reply],
        use: dict[str, Any],
        f: Faults,
        headers: dict[str, str],
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        out = _ChunkedWriter(self.wfile, batch=bool(f.long) and not f.slow)
        for i, r in enumerate(replies):
            content = None if r.tool_calls else ""
            out.event(
                env.chunk([choice(i, {"role": "assistant", "content": content, "refusal": None})])
            )
        enc = ContentEncoder(env, req.n)
        sent = 0
        malformed_done = False
        steps = max(len(r.tokens) for r in replies)
        for step in range(steps):
            for i, r in enumerate(replies):
                if step >= len(r.tokens):
                    continue
                self._fault_point(out, f, sent)
                if f.malformed is not None and sent == f.malformed and not malformed_done:
                    malformed_done = True
                    out.event(
                        b'data: {"id":"' + env.id.encode() + b'","choices":[{"delta":{"con\n\n'
                    )
                if f.ping:
                    out.event(b": ping\n\n")
                if f.slow and sent:
                    out.flush()
                    self._wait(f.slow)
                out.event(enc.event(i, r.tokens[step]))
                sent += 1
        for i, r in enumerate(replies):
            for delta in tool_call_deltas(r.tool_calls):
                self._fault_point(out, f, sent)
                out.event(env.chunk([choice(i, delta)]))
                sent += 1
        self._fault_point(out, f, sent, end=True)
        for i, r in enumerate(replies):
            if r.images:
                delta = {"role": "assistant", "content": "", "images": images_field(r.images)}
                out.event(env.chunk([choice(i, delta)]))
        for i, r in enumerate(replies):
            out.event(env.chunk([choice(i, {}, r.finish_reason)]))
        if req.include_usage:
            out.event(env.chunk([], use))
        out.event(DONE)
        out.end()

    def _fault_point(
        self,
        out: _ChunkedWriter,
        f: Faults,
        sent: int,
        end: bool = False,
        payload: Callable[[str], bytes] | None = None,
    ) -> None:
        def due(n: int | None) -> bool:
            return n is not None and (sent == n or (end and sent < n))

        if due(f.cut):
            out.flush()
            raise _Abort
        if due(f.eof):
            out.end()
            raise _StreamEnd
        if due(f.error) or due(f.event_error):
            message = _fault_message(sent)
            err = payload(message) if payload else error_body(message, "server_error", "demo_fault")
            prefix = b"event: error\n" if due(f.event_error) else b""
            out.event(prefix + b"data: " + err + b"\n\n")
            out.end()
            raise _StreamEnd

    # -- images -------------------------------------------------------------------------

    def _images(self, path: str, body: bytes, faults: Faults) -> None:
        edit = path.endswith("/edits")
        ans = answer_images(body, self.headers.get("Content-Type"), edit=edit)
        if not ans.job.stream:
            # the body comes from ImagesAnswer.body(), which batch lines use too
            reply = ans.body(self.server.publish, faults.image_url or "ok")
            self._send_whole(dumps(reply), faults, ans.headers)
            return
        with contextlib.suppress(_StreamEnd):
            self._send_events(stream_events(ans.job, ans.rendered), faults, ans.headers)

    def _send_events(self, events: list[bytes], f: Faults, headers: dict[str, str]) -> None:
        """A server-sent event stream of ``events`` (no ``[DONE]``, as the Images API),
        with the stream faults counted in events."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        out = _ChunkedWriter(self.wfile, batch=False)
        for sent, event in enumerate(events):
            if sent == len(events) - 1:  # a fault due later fires before the final event
                self._fault_point(out, f, sent, end=True, payload=error_payload)
            else:
                self._fault_point(out, f, sent, payload=error_payload)
            if f.malformed is not None and sent == f.malformed:
                out.event(b'data: {"type":"image_generation.partial_image","b64_json":"iVBO\n\n')
            if f.ping:
                out.event(b": ping\n\n")
            if f.slow and sent:
                out.flush()
                self._wait(f.slow)
            out.event(event)
        out.end()


class _ChunkedWriter:
    """Writes SSE events as HTTP chunks: one per event, or batched for long replies."""

    def __init__(self, wfile: Any, batch: bool) -> None:
        self._w = wfile
        self._batch = batch
        self._buf: list[bytes] = []
        self._size = 0

    def event(self, data: bytes) -> None:
        self._buf.append(data)
        self._size += len(data)
        if not self._batch or self._size >= 16384:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        data = b"".join(self._buf)
        self._buf.clear()
        self._size = 0
        self._w.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end(self) -> None:
        self.flush()
        self._w.write(b"0\r\n\r\n")


def _fault_message(n: int) -> str:
    return f"demo fault: injected error after {n} tokens"


def _retry_headers(f: Faults) -> dict[str, str]:
    headers = {}
    if f.retry_after is not None:
        headers["Retry-After"] = f.retry_after
    if f.retry_after_ms is not None:
        headers["retry-after-ms"] = str(f.retry_after_ms)
    return headers


def _model_suffix(body: bytes) -> str | None:
    try:
        model = json.loads(body).get("model")
    except (ValueError, AttributeError):
        return None
    if isinstance(model, str) and "@" in model:
        return model.split("@", 1)[1]
    return None


class DemoServer:
    """A running demo server: ``.url`` (ends in ``/v1``), ``.port``, ``.close()``.

    Use it as a context manager to close it on exit. ``.leaks`` lists the paths
    of requests to ``/leak`` (the URLs the ``mdinject`` fault plants in replies),
    so security tests can check that nothing fetched them.

    ``batch_delay`` is the seconds each batch line takes (settable while running);
    ``batches_created``, ``files_created`` and ``batch_answers`` count Batch API work.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        start: bool = True,
        batch_delay: float = 0.0,
    ) -> None:
        self._httpd = DemoHTTPServer((host, port), _check_delay(batch_delay))
        self.host = host
        self.port: int = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None
        self._closed = False
        self._close_lock = threading.Lock()
        if start:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.2},
                name=f"chatimg-demo-{self.port}",
                daemon=True,
            )
            self._thread.start()

    @property
    def url(self) -> str:
        """The base URL to give a client: ``http://127.0.0.1:PORT/v1``."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has run."""
        return self._closed

    @property
    def leaks(self) -> list[str]:
        """Paths (with query) of the requests made to ``/leak`` so far."""
        return list(self._httpd.leaks)

    @property
    def batch_delay(self) -> float:
        """Seconds each batch line takes (0: as fast as it can); applies to running batches."""
        return self._httpd.batch_api.batch_delay

    @batch_delay.setter
    def batch_delay(self, seconds: float) -> None:
        self._httpd.batch_api.batch_delay = _check_delay(seconds)

    @property
    def batches_created(self) -> int:
        """How many batches ``POST /v1/batches`` has created so far."""
        return self._httpd.batch_api.created

    @property
    def files_created(self) -> int:
        """How many files were stored so far (uploads plus batch output and error files)."""
        return self._httpd.batch_api.files.created

    @property
    def batch_answers(self) -> dict[str, int]:
        """How many times a batch line with each ``custom_id`` was answered, over all batches
        (custom ids only; no request content is kept): a resubmitted item shows 2."""
        return dict(self._httpd.batch_api.answered)

    def fault_hits(self, spec: str) -> int:
        """How many requests so far carried the fault ``spec`` (header and model suffix
        merged, header first): lets a test count a client's retries."""
        return self._httpd.faults.count(parse_faults(spec).spec)

    def serve_forever(self) -> None:
        """Serve in the calling thread (for ``start=False``) until ``close()``."""
        self._httpd.serve_forever(poll_interval=0.2)

    def close(self) -> None:
        """Stop serving, end open connections and release the port (idempotent)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._httpd.closing.set()
        self._httpd.batch_api.close()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.close_all()
        self._httpd.server_close()

    def __enter__(self) -> DemoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running"
        return f"<DemoServer {self.url} {state}>"


_singleton: DemoServer | None = None
_singleton_lock = threading.Lock()


def serve_demo(port: int = 0, batch_delay: float = 0.0) -> DemoServer:
    """Start a new demo server on 127.0.0.1 (``port=0``: a free port) in a daemon thread.

    ``batch_delay``: seconds each Batch API line takes, so a test can catch a batch running.
    """
    return DemoServer(port, batch_delay=batch_delay)


def _check_delay(seconds: float) -> float:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not 0 <= seconds <= 600
    ):
        raise ValueError(f"batch_delay must be a number of seconds from 0 to 600, got {seconds!r}")
    return float(seconds)


def ensure_demo_server() -> DemoServer:
    """The process-wide demo server, started on first use (thread-safe) and reused."""
    global _singleton
    with _singleton_lock:
        if _singleton is None or _singleton.closed:
            _singleton = DemoServer(0)
        return _singleton
