"""Answer an ``ImageJob``: draw or edit, encode, and shape the reply the way OpenAI does.

A generation draws the prompt (``_prompt.parse_scene`` + ``_draw``); an edit applies
the edits it recognises to the first image (``_edit``), or draws the shapes the prompt
names onto it, and with a mask keeps the original wherever the mask is opaque
(transparent mask pixels mark the editable area; partial alpha blends). Streamed
replies send ``partial_images`` honest previews first: the final image pixelated with
blocks that shrink step by step, so each preview is closer to the final image.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageChops, ImageOps

from ._draw import caption_card, draw_scene, scene_sentence
from ._edit import apply_edits, normalize
from ._images_request import ImageJob
from ._prompt import EDIT_HELP, parse_edits, parse_scene
from ._protocol import dumps

_EPOCH = 1_700_000_000
_OUTPUT_TOKENS = {"low": 272, "medium": 1056, "high": 4160}  # per 1024x1024 image


@dataclass
class Rendered:
    """The images made for a job, and one sentence about what was done."""

    images: list[Image.Image]
    sentence: str

    @property
    def size(self) -> str:
        """``WxH`` of the images."""
        w, h = self.images[0].size
        return f"{w}x{h}"


def _target(job: ImageJob, default: tuple[int, int]) -> tuple[int, int]:
    if job.size != "auto":
        w, _, h = job.size.partition("x")
        return int(w), int(h)
    if job.family == "demo" or job.kind == "edit":
        return default
    if job.family == "gpt":
        ratio = default[0] / default[1]
        return (1536, 1024) if ratio > 1.2 else (1024, 1536) if ratio < 1 / 1.2 else (1024, 1024)
    return 1024, 1024


def _transparent_background(img: Image.Image, rgb: tuple[int, int, int]) -> Image.Image:
    """Pixels of exactly the background colour become fully transparent."""
    diff = ImageChops.difference(img.convert("RGB"), Image.new("RGB", img.size, rgb))
    r, g, b = diff.split()
    alpha = ImageChops.lighter(ImageChops.lighter(r, g), b).point(lambda v: 255 if v else 0)
    out = img.convert("RGBA")
    out.putalpha(alpha)
    return out


def _generate(job: ImageJob) -> Rendered:
    scene = parse_scene(job.prompt)
    size = _target(job, (scene.width, scene.height))
    if scene.recognised:
        img = draw_scene(scene, size)
        sentence = scene_sentence(scene).replace(
            f"{scene.width}×{scene.height}", f"{size[0]}×{size[1]}", 1
        )
        background = scene.background
    else:
        img = caption_card(job.prompt, size)
        sentence = (
            "I found nothing I know how to draw in the prompt, so the image is a card showing it."
        )
        background = (245, 245, 240)
    if job.background == "transparent":
        img = _transparent_background(img, background)
        sentence += " The background is transparent."
    return Rendered([img] * job.n, sentence)


def _overlay(base: Image.Image, prompt: str) -> tuple[Image.Image, str] | None:
    """The shapes the prompt names, drawn over ``base`` (None when it names none)."""
    scene = parse_scene(prompt)
    if not scene.groups:
        return None
    layer = _transparent_background(draw_scene(scene, base.size), scene.background)
    out = Image.alpha_composite(base.convert("RGBA"), layer)
    what = scene_sentence(scene).split(": ", 1)[-1].split(" on a ")[0].rstrip(".")
    return (out if base.mode == "RGBA" else out.convert("RGB")), f"drew {what}"


def _masked(edited: Image.Image, base: Image.Image, mask: Image.Image) -> Image.Image:
    """``edited`` where the mask is transparent, ``base`` where it is opaque."""
    mode = "RGBA" if "RGBA" in (edited.mode, base.mode) else "RGB"
    editable = ImageOps.invert(mask.convert("RGBA").getchannel("A"))
    return Image.composite(edited.convert(mode), base.convert(mode), editable)


def _edit(job: ImageJob) -> Rendered:
    base = normalize(job.images[0])
    edits = parse_edits(job.prompt)
    notes: list[str] = []
    if edits:
        out, done = apply_edits(base, edits)
        what = "Applied: " + ", then ".join(done)
    elif (drawn := _overlay(base, job.prompt)) is not None:
        out, what = drawn[0], "I " + drawn[1]
    else:
        out, what = base, f"I recognised no edit, so the image is unchanged (I can: {EDIT_HELP})"
    if job.mask is not None:
        if out.size == base.size:
            out = _masked(out, base, job.mask)
            notes.append("only where the mask is transparent")
        else:
            notes.append("the mask was not used because the edit changed the image size")
    if len(job.images) > 1:
        notes.append(f"to the first of the {len(job.images)} images (the others were not used)")
    size = _target(job, out.size)
    if size != out.size:
        out = out.resize(size, Image.Resampling.LANCZOS)
        notes.append(f"resized to {size[0]}×{size[1]}")
    if job.background == "opaque" and out.mode == "RGBA":
        out = _flatten(out)
    sentence = what + (" (" + "; ".join(notes) + ")" if notes else "") + "."
    return Rendered([out] * job.n, sentence)


def render(job: ImageJob) -> Rendered:
    """The images for ``job`` (all ``n`` are the same: the demo is deterministic)."""
    return _edit(job) if job.kind == "edit" else _generate(job)


def _flatten(img: Image.Image) -> Image.Image:
    white = Image.new("RGBA", img.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, img.convert("RGBA")).convert("RGB")


def encode(img: Image.Image, fmt: str, compression: int = 100) -> bytes:
    """``img`` as PNG, JPEG (alpha flattened onto white) or WebP (lossless at 100)."""
    buf = io.BytesIO()
    if fmt == "jpeg":
        rgb = _flatten(img) if img.mode == "RGBA" else img.convert("RGB")
        rgb.save(buf, "JPEG", quality=compression)
    elif fmt == "webp":
        if compression >= 100:
            img.save(buf, "WEBP", lossless=True, method=4)
        else:
            img.save(buf, "WEBP", quality=compression, method=4)
    else:
        img.save(buf, "PNG", compress_level=6)
    return buf.getvalue()


def partials(img: Image.Image, count: int) -> list[Image.Image]:
    """``count`` previews of ``img``, coarse to fine: pixelated with shrinking blocks."""
    coarsest = max(2.0, max(img.size) / 8)
    out = []
    for i in range(count):  # blocks shrink geometrically: 1024 px, 3 previews: 128, 25, 5
        block = max(2, round(coarsest ** ((count - i) / count)))
        w, h = math.ceil(img.width / block), math.ceil(img.height / block)
        small = img.resize((w, h), Image.Resampling.BOX)
        out.append(small.resize(img.size, Image.Resampling.NEAREST))
    return out


def has_transparency(img: Image.Image) -> bool:
    """Whether any pixel is not fully opaque."""
    if img.mode != "RGBA":
        return False
    low, _high = img.getchannel("A").getextrema()
    return isinstance(low, (int, float)) and low < 255


def _quality(job: ImageJob) -> str:
    return job.quality if job.quality in _OUTPUT_TOKENS else "medium"


def usage(job: ImageJob, rendered: Rendered) -> dict[str, Any]:
    """Token usage like the GPT image models report it."""
    text = max(1, round(len(job.prompt.split()) * 1.3))
    image_tokens = 0
    for img in job.images:
        tiles = math.ceil(img.width / 512) * math.ceil(img.height / 512)
        image_tokens += 65 + 129 * tiles
    w, h = rendered.images[0].size
    per_image = round(_OUTPUT_TOKENS[_quality(job)] * w * h / (1024 * 1024))
    output = max(1, per_image) * len(rendered.images)
    return {
        "input_tokens": text + image_tokens,
        "input_tokens_details": {"image_tokens": image_tokens, "text_tokens": text},
        "output_tokens": output,
        "total_tokens": text + image_tokens + output,
    }


def created(job: ImageJob) -> int:
    """A ``created`` time derived from the request, so replies repeat exactly."""
    return _EPOCH + int(job.digest[:8] or "0", 16) % 100_000_000


def _settings(job: ImageJob, rendered: Rendered, fmt: str) -> dict[str, Any]:
    background = "transparent" if has_transparency(rendered.images[0]) else "opaque"
    return {
        "size": rendered.size,
        "quality": _quality(job),
        "background": background,
        "output_format": fmt,
    }


def response_body(
    job: ImageJob, rendered: Rendered, publish: Callable[[bytes], str]
) -> dict[str, Any]:
    """The whole ``ImagesResponse``; ``publish(png)`` gives a URL for ``url`` replies."""
    by_url = job.response_format == "url"
    fmt = "png" if by_url or job.family.startswith("dall-e") else job.output_format
    data: list[dict[str, Any]] = []
    for img in rendered.images:
        raw = encode(img, fmt, job.output_compression)
        item: dict[str, Any] = {"url": publish(raw)} if by_url else {"b64_json": _b64(raw)}
        if job.family in ("demo", "dall-e-3"):
            item["revised_prompt"] = revised_prompt(rendered.sentence)
        data.append(item)
    body: dict[str, Any] = {"created": created(job), "data": data}
    if job.family.startswith("dall-e"):
        return body
    return {**body, **_settings(job, rendered, fmt), "usage": usage(job, rendered)}


def revised_prompt(sentence: str) -> str:
    """What was drawn, phrased as a prompt: "I drew a 64×64 image: ..." -> "A 64×64 image: ..."."""
    return "A " + sentence[len("I drew a ") :] if sentence.startswith("I drew a ") else sentence


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def stream_events(job: ImageJob, rendered: Rendered) -> list[bytes]:
    """The SSE events of a streamed reply: per image, its previews then ``completed``."""
    fmt = job.output_format
    settings = _settings(job, rendered, fmt)
    t = created(job)
    events: list[bytes] = []

    def event(kind: str, img: Image.Image, **extra: Any) -> bytes:
        raw = encode(img, fmt, job.output_compression)
        obj: dict[str, Any] = {"type": f"{job.event_prefix}.{kind}", "b64_json": _b64(raw)}
        return _event({**obj, "created_at": t + len(events), **settings, **extra})

    for img in rendered.images:
        for i, preview in enumerate(partials(img, job.partial_images)):
            events.append(event("partial_image", preview, partial_image_index=i))
        events.append(event("completed", img, usage=usage(job, rendered)))
    return events


def _event(obj: dict[str, Any]) -> bytes:
    return b"event: " + str(obj["type"]).encode() + b"\ndata: " + dumps(obj) + b"\n\n"


def error_payload(message: str) -> bytes:
    """The JSON of a mid-stream error event: ``{"type": "error", "error": {...}}``."""
    err = {"type": "server_error", "code": "demo_fault", "message": message, "param": None}
    return dumps({"type": "error", "error": err})
