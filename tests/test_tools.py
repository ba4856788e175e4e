"""Tool calls (DESIGN 4.3): every shape shown and kept; Python functions run in a bounded loop.

The replies come from loopback servers that send them in random 1-9 byte
pieces; the loop's server is scripted (it answers each request from what the
request carries), so the tests see exactly what the client sent back.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import re
import threading
from collections.abc import Callable, Iterator
from html import unescape
from pathlib import Path
from typing import Any, Literal

import jsonschema
import pytest
from _servers import RecordedRequest, ReplayServer, Reply
from PIL import Image

import jupyter_chatimg as ci
from jupyter_chatimg._render import PrintSink

TOOLS = Path(__file__).parent / "fixtures" / "tools"
EXPECTED = json.loads((TOOLS / "expected.json").read_text(encoding="utf-8"))
SCHEMA = json.loads(
    (Path(__file__).parent / "fixtures" / "chat_request.schema.json").read_text(encoding="utf-8")
)
PATH = "/v1/chat/completions"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


class Captured:
    """A notebook-like sink: the reply's row of outputs after every show (text and plain of
    its text outputs, whether it was final), and the images it holds."""

    wants_deltas = False

    def __init__(self) -> None:
        self.updates: list[tuple[str, str, bool]] = []
        self.finals: list[bool] = []
        self.row: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def show(
        self, slot: int, data: dict[str, Any], metadata: dict[str, Any], *, final: bool
    ) -> None:
        with self.lock:
            if slot < len(self.row):
                self.row[slot] = data
            else:
                assert slot == len(self.row), "slots are created in order"
                self.row.append(data)
            texts = [d for d in self.row if "text/html" in d]
            html = "".join(d["text/html"] for d in texts)
            plain = "\n".join(d["text/plain"] for d in texts if d["text/plain"])
            self.updates.append((text_of(html), plain, final))
            self.finals.append(final)

    def delta(self, text: str) -> None:  # pragma: no cover - wants_deltas is False
        pass

    @property
    def images(self) -> list[Image.Image]:
        out = []
        for d in self.row:
            mime = next((k for k in d if k.startswith("image/")), None)
            if mime is not None:
                out.append(Image.open(io.BytesIO(base64.b64decode(d[mime]))))
        return out

    @property
    def html(self) -> str:
        return "".join(d["text/html"] for d in self.row if "text/html" in d)

    @property
    def final(self) -> str:
        """The row's text at the end; the final shows come last, none after them."""
        first = self.finals.index(True)
        assert all(self.finals[first:]), self.finals
        return self.updates[-1][0]


def text_of(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html))


def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    body = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n"


def call_reply(*calls: tuple[str, str, dict[str, Any] | str], text: str = "") -> bytes:
    """A streamed reply asking for ``calls`` (id, name, arguments), arguments in pieces."""
    out = [chunk({"role": "assistant", "content": text or None})]
    for i, (cid, name, args) in enumerate(calls):
        raw = args if isinstance(args, str) else json.dumps(args)
        head = {"index": i, "id": cid, "type": "function", "function": {"name": name}}
        out.append(chunk({"tool_calls": [dict(head, function={"name": name, "arguments": ""})]}))
        for j in range(0, len(raw), 6):
            piece = {"index": i, "function": {"arguments": raw[j : j + 6]}}
            out.append(chunk({"tool_calls": [piece]}))
    out.append(chunk({}, "tool_calls"))
    out.append("data: [DONE]\n\n")
    return "".join(out).encode()


def text_reply(text: str) -> bytes:
    words = [w + " " for w in text.split(" ")]
    words[-1] = words[-1].rstrip()
    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": w}) for w in words]
    out += [chunk({}, "stop"), "data: [DONE]\n\n"]
    return "".join(out).encode()


def sse(body: bytes, seed: int = 0) -> Reply:
    return Reply(
        headers={"Content-Type": "text/event-stream"},
        body=body,
        seed=seed,
        chunk_sizes=(1, 9),
    )


class Scripted:
    """A loopback server answering each chat request with ``script(request, n)``."""

    def __init__(self, script: Callable[[dict[str, Any], int], bytes]) -> None:
        self.server = ReplayServer()
        self.bodies: list[dict[str, Any]] = []
        self.script = script
        self.server.add_handler("POST", PATH, self._answer)

    def _answer(self, request: RecordedRequest) -> Reply:
        body = request.json
        self.bodies.append(body)
        return sse(self.script(body, len(self.bodies)), seed=len(self.bodies))

    @property
    def url(self) -> str:
        return self.server.url

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def scripted(clean_env: pytest.MonkeyPatch) -> Iterator[Callable[..., Scripted]]:
    made: list[Scripted] = []

    def make(script: Callable[[dict[str, Any], int], bytes]) -> Scripted:
        srv = Scripted(script)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.close()


