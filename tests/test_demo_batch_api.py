"""The demo's Files and Batch APIs, over loopback HTTP, mostly with the official client.

A batch line must be answered exactly as the live ``/v1/chat/completions`` route answers
the same body (only ``id`` and ``created`` may differ; tool calls and structured output
included), an ``/v1/images/generations`` line exactly as the live Images API does, and a
batch must move through OpenAI's statuses, including cancel, failure and expiry on demand.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import Any, Final, Literal

import httpx
import openai
import pytest
from _demo import http, server  # noqa: F401 - fixtures
from openai.types import Batch, FileObject
from PIL import Image, ImageDraw

from jupyter_chatimg.demo import DemoServer, serve_demo
from jupyter_chatimg.demo import __main__ as demo_main
from jupyter_chatimg.demo._multipart import parse_multipart
from jupyter_chatimg.demo._request import DemoHTTPError
from jupyter_chatimg.demo._testing import user_message

pytestmark = pytest.mark.filterwarnings("error")  # the official client must not warn either

CHAT: Final[Literal["/v1/chat/completions"]] = "/v1/chat/completions"
IMAGES: Final[Literal["/v1/images/generations"]] = "/v1/images/generations"
FINAL = ("completed", "failed", "expired", "cancelled")


@pytest.fixture(scope="module")
def client(server: DemoServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url, api_key="sk-test-batch", max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def slow() -> Iterator[tuple[DemoServer, openai.OpenAI]]:
    """A second server whose batch lines take 50 ms each."""
    with (
        serve_demo(batch_delay=0.05) as s,
        openai.OpenAI(base_url=s.url, api_key="sk-test-batch", max_retries=0) as c,
    ):
        yield s, c


def line(custom_id: str, body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body, **extra}


def ask(prompt: str, model: str = "demo-vision", **params: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], **params}


def jsonl(lines: Sequence[dict[str, Any] | str]) -> bytes:
    rows = [x if isinstance(x, str) else json.dumps(x) for x in lines]
    return ("\n".join(rows) + "\n").encode()


def upload(c: openai.OpenAI, lines: Sequence[dict[str, Any] | str]) -> FileObject:
    return c.files.create(file=("requests.jsonl", jsonl(lines)), purpose="batch")


def submit(
    c: openai.OpenAI,
    lines: Sequence[dict[str, Any] | str],
    endpoint: Literal["/v1/chat/completions", "/v1/images/generations"] = CHAT,
    **kw: Any,
) -> Batch:
    f = upload(c, lines)
    return c.batches.create(input_file_id=f.id, endpoint=endpoint, completion_window="24h", **kw)


def wait(c: openai.OpenAI, batch_id: str, until: Sequence[str] = FINAL) -> Batch:
    deadline = time.monotonic() + 20
    while True:
        b = c.batches.retrieve(batch_id)
        if b.status in until:
            return b
        assert time.monotonic() < deadline, f"batch still {b.status}"
        time.sleep(0.01)


def records(c: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    text = c.files.content(file_id).text
    assert text.endswith("\n")
    return [json.loads(x) for x in text.splitlines()]


def red_square() -> Image.Image:
    img = Image.new("RGB", (120, 80), "white")
    ImageDraw.Draw(img).rectangle((30, 20, 89, 59), fill=(230, 25, 25))
    return img


# -- the whole round trip --------------------------------------------------------------


LIVE_BODIES: dict[str, dict[str, Any]] = {
    "hello": ask("hello there", max_tokens=12),
    "sum": ask("what is 6 * 7?"),
    "image": {"model": "demo-vision", "messages": [user_message("Describe.", red_square())]},
    "json": {
        "model": "demo-vision",
        "messages": [user_message("Describe.", red_square())],
        "response_format": {"type": "json_object"},
    },
    "two": ask("hi", n=2, stop=["offline"], temperature=0.2, seed=3),
}


def test_round_trip_output_equals_live_replies(client: openai.OpenAI, server: DemoServer) -> None:
    before = server.batches_created
    batch = submit(client, [line(k, v) for k, v in LIVE_BODIES.items()])
    assert batch.status == "validating" and batch.object == "batch"
    assert batch.endpoint == CHAT and batch.completion_window == "24h"
    assert batch.expires_at == batch.created_at + 24 * 3600
    assert server.batches_created == before + 1
    done = wait(client, batch.id)
    assert done.status == "completed", done.errors
    assert done.model == "demo-vision"
    assert done.request_counts is not None
    assert done.request_counts.model_dump() == {"total": 5, "completed": 5, "failed": 0}
    assert done.error_file_id is None and done.output_file_id
    assert done.created_at <= (done.in_progress_at or 0) <= (done.finalizing_at or 0)
    assert (done.finalizing_at or 0) <= (done.completed_at or 0)
    out = records(client, done.output_file_id)
    assert [r["custom_id"] for r in out] == list(LIVE_BODIES)  # input order, one each
    usage_total = 0
    for r in out:
        assert r["id"].startswith("batch_req_") and r["error"] is None
        response = r["response"]
        assert response["status_code"] == 200 and response["request_id"].startswith("req_")
        live = client.chat.completions.with_raw_response.create(**LIVE_BODIES[r["custom_id"]])
        expected = live.http_response.json()
        got = response["body"]
        for key in ("id", "created"):
            assert got.pop(key) and expected.pop(key)
        assert got == expected  # choices (text, finish_reason), usage, model, object
        usage_total += got["usage"]["total_tokens"]
    assert done.usage is not None and done.usage.total_tokens == usage_total
    assert "`6 * 7 = 42`" in out[1]["response"]["body"]["choices"][0]["message"]["content"]


def test_image_model_lines_return_the_live_image(client: openai.OpenAI) -> None:
    body = ask("a blue circle on a yellow background", model="demo-image")
    done = wait(client, submit(client, [line("draw", body)]).id)
    (rec,) = records(client, done.output_file_id)
    live = client.chat.completions.create(**body)
    assert rec["response"]["body"]["choices"][0]["message"]["content"] == (
        live.choices[0].message.content
    )
    assert "data:image/png;base64," in (live.choices[0].message.content or "")


SCHEMA = {
    "type": "object",
    "properties": {
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "dominant_color": {"type": "string"},
        "orientation": {"type": "string", "enum": ["landscape", "portrait", "square"]},
    },
    "required": ["width", "height", "dominant_color", "orientation"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}
TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Oslo", "days": 2}'},
}
STRUCTURED_BODIES: dict[str, dict[str, Any]] = {
    "schema": {
        "model": "demo-vision",
        "messages": [user_message("Describe.", red_square())],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "picture", "schema": SCHEMA, "strict": True},
        },
    },
    "tool-call": ask("Use get_weather for Oslo for 2 days.", tools=[WEATHER_TOOL], n=2),
    "tool-answer": {
        "model": "demo-vision",
        "messages": [
            {"role": "user", "content": "Use get_weather for Oslo for 2 days."},
            {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 4, "sky": "rain"}'},
        ],
        "tools": [WEATHER_TOOL],
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "weather",
                "schema": {
                    "type": "object",
                    "properties": {"temp_c": {"type": "number"}, "sky": {"type": "string"}},
                    "required": ["temp_c", "sky"],
                },
            },
        },
    },
}


def test_structured_output_and_tool_call_lines_equal_live(client: openai.OpenAI) -> None:
    done = wait(client, submit(client, [line(k, v) for k, v in STRUCTURED_BODIES.items()]).id)
    assert done.status == "completed", done.errors
    assert done.request_counts is not None and done.request_counts.completed == 3
    out = {r["custom_id"]: r["response"]["body"] for r in records(client, done.output_file_id)}
    assert list(out) == list(STRUCTURED_BODIES)
    for cid, got in out.items():
        live = client.chat.completions.with_raw_response.create(**STRUCTURED_BODIES[cid])
        expected = live.http_response.json()
        for key in ("id", "created"):
            assert got.pop(key) and expected.pop(key)
        assert got == expected, cid
    picture = json.loads(out["schema"]["choices"][0]["message"]["content"])
    assert (picture["width"], picture["height"], picture["orientation"]) == (120, 80, "landscape")
    calls = [c["message"]["tool_calls"] for c in out["tool-call"]["choices"]]
    assert len(calls) == 2 and calls[0] == calls[1]
    assert calls[0][0]["function"]["name"] == "get_weather"
    assert json.loads(calls[0][0]["function"]["arguments"])["city"] == "Oslo"
    assert out["tool-call"]["choices"][0]["finish_reason"] == "tool_calls"
    weather = json.loads(out["tool-answer"]["choices"][0]["message"]["content"])
    assert weather == {"temp_c": 4, "sky": "rain"}


IMAGE_BODIES: dict[str, dict[str, Any]] = {
    "b64": {"model": "demo-image", "prompt": "a red circle on a blue background"},
    "two": {"model": "demo-image", "prompt": "three small stars", "n": 2, "size": "96x64"},
    "url": {
        "model": "demo-image",
        "prompt": "a green square",
        "response_format": "url",
        "output_format": "png",
    },
    "jpeg": {
        "model": "demo-image",
        "prompt": "a yellow heart",
        "output_format": "jpeg",
        "quality": "high",
    },
    "bad-size": {"model": "demo-image", "prompt": "a dot", "size": "5x5"},
}


def test_images_generations_lines_equal_live(client: openai.OpenAI, http: httpx.Client) -> None:
    batch = submit(client, [line(k, v, url=IMAGES) for k, v in IMAGE_BODIES.items()], IMAGES)
    assert batch.endpoint == IMAGES
    done = wait(client, batch.id)
    assert done.status == "completed", done.errors
    assert done.model == "demo-image"
    assert done.request_counts is not None
    assert done.request_counts.model_dump() == {"total": 5, "completed": 4, "failed": 1}
    out = records(client, done.output_file_id)
    assert [r["custom_id"] for r in out] == ["b64", "two", "url", "jpeg"]
    tokens = [0, 0]
    for r in out:
        live = http.post("/images/generations", json=IMAGE_BODIES[r["custom_id"]])
        assert live.status_code == 200
        assert r["response"]["status_code"] == 200
        assert r["response"]["request_id"] == live.headers["x-request-id"]
        assert r["response"]["body"] == live.json()  # created included: from the request
        tokens[0] += r["response"]["body"]["usage"]["input_tokens"]
        tokens[1] += r["response"]["body"]["usage"]["output_tokens"]
    assert done.usage is not None
    assert [done.usage.input_tokens, done.usage.output_tokens] == tokens
    by_id = {r["custom_id"]: r["response"]["body"] for r in out}
    assert len(by_id["two"]["data"]) == 2 and by_id["two"]["size"] == "96x64"
    assert by_id["jpeg"]["output_format"] == "jpeg"
    url = by_id["url"]["data"][0]["url"]
    png = httpx.get(url)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    (err,) = records(client, done.error_file_id)
    live = http.post("/images/generations", json=IMAGE_BODIES["bad-size"])
    assert err["custom_id"] == "bad-size" and err["error"] is None
    assert err["response"]["status_code"] == live.status_code == 400
    assert err["response"]["body"] == live.json()
    assert err["response"]["body"]["error"]["param"] == "size"


def test_images_batch_answers_dall_e_like_the_live_route(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    body = {"model": "dall-e-2", "prompt": "a purple ring", "size": "256x256"}
    done = wait(client, submit(client, [line("d", body, url=IMAGES)], IMAGES).id)
    assert done.status == "completed", done.errors
    (rec,) = records(client, done.output_file_id)
    assert rec["response"]["body"] == http.post("/images/generations", json=body).json()
    assert set(rec["response"]["body"]) == {"created", "data"}  # url, no usage
    assert done.usage is not None and done.usage.total_tokens == 0


@pytest.mark.parametrize(
    ("bad", "code", "param"),
    [
        ({"model": "demo-image"}, "invalid_request", "body.prompt"),
        ({"model": "demo-image", "prompt": "x", "stream": True}, "streaming_unsupported", None),
        ({"model": "demo-vision", "prompt": "x"}, "model_not_found", "body.model"),
        ({"model": "demo-image@status=429", "prompt": "x"}, "model_not_found", "body.model"),
        ({"model": "gpt-image-1", "prompt": "x"}, "mismatched_model", "body.model"),
        ({"prompt": "x"}, "invalid_request", "body.model"),
    ],
)
def test_images_line_validation_errors(
    client: openai.OpenAI, bad: dict[str, Any], code: str, param: str | None
) -> None:
    first = line("first", {"model": "demo-image", "prompt": "a dot"}, url=IMAGES)
    (err,) = failed_with(client, [first, line("second", bad, url=IMAGES)], IMAGES)
    assert (err.code, err.line, err.param) == (code, 2, param or "body.stream")
    assert err.message


def test_a_chat_line_in_an_images_batch_is_an_invalid_url(client: openai.OpenAI) -> None:
    (err,) = failed_with(client, [line("chat", ask("hi"))], IMAGES)
    assert (err.code, err.param) == ("invalid_url", "url")


def test_ten_thousand_lines_are_fast(client: openai.OpenAI, server: DemoServer) -> None:
    n = 10_000
    lines = [line(f"item-{i}", ask(f"what is {i} + 1?")) for i in range(n)]
    t0 = time.perf_counter()
    done = wait(client, submit(client, lines).id)
    elapsed = time.perf_counter() - t0
    assert done.status == "completed"
    assert done.request_counts is not None and done.request_counts.completed == n
    out = records(client, done.output_file_id)
    assert len(out) == n and out[-1]["custom_id"] == f"item-{n - 1}"
    assert str(n) in out[-1]["response"]["body"]["choices"][0]["message"]["content"]
    assert server.batch_answers[f"item-{n - 1}"] >= 1
    assert elapsed < 10, f"{n} lines took {elapsed:.1f} s"  # about 1 s here


# -- cancel, fail, expire --------------------------------------------------------------


def test_cancel_mid_way_keeps_the_finished_lines(slow: tuple[DemoServer, openai.OpenAI]) -> None:
    server, client = slow
    n = 60
    batch = submit(client, [line(f"c{i}", ask(f"cancel test {i}")) for i in range(n)])
    running = wait(client, batch.id, until=("in_progress", *FINAL))
    assert running.status == "in_progress" and running.in_progress_at
    deadline = time.monotonic() + 10
    while completed(client, batch.id) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at
    done = wait(client, batch.id)
    assert done.status == "cancelled" and done.cancelled_at
    assert client.batches.cancel(batch.id).status == "cancelled"  # again: allowed, no change
    counts = done.request_counts
    assert counts is not None and 3 <= counts.completed < n and counts.failed == 0
    out = records(client, done.output_file_id)
    errors = records(client, done.error_file_id)
    assert len(out) == counts.completed
    assert {r["response"]["status_code"] for r in out} == {200}
    assert [r["custom_id"] for r in out + errors] == [f"c{i}" for i in range(n)]
    assert {r["error"]["code"] for r in errors} == {"batch_cancelled"}
    assert all(r["response"] is None for r in errors)
    assert server.batch_answers.get(f"c{n - 1}") is None  # never answered


def completed(c: openai.OpenAI, batch_id: str) -> int:
    counts = c.batches.retrieve(batch_id).request_counts
    assert counts is not None
    return counts.completed


def test_cancel_a_finished_batch_is_409(client: openai.OpenAI) -> None:
    done = wait(client, submit(client, [line("one", ask("hi"))]).id)
    with pytest.raises(openai.ConflictError, match="Cannot cancel a batch with status 'completed'"):
        client.batches.cancel(done.id)


def test_batch_fail_fault_from_the_header(client: openai.OpenAI) -> None:
    batch = submit(client, [line("x", ask("hi"))], extra_headers={"X-Demo-Fault": "batch-fail"})
    done = wait(client, batch.id)
    assert done.status == "failed" and done.failed_at and done.in_progress_at is None
    assert done.errors is not None and done.errors.data is not None
    (err,) = done.errors.data
    assert err.code == "demo_fault" and "batch-fail" in (err.message or "")
    assert done.output_file_id is None and done.error_file_id is None


def test_batch_expire_fault_from_metadata(client: openai.OpenAI) -> None:
    meta = {"demo_fault": "batch-expire=2", "project": "tests"}
    batch = submit(client, [line(f"e{i}", ask(f"expire {i}")) for i in range(5)], metadata=meta)
    assert batch.metadata == meta
    done = wait(client, batch.id)
    assert done.status == "expired" and done.expired_at
    assert done.request_counts is not None and done.request_counts.completed == 2
    assert [r["custom_id"] for r in records(client, done.output_file_id)] == ["e0", "e1"]
    errors = records(client, done.error_file_id)
    assert [r["custom_id"] for r in errors] == ["e2", "e3", "e4"]
    assert errors[0]["error"] == {
        "code": "batch_expired",
        "message": "This request could not be executed before the completion window expired.",
    }


def test_a_bad_fault_in_metadata_is_400(client: openai.OpenAI) -> None:
    f = upload(client, [line("x", ask("hi"))])
    with pytest.raises(openai.BadRequestError, match="unknown demo fault") as e:
        client.batches.create(
            input_file_id=f.id,
            endpoint=CHAT,
            completion_window="24h",
            metadata={"demo_fault": "explode"},
        )
    assert e.value.param == "metadata.demo_fault"


# -- per-line errors -------------------------------------------------------------------


def test_lines_the_chat_route_rejects_go_to_the_error_file(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    lines = [
        line("ok", ask("hello")),
        line("bad-n", ask("hello", n=0)),
        line("no-messages", {"model": "demo-vision", "messages": []}),
        line("fault", ask("hello", model="demo-vision@status=429")),
        line("bad-fault", ask("hello", model="demo-vision@explode")),
    ]
    done = wait(client, submit(client, lines).id)
    assert done.status == "completed"
    assert done.request_counts is not None
    assert done.request_counts.model_dump() == {"total": 5, "completed": 1, "failed": 4}
    assert [r["custom_id"] for r in records(client, done.output_file_id)] == ["ok"]
    errors = {r["custom_id"]: r for r in records(client, done.error_file_id)}
    assert list(errors) == ["bad-n", "no-messages", "fault", "bad-fault"]
    for cid, r in errors.items():
        live = http.post("/chat/completions", json=lines_body(lines, cid))
        assert r["error"] is None
        assert r["response"]["status_code"] == live.status_code >= 400
        assert r["response"]["body"] == live.json()  # the live route's error body
    assert errors["fault"]["response"]["body"]["error"]["type"] == "rate_limit_error"


def lines_body(lines: list[dict[str, Any]], custom_id: str) -> dict[str, Any]:
    return next(x["body"] for x in lines if x["custom_id"] == custom_id)


def test_status_fault_with_times_fails_only_the_first_lines(client: openai.OpenAI) -> None:
    model = "demo-vision@status=500;times=2;tag=batch-times"
    done = wait(
        client, submit(client, [line(f"t{i}", ask("hi", model=model)) for i in range(4)]).id
    )
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 2)
    assert [r["custom_id"] for r in records(client, done.error_file_id)] == ["t0", "t1"]


# -- validation ------------------------------------------------------------------------


def failed_with(
    c: openai.OpenAI,
    lines: Sequence[dict[str, Any] | str],
    endpoint: Literal["/v1/chat/completions", "/v1/images/generations"] = CHAT,
) -> list[Any]:
    done = wait(c, submit(c, lines, endpoint).id)
    assert done.status == "failed" and done.failed_at
    assert done.output_file_id is None and done.error_file_id is None
    assert done.request_counts is not None and done.request_counts.total == 0
    assert done.errors is not None and done.errors.object == "list"
    return done.errors.data or []


def test_a_malformed_line_fails_the_batch(client: openai.OpenAI) -> None:
    (err,) = failed_with(client, [line("a", ask("hi")), '{"custom_id": "b", oops', ""])
    assert (err.code, err.line, err.param) == ("invalid_json_line", 2, None)
    assert err.message == "This line is not parseable as valid JSON."


@pytest.mark.parametrize(
    ("bad", "code", "param"),
    [
        ({"url": "/v1/embeddings"}, "invalid_url", "url"),
        ({"method": "GET"}, "invalid_request", "method"),
        ({"custom_id": None}, "missing_required_parameter", "custom_id"),
        ({"body": None}, "missing_required_parameter", "body"),
        ({"body": ask("hi", stream=True)}, "streaming_unsupported", "body.stream"),
        ({"body": ask("hi", model="gpt-4o")}, "model_not_found", "body.model"),
        ({"body": ask("hi", model="demo-image")}, "mismatched_model", "body.model"),
        ({"body": {"messages": []}}, "invalid_request", "body.model"),
        ({"body": {"model": "demo-vision"}}, "invalid_request", "body.messages"),
        ({"custom_id": "first"}, "duplicate_custom_id", "custom_id"),
    ],
)
def test_line_validation_errors(
    client: openai.OpenAI, bad: dict[str, Any], code: str, param: str
) -> None:
    first = line("first", ask("hi"))
    second = {**line("second", ask("hi again")), **bad}
    second = {k: v for k, v in second.items() if v is not None}
    (err,) = failed_with(client, [first, second])
    assert (err.code, err.line, err.param) == (code, 2, param)
    assert err.message


def test_every_bad_line_is_listed_and_an_empty_file_fails(client: openai.OpenAI) -> None:
    errs = failed_with(client, ["[1, 2]", line("a", ask("hi")), "null", line("a", ask("x"))])
    assert [(e.code, e.line) for e in errs] == [
        ("invalid_json_line", 1),
        ("invalid_json_line", 3),
        ("duplicate_custom_id", 4),
    ]
    (err,) = failed_with(client, ["", "   "])
    assert err.code == "empty_file" and err.line is None


@pytest.mark.parametrize(
    ("fields", "status", "param"),
    [
        ({"endpoint": "/v1/images/edits"}, 400, "endpoint"),
        ({"endpoint": "/v1/nowhere"}, 400, "endpoint"),
        ({"completion_window": "1h"}, 400, "completion_window"),
        ({"input_file_id": "file-nope"}, 404, "id"),
        ({"metadata": {"tags": ["a", "b"]}}, 400, "metadata.tags"),
        ({"input_file_id": None}, 400, "input_file_id"),
    ],
)
def test_create_refuses_bad_requests(
    client: openai.OpenAI, http: httpx.Client, fields: dict[str, Any], status: int, param: str
) -> None:
    f = upload(client, [line("x", ask("hi"))])
    body = {"input_file_id": f.id, "endpoint": CHAT, "completion_window": "24h", **fields}
    r = http.post("/batches", json={k: v for k, v in body.items() if v is not None})
    assert r.status_code == status
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["param"] == param


def test_create_refuses_a_file_of_another_purpose(client: openai.OpenAI) -> None:
    f = client.files.create(file=("notes.txt", b"hello"), purpose="user_data")
    with pytest.raises(openai.BadRequestError, match="purpose 'batch'"):
        client.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h")


def test_unknown_batches_are_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="No batch found"):
        client.batches.retrieve("batch_nope")
    with pytest.raises(openai.NotFoundError):
        client.batches.cancel("batch_nope")


# -- listing ---------------------------------------------------------------------------


def test_batches_list_pages_newest_first(client: openai.OpenAI) -> None:
    ids = [submit(client, [line("x", ask(f"list {i}"))]).id for i in range(3)]
    page = client.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2]
    assert page.has_more is True
    raw = client.batches.with_raw_response.list(limit=2).http_response.json()
    assert raw["object"] == "list" and raw["first_id"] == ids[2] and raw["last_id"] == ids[1]
    everything = [b.id for b in client.batches.list(limit=2)]  # the client follows ``after``
    assert everything[:3] == ids[::-1]
    assert len(everything) == len(set(everything))
    last = client.batches.list(after=everything[-2], limit=5)
    assert [b.id for b in last.data] == everything[-1:] and last.has_more is False


def test_files_list_filters_orders_and_pages(client: openai.OpenAI, http: httpx.Client) -> None:
    mine = [client.files.create(file=(f"f{i}.txt", b"x"), purpose="vision").id for i in range(3)]
    listed = [f.id for f in client.files.list(purpose="vision")]
    assert listed[:3] == mine[::-1]
    assert {f.purpose for f in client.files.list(purpose="vision")} == {"vision"}
    asc = http.get("/files", params={"purpose": "vision", "order": "asc", "limit": 2}).json()
    assert [f["id"] for f in asc["data"]] == listed[::-1][:2] and asc["has_more"] is True
    rest = http.get(
        "/files", params={"purpose": "vision", "order": "asc", "after": asc["last_id"]}
    ).json()
    assert [f["id"] for f in rest["data"]] == listed[::-1][2:]
    assert http.get("/files", params={"limit": 0}).status_code == 400
    assert http.get("/files", params={"order": "up"}).status_code == 400
    assert http.get("/files", params={"after": "file-gone"}).status_code == 400


# -- files -----------------------------------------------------------------------------


def test_file_upload_retrieve_content_delete(client: openai.OpenAI) -> None:
    data = bytes(range(256)) * 64 + b"\r\n--boundary-lookalike--\r\n" + b"\x00" * 10
    f = client.files.create(file=("blob.bin", data), purpose="user_data")
    assert f.object == "file" and f.bytes == len(data) and f.filename == "blob.bin"
    assert f.status == "processed" and f.purpose == "user_data" and f.expires_at is None
    assert client.files.retrieve(f.id) == f
    assert client.files.content(f.id).content == data
    deleted = client.files.delete(f.id)
    assert deleted.deleted is True and deleted.id == f.id and deleted.object == "file"
    with pytest.raises(openai.NotFoundError, match="No such File object"):
        client.files.retrieve(f.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(f.id)


def test_batch_files_expire_in_30_days_and_must_be_jsonl(client: openai.OpenAI) -> None:
    f = upload(client, [line("x", ask("hi"))])
    assert f.expires_at == f.created_at + 30 * 24 * 3600
    g = client.files.create(
        file=("r.jsonl", b"{}\n"),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 7200},
    )
    assert g.expires_at == g.created_at + 7200
    with pytest.raises(openai.BadRequestError, match=r"Must be \.jsonl"):
        client.files.create(file=("requests.json", b"{}"), purpose="batch")


def test_upload_errors(http: httpx.Client) -> None:
    r = http.post("/files", data={"purpose": "homework"}, files={"file": ("a.txt", b"x")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "purpose"
    assert "Supported values are" in r.json()["error"]["message"]
    r = http.post("/files", data={"purpose": "batch"}, files={"other": ("a.jsonl", b"x")})
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_required_parameter"
    r = http.post("/files", json={"purpose": "batch"})
    assert r.status_code == 400 and "multipart/form-data" in r.json()["error"]["message"]
    assert http.put("/files").status_code == 405
    assert http.get("/files/file-x/other").status_code == 404


def test_big_upload_is_fast(client: openai.OpenAI) -> None:
    data = (b"0123456789abcdef" * 4096 + b"\n") * 300  # about 20 MB
    t0 = time.perf_counter()
    f = client.files.create(file=("big.bin", data), purpose="user_data")
    assert time.perf_counter() - t0 < 3
    assert f.bytes == len(data)
    assert client.files.content(f.id).content == data


def test_published_images_are_still_served(http: httpx.Client) -> None:
    body = ask("a red square", model="demo-image")
    r = http.post("/chat/completions", json=body, headers={"X-Demo-Fault": "image-url"})
    url = next(w for w in r.json()["choices"][0]["message"]["content"].split("(") if ".png" in w)
    png = httpx.get(url.split(")")[0])
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


# -- the multipart reader --------------------------------------------------------------


def test_multipart_reader_keeps_bytes_and_quoted_names() -> None:
    payload = b"a\r\nb\r\n--not-the-boundary\r\n\x00\xff"
    body = (
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="file"; filename="my; file.jsonl"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + payload + b"\r\n--XyZ--\r\n"
    )
    purpose, file = parse_multipart('multipart/form-data; boundary="XyZ"', body)
    assert (purpose.name, purpose.text, purpose.filename) == ("purpose", "batch", None)
    assert (file.name, file.filename, file.data) == ("file", "my; file.jsonl", payload)


def test_multipart_reader_utf8_names_padding_and_preamble() -> None:
    body = (
        b"a preamble line mentioning --B in passing\r\n"
        b"--B \t\r\n"  # transport padding after the boundary (RFC 2046)
        + 'Content-Disposition: form-data; name="file"; filename="données é.jsonl"\r\n'.encode()
        + b"\r\n\x89PNG\r\n-B --X\r\n--B--\r\nan epilogue"
    )
    (file,) = parse_multipart("multipart/form-data; boundary=B", body)
    assert (file.filename, file.data) == ("données é.jsonl", b"\x89PNG\r\n-B --X")
    bad_utf8 = (
        b'--B\r\nContent-Disposition: form-data; name="f"; filename="x\xff.txt"\r\n\r\n1\r\n--B--'
    )
    (part,) = parse_multipart("multipart/form-data; boundary=B", bad_utf8)
    assert part.filename == "x\ufffd.txt"  # replaced, so the JSON reply can carry it


def test_upload_keeps_a_non_ascii_file_name(client: openai.OpenAI) -> None:
    f = client.files.create(file=("données é.jsonl", b"{}\n"), purpose="user_data")
    assert f.filename == "données é.jsonl"
    assert client.files.retrieve(f.id).filename == "données é.jsonl"


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("application/json", b"{}"),
        ("multipart/form-data", b"--x\r\n"),
        ("multipart/form-data; boundary=x", b"nothing here"),
        ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="a"'),
        ("multipart/form-data; boundary=x", b"--x\r\nX-No-Disposition: 1\r\n\r\nv\r\n--x--"),
    ],
)
def test_multipart_reader_refuses_malformed_bodies(ctype: str, body: bytes) -> None:
    with pytest.raises(DemoHTTPError) as e:
        parse_multipart(ctype, body)
    assert e.value.status == 400


# -- server plumbing -------------------------------------------------------------------


def test_ids_are_deterministic_per_server() -> None:
    def run() -> tuple[str, str]:
        with (
            serve_demo() as s,
            openai.OpenAI(base_url=s.url, api_key="sk-test-batch", max_retries=0) as c,
        ):
            b = submit(c, [line("x", ask("hi"))])
            return b.input_file_id, b.id

    assert run() == run()


def test_batch_delay_is_checked_and_settable() -> None:
    with pytest.raises(ValueError, match="batch_delay"):
        serve_demo(batch_delay=-1)
    with serve_demo(batch_delay=0.25) as s:
        assert s.batch_delay == 0.25
        s.batch_delay = 0
        assert s.batch_delay == 0.0 and s.batches_created == 0 and s.batch_answers == {}


def test_close_stops_running_batches_quickly() -> None:
    s = serve_demo(batch_delay=5)
    with openai.OpenAI(base_url=s.url, api_key="sk-test-batch", max_retries=0) as c:
        submit(c, [line(f"z{i}", ask("hi")) for i in range(10)])
    t0 = time.perf_counter()
    s.close()
    assert time.perf_counter() - t0 < 3


def test_cli_passes_batch_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_server(*args: Any, **kwargs: Any) -> None:
        seen.update(kwargs)
        raise OSError("stop here")

    monkeypatch.setattr(demo_main, "DemoServer", fake_server)
    assert demo_main.main(["--port", "0", "--batch-delay", "0.5"]) == 1
    assert seen["batch_delay"] == 0.5
    with pytest.raises(SystemExit):
        demo_main.main(["--batch-delay", "-1"])


def test_status_faults_apply_to_files_and_batches(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    r = http.get("/batches", headers={"X-Demo-Fault": "status=503;retry-after=1"})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    r = http.post("/files", headers={"X-Demo-Fault": "status=429"}, files={"file": ("a", b"x")})
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    spec = "batch-fail;times=1;tag=once"
    first = submit(client, [line("x", ask("hi"))], extra_headers={"X-Demo-Fault": spec})
    second = submit(client, [line("x", ask("hi"))], extra_headers={"X-Demo-Fault": spec})
    assert wait(client, first.id).status == "failed"
    assert wait(client, second.id).status == "completed"
