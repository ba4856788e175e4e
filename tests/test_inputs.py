"""Inputs from the notebook: ``Out[n]``, the last matplotlib figure, columns of images;
and ``%chatimg_models`` against the demo."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from _ipython import ipython_shell  # noqa: F401
from _servers import ReplayServer
from PIL import Image

import jupyter_chatimg as ci

CHAT = "/v1/chat/completions"
OK = {
    "id": "chatcmpl-i",
    "object": "chat.completion",
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "seen"}, "finish_reason": "stop"}
    ],
}


def sent_images(server: ReplayServer, index: int = -1) -> list[Image.Image]:
    content = server.requests_to(CHAT)[index].json["messages"][-1]["content"]
    out = []
    for part in content:
        if part["type"] == "image_url":
            raw = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
            with Image.open(io.BytesIO(raw)) as img:
                out.append(img.convert("RGB"))
    return out


class Series:
    """Duck-typed like a pandas Series/column: ``tolist()`` and iteration."""

    def __init__(self, values: list[Any]) -> None:
        self.values = values

    def tolist(self) -> list[Any]:
        return list(self.values)

    def __iter__(self) -> Any:
        return iter(self.values)


def test_out_n_as_image_option_and_field(ipython_shell: Any, replay_server: ReplayServer) -> None:
    replay_server.add_json("POST", CHAT, OK)
    shell = ipython_shell
    shell.run_cell("from PIL import Image", store_history=True)
    shell.run_cell("Image.new('RGB', (7, 5), 'orange')", store_history=True)
    n = max(k for k, v in shell.user_ns["Out"].items() if isinstance(v, Image.Image))
    line = f"--base-url {replay_server.url} --no-stream"
    shell.run_cell_magic("chatimg", f"{line} --image Out[{n}]", "What is it?")
    shell.run_cell_magic("chatimg", line, f"What is {{Out[{n}]}}, really?")
    for index in (0, 1):
        (img,) = sent_images(replay_server, index)
        assert img.size == (7, 5) and img.getpixel((0, 0)) == (255, 165, 0)
    kinds = [p["type"] for p in replay_server.requests_to(CHAT)[1].json["messages"][-1]["content"]]
    assert kinds == ["text", "image_url", "text"]


def test_image_plt_sends_the_current_figure(
    ipython_shell: Any, replay_server: ReplayServer
) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    replay_server.add_json("POST", CHAT, OK)
    shell = ipython_shell
    fig = plt.figure(figsize=(2, 1), dpi=50, facecolor="red")
    try:
        fig.add_axes((0, 0, 1, 1)).axis("off")
        shell.user_ns["plt"] = plt
        shell.run_cell_magic(
            "chatimg",
            f"--base-url {replay_server.url} --no-stream --image plt",
            "Explain the plot.",
        )
    finally:
        plt.close(fig)
    (img,) = sent_images(replay_server)
    assert img.size[0] > img.size[1] > 0  # the 2:1 figure
    assert img.getpixel((img.size[0] // 2, img.size[1] // 2)) == (255, 0, 0)


def test_a_column_of_images_goes_in_whole(ipython_shell: Any, replay_server: ReplayServer) -> None:
    replay_server.add_json("POST", CHAT, OK)
    shell = ipython_shell
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    shell.user_ns["col"] = Series([Image.new("RGB", (3, 3), c) for c in colors])
    line = f"--base-url {replay_server.url} --no-stream"
    shell.run_cell_magic("chatimg", f"{line} --image col", "Compare these.")
    shell.run_cell_magic("chatimg", line, "Compare {col}.")
    for index in (0, 1):
        assert [im.getpixel((1, 1)) for im in sent_images(replay_server, index)] == colors
    # The Python API takes the same.
    ci.chat("And these?", Series([Image.new("RGB", (2, 2), c) for c in colors]),
            base_url=replay_server.url, display=False)  # fmt: skip
    assert [im.getpixel((1, 1)) for im in sent_images(replay_server, 2)] == colors


def test_models_magic_lists_the_demo_models(
    ipython_shell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ipython_shell.run_line_magic("chatimg_models", "")
    listed = capsys.readouterr().out.split()
    assert {"demo-vision", "demo-image"} <= set(listed)
    assert ci.list_models() == listed


def test_models_magic_says_one_line_when_the_server_has_none(
    ipython_shell: Any, replay_server: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    ipython_shell.run_line_magic("chatimg_models", replay_server.url)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("⚠ HTTP 404") and captured.err.count("\n") == 1


def test_image_plt_after_the_inline_backend_closed_the_figure(
    ipython_shell: Any, replay_server: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    from jupyter_chatimg import _magic

    replay_server.add_json("POST", CHAT, OK)
    shell = ipython_shell
    shell.run_cell(
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "fig = plt.figure(figsize=(2, 1), dpi=50, facecolor='blue')\n"
        "fig.add_axes((0, 0, 1, 1)).axis('off')"
    )
    plt = shell.user_ns["plt"]
    plt.close("all")  # what the inline backend does once it has shown the figure
    line = f"--base-url {replay_server.url} --no-stream --image plt"
    shell.run_cell_magic("chatimg", line, "Explain the plot.")
    (img,) = sent_images(replay_server)
    assert img.getpixel((img.size[0] // 2, img.size[1] // 2)) == (0, 0, 255)
    assert plt.get_fignums() == []  # no empty figure was made on the way
    _magic._figures.last = None
    shell.run_cell_magic("chatimg", line, "Explain the plot.")
    assert "--image plt: no matplotlib figure has been drawn" in capsys.readouterr().err
    assert len(replay_server.requests) == 1
