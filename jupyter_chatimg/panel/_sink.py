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

from .._images import mime_of_pil, pil_to_bytes

__all__ = ["TRANSCRIPT_IMAGE_HEIGHT", "ReplySink", "html_output", "image_output", "new_entry"]

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


def image_output(
    image: Image.Image,
    metadata: dict[str, Any] | None = None,
    *,
    max_height: int | None = None,
) -> dict[str, Any]:
    """A ``display_data`` output showing ``image``.

    ``max_height`` bounds the displayed size (aspect kept): the output still holds
    the whole image.
    """
    data, md = image_bundle(image)
    if max_height is not None and image.height > max_height:
        mime = next(key for key in data if key != "text/plain")
        scale = max_height / image.height
        md[mime] = {"width": max(1, round(image.width * scale)), "height": max_height}
    if metadata:
        md["jupyter_chatimg"] = metadata
    return {"output_type": "display_data", "data": data, "metadata": md}


def thumbnail(image: Image.Image, side: int = THUMB_SIDE) -> Image.Image:
    """A small copy of ``image`` (the caller's image is never changed)."""
    small = image.copy()
    small.thumbnail((side, side))
    return small


TRANSCRIPT_IMAGE_HEIGHT = 240
"""Largest height (CSS pixels) a returned image is shown at in the transcript.

A 512x512 image would fill the transcript (520 px) and push the reply's text out
of sight. The image output keeps the whole image (``panel.result.images`` and
Export show it at full size); only its displayed size is bounded, through the
output's ``width``/``height`` metadata, which front ends honour without any
script. Where the panel's script runs, a click on the image toggles its full
size (see ``_panel_keys``).
"""

# Colours come from the front end's theme (JupyterLab and Notebook 7 set these
# variables, light or dark); the fallbacks serve front ends without them.
_ENTRY_BORDERS = {
    "chatimg-user": "3px solid var(--jp-brand-color1, #4a90d9)",
    "chatimg-reply": "3px solid var(--jp-border-color1, #bbbbbb)",
}


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


def _bounded(metadata: dict[str, Any]) -> dict[str, Any]:
    """An image output's metadata with its displayed size bounded (``TRANSCRIPT_IMAGE_HEIGHT``)."""
    out = dict(metadata)
    for mime, size in metadata.items():
        if not mime.startswith("image/") or not isinstance(size, dict):
            continue
        width, height = size.get("width"), size.get("height")
        if isinstance(width, int) and isinstance(height, int) and height > TRANSCRIPT_IMAGE_HEIGHT:
            scale = TRANSCRIPT_IMAGE_HEIGHT / height
            out[mime] = {"width": max(1, round(width * scale)), "height": TRANSCRIPT_IMAGE_HEIGHT}
    return out


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
            self._publish()

    def error(self, line: str) -> None:
        """One line under whatever the reply showed (a failure outside ``LiveReply``)."""
        with self._lock:
            self.final = True
            self.outputs.append(html_output(f"<p><em>⚠ {html.escape(line)}</em></p>", line))
            self._publish()

    def delta(self, text: str) -> None:  # pragma: no cover - wants_deltas is False
        pass

    def _publish(self) -> None:
        """Under the lock: the entry shows the outputs, images at a bounded size
        (``outputs`` keep the whole size, for Export)."""
        self.entry.outputs = tuple({**o, "metadata": _bounded(o["metadata"])} for o in self.outputs)
