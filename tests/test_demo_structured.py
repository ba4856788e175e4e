"""Structured output from the demo (``response_format`` ``json_schema``): the reply always
validates against the schema, and what the demo can measure is measured."""

from __future__ import annotations

import base64
import io
import json
import random
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import jsonschema
import openai
import pytest
from _demo import http, server  # noqa: F401 - fixtures
from PIL import Image, ImageDraw
from pydantic import BaseModel, Field

from jupyter_chatimg.demo import DemoServer
from jupyter_chatimg.demo._colors import PALETTE
from jupyter_chatimg.demo._structured import fill
from jupyter_chatimg.demo._testing import user_message

MEASURED = [
    "width",
    "height",
    "orientation",
    "dominant_color",
    "colors",
    "brightness",
    "contrast",
    "has_alpha",
    "transparency",
    "is_photo",
    "aspect_ratio",
    "mode",
    "caption",
    "description",
    "count",
    "imageWidth",
    "format",
    "background",
    "kind",
    "size",
]
OTHER = ["title", "notes", "tags", "score", "objects", "label", "id", "confidence", "flag", "items"]
FORMATS = ["date", "date-time", "email", "uuid", "uri", "ipv4"]
PATTERNS = [r"^[A-Z]{2}-\d{3}$", r"^(red|blue)+$", r"^#[0-9a-f]{6}$", r"x\d"]


@pytest.fixture(scope="module")
def client(server: DemoServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url, api_key="sk-test-demo", max_retries=0) as c:
        yield c


def picture(size: tuple[int, int] = (320, 200)) -> Image.Image:
    img = Image.new("RGB", size, "white")
    w, h = size
    ImageDraw.Draw(img).ellipse((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=PALETTE["red"])
    return img


def schema_format(schema: dict[str, Any], name: str = "answer") -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": False}}


def ask(
    http: httpx.Client,
    schema: dict[str, Any],
    *images: Image.Image,
    model: str = "demo-vision",
    stream: bool = False,
) -> str:
    body = {
        "model": model,
        "messages": [user_message("Describe the picture as JSON.", *images)],
        "response_format": schema_format(schema),
        "stream": stream,
    }
    r = http.post("/chat/completions", json=body)
    assert r.status_code == 200, r.text
    if not stream:
        return str(r.json()["choices"][0]["message"]["content"])
    text = ""
    for line in r.text.splitlines():
        if line.startswith("data: {"):
            for c in json.loads(line[6:])["choices"]:
                text += c["delta"].get("content") or ""
    return text


def check(value: Any, schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(value), key=str)
    assert not errors, (
        f"{errors[0].message} at {list(errors[0].path)}\nschema={json.dumps(schema)}\nvalue={json.dumps(value)}"
    )


# --- the official client ----------------------------------------------------------------------


class Colour(BaseModel):
    name: str
    share: float = Field(ge=0, le=1)


class PictureInfo(BaseModel):
    width: int
    height: int
    orientation: Literal["landscape", "portrait", "square"]
    dominant_color: str
    colors: list[Colour]
    has_transparency: bool
    brightness: float
    caption: str
    is_photo: bool
    aspect_ratio: str
    tags: list[str]
    location: str | None


def test_parse_with_pydantic_gives_measured_values(client: openai.OpenAI) -> None:
    r = client.chat.completions.parse(
        model="demo-vision",
        messages=[user_message("What is in this picture?", picture())],  # type: ignore[list-item]
        response_format=PictureInfo,
    )
    info = r.choices[0].message.parsed
    assert info is not None
    assert (info.width, info.height) == (320, 200)
    assert info.orientation == "landscape" and info.aspect_ratio == "8:5"
    assert info.dominant_color == "white" and info.colors[1].name == "red"
    assert 0 < info.colors[1].share < info.colors[0].share <= 1
    assert info.has_transparency is False and info.is_photo is False
    assert 200 < info.brightness <= 255 and "320×200" in info.caption
    assert info.tags == []  # nothing measured: a neutral value


def test_streamed_parse(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model="demo-vision",
        messages=[user_message("describe", picture((100, 300)))],  # type: ignore[list-item]
        response_format=PictureInfo,
    ) as stream:
        final = stream.get_final_completion()
    info = final.choices[0].message.parsed
    assert info is not None and (info.width, info.height, info.orientation) == (
        100,
        300,
        "portrait",
    )


def test_streaming_and_whole_give_the_same_json(http: httpx.Client) -> None:
    schema = PictureInfo.model_json_schema()
    whole = ask(http, schema, picture())
    assert ask(http, schema, picture(), stream=True) == whole
    assert ask(http, schema, picture()) == whole  # deterministic
    check(json.loads(whole), schema)


def test_demo_image_model_answers_json_schema_too(http: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"width": {"type": "integer"}}, "required": ["width"]}
    assert json.loads(ask(http, schema, picture(), model="demo-image")) == {"width": 320}


