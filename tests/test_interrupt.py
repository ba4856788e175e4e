"""Interrupting the kernel mid-reply (DESIGN.md section 8).

A real kernel runs ``%%chatimg`` against a server that streams slowly; the test
interrupts the kernel once some text is on screen and checks that the output
keeps that text plus one line saying it was interrupted, that there is no
traceback, that the server saw the connection close, and that the next cell
runs at once.
"""

from __future__ import annotations

import json
import queue
import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from html import unescape
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel

pytestmark = pytest.mark.timeout(120)


class SlowStream:
    """A loopback server that streams one token every ``interval`` seconds for a long
    time, and notes the moment the client closes the connection."""

    def __init__(self, interval: float = 0.05, tokens: int = 2000) -> None:
        self.interval = interval
        self.tokens = tokens
        self.sent: list[str] = []
        self.closed = threading.Event()
        self.requests = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(
                next(
                    (
                        ln.split(b":")[1]
                        for ln in head.split(b"\r\n")
                        if ln.lower().startswith(b"content-length")
                    ),
                    b"0",
                )
            )
            while len(body) < length:
                body += conn.recv(65536)
            self.requests += 1
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            for i in range(self.tokens):
                token = f" tok{i}"
                event = {"choices": [{"index": 0, "delta": {"content": token}}]}
                payload = f"data: {json.dumps(event)}\n\n".encode()
                try:
                    conn.sendall(b"%x\r\n%s\r\n" % (len(payload), payload))
                except OSError:
                    break
                self.sent.append(token)
                readable, _, _ = select.select([conn], [], [], self.interval)
                try:
                    if readable and conn.recv(1) == b"":
                        break  # the client closed its end
                except ConnectionResetError:
                    break  # closed with unread data still in its buffer: a reset
                if self._stop.is_set():
                    return
            self.closed.set()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


@pytest.fixture
def server() -> Iterator[SlowStream]:
    srv = SlowStream()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def kernel(clean_env: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def collect(kc: Any, msg_id: str, until: Any, timeout: float = 30) -> list[dict[str, Any]]:
    """iopub messages of ``msg_id`` until ``until(messages)`` is true."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=0.5)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(msg)
        if until(messages):
            return messages
    raise TimeoutError(f"waited {timeout} s; got {[m['msg_type'] for m in messages]}")


def idle(messages: list[dict[str, Any]]) -> bool:
    last = messages[-1]
    return last["msg_type"] == "status" and last["content"]["execution_state"] == "idle"


def htmls(messages: list[dict[str, Any]]) -> list[str]:
    return [
        m["content"]["data"]["text/html"]
        for m in messages
        if m["msg_type"] in ("display_data", "update_display_data")
        and "text/html" in m["content"]["data"]
    ]


def shown(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The outputs at the end, as a front end shows them (updates applied by display_id)."""
    order: list[str] = []
    data: dict[str, dict[str, Any]] = {}
    for m in messages:
        if m["msg_type"] not in ("display_data", "update_display_data"):
            continue
        display_id = m["content"]["transient"]["display_id"]
        if m["msg_type"] == "display_data":
            order.append(display_id)
        data[display_id] = m["content"]["data"]
    return [data[d] for d in order]


def text_of(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html))


def run(kc: Any, code: str) -> list[dict[str, Any]]:
    return collect(kc, kc.execute(code), idle)


def test_interrupt_mid_reply_keeps_the_text_and_says_so(
    kernel: tuple[Any, Any], server: SlowStream
) -> None:
    km, kc = kernel
    run(kc, "%load_ext jupyter_chatimg")
    msg_id = kc.execute(f"%%chatimg --base-url {server.url}\nCount slowly.")
    before = collect(kc, msg_id, lambda ms: any("tok5" in md for md in htmls(ms)))
    km.interrupt_kernel()
    interrupted_at = time.monotonic()
    after = collect(kc, msg_id, idle)

    # The server saw the connection close, soon after the interrupt.
    assert server.closed.wait(5)
    assert time.monotonic() - interrupted_at < 5
    messages = before + after
    kinds = [m["msg_type"] for m in messages]
    assert "error" not in kinds  # no traceback
    streams = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")
    assert "Traceback" not in streams and "KeyboardInterrupt" not in streams

    (final,) = shown(messages)
    text, _, tail = final["text/html"].partition("<p><em>⚠")
    assert text_of(text).startswith("tok0 tok1 tok2 tok3 tok4 tok5")
    kept = text_of(text).split()
    assert kept == [f"tok{i}" for i in range(len(kept))]
    assert len(kept) <= len(server.sent)
    assert tail.count("\n") == 1 and "interrupted" in tail
    assert final["text/html"].count("⚠") == 1

    # The kernel is usable at once, and the partial result is in `_`.
    started = time.monotonic()
    check = run(
        kc, "print(type(_).__name__, type(_.error).__name__, len(_.text.split()), str(_.error))"
    )
    assert time.monotonic() - started < 5
    out = "".join(m["content"]["text"] for m in check if m["msg_type"] == "stream")
    name, error, words, line = out.strip().split(" ", 3)
    assert (name, error, int(words)) == ("ChatResult", "StreamError", len(kept))
    assert line == ("interrupted by the user; the connection was closed and the partial reply kept")
    assert server.requests == 1  # never re-sent


