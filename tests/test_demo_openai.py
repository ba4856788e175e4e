"""The official ``openai`` client talks to the demo server without error: a faithful server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from _demo import http, server  # noqa: F401 - fixtures
from PIL import Image, ImageDraw

from jupyter_chatimg.demo import DemoServer
from jupyter_chatimg.demo._testing import decode_data_uri, markdown_data_uris, user_message


@pytest.fixture(scope="module")
def client(server: DemoServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url, api_key="sk-demo-unused", max_retries=0) as c:
        yield c


def red_square() -> Image.Image:
    img = Image.new("RGB", (200, 200), "white")
    ImageDraw.Draw(img).rectangle((50, 50, 149, 149), fill=(230, 25, 25))
    return img


def collect(stream: Any) -> tuple[dict[int, str], list[Any]]:
    texts: dict[int, str] = {}
    chunks = list(stream)
    for ch in chunks:
        for c in ch.choices:
            texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
    return texts, chunks


def test_models_list(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["demo-vision", "demo-image"]


def test_vision_streaming_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="demo-vision",
        messages=[user_message("What is in this picture?", red_square())],  # type: ignore[list-item]
        stream=True,
        stream_options={"include_usage": True},
    )
    texts, chunks = collect(stream)
    text = texts[0]
    assert "red" in text and "white" in text
    assert len(chunks) > 20  # word by word, not one blob
    first = chunks[0]
    assert first.object == "chat.completion.chunk"
    assert first.choices[0].delta.role == "assistant"
    assert first.model == "demo-vision" and first.system_fingerprint
    assert len({c.id for c in chunks}) == 1
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "stop" and set(finish[:-1]) == {None}
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.prompt_tokens > 85  # the image is counted
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


def test_vision_non_streaming(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="demo-vision",
        messages=[
            {"role": "system", "content": "You are terse."},
            user_message("Describe.", red_square()),  # type: ignore[list-item]
        ],
    )
    assert r.object == "chat.completion"
    msg = r.choices[0].message
    assert msg.role == "assistant" and msg.content and "red" in msg.content
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens > 10


def test_same_text_streaming_and_not(client: openai.OpenAI) -> None:
    messages = [user_message("Describe.", red_square())]
    whole = client.chat.completions.create(model="demo-vision", messages=messages)  # type: ignore[arg-type]
    texts, _ = collect(
        client.chat.completions.create(model="demo-vision", messages=messages, stream=True)  # type: ignore[arg-type]
    )
    assert texts[0] == whole.choices[0].message.content


def test_generation_gateway_style(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="demo-image",
        messages=[{"role": "user", "content": "a red circle on a white background"}],
    )
    content = r.choices[0].message.content or ""
    assert "> Done" in content and "Progress" in content
    uris = markdown_data_uris(content)
    assert len(uris) == 1
    img = decode_data_uri(uris[0])
    assert img.size == (512, 512)
    assert "red circle" in content.split(")")[-1]


def test_generation_streaming_splits_the_data_uri(client: openai.OpenAI) -> None:
    texts, chunks = collect(
        client.chat.completions.create(
            model="demo-image",
            messages=[{"role": "user", "content": "two green stars"}],
            stream=True,
        )
    )
    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    carrying = [d for d in deltas if "base64" in d or (len(d) > 60 and " " not in d)]
    assert len(carrying) >= 3  # the data URI arrives in several pieces
    assert len(markdown_data_uris(texts[0])) == 1


def test_openrouter_style_images(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="demo-image",
        messages=[{"role": "user", "content": "a blue square"}],
        extra_body={"modalities": ["image", "text"]},
    )
    msg = r.choices[0].message
    images = (msg.model_extra or {})["images"]
    assert images[0]["type"] == "image_url"
    assert images[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert "![" not in (msg.content or "")
    texts, chunks = collect(
        client.chat.completions.create(
            model="demo-image",
            messages=[{"role": "user", "content": "a blue square"}],
            extra_body={"modalities": ["image", "text"]},
            stream=True,
        )
    )
    streamed = [
        (c.choices[0].delta.model_extra or {}).get("images")
        for c in chunks
        if c.choices and (c.choices[0].delta.model_extra or {}).get("images")
    ]
    assert streamed and streamed[0][0]["image_url"]["url"] == images[0]["image_url"]["url"]
    assert texts[0] == msg.content


def test_edit_through_the_client(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="demo-image",
        messages=[user_message("make it grayscale", red_square())],  # type: ignore[list-item]
    )
    img = decode_data_uri(markdown_data_uris(r.choices[0].message.content or "")[0]).convert("RGB")
    raw = img.tobytes()
    assert raw[0::3] == raw[1::3] == raw[2::3]


def test_n_choices_streaming_and_not(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="demo-vision", messages=[{"role": "user", "content": "hi"}], n=3
    )
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert len({c.message.content for c in r.choices}) == 1
    texts, chunks = collect(
        client.chat.completions.create(
            model="demo-vision", messages=[{"role": "user", "content": "hi"}], n=3, stream=True
        )
    )
    assert sorted(texts) == [0, 1, 2]
    assert all(t == r.choices[0].message.content for t in texts.values())
    finishes = {
        c.choices[0].index: c.choices[0].finish_reason
        for c in chunks
        if c.choices and c.choices[0].finish_reason
    }
    assert finishes == {0: "stop", 1: "stop", 2: "stop"}


def test_max_tokens_gives_length(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="demo-vision", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 5
    assert len((r.choices[0].message.content or "").split()) == 5
    texts, chunks = collect(
        client.chat.completions.create(
            model="demo-vision",
            messages=[{"role": "user", "content": "hi"}],
            max_completion_tokens=5,
            stream=True,
        )
    )
    assert texts[0] == r.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "length"


def test_stop_sequence(client: openai.OpenAI) -> None:
    full = (
        client.chat.completions.create(
            model="demo-vision", messages=[{"role": "user", "content": "hi"}]
        )
        .choices[0]
        .message.content
        or ""
    )
    r = client.chat.completions.create(
        model="demo-vision", messages=[{"role": "user", "content": "hi"}], stop=["offline", "zzz"]
    )
    text = r.choices[0].message.content or ""
    assert text == full[: full.index("offline")]
    assert r.choices[0].finish_reason == "stop"


def test_errors_become_openai_exceptions(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert "demo-vision" in str(e.value)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="demo-vision@status=429", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.APIError, match="injected error"):
        list(
            client.chat.completions.create(
                model="demo-vision@error=3",
                messages=[{"role": "user", "content": "x"}],
                stream=True,
            )
        )


def test_openai_client_retries_on_retry_after(server: DemoServer) -> None:
    with openai.OpenAI(base_url=server.url, api_key="unused", max_retries=2) as c:
        r = c.chat.completions.create(
            model="demo-vision",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"X-Demo-Fault": "status=503;retry-after-ms=10;times=2;tag=openai"},
        )
    assert r.choices[0].message.content
    assert server.fault_hits("status=503;retry-after-ms=10;times=2;tag=openai") == 3
