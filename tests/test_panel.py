"""ChatPanel driven from Python (buttons clicked, values set) against real loopback servers."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
import pytest
from IPython.utils.capture import capture_output
from PIL import Image

import jupyter_chatimg as ci
from jupyter_chatimg.panel._keys import KEY_SCRIPT, SEND_MARKER
from jupyter_chatimg.panel._tray import namespace_images
from jupyter_chatimg.panel._widget import STOP_JOIN_SECONDS, ChatPanel

pytestmark = pytest.mark.timeout(60)

WAIT = 30.0


@pytest.fixture
def panel(clean_env: pytest.MonkeyPatch) -> Iterator[ChatPanel]:
    made = ChatPanel(update_interval=0.02)
    yield made
    made.stop()
    made.close()


@pytest.fixture
def shell(clean_env: pytest.MonkeyPatch) -> Any:
    """IPython's test shell (so that ``display`` and ``capture_output`` work), extension loaded."""
    from IPython.testing.globalipapp import get_ipython

    ipython = get_ipython()
    ipython.run_line_magic("load_ext", "jupyter_chatimg")
    return ipython


def red_square() -> Image.Image:
    return Image.new("RGB", (64, 48), (220, 30, 30))


class Recorder:
    """Every ``outputs`` state of each transcript entry, hooked in before the worker starts."""

    def __init__(self, panel: ChatPanel) -> None:
        self.states: dict[int, list[tuple[dict[str, Any], ...]]] = {}
        self.lock = threading.Lock()
        self.text_seen = threading.Event()
        self.panel = panel
        panel.transcript.observe(self._children, names="children")

    def _children(self, change: dict[str, Any]) -> None:
        for index, entry in enumerate(self.panel.entries):
            if index not in self.states:
                self.states[index] = [tuple(entry.outputs)]
                entry.observe(lambda ch, i=index: self._outputs(i, ch), names="outputs")

    def _outputs(self, index: int, change: dict[str, Any]) -> None:
        with self.lock:
            self.states[index].append(tuple(change["new"]))
        if any("measured" in html_of(o) for o in change["new"]):
            self.text_seen.set()

    def htmls(self, index: int) -> list[str]:
        with self.lock:
            out = []
            for state in self.states.get(index, []):
                texts = [html_of(o) for o in state if "text/html" in o["data"]]
                if texts and (not out or out[-1] != texts[0]):
                    out.append(texts[0])
            return out


def html_of(output: dict[str, Any]) -> str:
    return str(output["data"].get("text/html", ""))


def images_in(entry: widgets.Output) -> list[Image.Image]:
    found = []
    for output in entry.outputs:
        for mime in ("image/png", "image/jpeg"):
            if mime in output["data"]:
                found.append(Image.open(io.BytesIO(base64.b64decode(output["data"][mime]))))
    return found


def test_streamed_reply_grows_in_place_and_ends_complete(panel: ChatPanel) -> None:
    recorder = Recorder(panel)
    panel.model.value = "demo-vision@slow=0.01"
    panel.prompt.value = "What is in this picture?"
    panel.add_image(red_square(), label="square")
    panel.send_button.click()
    assert panel.busy
    assert panel.prompt.value == "" and panel.attachments == []
    assert panel.wait(WAIT)
    assert not panel.busy
    result = panel.result
    assert result is not None and result.error is None
    assert "64" in result.text and "48" in result.text
    # user entry (text + thumbnail), then the reply entry
    user, reply = panel.entries
    assert panel.transcript.children == (reply, user)  # shown with column-reverse: newest in view
    assert "What is in this picture?" in html_of(user.outputs[0])
    assert len(images_in(user)) == 1
    states = recorder.htmls(1)
    final = states[-1]
    intermediate = [s for s in states[:-1] if "measured" in s]
    assert len(intermediate) >= 3, states
    # it grew: each state's reply is longer than the one before, and the last one is complete
    lengths = [len(s) for s in intermediate]
    assert lengths == sorted(lengths)
    assert result.text.split("\n")[0] in final
    assert result.text.strip().split()[-1].strip("*_.") in final
    assert len(reply.outputs) == 1  # one output that grew, not one per update
    assert panel.status.value == ""
    assert panel.history[0].result is result
    assert panel.history[0].prompt == "What is in this picture?"


