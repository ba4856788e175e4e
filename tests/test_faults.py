"""The fault table: every fault survived with nothing lost (DESIGN.md sections 4 and 8).

Each scenario runs through ``%%chatimg`` in a real IPython shell, as a user
types it, against a loopback server that replays its bodies in 1-9 byte
pieces. For each one the test checks the one line shown (text, a single line,
no key), the retries made (the server's count, and the delays the client asked
for, recorded by a sleep hook so that the table stays fast), the partial text
kept on screen and in ``_`` (``ChatResult.error`` set), and that the next
request succeeds at once. Tests at the end wait for real: the retry delays
measured at the server, and the demo server's own fault injection.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from html import unescape
from typing import Any

import pytest
from _ipython import ipython_shell  # noqa: F401  (fixture)
from _servers import RecordedRequest, ReplayServer, Reply, _Server

import jupyter_chatimg as ci
from jupyter_chatimg import _http, _retry
from jupyter_chatimg._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    RateLimitError,
    ServerError,
    StreamError,
)

SECRET = "sk-test-fault-table-secret-0123456789abcdef"
PATH = "/v1/chat/completions"
TOKENS = ["Alpha", " beta", " gamma", " delta"]
WHOLE = "".join(TOKENS)
OK_TEXT = "All good after the fault."
JITTER_0 = (0.375, 0.5)  # BACKOFF_BASE * 2**0 * [0.75, 1]
JITTER_1 = (0.75, 1.0)


# -- bodies -------------------------------------------------------------------


def chunk(text: str) -> str:
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}) + "\n\n"


FINISH = 'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'


def sse(
    tokens: list[str] = TOKENS, *, finish: bool = True, after: int = -1, insert: str = ""
) -> str:
    """An event stream of ``tokens``; ``insert`` goes after token number ``after``."""
    out = [chunk(t) + (insert if i == after else "") for i, t in enumerate(tokens)]
    return "".join(out) + (FINISH if finish else "")


def upto(n: int) -> int:
    """Bytes of the stream up to and including token ``n`` (0-based), plus a few of the next."""
    return len(sse(TOKENS[: n + 1], finish=False).encode()) + 5


def error_body(message: str, kind: str = "invalid_request_error") -> str:
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}})


def completion(text: str) -> str:
    message = {"role": "assistant", "content": text}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return json.dumps({"object": "chat.completion", "model": "m", "choices": [choice]})


SSE = {"Content-Type": "text/event-stream"}
JSON = {"Content-Type": "application/json"}
HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n"
    "</body>\r\n</html>\r\n"
)


def status(code: int, message: str = "", **headers: str) -> dict[str, Any]:
    text = message or f"injected {code}"
    kind = "rate_limit_error" if code == 429 else "server_error"
    return {"status": code, "headers": {**JSON, **headers}, "body": error_body(text, kind)}


def stream(body: str, **delivery: Any) -> dict[str, Any]:
    return {"status": 200, "headers": SSE, "body": body, **delivery}


OK = stream(sse())
"""The whole reply, after the faults of a scenario that ends well."""


def kept_below(limit: int, tokens: list[str]) -> str:
    """At most the text kept when a stream of ``tokens`` passes ``limit`` bytes."""
    seen, kept = 0, []
    for token in tokens:
        seen += len(chunk(token))
        if seen > limit:
            break
        kept.append(token)
    return "".join(kept)


WORDS = [f" word{i}" for i in range(200)]


# -- the table ------------------------------------------------------------------


@dataclass
class Fault:
    """One row: what the server does, and what the user must see."""

    replies: list[dict[str, Any]]
    requests: int
    """How many requests the server must see (1 + retries)."""
    delays: list[tuple[float, float]] = field(default_factory=list)
    message: str | None = None
    """A regex the one error line must match in full (None: no error)."""
    error: type[BaseException] | None = None
    partial: str | None = None
    """The text in ``_`` and on screen (None: all of it if the scenario ends well, else none)."""
    exact: bool = True
    """False when the partial text may be shorter (a TCP reset can drop received data)."""
    options: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    endpoint: str = "server"
    """'server', or 'refused' / 'backlog' for an endpoint that never answers."""


HOST = r"127\.0\.0\.1:\d+"
GAVE_UP = r" \(gave up after {} tries\)"

FAULTS: dict[str, Fault] = {
    # Retried before the first byte, with the server's advice or backoff; then success.
    "429 retry-after-ms": Fault(
        [status(429, "slow down", **{"retry-after-ms": "250"}), OK], 2, [(0.25, 0.25)]
    ),
    "503 retry-after seconds": Fault([status(503, **{"Retry-After": "2"}), OK], 2, [(2.0, 2.0)]),
    "500 retry-after HTTP date": Fault([status(500), OK], 2, [(1.9, 3.05)]),  # date filled in below
    "502 no advice: jittered backoff": Fault([status(502), OK], 2, [JITTER_0]),
    "408 then 409: growing backoff": Fault([status(408), status(409), OK], 3, [JITTER_0, JITTER_1]),
    "429 retry-after above the cap: backoff": Fault(
        [status(429, **{"Retry-After": "600"}), OK], 2, [JITTER_0]
    ),
    "503 unreadable retry-after: backoff": Fault(
        [status(503, **{"Retry-After": "soon"}), OK], 2, [JITTER_0]
    ),
    "retry-after-ms wins over retry-after": Fault(
        [status(503, **{"retry-after-ms": "100", "Retry-After": "7"}), OK], 2, [(0.1, 0.1)]
    ),
    "500 then a cut stream: retried, then partial kept": Fault(
        [status(500), stream(sse(), cut_after=upto(1))],
        2,
        [JITTER_0],
        rf"the connection to {HOST} broke mid-reply \(RemoteProtocolError\); the partial reply "
        r"is kept - run the cell again for a whole one",
        StreamError,
        "Alpha beta",
    ),
    # Retried until the budget is spent: one line says so.
    "503 three times: gave up": Fault(
        [status(503, "overloaded")] * 3,
        3,
        [JITTER_0, JITTER_1],
        r"HTTP 503: overloaded" + GAVE_UP.format(3),
        ServerError,
    ),
    "proxy HTML 502 page": Fault(
        [{"status": 502, "headers": {"Content-Type": "text/html"}, "body": HTML_502}] * 2,
        2,
        [JITTER_0],
        r"HTTP 502: the server answered with a non-JSON error page: 502 Bad Gateway"
        + GAVE_UP.format(2),
        ServerError,
        config={"max_retries": 1},
    ),
    # Not retried.
    "400 not retried": Fault(
        [status(400, "messages: too long")], 1, [], r"HTTP 400: messages: too long", BadRequestError
    ),
    "401 not retried": Fault(
        [status(401, "Incorrect API key provided")],
        1,
        [],
        r"HTTP 401: Incorrect API key provided \(check the key in CHATIMG_API_KEY\)",
        AuthenticationError,
    ),
    "403 not retried": Fault(
        [status(403, "not allowed")],
        1,
        [],
        r"HTTP 403: not allowed \(check the key in CHATIMG_API_KEY\)",
        AuthenticationError,
    ),
    "404 not retried": Fault(
        [status(404, "The model `nope` does not exist")],
        1,
        [],
        r"HTTP 404: The model `nope` does not exist \(check the model name \('nope'\) and the "
        r"base URL; %chatimg_models lists the models\)",
        NotFoundError,
        options="--model nope",
    ),
    # No answer at all.
    "connection refused: retried, then one line": Fault(
        [],
        0,
        [JITTER_0],
        rf"cannot reach {HOST} \(connection refused\); check the base URL and that the server "
        r"is running" + GAVE_UP.format(2),
        APIConnectionError,
        config={"max_retries": 1},
        endpoint="refused",
    ),
    "connect timeout": Fault(
        [],
        0,
        [],
        rf"{HOST} did not answer within 0.3 s; check that the server is up, or raise --timeout",
        APITimeoutError,
        config={"max_retries": 0, "connect_timeout": 0.3, "timeout": 1.0},
        endpoint="backlog",
    ),
    "server never answers (hang before the first byte)": Fault(
        [stream(sse(), first_byte_delay=30)] * 2,
        2,
        [JITTER_0],
        rf"{HOST} did not answer within 0.3 s; check that the server is up, or raise --timeout"
        + GAVE_UP.format(2),
        APITimeoutError,
        config={"max_retries": 1, "timeout": 0.3},
    ),
    # After the first byte: never retried, the partial text is kept.
    "cut stream (FIN)": Fault(
        [stream(sse(), cut_after=upto(1))],
        1,
        [],
        rf"the connection to {HOST} broke mid-reply \(RemoteProtocolError\); the partial reply "
        r"is kept - run the cell again for a whole one",
        StreamError,
        "Alpha beta",
    ),
    "cut stream (RST)": Fault(
        [stream(sse(), cut_after=upto(2), reset=True)],
        1,
        [],
        rf"the connection to {HOST} broke mid-reply \((ReadError|RemoteProtocolError)\); the "
        r"partial reply is kept - run the cell again for a whole one",
        StreamError,
        "Alpha beta gamma",
        exact=False,
    ),
    "stream ends cleanly without [DONE] or finish_reason": Fault(
        [stream(sse(finish=False))],
        1,
        [],
        r"the connection closed before the reply finished \(no \[DONE\]\); the partial reply "
        r"is kept - run the cell again for a whole one",
        StreamError,
        WHOLE,
    ),
    "server stops sending mid-reply (hang)": Fault(
        [stream(sse(), hang_after=upto(1))],
        1,
        [],
        rf"no data from {HOST} for 0.4 s mid-reply; the partial reply is kept \(raise --timeout "
        r"for slow models\)",
        StreamError,
        "Alpha beta",
        config={"timeout": 0.4},
    ),
    '{"error": ...} data event': Fault(
        [stream(sse(after=1, insert="data: " + error_body("upstream overloaded") + "\n\n"))],
        1,
        [],
        r"the server reported an error mid-reply: upstream overloaded",
        StreamError,
        "Alpha beta",
    ),
    "event: error": Fault(
        [stream(sse(after=2, insert='event: error\ndata: {"message": "model crashed"}\n\n'))],
        1,
        [],
        r"the server reported an error mid-reply: model crashed",
        StreamError,
        "Alpha beta gamma",
    ),
    'finish_reason: "error"': Fault(
        [
            stream(
                sse(TOKENS[:2], finish=False)
                + 'data: {"choices":[{"index":0,"delta":{},"finish_reason":"error",'
                '"error":{"message":"provider failed"}}]}\n\n'
            )
        ],
        1,
        [],
        r"the server ended the reply with an error: provider failed",
        StreamError,
        "Alpha beta",
    ),
    "n=2: one choice finished, then the connection ended": Fault(
        [
            stream(
                sse(finish=False)
                + 'data: {"choices":[{"index":1,"delta":{"content":"Other"}}]}\n\n'
                + 'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
            )
        ],
        1,
        [],
        r"the connection closed before the reply finished \(no \[DONE\]\); the partial reply "
        r"is kept - run the cell again for a whole one",
        StreamError,
        WHOLE,
        options="--n 2",
    ),
    "malformed chunk skipped, the rest kept": Fault(
        [stream(sse(after=1, insert='data: {"choices": [{"delta": {"content": "x"\n\n'))],
        1,
    ),
    "slow server works, just slowly": Fault(
        [stream(sse(), first_byte_delay=0.2, delay=0.003)], 1, config={"timeout": 2.0}
    ),
    "reply above max_reply_bytes is cut": Fault(
        [stream(sse(WORDS))],
        1,
        [],
        r"the reply passed the size limit of 800 bytes and was cut; raise "
        r"ChatImg.max_reply_bytes if you trust this endpoint",
        StreamError,
        kept_below(800, WORDS),
        exact=False,
        config={"max_reply_bytes": 800},
    ),
    "one endless line above max_reply_bytes is cut": Fault(
        [stream(chunk("Start.") + "data: " + "x" * 5000)],
        1,
        [],
        r"the reply passed the size limit of 800 bytes and was cut; raise "
        r"ChatImg.max_reply_bytes if you trust this endpoint",
        StreamError,
        "Start.",
        exact=False,
        config={"max_reply_bytes": 800},
    ),
    "not streamed: the body is cut": Fault(
        [{"status": 200, "headers": JSON, "body": completion("whole"), "cut_after": 30}],
        1,
        [],
        rf"the connection to {HOST} broke while reading the reply \(RemoteProtocolError\); "
        r"try again",
        APIConnectionError,
        options="--no-stream",
    ),
    'not streamed: 200 with {"error": ...}': Fault(
        [{"status": 200, "headers": JSON, "body": error_body("quota exceeded")}],
        1,
        [],
        r"HTTP 200: quota exceeded",
        APIError,
        options="--no-stream",
    ),
    "not streamed: declared length above the limit": Fault(
        [{"status": 200, "headers": JSON, "body": completion("x" * 3000)}],
        1,
        [],
        r"HTTP 200: the reply is 3.14 KB, above the limit of 2 KB; raise ChatImg.max_reply_bytes "
        r"if you trust this endpoint",
        APIError,
        options="--no-stream",
        config={"max_reply_bytes": 2000},
    ),
    "not streamed: a non-JSON 200 body": Fault(
        [{"status": 200, "headers": {"Content-Type": "text/html"}, "body": HTML_502}],
        1,
        [],
        rf"HTTP 200: the reply from {HOST} is not JSON: .*; check that the base URL points at an "
        r"OpenAI-compatible API",
        APIError,
        options="--no-stream",
    ),
}
_CONFIG_NAMES = ("max_retries", "timeout", "connect_timeout", "max_reply_bytes", "base_url")


def _ok_reply(srv: ReplayServer) -> None:
    srv.add_sse("POST", PATH, sse([OK_TEXT]))


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retry waits asked for by the client, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(_http, "DEFAULT_SLEEP", recorded.append)
    return recorded


@pytest.fixture
def shell(ipython_shell: Any) -> Iterator[Any]:
    yield ipython_shell
    for name in _CONFIG_NAMES:
        ipython_shell.run_line_magic("config", f"ChatImg.{name} = None")


@pytest.fixture
def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def backlog_port() -> Iterator[int]:
    """A port whose accept queue is full: a connect never completes (a connect timeout)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(4):
        sock = socket.socket()
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
        fillers.append(sock)
    try:
        yield port
    finally:
        for sock in [*fillers, listener]:
            sock.close()


