"""The chat panel in a real JupyterLab and chromium: type, attach, send, watch it stream, stop.

Runs ``notebooks/03_panel.ipynb`` (outputs cleared) against the offline demo
model, then uses the panel only through the page, as a person would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from harness import ROOT, JupyterLab, LabPage

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NOTEBOOK = ROOT / "notebooks" / "03_panel.ipynb"
SETUP_CELL = 1  # makes `sunset`
PANEL_CELL = 3  # panel = ci.ChatPanel(); panel


def copy_without_outputs(lab: JupyterLab, source: Path) -> str:
    nb = nbformat.read(source, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    name = "panel_" + source.name
    nbformat.write(nb, lab.root_dir / name)
    return name


@pytest.fixture(scope="module")
def panel_page(jupyter_lab: JupyterLab, lab_page: LabPage) -> LabPage:
    lab_page.open_notebook(copy_without_outputs(jupyter_lab, NOTEBOOK))
    assert "ChatPanel()" in lab_page.cell(PANEL_CELL).inner_text()
    for index in (SETUP_CELL, PANEL_CELL):
        lab_page.run_cell(index)
        lab_page.wait_until_executed(index)
    lab_page.cell(PANEL_CELL).locator(".chatimg-panel .chatimg-send").wait_for(state="visible")
    return lab_page


def attach_sunset(page: LabPage) -> None:
    panel = page.cell(PANEL_CELL).locator(".chatimg-panel")
    before = panel.locator(".chatimg-thumb").count()
    panel.locator(".chatimg-picker select").select_option(label="sunset (PIL 320x200 RGB)")
    panel.locator(".chatimg-add").click()
    panel.locator(".chatimg-thumb").nth(before).locator("img").wait_for(state="visible")


def set_model(page: LabPage, model: str) -> None:
    box = page.cell(PANEL_CELL).locator(".chatimg-model input")
    box.fill(model)
    box.press("Tab")


def reply(page: LabPage, index: int) -> Any:
    """Reply ``index`` in the order sent (the transcript lists the newest first)."""
    replies = page.cell(PANEL_CELL).locator(".chatimg-reply")
    return replies.nth(replies.count() - 1 - index)


def reply_text(page: LabPage, index: int) -> str:
    return str(reply(page, index).inner_text())


def record_frames(page: LabPage, key: str) -> None:
    """Record the last reply's text at every animation frame (what a reader can see)."""
    page.page.evaluate(
        """([index, key]) => {
            const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
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
        [PANEL_CELL, key],
    )


def recorded_frames(page: LabPage, key: str) -> list[str]:
    return list(page.page.evaluate("(key) => window.__chatimgFrames[key]", key))


def wait_idle_panel(page: LabPage) -> None:
    """Send is enabled again: the reply is over."""
    send = page.cell(PANEL_CELL).locator(".chatimg-send")
    page.page.wait_for_function("(el) => !el.disabled", arg=send.element_handle(), timeout=60_000)


def test_panel_streams_shows_images_and_stops(panel_page: LabPage) -> None:
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
    assert status.startswith("⚠ stopped") and "\n" not in status.strip()
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