def ask(srv: Scripted, prompt: str = "Look closer.", **kwargs: Any) -> ci.ChatResult:
    kwargs.setdefault("display", False)
    return ci.chat(prompt, base_url=srv.url, max_retries=0, **kwargs)


def valid(body: dict[str, Any]) -> None:
    jsonschema.validate(body, SCHEMA)


# --- every shape of 4.3 --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("seed", range(8))
def test_every_tool_call_shape_in_random_pieces(
    name: str, seed: int, replay_server: ReplayServer, clean_env: pytest.MonkeyPatch
) -> None:
    want = EXPECTED[name]
    replay_server.add_file(TOOLS / name, seed=seed)
    sink = Captured()
    result = ci.chat(
        "Weather and a closer look?",
        base_url=replay_server.url,
        stream=name.endswith(".sse"),
        tools=[WEATHER],
        sink=sink,
        max_retries=0,
    )
    got = [[c.id, c.name, c.arguments] for c in result.tool_calls]
    assert got == want["calls"]
    assert [c.args for c in result.tool_calls] == [json.loads(c[2]) for c in want["calls"]]
    assert result.finish_reason == want["finish_reason"]
    assert result.text == want["text"]
    assert not any(c.ran for c in result.tool_calls)  # dicts are declared, never run
    assert result.rounds == []
    # Shown: each call's name and its arguments as pretty JSON.
    final = sink.final
    for _, fname, args in want["calls"]:
        assert f"🔧 {fname}" in final
        assert json.dumps(json.loads(args), indent=2, ensure_ascii=False) in final
    if want["text"]:
        assert final.index(want["text"]) < final.index("🔧")


def test_tool_calls_are_shown_while_they_stream(replay_server: ReplayServer) -> None:
    replay_server.add_file(TOOLS / "openai_stream_parallel.sse", seed=3)
    sink = Captured()
    ci.chat("hi", base_url=replay_server.url, tools=[WEATHER], sink=sink, update_interval=0.001)
    shown = [md for md, _, final in sink.updates if not final]
    assert any("zoom" in md and "get_weather" not in md for md in shown)  # the first alone
    assert "(reply)" not in sink.updates[-1][1] and "[tool call zoom]" in sink.updates[-1][1]


def test_tool_calls_in_a_terminal(replay_server: ReplayServer) -> None:
    replay_server.add_file(TOOLS / "stream_text_then_call.sse", seed=1)
    out = io.StringIO()
    ci.chat("hi", base_url=replay_server.url, tools=[WEATHER], sink=PrintSink(out))
    text = out.getvalue()
    assert text.startswith("Let me look closer.\n[tool call] zoom {\n")
    assert '"note": "the kite, \\"top-left\\" ü"' in text
    assert text.count("[tool call]") == 1


# --- the loop -------------------------------------------------------------------------


@dataclasses.dataclass
class Box:
    x: int
    y: int
    width: int = 32
    height: int = 32


def test_the_function_runs_once_and_its_result_goes_back(scripted: Any) -> None:
    seen: list[tuple[Any, ...]] = []

    def area(box: Box, unit: Literal["px", "cm"] = "px") -> dict[str, Any]:
        """The area of a box.

        Args:
            box: the region, in pixels.
            unit: px or cm.
        """
        seen.append((box, unit))
        return {"area": box.width * box.height, "unit": unit}

    def script(body: dict[str, Any], n: int) -> bytes:
        if n == 1:
            return call_reply(("call_9", "area", {"box": {"x": 1, "y": 2, "width": 10}}))
        return text_reply("The area is 320 px.")

    srv = scripted(script)
    result = ask(srv, tools=[area])
    assert seen == [(Box(1, 2, 10, 32), "px")]
    assert result.text == "The area is 320 px."
    assert len(srv.bodies) == 2
    first, second = srv.bodies
    for body in srv.bodies:
        valid(body)
    spec = first["tools"][0]["function"]
    assert spec["name"] == "area" and spec["description"] == "The area of a box."
    assert spec["parameters"]["required"] == ["box"]
    assert spec["parameters"]["properties"]["box"]["description"] == "the region, in pixels."
    assert spec["parameters"]["properties"]["unit"]["enum"] == ["px", "cm"]
    # The second request: the history, the assistant's calls, the tool message.
    assert second["messages"][: len(first["messages"])] == first["messages"]
    assistant, tool = second["messages"][len(first["messages"]) :]
    assert assistant["role"] == "assistant"
    assert assistant["tool_calls"][0]["id"] == "call_9"
    assert assistant["tool_calls"][0]["function"]["name"] == "area"
    assert tool == {
        "role": "tool",
        "tool_call_id": "call_9",
        "content": '{"area": 320, "unit": "px"}',
    }
    # Kept: rounds, calls with results.
    assert [r.text for r in result.rounds] == ["", "The area is 320 px."]
    (call,) = result.tool_calls
    assert call.ran and call.result == {"area": 320, "unit": "px"} and call.error is None
    assert call.round == 0 and call.seconds is not None
    assert result.rounds[0].tool_calls == [call]


