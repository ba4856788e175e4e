"""The panel's image tray: pick images from the kernel's namespace, upload files,
see thumbnails, remove them.

The tray holds the caller's objects themselves (a PIL image, an array, a
Figure, the bytes of an uploaded file); they are encoded only when sent, with
the settings of that request. Uploaded bytes are taken out of the
``FileUpload`` at once so that they never stay in widget state.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
from PIL import Image

from .._errors import ChatImgError, ImageInputError, one_line
from .._image_inputs import is_image_like, to_image_urls
from .._images import decode_data_uri
from ._sink import THUMB_SIDE, thumbnail

__all__ = ["Attachment", "ImageTray", "close_all", "describe", "namespace_images"]

_HIDDEN_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython"})
NO_IMAGES = "(no images in the namespace)"


@dataclass
class Attachment:
    """One image in the tray: the object to send, a label, and a thumbnail."""

    value: Any
    label: str
    thumb: Image.Image
    from_reply: bool = False
    """Offered by the panel from the last reply's images (replaced by any new attachment)."""


def describe(value: Any) -> str:
    """A short description of an image-like value for the picker."""
    if isinstance(value, Image.Image):
        return f"PIL {value.width}x{value.height} {value.mode}"
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple):
        return "array " + "x".join(str(n) for n in shape)
    if isinstance(value, (list, tuple)):
        return f"{len(value)} images"
    return type(value).__name__