def test_without_an_image_everything_is_neutral(http: httpx.Client) -> None:
    schema = PictureInfo.model_json_schema()
    value = json.loads(ask(http, schema))
    check(value, schema)
    assert value["width"] == 0 and value["orientation"] == "landscape" and value["caption"] == ""


def test_several_images_fill_arrays_per_image(http: httpx.Client) -> None:
    schema = {
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "images": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "width": {"type": "integer"},
                        "height": {"type": "integer"},
                    },
                    "required": ["index", "width", "height"],
                    "additionalProperties": False,
                },
            },
            "widths": {"type": "array", "items": {"type": "integer"}},
        },
        "required": ["count", "images", "widths"],
        "additionalProperties": False,
    }
    value = json.loads(ask(http, schema, picture((10, 20)), picture((30, 40))))
    assert value == {
        "count": 2,
        "images": [
            {"index": 0, "width": 10, "height": 20},
            {"index": 1, "width": 30, "height": 40},
        ],
        "widths": [10, 30],
    }


def test_synonyms_and_shapes_of_measurements() -> None:
    """Names are matched generously and each value takes the shape the schema asks for."""
    from jupyter_chatimg.demo._describe import analyze
    from jupyter_chatimg.demo._facts import ImageFacts

    clear = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    ImageDraw.Draw(clear).rectangle((0, 0, 63, 31), fill=(*PALETTE["blue"], 255))
    facts = ImageFacts([analyze(clear, "PNG")])
    schema = {
        "type": "object",
        "properties": {
            "imageWidth": {"type": "integer"},
            "Image-Height": {"type": "string"},
            "brightness": {"type": "number", "maximum": 1},
            "brightnessLevel": {
                "enum": ["very dark", "dark", "medium brightness", "bright", "very bright"]
            },
            "hasAlpha": {"type": "boolean"},
            "transparent_fraction": {"type": "number"},
            "mainColour": {"enum": ["Red", "Green", "Blue"]},
            "dimensions": {
                "type": "object",
                "properties": {"width": {"type": "integer"}, "height": {"type": "integer"}},
            },
            "size": {"type": "string"},
            "is_square": {"type": "boolean"},
            "format": {"type": "string"},
            "palette": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"hex": {"type": "string"}, "percent": {"type": "number"}},
                },
            },
        },
    }
    value = fill(schema, facts)
    check(value, schema)
    assert value["imageWidth"] == 64 and value["Image-Height"] == "64"
    assert 0 < value["brightness"] <= 1 and value["brightnessLevel"] == "dark"
    assert value["hasAlpha"] is True and value["transparent_fraction"] == 0.5
    assert value["mainColour"] == "Blue" and value["dimensions"] == {"width": 64, "height": 64}
    assert value["size"] == "64x64" and value["is_square"] is True and value["format"] == "PNG"
    assert value["palette"] == [{"hex": "#1e50dc", "percent": 100.0}]


# --- conformance over many random schemas -----------------------------------------------------