def test_unknown_names_bad_arguments_and_exceptions_go_back_as_errors(scripted: Any) -> None:
    ran: list[int] = []

    def double(n: int) -> int:
        ran.append(n)
        if n < 0:
            raise ValueError("n must be >= 0")
        return 2 * n

    def script(body: dict[str, Any], n: int) -> bytes:
        if n == 1:
            return call_reply(
                ("c1", "triple", {"n": 2}),
                ("c2", "double", {"n": "two"}),
                ("c3", "double", "{not json"),
                ("c4", "double", {"n": -1}),
                ("c5", "double", {"n": 4}),
            )
        return text_reply("Done.")

    srv = scripted(script)
    sink = Captured()
    result = ci.chat("go", base_url=srv.url, tools=[double], sink=sink)
    assert ran == [-1, 4]
    tools = {
        m["tool_call_id"]: m["content"] for m in srv.bodies[1]["messages"] if m["role"] == "tool"
    }
    assert tools == {
        "c1": "error: unknown function 'triple'; the functions are: double",
        "c2": "error: bad arguments for double: argument n: Input should be a valid integer, "
        "unable to parse string as an integer",
        "c3": tools["c3"],
        "c4": "error: double raised ValueError: n must be >= 0",
        "c5": "8",
    }
    assert tools["c3"].startswith(
        "error: bad arguments for double: the arguments are not valid JSON"
    )
    assert result.text == "Done."
    final = sink.final
    # each error is one line in the output, and the loop went on
    assert final.count("sent back to the model") == 4
    assert "↳ double → 8" in final
    assert final.index("↳ double → 8") < final.index("Done.")


def test_a_server_that_always_calls_tools_is_stopped(scripted: Any) -> None:
    calls: list[int] = []

    def tick(n: int) -> str:
        calls.append(n)
        return f"tick {n}"

    srv = scripted(lambda body, n: call_reply((f"c{n}", "tick", {"n": n}), text=f"Round {n}."))
    sink = Captured()
    with pytest.raises(ci.ToolLoopError) as info:
        ci.chat("loop", base_url=srv.url, tools=[tick], max_tool_rounds=2, sink=sink)
    err = info.value
    assert "\n" not in str(err) and "max_tool_rounds 2" in str(err)
    assert calls == [1, 2]  # N rounds of tools, the model asked N + 1 times
    assert len(srv.bodies) == 3
    partial = err.partial
    assert partial is not None and partial.error is err
    assert [r.text for r in partial.rounds] == ["Round 1.", "Round 2.", "Round 3."]
    assert [c.ran for c in partial.tool_calls] == [True, True, False]
    assert partial.tool_calls[-1].name == "tick" and partial.tool_calls[-1].args == {"n": 3}
    final = sink.final
    assert all(f"Round {n}." in final for n in (1, 2, 3))
    assert final.count("🔧 tick") == 3 and final.count("↳ tick") == 2
    assert sink.html.rstrip().endswith("</em></p>") and final.count("⚠") == 1
    assert final.index("Round 3.") < final.index("⚠")


def test_an_image_result_goes_back_as_an_image_and_is_shown(scripted: Any) -> None:
    photo = Image.new("RGB", (320, 200), (200, 30, 30))
    photo.paste((20, 20, 220), (100, 50, 180, 130))

    def zoom(x: int, y: int, width: int, height: int) -> Image.Image:
        """Crop the photo to a box."""
        return photo.crop((x, y, x + width, y + height))

    def script(body: dict[str, Any], n: int) -> bytes:
        if n == 1:
            return call_reply(("z1", "zoom", {"x": 100, "y": 50, "width": 80, "height": 80}))
        return text_reply("The box is blue.")

    srv = scripted(script)
    sink = Captured()
    result = ci.chat(["What is in the box?", photo], base_url=srv.url, tools=[zoom], sink=sink)
    assert result.text == "The box is blue."
    second = srv.bodies[1]
    valid(second)
    tool = next(m for m in second["messages"] if m["role"] == "tool")
    assert tool["tool_call_id"] == "z1" and "image" in tool["content"]
    user = second["messages"][-1]
    assert user["role"] == "user"
    kinds = [p["type"] for p in user["content"]]
    assert kinds == ["text", "image_url"]
    assert "zoom" in user["content"][0]["text"]
    assert user["content"][1]["image_url"]["url"].startswith("data:image/")
    assert [im.size for im in sink.images] == [(80, 80)]  # shown
    assert "image 80×80" in sink.final
    assert result.tool_calls[0].result.size == (80, 80)
    assert result.images == []  # the model returned none


