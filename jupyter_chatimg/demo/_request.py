"""Validate a chat-completions request body and decode the images in it.

Raises ``DemoHTTPError`` (status + OpenAI error fields) for anything a real
server would refuse; an image that cannot be decoded is *not* an error here:
it is kept with ``.error`` set so the model can say so in its reply.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

MAX_IMAGE_PIXELS = 50_000_000
_DATA_URI = re.compile(r"data:(image/[\w.+-]+)?((?:;[\w=.+-]+)*?);base64,(.*)", re.S | re.I)
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


class DemoHTTPError(Exception):
    """An error answer: HTTP status plus the OpenAI error-body fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The standard ``{"error": {...}}`` body."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass
class ImageRef:
    """One ``image_url`` part: decoded when it is a data URI, else only its URL."""

    url: str
    detail: str = "auto"
    image: Image.Image | None = None
    fmt: str | None = None
    n_bytes: int | None = None
    error: str | None = None

    @property
    def is_remote(self) -> bool:
        """An http(s) URL, which the offline demo cannot fetch."""
        return self.url.lower().startswith(("http://", "https://"))

    def token_estimate(self) -> int:
        """OpenAI's published estimate: 85 at low detail, else 85 + 170 per 512-px tile."""
        if self.detail == "low" or self.image is None:
            return 85
        w: float
        h: float
        w, h = self.image.size
        scale = min(1.0, 2048 / max(w, h))
        w, h = w * scale, h * scale
        scale = min(1.0, 768 / min(w, h))
        w, h = w * scale, h * scale
        return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)


@dataclass
class Message:
    """A message reduced to its text parts and its images (in order)."""

    role: str
    text: str
    images: list[ImageRef] = field(default_factory=list)


@dataclass
class ChatRequest:
    """The fields of a validated request that the demo models use."""

    model: str
    messages: list[Message]
    stream: bool = False
    n: int = 1
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    include_usage: bool = False
    modalities: list[str] = field(default_factory=list)
    response_format: str = "text"
    has_tools: bool = False

    @property
    def prompt(self) -> str:
        """The text of the last user message."""
        for m in reversed(self.messages):
            if m.role == "user":
                return m.text
        return ""

    @property
    def last_user_images(self) -> list[ImageRef]:
        """The images of the last user message."""
        for m in reversed(self.messages):
            if m.role == "user":
                return m.images
        return []

    def prompt_tokens(self) -> int:
        """A rough prompt size: words + 3 per message + the image estimate."""
        total = 0
        for m in self.messages:
            total += 3 + len(m.text.split()) + sum(i.token_estimate() for i in m.images)
        return total


def decode_image(url: str, detail: str = "auto") -> ImageRef:
    """Decode a ``data:`` URI into an ``ImageRef`` (errors are recorded, not raised)."""
    ref = ImageRef(url=url, detail=detail)
    if ref.is_remote:
        return ref
    m = _DATA_URI.match(url.strip())
    if not m:
        ref.error = "it is neither a base64 data: URI nor an http(s) URL"
        return ref
    try:
        raw = base64.b64decode(re.sub(r"\s+", "", m.group(3)), validate=True)
    except (binascii.Error, ValueError):
        ref.error = "its base64 data is corrupt"
        return ref
    ref.n_bytes = len(raw)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(raw))
        if img.width * img.height > MAX_IMAGE_PIXELS:
            ref.error = (
                f"it is too large to decode here ({img.width}×{img.height} pixels, "
                f"limit {MAX_IMAGE_PIXELS // 1_000_000} million)"
            )
            return ref
        ref.fmt = img.format
        img.load()
    except Image.DecompressionBombError:
        ref.error = "it is too large to decode here (decompression-bomb limit)"
        return ref
    except (OSError, ValueError, SyntaxError) as e:
        ref.error = f"it is not a readable image ({type(e).__name__})"
        return ref
    ref.image = img
    return ref


def _bad(message: str, param: str | None) -> DemoHTTPError:
    return DemoHTTPError(400, message, param=param)


def _opt(body: dict[str, Any], key: str, kinds: tuple[type, ...], what: str) -> Any:
    v = body.get(key)
    if v is None:
        return None
    if (isinstance(v, bool) and bool not in kinds) or not isinstance(v, kinds):
        raise _bad(f"Invalid type for '{key}': expected {what}, got {type(v).__name__}.", key)
    return v


