"""Partial images in a real front end (JupyterServer and Notebook 7): one image element whose
picture changes as each partial arrives, the final image in its place, and only the final
image after save and reload."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import nbformat
import pytest
from harness import JupyterServer, NotebookPage
from PIL import Image

from benchmarks._server import BenchServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NOTEBOOK = "partials.ipynb"
STEPS = [(70, 70, 70), (130, 130, 130), (190, 190, 190)]
FINAL = (220, 30, 30)
SIZE = (96, 64)


def _png_b64(colour: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", SIZE, colour).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _events() -> list[bytes]:
    out = []
    for i, colour in enumerate(STEPS):
        obj = {
            "type": "image_generation.partial_image",
            "b64_json": _png_b64(colour),
            "partial_image_index": i,
            "output_format": "png",
        }
        out.append(
            b"event: image_generation.partial_image\ndata: " + json.dumps(obj).encode() + b"\n\n"
        )
    obj = {
        "type": "image_generation.completed",
        "b64_json": _png_b64(FINAL),
        "usage": {"input_tokens": 3, "output_tokens": 9, "total_tokens": 12},
    }
    out.append(b"event: image_generation.completed\ndata: " + json.dumps(obj).encode() + b"\n\n")
    return out


# Every state of the cell's output: how many <img> it holds, and their sources.
_RECORD = """([path, index]) => {
    const panel = [...document.querySelectorAll('.jp-NotebookPanel')]
        .find((node) => node.getAttribute('data-chatimg-path') === path);
    const cell = panel.querySelectorAll('.jp-Notebook .jp-Cell')[index];
    const seen = window.__chatimgImages = {most: 0, sources: []};
    const note = () => {
        const imgs = [...cell.querySelectorAll('.jp-OutputArea img')];
        seen.most = Math.max(seen.most, imgs.length);
        for (const img of imgs) {
            if (seen.sources[seen.sources.length - 1] !== img.src) seen.sources.push(img.src);
        }
    };
    new MutationObserver(note).observe(cell, {subtree: true, childList: true, attributes: true});
    note();
}"""


def colour_of(src: str) -> tuple[int, ...]:
    data = base64.b64decode(src.split(",", 1)[1])
    return tuple(Image.open(io.BytesIO(data)).convert("RGB").getpixel((10, 10)))


def images_in(page: NotebookPage, index: int) -> list[str]:
    return list(
        page.cell(index)
        .locator(".jp-OutputArea img")
        .evaluate_all("(imgs) => imgs.map((img) => img.src)")
    )


@pytest.fixture(scope="module")
def server() -> Iterator[BenchServer]:
    with BenchServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def page(
    jupyter_server: JupyterServer, notebook_page: NotebookPage, server: BenchServer
) -> NotebookPage:
    jupyter_server.write_notebook(
        NOTEBOOK,
        [
            "import jupyter_chatimg as ci",
            f"r = ci.chat('a red rectangle', model='gpt-image-1', base_url='{server.url}', "
            "partial_images=3)",
        ],
    )
    notebook_page.open_notebook(NOTEBOOK)
    return notebook_page


def test_partials_replace_one_image_in_place(page: NotebookPage, server: BenchServer) -> None:
    server.set_reply(_events(), pauses={1: 0.8, 2: 0.8, 3: 0.8})
    page.run_cell(0)
    page.wait_until_executed(0)
    page.page.evaluate(_RECORD, [NOTEBOOK, 1])
    page.run_cell(1)
    page.wait_until_executed(1, timeout=60)
    seen: dict[str, Any] = page.page.evaluate("() => window.__chatimgImages")
    colours = [colour_of(src) for src in seen["sources"]]
    assert seen["most"] == 1, seen["most"]  # never a second image: one output, replaced
    assert colours == [*STEPS, FINAL], colours  # every partial, coarse to fine, then the final
    assert [colour_of(s) for s in images_in(page, 1)] == [FINAL]
    page.screenshot(f"images_partials_final_{page.frontend}")


def test_the_final_image_stays_after_save_and_reload(
    jupyter_server: JupyterServer, page: NotebookPage
) -> None:
    page.page.keyboard.press("ControlOrMeta+s")
    saved = jupyter_server.root_dir / NOTEBOOK
    deadline = time.monotonic() + 30
    while "image/png" not in saved.read_text(encoding="utf-8"):
        assert time.monotonic() < deadline, "the notebook was not saved"
        time.sleep(0.1)
    outputs = nbformat.read(saved, as_version=4).cells[1].outputs
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 1 and "partial" not in pngs[0]["metadata"]["jupyter_chatimg"]
    page.open_notebook(NOTEBOOK)  # a fresh page load of the saved file
    page._wait(
        "the saved image", "() => document.querySelectorAll('.jp-OutputArea img').length > 0"
    )
    assert [colour_of(s) for s in images_in(page, 1)] == [FINAL]
