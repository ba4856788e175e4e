"""Tool calls from the demo: it calls the tools a prompt names, with valid arguments read
from the prompt, streams them as OpenAI does, and answers from the tools' results."""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import openai
import pytest
from _demo import http, server  # noqa: F401 - fixtures
from PIL import Image
from pydantic import BaseModel
from test_demo_structured import MEASURED, SchemaMaker, check

from jupyter_chatimg.demo import DemoServer
from jupyter_chatimg.demo._colors import PALETTE
from jupyter_chatimg.demo._promptfacts import prompt_facts
from jupyter_chatimg.demo._structured import fill
from jupyter_chatimg.demo._testing import data_uri

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "unit", "days"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
RESIZE = {
    "type": "function",
    "function": {
        "name": "resizeImage",
        "parameters": {
            "type": "object",
            "properties": {"width": {"type": "integer"}, "height": {"type": "integer"}},
            "required": ["width", "height"],
        },
    },
}
ASK = "Use get_weather for New York in fahrenheit for 3 days."


@pytest.fixture(scope="module")
def client(server: DemoServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url, api_key="sk-test-demo", max_retries=0) as c:
        yield c


@pytest.fixture(autouse=True)
def no_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def chat(http: httpx.Client, messages: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    return http.post(
        "/chat/completions", json={"model": "demo-vision", "messages": messages, **extra}
    )


# --- calling ----------------------------------------------------------------------------------


def test_round_trip_with_the_openai_client(client: openai.OpenAI) -> None:
    messages: list[Any] = [user(ASK)]
    first = client.chat.completions.create(model="demo-vision", messages=messages, tools=[WEATHER])  # type: ignore[list-item]
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].type == "function" and calls[0].id.startswith("call_")
    call = calls[0]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {
        "city": "New York",
        "unit": "fahrenheit",
        "days": 3,
    }  # type: ignore[union-attr]
    messages += [
        choice.message.model_dump(exclude_none=True),
        {
            "role": "tool",
            "tool_call_id": call.id,
            "content": json.dumps({"temperature": 71, "sky": "clear"}),
        },
    ]
    second = client.chat.completions.create(model="demo-vision", messages=messages, tools=[WEATHER])  # type: ignore[arg-type]
    text = second.choices[0].message.content or ""
    assert second.choices[0].finish_reason == "stop" and not second.choices[0].message.tool_calls
    assert "get_weather" in text and "temperature: 71" in text and '"clear"' in text