def run_magic(shell: Any, capsys: pytest.CaptureFixture[str], cell: str) -> tuple[str, str]:
    capsys.readouterr()
    shell.run_cell(cell)
    captured = capsys.readouterr()
    return captured.out, captured.err


@pytest.fixture(autouse=True, scope="module")
def _quiet_servers() -> Iterator[None]:
    """The test servers' threads must not print "Broken pipe" when a client hangs up on
    purpose: stderr is what the user sees, and it is asserted on."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_Server, "handle_error", lambda self, request, address: None)
        yield


def one_error_line(out: str, err: str) -> str:
    lines = [ln for ln in (out + err).splitlines() if ln.startswith(("⚠ ", "chatimg: "))]
    assert len(lines) == 1, (out, err)
    return lines[0].split(" ", 1)[1]


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault(
    name: str,
    shell: Any,
    capsys: pytest.CaptureFixture[str],
    clean_env: pytest.MonkeyPatch,
    sleeps: list[float],
    request: pytest.FixtureRequest,
) -> None:
    fault = FAULTS[name]
    with ReplayServer() as srv:
        for reply in fault.replies:
            headers = dict(reply["headers"])
            if name == "500 retry-after HTTP date":
                headers["Retry-After"] = formatdate(time.time() + 3, usegmt=True)
            srv.add("POST", PATH, **{**reply, "headers": headers})
        _ok_reply(srv)
        clean_env.setenv("CHATIMG_BASE_URL", srv.url)
        clean_env.setenv("CHATIMG_API_KEY", SECRET)
        shell.run_line_magic("config", "ChatImg.max_retries = 2")
        for key, value in fault.config.items():
            shell.run_line_magic("config", f"ChatImg.{key} = {value!r}")
        base = ""
        if fault.endpoint != "server":
            port = request.getfixturevalue(f"{fault.endpoint}_port")
            base = f" --base-url http://127.0.0.1:{port}/v1"

        started = time.monotonic()
        out, err = run_magic(shell, capsys, f"%%chatimg{base} {fault.options}\nGo.")
        elapsed = time.monotonic() - started
        result = shell.user_ns["_"]

        # The retries: how many tries reached the server, and the waits asked for.
        assert len(srv.requests) == fault.requests
        assert len(sleeps) == len(fault.delays), sleeps
        for waited, (low, high) in zip(sleeps, fault.delays, strict=True):
            assert low - 1e-6 <= waited <= high + 1e-6, (sleeps, fault.delays)
        retry_lines = [ln for ln in out.splitlines() if "; retrying in " in ln]
        assert len(retry_lines) == len(fault.delays)
        # The key went to its endpoint and nowhere else.
        assert all(r.headers.get("authorization") == f"Bearer {SECRET}" for r in srv.requests)
        assert SECRET not in out + err + repr(result) + str(result.error)

        # The one line, the partial text on screen and in the result.
        assert isinstance(result, ci.ChatResult)
        expected = fault.partial
        if expected is None:
            expected = WHOLE if fault.message is None else ""
        shown = "\n".join(ln for ln in out.splitlines() if "; retrying in " not in ln)
        shown = shown.split("⚠")[0].strip()
        if fault.exact:
            assert result.text == expected and shown == expected.strip()
        else:
            assert expected.startswith(result.text) and shown == result.text.strip()
            if "size limit" in (fault.message or ""):
                assert result.text  # what came before the bound is kept
        assert "Traceback" not in out + err
        if fault.message is None:
            assert result.error is None and "⚠" not in out and not err
        else:
            assert isinstance(result.error, fault.error)  # type: ignore[arg-type]
            line = str(result.error)
            assert "\n" not in line and re.fullmatch(fault.message, line), line
            assert one_error_line(out, err) == line
        assert elapsed < 5, elapsed

        # The next request succeeds at once (the same shell, the same endpoint).
        sleeps.clear()
        shell.run_line_magic("config", "ChatImg.timeout = 5.0")
        out, err = run_magic(shell, capsys, "%%chatimg\nAgain.")
        after = shell.user_ns["_"]
        assert after.error is None and after.text == OK_TEXT, (out, err)
        assert OK_TEXT in out and not err and not sleeps


def test_at_least_twenty_scenarios() -> None:
    assert len(FAULTS) >= 20


def test_stream_error_from_chat_carries_the_partial(clean_env: pytest.MonkeyPatch) -> None:
    with ReplayServer() as srv:
        srv.add_sse("POST", PATH, sse(), cut_after=upto(2))
        srv.add_sse("POST", PATH, sse([OK_TEXT]))
        with pytest.raises(StreamError) as info:
            ci.chat("Go.", base_url=srv.url, display=False, max_retries=3)
        assert info.value.partial is not None
        assert info.value.partial.text == "Alpha beta gamma"
        assert info.value.partial.error is info.value
        assert len(srv.requests) == 1  # a reply that broke after its first byte is never re-sent
        assert ci.chat("Again.", base_url=srv.url, display=False).text == OK_TEXT


def test_rate_limit_error_carries_the_advice(clean_env: pytest.MonkeyPatch) -> None:
    with ReplayServer() as srv:
        srv.add("POST", PATH, **status(429, "slow down", **{"Retry-After": "120"}))
        with pytest.raises(RateLimitError) as info:
            ci.chat("Go.", base_url=srv.url, display=False, max_retries=0)
        assert info.value.retry_after == 120.0 and info.value.status == 429


# -- waiting for real ----------------------------------------------------------------


def _reply(spec: dict[str, Any]) -> Reply:
    return Reply(**{**spec, "body": spec["body"].encode()})


def _timed(srv: ReplayServer, replies: list[Reply]) -> list[float]:
    """Answer POSTs with ``replies`` in turn (the last repeats); return the arrival times."""
    times: list[float] = []
    queue = list(replies)

    def answer(request: RecordedRequest) -> Reply:
        times.append(time.monotonic())
        return queue.pop(0) if len(queue) > 1 else queue[0]

    srv.add_handler("POST", PATH, answer)
    return times


def test_retry_delays_are_really_waited(
    clean_env: pytest.MonkeyPatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_retry, "BACKOFF_BASE", 0.2)
    with ReplayServer() as srv:
        times = _timed(
            srv,
            [
                _reply(status(429, **{"retry-after-ms": "300"})),
                _reply(status(503)),
                _reply(OK),
            ],
        )
        result = ci.chat("Go.", base_url=srv.url, display=False, max_retries=2)
    assert result.text == WHOLE and len(times) == 3
    first, second = times[1] - times[0], times[2] - times[1]
    # Never early; late only by scheduling (generous bounds for a loaded machine).
    assert 0.3 <= first < 0.3 + 0.5, first
    assert 0.2 * 2 * 0.75 <= second < 0.4 + 0.5, second


def test_stop_ends_a_retry_wait_at_once(clean_env: pytest.MonkeyPatch) -> None:
    cancel = ci_cancel()
    with ReplayServer() as srv:
        srv.add("POST", PATH, **status(503, **{"Retry-After": "30"}))
        timer = _later(0.3, cancel.set)
        started = time.monotonic()
        with pytest.raises(StreamError, match=r"^stopped before the reply began$"):
            ci.chat("Go.", base_url=srv.url, display=False, max_retries=2, cancel=cancel)
        timer.join()
    assert time.monotonic() - started < 3


def ci_cancel() -> _http.Cancel:
    return _http.Cancel()


def _later(seconds: float, action: Callable[[], None]) -> Any:
    import threading

    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


@pytest.mark.parametrize(
    ("spec", "tries", "message"),
    [
        ("status=503;retry-after=0.1;times=2", 3, None),
        ("status=429;retry-after-ms=50;times=1", 2, None),
        ("cut=3", 1, r"the connection to .* broke mid-reply \(\w+\); the partial reply is kept"),
        ("error=2", 1, r"the server reported an error mid-reply: demo fault: injected error"),
        ("event-error=2", 1, r"the server reported an error mid-reply: demo fault: injected error"),
        ("html=502", 3, r"HTTP 502: the server answered with a non-JSON error page: "),
        ("malformed=2", 1, None),
    ],
)
def test_demo_server_faults(
    spec: str,
    tries: int,
    message: str | None,
    shell: Any,
    capsys: pytest.CaptureFixture[str],
    clean_env: pytest.MonkeyPatch,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The demo endpoint's fault injection, with real waits (kept short)."""
    monkeypatch.setattr(_retry, "BACKOFF_BASE", 0.02)
    server = ci.serve_demo()
    try:
        shell.run_line_magic("config", "ChatImg.max_retries = 2")
        tag = f"{spec};tag={time.monotonic_ns()}"
        out, err = run_magic(
            shell, capsys, f"%%chatimg --base-url {server.url} -m demo-vision@{tag}\nWhat is 2+3?"
        )
        result = shell.user_ns["_"]
        if message is None:
            assert result.error is None and "5" in result.text, (out, err)
            assert "⚠" not in out and not err
        else:
            line = str(result.error)
            assert re.match(message, line) and "\n" not in line, line
            assert one_error_line(out, err) == line
            if "cut" in spec or "error" in spec:
                # the terminal shows the partial text as plain text (no emphasis markers)
                shown = out.split("⚠")[0].strip()
                assert result.text and shown == result.text.replace("**", "").strip()
        assert len([ln for ln in out.splitlines() if "; retrying in " in ln]) == tries - 1
        out, err = run_magic(
            shell, capsys, f"%%chatimg --base-url {server.url} -m demo-vision\nWhat is 2+3?"
        )
        assert shell.user_ns["_"].error is None and not err
    finally:
        server.close()


