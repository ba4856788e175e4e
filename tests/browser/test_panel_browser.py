"""The chat panel in a real JupyterLab and Notebook 7 in chromium: type, attach, send,
watch it stream, stop; Run All; the dark theme.

Runs ``notebooks/03_panel.ipynb`` (outputs cleared) against the offline demo
model, then uses the panel only through the page, as a person would. Screenshots:
``panel_browser_final``, ``panel_after_run_all`` and ``panel_dark`` (each
``_lab`` / ``_notebook``) in ``test-artifacts/``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from harness import DARK_THEME, LIGHT_THEME, ROOT, JupyterServer, NotebookPage

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NOTEBOOK = ROOT / "notebooks" / "03_panel.ipynb"
SETUP_CELL = 1  # makes `sunset`
PANEL_CELL = 3  # panel = ci.ChatPanel(); panel


def copy_without_outputs(lab: JupyterServer, source: Path) -> str:
    nb = nbformat.read(source, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    name = "panel_" + source.name
    nbformat.write(nb, lab.root_dir / name)
    return name


@pytest.fixture(scope="module")
def panel_page(jupyter_server: JupyterServer, notebook_page: NotebookPage) -> NotebookPage:
    notebook_page.open_notebook(copy_without_outputs(jupyter_server, NOTEBOOK))
    assert "ChatPanel()" in notebook_page.cell(PANEL_CELL).inner_text()
    for index in (SETUP_CELL, PANEL_CELL):
        notebook_page.run_cell(index)
        notebook_page.wait_until_executed(index)
    notebook_page.cell(PANEL_CELL).locator(".chatimg-panel .chatimg-send").wait_for(state="visible")
    return notebook_page


def attach_sunset(page: NotebookPage) -> None:
    panel = page.cell(PANEL_CELL).locator(".chatimg-panel")
    panel.locator(".chatimg-picker select").select_option(label="sunset (PIL 320x200 RGB)")
    panel.locator(".chatimg-add").click()
    # A new attachment replaces the images offered from the last reply (issue 16, item 5).
    thumbs = panel.locator(".chatimg-thumb")
    thumbs.filter(has_text="sunset").locator("img").wait_for(state="visible")
    assert thumbs.filter(has_text="from the last reply").count() == 0


def set_model(page: NotebookPage, model: str) -> None:
    box = page.cell(PANEL_CELL).locator(".chatimg-model input")
    box.fill(model)
    box.press("Tab")


def reply(page: NotebookPage, index: int) -> Any:
    """Reply ``index`` in the order sent (the transcript lists the newest first)."""
    replies = page.cell(PANEL_CELL).locator(".chatimg-reply")
    return replies.nth(replies.count() - 1 - index)


def reply_text(page: NotebookPage, index: int) -> str:
    return str(reply(page, index).inner_text())


def record_frames(page: NotebookPage, key: str) -> None:
    """Record the last reply's text at every animation frame (what a reader can see)."""
    page.page.evaluate(
        """([path, index, key]) => {
            const nb = [...document.querySelectorAll('.jp-NotebookPanel')]
                .find((node) => node.getAttribute('data-chatimg-path') === path);
            const cell = nb.querySelectorAll('.jp-Notebook .jp-Cell')[index];
            window.__chatimgFrames = window.__chatimgFrames || {};
            const seen = window.__chatimgFrames[key] = [];
            const start = cell.querySelectorAll('.chatimg-reply').length;
            const tick = () => {
                const replies = cell.querySelectorAll('.chatimg-reply');
                const text = replies.length > start ? replies[0].innerText.trim() : '';  // newest first
                if (seen.length === 0 || seen[seen.length - 1] !== text) { seen.push(text); }
                if (seen.length < 10000) { requestAnimationFrame(tick); }
            };
            requestAnimationFrame(tick);
        }""",
        [page.notebook, PANEL_CELL, key],
    )


def recorded_frames(page: NotebookPage, key: str) -> list[str]:
    return list(page.page.evaluate("(key) => window.__chatimgFrames[key]", key))


def wait_idle_panel(page: NotebookPage) -> None:
    """Send is enabled again: the reply is over."""
    send = page.cell(PANEL_CELL).locator(".chatimg-send")
    page.page.wait_for_function("(el) => !el.disabled", arg=send.element_handle(), timeout=60_000)