def test_non_streamed_rounds_and_a_forced_tool_choice(scripted: Any) -> None:
    def script(body: dict[str, Any], n: int) -> bytes:
        return b""  # unused

    srv = scripted(script)
    srv.server._queues.clear()
    whole_call = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "w1",
                            "type": "function",
                            "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
    answer = {
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "5"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 1, "total_tokens": 21},
    }
    srv.server.add_json("POST", PATH, whole_call)
    srv.server.add_json("POST", PATH, answer)

    def add(a: int, b: int) -> int:
        return a + b

    result = ask(srv, stream=False, tools=[add], tool_choice="required")
    first, second = (r.json for r in srv.server.requests)
    assert first["tool_choice"] == "required" and second["tool_choice"] == "auto"
    assert result.text == "5" and result.tool_calls[0].result == 5
    assert result.usage == {"prompt_tokens": 30, "completion_tokens": 6, "total_tokens": 36}


def test_only_the_functions_passed_ever_run(scripted: Any) -> None:
    import builtins

    def script(body: dict[str, Any], n: int) -> bytes:
        if n == 1:
            return call_reply(
                ("e1", "eval", {"source": "1/0"}),
                ("e2", "get_weather", {"city": "Paris"}),
                ("e3", "__import__", {"name": "os"}),
            )
        return text_reply("ok")

    srv = scripted(script)
    before = dict(vars(builtins))

    def noop() -> None:
        return None

    result = ask(srv, tools=[noop, WEATHER])
    assert not any(c.ran for c in result.tool_calls)
    errors = [c.error for c in result.tool_calls]
    assert errors[0] == "unknown function 'eval'; the functions are: noop"
    assert (
        errors[1]
        == "get_weather is declared as a tool dict, not a Python function: it cannot run here"
    )
    assert dict(vars(builtins)) == before


def test_stop_between_rounds_keeps_the_rounds(scripted: Any) -> None:
    cancel = ci.Cancel()

    def slow(n: int) -> int:
        cancel.set("stopped")
        return n

    srv = scripted(lambda body, n: call_reply((f"s{n}", "slow", {"n": n}), text=f"R{n}"))
    sink = Captured()
    with pytest.raises(ci.StreamError) as info:
        ci.chat("go", base_url=srv.url, tools=[slow], sink=sink, cancel=cancel)
    assert len(srv.bodies) == 1
    partial = info.value.partial
    assert partial is not None and [r.text for r in partial.rounds] == ["R1"]
    assert partial.tool_calls[0].ran
    assert "stopped; the rounds so far are kept" in sink.final


def test_an_interrupt_while_a_tool_runs_keeps_the_rounds_and_is_raised(scripted: Any) -> None:
    def stuck(n: int) -> int:
        raise KeyboardInterrupt

    srv = scripted(lambda body, n: call_reply(("k1", "stuck", {"n": 1}), text="Thinking."))
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt) as info:
        ci.chat("go", base_url=srv.url, tools=[stuck], sink=PrintSink(out))
    partial = info.value.partial  # type: ignore[attr-defined]
    assert isinstance(partial, ci.ChatResult)
    assert [r.text for r in partial.rounds] == ["Thinking."]
    assert str(partial.error) == "interrupted by the user while stuck ran; what arrived is kept"
    printed = out.getvalue()
    assert printed.startswith("Thinking.\n[tool call] stuck")
    assert printed.rstrip().endswith(
        "⚠ interrupted by the user while stuck ran; what arrived is kept"
    )


def test_the_loop_in_chat_many(scripted: Any) -> None:
    def script(body: dict[str, Any], n: int) -> bytes:
        asked = body["messages"][-1]
        if asked["role"] == "user":
            word = asked["content"]
            return call_reply((f"u-{word}", "upper", {"word": word}))
        return text_reply("Upper: " + asked["content"])

    srv = scripted(script)

    def upper(word: str) -> str:
        return word.upper()

    results = ci.chat_many(
        ["kite", "dune", "sand"], base_url=srv.url, tools=[upper], display=False, max_retries=0
    )
    assert [r.text for r in results] == ["Upper: KITE", "Upper: DUNE", "Upper: SAND"]
    assert all(len(r.rounds) == 2 for r in results)


