"""``--chat`` conversations: history with images both ways, bounds, resets, failed turns."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from _ipython import ipython_shell  # noqa: F401
from _servers import ReplayServer
from PIL import Image, ImageChops

import jupyter_chatimg as ci

CHAT = "/v1/chat/completions"


def png_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def image_of(url: str) -> Image.Image:
    raw = base64.b64decode(url.split(",", 1)[1])
    with Image.open(io.BytesIO(raw)) as img:
        return img.convert("RGB")


def completion(text: str, images: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if images:
        message["images"] = [{"type": "image_url", "image_url": {"url": u}} for u in images]
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def sse(text: str, *, finish: bool = True) -> bytes:
    chunks = [{"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}]
    if finish:
        chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if finish else b"")


def roles(body: dict[str, Any]) -> list[str]:
    return [m["role"] for m in body["messages"]]


def kinds(content: Any) -> list[str]:
    if isinstance(content, str):
        return ["str"]
    return [p["type"] for p in content]


def test_multi_turn_history_carries_sent_and_returned_images(
    ipython_shell: Any, replay_server: ReplayServer
) -> None:
    red = Image.new("RGB", (10, 10), "red")
    drawn = Image.new("RGB", (12, 8), "green")
    drawn_uri = png_uri(drawn)
    replay_server.add_json("POST", CHAT, completion("A red square."))
    replay_server.add_json("POST", CHAT, completion(f"Here:\n\n![out]({drawn_uri})", [drawn_uri]))
    replay_server.add_json("POST", CHAT, completion("Done."))
    shell = ipython_shell
    shell.user_ns["red"] = red
    line = f"--base-url {replay_server.url} --no-stream --chat"
    shell.run_cell_magic("chatimg", line + " -s 'You are terse.'", "What is {red}?")
    shell.run_cell_magic("chatimg", line, "Draw a green one.")
    shell.run_cell_magic("chatimg", line, "Make the last image grayscale.")

    first, second, third = (r.json for r in replay_server.requests_to(CHAT))
    assert roles(first) == ["system", "user"]
    assert kinds(first["messages"][1]["content"]) == ["text", "image_url", "text"]
    sent_red = first["messages"][1]["content"][1]["image_url"]["url"]
    assert image_of(sent_red).getpixel((0, 0)) == (255, 0, 0)

    # Turn 2: the history (with the image sent in turn 1) then the new prompt.
    assert roles(second) == ["system", "user", "assistant", "user"]
    assert second["messages"][1] == first["messages"][1]
    assert second["messages"][2] == {"role": "assistant", "content": "A red square."}
    assert second["messages"][3] == {"role": "user", "content": "Draw a green one."}

    # Turn 3: the image returned in turn 2 rides along with the next prompt;
    # the assistant's text keeps a marker instead of a second copy of the data URI.
    assert roles(third) == ["system", "user", "assistant", "user", "assistant", "user"]
    assert third["messages"][4] == {"role": "assistant", "content": "Here:\n\n[image 1]"}
    last = third["messages"][5]["content"]
    assert kinds(last) == ["text", "image_url", "text"]
    assert "previous reply" in last[0]["text"]
    assert ImageChops.difference(image_of(last[1]["image_url"]["url"]), drawn).getbbox() is None
    assert last[2] == {"type": "text", "text": "Make the last image grayscale."}

    conv = ci.conversation()
    assert len(conv) == 3 and len(conv.turns) == 3
    assert conv.messages() == [*third["messages"][1:], {"role": "assistant", "content": "Done."}]
    assert [im.convert("RGB").getpixel((0, 0)) for im in conv.images()] == [
        (255, 0, 0),
        (0, 128, 0),
    ]
    assert "3 turns" in repr(conv)
    assert shell.run_line_magic("chatimg_history", "") is conv


def test_reset_and_without_chat_no_history(ipython_shell: Any, replay_server: ReplayServer) -> None:
    replay_server.add_json("POST", CHAT, completion("one"))
    shell = ipython_shell
    line = f"--base-url {replay_server.url} --no-stream"
    shell.run_cell_magic("chatimg", line + " --chat", "first")
    shell.run_cell_magic("chatimg", line, "no history here")
    shell.run_cell_magic("chatimg", line + " --chat", "second")
    shell.run_line_magic("chatimg_reset", "")
    shell.run_cell_magic("chatimg", line + " --chat", "after reset")
    shell.run_cell_magic("chatimg", line + " --chat", "one more")
    shell.run_cell_magic("chatimg", line + " --chat --reset", "after --reset")
    bodies = [r.json for r in replay_server.requests_to(CHAT)]
    assert [len(b["messages"]) for b in bodies] == [1, 1, 3, 1, 3, 1]
    assert bodies[2]["messages"][0]["content"] == "first"
    assert len(ci.conversation()) == 1


def test_only_whole_replies_are_recorded(ipython_shell: Any, replay_server: ReplayServer) -> None:
    replay_server.add_json("POST", CHAT, {"error": {"message": "boom"}}, status=500)
    replay_server.add_sse("POST", CHAT, sse("cut sho", finish=False))
    replay_server.add_sse("POST", CHAT, sse("whole"))
    replay_server.add_sse("POST", CHAT, sse("again"))
    shell = ipython_shell
    line = f"--base-url {replay_server.url} --chat"
    shell.run_cell_magic("chatimg", line, "fails")  # HTTP 500
    shell.run_cell_magic("chatimg", line, "is cut")  # no [DONE]: partial
    assert shell.user_ns["_"].text == "cut sho" and shell.user_ns["_"].error is not None
    assert len(ci.conversation()) == 0
    shell.run_cell_magic("chatimg", line, "works")
    shell.run_cell_magic("chatimg", line, "next")
    last = replay_server.requests_to(CHAT)[-1].json
    assert last["messages"] == [
        {"role": "user", "content": "works"},
        {"role": "assistant", "content": "whole"},
        {"role": "user", "content": "next"},
    ]


def test_bounds_drop_oldest_turns_with_a_note(
    ipython_shell: Any, replay_server: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    replay_server.add_json("POST", CHAT, completion("ok"))
    shell = ipython_shell
    shell.user_ns["img"] = Image.new("RGB", (4, 4), "blue")
    shell.run_line_magic("config", "ChatImg.history_turns = 2")
    try:
        line = f"--base-url {replay_server.url} --no-stream --chat"
        for i in range(4):
            shell.run_cell_magic("chatimg", line, f"turn {i}")
        out = capsys.readouterr().out
        # shown once, with the request that left the turn out
        assert out.count("history: dropped the oldest turn to stay within 2 turns") == 1
        assert "ChatImg.history_turns" in out
        last = replay_server.requests_to(CHAT)[-1].json
        assert [m["content"] for m in last["messages"] if m["role"] == "user"] == [
            "turn 1",
            "turn 2",
            "turn 3",
        ]
        shell.run_line_magic("config", "ChatImg.history_turns = 10")
        shell.run_line_magic("config", "ChatImg.history_images = 1")
        shell.run_cell_magic("chatimg", line, "one {img}")
        shell.run_cell_magic("chatimg", line, "two {img}")
        shell.run_cell_magic("chatimg", line, "three")
        out = capsys.readouterr().out
        last = replay_server.requests_to(CHAT)[-1].json
        users = [m for m in last["messages"] if m["role"] == "user"]
        # Only one image fits in the history: the turns before "two" went.
        assert [kinds(u["content"]) for u in users] == [["text", "image_url"], ["str"]]
        assert out.count("history: dropped the 3 oldest turns") == 1
        assert ci.conversation().notes[-1].startswith("history: dropped the 3 oldest turns")
    finally:
        shell.run_line_magic("config", "ChatImg.history_turns = None")
        shell.run_line_magic("config", "ChatImg.history_images = None")


def test_demo_edits_the_image_it_just_generated(clean_env: pytest.MonkeyPatch) -> None:
    ci.reset_conversation()
    try:
        first = ci.chat(
            "a red circle on a blue background", model="demo-image", chat=True, display=False
        )
        assert len(first.images) == 1
        second = ci.chat(
            "make the last image grayscale", model="demo-image", chat=True, display=False
        )
        assert len(second.images) == 1
        got = second.images[0].convert("RGB")
        want = first.images[0].convert("L").convert("RGB")
        diff = ImageChops.difference(got, want)
        assert max(hi for _, hi in diff.getextrema()) <= 2  # the generated image, in gray
        assert len(ci.conversation()) == 2
    finally:
        ci.reset_conversation()