class SchemaMaker:
    """Random satisfiable JSON Schemas (2020-12) with the keywords the demo must honour."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.defs: dict[str, Any] = {}

    def name(self) -> str:
        return self.rng.choice(MEASURED if self.rng.random() < 0.6 else OTHER)

    def scalar(self) -> dict[str, Any]:
        r = self.rng
        kind = r.choice(
            ["string", "integer", "number", "boolean", "null", "enum", "const", "format", "pattern"]
        )
        if kind == "string":
            low = r.choice([0, 0, 1, 5])
            s: dict[str, Any] = {"type": "string", "minLength": low}
            if r.random() < 0.5:
                s["maxLength"] = low + r.choice([0, 3, 40])
            return s
        if kind in ("integer", "number"):
            s = {"type": kind}
            step = r.choice([None, 2, 5]) if kind == "integer" else r.choice([None, 0.25])
            low = r.choice([None, -10, 0, 1, 7, 300])
            if low is not None:
                s[r.choice(["minimum", "exclusiveMinimum"])] = low
            if r.random() < 0.5:
                s["maximum"] = (low or 0) + r.choice([12, 100, 1000])
            if step:
                s["multipleOf"] = step
            return s
        if kind == "enum":
            return {
                "enum": r.sample(
                    ["landscape", "portrait", "square", "red", "blue", "white", "yes", 3, None],
                    r.randint(1, 4),
                )
            }
        if kind == "const":
            return {"const": r.choice(["fixed", 42, True, None])}
        if kind == "format":
            return {"type": "string", "format": r.choice(FORMATS)}
        if kind == "pattern":
            return {"type": "string", "pattern": r.choice(PATTERNS)}
        return {"type": kind}

    def schema(self, depth: int) -> dict[str, Any]:
        r = self.rng
        roll = r.random()
        if depth <= 0 or roll < 0.35:
            return self.scalar()
        if roll < 0.6:
            return self.object(depth - 1)
        if roll < 0.75:
            items = self.schema(depth - 1)
            low = r.choice([0, 0, 1, 2])
            s: dict[str, Any] = {"type": "array", "items": items, "minItems": low}
            if r.random() < 0.5:
                s["maxItems"] = low + r.choice([0, 1, 5])
            if (
                items.get("type") in ("string", "integer")
                and "maxLength" not in items
                and "maximum" not in items
                and r.random() < 0.5
            ):
                s["uniqueItems"] = True
            return s
        if roll < 0.87:
            key = r.choice(["anyOf", "oneOf"])
            kinds = r.sample(
                ["string", "integer", "boolean", "null", "object", "array"], r.randint(2, 3)
            )
            options = [
                self.object(depth - 1)
                if k == "object"
                else {"type": "array", "items": self.scalar()}
                if k == "array"
                else {"type": k}
                for k in kinds
            ]
            return {key: options}
        ref = f"T{len(self.defs)}"
        self.defs[ref] = {}  # reserve the name: definitions never refer to themselves
        self.defs[ref] = self.object(depth - 1)
        return {"$ref": f"#/$defs/{ref}"}

    def object(self, depth: int) -> dict[str, Any]:
        r = self.rng
        props = {}
        for _ in range(r.randint(1, 5)):
            props[self.name()] = self.schema(depth)
        required = [k for k in props if r.random() < 0.7]
        s: dict[str, Any] = {"type": "object", "properties": props, "required": required}
        if r.random() < 0.6:
            s["additionalProperties"] = False
        elif r.random() < 0.3:
            s["minProperties"] = len(props) + 1
        return s

    def root(self) -> dict[str, Any]:
        s = self.object(3)
        if self.defs:
            s["$defs"] = self.defs
        return s


@pytest.mark.parametrize("chunk", range(4))
def test_random_schemas_always_validate(chunk: int) -> None:
    """400 seeded random schemas, filled with measured facts and with none."""
    from jupyter_chatimg.demo._describe import analyze
    from jupyter_chatimg.demo._facts import ImageFacts

    facts = [
        ImageFacts([]),
        ImageFacts([analyze(picture())]),
        ImageFacts([analyze(picture()), analyze(picture((5, 9)))]),
    ]
    for seed in range(chunk * 100, chunk * 100 + 100):
        schema = SchemaMaker(seed).root()
        for f in facts:
            check(fill(schema, f), schema)


def test_random_schemas_over_http(http: httpx.Client) -> None:
    for seed in range(1000, 1015):
        schema = SchemaMaker(seed).root()
        check(json.loads(ask(http, schema, picture(), stream=seed % 2 == 0)), schema)


@pytest.mark.parametrize(
    "schema",
    [
        {
            "type": "object",
            "properties": {
                "a": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 1.5}
            },
            "required": ["a"],
        },
        {
            "type": "object",
            "properties": {"a": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.5}},
            "required": ["a"],
        },
        {
            "type": "object",
            "properties": {"a": {"oneOf": [{"type": "integer"}, {"type": "number"}]}},
            "required": ["a"],
        },
        {
            "type": "object",
            "properties": {"a": {"allOf": [{"type": "string"}, {"minLength": 3}]}},
            "required": ["a"],
        },
        {
            "type": "object",
            "properties": {
                "a": {"type": "array", "contains": {"const": 7}, "items": {"type": "integer"}}
            },
            "required": ["a"],
        },
        {
            "type": "object",
            "required": ["x"],
            "additionalProperties": {"type": "integer", "minimum": 3},
        },
        {
            "type": "object",
            "properties": {"a": {"type": ["null", "string"], "minLength": 2}},
            "required": ["a"],
        },
        {
            "definitions": {
                "n": {
                    "type": "object",
                    "properties": {"next": {"$ref": "#/definitions/n"}, "v": {"const": 1}},
                    "required": ["v"],
                }
            },
            "$ref": "#/definitions/n",
        },
        {
            "type": "object",
            "properties": {"w": {"type": "integer", "multipleOf": 7, "minimum": 10}},
            "required": ["w"],
        },
        {
            "type": "object",
            "properties": {
                "t": {
                    "type": "array",
                    "prefixItems": [{"type": "string"}, {"type": "integer"}],
                    "minItems": 2,
                }
            },
            "required": ["t"],
        },
        {
            "type": "object",
            "minProperties": 2,
            "maxProperties": 2,
            "properties": {"a": {"type": "string"}},
        },
        {
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "when": {"type": "string", "format": "date-time"},
            },
            "required": ["id", "when"],
        },
    ],
)
def test_edge_schemas(schema: dict[str, Any]) -> None:
    from jupyter_chatimg.demo._describe import analyze
    from jupyter_chatimg.demo._facts import ImageFacts

    check(fill(schema), schema)
    check(fill(schema, ImageFacts([analyze(picture())])), schema)


# --- bad requests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ({"type": "json_schema"}, "response_format.json_schema"),
        (
            {"type": "json_schema", "json_schema": {"schema": {}}},
            "response_format.json_schema.name",
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "has space", "schema": {}}},
            "response_format.json_schema.name",
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": []}},
            "response_format.json_schema.schema",
        ),
        ({"type": "yaml"}, "response_format.type"),
    ],
)
def test_bad_response_format_is_400(
    http: httpx.Client, response_format: dict[str, Any], param: str
) -> None:
    body = {
        "model": "demo-vision",
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": response_format,
    }
    r = http.post("/chat/completions", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


# --- a palette PNG is described as the picture it is (user report) ---------------------------


def palette_png(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.quantize(64).save(buf, "PNG")  # what a client does to save bytes
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_palette_png_is_described_by_its_colours_not_its_encoding(http: httpx.Client) -> None:
    uri = palette_png(picture())
    body = {"model": "demo-vision", "messages": [user_message("describe", uri)]}
    text = http.post("/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    assert "mode RGB" in text and "mode P" not in text
    assert "red" in text and "white" in text
    schema = {"type": "object", "properties": {"mode": {"type": "string"}}, "required": ["mode"]}
    body["response_format"] = schema_format(schema)
    reply = http.post("/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    assert json.loads(reply) == {"mode": "RGB"}
    clear = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    ImageDraw.Draw(clear).rectangle((10, 10, 29, 29), fill=(*PALETTE["blue"], 255))
    body["messages"] = [user_message("describe", palette_png(clear))]
    del body["response_format"]
    text = http.post("/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    assert "mode RGBA" in text and "transparent" in text
