"""The reply cache: a hit makes no request and says so; any change to the request misses."""

from __future__ import annotations

import base64
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from _ipython import ipython_shell  # noqa: F401
from _servers import ReplayServer
from PIL import Image

import jupyter_chatimg as ci
from jupyter_chatimg import _cache
from jupyter_chatimg._config import resolve_settings

CHAT = "/v1/chat/completions"
SECRET = "sk-test-cache-0123456789abcdefghijklmn"


def png_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def completion(text: str, images: list[str] | None = None, n: int = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if images:
        message["images"] = [{"type": "image_url", "image_url": {"url": u}} for u in images]
    return {
        "id": "chatcmpl-c",
        "object": "chat.completion",
        "model": "cached-model",
        "system_fingerprint": "fp_1",
        "choices": [
            {
                "index": i,
                "message": dict(message, content=f"{text} #{i}" if n > 1 else text),
                "finish_reason": "stop",
            }
            for i in range(n)
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12, "cost": 0.5},
    }


@pytest.fixture
def cache_dir(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    folder = tmp_path / "cache"
    clean_env.setenv("CHATIMG_CACHE_DIR", str(folder))
    return folder


def test_a_hit_makes_no_request_and_any_change_misses(
    cache_dir: Path, replay_server: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    drawn = Image.new("RGB", (6, 4), "purple")
    replay_server.add_json("POST", CHAT, completion("A blue square.", [png_uri(drawn)]))
    img = Image.new("RGB", (8, 8), "blue")
    kw: dict[str, Any] = {"base_url": replay_server.url, "cache": True, "temperature": 0.2}

    first = ci.chat("What is this?", [img], **kw)
    assert not first.cached
    assert len(replay_server.requests) == 1
    capsys.readouterr()

    again = ci.chat("What is this?", [img.copy()], stream=False, **kw)  # stream is not in the key
    assert len(replay_server.requests) == 1  # no request
    assert again.cached and again.text == "A blue square."
    assert again.usage == first.usage and again.model == "cached-model"
    assert again.system_fingerprint == "fp_1"
    assert [im.convert("RGB").tobytes() for im in again.images] == [drawn.tobytes()]
    assert again.request is not None and again.provenance()["cached"] is True
    out = capsys.readouterr().out
    assert "from cache: no request was sent" in out

    changed = img.copy()
    changed.putpixel((3, 5), (0, 0, 254))
    variants: list[tuple[Any, ...]] = [
        ("What is this?", [changed], kw),  # one pixel
        ("What is this?", [img], dict(kw, temperature=0.3)),  # a parameter
        ("What is this?", [img], dict(kw, model="other")),  # the model
        ("What is this ?", [img], kw),  # the text
        ("What is this?", [img], dict(kw, system="Be brief.")),  # the messages
    ]
    for n, (prompt, images, options) in enumerate(variants, start=2):
        result = ci.chat(prompt, images, display=False, **options)
        assert not result.cached
        assert len(replay_server.requests) == n
    # Off by default: the same request again goes to the server.
    ci.chat("What is this?", [img], base_url=replay_server.url, temperature=0.2, display=False)
    assert len(replay_server.requests) == len(variants) + 2


def test_the_key_is_never_stored_and_the_endpoint_is_in_the_key(
    cache_dir: Path, clean_env: pytest.MonkeyPatch
) -> None:
    with ReplayServer() as one, ReplayServer() as two:
        for srv in (one, two):
            srv.add_json("POST", CHAT, completion("hello"))
        clean_env.setenv("CHATIMG_BASE_URL", one.url)
        clean_env.setenv("CHATIMG_API_KEY", SECRET)
        ci.chat("hi", cache=True, display=False)
        assert one.requests[0].headers["authorization"] == f"Bearer {SECRET}"
        assert ci.chat("hi", cache=True, display=False).cached
        # Another endpoint, same request: a miss.
        clean_env.setenv("CHATIMG_BASE_URL", two.url)
        clean_env.setenv("CHATIMG_API_KEY", "sk-test-another-key-000000000000000000")
        assert not ci.chat("hi", cache=True, display=False).cached
        assert len(one.requests) == len(two.requests) == 1
    files = [p for p in cache_dir.rglob("*") if p.is_file()]
    assert len(files) == 2
    for path in files:
        text = path.read_text()
        assert SECRET not in text and SECRET[3:20] not in text
        assert "authorization" not in text.lower()


def test_failures_and_partial_replies_are_not_cached(
    cache_dir: Path, replay_server: ReplayServer
) -> None:
    replay_server.add_json("POST", CHAT, {"error": {"message": "busy"}}, status=503)
    replay_server.add_sse(
        "POST",
        CHAT,
        b'data: {"choices":[{"index":0,"delta":{"content":"half"},"finish_reason":null}]}\n\n',
    )
    replay_server.add_json("POST", CHAT, completion("whole"))
    kw: dict[str, Any] = {
        "base_url": replay_server.url,
        "cache": True,
        "max_retries": 0,
        "display": False,
    }
    with pytest.raises(ci.ServerError):
        ci.chat("q", **kw)
    with pytest.raises(ci.StreamError):
        ci.chat("q", **kw)
    assert not cache_dir.exists() or not list(cache_dir.rglob("*.json"))
    assert ci.chat("q", **kw).text == "whole"
    assert ci.chat("q", **kw).cached
    assert len(replay_server.requests) == 3


def test_bounded_in_size_oldest_first_and_damaged_entries_miss(
    cache_dir: Path, replay_server: ReplayServer
) -> None:
    replay_server.add_handler(
        "POST",
        CHAT,
        lambda r: _json_reply(completion("x" * 2800 + r.json["messages"][-1]["content"])),
    )
    kw: dict[str, Any] = {
        "base_url": replay_server.url,
        "cache": True,
        "cache_max_bytes": 10_000,
        "display": False,
    }
    for i in range(5):
        ci.chat(f"p{i}", **kw)
        entries = sorted((cache_dir / "replies").glob("*.json"), key=os.path.getmtime)
        for age, path in enumerate(reversed(entries)):  # distinct, ordered mtimes
            os.utime(path, (time.time() - age - 1, time.time() - age - 1))
    sizes = [p.stat().st_size for p in (cache_dir / "replies").glob("*.json")]
    assert sum(sizes) <= 10_000 and len(sizes) == 3
    assert not ci.chat("p0", **kw).cached  # the oldest went first
    assert ci.chat("p4", **kw).cached
    for path in (cache_dir / "replies").glob("*.json"):
        path.write_text("{not json")
    assert not ci.chat("p4", **kw).cached  # a damaged entry is a miss, and is replaced
    assert ci.chat("p4", **kw).cached
    assert ci.clear_cache() >= 1
    assert not list((cache_dir / "replies").glob("*.json"))


def _json_reply(obj: Any) -> Any:
    from _servers import Reply

    return Reply(headers={"Content-Type": "application/json"}, body=json.dumps(obj).encode())


def test_cache_key_ignores_stream_and_names_the_demo_not_its_port(
    clean_env: pytest.MonkeyPatch,
) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    real = resolve_settings({"base_url": "http://127.0.0.1:9/v1"})
    other = resolve_settings({"base_url": "http://127.0.0.1:10/v1"})
    key = _cache.cache_key(real, body)
    assert key == _cache.cache_key(real, dict(body, stream=False, stream_options={"x": 1}))
    assert key != _cache.cache_key(other, body)
    demo_a = resolve_settings({}).with_overrides(base_url="http://127.0.0.1:1111/v1")
    demo_b = resolve_settings({}).with_overrides(base_url="http://127.0.0.1:2222/v1")
    assert demo_a.demo and _cache.cache_key(demo_a, body) == _cache.cache_key(demo_b, body)


def test_cache_dir_resolution(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.delenv("XDG_CACHE_HOME", raising=False)
    assert _cache.cache_dir() == Path.home() / ".cache" / "jupyter_chatimg"
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _cache.cache_dir() == tmp_path / "xdg" / "jupyter_chatimg"
    clean_env.setenv("CHATIMG_CACHE_DIR", str(tmp_path / "env"))
    assert _cache.cache_dir() == tmp_path / "env"
    settings = resolve_settings({"cache_dir": str(tmp_path / "set")})
    assert _cache.cache_dir(settings) == tmp_path / "set"


def test_magic_cache_option_and_config(
    ipython_shell: Any,
    cache_dir: Path,
    replay_server: ReplayServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    replay_server.add_json("POST", CHAT, completion("magic reply"))
    shell = ipython_shell
    line = f"--base-url {replay_server.url} --no-stream"
    shell.run_cell_magic("chatimg", line + " --cache", "same")
    shell.run_cell_magic("chatimg", line + " --cache", "same")
    assert len(replay_server.requests) == 1 and shell.user_ns["_"].cached
    shell.run_cell_magic("chatimg", line, "same")  # no --cache: asks again
    assert len(replay_server.requests) == 2
    shell.run_line_magic("config", "ChatImg.cache = True")
    shell.run_cell_magic("chatimg", line, "same")
    assert len(replay_server.requests) == 2 and shell.user_ns["_"].cached
    shell.run_cell_magic("chatimg", line + " --no-cache", "same")
    assert len(replay_server.requests) == 3
    assert capsys.readouterr().out.count("from cache") == 2
