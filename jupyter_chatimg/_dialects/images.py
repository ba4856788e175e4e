"""The Images API dialect: generations and edits, whole and streamed (pure, no I/O).

``POST /images/generations`` takes JSON; ``POST /images/edits`` takes
``multipart/form-data`` with ``image`` (one file) or ``image[]`` (up to 16)
and an optional ``mask`` (DESIGN 4.2; the reference is the OpenAPI document
of ``openai/openai-openapi``: ``CreateImageRequest``,
``CreateImageEditRequest``, ``ImagesResponse``, ``ImageGenStreamEvent``,
``ImageEditStreamEvent``).

The body of either kind is built here as one JSON-able dict: an edit's
images and mask are ``data:`` URIs in it (so that the cache key and the
provenance digest treat it like any other body); ``ImagesDialect.form``
turns it into the multipart fields and files the HTTP layer posts.

Every field is checked before anything is sent, each bad value with one
line: sizes, ``n``, ``quality``, ``background``, ``output_format``,
``partial_images`` and the rest, for the model families whose rules are
published (``gpt-image-*``, ``chatgpt-image-*``, ``dall-e-2``, ``dall-e-3``);
models named in ``image_models`` (gateways, FLUX ...) get only the checks
that hold for every model.

Replies: ``parse_images_response`` reads ``{"data": [{"b64_json" | "url",
"revised_prompt"}], "usage"}``; ``ImagesStreamParser`` reads the
``*.partial_image`` / ``*.completed`` events (the JSON's ``type`` decides; an
``event:`` line may name it when the JSON does not). A stream that ends with
no ``completed`` event is a cut reply whose partial result holds the last
partial image.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._errors import APIError, ConfigError, StreamError, one_line
from .._result import ChatResult, Choice
from .base import Delta
from .errors import error_message_of, loads

__all__ = [
    "API_CHOICES",
    "EDIT",
    "FIELDS",
    "GENERATION",
    "IMAGE_ONLY_FIELDS",
    "IMAGE_PREFIXES",
    "MAX_EDIT_IMAGES",
    "ImagesDialect",
    "ImagesStreamParser",
    "build_edit",
    "build_generation",
    "check_fields",
    "checked_fields",
    "choose_api",
    "family",
    "form",
    "parse_images_response",
    "wants_stream",
]

API_CHOICES = ("auto", "chat", "images")
IMAGE_PREFIXES = ("gpt-image", "dall-e", "chatgpt-image")
"""Model ids starting with these are served by the Images API (``--api auto``)."""
MAX_EDIT_IMAGES = 16
MAX_N = 10

FIELDS: dict[str, str] = {
    "n": "a whole number of images, 1 to 10",
    "size": "WIDTHxHEIGHT (e.g. 1024x1024) or auto",
    "quality": "low, medium, high, auto (GPT image models); standard, hd (dall-e-3)",
    "background": "transparent, opaque or auto",
    "output_format": "png, jpeg or webp",
    "output_compression": "a whole number 0 to 100 (jpeg and webp output)",
    "moderation": "low or auto",
    "style": "vivid or natural (dall-e-3)",
    "response_format": "url or b64_json (dall-e models)",
    "user": "a string",
    "partial_images": "a whole number 0 to 3 (streamed replies)",
    "input_fidelity": "high or low (edits)",
}
"""Request fields of the Images API (besides model, prompt, image, mask and stream)."""

IMAGE_ONLY_FIELDS = frozenset(FIELDS) - {"n", "user", "response_format"}
"""Fields that only the Images API knows (a chat request that has one is a mistake)."""

_GPT_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
_SIZES: dict[str, tuple[str, ...]] = {
    "gpt-image": _GPT_SIZES,
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
}
_QUALITY: dict[str, tuple[str, ...]] = {
    "gpt-image": ("low", "medium", "high", "auto"),
    "gpt-image-2": ("low", "medium", "high", "auto"),
    "dall-e-2": ("standard", "auto"),
    "dall-e-3": ("standard", "hd", "auto"),
    "other": ("standard", "hd", "low", "medium", "high", "auto"),
}
_ENUMS: dict[str, tuple[str, ...]] = {
    "background": ("transparent", "opaque", "auto"),
    "output_format": ("png", "jpeg", "webp"),
    "moderation": ("low", "auto"),
    "style": ("vivid", "natural"),
    "response_format": ("url", "b64_json"),
    "input_fidelity": ("high", "low"),
}
# Fields each known family refuses (the OpenAPI descriptions: "only supported for ...").
_GPT_ONLY = ("background", "output_format", "output_compression", "moderation")
_UNSUPPORTED: dict[str, tuple[str, ...]] = {
    "gpt-image": ("style", "response_format"),
    "gpt-image-2": ("style", "response_format"),
    "dall-e-2": (*_GPT_ONLY, "style", "partial_images", "input_fidelity"),
    "dall-e-3": (*_GPT_ONLY, "partial_images", "input_fidelity"),
    "other": (),
}
_TAKEN_BY = {
    "background": "GPT image models",
    "output_format": "GPT image models",
    "output_compression": "GPT image models",
    "moderation": "GPT image models",
    "style": "dall-e-3",
    "response_format": "dall-e models; GPT image models always return b64_json",
    "partial_images": "models that stream; dall-e does not",
    "input_fidelity": "GPT image models",
}
_EDIT_ONLY = ("input_fidelity",)
_GENERATION_ONLY = ("moderation", "style")
_PROMPT_LIMIT = {"gpt-image": 32000, "gpt-image-2": 32000, "dall-e-2": 1000, "dall-e-3": 4000}
_SIZE = re.compile(r"^\s*(\d{1,6})\s*[xX×]\s*(\d{1,6})\s*$")
_GPT_IMAGE_2_MAX_PIXELS = 3840 * 2160


def family(model: str) -> str:
    """The rules a model follows: ``gpt-image``, ``gpt-image-2``, ``dall-e-2``,
    ``dall-e-3`` or ``other`` (a model only ``image_models`` names)."""
    low = model.strip().lower()
    if low.startswith("gpt-image-2"):
        return "gpt-image-2"
    if low.startswith(("gpt-image", "chatgpt-image")):
        return "gpt-image"
    if low.startswith("dall-e-2"):
        return "dall-e-2"
    if low.startswith("dall-e"):
        return "dall-e-3"
    return "other"


def choose_api(api: str | None, model: str, image_models: Iterable[str] = ()) -> str:
    """``chat`` or ``images``: the dialect a request speaks.

    ``api`` ``chat`` or ``images`` decides; ``auto`` (or None) picks the Images
    API for model ids starting with ``gpt-image``, ``dall-e`` or
    ``chatgpt-image`` and for the ids in ``image_models``.
    """
    choice = (api or "auto").strip().lower()
    if choice not in API_CHOICES:
        raise ConfigError(f"api: {api!r} is not one of auto, chat, images")
    if choice != "auto":
        return choice
    low = model.strip().lower()
    if low.startswith(IMAGE_PREFIXES) or low in {str(m).strip().lower() for m in image_models}:
        return "images"
    return "chat"


def wants_stream(model: str, preference: bool, params: Mapping[str, Any]) -> bool:
    """Whether to ask for a streamed reply.

    GPT image models stream when the ``stream`` setting says so (as chat
    models do); dall-e models never stream; other models (``image_models``)
    stream when partial images are asked for. ``partial_images`` above 0
    with streaming turned off is refused.
    """
    partial = params.get("partial_images")
    asked = isinstance(partial, int) and not isinstance(partial, bool) and partial > 0
    kind = family(model)
    if kind.startswith("dall-e"):
        return False
    if asked and not preference:
        raise ConfigError(
            f"partial_images: {partial} partial images come only in a streamed reply; "
            "drop --no-stream (stream=False), or drop --partial-images"
        )
    if kind == "other":
        return asked
    return preference


def _bad(name: str, value: Any, model: str | None = None) -> ConfigError:
    for_model = f" for {model}" if model else ""
    return ConfigError(
        f"{name}: {one_line(repr(value), 80)} is not valid{for_model}; expected {FIELDS[name]}"
    )


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_size(value: Any, model: str, kind: str) -> str:
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(_whole(v) for v in value):
        value = f"{value[0]}x{value[1]}"
    if not isinstance(value, str):
        raise _bad("size", value)
    text = value.strip().lower()
    if text == "auto":
        if kind.startswith("dall-e"):
            raise ConfigError(
                f"size: auto is not a size {model} makes; use one of {', '.join(_SIZES[kind])}"
            )
        return text
    match = _SIZE.match(text)
    if match is None:
        raise ConfigError(
            f"size: {one_line(repr(value), 60)} is not a size; write WIDTHxHEIGHT, e.g. 1024x1024 "
            "(or auto)"
        )
    w, h = int(match.group(1)), int(match.group(2))
    text = f"{w}x{h}"
    known = _SIZES.get(kind)
    if known is not None:
        if text not in known:
            raise ConfigError(
                f"size: {text} is not a size {model} makes; use one of {', '.join(known)}"
            )
    elif kind == "gpt-image-2":
        why = ""
        if w % 16 or h % 16:
            why = "width and height must both be multiples of 16"
        elif max(w, h) > 3 * min(w, h):
            why = "the aspect ratio must be between 1:3 and 3:1"
        elif max(w, h) > 3840 or w * h > _GPT_IMAGE_2_MAX_PIXELS:
            why = "the largest size is 3840x2160"
        if why:
            raise ConfigError(f"size: {text} is not a size {model} makes: {why}")
    elif not (1 <= w <= 16384 and 1 <= h <= 16384):
        raise ConfigError(f"size: {text} is not a size; each side must be 1 to 16384 pixels")
    return text


def _check_field(name: str, value: Any, model: str, kind: str, edit: bool) -> Any:
    if name in _UNSUPPORTED[kind]:
        raise ConfigError(f"{name}: {model} does not take it (only {_TAKEN_BY[name]}); drop it")
    if edit and name in _GENERATION_ONLY:
        raise ConfigError(f"{name}: an edit does not take it (only a generation, with no images)")
    if not edit and name in _EDIT_ONLY:
        raise ConfigError(f"{name}: only an edit takes it (pass the images to edit)")
    if name == "n":
        if not _whole(value) or not 1 <= value <= MAX_N:
            raise ConfigError(
                f"n: {one_line(repr(value), 40)} is out of range for {model}; "
                f"the Images API makes 1 to {MAX_N} images per request"
            )
        if kind == "dall-e-3" and value != 1:
            raise ConfigError(f"n: {model} makes one image per request; drop --n {value}")
        return value
    if name == "size":
        return _check_size(value, model, kind)
    if name == "quality":
        allowed = _QUALITY[kind]
        if not isinstance(value, str) or value.strip().lower() not in allowed:
            raise ConfigError(
                f"quality: {one_line(repr(value), 40)} is not valid for {model}; "
                f"use one of {', '.join(allowed)}"
            )
        return value.strip().lower()
    if name in _ENUMS:
        allowed = _ENUMS[name]
        if not isinstance(value, str) or value.strip().lower() not in allowed:
            hint = " (jpg is written jpeg)" if str(value).strip().lower() == "jpg" else ""
            raise ConfigError(
                f"{name}: {one_line(repr(value), 40)} is not one of {', '.join(allowed)}{hint}"
            )
        return value.strip().lower()
    if name == "output_compression":
        if not _whole(value) or not 0 <= value <= 100:
            raise _bad(name, value)
        return value
    if name == "partial_images":
        if not _whole(value) or not 0 <= value <= 3:
            raise ConfigError(
                f"partial_images: {one_line(repr(value), 40)} is out of range; give 0 to 3"
            )
        return value
    if name == "user":
        if not isinstance(value, str):
            raise _bad(name, value)
        return value
    raise AssertionError(name)  # pragma: no cover - every field of FIELDS is handled


def checked_fields(
    model: str, params: Mapping[str, Any] | None, *, edit: bool, stream: bool
) -> dict[str, Any]:
    """``params`` checked for ``model`` (None values left out); ``ConfigError``, one line."""
    kind = family(model)
    out: dict[str, Any] = {}
    for name, value in (params or {}).items():
        if value is None:
            continue
        if name not in FIELDS:
            raise ConfigError(
                f"{name!r} is not a field of the Images API (which {model} speaks); drop it, "
                f"or pass extra={{{name!r}: ...}} (--extra JSON) if your endpoint takes it"
            )
        out[name] = _check_field(name, value, model, kind, edit)
    if out.get("background") == "transparent" and out.get("output_format") == "jpeg":
        raise ConfigError(
            "background: transparent needs png or webp output; drop --output-format jpeg"
        )
    png = out.get("output_format", "png" if kind.startswith("gpt-image") else None) == "png"
    if "output_compression" in out and png:
        raise ConfigError(
            "output_compression: only jpeg and webp output are compressed; "
            "add --output-format jpeg (or webp)"
        )
    if out.get("partial_images") and not stream:
        raise ConfigError(
            "partial_images: partial images come only in a streamed reply; drop --no-stream"
        )
    return out


def check_fields(params: Mapping[str, Any]) -> None:
    """Refuse ill-typed Images API fields now (the checks that hold for every model)."""
    checked_fields("image-model", params, edit="input_fidelity" in params, stream=True)


def _check_prompt(prompt: str, model: str) -> str:
    text = prompt.strip()
    if not text:
        raise ConfigError(
            f"empty prompt: {model} (the Images API) needs one; say what to draw, or how to "
            "change the image"
        )
    limit = _PROMPT_LIMIT.get(family(model))
    if limit is not None and len(text) > limit:
        raise ConfigError(
            f"prompt: {len(text)} characters, above the {limit} that {model} takes; shorten it"
        )
    return text


def _finish(
    body: dict[str, Any], fields: dict[str, Any], stream: bool, extra: Mapping[str, Any] | None
) -> dict[str, Any]:
    body.update(fields)
    if stream:
        body["stream"] = True
    if extra:
        if not isinstance(extra, Mapping):
            raise ConfigError(f"extra: expected a JSON object, got {type(extra).__name__}")
        body.update(extra)
    return body


def build_generation(
    model: str,
    prompt: str,
    *,
    stream: bool,
    params: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of ``POST /images/generations`` (fields checked; None values left out)."""
    fields = checked_fields(model, params, edit=False, stream=stream)
    body: dict[str, Any] = {"model": model, "prompt": _check_prompt(prompt, model)}
    return _finish(body, fields, stream, extra)