def test_in_a_terminal_every_round_is_printed(scripted: Any) -> None:
    def script(body: dict[str, Any], n: int) -> bytes:
        if n == 1:
            return call_reply(("t1", "shout", {"word": "hi"}), text="Shouting.")
        return text_reply("Done: HI")

    def shout(word: str) -> str:
        return word.upper()

    srv = scripted(script)
    out = io.StringIO()
    ci.chat("go", base_url=srv.url, tools=[shout], sink=PrintSink(out))
    assert out.getvalue().splitlines() == [
        "Shouting.",
        "[tool call] shout {",
        '  "word": "hi"',
        "}",
        "↳ shout → 'HI' · " + out.getvalue().split("↳ shout → 'HI' · ")[1].split("\n")[0],
        "Done: HI",
    ]


def test_without_pydantic_the_standard_types_are_used(
    scripted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_chatimg import _typeschema

    monkeypatch.setattr(_typeschema, "pydantic_adapter", lambda tp: None)
    seen: list[Any] = []

    def place(box: Box, tags: list[str] | None = None) -> str:
        seen.append((box, tags))
        return "placed"

    def script(body: dict[str, Any], n: int) -> bytes:
        if n == 1:
            return call_reply(
                ("p1", "place", {"box": {"x": 1, "y": "2"}}),
                ("p2", "place", {"box": {"x": 1, "y": 2}, "tags": ["a"]}),
            )
        return text_reply("ok")

    srv = scripted(script)
    result = ask(srv, tools=[place])
    assert seen == [(Box(1, 2), ["a"])]
    assert (
        result.tool_calls[0].error
        == "bad arguments for place: argument box.y: '2' is not of type 'integer'"
    )
    props = srv.bodies[0]["tools"][0]["function"]["parameters"]["properties"]
    assert props["box"]["required"] == ["x", "y"]
    assert props["tags"]["anyOf"] == [
        {"type": "array", "items": {"type": "string"}},
        {"type": "null"},
    ]


# --- the panel ------------------------------------------------------------------------


def test_the_panel_runs_the_loop_and_stop_keeps_the_rounds(scripted: Any) -> None:
    from jupyter_chatimg.panel._widget import ChatPanel

    started = threading.Event()
    release = threading.Event()

    def lookup(word: str) -> str:
        """Look a word up."""
        started.set()
        release.wait(10)
        return word[::-1]

    def script(body: dict[str, Any], n: int) -> bytes:
        return call_reply((f"l{n}", "lookup", {"word": f"kite{n}"}), text=f"Looking up {n}.")

    srv = scripted(script)
    panel = ChatPanel(base_url=srv.url, tools=[lookup], max_retries=0, update_interval=0.01)
    try:
        panel.prompt.value = "Look it up."
        panel.send()
        assert started.wait(10)
        threading.Timer(0.2, release.set).start()  # the function returns while Stop waits
        panel.stop()  # mid-loop: the function is running
        assert panel.wait(10)
        result = panel.result
        assert result is not None
        assert [r.text for r in result.rounds] == ["Looking up 1."]
        assert result.tool_calls[0].ran and result.tool_calls[0].result == "1etik"
        assert "stopped" in str(result.error)
        reply = text_of(
            "".join(o["data"].get("text/html", "") for o in panel.history[-1].reply_outputs)
        )
        assert "Looking up 1." in reply and "🔧 lookup" in reply and "↳ lookup → '1etik'" in reply
        assert reply.count("stopped") == 1  # said once, in the reply (not again in the status)
        assert len(srv.bodies) == 1
    finally:
        release.set()
        panel.close()


def test_the_panel_with_a_schema_shows_one_line(scripted: Any) -> None:
    from jupyter_chatimg.panel._widget import ChatPanel

    srv = scripted(lambda body, n: text_reply("no json here"))
    panel = ChatPanel(base_url=srv.url, schema=Box, max_retries=0)
    try:
        panel.prompt.value = "Where?"
        panel.send()
        assert panel.wait(10)
        assert panel.status.value == (
            "⚠ the reply is not valid JSON (Expecting value at line 1 column 1); its text is "
            "kept in result.text"
        )
        assert panel.result is not None and panel.result.text == "no json here"
        assert srv.bodies[0]["response_format"]["json_schema"]["name"] == "Box"
    finally:
        panel.close()