def test_panel_streams_shows_images_and_stops(panel_page: NotebookPage) -> None:
    page = panel_page
    panel = page.cell(PANEL_CELL).locator(".chatimg-panel")
    prompt_count = page.cell(PANEL_CELL).locator(".jp-InputArea-prompt").inner_text()

    # 1. Type a prompt, attach an image from the namespace picker, click Send.
    set_model(page, "demo-image@slow=0.05")
    attach_sunset(page)
    panel.locator(".chatimg-prompt textarea").fill("make it grayscale")
    record_frames(page, "grow")
    panel.locator(".chatimg-send").click()
    page.wait_for_output(PANEL_CELL, r"Applied: grayscale", timeout=60)
    wait_idle_panel(page)
    image = reply(page, 0).locator("img")
    image.wait_for(state="visible")
    size = image.evaluate("(img) => [img.naturalWidth, img.naturalHeight, img.complete]")
    assert size == [320, 200, True]  # the edited sunset, rendered as an image output
    seen = recorded_frames(page, "grow")
    final = reply_text(page, 0)
    assert "base64" not in final and "Applied: grayscale" in final
    # the image is where the model put it: after the progress lines, before "Applied"
    outputs = reply(page, 0).locator(".jp-OutputArea-output")
    kinds = outputs.evaluate_all(
        "(nodes) => nodes.map(n => n.querySelector('img') ? 'image' : n.innerText.trim())"
    )
    assert kinds[1] == "image" and kinds[0].endswith("Done ✅"), kinds
    assert kinds[2].startswith("Applied: grayscale"), kinds
    bodies = [frame.split("offline demo model (")[0].strip() for frame in seen]
    final_body = bodies[-1]
    assert final_body.startswith("Editing with") and final_body.endswith("320×200.")
    # (the very first delta is "> ", an empty blockquote: nothing to see yet)
    first = next(i for i, body in enumerate(bodies) if body.startswith("Editing"))
    assert all(bodies[first:]), bodies  # no frame lost the reply (no flicker)
    growing = [b for b in dict.fromkeys(bodies[first:-1]) if final_body.startswith(b)]
    assert len(growing) >= 3, bodies  # at least three distinct intermediate states
    # the image's place holds "[image 1]" until the image itself replaces it at the end
    lengths = [len(b.replace("\n\n[image 1]", "")) for b in bodies[first:]]
    assert lengths == sorted(lengths), bodies  # it only ever grew
    user = panel.locator(".chatimg-user").nth(0)
    assert "make it grayscale" in user.inner_text()
    assert user.locator("img").count() == 1  # the thumbnail of what was sent

    # 2. A slow reply, sent with Ctrl+Enter; the kernel is idle while it streams; Stop keeps the text.
    set_model(page, "demo-vision@slow=0.25")
    attach_sunset(page)
    textarea = panel.locator(".chatimg-prompt textarea")
    textarea.fill("describe the picture")
    textarea.press("Control+Enter")
    page.wait_for_output(PANEL_CELL, r"measured in the pixels", timeout=60)
    page.wait_for_kernel_idle(timeout=10)  # other cells could run now
    assert panel.locator(".chatimg-stop").is_enabled()
    panel.locator(".chatimg-stop").click()
    wait_idle_panel(page)
    page.wait_for_output(PANEL_CELL, r"stopped; the partial reply is kept")
    partial = reply_text(page, 1)
    assert "measured in the pixels" in partial and "stopped" in partial
    status = panel.locator(".chatimg-status").inner_text()
    assert status.strip() == ""  # issue 16 (7): "⚠ stopped" is in the reply, not twice
    assert partial.count("stopped") == 1
    assert textarea.input_value() == ""  # sent, and no newline left behind by Ctrl+Enter
    # Ctrl+Enter went to the panel, not to JupyterLab (which would have re-run the cell).
    assert page.cell(PANEL_CELL).locator(".jp-InputArea-prompt").inner_text() == prompt_count
    assert panel.locator(".chatimg-reply").count() == 2
    # The transcript keeps the newest message in view (no scrolling needed to see it).
    box = panel.locator(".chatimg-transcript").bounding_box()
    last = reply(page, 1).bounding_box()
    assert box is not None and last is not None
    assert box["y"] <= last["y"] + last["height"] <= box["y"] + box["height"] + 1

    panel.scroll_into_view_if_needed()
    shot = page.screenshot("panel_browser_final")
    print(f"panel screenshot: {shot}")
    assert shot.exists()


LAST_CELL = 10  # panel.export()
TRANSCRIPT_IMAGE_HEIGHT = 240  # the bound the panel puts on returned images (issue 16, item 6)

# Where the text node holding ``phrase`` (the newest one) and the transcript are on screen.
TEXT_AND_BOX = """(transcript, phrase) => {
    const walker = document.createTreeWalker(transcript, NodeFilter.SHOW_TEXT);
    let node;
    let found = null;
    while ((node = walker.nextNode())) {
        if (node.textContent.includes(phrase) && !found) found = node;  // newest first
    }
    if (!found) return null;
    const range = document.createRange();
    range.selectNodeContents(found);
    const text = range.getBoundingClientRect();
    const box = transcript.getBoundingClientRect();
    return {text: [text.top, text.bottom], box: [box.top, box.bottom]};
}"""