# -- in a notebook: the partial text and the one line are what the saved output shows ----------

NOTEBOOK_FAULTS = {
    "cut": (stream(sse(), cut_after=upto(1)), "Alpha beta", "the connection to "),
    "error event": (
        stream(sse(after=2, insert="data: " + error_body("upstream overloaded") + "\n\n")),
        "Alpha beta gamma",
        "the server reported an error mid-reply: upstream overloaded",
    ),
    "401": (status(401, "Incorrect API key provided"), "", "HTTP 401: Incorrect API key provided"),
    "proxy page": (
        {"status": 502, "headers": {"Content-Type": "text/html"}, "body": HTML_502},
        "",
        "HTTP 502: the server answered with a non-JSON error page: 502 Bad Gateway",
    ),
}


def test_faults_in_a_notebook_keep_the_partial_text_on_screen(
    clean_env: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import nbformat
    from nbclient import NotebookClient

    servers = {name: ReplayServer() for name in NOTEBOOK_FAULTS}
    try:
        cells = ["%load_ext jupyter_chatimg\n%config ChatImg.max_retries = 0"]
        for name, (reply, _, _) in NOTEBOOK_FAULTS.items():
            servers[name].add("POST", PATH, **reply)
            cells.append(f"%%chatimg --base-url {servers[name].url}\nGo.")
            cells.append("print(repr(_.text), '|', _.error)")
        ok = ReplayServer()
        servers["ok"] = ok
        ok.add_sse("POST", PATH, sse([OK_TEXT]))
        cells.append(f"%%chatimg --base-url {ok.url}\nAgain.")
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        NotebookClient(
            nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    finally:
        for srv in servers.values():
            srv.close()

    for n, (name, (_, partial, message)) in enumerate(NOTEBOOK_FAULTS.items()):
        reply_cell, check_cell = nb.cells[1 + 2 * n], nb.cells[2 + 2 * n]
        (output,) = reply_cell.outputs
        html = output["data"]["text/html"]
        body, _, line = html.rpartition("<p><em>⚠ ")
        assert unescape(re.sub(r"<[^>]+>", "", body)).strip() == partial, name
        assert line.endswith("</em></p>\n") and line.count("\n") == 1, name
        assert message in unescape(line), name
        assert output["data"]["text/plain"].endswith("⚠ " + unescape(line[: -len("</em></p>\n")]))
        printed = check_cell.outputs[0]["text"]
        assert printed.startswith(f"{partial!r} | ") and message in printed, name
        assert all(o.output_type != "error" for o in reply_cell.outputs + check_cell.outputs)
    final = nb.cells[-1].outputs[0]["data"]["text/html"]
    assert final == f"<p>{OK_TEXT}</p>\n"


# -- issue 15 (5, 10): deadlines that cover the whole exchange; no raw bytes in a line ----


class Trickle:
    """A loopback server that answers every request with ``head`` one byte per ``pace``
    seconds, then ``tail`` the same way (for ever, when ``tail`` is a callable)."""

    def __init__(self, head: bytes, tail: Any = b"", pace: float = 0.2) -> None:
        import threading

        self.head, self.tail, self.pace = head, tail, pace
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import threading

        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            for byte in self.head:
                conn.sendall(bytes([byte]))
                time.sleep(self.pace)
            while not self._stop.is_set():
                piece = self.tail() if callable(self.tail) else self.tail
                if not piece:
                    return
                conn.sendall(piece)
                time.sleep(self.pace)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


def test_headers_sent_one_byte_at_a_time_cannot_hold_a_request(
    clean_env: pytest.MonkeyPatch,
) -> None:
    # Issue 15 (5): the read timeout restarts with every byte, so trickled headers held
    # chat() for as long as the server liked. The deadline now covers the headers.
    server = Trickle(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + b"a" * 200)
    try:
        started = time.monotonic()
        with pytest.raises(ci.APITimeoutError, match=r"did not answer within 1 s"):
            ci.chat("hi", base_url=server.url, timeout=1, connect_timeout=1, max_retries=0,
                    display=False)  # fmt: skip
        assert time.monotonic() - started < 4
    finally:
        server.close()


def test_an_image_download_trickling_its_headers_is_cut_at_its_deadline() -> None:
    # Issue 15 (5): the 30 s image limit did not cover response headers (150 s seen).
    from jupyter_chatimg._fetch import fetch_image

    server = Trickle(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Slow: " + b"a" * 200)
    try:
        started = time.monotonic()
        with pytest.raises(ci.ImageInputError, match=r"took longer than 1 s"):
            fetch_image(f"http://127.0.0.1:{server.port}/a.png", allow_private=True, timeout=1)
        assert time.monotonic() - started < 3
    finally:
        server.close()


def test_a_stream_of_comments_only_is_cut_and_keeps_its_text(
    clean_env: pytest.MonkeyPatch,
) -> None:
    # Issue 15 (5): a stream that sent only ": ping" comments was never cut.
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        b'data: {"choices":[{"index":0,"delta":{"content":"kept"}}]}\n\n'
    )
    server = Trickle(b"", tail=b"", pace=0.1)
    server.head = b""
    sent = iter([head])
    server.tail = lambda: next(sent, b": ping\n\n")
    try:
        started = time.monotonic()
        with pytest.raises(ci.StreamError, match=r"no data from 127\.0\.0\.1:\d+ for 1 s") as info:
            ci.chat("hi", base_url=server.url, timeout=1, max_retries=0, display=False)
        assert 1 <= time.monotonic() - started < 4
        assert info.value.partial is not None and info.value.partial.text == "kept"
    finally:
        server.close()


def test_a_binary_reply_after_a_redirect_names_the_host_and_prints_no_raw_bytes(
    clean_env: pytest.MonkeyPatch, replay_server: ReplayServer
) -> None:
    # Issue 15 (10): "HTTP 200: the reply from 127.0.0.1:P is not JSON: \x89PNG \x1a \x00..."
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(32)) * 4
    replay_server.add(
        "POST", "/v1/chat/completions", 307, {"Location": "/elsewhere/chat/completions"}, b""
    )
    replay_server.add(
        "POST", "/elsewhere/chat/completions", 200, {"Content-Type": "image/png"}, png
    )
    with pytest.raises(ci.APIError) as info:
        ci.chat("hi", base_url=replay_server.url, stream=False, max_retries=0, display=False)
    line = str(info.value)
    assert re.fullmatch(r"[\x20-\x7e…]+", line), repr(line)
    assert (
        f"the reply from 127.0.0.1:{replay_server.port} is not JSON: 144 bytes of image/png" in line
    )
