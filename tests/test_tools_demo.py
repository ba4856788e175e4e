"""Tools and structured output against the offline demo (DESIGN 7), and the official client.

The demo fills a ``json_schema`` reply from what it measured, and calls a tool
that the prompt names with arguments read from the prompt, then answers from
the tool's result.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import Iterator
from typing import Any, Literal

import pydantic
import pytest
from PIL import Image, ImageDraw

import jupyter_chatimg as ci
from jupyter_chatimg.demo import DemoServer, serve_demo


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoServer]:
    with serve_demo() as server:
        yield server


def photo() -> Image.Image:
    """320x200: sky, sand and a red kite."""
    img = Image.new("RGB", (320, 200), (135, 190, 235))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 150, 320, 200), fill=(230, 200, 140))
    draw.polygon([(200, 40), (240, 70), (200, 100), (160, 70)], fill=(220, 40, 40))
    return img


@dataclasses.dataclass
class Facts:
    width: int
    height: int
    orientation: Literal["landscape", "portrait", "square"]
    colors: list[str]


class FactsModel(pydantic.BaseModel):
    width: int
    height: int
    orientation: Literal["landscape", "portrait", "square"]
    dominant_color: str


@pytest.mark.parametrize("schema", [Facts, FactsModel], ids=lambda s: s.__name__)
@pytest.mark.parametrize("stream", [True, False])
def test_a_schema_against_the_demo(demo: DemoServer, schema: type, stream: bool) -> None:
    result = ci.chat(
        "Measure the image.",
        photo(),
        base_url=demo.url,
        model="demo-vision",
        schema=schema,
        stream=stream,
        display=False,
    )
    parsed = result.parsed
    assert isinstance(parsed, schema)
    assert (parsed.width, parsed.height, parsed.orientation) == (320, 200, "landscape")


def test_the_official_client_parses_into_a_pydantic_model(demo: DemoServer) -> None:
    from openai import OpenAI

    buf = io.BytesIO()
    photo().save(buf, "PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    client = OpenAI(base_url=demo.url, api_key="demo")
    completion = client.chat.completions.parse(
        model="demo-vision",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Measure the image."},
                    {"type": "image_url", "image_url": {"url": uri}},
                ],
            }
        ],
        response_format=FactsModel,
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, FactsModel)
    assert (parsed.width, parsed.height) == (320, 200)


def test_a_zoom_tool_against_the_demo(demo: DemoServer) -> None:
    picture = photo()
    boxes: list[tuple[int, int, int, int]] = []

    def zoom(x: int, y: int, width: int, height: int) -> Image.Image:
        """Crop the photo to a box, in pixels from the top-left corner."""
        boxes.append((x, y, width, height))
        return picture.crop((x, y, x + width, y + height))

    result = ci.chat(
        "Use zoom on x 160 y 40 width 80 height 60: what colour is there?",
        picture,
        base_url=demo.url,
        model="demo-vision",
        tools=[zoom],
        display=False,
    )
    assert boxes == [(160, 40, 80, 60)]
    assert len(result.rounds) == 2
    assert result.tool_calls[0].result.size == (80, 60)
    assert "zoom" in result.text and "red" in result.text


@pytest.mark.parametrize("mode", ["live", "batch"])
def test_chat_many_with_a_schema_live_and_through_the_batch_api(
    demo: DemoServer, mode: str, tmp_path: Any
) -> None:
    results = ci.chat_many(
        [("Measure the image.", photo()), ("Measure the image.", photo().rotate(90, expand=True))],
        base_url=demo.url,
        model="demo-vision",
        schema=Facts,
        mode=mode,
        journal=tmp_path / "job.jsonl",
        display=False,
    )
    assert [(r.parsed.width, r.parsed.orientation) for r in results] == [
        (320, "landscape"),
        (200, "portrait"),
    ]
    # Read back from the journal, the objects are made again.
    again = ci.chat_many(
        [("Measure the image.", photo()), ("Measure the image.", photo().rotate(90, expand=True))],
        base_url=demo.url,
        model="demo-vision",
        schema=Facts,
        mode=mode,
        journal=tmp_path / "job.jsonl",
        display=False,
    )
    assert [r.parsed for r in again] == [r.parsed for r in results]
