"""A ``%%chatimg`` reply in a real front end (JupyterLab and Notebook 7), as a person sees it.

The offline demo's ``demo-image`` model streams its progress and text, then returns
a 512x512 picture. The reply's text must grow in place in one output element
(several states on screen, never a second text output) and the image must be
shown after it as an image. Then the same notebook in the dark theme: the reply
is still readable, and a screenshot of the generated image is saved
(``test-artifacts/generated_image_dark_<frontend>.png``).

The assertions look at texts, images and element counts only, not at which
renderer (markdown or HTML) shows the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from harness import DARK_THEME, LIGHT_THEME, JupyterServer, NotebookPage, _js

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NOTEBOOK = "reply.ipynb"
PROMPT = "a red circle on a blue background"
REPLY_CELL = 1


def luminance(css_colour: str) -> float:
    """Relative luminance (0 black .. 1 white) of an ``rgb()``/``rgba()`` colour."""
    r, g, b = (int(v) / 255 for v in re.findall(r"[\d.]+", css_colour)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


@pytest.fixture(scope="module")
def page(jupyter_server: JupyterServer, notebook_page: NotebookPage) -> NotebookPage:
    jupyter_server.write_notebook(
        NOTEBOOK, ["%load_ext jupyter_chatimg", f"%%chatimg -m demo-image@slow=0.05\n{PROMPT}"]
    )
    notebook_page.open_notebook(NOTEBOOK)
    notebook_page.run_cell(0)
    notebook_page.wait_until_executed(0)
    return notebook_page


# The colour the output's text is drawn on (the first ancestor with a background) and the
# colour of its first paragraph's text.
BEHIND_AND_TEXT = """(el) => {
    let node = el;
    let behind = 'rgba(0, 0, 0, 0)';
    while (node && node.nodeType === 1) {
        const bg = getComputedStyle(node).backgroundColor;
        if (bg && bg !== 'rgba(0, 0, 0, 0)' && bg !== 'transparent') { behind = bg; break; }
        node = node.parentElement;
    }
    return [behind, getComputedStyle(el.querySelector('p') || el).color];
}"""


def reply_image(page: NotebookPage) -> dict[str, object]:
    """Size and centre pixel of the reply's image, read from the page."""
    return dict(
        page.cell(REPLY_CELL)
        .locator(".jp-OutputArea-output img")
        .first.evaluate(
            """(img) => {
                const canvas = document.createElement('canvas');
                canvas.width = img.naturalWidth;
                canvas.height = img.naturalHeight;
                const ctx = canvas.getContext('2d');
                ctx.drawImage(img, 0, 0);
                const [r, g, b] = ctx.getImageData(
                    img.naturalWidth / 2, img.naturalHeight / 2, 1, 1).data;
                return {natural: [img.naturalWidth, img.naturalHeight], centre: [r, g, b]};
            }"""
        )
    )


def test_reply_streams_in_place_then_shows_its_image(page: NotebookPage) -> None:
    page.record_output_elements(REPLY_CELL, "reply")
    page.run_cell(REPLY_CELL)
    page._wait(
        "the reply's image to load",
        _js(
            "[path, index]",
            """const cell = findCell(path, index);
            const img = cell && cell.querySelector('.jp-OutputArea-output img');
            return !!img && img.complete && img.naturalWidth > 0;""",
        ),
        [page.notebook, REPLY_CELL],
    )
    page.wait_until_executed(REPLY_CELL)
    states = page.recorded_output_elements("reply")
    final = states[-1]
    # The text before the image, the image at its place, the text after it (DESIGN 5):
    # nothing else was ever shown.
    assert [(images > 0) for _, _, images in final] == [False, True, False], final
    (text_id, before, _), (image_id, _, _), (after_id, after, _) = final
    # (the image's place held its "[image 1]" placeholder first: a front end draws the image
    # output anew when its type changes, so that one element may differ)
    shown_ids = {element for state in states for element, _, _ in state}
    gone = shown_ids - {text_id, image_id, after_id}
    assert len(gone) <= 1 and all(
        state[1][0] in gone for state in states if len(state) > 1 and state[1][0] in gone
    ), states
    text = before + "\n" + after
    assert "I drew a 512×512 image" in text and "red circle" in text, text
    assert "base64" not in text and "data:" not in text
    # The text grew in that one element through at least three states before the last.
    texts = [state[0][1] for state in states if state and state[0][0] == text_id]
    intermediate = [t for t in dict.fromkeys(texts) if t and t != text]
    assert len(intermediate) >= 3, texts
    assert any(len(state) == 1 for state in states), "the text came before the image"
    shown = reply_image(page)
    assert shown["natural"] == [512, 512]
    r, g, b = shown["centre"]  # type: ignore[misc]
    assert r > 150 and g < 100 and b < 100, shown  # the red circle, in the middle
    assert page.cell(REPLY_CELL).locator(".jp-OutputArea-output").count() == 3


@pytest.fixture
def dark(page: NotebookPage) -> Iterator[NotebookPage]:
    """The page in the dark theme; the light theme again afterwards (the setting is saved)."""
    page.set_theme(DARK_THEME)
    try:
        yield page
    finally:
        page.set_theme(LIGHT_THEME)


def test_generated_image_in_the_dark_theme(dark: NotebookPage) -> None:
    page = dark
    output = page.cell(REPLY_CELL).locator(".jp-OutputArea-output").first
    background, colour = output.evaluate(BEHIND_AND_TEXT)
    assert luminance(background) < 0.3, background  # the theme is on
    assert luminance(colour) > 0.5, colour  # the reply's text is light on dark
    image = page.cell(REPLY_CELL).locator(".jp-OutputArea-output img").first
    image.scroll_into_view_if_needed()
    assert reply_image(page)["natural"] == [512, 512]
    page.cell(REPLY_CELL).scroll_into_view_if_needed()
    shot = page.screenshot("generated_image_dark")
    assert shot.exists()
