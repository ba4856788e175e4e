"""Partial images in a real kernel: one ``display_data``, then ``update_display_data`` with
the same ``display_id``; the saved notebook holds one image output per final image."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from _kernel import run_cell
from _servers import ReplayServer
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient
from PIL import Image

WIRE = Path(__file__).parent / "fixtures" / "wire_images"
GENERATIONS = "/v1/images/generations"
IMAGE_TYPES = ("image/png", "image/jpeg")


def png_b64(colour: tuple[int, int, int], size: tuple[int, int] = (48, 32)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def event(kind: str, **fields: Any) -> str:
    data = json.dumps({"type": f"image_generation.{kind}", **fields})
    return f"event: image_generation.{kind}\ndata: {data}\n\n"


def two_image_stream() -> str:
    """n=2: two partials, then two completed events (one per final image)."""
    usage = {"input_tokens": 5, "output_tokens": 10, "total_tokens": 15}
    return (
        event("partial_image", b64_json=png_b64((90, 90, 90)), partial_image_index=0)
        + event("partial_image", b64_json=png_b64((150, 60, 60)), partial_image_index=1)
        + event("completed", b64_json=png_b64((220, 30, 30)), usage=usage)
        + event("completed", b64_json=png_b64((30, 30, 220)), usage=usage)
    )


@pytest.fixture
def kernel(clean_env: pytest.MonkeyPatch) -> Any:
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def is_image(msg: dict[str, Any]) -> bool:
    return msg["msg_type"] in ("display_data", "update_display_data") and any(
        t in msg["content"].get("data", {}) for t in IMAGE_TYPES
    )


def test_partials_are_one_output_replaced_in_place(
    kernel: Any, replay_server: ReplayServer
) -> None:
    # Pieces far apart: every partial gets its own update (the interval is 0.05 s).
    replay_server.add_file(
        WIRE / "gen_stream.sse", path=GENERATIONS, chunk_sizes=(400, 400), delay=0.08
    )
    assert not [
        m for m in run_cell(kernel, "%load_ext jupyter_chatimg") if m["msg_type"] == "error"
    ]
    msgs = run_cell(
        kernel,
        f"%%chatimg --base-url {replay_server.url} -m gpt-image-1 --partial-images 2 -o r\n"
        "a small red lighthouse",
    )
    assert not [m for m in msgs if m["msg_type"] == "error"]
    images = [m for m in msgs if is_image(m)]
    kinds = [m["msg_type"] for m in images]
    assert kinds[0] == "display_data" and set(kinds[1:]) == {"update_display_data"}
    assert len(kinds) == 3  # partial 1, partial 2, then the final image in its place
    ids = {m["content"]["transient"]["display_id"] for m in images}
    assert len(ids) == 1
    marks = [m["content"]["metadata"].get("jupyter_chatimg", {}) for m in images]
    assert [mark.get("partial") for mark in marks] == [1, 2, None]
    assert marks[-1]["model"] == "gpt-image-1"  # the final one carries the provenance
    check = run_cell(kernel, "print(len(r.images), r.images[0].size, r.usage['total_tokens'])")
    assert [m["content"]["text"] for m in check if m["msg_type"] == "stream"] == [
        "1 (32, 32) 489\n"
    ]


def test_saved_notebook_keeps_one_image_per_final_image(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with ReplayServer() as srv:
        srv.add_sse("POST", GENERATIONS, two_image_stream(), chunk_sizes=(300, 300), delay=0.06)
        clean_env.setenv("CHATIMG_BASE_URL", srv.url)
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_code_cell("%load_ext jupyter_chatimg"),
            nbformat.v4.new_code_cell(
                "%%chatimg -m gpt-image-1 --n 2 --partial-images 2 -o r\ntwo squares"
            ),
        ]
        NotebookClient(
            nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
        path = tmp_path / "saved.ipynb"
        nbformat.write(nb, path)
    saved = nbformat.read(path, as_version=4)
    outputs = saved.cells[1].outputs
    images = [o for o in outputs if any(t in o.get("data", {}) for t in IMAGE_TYPES)]
    assert len(images) == 2
    assert all("partial" not in o["metadata"].get("jupyter_chatimg", {}) for o in images)
    colours = []
    for o in images:
        mime = next(t for t in IMAGE_TYPES if t in o["data"])
        pic = Image.open(io.BytesIO(base64.b64decode(o["data"][mime]))).convert("RGB")
        colours.append(pic.getpixel((10, 10)))
    assert colours == [(220, 30, 30), (30, 30, 220)]  # the finals, in order
    assert "partial image" not in json.dumps(outputs)