def build_edit(
    model: str,
    prompt: str,
    images: Sequence[str],
    mask: str | None = None,
    *,
    stream: bool,
    params: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The body of ``POST /images/edits`` as a dict; ``images`` and ``mask`` are ``data:`` URIs.

    ``form`` turns it into multipart fields and files. The mask's size is
    checked where it is encoded (it must match the first image's).
    """
    kind = family(model)
    if kind == "dall-e-3":
        raise ConfigError(
            f"{model} cannot edit images; use a GPT image model (gpt-image-1) or dall-e-2"
        )
    if not images:
        raise ConfigError("an edit needs at least one image; pass it with --image / images=")
    if len(images) > MAX_EDIT_IMAGES:
        raise ConfigError(
            f"{len(images)} images: the Images API edits at most {MAX_EDIT_IMAGES} at once; "
            "send fewer"
        )
    if kind == "dall-e-2" and len(images) > 1:
        raise ConfigError(f"{len(images)} images: {model} edits one image at a time")
    for uri in [*images, *([mask] if mask else [])]:
        if not isinstance(uri, str) or not uri.startswith("data:image/"):
            raise ConfigError(
                "an edit uploads the images themselves: pass a PIL image, bytes or a path "
                "(an http(s) URL cannot be uploaded; download it first)"
            )
    fields = checked_fields(model, params, edit=True, stream=stream)
    body: dict[str, Any] = {
        "model": model,
        "prompt": _check_prompt(prompt, model),
        "image": list(images),
    }
    if mask is not None:
        body["mask"] = mask
    return _finish(body, fields, stream, extra)


_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}

FormFiles = list[tuple[str, tuple[str, bytes, str]]]


def _file_of(uri: str, name: str) -> tuple[str, bytes, str]:
    head, _, payload = uri.partition(",")
    mime = head[5:].split(";", 1)[0].strip().lower() or "image/png"
    try:
        data = binascii.a2b_base64(payload)
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - our own encoder made it
        raise ConfigError(f"{name}: the image could not be decoded for upload ({exc})") from None
    return f"{name}.{_EXTENSIONS.get(mime, 'png')}", data, mime


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def form(body: Mapping[str, Any]) -> tuple[dict[str, str], FormFiles]:
    """An edit's body as multipart: (text fields, files).

    One image goes as ``image``, several as ``image[]`` (as the official
    clients send them), the mask as ``mask``; other fields as text.
    """
    images = body.get("image") or []
    files: FormFiles = []
    key = "image" if len(images) == 1 else "image[]"
    for i, uri in enumerate(images):
        files.append((key, _file_of(uri, "image" if len(images) == 1 else f"image-{i + 1}")))
    if body.get("mask"):
        files.append(("mask", _file_of(body["mask"], "mask")))
    fields = {
        k: _form_value(v) for k, v in body.items() if k not in ("image", "mask") and v is not None
    }
    return fields, files


# --- replies -----------------------------------------------------------------

_MAGIC = (
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
)


def _mime_of_b64(b64: str, declared: Any = None) -> str:
    """The image's type from its first bytes (the ``output_format`` only when they say nothing)."""
    try:
        head = base64.b64decode(b64[:24] + "=" * (-len(b64[:24]) % 4))
    except (binascii.Error, ValueError):
        head = b""
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if isinstance(declared, str) and declared.lower() in ("png", "jpeg", "webp"):
        return f"image/{declared.lower()}"
    return "image/png"


def _data_uri(b64: str, declared: Any = None) -> str:
    return f"data:{_mime_of_b64(b64, declared)};base64,{b64}"


def _images_of(data: Any) -> tuple[list[str], list[str]]:
    """(image URLs or data URIs, revised prompts) of a ``data`` list."""
    urls: list[str] = []
    revised: list[str] = []
    if not isinstance(data, list):
        return urls, revised
    for item in data:
        if not isinstance(item, Mapping):
            continue
        b64 = item.get("b64_json")
        url = item.get("url")
        if isinstance(b64, str) and b64.strip():
            urls.append(_data_uri(b64.strip()))
        elif isinstance(url, str) and url.strip():
            urls.append(url.strip())
        prompt = item.get("revised_prompt")
        if isinstance(prompt, str) and prompt.strip() and prompt not in revised:
            revised.append(prompt)
    return urls, revised


def parse_images_response(obj: Any) -> ChatResult:
    """A whole ``ImagesResponse`` -> ChatResult (one choice holding every image).

    ``result.text`` is the revised prompt (several, one per line, when they
    differ); ``usage`` is kept as the server sent it.
    """
    if not isinstance(obj, Mapping):
        raise APIError(
            f"the reply is not a JSON object: {one_line(str(obj), 120)}", status=200, body=obj
        )
    if obj.get("error"):
        raise APIError(error_message_of(obj, json.dumps(obj)[:300]), status=200, body=obj)
    urls, revised = _images_of(obj.get("data"))
    if not urls and not isinstance(obj.get("data"), list):
        raise APIError(
            "the reply holds no data list of images (is the base URL an Images API?)",
            status=200,
            body={k: v for k, v in obj.items() if k != "data"},
        )
    usage = obj.get("usage")
    return ChatResult(
        choices=[Choice(index=0, text="\n\n".join(revised), image_urls=urls, finish_reason="stop")],
        model=obj.get("model") if isinstance(obj.get("model"), str) else None,
        usage=dict(usage) if isinstance(usage, Mapping) else None,
        raw=dict(obj),
    )


@dataclass
class _Final:
    uri: str
    meta: dict[str, Any]


class ImagesStreamParser:
    """Incremental decoder of a streamed Images API reply (one SSE event at a time).

    A ``*.partial_image`` event gives a ``Delta`` whose ``partial_image`` is the
    partial as a ``data:`` URI (only the last one is kept); a ``*.completed``
    event gives a final image (``Delta.images``) and the usage. ``finished``
    is true once a ``completed`` event came; without one the reply was cut,
    and ``result()`` holds the last partial as its image. An error event
    raises ``StreamError`` carrying that partial result.
    """

    cut_reason = "no completed event"

    def __init__(self) -> None:
        self.done = False
        self.saw_done = False
        self.usage: dict[str, Any] | None = None
        self.partials = 0
        """How many partial images arrived."""
        self.partial_indexes: list[int] = []
        self.last_partial: str | None = None
        self.finals: list[_Final] = []
        self.revised: list[str] = []
        self.created: Any = None
        self.skipped = 0
        """Events whose data was empty, not JSON, or of a type this parser does not know."""

    @property
    def finished(self) -> bool:
        return bool(self.finals)

    def _error(self, obj: Any, raw: str) -> StreamError:
        return StreamError(
            f"the server reported an error mid-reply: {error_message_of(obj, raw)}",
            partial=self.result(),
            body=obj if obj is not None else raw,
        )

    def feed(self, data: str, event: str = "message") -> list[Delta]:
        """Decode one event's data; return what it added."""
        if self.done:
            return []
        stripped = data.strip()
        if event == "error":
            raise self._error(loads(stripped), stripped)
        if not stripped:
            return []
        if stripped == "[DONE]":
            self.done = self.saw_done = True
            return []
        obj = loads(stripped)
        if not isinstance(obj, Mapping):
            self.skipped += 1
            return []
        kind = obj.get("type")
        kind = kind if isinstance(kind, str) and kind else event
        if obj.get("error") or kind == "error" or kind.endswith(".failed"):
            raise self._error(obj, stripped)
        if self.created is None:
            self.created = obj.get("created_at", obj.get("created"))
        b64 = obj.get("b64_json")
        if kind.endswith(".partial_image"):
            if not isinstance(b64, str) or not b64.strip():
                self.skipped += 1
                return []
            self.partials += 1
            index = obj.get("partial_image_index")
            if not isinstance(index, int) or isinstance(index, bool):
                index = self.partials - 1
            self.partial_indexes.append(index)
            self.last_partial = _data_uri(b64.strip(), obj.get("output_format"))
            return [Delta(0, partial_image=self.last_partial)]
        if kind.endswith(".completed"):
            usage = obj.get("usage")
            if isinstance(usage, Mapping):
                self.usage = dict(usage)
            prompt = obj.get("revised_prompt")
            if isinstance(prompt, str) and prompt.strip() and prompt not in self.revised:
                self.revised.append(prompt)
            meta = {k: v for k, v in obj.items() if k not in ("b64_json", "usage")}
            if isinstance(b64, str) and b64.strip():
                uri = _data_uri(b64.strip(), obj.get("output_format"))
                self.finals.append(_Final(uri, meta))
                return [Delta(0, images=[uri], finish_reason="stop")]
            urls, revised = _images_of(obj.get("data"))  # a gateway that sends a whole response
            self.revised.extend(p for p in revised if p not in self.revised)
            self.finals.extend(_Final(u, meta) for u in urls)
            return [Delta(0, images=urls, finish_reason="stop")] if urls else []
        self.skipped += 1
        return []

    def result(self) -> ChatResult:
        """The reply so far: the final images, or (cut short) the last partial image."""
        if self.finals:
            urls = [f.uri for f in self.finals]
        else:
            urls = [self.last_partial] if self.last_partial else []
        raw: dict[str, Any] = {
            "created": self.created,
            "data": [{"b64_json": u.partition(",")[2]} for u in urls],
        }
        if self.finals:
            for key in ("size", "quality", "background", "output_format"):
                if key in self.finals[-1].meta:
                    raw[key] = self.finals[-1].meta[key]
        if self.usage is not None:
            raw["usage"] = self.usage
        raw["partial_images"] = self.partials
        return ChatResult(
            choices=[
                Choice(
                    index=0,
                    text="\n\n".join(self.revised),
                    image_urls=urls,
                    finish_reason="stop" if self.finals else None,
                )
            ],
            usage=self.usage,
            raw=raw,
        )


class ImagesDialect:
    """``POST /images/generations`` (JSON) or ``POST /images/edits`` (multipart)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = f"images.{kind}"
        self.path = "/images/edits" if kind == "edit" else "/images/generations"

    def stream_parser(self) -> ImagesStreamParser:
        return ImagesStreamParser()

    def parse_whole(self, obj: Any) -> ChatResult:
        return parse_images_response(obj)

    def form(self, body: Mapping[str, Any]) -> tuple[dict[str, str], FormFiles] | None:
        """Multipart fields and files for an edit; None (JSON) for a generation."""
        return form(body) if self.kind == "edit" else None

    def __repr__(self) -> str:
        return f"ImagesDialect({self.kind!r})"


GENERATION = ImagesDialect("generation")
EDIT = ImagesDialect("edit")