def test_interrupt_while_fetching_a_returned_image(kernel: tuple[Any, Any]) -> None:
    from _servers import ReplayServer

    km, kc = kernel
    with ReplayServer() as srv:
        image = srv.url_for("/slow.png")
        event = {"choices": [{"index": 0, "delta": {"content": f"Look: ![x]({image}) done."}}]}
        finish = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        srv.add_sse(
            "POST",
            "/v1/chat/completions",
            f"data: {json.dumps(event)}\n\ndata: {json.dumps(finish)}\n\ndata: [DONE]\n\n",
        )
        srv.add("GET", "/slow.png", 200, {"Content-Type": "image/png"}, b"", first_byte_delay=60)
        run(kc, "%load_ext jupyter_chatimg")
        msg_id = kc.execute(f"%%chatimg --base-url {srv.url}\nShow me.")
        srv.wait_for_requests(2, timeout=30)  # the kernel is downloading the image now
        km.interrupt_kernel()
        messages = collect(kc, msg_id, idle)
    assert "error" not in [m["msg_type"] for m in messages]
    final = shown(messages)
    assert [text_of(d["text/html"]) for d in final] == [
        "Look:\n",
        "image 1 (not fetched: interrupted by the user)\n",
        "done.\n",
    ]
    assert final[1]["text/html"].startswith(f'<p><a href="{image}" rel="noopener noreferrer"')
    check = run(kc, "print(_.text, len(_.images))")
    out = "".join(m["content"]["text"] for m in check if m["msg_type"] == "stream")
    assert out == f"Look: ![x]({image}) done. 0\n"


# -- issue 15: Ctrl-C must not be swallowed; Stop in a kernel keeps the partial ----------


@pytest.mark.parametrize("handler", ["except Exception", "except ci.ChatImgError"])
def test_an_interrupt_stops_a_loop_that_catches_errors(
    server: SlowStream, handler: str, clean_env: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    # Issue 15 (4): the interrupt became a StreamError, so "try: chat() except Exception:
    # pass" in a loop carried on after the user pressed Stop (2.5 s -> 62.8 s).
    import signal
    import subprocess
    import sys

    script = tmp_path / "loop.py"
    script.write_text(
        "import jupyter_chatimg as ci\n"
        "kept = []\n"
        "try:\n"
        "    for i in range(20):\n"
        "        try:\n"
        f"            ci.chat('hi', base_url={server.url!r}, model='m', display=False)\n"
        f"        {handler}:\n"
        "            pass\n"
        "    print('the loop ran on', flush=True)\n"
        "except KeyboardInterrupt as stop:\n"
        "    print('stopped with', repr(stop.partial.text[:9]), flush=True)\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 30
    while len(server.sent) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert "the loop ran on" not in out, err[-2000:]
    assert out.strip() == "stopped with ' tok0 tok'", err[-2000:]
    assert server.requests == 1  # the next request of the loop was never made


def test_stop_in_a_kernel_is_prompt_and_keeps_the_partial(
    server: SlowStream, kernel: tuple[Any, Any]
) -> None:
    # Issue 15 (14): in a kernel, panel.stop() took 1.0 s and result.text was ''.
    _, kc = kernel
    run(
        kc,
        "import jupyter_chatimg as ci\n"
        f"p = ci.ChatPanel(base_url={server.url!r}, model='m')\n"
        "p.prompt.value = 'hi'\n"
        "p.send()\n",
    )
    deadline = time.monotonic() + 30
    while len(server.sent) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    messages = run(
        kc,
        "import time\n"
        "t = time.monotonic(); p.stop(); took = time.monotonic() - t\n"
        "print(round(took, 3), repr(p.result.text[:10]), p.busy, type(p.result.error).__name__,"
        " sep='|')\n",
    )
    (line,) = [m["content"]["text"] for m in messages if m["msg_type"] == "stream"]
    took, text, busy, error = line.strip().split("|")
    assert float(took) < 0.5
    assert (text, busy, error) == ("' tok0 tok1'", "False", "StreamError")
    assert server.closed.wait(5)
