"""The panel's transcript entries: one ``ipywidgets.Output`` per message.

Each entry's ``outputs`` tuple is set directly (no capture context, so it is
safe from the worker thread and from ``LiveReply``'s flush timer). A reply
entry is also the ``Sink`` its ``LiveReply`` writes to: the markdown output is
replaced in place and returned images are appended as image outputs.
"""

from __future__ import annotations

import base64
import threading
from typing import Any

import ipywidgets as widgets
from PIL import Image

from .._images import mime_of_pil, pil_to_bytes

__all__ = ["TRANSCRIPT_IMAGE_HEIGHT", "ReplySink", "image_output", "markdown_output", "new_entry"]

THUMB_SIDE = 160
"""Long side of the sent-image thumbnails shown in the transcript and tray."""


def markdown_output(
    markdown: str, plain: str, metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A ``display_data`` output holding (already safe) markdown and a plain fallback."""
    return {
        "output_type": "display_data",
        "data": {"text/markdown": markdown, "text/plain": plain},
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


class ReplySink:
    """A ``Sink`` (see ``_render``) writing one reply into a transcript entry.

    ``states`` records every markdown the entry showed, in order (what a
    reader saw grow); ``markdown``/``plain`` are the last ones.
    """

    wants_deltas = False

    def __init__(self, entry: widgets.Output) -> None:
        self.entry = entry
        self._lock = threading.Lock()
        self._text: tuple[dict[str, Any], ...] = ()
        self._images: list[dict[str, Any]] = []
        self.markdown = ""
        self.plain = ""
        self.final = False
        self.states: list[str] = []
        self.images: list[Image.Image] = []
        self._in_place: int | None = None

    def update(
        self, markdown: str, plain: str, *, final: bool, metadata: dict[str, Any] | None
    ) -> None:
        with self._lock:
            if self.final:
                return
            self.final = final
            self.markdown, self.plain = markdown, plain
            self.states.append(markdown)
            md = {"jupyter_chatimg": metadata} if metadata else {}
            self._text = (markdown_output(markdown, plain, md),)
            self._publish()

    def image(self, image: Any, *, metadata: dict[str, Any] | None) -> None:
        try:
            output = image_output(image, metadata, max_height=TRANSCRIPT_IMAGE_HEIGHT)
        except Exception as exc:  # runs in a worker thread: a line, never a traceback
            line = f"[an image could not be shown: {type(exc).__name__}]"
            output = markdown_output("*" + line + "*", line)
        with self._lock:
            self.images.append(image)
            self._images.append(output)
            self._publish()

    def image_in_place(self, data: dict[str, str], metadata: dict[str, Any]) -> None:
        """One image slot of the entry, replaced by each call (an Images API stream's
        partial images, then its final image)."""
        output = {"output_type": "display_data", "data": data, "metadata": metadata}
        with self._lock:
            if self._in_place is None:
                self._in_place = len(self._images)
                self._images.append(output)
            else:
                self._images[self._in_place] = output
            self._publish()

    def delta(self, text: str) -> None:  # pragma: no cover - wants_deltas is False
        pass

    def _publish(self) -> None:
        self.entry.outputs = self._text + tuple(self._images)
