"""The panel's transcript entries: one ``ipywidgets.Output`` per message.

Each entry's ``outputs`` tuple is set directly (no capture context, so it is
safe from the worker thread and from ``LiveReply``'s flush timer). A reply
entry is also the ``Sink`` its ``LiveReply`` writes to: each of the reply's
outputs (text as safe HTML, images at their place) is replaced in place.
"""

from __future__ import annotations

import base64
import html
import threading
from typing import Any

import ipywidgets as widgets
from PIL import Image

from ._images import mime_of_pil, pil_to_bytes

__all__ = ["ReplySink", "html_output", "image_output", "new_entry"]

THUMB_SIDE = 160
"""Long side of the sent-image thumbnails shown in the transcript and tray."""


def html_output(html: str, plain: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``display_data`` output holding (already safe) HTML and a plain fallback."""
    return {
        "output_type": "display_data",
        "data": {"text/html": html, "text/plain": plain},
        "metadata": metadata or {},
    }


def image_bundle(image: Image.Image) -> tuple[dict[str, str], dict[str, Any]]:
    """``(data, metadata)`` of an image output for ``image`` (PNG or JPEG, base64)."""
    mime = mime_of_pil(image)
    data = base64.b64encode(pil_to_bytes(image, mime)).decode("ascii")
    return (
        {mime: data, "text/plain": f"<image {image.width}x{image.height}>"},
        {mime: {"width": image.width, "height": image.height}},
    )


def image_output(image: Image.Image, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``display_data`` output showing ``image``."""
    data, md = image_bundle(image)
    if metadata:
        md["jupyter_chatimg"] = metadata
    return {"output_type": "display_data", "data": data, "metadata": md}


def thumbnail(image: Image.Image, side: int = THUMB_SIDE) -> Image.Image:
    """A small copy of ``image`` (the caller's image is never changed)."""
    small = image.copy()
    small.thumbnail((side, side))
    return small


_ENTRY_BORDERS = {"chatimg-user": "3px solid #4a90d9", "chatimg-reply": "3px solid #bbbbbb"}


def new_entry(css_class: str) -> widgets.Output:
    """An empty transcript entry (``chatimg-user`` or ``chatimg-reply``)."""
    layout = widgets.Layout(
        width="100%",
        flex="0 0 auto",
        margin="2px 0 6px 0",
        padding="0 0 0 6px",
        border_left=_ENTRY_BORDERS.get(css_class, "none"),
    )
    entry = widgets.Output(layout=layout)
    entry.add_class(css_class)
    return entry


class ReplySink:
    """A ``Sink`` (see ``_render``) writing one reply into a transcript entry.

    ``outputs`` are the reply's outputs as shown last (text and images, in
    order); ``states`` records every HTML the entry's text showed, in order
    (what a reader saw grow); ``html``/``plain`` are the last ones.
    """

    wants_deltas = False

    def __init__(self, entry: widgets.Output) -> None:
        self.entry = entry
        self._lock = threading.Lock()
        self.outputs: list[dict[str, Any]] = []
        self.html = ""
        self.plain = ""
        self.final = False
        self.states: list[str] = []

    def show(
        self, slot: int, data: dict[str, Any], metadata: dict[str, Any], *, final: bool
    ) -> None:
        with self._lock:
            if self.final and not final:
                return
            self.final = self.final or final
            output = {"output_type": "display_data", "data": data, "metadata": metadata}
            if slot < len(self.outputs):
                self.outputs[slot] = output
            else:
                self.outputs.append(output)
            texts = [o["data"] for o in self.outputs if "text/html" in o["data"]]
            self.html = "".join(d["text/html"] for d in texts)
            self.plain = "\n".join(d["text/plain"] for d in texts if d.get("text/plain"))
            self.states.append(self.html)
            self.entry.outputs = tuple(self.outputs)

    def error(self, line: str) -> None:
        """One line under whatever the reply showed (a failure outside ``LiveReply``)."""
        with self._lock:
            self.final = True
            self.outputs.append(html_output(f"<p><em>⚠ {html.escape(line)}</em></p>", line))
            self.entry.outputs = tuple(self.outputs)

    def delta(self, text: str) -> None:  # pragma: no cover - wants_deltas is False
        pass