def test_returned_images_are_image_outputs(panel: ChatPanel) -> None:
    panel.model.value = "demo-image"
    panel.prompt.value = "a red circle"
    panel.send()
    assert panel.wait(WAIT)
    assert panel.result is not None and panel.result.error is None
    assert len(panel.images) == 1
    returned = panel.images[0]
    reply = panel.entries[-1]
    shown = images_in(reply)
    assert len(shown) == 1
    assert shown[0].size == returned.size
    r, g, b = shown[0].convert("RGB").getpixel((shown[0].width // 2, shown[0].height // 2))
    assert r > 150 and g < 100 and b < 100  # the circle is red, in the middle
    # the image is shown where the model put it: after the text before it, never inside it
    text = html_of(reply.outputs[0])
    assert "Progress" in text and "base64" not in text and "<img" not in text
    assert "image/png" in reply.outputs[1]["data"]
    # The whole image is in the output, shown at most TRANSCRIPT_IMAGE_HEIGHT high (issue 16.6).
    (image_out,) = [o for o in reply.outputs if "image/png" in o["data"]]
    assert returned.size == (512, 512)
    assert image_out["metadata"]["image/png"] == {"width": 240, "height": 240}

    # The conversation goes on: the returned image rides along with the next prompt.
    panel.prompt.value = "make it grayscale"
    panel.send()
    assert panel.wait(WAIT)
    assert panel.result is not None and panel.result.error is None
    messages = (panel.result.request or {})["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert "[image 1]" in messages[1]["content"] and "data:" not in messages[1]["content"]
    carried = [p for p in messages[2]["content"] if p["type"] == "image_url"]
    assert len(carried) == 1
    (edited,) = panel.images
    assert edited.size == returned.size
    r, g, b = edited.convert("RGB").getpixel((edited.width // 2, edited.height // 2))
    assert r == g == b and r < 200  # the red circle, now gray


def test_stop_mid_reply_keeps_partial_text_and_panel_is_usable_at_once(panel: ChatPanel) -> None:
    recorder = Recorder(panel)
    panel.model.value = "demo-vision@slow=0.1"
    panel.prompt.value = "describe"
    panel.add_image(red_square())
    panel.send()
    assert recorder.text_seen.wait(WAIT), "no reply text arrived"
    panel.stop_button.click()
    assert not panel.busy
    assert not panel.send_button.disabled and panel.stop_button.disabled
    partial = panel.result
    assert partial is not None and partial.error is not None
    assert "measured" in partial.text
    assert panel.status.value == ""  # issue 16 (7): the reply says "stopped", once
    shown = html_of(panel.entries[-1].outputs[0])
    assert partial.text.split()[0] in shown and "stopped" in shown

    # A second send works at once, and the conversation carries the partial turn.
    panel.model.value = "demo-vision"
    panel.prompt.value = "and now?"
    panel.add_image(red_square())
    panel.send()
    assert panel.wait(WAIT)
    assert panel.result is not None and panel.result.error is None
    assert len(panel.result.text) > len(partial.text)
    assert panel.status.value == ""
    # As with --chat, a reply cut short stays on screen and in history but not in the conversation.
    request = panel.result.request or {}
    assert [m["role"] for m in request["messages"]] == ["user"]
    assert [turn.prompt for turn in panel.history] == ["describe", "and now?"]
    assert panel.history[0].result is partial


def test_stop_before_the_first_byte_frees_the_panel_at_once(clean_env: pytest.MonkeyPatch) -> None:
    # A request waiting for response headers is stopped at once too (issue 15: the wait
    # for the headers is bounded and watches the Stop button).
    panel = ChatPanel(timeout=3, model="demo-vision@hang")
    try:
        panel.prompt.value = "hello?"
        panel.send()
        assert panel.busy and not panel.wait(0.2)
        started = time.monotonic()
        panel.stop()
        assert time.monotonic() - started < STOP_JOIN_SECONDS
        assert not panel.busy and not panel.send_button.disabled
        assert panel.status.value == ""  # the reply says it, once (issue 16, item 7)
        assert str(panel.result.error) == "stopped before the reply began"  # type: ignore[union-attr]
        assert isinstance(panel.result.error, ci.StreamError)  # type: ignore[union-attr]
        panel.model.value = "demo-vision"
        panel.prompt.value = "What is 6 * 7?"
        panel.send()
        assert panel.wait(WAIT)
        assert "42" in panel.result.text  # type: ignore[union-attr]
        # only the finished turn went into the conversation
        assert [m["role"] for m in panel.result.request["messages"]] == ["user"]  # type: ignore[union-attr,index]
    finally:
        panel.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_error_shows_one_line_in_the_status(shell: Any) -> None:
    panel = ChatPanel(base_url=f"http://127.0.0.1:{closed_port()}/v1", max_retries=0)
    try:
        panel.prompt.value = "hello"
        with capture_output() as captured:
            panel.send_button.click()
            assert panel.wait(WAIT)
        status = panel.status.value
        assert status.startswith("⚠ ") and "127.0.0.1" in status
        assert "\n" not in status and "Traceback" not in status
        assert isinstance(panel.result.error, ci.APIConnectionError)  # type: ignore[union-attr]
        assert captured.stdout == "" and captured.stderr == ""
        assert not panel.busy and not panel.send_button.disabled
    finally:
        panel.close()


def test_bad_input_is_reported_before_anything_is_sent(panel: ChatPanel) -> None:
    panel.send()  # empty prompt, no images
    assert panel.status.value == "⚠ empty prompt: type a question, or attach an image"
    assert panel.entries == () and panel.history == []
    assert isinstance(panel.result.error, ci.ConfigError)  # type: ignore[union-attr]
    with pytest.raises(ci.ImageInputError):
        panel.add_image(object(), label="thing")
    panel.prompt.value = "kept"
    panel.temperature.value = 1.5
    panel.max_tokens.value = 0
    panel.model.value = ""
    panel.detail.value = "low"
    panel.tray.add(np.zeros((8, 8, 3), dtype=np.uint8), label="arr")
    panel.send()
    assert panel.wait(WAIT)
    request = panel.result.request  # type: ignore[union-attr]
    assert request is not None
    assert request["temperature"] == 1.5 and "max_tokens" not in request
    assert request["model"] == "demo-vision"  # empty model box: the configured default
    assert request["messages"][0]["content"][1]["image_url"]["detail"] == "low"


def test_export_shows_html_and_image_outputs(shell: Any, panel: ChatPanel) -> None:
    panel.model.value = "demo-image"
    panel.prompt.value = "a red circle"
    panel.send()
    assert panel.wait(WAIT)
    with capture_output() as captured:
        panel.export()
    kinds = [sorted(k for k in out.data if k != "text/plain") for out in captured.outputs]
    # the prompt; the reply's text, its image at its place, and the text after it (the note)
    assert kinds == [["text/html"], ["text/html"], ["image/png"], ["text/html"]]
    assert "a red circle" in captured.outputs[0].data["text/html"]
    assert captured.outputs[1].data["text/html"].startswith("<p><strong>Assistant:</strong></p>")
    assert "Progress" in captured.outputs[1].data["text/html"]
    png = base64.b64decode(captured.outputs[2].data["image/png"])
    assert Image.open(io.BytesIO(png)).size == panel.images[0].size
    assert "offline demo model" in captured.outputs[3].data["text/html"]
    # The Export button shows the same inside the panel (a button has no cell).
    panel.export_button.click()
    assert len(panel._exports.outputs) == 4


def all_widgets(root: widgets.Widget) -> list[widgets.Widget]:
    seen: dict[str, widgets.Widget] = {}

    def walk(value: Any) -> None:
        if isinstance(value, widgets.Widget):
            if value.model_id in seen:
                return
            seen[value.model_id] = value
            for name in value.keys:
                walk(getattr(value, name))
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(root)
    return list(seen.values())


def test_no_api_key_in_widget_state(
    clean_env: pytest.MonkeyPatch, replay_server: Any, wire_dir: Path
) -> None:
    secret = "sk-test-panel-SECRET-4242"
    clean_env.setenv("CHATIMG_API_KEY", secret)
    clean_env.setenv("CHATIMG_BASE_URL", replay_server.url)
    replay_server.add_file(wire_dir / "openai_stream_basic.sse")
    with pytest.raises(ci.ConfigError, match="api_key_env"):
        ChatPanel(api_key=secret)
    panel = ChatPanel(model="gpt-4o-mini")
    try:
        panel.prompt.value = "tell me about the lighthouse"
        panel.add_image(red_square())
        panel.send()
        assert panel.wait(WAIT)
        assert panel.result is not None and panel.result.error is None
        assert "lighthouse on Quill Island" in panel.result.text
        # the key was in play (it reached the server) ...
        chat = [r for r in replay_server.requests if r.path.endswith("/chat/completions")]
        assert chat[0].headers["authorization"] == f"Bearer {secret}"
        # ... and is nowhere in any widget's state, nor in what export shows
        found = all_widgets(panel)
        assert len(found) > 20
        for widget in found:
            state = json.dumps(widget.get_state(), default=repr)
            assert secret not in state, type(widget).__name__
        assert secret not in repr(panel) and secret not in repr(panel.result)
        assert secret not in json.dumps(panel.export_bundles(), default=repr)
    finally:
        panel.close()


def test_ctrl_enter_marker_sends_the_text(panel: ChatPanel) -> None:
    panel.prompt.value = "What is 6 * 7?" + SEND_MARKER  # what the key handler does
    assert panel.busy
    assert panel.prompt.value == ""
    assert panel.wait(WAIT)
    assert panel.history[0].prompt == "What is 6 * 7?"
    assert SEND_MARKER not in json.dumps(panel.result.request)  # type: ignore[union-attr]
    assert "42" in panel.result.text  # type: ignore[union-attr]
    # the handler is in the panel, once, and only acts inside the prompt box
    assert panel._keys.outputs[0]["data"]["application/javascript"] == KEY_SCRIPT
    assert "chatimg-prompt" in panel.prompt._dom_classes


def test_tray_picker_upload_and_remove(panel: ChatPanel) -> None:
    namespace = {
        "photo": red_square(),
        "arr": np.zeros((10, 20, 3), dtype=np.uint8),
        "text": "not an image",
        "numbers": [1, 2, 3],
        "_hidden": red_square(),
        "url": "https://example.com/a.png",
    }
    assert [name for _, name in namespace_images(namespace)] == ["arr", "photo"]
    panel.tray._namespace = lambda: namespace
    panel.refresh_images()
    assert panel.tray.picker.options == (
        ("arr (array 10x20x3)", "arr"),
        ("photo (PIL 64x48 RGB)", "photo"),
    )
    panel.tray.picker.value = "photo"
    panel.tray.add_button.click()
    assert [a.label for a in panel.attachments] == ["photo"]
    assert panel.attachments[0].value is namespace["photo"]

    buf = io.BytesIO()
    Image.new("RGB", (30, 30), "blue").save(buf, format="PNG")
    content = memoryview(buf.getvalue())
    upload = {
        "name": "blue.png",
        "type": "image/png",
        "size": 1,
        "content": content,
        "last_modified": dt.datetime.now(dt.timezone.utc),
    }
    panel.tray.upload.value = (upload,)
    assert [a.label for a in panel.attachments] == ["photo", "blue.png"]
    assert panel.tray.upload.value == ()  # the bytes do not stay in widget state

    panel.tray.upload.value = ({**upload, "name": "junk.png", "content": memoryview(b"not a png")},)
    assert panel.status.value.startswith("⚠ junk.png")
    assert len(panel.attachments) == 2

    cards = panel.tray.thumbs.children
    assert len(cards) == 2
    remove = cards[0].children[1].children[1]
    remove.click()
    assert [a.label for a in panel.attachments] == ["blue.png"]

    del namespace["photo"]
    panel.tray.picker.value = "arr"
    namespace.pop("arr")
    panel.tray.add_button.click()
    assert "no longer in the notebook" in panel.status.value


def test_clear_starts_over(panel: ChatPanel) -> None:
    panel.prompt.value = "hello"
    panel.send()
    assert panel.wait(WAIT)
    assert len(panel.entries) == 2
    panel.clear_button.click()
    assert panel.entries == () and panel.history == [] and panel.result is None
    panel.prompt.value = "again"
    panel.send()
    assert panel.wait(WAIT)
    assert [m["role"] for m in panel.result.request["messages"]] == ["user"]  # type: ignore[union-attr,index]


def test_defaults_and_model_list(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ci.ConfigError, match="not a known request field"):
        ChatPanel(colour="blue")
    panel = ChatPanel(model="demo-vision", system="Answer briefly.", stream=False, temperature=1.0,
                      max_tokens=50, seed=3)  # fmt: skip
    try:
        assert repr(panel) == "ChatPanel(an interactive chat widget: run the notebook to use it)"
        panel.prompt.value = "hi"
        panel.send()
        assert panel.wait(WAIT)
        request = panel.result.request  # type: ignore[union-attr]
        assert request["stream"] is False and request["seed"] == 3 and request["max_tokens"] == 50
        assert request["temperature"] == 1.0  # given explicitly, so sent
        assert request["messages"][0] == {"role": "system", "content": "Answer briefly."}
        panel.refresh_models()
        assert {"demo-vision", "demo-image"} <= set(panel.model.options)
    finally:
        panel.close()


def test_lazy_export(clean_env: pytest.MonkeyPatch) -> None:
    assert ci.ChatPanel is ChatPanel


def test_panel_magic_displays_a_panel(shell: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_chatimg import _magic

    monkeypatch.setattr(_magic, "in_notebook", lambda: True)  # as under a kernel
    with capture_output() as captured:
        shell.run_line_magic("chatimg_panel", "")
    panel = shell.user_ns.pop("_chatimg_panel")
    try:
        assert isinstance(panel, ChatPanel)
        (shown,) = captured.outputs
        assert shown.data["application/vnd.jupyter.widget-view+json"]["model_id"] == panel.model_id
        assert shown.data["text/plain"] == repr(panel)
    finally:
        panel.close()


def test_picker_follows_the_notebook_after_each_cell(shell: Any) -> None:
    panel = ChatPanel()
    try:
        shell.run_cell("from PIL import Image as _I\npanel_pic = _I.new('RGB', (12, 10), 'green')")
        assert ("panel_pic (PIL 12x10 RGB)", "panel_pic") in panel.tray.picker.options
        panel.tray.picker.value = "panel_pic"
        panel.tray.add_button.click()
        assert panel.attachments[0].value is shell.user_ns["panel_pic"]
        shell.run_cell("del panel_pic")
        assert "panel_pic" not in [name for _, name in panel.tray.picker.options]
    finally:
        panel.close()
    shell.run_cell("x_after_close = 1")  # a closed panel stops listening, quietly
    hooks = shell.events.callbacks["post_run_cell"]
    assert not any(getattr(h, "__qualname__", "").startswith("ChatPanel.") for h in hooks)


def test_the_panel_magic_in_a_terminal_says_it_needs_jupyter(
    shell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 16 (7): in terminal IPython, %chatimg_panel said "run the notebook".
    capsys.readouterr()
    shell.run_line_magic("chatimg_panel", "")
    captured = capsys.readouterr()
    assert captured.err == (
        "⚠ the chat panel is a Jupyter widget: open this in JupyterLab, Notebook 7 or VS Code; "
        "in a terminal, use %%chatimg or ci.chat()\n"
    )
    assert "_chatimg_panel" not in shell.user_ns


def test_an_unknown_model_on_the_demo_is_not_called_a_demo_model() -> None:
    # Issue 16 (4): "offline demo model (nosuchmodel)".
    from jupyter_chatimg._session import demo_note

    assert demo_note("demo-vision").startswith("offline demo model (demo-vision)")
    assert demo_note("demo-image@slow=0.1").startswith("offline demo model (demo-image@")
    assert demo_note("nosuchmodel").startswith(
        "offline demo endpoint: it has demo-vision and demo-image only, not 'nosuchmodel'"
    )


def test_returned_images_go_back_only_as_visible_attachments(clean_env: pytest.MonkeyPatch) -> None:
    # Issue 16 (5): after an image-generation turn, "describe this picture" with a new
    # image attached also sent (and described) the earlier generated picture.
    def images_sent(panel: ChatPanel) -> int:
        assert panel.result is not None and panel.result.request is not None
        content = panel.result.request["messages"][-1]["content"]
        return sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image_url")

    panel = ChatPanel(model="demo-image", stream=False)
    try:
        panel.prompt.value = "a red circle on a blue background"
        panel.send()
        assert panel.wait(WAIT) and panel.result is not None and panel.result.images
        offered = panel.attachments
        assert [(a.label, a.from_reply) for a in offered] == [("from the last reply", True)]
        assert len(panel.tray.thumbs.children) == 1  # shown in the tray, with a remove button

        panel.add_image(red_square(), label="mine")  # a new image replaces the offered one
        assert [a.label for a in panel.attachments] == ["mine"]
        panel.model.value = "demo-vision"
        panel.prompt.value = "describe this picture"
        panel.send()
        assert panel.wait(WAIT)
        assert images_sent(panel) == 1
        assert "Image 2" not in panel.result.text  # one picture described, nothing compared

        panel.model.value = "demo-image"
        panel.prompt.value = "a green square"
        panel.send()
        assert panel.wait(WAIT) and len(panel.attachments) == 1
        panel.remove_image(0)  # removed from the tray: not sent
        panel.prompt.value = "make it grayscale"
        panel.send()
        assert panel.wait(WAIT)
        content = panel.result.request["messages"][-1]["content"]  # type: ignore[index]
        assert isinstance(content, str)  # text only: no image went along unseen
    finally:
        panel.close()
