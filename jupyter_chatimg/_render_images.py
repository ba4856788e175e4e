"""Partial images shown in ONE image output that is replaced in place (DESIGN 4.2, 5).

An Images API stream sends partial images (coarse to fine) before the final
one. ``PartialImages`` shows the first at once, replaces it as later ones
come (at most one update per ``update_interval``, like text; a timer sends
the last one held back), and lets the final image replace the last partial,
so a saved notebook holds one image output per final image and no partials.

Where it goes is the sink's ``image_in_place(bundle, metadata)`` (the
notebook: one ``display_id``, ``display_data`` then ``update_display_data``;
the panel: one slot of its transcript entry). A sink without it (a terminal)
shows no partials, only the final images, one line each.

What is sent: the first partial goes as the server encoded it (PNG, JPEG or
GIF; no decoding, so it is on screen within milliseconds of arriving). Later
partials that are large are sent as previews (half size, JPEG, or PNG when
transparent) shown at full size: each partial is a step on the way, and the
bytes sent to the front end stay within a small multiple of the final
image's. The final image is shown as every returned image is (``image_bundle``).
"""

from __future__ import annotations

import base64
import binascii
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from ._images import decode_data_uri, mime_of_pil, pil_to_bytes

__all__ = ["PREVIEW_BYTES", "PartialImages", "image_bundle", "partial_bundle"]

PREVIEW_BYTES = 64_000
"""A later partial above this many bytes is sent as a smaller preview."""
_PASS_THROUGH = ("image/png", "image/jpeg", "image/gif")

Bundle = tuple[dict[str, str], dict[str, Any]]


def image_bundle(image: Any, metadata: dict[str, Any] | None = None) -> Bundle:
    """``(data, metadata)`` of an image output for a PIL image (PNG or JPEG)."""
    mime = mime_of_pil(image)
    data = base64.b64encode(pil_to_bytes(image, mime)).decode("ascii")
    md: dict[str, Any] = {mime: {"width": image.width, "height": image.height}}
    if metadata:
        md["jupyter_chatimg"] = metadata
    return {mime: data, "text/plain": f"<image {image.width}x{image.height}>"}, md


def _png_size(payload: str) -> tuple[int, int] | None:
    """Width and height from a base64 PNG's header (the first 24 bytes), without decoding it."""
    try:
        head = base64.b64decode(payload[:32])
    except (binascii.Error, ValueError):
        return None
    if len(head) >= 24 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        w, h = struct.unpack(">II", head[16:24])
        return int(w), int(h)
    return None


def partial_bundle(uri: str, number: int, *, preview: bool) -> Bundle:
    """The output for partial image ``number`` (1-based), a ``data:`` URI.

    As it came when it is PNG, JPEG or GIF and either ``preview`` is false or
    it is small; otherwise decoded and sent as a preview (half size when
    large) whose metadata keeps the full size for display.
    """
    head, _, payload = uri.partition(",")
    mime = head[5:].split(";", 1)[0].strip().lower()
    label = f"<partial image {number}>"
    small = len(payload) * 3 // 4 <= PREVIEW_BYTES
    if mime in _PASS_THROUGH and (not preview or small):
        size = _png_size(payload) if mime == "image/png" else None
        md: dict[str, Any] = {mime: {"width": size[0], "height": size[1]}} if size else {}
        md["jupyter_chatimg"] = {"partial": number}
        return {mime: payload, "text/plain": label}, md
    image = decode_data_uri(uri, label="partial image")
    width, height = image.size
    alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    image = image.convert("RGBA" if alpha else "RGB")
    if preview and not small and max(width, height) >= 256:
        image = image.reduce(2)
    kind = "image/png" if alpha else "image/jpeg"
    data = base64.b64encode(pil_to_bytes(image, kind)).decode("ascii")
    md = {kind: {"width": width, "height": height}, "jupyter_chatimg": {"partial": number}}
    return {kind: data, "text/plain": label}, md


class PartialImages:
    """One image output for a stream's partial images, replaced in place, coalesced.

    ``show`` is called from the thread that reads the stream; a timer may
    send a partial that was held back; ``finish`` (the final image) and
    ``close`` end it. Every send happens under one lock, so updates reach the
    sink in order and none follows the final one.
    """

    def __init__(
        self,
        sink: Any,
        *,
        update_interval: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._put: Callable[[dict[str, str], dict[str, Any]], None] | None = getattr(
            sink, "image_in_place", None
        )
        self.update_interval = update_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: tuple[str, int] | None = None
        self._timer: threading.Timer | None = None
        self._last_sent = -1e9
        self._closed = False
        self._replaced = False
        self.received = 0
        self.shown = 0
        """Partial images sent to the sink (the others were replaced before their turn)."""

    @property
    def active(self) -> bool:
        """True once a partial image is on screen."""
        return self.shown > 0

    def show(self, uri: str) -> None:
        """A new partial image: on screen now, or within ``update_interval``."""
        if self._put is None:
            return
        with self._lock:
            if self._closed:
                return
            self.received += 1
            self._pending = (uri, self.received)
            if self._clock() >= self._last_sent + self.update_interval:
                self._send_pending()
            elif self._timer is None:
                wait = max(0.0, self._last_sent + self.update_interval - self._clock())
                self._timer = threading.Timer(wait, self._flush)
                self._timer.daemon = True
                self._timer.start()

    def _flush(self) -> None:
        with self._lock:
            self._timer = None
            if not self._closed:
                self._send_pending()

    def _send_pending(self) -> None:
        """Under the lock: send the partial held back, if any."""
        if self._pending is None or self._put is None:
            return
        uri, number = self._pending
        self._pending = None
        try:
            data, metadata = partial_bundle(uri, number, preview=self.shown > 0)
        except Exception:  # a partial that cannot be shown is skipped; the final one decides
            return
        self._put(data, metadata)
        self._last_sent = self._clock()
        self.shown += 1

    def finish(self, image: Any, metadata: dict[str, Any] | None) -> bool:
        """Replace the last partial with ``image``; False when there is none to replace
        (or it was replaced already): then the caller shows the image as usual."""
        with self._lock:
            self._stop()
            if self._put is None or not self.shown or self._replaced:
                return False
            self._replaced = True
            data, md = image_bundle(image, metadata)
            self._put(data, md)
            return True

    def close(self) -> None:
        """No more partials (a held-back one is dropped)."""
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        self._closed = True
        self._pending = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