def assert_in_view(transcript: Any, phrase: str) -> None:
    where = transcript.evaluate(TEXT_AND_BOX, phrase)
    assert where is not None, f"{phrase!r} is not in the transcript"
    (top, bottom), (box_top, box_bottom) = where["text"], where["box"]
    assert box_top - 1 <= top and bottom <= box_bottom + 1, (phrase, where)


def test_run_all_keeps_the_reply_text_in_view(panel_page: NotebookPage) -> None:
    """Issue 16, item 6: after Run All of 03_panel the last reply's text is on screen."""
    page = panel_page
    page.run_all()
    page.wait_until_executed(LAST_CELL, timeout=120)
    panel = page.cell(PANEL_CELL).locator(".chatimg-panel")
    transcript = panel.locator(".chatimg-transcript")
    assert panel.locator(".chatimg-reply").count() == 2
    image = reply(page, 1).locator("img")
    image.wait_for(state="visible")
    assert image.evaluate("(img) => [img.naturalWidth, img.naturalHeight]") == [512, 512]
    height = image.evaluate("(img) => img.getBoundingClientRect().height")
    assert 100 < height <= TRANSCRIPT_IMAGE_HEIGHT + 1  # bounded, the whole image inside
    # The newest reply's text is in the transcript's viewport, its first words and its
    # sentence about the image, with the image below them (the view is pinned to the end).
    transcript.scroll_into_view_if_needed()
    assert_in_view(transcript, "Generating with")
    assert_in_view(transcript, "I drew a 512×512 image")
    panel.scroll_into_view_if_needed()
    page.screenshot("panel_after_run_all")

    # A click shows the image at full size, another click bounds it again.
    image.click()
    page.page.wait_for_function(
        "(img) => img.getBoundingClientRect().height > 500", arg=image.element_handle()
    )
    image.click()
    page.page.wait_for_function(
        f"(img) => img.getBoundingClientRect().height <= {TRANSCRIPT_IMAGE_HEIGHT + 1}",
        arg=image.element_handle(),
    )
    # The full image stays available from Python: cell 8 shows panel.images[0].
    shown = page.cell(8).locator(".jp-OutputArea-output img").first
    assert shown.evaluate("(img) => [img.naturalWidth, img.naturalHeight]") == [512, 512]


# Colours the panel sets, as computed, and the theme's own colours they must follow.
PANEL_COLOURS = """(panel) => {
    const probe = document.createElement('div');
    panel.appendChild(probe);
    const resolve = (name) => {
        probe.style.color = `var(${name})`;
        return getComputedStyle(probe).color;
    };
    const theme = {
        border2: resolve('--jp-border-color2'),
        border1: resolve('--jp-border-color1'),
        brand1: resolve('--jp-brand-color1'),
    };
    probe.remove();
    const style = (selector) => getComputedStyle(panel.querySelector(selector));
    return {
        theme,
        transcript: style('.chatimg-transcript').borderTopColor,
        user: style('.chatimg-user').borderLeftColor,
        reply: style('.chatimg-reply').borderLeftColor,
    };
}"""


def luminance(css_colour: str) -> float:
    """Relative luminance (0 black .. 1 white) of an ``rgb()``/``rgba()`` colour."""
    r, g, b = (int(v) / 255 for v in re.findall(r"[\d.]+", css_colour)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_panel_colours_follow_the_theme(panel_page: NotebookPage) -> None:
    """Issue 16, item 7: the panel's borders take the theme's colours, light and dark."""
    panel = panel_page.cell(PANEL_CELL).locator(".chatimg-panel")
    if panel.locator(".chatimg-reply").count() == 0:  # run alone: one exchange to colour
        set_model(panel_page, "demo-vision")
        panel.locator(".chatimg-prompt textarea").fill("hello")
        panel.locator(".chatimg-send").click()
        panel.locator(".chatimg-reply").first.wait_for(state="visible")
        wait_idle_panel(panel_page)
    light = panel.evaluate(PANEL_COLOURS)
    # Light: the transcript border is the theme's light grey (the check can tell light
    # from dark: this is the control for the dark assertions below).
    assert luminance(light["transcript"]) > 0.6, light
    panel_page.set_theme(DARK_THEME)
    try:
        dark = panel.evaluate(PANEL_COLOURS)
        panel.scroll_into_view_if_needed()
        panel_page.screenshot("panel_dark")
    finally:
        panel_page.set_theme(LIGHT_THEME)
    theme = dark["theme"]
    assert dark["transcript"] == theme["border2"], dark
    assert dark["reply"] == theme["border1"], dark
    assert dark["user"] == theme["brand1"], dark
    assert dark["transcript"] != "rgb(221, 221, 221)"  # not the fixed #ddd any more
    assert luminance(dark["transcript"]) < 0.35, dark
    assert dark["transcript"] != light["transcript"], (light, dark)
