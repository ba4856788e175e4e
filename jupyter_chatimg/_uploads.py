"""A ``Request`` -> what the Images API is sent: the prompt, the images to edit, the mask.

The Images API takes the images themselves (multipart files), not URLs, so
every image is encoded here the way chat images are (bounded by
``max_side``, PNG or JPEG, or passed through when already PNG, JPEG or WEBP)
and kept as a ``data:`` URI until the dialect turns it into a file. A mask is
a PNG with an alpha channel whose transparent pixels mark where to edit; it
must be the size of the first image (both are compared as they are sent).

With a conversation (``--chat``, the panel), a prompt without images of its
own edits the images the last reply returned, so "now make it blue" works
after a generation.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ._config import Settings
from ._dialects.images import MAX_EDIT_IMAGES
from ._errors import ConfigError, ImageInputError
from ._image_inputs import to_image_urls
from ._images import _data_uri, _data_uri_bytes, decode_data_uri, encode_pil
from ._messages import Conversation, user_message
from ._request import ImageRef, Request, as_images

__all__ = ["UPLOAD_TYPES", "ImageInputs", "build_image_inputs"]

UPLOAD_TYPES = ("image/png", "image/jpeg", "image/webp")
"""What the Images API takes as image files."""
CARRIED_NOTE = "editing the image the last reply returned (send one with --image to edit another)"


@dataclass
class ImageInputs:
    """What an Images API request is made of (images and mask as ``data:`` URIs)."""

    prompt: str
    images: list[str] = field(default_factory=list)
    mask: str | None = None
    user: dict[str, Any] = field(default_factory=dict)
    """The request as a user message (text and images), for the conversation."""
    notes: list[str] = field(default_factory=list)


def _upload_urls(ref: ImageRef, settings: Settings, count: int) -> list[str]:
    urls = to_image_urls(as_images(ref.value), max_side=settings.max_side, label=ref.label)
    out: list[str] = []
    for url in urls:
        if count + len(out) >= MAX_EDIT_IMAGES:
            raise ConfigError(
                f"more than {MAX_EDIT_IMAGES} images: the Images API edits at most "
                f"{MAX_EDIT_IMAGES} at once; send fewer"
            )
        if url.startswith(("http://", "https://")):
            raise ImageInputError(
                f"{ref.label}: an http(s) URL cannot be uploaded to the Images API; "
                "download it and pass the bytes or a path"
            )
        mime = url[5 : url.find(";")].lower()
        if mime not in UPLOAD_TYPES:  # a GIF passed through as it was: send a still PNG
            url = encode_pil(decode_data_uri(url, label=ref.label), max_side=settings.max_side)
        out.append(url)
    return out


def _size(url: str, label: str) -> tuple[int, int]:
    with Image.open(io.BytesIO(_data_uri_bytes(url, label))) as img:
        return img.size


def _mask_png(ref: ImageRef, first: str, settings: Settings) -> str:
    urls = to_image_urls(as_images(ref.value), max_side=settings.max_side, label=ref.label)
    if len(urls) != 1 or not urls[0].startswith("data:"):
        raise ImageInputError(
            f"{ref.label}: a mask is one image (a PIL image, bytes or a path), "
            f"not {len(urls)} images or a URL"
        )
    mask = decode_data_uri(urls[0], label=ref.label)
    wanted = _size(first, "the first image")
    if mask.size != wanted:
        raise ImageInputError(
            f"{ref.label}: the mask is {mask.width}x{mask.height} but the first image is "
            f"{wanted[0]}x{wanted[1]}; a mask must be the size of the image it edits"
        )
    # (An RGBA mask with no transparent pixel was sent as RGB by the encoder: the same case.)
    alpha = mask.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in mask.info
    rgba = mask.convert("RGBA")
    low, _ = rgba.getchannel("A").getextrema()  # type: ignore[misc]
    if not alpha or low == 255:
        raise ImageInputError(
            f"{ref.label}: the mask has no transparent pixels, and those mark where to edit; "
            "make it RGBA with the area to change transparent (mask.putalpha(...))"
        )
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    return _data_uri("image/png", buf.getvalue())


def build_image_inputs(
    request: Request, settings: Settings, conversation: Conversation | None
) -> ImageInputs:
    """The prompt, the images to upload and the mask of ``request`` (``ImageInputError`` /
    ``ConfigError``, one line, for anything that cannot be sent)."""
    prompt = request.text.strip("\n")
    images: list[str] = []
    for ref in request.images():
        images.extend(_upload_urls(ref, settings, len(images)))
    notes: list[str] = []
    if not images and conversation is not None and conversation.pending_images:
        images = [u for u in conversation.pending_images if u.startswith("data:")]
        images = images[:MAX_EDIT_IMAGES]
        if images:
            notes.append(CARRIED_NOTE)
    mask = None
    if request.mask is not None:
        if not images:
            raise ConfigError(
                f"{request.mask.label}: a mask needs an image to edit; pass it with --image "
                "(images=)"
            )
        mask = _mask_png(request.mask, images[0], settings)
    parts: list[dict[str, Any]] = [{"type": "text", "text": prompt}] if prompt else []
    parts.extend({"type": "image_url", "image_url": {"url": u}} for u in images)
    user = user_message(parts if images else prompt)
    return ImageInputs(prompt, images, mask, user, notes)
