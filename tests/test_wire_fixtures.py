"""Every wire fixture, delivered in random 1-9 byte pieces over loopback HTTP,
gives exactly the text, images, usage and error of expected.json."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from _ipython import ipython_shell  # noqa: F401 - fixture
from _routing import LoopbackRouter, resolve_to_loopback
from _servers import ReplayServer
from PIL import Image

import jupyter_chatimg as ci
from jupyter_chatimg import _fetch, _retry

WIRE = Path(__file__).parent / "fixtures" / "wire"
EXPECTED = json.loads((WIRE / "expected.json").read_text())
REPLIES = sorted(
    p.name for p in WIRE.iterdir() if p.suffix in (".sse", ".json") and p.name in EXPECTED
)
SEEDS = range(20)
KITE_PATH = "/fixtures/20250401/kite-over-dunes.png"


def kite_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (240, 140, 30)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def cdn(clean_env: pytest.MonkeyPatch) -> ReplayServer:
    """cdn.example.com, served on loopback."""
    with ReplayServer() as server:
        server.add("GET", KITE_PATH, headers={"Content-Type": "image/png"}, body=kite_png())
        clean_env.setattr(_fetch, "resolve_host", resolve_to_loopback)
        clean_env.setattr(_fetch, "DEFAULT_IMAGE_TRANSPORT", LoopbackRouter(server.port))
        yield server


def run(name: str, seed: int, srv: ReplayServer) -> tuple[ci.ChatResult, BaseException | None]:
    srv.add_file(WIRE / name, seed=seed)
    stream = name.endswith(".sse")
    try:
        result = ci.chat("hello", base_url=srv.url, stream=stream, display=False, max_retries=0)
    except ci.StreamError as exc:
        assert exc.partial is not None
        return exc.partial, exc
    except ci.APIError as exc:
        return ci.ChatResult(error=exc), exc
    return result, None


def check(name: str, result: ci.ChatResult, error: BaseException | None) -> None:
    want = EXPECTED[name]
    if want.get("http_status"):
        assert isinstance(error, ci.APIError)
        assert error.status == want["http_status"]
        assert error.message == want["error_message"]
        assert "\n" not in str(error)
        return
    assert result.text == want["final_text"]
    assert result.choices[0].image_urls == want["images"]
    assert len(result.images) == want["image_count"]
    assert all(isinstance(im, Image.Image) for im in result.images)
    if "finish_reason" in want:
        assert result.finish_reason == want["finish_reason"]
    if "usage" in want:
        assert result.usage == want["usage"]
    if want["error_message"] is None:
        assert error is None and result.error is None
    else:
        assert isinstance(error, ci.StreamError)
        assert want["error_message"] in str(error)
        assert result.error is error


@pytest.mark.parametrize("name", REPLIES)
def test_fixture_in_random_pieces(name: str, cdn: ReplayServer) -> None:
    with ReplayServer() as srv:
        for seed in SEEDS:
            result, error = run(name, seed, srv)
            check(name, result, error)
        # Every cut really was different.
        assert len(srv.requests) == len(SEEDS)


def test_rate_limit_advice(cdn: ReplayServer) -> None:
    with ReplayServer() as srv:
        _, error = run("error_429.json", 0, srv)
    assert isinstance(error, ci.RateLimitError)
    assert error.retry_after == pytest.approx(
        EXPECTED["error_429.json"]["retry_after_seconds_expected"]
    )
    headers = dict(
        line.split(": ", 1)
        for line in (WIRE / "error_429.headers.txt").read_text().splitlines()[1:]
        if line.strip()
    )
    assert _retry.retry_delay(0, headers) == pytest.approx(19.85)


def test_401_is_not_retried(cdn: ReplayServer) -> None:
    with ReplayServer() as srv:
        srv.add_file(WIRE / "error_401.json")
        with pytest.raises(ci.AuthenticationError) as info:
            ci.chat("hi", base_url=srv.url, display=False, max_retries=3)
        assert len(srv.requests) == 1
    assert "no key was sent" in str(info.value)


def test_returned_image_is_the_served_png(cdn: ReplayServer) -> None:
    with ReplayServer() as srv:
        result, _ = run("gateway_gpt4o_image_progress.sse", 1, srv)
    image = result.images[0]
    assert image.size == (8, 6)
    assert image.getpixel((0, 0))[:3] == (240, 140, 30)
    # The download link is not fetched; the key never travels with image downloads.
    paths = [r.path for r in cdn.requests]
    assert paths == [KITE_PATH]
    assert all("authorization" not in {k.lower() for k in r.headers} for r in cdn.requests)


def test_openrouter_images_decode(cdn: ReplayServer) -> None:
    with ReplayServer() as srv:
        result, _ = run("openrouter_nonstream_images.json", 0, srv)
    assert [im.size for im in result.images] == [(2, 2), (2, 2)]
    raw = base64.b64decode(
        EXPECTED["openrouter_nonstream_images.json"]["images"][0].split(",", 1)[1]
    )
    assert Image.open(io.BytesIO(raw)).tobytes() == result.images[0].tobytes()


@pytest.mark.parametrize("name", REPLIES)
def test_fixture_through_the_magic(name: str, cdn: ReplayServer, ipython_shell) -> None:
    """The same fixtures through %%chatimg in a real IPython shell (terminal: printed)."""
    with ReplayServer() as srv:
        for seed in (3, 11):
            srv.add_file(WIRE / name, seed=seed)
            flag = "" if name.endswith(".sse") else "--no-stream"
            ipython_shell.run_cell_magic("chatimg", f"--base-url {srv.url} {flag} -o r", "hello")
            result = ipython_shell.user_ns["r"]
            assert ipython_shell.user_ns["_"] is result
            check(name, result, result.error)


def test_choice_indexes_that_make_no_sense_are_ignored_and_reported(
    clean_env: pytest.MonkeyPatch, replay_server: Any
) -> None:
    # Issue 15 (13): a choice with index -5 became .text instead of choice 0.
    chunks = [
        {"choices": [{"index": -5, "delta": {"content": "injected "}}]},
        {"choices": [{"index": "0", "delta": {"content": "also injected "}}]},
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "the reply"}}]},
        {"choices": [{"index": 10**9, "delta": {"content": "far away"}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    replay_server.add(
        "POST", "/v1/chat/completions", 200, {"Content-Type": "text/event-stream"}, body,
        chunk_sizes=(1, 9),
    )  # fmt: skip
    result = ci.chat("hi", base_url=replay_server.url, display=False)
    assert result.text == "the reply" and len(result.choices) == 1
    assert result.warnings == ["ignored choices with impossible indexes: -5, '0', 1000000000"]
