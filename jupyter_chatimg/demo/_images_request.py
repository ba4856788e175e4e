"""Validate an Images API request (``/v1/images/generations`` JSON or ``/v1/images/edits``
multipart) into an ``ImageJob``, refusing what OpenAI's service refuses (400s with
``invalid_request_error`` bodies naming the ``param``).

Model families: ``demo-image`` (any ``WxH`` from 16 to 4096 px, ``b64_json`` or ``url``),
the GPT image models (``gpt-image-*``, ``chatgpt-image-latest``: ``b64_json`` always,
streaming, partial images), ``dall-e-2`` and ``dall-e-3`` (``url`` by default, no
streaming, their own sizes and qualities).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ._httperror import DemoHTTPError, bad
from ._multipart import Part, parse_multipart
from ._request import MAX_IMAGE_PIXELS

IMAGE_MODELS: tuple[str, ...] = (
    "demo-image",
    "gpt-image-1",
    "gpt-image-1-mini",
    "gpt-image-1.5",
    "gpt-image-2",
    "chatgpt-image-latest",
    "dall-e-2",
    "dall-e-3",
)
MAX_EDIT_IMAGES = 16
GPT_SIZES = ("1024x1024", "1536x1024", "1024x1536")
_SIZES = {
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
}
_QUALITIES = {
    "demo": ("low", "medium", "high", "auto"),
    "gpt": ("low", "medium", "high", "auto", "standard"),
    "dall-e-2": ("standard", "auto"),
    "dall-e-3": ("standard", "hd", "auto"),
}
_PROMPT_LIMITS = {"dall-e-2": 1000, "dall-e-3": 4000}
_UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP")
_WXH = re.compile(r"(\d{1,5})x(\d{1,5})")


@dataclass
class ImageJob:
    """A validated Images API request."""

    kind: str  # "generation" or "edit"
    model: str
    prompt: str
    n: int = 1
    size: str = "auto"
    quality: str = "auto"
    background: str = "auto"
    output_format: str = "png"
    output_compression: int = 100
    response_format: str = "b64_json"
    stream: bool = False
    partial_images: int = 0
    images: list[Image.Image] = field(default_factory=list)
    mask: Image.Image | None = None
    digest: str = ""

    @property
    def family(self) -> str:
        """``demo``, ``gpt``, ``dall-e-2`` or ``dall-e-3``."""
        if self.model.startswith("dall-e"):
            return self.model
        return "demo" if self.model == "demo-image" else "gpt"

    @property
    def event_prefix(self) -> str:
        """``image_generation`` or ``image_edit`` (streamed event types)."""
        return "image_edit" if self.kind == "edit" else "image_generation"


def known_model(model: str) -> bool:
    """An Images API model: one of ``IMAGE_MODELS`` or another ``gpt-image-*``."""
    return model in IMAGE_MODELS or model.startswith("gpt-image-")


def _check_choice(value: Any, options: tuple[str, ...], param: str) -> str:
    if value not in options:
        listed = ", ".join(f"'{o}'" for o in options)
        raise bad(f"Invalid value for '{param}': {value!r}. Supported values are: {listed}.", param)
    return str(value)


def _int(value: Any, param: str, low: int, high: int) -> int:
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"Invalid type for '{param}': expected an integer, got {value!r}.", param)
    if not low <= value <= high:
        raise bad(f"Invalid '{param}': {value}. It must be between {low} and {high}.", param)
    return value


def _bool(value: Any, param: str) -> bool:
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    if not isinstance(value, bool):
        raise bad(f"Invalid type for '{param}': expected a boolean, got {value!r}.", param)
    return value


def _size(value: Any, family: str) -> str:
    if value is None or value == "auto":
        return "auto"
    if not isinstance(value, str):
        raise bad(f"Invalid type for 'size': expected a string, got {value!r}.", "size")
    if family in _SIZES:
        return _check_choice(value, _SIZES[family], "size")
    m = _WXH.fullmatch(value)
    if family == "demo" and m and all(16 <= int(v) <= 4096 for v in m.groups()):
        return value
    if family == "gpt" and value in GPT_SIZES:
        return value
    if family == "gpt" and m:  # gpt-image-2 takes arbitrary sizes within limits
        w, h = int(m.group(1)), int(m.group(2))
        if w % 16 == 0 and h % 16 == 0 and max(w, h) <= 3840 and max(w, h) <= 3 * min(w, h):
            return value
    hint = "WxH with sides from 16 to 4096" if family == "demo" else ", ".join(GPT_SIZES)
    raise bad(f"Invalid value for 'size': {value!r}. Supported sizes: auto, {hint}.", "size")


def _options(job: ImageJob, f: dict[str, Any]) -> None:
    """Validate the fields both endpoints share into ``job``."""
    fam = job.family
    if f.get("n") is not None:
        job.n = _int(f["n"], "n", 1, 10)
        if fam == "dall-e-3" and job.n != 1:
            raise bad("Invalid 'n': dall-e-3 only supports n=1.", "n")
    job.size = _size(f.get("size"), fam)
    if f.get("quality") is not None:
        job.quality = _check_choice(
            f["quality"], _QUALITIES["gpt" if fam == "gpt" else fam], "quality"
        )
    gpt_only = ("background", "output_format", "output_compression", "stream", "partial_images")
    for key in gpt_only if fam.startswith("dall-e") else ():
        if f.get(key) is not None and f.get(key) not in (False, "false"):
            raise bad(f"'{key}' is only supported for the GPT image models (and demo-image).", key)
    if f.get("background") is not None:
        job.background = _check_choice(
            f["background"], ("transparent", "opaque", "auto"), "background"
        )
    if f.get("output_format") is not None:
        job.output_format = _check_choice(
            f["output_format"], ("png", "jpeg", "webp"), "output_format"
        )
    if job.background == "transparent" and job.output_format == "jpeg":
        raise bad(
            "A transparent background needs output_format png or webp (not jpeg).", "background"
        )
    if f.get("output_compression") is not None:
        job.output_compression = _int(f["output_compression"], "output_compression", 0, 100)
    _stream_options(job, f)


def _stream_options(job: ImageJob, f: dict[str, Any]) -> None:
    fam = job.family
    if f.get("response_format") is not None:
        rf = _check_choice(f["response_format"], ("url", "b64_json"), "response_format")
        job.response_format = "b64_json" if fam == "gpt" else rf  # GPT image: always base64
    elif fam.startswith("dall-e"):
        job.response_format = "url"
    if f.get("stream") is not None:
        job.stream = _bool(f["stream"], "stream")
    if f.get("partial_images") is not None:
        job.partial_images = _int(f["partial_images"], "partial_images", 0, 3)
    for key, options in (
        ("moderation", ("low", "auto")),
        ("style", ("vivid", "natural")),
        ("input_fidelity", ("high", "low")),
    ):
        if f.get(key) is not None:
            _check_choice(f[key], options, key)
    if f.get("user") is not None and not isinstance(f["user"], str):
        raise bad("Invalid type for 'user': expected a string.", "user")


def _start(f: dict[str, Any], kind: str) -> ImageJob:
    model = f.get("model")
    model = "demo-image" if model is None else model
    if not isinstance(model, str) or not known_model(model):
        raise DemoHTTPError(
            404,
            f"The model '{model}' does not exist on this offline demo server. Image models: "
            f"{', '.join(IMAGE_MODELS)}.",
            param="model",
            code="model_not_found",
        )
    if kind == "edit" and model == "dall-e-3":
        raise bad(
            "Invalid value for 'model': dall-e-3 cannot edit images; use dall-e-2 or a GPT image model.",
            "model",
        )
    prompt = f.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise bad("Missing required parameter: 'prompt'.", "prompt")
    job = ImageJob(kind=kind, model=model, prompt=prompt)
    limit = _PROMPT_LIMITS.get(job.family, 32000)
    if len(prompt) > limit:
        raise bad(
            f"Invalid 'prompt': it is {len(prompt)} characters long; {model} accepts {limit}.",
            "prompt",
        )
    _options(job, f)
    return job


def _digest(fields: dict[str, Any], files: list[bytes]) -> str:
    h = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    for data in files:
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


def parse_generation(raw: bytes) -> ImageJob:
    """``POST /v1/images/generations``: a JSON body."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(
            f"The request body is not valid JSON ({type(e).__name__}): send a JSON object.", None
        ) from None
    if not isinstance(body, dict):
        raise bad("The request body must be a JSON object.", None)
    job = _start(body, "generation")
    job.digest = _digest(body, [])
    return job


