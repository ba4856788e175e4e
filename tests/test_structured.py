"""Structured output (DESIGN 4.3): schema objects sent as response_format, replies validated.

Against loopback servers that answer with a fixed JSON text (in random
pieces): pydantic models, dataclasses, TypedDicts and JSON Schema dicts give
``result.parsed`` as an instance of the user's type; a reply that is not JSON
or does not fit keeps its text, and raises (``chat``) or shows one line (the
magic).
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any, Literal, TypedDict

import pydantic
import pytest
from _ipython import ipython_shell  # noqa: F401 - fixture
from _servers import ReplayServer

import jupyter_chatimg as ci
from jupyter_chatimg._structured import strict_form, structured

PATH = "/v1/chat/completions"
GOOD = {"width": 320, "height": 200, "orientation": "landscape", "colors": ["red", "blue"]}


@dataclasses.dataclass
class Size:
    width: int
    height: int
    orientation: Literal["landscape", "portrait", "square"]
    colors: list[str]
    note: str | None = None


class SizeModel(pydantic.BaseModel):
    width: int
    height: int
    orientation: Literal["landscape", "portrait", "square"]
    colors: list[str]


class SizeDict(TypedDict):
    width: int
    height: int
    orientation: str
    colors: list[str]


class Kind(enum.Enum):
    PHOTO = "photo"
    CHART = "chart"


@dataclasses.dataclass
class Box:
    x: int
    y: int


@dataclasses.dataclass
class Found:
    kind: Kind
    boxes: list[Box]
    size: tuple[int, int]
    score: float = 0.0


SIZE_SCHEMA = {
    "title": "size",
    "type": "object",
    "properties": {
        "width": {"type": "integer", "minimum": 1},
        "height": {"type": "integer"},
        "orientation": {"enum": ["landscape", "portrait", "square"]},
        "colors": {"type": "array", "items": {"type": "string"}},
        "note": {"type": "string"},
    },
    "required": ["width", "height"],
}


def stream_of(text: str) -> str:
    pieces = [text[i : i + 5] for i in range(0, len(text), 5)]
    out = [{"choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
    out.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return "".join(f"data: {json.dumps(c)}\n\n" for c in out) + "data: [DONE]\n\n"


@pytest.fixture
def server(clean_env: pytest.MonkeyPatch) -> Any:
    with ReplayServer() as srv:
        yield srv


def answer(srv: ReplayServer, text: str, seed: int = 0) -> None:
    srv.add_sse("POST", PATH, stream_of(text), seed=seed)


@pytest.mark.parametrize("schema", [Size, SizeModel, SizeDict], ids=lambda s: s.__name__)
@pytest.mark.parametrize("seed", range(3))
def test_types_give_an_instance(server: ReplayServer, schema: Any, seed: int) -> None:
    answer(server, json.dumps(GOOD), seed)
    result = ci.chat("Measure it.", base_url=server.url, schema=schema, display=False)
    parsed = result.parsed
    if schema is SizeDict:
        assert parsed == GOOD
    else:
        assert isinstance(parsed, schema)
        assert parsed.width == 320 and parsed.colors == ["red", "blue"]
    rf = server.requests[0].json["response_format"]
    assert rf["type"] == "json_schema"
    assert rf["json_schema"]["name"] == schema.__name__ and rf["json_schema"]["strict"] is True
    sent = rf["json_schema"]["schema"]
    assert sent["additionalProperties"] is False
    assert sorted(sent["required"]) == sorted(sent["properties"])
    assert result.text == json.dumps(GOOD)


def test_a_json_schema_dict(server: ReplayServer) -> None:
    answer(server, json.dumps(GOOD))
    result = ci.chat("Measure it.", base_url=server.url, schema=SIZE_SCHEMA, display=False)
    assert result.parsed == GOOD
    rf = server.requests[0].json["response_format"]["json_schema"]
    assert rf["name"] == "size" and rf["strict"] is True
    assert rf["schema"]["required"] == ["width", "height", "orientation", "colors", "note"]
    assert SIZE_SCHEMA["required"] == ["width", "height"]  # the user's dict is untouched


@pytest.mark.parametrize(
    ("reply", "field", "line"),
    [
        (
            '{"width": "wide", "height": 200, "orientation": "landscape", "colors": []}',
            "width",
            "the reply does not fit the schema Size: width: Input should be a valid integer, "
            "unable to parse string as an integer; its text is kept in result.text",
        ),
        (
            '{"height": 200, "orientation": "landscape", "colors": []}',
            "width",
            "the reply does not fit the schema Size: width: missing; its text is kept in "
            "result.text",
        ),
        (
            "The image is 320 pixels wide.",
            "",
            "the reply is not valid JSON (Expecting value at line 1 column 1); its text is kept "
            "in result.text",
        ),
    ],
)
def test_a_reply_that_does_not_fit_raises_and_keeps_its_text(
    server: ReplayServer, reply: str, field: str, line: str
) -> None:
    answer(server, reply)
    with pytest.raises(ci.StructuredOutputError) as info:
        ci.chat("Measure it.", base_url=server.url, schema=Size, display=False)
    err = info.value
    assert str(err) == line and err.field == field
    assert err.partial is not None and err.partial.text == reply
    assert err.partial.parsed is None and err.partial.error is err


def test_the_first_failing_field_of_a_dict_schema(server: ReplayServer) -> None:
    answer(server, '{"width": 0, "height": 2, "colors": ["red", 3]}')
    with pytest.raises(ci.StructuredOutputError) as info:
        ci.chat("Measure it.", base_url=server.url, schema=SIZE_SCHEMA, display=False)
    assert info.value.field in ("width", "colors[1]")
    assert "\n" not in str(info.value)


def test_json_gives_the_parsed_dict(server: ReplayServer) -> None:
    answer(server, '```json\n{"a": [1, 2]}\n```')
    result = ci.chat("JSON please.", base_url=server.url, response_format={"type": "json_object"})
    assert result.parsed == {"a": [1, 2]}


def test_a_cut_reply_says_so(server: ReplayServer) -> None:
    body = stream_of('{"width": 3').replace('"finish_reason": "stop"', '"finish_reason": "length"')
    server.add_sse("POST", PATH, body)
    with pytest.raises(ci.StructuredOutputError, match="cut at max_tokens"):
        ci.chat("Measure it.", base_url=server.url, schema=Size, display=False)


def test_strict_only_where_the_schema_allows() -> None:
    @dataclasses.dataclass
    class Tagged:
        tags: dict[str, int]

    assert structured(Tagged).strict is False
    assert structured(Tagged).response_format()["json_schema"]["schema"]["properties"]["tags"] == {
        "additionalProperties": {"type": "integer"},
        "title": "Tags",
        "type": "object",
    }
    assert strict_form({"type": "object", "additionalProperties": True}) is None
    assert strict_form({"type": "array", "items": {"type": "string"}}) is None
    nested = strict_form(
        {
            "type": "object",
            "properties": {
                "box": {"$ref": "#/$defs/Box"},
                "n": {"type": "integer", "default": None},
            },
            "$defs": {"Box": {"type": "object", "properties": {"x": {"type": "integer"}}}},
        }
    )
    assert nested is not None
    assert nested["$defs"]["Box"] == {
        "type": "object",
        "properties": {"x": {"type": "integer"}},
        "additionalProperties": False,
        "required": ["x"],
    }
    assert nested["properties"]["n"] == {"type": "integer"}


def test_without_pydantic_dataclasses_enums_and_nesting(
    server: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_chatimg import _typeschema

    monkeypatch.setattr(_typeschema, "pydantic_adapter", lambda tp: None)
    answer(server, '{"kind": "chart", "boxes": [{"x": 1, "y": 2}], "size": [3, 4], "score": 1}')
    result = ci.chat("Find.", base_url=server.url, schema=Found, display=False)
    assert result.parsed == Found(Kind.CHART, [Box(1, 2)], (3, 4), 1.0)
    assert isinstance(result.parsed.score, float)
    sent = server.requests[0].json["response_format"]["json_schema"]
    assert sent["strict"] is True
    assert sent["schema"]["properties"]["kind"] == {"title": "Kind", "enum": ["photo", "chart"]}


def test_chat_many_with_a_schema(server: ReplayServer) -> None:
    answer(server, json.dumps(GOOD))
    results = ci.chat_many(["a", "b"], base_url=server.url, schema=Size, display=False)
    assert [r.parsed.width for r in results] == [320, 320]


def test_schema_and_response_format_together_are_refused(server: ReplayServer) -> None:
    with pytest.raises(ci.ConfigError, match="keep one of them"):
        ci.chat("x", base_url=server.url, schema=Size, response_format={"type": "json_object"})
    assert server.requests == []


# --- the magic ---------------------------------------------------------------------------


def test_the_magic_puts_the_object_in_the_result(
    ipython_shell: Any, server: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    answer(server, json.dumps(GOOD))
    server.add_sse("POST", PATH, stream_of('{"a": 1}'))
    ipython_shell.user_ns["Size"] = Size
    ipython_shell.run_cell(f"%%chatimg --base-url {server.url} --schema Size -o r\nMeasure it.")
    result = ipython_shell.user_ns["r"]
    assert isinstance(result.parsed, Size) and result.parsed.height == 200
    ipython_shell.run_cell(f"%chatimg --base-url {server.url} --json Give JSON.")
    assert ipython_shell.user_ns["_"].parsed == {"a": 1}


def test_the_magic_shows_one_line_and_keeps_the_text(
    ipython_shell: Any, server: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    answer(server, "not json at all")
    ipython_shell.user_ns["Size"] = Size
    capsys.readouterr()
    ipython_shell.run_cell(f"%%chatimg --base-url {server.url} --schema Size\nMeasure it.")
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.strip().splitlines()
    assert lines == [
        "not json at all",
        "⚠ the reply is not valid JSON (Expecting value at line 1 column 1); its text is kept "
        "in result.text",
    ]
    result = ipython_shell.user_ns["_"]
    assert result.text == "not json at all" and isinstance(result.error, ci.StructuredOutputError)
