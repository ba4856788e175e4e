"""``chat_many`` and ``%%chatimg --each`` over loopback: order, 429s, bounds, failures, display."""

from __future__ import annotations

import _thread
import base64
import io
import json
import threading
import time
from typing import Any

import pytest
from _ipython import ipython_shell  # noqa: F401
from _servers import RecordedRequest, ReplayServer, Reply
from PIL import Image

import jupyter_chatimg as ci
from jupyter_chatimg._batch import RateGate
from jupyter_chatimg._progress import results_table
from jupyter_chatimg._result import ChatResult, Choice

CHAT = "/v1/chat/completions"


def completion(text: str) -> Reply:
    body = {
        "id": "chatcmpl-b",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    headers = {"Content-Type": "application/json"}
    return Reply(headers=headers, body=json.dumps(body).encode(), chunk_sizes=(64, 512))


def error(status: int, message: str, **headers: str) -> Reply:
    body = json.dumps({"error": {"message": message, "type": "x", "param": None, "code": None}})
    return Reply(
        status=status, headers={"Content-Type": "application/json", **headers}, body=body.encode()
    )


def prompt_of(request: RecordedRequest) -> str:
    content = request.json["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if p["type"] == "text")


def color_of(request: RecordedRequest) -> str:
    content = request.json["messages"][-1]["content"]
    url = next(p["image_url"]["url"] for p in content if p["type"] == "image_url")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as img:
        return "rgb" + str(img.convert("RGB").getpixel((0, 0)))


class Echo:
    """Answers with the prompt; every ``every``-th request gets a 429 first."""

    def __init__(self, *, every: int = 0, latency: float = 0.0, retry_after: str = "0") -> None:
        self.every = every
        self.latency = latency
        self.retry_after = retry_after
        self.count = 0
        self.limited = 0
        self.in_flight = 0
        self.peak = 0
        self.lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Reply:
        with self.lock:
            self.count += 1
            n = self.count
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            if self.every and n % self.every == 0:
                with self.lock:
                    self.limited += 1
                return error(429, "slow down", **{"Retry-After": self.retry_after})
            if self.latency:
                time.sleep(self.latency)  # the server's own latency, not synchronisation
            return completion("echo " + prompt_of(request))
        finally:
            with self.lock:
                self.in_flight -= 1


def test_every_third_request_429_every_item_completes_in_order(
    clean_env: pytest.MonkeyPatch, replay_server: ReplayServer
) -> None:
    echo = Echo(every=3)
    replay_server.add_handler("POST", CHAT, echo)
    items = [f"item {i}" for i in range(24)]
    results = ci.chat_many(
        items, concurrency=4, base_url=replay_server.url, stream=False, display=False
    )
    assert [r.error for r in results] == [None] * 24
    assert [r.text for r in results] == [f"echo item {i}" for i in range(24)]
    assert echo.limited >= 8  # a third of all requests, retried ones included
    assert len(replay_server.requests_to(CHAT)) == 24 + echo.limited


def test_retry_after_pauses_every_worker(
    clean_env: pytest.MonkeyPatch, replay_server: ReplayServer
) -> None:
    marks: dict[str, float] = {}
    arrivals: list[float] = []
    lock = threading.Lock()

    def respond(request: RecordedRequest) -> Reply:
        with lock:
            arrivals.append(time.monotonic())
            first = "limited" not in marks
            if first:
                marks["limited"] = time.monotonic()
        if first:
            return error(429, "slow down", **{"Retry-After": "0.4"})
        time.sleep(0.1)  # latency
        return completion("echo " + prompt_of(request))

    replay_server.add_handler("POST", CHAT, respond)
    results = ci.chat_many(
        [f"p{i}" for i in range(8)],
        concurrency=4,
        base_url=replay_server.url,
        stream=False,
        display=False,
    )
    assert [r.text for r in results] == [f"echo p{i}" for i in range(8)]
    # At most the first four requests (sent before the 429 came back) arrive
    # during the pause; every later one waits for the server's Retry-After.
    later = sorted(arrivals)[4:]
    assert later and min(later) - marks["limited"] >= 0.38


def test_concurrency_is_bounded_by_k(
    clean_env: pytest.MonkeyPatch, replay_server: ReplayServer
) -> None:
    echo = Echo(latency=0.05)
    replay_server.add_handler("POST", CHAT, echo)
    results = ci.chat_many(
        [f"q{i}" for i in range(12)], concurrency=3, base_url=replay_server.url, display=False
    )
    assert [r.text for r in results] == [f"echo q{i}" for i in range(12)]
    assert 2 <= echo.peak <= 3


def test_failures_are_recorded_and_the_batch_goes_on(
    clean_env: pytest.MonkeyPatch, replay_server: ReplayServer
) -> None:
    def respond(request: RecordedRequest) -> Reply:
        prompt = prompt_of(request)
        if prompt == "refused":
            return error(400, "this prompt is refused")
        if prompt == "broken":
            return error(500, "the server broke")
        return completion("echo " + prompt)

    replay_server.add_handler("POST", CHAT, respond)
    red = Image.new("RGB", (4, 4), "red")
    items: list[Any] = ["a", ("not an image", 42), "refused", "broken", ("b", red), ["c ", red]]
    results = ci.chat_many(
        items, concurrency=2, base_url=replay_server.url, max_retries=1, display=False
    )
    assert [r.text for r in results] == ["echo a", "", "", "", "echo b", "echo c "]
    assert isinstance(results[1].error, ci.ImageInputError)
    assert isinstance(results[2].error, ci.BadRequestError)
    assert isinstance(results[3].error, ci.ServerError)
    assert [r.error for r in results[4:]] == [None, None]
    assert (
        results[3].request is not None and results[3].request["messages"][-1]["content"] == "broken"
    )
    prompts = [prompt_of(r) for r in replay_server.requests_to(CHAT)]
    assert prompts.count("broken") == 2  # max_retries=1: one retry, then recorded
    assert prompts.count("refused") == 1  # a 400 is not retried


def test_text_progress_on_stderr(
    clean_env: pytest.MonkeyPatch, replay_server: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    replay_server.add_handler("POST", CHAT, Echo())
    ci.chat_many(["a", ("b", 7), "c"], concurrency=2, base_url=replay_server.url)
    err = capsys.readouterr().err
    final = err.split("\r")[-1]
    assert final.startswith("chatimg: 3/3 [########################], 1 failed, ")
    assert "\n  item 1: image: an int is not an image" in final
    assert err.count("\n") == 2  # the bar is rewritten in place; one line per failure


def test_bad_arguments_fail_before_any_request(
    clean_env: pytest.MonkeyPatch, replay_server: ReplayServer
) -> None:
    with pytest.raises(ci.ConfigError, match="concurrency"):
        ci.chat_many(["a"], concurrency=0, base_url=replay_server.url)
    with pytest.raises(ci.ConfigError, match="conversation"):
        ci.chat_many(["a"], chat=True, base_url=replay_server.url)
    with pytest.raises(ci.ConfigError, match="item 1 is of type int"):
        ci.chat_many(["a", 3], base_url=replay_server.url)
    with pytest.raises(ci.ConfigError, match=r"is not an http\(s\) URL"):
        ci.chat_many(["a"], base_url="ftp://nowhere")
    assert replay_server.requests == []
    assert ci.chat_many([], display=False) == []


def test_interrupt_returns_what_was_done(
    clean_env: pytest.MonkeyPatch, replay_server: ReplayServer
) -> None:
    released = threading.Event()

    def respond(request: RecordedRequest) -> Reply:
        if prompt_of(request) == "stop here":
            _thread.interrupt_main()  # what the kernel's Interrupt does
            released.wait(10)
        return completion("echo " + prompt_of(request))

    replay_server.add_handler("POST", CHAT, respond)
    items = ["one", "stop here"] + [f"later {i}" for i in range(6)]
    try:
        results = ci.chat_many(items, concurrency=1, base_url=replay_server.url, display=False)
    finally:
        released.set()
    assert results[0].text == "echo one"
    assert all(r.error is not None for r in results[1:])
    assert "interrupted" in str(results[1].error)
    assert len(replay_server.requests_to(CHAT)) == 2


def test_rate_gate_is_aimd_with_one_decrease_per_epoch() -> None:
    now = [0.0]
    gate = RateGate(8, clock=lambda: now[0])
    burst = [gate.acquire() for _ in range(3)]
    assert burst == [0, 0, 0] and gate.active == 3
    gate.rate_limited(10.0, burst[0])
    assert (gate.limit, gate.paused_until, gate.epoch) == (4.0, 10.0, 1)
    now[0] = 1.0
    gate.rate_limited(10.0, burst[1])  # sent under the old limit: no second halving
    assert (gate.limit, gate.paused_until) == (4.0, 11.0)
    for _ in burst:
        gate.release()
    now[0] = 12.0
    assert gate.acquire() == 1
    gate.release()
    gate.rate_limited(0.5, 1)
    assert gate.limit == 2.0 and gate.allowed == 2
    gate.succeeded()
    gate.succeeded()
    assert gate.limit == pytest.approx(2.9)  # +1/limit each
    for _ in range(100):
        gate.succeeded()
    assert gate.limit == 8.0
    for _ in range(10):
        now[0] += 100
        gate.rate_limited(0)
    assert gate.allowed == 1
    assert gate.acquire() == gate.epoch and gate.active == 1
    gate.release()
    gate.close()
    assert gate.acquire() is None


def test_results_table_is_escaped_with_thumbnails() -> None:
    img = Image.new("RGB", (300, 200), "green")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    ok = ChatResult(
        choices=[
            Choice(text=f"Look: <script>alert(1)</script> & ![x]({uri}) done", images=[img, img])
        ]
    )
    bad = ChatResult(choices=[Choice()], error=ci.ServerError("<b>boom</b>", status=500))
    thumb = base64.b64encode(buf.getvalue()).decode()
    small = io.BytesIO()
    Image.new("RGB", (2, 2), "red").save(small, format="PNG")
    thumb = base64.b64encode(small.getvalue()).decode()
    bundle = results_table([ok, bad], [thumb, None], elapsed=1.25)
    page = bundle["text/html"]
    assert "<script>" not in page and "<b>boom" not in page
    assert "Look: &lt;script&gt;alert(1)&lt;/script&gt; &amp; [image 1] done" in page
    assert "HTTP 500: &lt;b&gt;boom&lt;/b&gt;" in page
    assert uri not in page  # the reply's own image is a marker, never a browser-loaded link
    assert page.count('<img src="data:image/png;base64,') == 2  # input + first returned image
    assert "(+1)" in page
    assert "2 items, 1 ok, 1 failed in 1.2 s" in page
    plain = bundle["text/plain"].splitlines()
    assert plain[0].startswith("2 items, 1 ok, 1 failed")
    assert plain[2].startswith("  1  ERROR")


def test_each_magic_runs_the_cell_over_each_image(
    ipython_shell: Any, replay_server: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    replay_server.add_handler("POST", CHAT, lambda r: completion(prompt_of(r) + " " + color_of(r)))
    shell = ipython_shell
    colors = ["red", "lime", "blue", "white", "black"]

    class Column:
        def __init__(self, values: list[Any]) -> None:
            self.values = values

        def tolist(self) -> list[Any]:
            return list(self.values)

    shell.user_ns["col"] = Column([Image.new("RGB", (5, 5), c) for c in colors])
    shell.user_ns["style"] = "briefly"
    shell.run_cell_magic(
        "chatimg",
        f"--base-url {replay_server.url} --each col -j 2 --no-stream -o res",
        "Describe {style}:",
    )
    results = shell.user_ns["res"]
    assert shell.user_ns["_"] is results
    assert [r.text for r in results] == [
        "Describe briefly: rgb(255, 0, 0)",
        "Describe briefly: rgb(0, 255, 0)",
        "Describe briefly: rgb(0, 0, 255)",
        "Describe briefly: rgb(255, 255, 255)",
        "Describe briefly: rgb(0, 0, 0)",
    ]
    assert "chatimg: 5/5" in capsys.readouterr().err
    shell.run_cell_magic("chatimg", f"--base-url {replay_server.url} --each style", "x")
    assert "--each style: a str is not a list of images" in capsys.readouterr().err
    shell.run_cell_magic("chatimg", "--each col --chat", "x")
    assert "drop --chat" in capsys.readouterr().err