def test_streamed_calls_look_like_openai(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(
        model="demo-vision", messages=[user(ASK)], tools=[WEATHER]
    )  # type: ignore[list-item]
    chunks = list(
        client.chat.completions.create(
            model="demo-vision",
            messages=[user(ASK)],  # type: ignore[list-item]
            tools=[WEATHER],  # type: ignore[list-item]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    head = deltas[0].tool_calls[0]  # type: ignore[index]
    assert head.index == 0 and head.id and head.type == "function"
    assert (
        head.function is not None
        and head.function.name == "get_weather"
        and head.function.arguments == ""
    )
    pieces = [d.tool_calls[0].function.arguments for d in deltas[1:]]  # type: ignore[index, union-attr]
    assert len(pieces) >= 3 and all(d.tool_calls[0].id is None for d in deltas[1:])  # type: ignore[index]
    call = (whole.choices[0].message.tool_calls or [])[0]
    assert "".join(p or "" for p in pieces) == call.function.arguments  # type: ignore[union-attr]
    assert head.id == call.id  # deterministic
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["tool_calls"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_stream_helper_and_pydantic_function_tool(client: openai.OpenAI) -> None:
    class ResizeImage(BaseModel):
        """Resize the image."""

        width: int
        height: int
        mode: Literal["fit", "fill", "stretch"]

    tool = openai.pydantic_function_tool(ResizeImage)
    with client.chat.completions.stream(
        model="demo-vision",
        messages=[user("Please ResizeImage to 640x480, fill the frame")],
        tools=[tool],
    ) as stream:
        final = stream.get_final_completion()
    call = (final.choices[0].message.tool_calls or [])[0]
    assert call.function.parsed_arguments == ResizeImage(width=640, height=480, mode="fill")


def test_tool_choice(http: httpx.Client) -> None:
    def calls(prompt: str, **extra: Any) -> list[str]:
        msg = chat(http, [user(prompt)], tools=[WEATHER, RESIZE], **extra).json()["choices"][0][
            "message"
        ]
        return [c["function"]["name"] for c in msg.get("tool_calls") or []]

    assert calls("hello there") == []  # auto: nothing named, no call
    assert calls(ASK, tool_choice="none") == []
    assert calls("hello there", tool_choice="required") == ["get_weather"]  # the first tool
    assert calls("please resize image", tool_choice="required") == ["resizeImage"]
    named = {"type": "function", "function": {"name": "resizeImage"}}
    assert calls("what is the weather", tool_choice=named) == ["resizeImage"]
    both = "resize image to 20x10, then get weather in Oslo"
    assert calls(both) == ["resizeImage", "get_weather"]  # parallel, in the prompt's order
    assert calls(both, parallel_tool_calls=False) == ["resizeImage"]


def test_parallel_calls_are_indexed_when_streamed(http: httpx.Client) -> None:
    text = chat(
        http,
        [user("getWeather in Rome and resize image to 3x4")],
        tools=[WEATHER, RESIZE],
        stream=True,
    ).text
    heads = []
    for line in text.splitlines():
        if line.startswith("data: {"):
            for c in json.loads(line[6:])["choices"]:
                for tc in c["delta"].get("tool_calls") or []:
                    if "id" in tc:
                        heads.append((tc["index"], tc["function"]["name"]))
    assert heads == [(0, "get_weather"), (1, "resizeImage")]
    assert text.rstrip().endswith("data: [DONE]")


def test_text_reply_when_tools_are_offered_but_not_named(http: httpx.Client) -> None:
    msg = chat(http, [user("hi")], tools=[WEATHER]).json()["choices"][0]
    assert msg["finish_reason"] == "stop" and "get_weather" in msg["message"]["content"]


# --- arguments --------------------------------------------------------------------------------


def fn(_name: str, props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """A tool's parameter schema (``_name`` is the tool's name, for the table's reader)."""
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
    }


@pytest.mark.parametrize(
    ("tool", "prompt", "schema", "expected"),
    [
        (
            "draw_box",
            "draw_box at 10, 20 size 30",
            fn(
                "draw_box",
                {"x": {"type": "integer"}, "y": {"type": "integer"}, "size": {"type": "integer"}},
            ),
            {"x": 10, "y": 20, "size": 30},
        ),
        (
            "search",
            'call search with "red apples" please',
            fn("search", {"query": {"type": "string"}}),
            {"query": "red apples"},
        ),
        (
            "fill_shape",
            "paint it navy with fill_shape",
            fn("fill_shape", {"color": {"type": "string"}}),
            {"color": "navy"},
        ),
        (
            "set_mode",
            "set_mode to dark",
            fn("set_mode", {"mode": {"enum": ["light", "dark"]}}),
            {"mode": "dark"},
        ),
        (
            "convert_units",
            "convert 12.5 from celsius to kelvin via convert_units",
            fn(
                "convert_units",
                {
                    "value": {"type": "number"},
                    "source": {"enum": ["celsius", "kelvin"]},
                    "target": {"enum": ["celsius", "kelvin"]},
                },
            ),
            {"value": 12.5, "source": "celsius", "target": "kelvin"},
        ),
        (
            "plot_points",
            "plot_points 1 2 3",
            fn("plot_points", {"xs": {"type": "array", "items": {"type": "number"}}}),
            {"xs": [1, 2, 3]},
        ),
        (
            "make_chart",
            "make_chart without grid",
            fn("make_chart", {"grid": {"type": "boolean"}, "title": {"type": "string"}}, ["grid"]),
            {"grid": False},
        ),
        (
            "make_chart",
            "make_chart with legend",
            fn("make_chart", {"legend": {"type": "boolean"}}),
            {"legend": True},
        ),
        (
            "book_table",
            "book_table for 5 at Chez Paul",
            fn(
                "book_table",
                {"restaurant": {"type": "string"}, "people": {"type": "integer", "minimum": 1}},
            ),
            {"restaurant": "Chez Paul", "people": 5},
        ),
        (
            "crop_image",
            "crop_image width=300 height: 200",
            fn("crop_image", {"height": {"type": "integer"}, "width": {"type": "integer"}}),
            {"height": 200, "width": 300},
        ),
        (
            "rate_it",
            "rate_it 99",
            fn("rate_it", {"stars": {"type": "integer", "minimum": 1, "maximum": 5}}),
            {"stars": 1},
        ),
        ("no_args", "no_args please", fn("no_args", {}), {}),
    ],
)
def test_arguments_from_the_prompt(
    tool: str, prompt: str, schema: dict[str, Any], expected: dict[str, Any]
) -> None:
    args = fill(schema, prompt_facts(prompt, tool, schema))
    check(args, schema)
    assert args == expected


def test_random_tool_schemas_give_valid_arguments(http: httpx.Client) -> None:
    rng = random.Random(7)
    words = [
        "Paris",
        "blue",
        "42",
        '"quoted text"',
        "3.5",
        "landscape",
        "width 12",
        "no",
        *MEASURED,
    ]
    for seed in range(150):
        schema = SchemaMaker(seed).root()
        prompt = "call tool_x " + " ".join(rng.choice(words) for _ in range(rng.randint(0, 8)))
        check(fill(schema, prompt_facts(prompt, "tool_x", schema)), schema)
    for seed in range(150, 160):  # and over HTTP, streamed
        schema = SchemaMaker(seed).root()
        tool = {"type": "function", "function": {"name": "tool_x", "parameters": schema}}
        text = chat(http, [user("run tool_x 5 red")], tools=[tool], stream=True).text
        args = ""
        for line in text.splitlines():
            if line.startswith("data: {"):
                for c in json.loads(line[6:])["choices"]:
                    for tc in c["delta"].get("tool_calls") or []:
                        args += tc["function"].get("arguments") or ""
        check(json.loads(args), schema)


# --- answering from results -------------------------------------------------------------------


def first_call(http: httpx.Client, prompt: str, tools: list[dict[str, Any]]) -> dict[str, Any]:
    msg = chat(http, [user(prompt)], tools=tools).json()["choices"][0]["message"]
    return dict(msg)


def test_answer_describes_an_image_the_tool_returned(http: httpx.Client) -> None:
    plot = {
        "type": "function",
        "function": {"name": "make_plot", "parameters": {"type": "object", "properties": {}}},
    }
    msg = first_call(http, "make_plot please", [plot])
    call_id = msg["tool_calls"][0]["id"]
    image = Image.new("RGB", (120, 60), PALETTE["green"])
    messages = [
        user("make_plot please"),
        msg,
        {"role": "tool", "tool_call_id": call_id, "content": "image returned (see next message)"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "image from make_plot"},
                {"type": "image_url", "image_url": {"url": data_uri(image)}},
            ],
        },
    ]
    text = chat(http, messages, tools=[plot]).json()["choices"][0]["message"]["content"]
    assert "make_plot" in text and "image returned" in text
    assert "120×60" in text and "green" in text


def test_structured_answer_from_tool_results(http: httpx.Client) -> None:
    msg = first_call(http, ASK, [WEATHER])
    schema = {
        "type": "object",
        "properties": {
            "temperature": {"type": "number"},
            "sky": {"type": "string"},
            "wind": {"type": "integer"},
        },
        "required": ["temperature", "sky", "wind"],
        "additionalProperties": False,
    }
    messages = [
        user(ASK),
        msg,
        {
            "role": "tool",
            "tool_call_id": msg["tool_calls"][0]["id"],
            "content": '{"temperature": 21.5, "sky": "rain"}',
        },
    ]
    rf = {"type": "json_schema", "json_schema": {"name": "w", "schema": schema, "strict": True}}
    reply = chat(http, messages, tools=[WEATHER], response_format=rf).json()["choices"][0][
        "message"
    ]["content"]
    assert json.loads(reply) == {"temperature": 21.5, "sky": "rain", "wind": 0}


def test_a_new_question_after_results_can_call_again(http: httpx.Client) -> None:
    msg = first_call(http, ASK, [WEATHER])
    tool_answer = {"role": "tool", "tool_call_id": msg["tool_calls"][0]["id"], "content": "sunny"}
    again = chat(
        http, [user(ASK), msg, tool_answer, user("and get weather for Oslo")], tools=[WEATHER]
    )
    call = again.json()["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"])["city"] == "Oslo"
    assert call["id"] != msg["tool_calls"][0]["id"]


# --- bad requests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
        ),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": {"get_weather": {}}}, "tools"),
        ({"tools": [{"type": "function"}]}, "tools[0].function"),
        (
            {"tools": [{"type": "function", "function": {"name": "has space"}}]},
            "tools[0].function.name",
        ),
        ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
        ({"tools": [WEATHER, WEATHER]}, "tools"),
        ({"tools": [WEATHER], "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    ],
)
def test_bad_tools_are_400(http: httpx.Client, extra: dict[str, Any], param: str) -> None:
    r = chat(http, [user("hi")], **extra)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_tool_messages_must_answer_calls(http: httpx.Client) -> None:
    stray = chat(http, [user("hi"), {"role": "tool", "tool_call_id": "call_x", "content": "1"}])
    assert stray.status_code == 400 and "must be a response" in stray.json()["error"]["message"]
    msg = first_call(http, ASK, [WEATHER])
    unanswered = chat(http, [user(ASK), msg, user("well?")], tools=[WEATHER])
    assert (
        unanswered.status_code == 400
        and "must be followed by tool messages" in unanswered.json()["error"]["message"]
    )
    no_id = chat(http, [user(ASK), msg, {"role": "tool", "content": "1"}], tools=[WEATHER])
    assert no_id.status_code == 400 and no_id.json()["error"]["param"] == "messages[2].tool_call_id"