def _open(data: bytes, param: str, index: int | None = None) -> tuple[Image.Image, str]:
    which = f"'{param}'" + (f" number {index + 1}" if index is not None else "")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_IMAGE_PIXELS:
            raise bad(f"The image {which} is too large ({img.width}×{img.height} pixels).", param)
        fmt = img.format or ""
        img.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise bad(
            f"Invalid image file for {which}: it is not a readable image. Supported formats are "
            "png, jpeg and webp.",
            param,
        ) from None
    if fmt not in _UPLOAD_FORMATS:
        raise bad(
            f"Invalid image file for {which}: {fmt or 'unknown'} format. Supported formats are png, jpeg and webp.",
            param,
        )
    return img, fmt


def _edit_files(job: ImageJob, parts: list[Part]) -> list[bytes]:
    uploads = [p for p in parts if p.name in ("image", "image[]")]
    if not uploads:
        raise bad("Missing required parameter: 'image'.", "image")
    if len(uploads) > MAX_EDIT_IMAGES:
        raise bad(
            f"Too many images: {len(uploads)}. You can send up to {MAX_EDIT_IMAGES}.", "image"
        )
    if job.family == "dall-e-2" and len(uploads) > 1:
        raise bad("dall-e-2 edits exactly one image.", "image")
    for i, p in enumerate(uploads):
        img, fmt = _open(p.data, "image", i if len(uploads) > 1 else None)
        if job.family == "dall-e-2" and (fmt != "PNG" or img.width != img.height):
            raise bad("dall-e-2 edits a square PNG image.", "image")
        job.images.append(img)
    masks = [p for p in parts if p.name == "mask"]
    if masks:
        mask, fmt = _open(masks[0].data, "mask")
        first = job.images[0]
        if fmt != "PNG":
            raise bad("Invalid mask image format: the mask must be a PNG file.", "mask")
        if mask.size != first.size:
            raise bad(
                f"Invalid mask: it is {mask.width}×{mask.height}, but the (first) image is "
                f"{first.width}×{first.height}; they must be the same size.",
                "mask",
            )
        if "A" not in mask.getbands() and "transparency" not in mask.info:
            raise bad("Invalid mask image format - mask image missing alpha channel.", "mask")
        job.mask = mask
    return [p.data for p in uploads] + [m.data for m in masks[:1]]


def parse_edit(raw: bytes, content_type: str) -> ImageJob:
    """``POST /v1/images/edits``: a multipart/form-data body."""
    parts = parse_multipart(content_type, raw)
    fields: dict[str, Any] = {}
    for p in parts:
        if p.filename is None and p.name not in ("image", "image[]", "mask"):
            fields.setdefault(p.name, p.text)
    job = _start(fields, "edit")
    job.digest = _digest(fields, _edit_files(job, parts))
    return job