def namespace_images(namespace: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(label, name)`` of the image-like variables in ``namespace``, sorted by name.

    Strings, bytes and paths are left out (they are mostly not pictures), as
    are private names.
    """
    found: list[tuple[str, str]] = []
    for name, value in namespace.items():
        if (
            name.startswith("_")
            or name in _HIDDEN_NAMES
            or isinstance(value, (str, bytes, bytearray, memoryview))
        ):
            continue
        if isinstance(value, type) or (callable(value) and not isinstance(value, Image.Image)):
            continue
        try:
            ok = is_image_like(value)
        except Exception:  # an odd object in the namespace must not break the panel
            ok = False
        if ok and not isinstance(value, widgets.Widget):
            found.append((f"{name} ({describe(value)})", name))
    return sorted(found, key=lambda item: item[1])


def make_thumbnail(value: Any, label: str) -> Image.Image:
    """A small PIL image showing ``value`` (raises ``ImageInputError``, one line)."""
    if isinstance(value, Image.Image):
        return thumbnail(value)
    urls = to_image_urls(value, max_side=THUMB_SIDE, label=label)
    if not urls or not urls[0].startswith("data:"):
        raise ImageInputError(
            f"{label}: only images held in the kernel or uploaded can be attached here"
        )
    return decode_data_uri(urls[0], label=label)


def close_all(widget: widgets.Widget) -> None:
    """Close ``widget`` and every widget inside it (their comms and front-end models)."""
    for child in getattr(widget, "children", ()):
        close_all(child)
    widget.close()


def _one_line_error(exc: Exception) -> str:
    if isinstance(exc, ChatImgError):
        return str(exc)
    return one_line(f"could not attach the image: {type(exc).__name__}: {exc}")


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGBA" if "A" in image.getbands() else "RGB").save(buf, format="PNG")
    return buf.getvalue()


class ImageTray:
    """The tray's widgets and the list of attachments.

    ``namespace`` returns the kernel's user namespace (or an empty dict);
    ``report`` shows a one-line error in the panel's status.
    """

    def __init__(
        self, namespace: Callable[[], Mapping[str, Any]], report: Callable[[str], None]
    ) -> None:
        self._namespace = namespace
        self._report = report
        self.attachments: list[Attachment] = []
        self.picker = widgets.Dropdown(
            options=[(NO_IMAGES, "")],
            value="",
            description="Image",
            tooltip="image-like variables (PIL images, arrays, figures) in the notebook",
            layout=widgets.Layout(width="280px"),
        )
        self.picker.add_class("chatimg-picker")
        self.refresh_button = widgets.Button(
            icon="refresh",
            tooltip="look for images in the notebook again",
            layout=widgets.Layout(width="36px"),
        )
        self.add_button = widgets.Button(
            description="Add", tooltip="attach the chosen image", icon="plus"
        )
        self.add_button.add_class("chatimg-add")
        self.upload = widgets.FileUpload(accept="image/*", multiple=True, description="Upload")
        self.upload.add_class("chatimg-upload")
        self.thumbs = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self.thumbs.add_class("chatimg-thumbs")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.add_button.on_click(lambda _: self._add_picked())
        self.upload.observe(self._on_upload, names="value")
        self.box = widgets.VBox(
            [
                widgets.HBox([self.picker, self.refresh_button, self.add_button, self.upload]),
                self.thumbs,
            ]
        )
        self.refresh()

    # -- the namespace ---------------------------------------------------------

    def refresh(self) -> None:
        """Fill the picker with the image-like variables in the namespace now."""
        options = namespace_images(self._namespace())
        current = self.picker.value
        if not options:
            self.picker.options = [(NO_IMAGES, "")]
            self.picker.value = ""
            return
        self.picker.options = options
        names = [name for _, name in options]
        self.picker.value = current if current in names else names[0]

    def _add_picked(self) -> None:
        name = self.picker.value
        if not name:
            self._report(
                "no image chosen: make a PIL image, array or figure in a cell, then press refresh"
            )
            return
        namespace = self._namespace()
        if name not in namespace:
            self._report(f"{name!r} is no longer in the notebook; press refresh")
            self.refresh()
            return
        try:
            self.add(namespace[name], label=name)
        except Exception as exc:  # a button callback: one line in the status, no traceback
            self._report(_one_line_error(exc))

    # -- uploads -----------------------------------------------------------------

    def _on_upload(self, change: dict[str, Any]) -> None:
        files = change["new"]
        if not files:
            return
        for item in files:
            name = str(item.get("name") or "upload")
            try:
                self.add(bytes(item["content"]), label=name)
            except Exception as exc:  # an upload callback: one line in the status
                self._report(_one_line_error(exc))
        self.upload.value = ()  # the bytes live in the tray now, not in widget state

    # -- attachments -------------------------------------------------------------

    def add(self, value: Any, label: str | None = None) -> None:
        """Attach ``value`` (each item of a list or tuple separately)."""
        if isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                self.add(item, label=f"{label or 'images'}[{i}]")
            return
        label = label or describe(value)
        if not is_image_like(value):
            raise ImageInputError(
                f"{label}: {type(value).__name__} is not an image; "
                "attach a PIL image, a numpy array, a Figure or an image file"
            )
        # A new image replaces the ones offered from the last reply.
        self.attachments = [a for a in self.attachments if not a.from_reply]
        self.attachments.append(Attachment(value, label, make_thumbnail(value, label)))
        self._redraw()

    def offer_returned(self, images: list[Any]) -> None:
        """Show the last reply's images as removable attachments for the next message.

        They go along only while they are in the tray, visibly: removing them, or
        attaching any other image, leaves them out.
        """
        kept = [a for a in self.attachments if not a.from_reply]
        offered = []
        for i, image in enumerate(images):
            label = "from the last reply" + (f" [{i + 1}]" if len(images) > 1 else "")
            offered.append(Attachment(image, label, make_thumbnail(image, label), from_reply=True))
        # Images the user attached meanwhile win: the offer is then dropped.
        self.attachments = kept or offered
        self._redraw()

    def remove(self, index: int) -> None:
        """Take attachment ``index`` out of the tray."""
        del self.attachments[index]
        self._redraw()

    def clear(self) -> None:
        self.attachments.clear()
        self._redraw()

    def _redraw(self) -> None:
        for old in self.thumbs.children:
            close_all(old)
        cards = []
        for index, item in enumerate(self.attachments):
            image = widgets.Image(
                value=_png(item.thumb), format="png", layout=widgets.Layout(max_height="72px")
            )
            remove = widgets.Button(
                icon="times", tooltip=f"remove {item.label}", layout=widgets.Layout(width="32px")
            )
            remove.add_class("chatimg-remove")
            remove.on_click(lambda _, i=index: self.remove(i))
            caption = widgets.Label(item.label, layout=widgets.Layout(max_width="120px"))
            card = widgets.VBox([image, widgets.HBox([caption, remove])])
            card.add_class("chatimg-thumb")
            cards.append(card)
        self.thumbs.children = tuple(cards)
