"""The magic in a real kernel: display messages counted, notebook saved and grepped."""

from __future__ import annotations

import base64
import io
import json
import re
from datetime import datetime
from html import unescape
from pathlib import Path

import nbformat
import pytest
from _kernel import run_cell
from _servers import ReplayServer
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient
from PIL import Image

WIRE = Path(__file__).parent / "fixtures" / "wire"
SECRET = "sk-test-kernel-0123456789abcdefghij"


def sse_reply(tokens: list[str]) -> bytes:
    out = [
        b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
    ]
    for tok in tokens:
        chunk = {"choices": [{"index": 0, "delta": {"content": tok}, "finish_reason": None}]}
        out.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    out.append(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (3, 2), "red").save(buf, "PNG")
    return buf.getvalue()


def _when(msg: dict) -> float:
    date = msg["header"]["date"]
    return (date if isinstance(date, datetime) else datetime.fromisoformat(str(date))).timestamp()


@pytest.fixture
def kernel(clean_env):
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_display_messages_are_coalesced(kernel, replay_server: ReplayServer) -> None:
    tokens = [f" tok{i}" for i in range(2000)]
    replay_server.add_sse("POST", "/v1/chat/completions", sse_reply(tokens), chunk_sizes=(64, 512))
    assert not [
        m for m in run_cell(kernel, "%load_ext jupyter_chatimg") if m["msg_type"] == "error"
    ]
    msgs = run_cell(kernel, f"%%chatimg --base-url {replay_server.url}\nCount to 2000.")
    shown = [m for m in msgs if m["msg_type"] in ("display_data", "update_display_data")]
    assert not [
        m for m in msgs if m["msg_type"] in ("error", "stream") and "stderr" in str(m["content"])
    ]
    duration = _when(shown[-1]) - _when(shown[0])
    interval = 0.05
    # the placeholder, at most one per interval, and the final update
    assert 2 <= len(shown) <= int(duration / interval) + 3, (len(shown), duration)
    final = shown[-1]["content"]["data"]["text/html"]
    assert "".join(tokens).strip() in final
    assert len({m["content"]["transient"]["display_id"] for m in shown}) == 1


def test_saved_notebook_has_html_images_and_no_key(clean_env, tmp_path: Path) -> None:
    with ReplayServer() as srv:
        srv.add_file(WIRE / "openrouter_stream_images.sse", seed=5)
        clean_env.setenv("CHATIMG_BASE_URL", srv.url)
        clean_env.setenv("CHATIMG_API_KEY", SECRET)
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_code_cell("%load_ext jupyter_chatimg"),
            nbformat.v4.new_code_cell(
                "%%chatimg -m google/gemini-2.5-flash-image\nTwo tiles, please."
            ),
            nbformat.v4.new_code_cell("r = _\nprint(len(r.images), r.images[0].size)"),
        ]
        NotebookClient(
            nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
        path = tmp_path / "saved.ipynb"
        nbformat.write(nb, path)
        # The key went to the endpoint it is paired with...
        assert srv.requests[0].headers.get("authorization") == f"Bearer {SECRET}"
    outputs = nb.cells[1].outputs
    kinds = [sorted(o.get("data", {})) for o in outputs]
    assert ["text/html", "text/plain"] in kinds
    html = "".join(o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {}))
    assert "Here are two tiny tiles for the mosaic." in html
    assert "base64" not in html and "<img" not in html
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2
    assert nb.cells[2].outputs[0]["text"] == "2 (2, 2)\n"
    # ...and is nowhere in the saved file.
    text = path.read_text()
    assert SECRET not in text and SECRET[3:20] not in text


# -- rendering in a real kernel: what the front end is sent ------------------------------


def one_char_reply(text: str) -> bytes:
    return sse_reply(list(text))


def displays(kernel, server: ReplayServer, text: str, **delivery) -> list[dict]:
    """Stream ``text`` in 1-character deltas into a %%chatimg cell; every display message."""
    server.add_sse("POST", "/v1/chat/completions", one_char_reply(text), **delivery)
    run_cell(kernel, "%load_ext jupyter_chatimg\n%config ChatImg.update_interval = 0.001")
    msgs = run_cell(kernel, f"%%chatimg --base-url {server.url}\nGo.")
    assert not [m for m in msgs if m["msg_type"] == "error"], msgs
    return [m for m in msgs if m["msg_type"] in ("display_data", "update_display_data")]


def final_outputs(shown: list[dict]) -> list[dict]:
    """The outputs as a front end shows them at the end: updates applied by display_id."""
    order: list[str] = []
    data: dict[str, dict] = {}
    for m in shown:
        display_id = m["content"]["transient"]["display_id"]
        if m["msg_type"] == "display_data":
            order.append(display_id)
        data[display_id] = m["content"]["data"]
    return [data[d] for d in order]


def test_list_after_a_line_never_flashes_as_a_heading_or_rule(kernel, replay_server) -> None:
    text = "Colours seen:\n- red\n- blue\n"
    shown = displays(kernel, replay_server, text, chunk_sizes=(90, 90), delay=0.004)
    htmls = [m["content"]["data"]["text/html"] for m in shown]
    assert len(htmls) >= 10, htmls  # it streamed: many states were sent
    for html in htmls:
        assert not re.search(r"<(h[1-6]|hr)\b", html), html
    assert "<ul>\n<li>red</li>\n<li>blue</li>\n</ul>" in htmls[-1]


def test_code_fence_math_and_progress_lines_come_out_exact(kernel, replay_server) -> None:
    code = "<b>x</b> & <img src=y>"
    text = (
        "Progress: queued\nProgress: running\nProgress: done\n\n"
        f"```html\n{code}\n```\n\nMath $a_b + c_d$ here.\n"
    )
    shown = displays(kernel, replay_server, text, chunk_sizes=(400, 400))
    final = final_outputs(shown)
    html = "".join(d["text/html"] for d in final)
    # the code: escaped once, equal to the model's text after unescaping
    (body,) = re.findall(r"<pre><code>(.*?)</code></pre>", html, re.S)
    assert body == "&lt;b&gt;x&lt;/b&gt; &amp; &lt;img src=y&gt;\n"
    assert unescape(body) == code + "\n"
    assert "$a_b + c_d$" in html and "<em>" not in html
    assert "Progress: queued<br>\nProgress: running<br>\nProgress: done" in html
    for m in shown:
        assert "<img" not in m["content"]["data"]["text/html"]


def test_image_in_the_text_is_shown_at_its_place(kernel, replay_server) -> None:
    png = base64.b64encode(_png_bytes()).decode()
    text = f"Before ![x](data:image/png;base64,{png}) After"
    shown = displays(kernel, replay_server, text, chunk_sizes=(900, 900), delay=0.002)
    final = final_outputs(shown)
    kinds = [next(k for k in sorted(d) if k != "text/plain") for d in final]
    assert kinds == ["text/html", "image/png", "text/html"]
    assert final[0]["text/html"] == "<p>Before</p>\n"
    assert final[1]["image/png"] and final[1]["text/plain"] == "<image 3x2>"
    assert final[2]["text/html"].startswith("<p>After</p>")
    for m in shown:  # never a part of the data URI, never an <img>
        data = m["content"]["data"]
        assert png[:40] not in data.get("text/html", "") + data.get("text/plain", "")
