"""A notebook executed in a real kernel (nbclient) and saved: the outputs' metadata
records how each answer was obtained, the key is nowhere in the file, ``n > 1``
choices are labelled with their images, and a batch's progress bar is replaced
by its table of results."""

from __future__ import annotations

import json
from typing import Any

import nbformat
import pytest
from _servers import ReplayServer
from nbclient import NotebookClient

SECRET = "sk-test-provenance-0123456789abcdefghijklmnop"
TINY_PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGNkYPjPwMDAxMDAwMDAAAALHwEDmIWXfgAAAABJRU5ErkJggg=="
CHAT = "/v1/chat/completions"


def sse(tokens: list[str]) -> bytes:
    chunks: list[dict[str, Any]] = [
        {
            "id": "chatcmpl-p",
            "model": "prov-model",
            "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}],
        }
        for t in tokens
    ]
    chunks.append(
        {
            "id": "chatcmpl-p",
            "model": "prov-model",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
        }
    )
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return body + b"data: [DONE]\n\n"


def two_choices() -> dict[str, Any]:
    def choice(i: int) -> dict[str, Any]:
        return {
            "index": i,
            "message": {
                "role": "assistant",
                "content": f"Take {i + 1}.",
                "images": [{"type": "image_url", "image_url": {"url": TINY_PNG}}],
            },
            "finish_reason": "stop",
        }

    return {
        "id": "chatcmpl-n",
        "object": "chat.completion",
        "model": "prov-image",
        "choices": [choice(0), choice(1)],
        "usage": {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10},
    }


def batch_reply() -> dict[str, Any]:
    return {
        "id": "chatcmpl-b",
        "object": "chat.completion",
        "model": "prov-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "<b>bold?</b> fine"},
                "finish_reason": "stop",
            }
        ],
    }


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str, str]:
    """Run the notebook once for every test here (one kernel start)."""
    tmp = tmp_path_factory.mktemp("prov")
    mp = pytest.MonkeyPatch()
    import os

    for name in list(os.environ):
        if name.startswith(("OPENAI_", "CHATIMG_")):
            mp.delenv(name)
    try:
        with ReplayServer() as srv:
            srv.add_sse("POST", CHAT, sse(["A small ", "red square."]), seed=4)
            srv.add_json("POST", CHAT, two_choices())
            srv.add_json("POST", CHAT, batch_reply())
            mp.setenv("CHATIMG_BASE_URL", srv.url)
            mp.setenv("CHATIMG_API_KEY", SECRET)
            nb = nbformat.v4.new_notebook()
            nb.cells = [
                nbformat.v4.new_code_cell("%load_ext jupyter_chatimg\nfrom PIL import Image"),
                nbformat.v4.new_code_cell("img = Image.new('RGB', (9, 9), 'red')"),
                nbformat.v4.new_code_cell(
                    "%%chatimg -m prov-model -t 0.3 --seed 7 --max-tokens 50 --image img -o r\n"
                    "Describe."
                ),
                nbformat.v4.new_code_cell("%%chatimg -m prov-image -n 2 --no-stream\nTwo takes."),
                nbformat.v4.new_code_cell(
                    "import jupyter_chatimg as ci\n"
                    "res = ci.chat_many([('one', img), 'two', 'three'], concurrency=2)"
                ),
                nbformat.v4.new_code_cell("import json; print(json.dumps(r.request))"),
            ]
            NotebookClient(
                nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp)}}
            ).execute()
            host = f"127.0.0.1:{srv.port}"
            auth = {r.headers.get("authorization") for r in srv.requests}
    finally:
        mp.undo()
    assert auth == {f"Bearer {SECRET}"}  # the key went to its own endpoint...
    path = tmp / "saved.ipynb"
    nbformat.write(nb, path)
    return nb, path.read_text(), host


def test_reply_outputs_carry_provenance(executed: tuple[Any, str, str]) -> None:
    nb, _, host = executed
    outputs = nb.cells[2].outputs
    (reply,) = [o for o in outputs if "text/html" in o.get("data", {})]
    assert "A small red square." in reply["data"]["text/html"]
    meta = reply["metadata"]["jupyter_chatimg"]
    assert meta["model"] == "prov-model"
    assert meta["endpoint"] == host
    assert meta["params"]["temperature"] == 0.3
    assert meta["params"]["seed"] == 7 and meta["params"]["max_tokens"] == 50
    assert meta["params"]["stream"] is True
    assert "messages" not in meta["params"]
    assert meta["usage"] == {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    assert meta["timings"]["total"] > 0 and meta["timings"]["first_token"] > 0
    assert meta["finish_reason"] == "stop"
    assert meta["cached"] is False and meta["error"] is None


def test_request_holds_images_as_short_digests(executed: tuple[Any, str, str]) -> None:
    nb, _, _ = executed
    request = json.loads(nb.cells[5].outputs[0]["text"])
    content = request["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "Describe."}
    digest = content[1]["image_url"]["url"]
    assert digest.startswith("data:image/png;sha256:") and digest.endswith("bytes")
    assert ",9x9," in digest and "base64" not in json.dumps(request)


def test_choices_are_labelled_each_with_its_images(executed: tuple[Any, str, str]) -> None:
    nb, _, _ = executed
    outputs = nb.cells[3].outputs
    kinds = [sorted(o.get("data", {})) for o in outputs]
    # each choice its own text output, labelled, then the images (not inside any text)
    assert kinds[:2] == [["text/html", "text/plain"], ["text/html", "text/plain"]]
    first, second = outputs[0]["data"]["text/html"], outputs[1]["data"]["text/html"]
    assert first.index("<strong>Choice 1</strong>") < first.index("Take 1.")
    assert second.index("<strong>Choice 2</strong>") < second.index("Take 2.")
    assert first.count("[image 1]") == 1 and second.count("[image 1]") == 1  # each its own
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2
    assert kinds[2:4] == [["image/png", "text/plain"]] * 2
    for image in images:
        assert image["metadata"]["jupyter_chatimg"]["model"] == "prov-image"
        assert image["metadata"]["jupyter_chatimg"]["params"]["n"] == 2


def test_batch_progress_is_replaced_by_an_escaped_table(executed: tuple[Any, str, str]) -> None:
    nb, _, _ = executed
    outputs = nb.cells[4].outputs
    (table,) = [o for o in outputs if o["output_type"] == "display_data"]
    assert "application/vnd.jupyter.widget-view+json" not in table["data"]
    page = table["data"]["text/html"]
    assert page.startswith("<p>3 items, 3 ok, 0 failed in ")
    assert page.count("&lt;b&gt;bold?&lt;/b&gt; fine") == 3 and "<b>bold" not in page
    assert page.count('<img src="data:image/png;base64,') == 1  # the one input image
    assert table["data"]["text/plain"].startswith("3 items, 3 ok, 0 failed")
    assert not [o for o in outputs if o["output_type"] in ("error", "stream")]


def test_no_key_in_the_saved_file(executed: tuple[Any, str, str]) -> None:
    _, text, _ = executed
    assert SECRET not in text and SECRET[3:20] not in text
    assert "authorization" not in text.lower()
