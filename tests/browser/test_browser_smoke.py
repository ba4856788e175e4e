"""The browser harness works: JupyterLab and Notebook 7 in chromium show display updates
and widgets, take typed code and Run All."""

from __future__ import annotations

import re

import pytest
from harness import JupyterServer, NotebookPage

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

STREAM = """\
import time
from IPython.display import Markdown, display
handle = display(Markdown("step 0"), display_id=True)
for i in range(1, 31):
    time.sleep(0.05)
    handle.update(Markdown(f"step {i}" + (" done" if i == 30 else "")))"""

WIDGET = """\
import ipywidgets as widgets
button = widgets.Button(description="Press me")
label = widgets.Label("pressed 0")
def pressed(_):
    label.value = f"pressed {int(label.value.split()[1]) + 1}"
button.on_click(pressed)
widgets.VBox([button, label])"""


@pytest.fixture(scope="module")
def smoke_page(jupyter_server: JupyterServer, notebook_page: NotebookPage) -> NotebookPage:
    jupyter_server.write_notebook("smoke.ipynb", [STREAM, WIDGET])
    notebook_page.open_notebook("smoke.ipynb")
    return notebook_page


def test_display_updates_stream_in_place(smoke_page: NotebookPage) -> None:
    smoke_page.record_outputs(0, "stream")
    smoke_page.run_cell(0)
    final = smoke_page.wait_for_output(0, r"step 30 done", timeout=60)
    smoke_page.wait_until_executed(0)
    seen = smoke_page.recorded_outputs("stream")
    intermediate = {text for text in seen if re.fullmatch(r"step ([1-9]|[12]\d)", text)}
    assert len(intermediate) >= 3, seen
    assert final.strip() == "step 30 done"
    # One output that grew in place, not one output per update.
    assert smoke_page.cell(0).locator(".jp-OutputArea-output").count() == 1
    smoke_page.screenshot("browser_smoke_stream")


def test_widgets_render_and_talk_to_the_kernel(smoke_page: NotebookPage) -> None:
    smoke_page.run_cell(1)
    button = smoke_page.cell(1).get_by_role("button", name="Press me")
    button.wait_for(state="visible", timeout=60_000)
    smoke_page.wait_for_output(1, r"pressed 0")
    button.click()
    button.click()
    assert "pressed 2" in smoke_page.wait_for_output(1, r"pressed 2")
    smoke_page.screenshot("browser_smoke_widgets")


def test_typing_and_run_all(jupyter_server: JupyterServer, notebook_page: NotebookPage) -> None:
    jupyter_server.write_notebook("edit.ipynb", ["x = 21", ""])
    notebook_page.open_notebook("edit.ipynb")
    # Brackets, quotes and an indented block: typed text must arrive unchanged.
    notebook_page.type_into_cell(1, 'print(f"{x * 2}")\nif x:\n    print("<b>(kept)</b>")')
    notebook_page.run_all()
    text = notebook_page.wait_for_output(1, r"kept")
    notebook_page.wait_until_executed(1)
    assert text.split() == ["42", "<b>(kept)</b>"]
    assert "&lt;b&gt;(kept)&lt;/b&gt;" in notebook_page.output_html(1)
    assert notebook_page.cells().count() == 2
