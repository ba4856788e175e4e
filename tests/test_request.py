"""The request that reaches the server: every option set, two PIL images."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import jsonschema
import pytest
from _ipython import ipython_shell  # noqa: F401 - fixture
from _servers import ReplayServer
from PIL import Image

SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "chat_request.schema.json").read_text())
OK_STREAM = (
    b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"ok"},"finish_reason":null}]}\n\n'
    b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
)


def decode(url: str) -> Image.Image:
    assert url.startswith("data:image/")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_every_option_validates_against_the_schema(
    ipython_shell, replay_server: ReplayServer
) -> None:
    replay_server.add_sse("POST", "/v1/chat/completions", OK_STREAM)
    ns = ipython_shell.user_ns
    ns["photo"] = Image.merge(
        "RGB",
        [
            Image.effect_noise((640, 480), 64),
            Image.linear_gradient("L").resize((640, 480)),
            Image.effect_mandelbrot((640, 480), (-2, -1.5, 1, 1.5), 60),
        ],
    )
    ns["logo"] = Image.new("RGBA", (300, 200), (255, 0, 0, 0))
    ns["tools"] = [
        {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    ]
    line = (
        f"--base-url {replay_server.url} -m gpt-4o -i photo -i logo -s 'Be brief.' -t 0.7 --top-p 0.9 "
        "-n 2 --max-tokens 50 --stop END --stop STOP --presence-penalty 0.5 --frequency-penalty -0.5 "
        "--seed 7 --user u-1 --json --logit-bias '{\"50256\": -100}' --tools tools --tool-choice auto "
        '--extra \'{"modalities": ["text"]}\' --detail high --max-side 256 --timeout 30 -o res'
    )
    ipython_shell.run_cell_magic("chatimg", line, "Compare {photo} with the logo.")
    body = replay_server.requests[0].json
    jsonschema.validate(body, SCHEMA)
    assert body["model"] == "gpt-4o"
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    parts = body["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "text", "image_url", "image_url"]
    assert parts[0]["text"] == "Compare " and parts[2]["text"] == " with the logo."
    photo, photo_again, logo = (
        decode(p["image_url"]["url"]) for p in parts if p["type"] == "image_url"
    )
    assert photo.size == (256, 192) and photo.mode == "RGB" and photo.format == "JPEG"
    assert photo_again.size == photo.size
    assert logo.size[0] == 256 and abs(logo.size[1] - 171) <= 1
    assert logo.mode in ("RGBA", "LA", "P") and logo.format == "PNG"
    assert all(p["image_url"]["detail"] == "high" for p in parts if p["type"] == "image_url")
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.7 and body["top_p"] == 0.9 and body["n"] == 2
    assert body["stop"] == ["END", "STOP"] and body["max_tokens"] == 50
    assert body["response_format"] == {"type": "json_object"}
    assert body["logit_bias"] == {"50256": -100} and body["seed"] == 7 and body["user"] == "u-1"
    assert body["tools"] == ns["tools"] and body["tool_choice"] == "auto"
    assert body["modalities"] == ["text"]
    assert ns["res"].text == "ok"
    # The caller's images are untouched.
    assert ns["photo"].size == (640, 480) and ns["logo"].size == (300, 200)


def test_non_streaming_request(ipython_shell, replay_server: ReplayServer) -> None:
    replay_server.add_json(
        "POST",
        "/v1/chat/completions",
        {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "fine"},
                    "finish_reason": "stop",
                }
            ]
        },
    )
    ipython_shell.run_line_magic(
        "chatimg", f"--base-url {replay_server.url} --no-stream what's up?"
    )
    body = replay_server.requests[0].json
    jsonschema.validate(body, SCHEMA)
    assert body["stream"] is False and "stream_options" not in body
    assert body["messages"] == [{"role": "user", "content": "what's up?"}]
    assert ipython_shell.user_ns["_"].text == "fine"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"temperature": 3}, "temperature: 3 is not valid; expected number 0..2"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop: give 1 to 4 stop strings, not 5"),
        ({"n": 0}, "n: 0 is not valid"),
        ({"temprature": 1}, "'temprature' is not a known request field; pass it with extra="),
    ],
)
def test_bad_fields_fail_before_sending(
    kwargs, expected, replay_server: ReplayServer, clean_env
) -> None:
    import jupyter_chatimg as ci

    with pytest.raises(ci.ConfigError) as info:
        ci.chat("hi", base_url=replay_server.url, display=False, **kwargs)
    assert str(info.value).startswith(expected)
    assert replay_server.requests == []
