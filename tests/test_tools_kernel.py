"""Tool calls through the magic in a real kernel: shown, run, bounded, interrupted."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel
from test_interrupt import collect, htmls, idle, run, shown, text_of
from test_tools import TOOLS, Scripted, call_reply, text_reply

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def kernel(clean_env: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        run(kc, "%load_ext jupyter_chatimg\n%config ChatImg.max_retries = 0")
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def final_html(messages: list[dict[str, Any]]) -> str:
    """The reply's outputs as a front end shows them at the end (text outputs' HTML, joined)."""
    return "".join(d["text/html"] for d in shown(messages) if "text/html" in d)


def printed(messages: list[dict[str, Any]]) -> str:
    return "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")


def test_the_magic_shows_the_calls_of_a_reply(kernel: tuple[Any, Any]) -> None:
    from _servers import ReplayServer

    _, kc = kernel
    with ReplayServer() as srv:
        srv.add_file(TOOLS / "openai_stream_parallel.sse", seed=4)
        tools = json.dumps([{"type": "function", "function": {"name": "zoom"}}])
        messages = run(kc, f"%%chatimg --base-url {srv.url} --tools '{tools}'\nZoom in.")
    assert "error" not in [m["msg_type"] for m in messages]
    final = final_html(messages)
    assert "<strong>🔧 zoom</strong>" in final and "<strong>🔧 get_weather</strong>" in final
    assert "&quot;city&quot;: &quot;Paris&quot;" in final
    check = run(kc, "print([(c.name, c.args) for c in _.tool_calls])")
    assert printed(check).strip() == (
        "[('zoom', {'x': 10, 'y': 20, 'width': 64, 'height': 48, 'note': "
        "'the kite, \"top-left\" ü'}), ('get_weather', {'city': 'Paris', 'unit': 'celsius'})]"
    )


def test_the_magic_runs_a_function_and_shows_every_round(kernel: tuple[Any, Any]) -> None:
    _, kc = kernel

    def script(body: dict[str, Any], n: int) -> bytes:
        if n == 1:
            return call_reply(("c1", "word_count", {"text": "two words"}), text="Counting.")
        tool = body["messages"][-1]
        return text_reply(f"There are {tool['content']} words.")

    srv = Scripted(script)
    try:
        run(kc, "def word_count(text: str) -> int:\n    return len(text.split())")
        messages = run(kc, f"%%chatimg --base-url {srv.url} --tools word_count\nCount.")
    finally:
        srv.close()
    assert "error" not in [m["msg_type"] for m in messages]
    outs = [m for m in messages if m["msg_type"] in ("display_data", "update_display_data")]
    # one row of outputs, every round's after the one before
    assert len({m["content"]["transient"]["display_id"] for m in outs}) >= 3
    final = text_of(final_html(messages))
    assert final.index("Counting.") < final.index("🔧 word_count")
    assert final.index("↳ word_count → 2") < final.index("There are 2 words.")
    check = run(kc, "print(_.text, len(_.rounds), _.tool_calls[0].result)")
    assert printed(check) == "There are 2 words. 2 2\n"


def test_a_server_that_always_calls_tools_is_stopped_with_one_line(
    kernel: tuple[Any, Any],
) -> None:
    _, kc = kernel
    srv = Scripted(lambda body, n: call_reply((f"c{n}", "noop", {}), text=f"Round {n}."))
    try:
        run(kc, "def noop() -> str:\n    return 'nothing'")
        messages = run(
            kc, f"%%chatimg --base-url {srv.url} --tools noop --max-tool-rounds 1\nLoop."
        )
    finally:
        srv.close()
    assert len(srv.bodies) == 2
    assert "error" not in [m["msg_type"] for m in messages]
    final = text_of(final_html(messages))
    assert "Round 1." in final and "Round 2." in final
    assert final.count("⚠") == 1 and "max_tool_rounds 1" in final.rpartition("⚠")[2]
    check = run(kc, "print(type(_.error).__name__, len(_.rounds), [c.ran for c in _.tool_calls])")
    assert printed(check) == "ToolLoopError 2 [True, False]\n"


def test_an_interrupt_mid_loop_keeps_the_rounds_and_the_kernel_goes_on(
    kernel: tuple[Any, Any],
) -> None:
    km, kc = kernel
    srv = Scripted(lambda body, n: call_reply(("s1", "slow", {"seconds": 60}), text="Waiting."))
    try:
        run(
            kc,
            "import time\ndef slow(seconds: float) -> str:\n    time.sleep(seconds)\n    return 'done'",
        )
        msg_id = kc.execute(f"%%chatimg --base-url {srv.url} --tools slow\nWait.")
        before = collect(kc, msg_id, lambda ms: any("🔧 slow" in html for html in htmls(ms)))
        time.sleep(0.5)  # the function is sleeping now
        km.interrupt_kernel()
        after = collect(kc, msg_id, idle)
    finally:
        srv.close()
    assert "error" not in [m["msg_type"] for m in after]
    assert "Traceback" not in printed(after)
    final = text_of(final_html(before + after))
    assert "Waiting." in final and final.count("⚠") == 1
    assert "interrupted by the user while slow ran; what arrived is kept" in final
    started = time.monotonic()
    check = run(kc, "print(len(_.rounds), _.tool_calls[0].ran, _.error)")
    assert time.monotonic() - started < 5
    assert printed(check) == (
        "1 False interrupted by the user while slow ran; what arrived is kept\n"
    )
    assert len(srv.bodies) == 1
