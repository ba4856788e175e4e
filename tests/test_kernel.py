"""The magic in a real kernel: display messages counted, notebook saved and grepped."""

from __future__ import annotations

import json
import queue
import time
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
from _servers import ReplayServer
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient

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


def run_cell(kc, code: str, timeout: float = 60) -> list[dict]:
    """Execute ``code``; return every iopub message of that execution."""
    msg_id = kc.execute(code)
    messages = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return messages
    raise TimeoutError(f"cell did not finish in {timeout} s")


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
    final = shown[-1]["content"]["data"]["text/markdown"]
    assert "".join(tokens).strip() in final
    assert len({m["content"]["transient"]["display_id"] for m in shown}) == 1


def test_saved_notebook_has_markdown_images_and_no_key(clean_env, tmp_path: Path) -> None:
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
    assert ["text/markdown", "text/plain"] in kinds
    markdown = next(
        o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})
    )
    assert "Here are two tiny tiles for the mosaic." in markdown
    assert "base64" not in markdown
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2
    assert nb.cells[2].outputs[0]["text"] == "2 (2, 2)\n"
    # ...and is nowhere in the saved file.
    text = path.read_text()
    assert SECRET not in text and SECRET[3:20] not in text