def _content(raw: Any, where: str) -> tuple[str, list[ImageRef]]:
    if raw is None:
        return "", []
    if isinstance(raw, str):
        return raw, []
    if not isinstance(raw, list):
        raise _bad(f"Invalid type for '{where}': expected a string or an array of parts.", where)
    texts: list[str] = []
    images: list[ImageRef] = []
    for j, part in enumerate(raw):
        p = f"{where}[{j}]"
        if not isinstance(part, dict):
            raise _bad(f"Invalid type for '{p}': expected an object.", p)
        kind = part.get("type")
        if kind in ("text", "input_text"):
            text = part.get("text")
            if not isinstance(text, str):
                raise _bad(f"Missing or invalid '{p}.text': expected a string.", f"{p}.text")
            texts.append(text)
        elif kind == "image_url":
            iu = part.get("image_url")
            if isinstance(iu, str):
                iu = {"url": iu}
            if not isinstance(iu, dict) or not isinstance(iu.get("url"), str):
                raise _bad(f"Missing or invalid '{p}.image_url.url'.", f"{p}.image_url.url")
            detail = iu.get("detail") or "auto"
            if detail not in ("auto", "low", "high"):
                raise _bad(
                    f"Invalid value for '{p}.image_url.detail': use auto, low or high.",
                    f"{p}.image_url.detail",
                )
            images.append(decode_image(iu["url"], detail))
        else:
            raise _bad(
                f"Invalid value for '{p}.type': {kind!r}; supported: 'text', 'image_url'.",
                f"{p}.type",
            )
    return "\n".join(texts), images


def parse_request(raw: bytes, models: tuple[str, ...]) -> ChatRequest:
    """Validate a request body; the model may carry an ``@fault`` suffix (kept as given)."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(
            f"The request body is not valid JSON ({e.__class__.__name__}): send a JSON object.",
            None,
        ) from None
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", None)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("You must provide a model parameter.", "model")
    base = model.split("@", 1)[0]
    if base not in models:
        raise DemoHTTPError(
            404,
            f"The model '{base}' does not exist on this offline demo server. "
            f"Available models: {', '.join(models)}.",
            param="model",
            code="model_not_found",
        )
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise _bad("'messages' must be a non-empty array of message objects.", "messages")
    messages: list[Message] = []
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(f"Invalid type for '{where}': expected an object.", where)
        role = m.get("role")
        if role not in _ROLES:
            raise _bad(f"Invalid value for '{where}.role': {role!r}.", f"{where}.role")
        text, images = _content(m.get("content"), f"{where}.content")
        messages.append(Message(role=role, text=text, images=images))

    stream = _opt(body, "stream", (bool,), "a boolean") or False
    n = _opt(body, "n", (int,), "an integer")
    if n is not None and not 1 <= n <= 128:
        raise _bad("Invalid 'n': must be between 1 and 128.", "n")
    max_tokens = _opt(body, "max_completion_tokens", (int,), "an integer")
    max_tokens = _opt(body, "max_tokens", (int,), "an integer") or max_tokens
    if max_tokens is not None and max_tokens < 1:
        raise _bad("Invalid 'max_tokens': must be at least 1.", "max_tokens")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (
        not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop)
    ):
        raise _bad("Invalid 'stop': a string or an array of up to 4 strings.", "stop")
    for key in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        _opt(body, key, (int, float), "a number")
    _opt(body, "seed", (int,), "an integer")
    _opt(body, "user", (str,), "a string")
    _opt(body, "logit_bias", (dict,), "an object")
    opts = _opt(body, "stream_options", (dict,), "an object") or {}
    modalities = _opt(body, "modalities", (list,), "an array of strings") or []
    rf = _opt(body, "response_format", (dict,), "an object") or {}
    tools = _opt(body, "tools", (list,), "an array") or []
    return ChatRequest(
        model=base,
        messages=messages,
        stream=stream,
        n=n or 1,
        max_tokens=max_tokens,
        stop=[s for s in (stop or []) if s],
        include_usage=bool(opts.get("include_usage")) and stream,
        modalities=[str(x) for x in modalities],
        response_format=str(rf.get("type", "text")),
        has_tools=bool(tools),
    )
