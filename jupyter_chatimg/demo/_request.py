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

from ._chatopts import ToolCall, ToolSpec, parse_extras, parse_tool_calls
from ._httperror import DemoHTTPError, bad

__all__ = [
    "ChatRequest",
    "DemoHTTPError",
    "ImageRef",
    "Message",
    "ToolCall",
    "ToolSpec",
    "decode_image",
    "parse_request",
]

MAX_IMAGE_PIXELS = 50_000_000
_DATA_URI = re.compile(r"data:(image/[\w.+-]+)?((?:;[\w=.+-]+)*?);base64,(.*)", re.S | re.I)
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


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
    """A message reduced to its text parts and its images (in order); an assistant
    message may carry ``tool_calls``, a ``tool`` message its ``tool_call_id``."""

    role: str
    text: str
    images: list[ImageRef] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None


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
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: str = "auto"  # auto, none, required, or "function:NAME"
    parallel_tool_calls: bool = True
    json_schema: dict[str, Any] | None = None  # response_format json_schema's "schema"

    @property
    def has_tools(self) -> bool:
        """Whether function tools were offered."""
        return bool(self.tools)

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


def _opt(body: dict[str, Any], key: str, kinds: tuple[type, ...], what: str) -> Any:
    v = body.get(key)
    if v is None:
        return None
    if (isinstance(v, bool) and bool not in kinds) or not isinstance(v, kinds):
        raise bad(f"Invalid type for '{key}': expected {what}, got {type(v).__name__}.", key)
    return v


def _content(raw: Any, where: str) -> tuple[str, list[ImageRef]]:
    if raw is None:
        return "", []
    if isinstance(raw, str):
        return raw, []
    if not isinstance(raw, list):
        raise bad(f"Invalid type for '{where}': expected a string or an array of parts.", where)
    texts: list[str] = []
    images: list[ImageRef] = []
    for j, part in enumerate(raw):
        p = f"{where}[{j}]"
        if not isinstance(part, dict):
            raise bad(f"Invalid type for '{p}': expected an object.", p)
        kind = part.get("type")
        if kind in ("text", "input_text"):
            text = part.get("text")
            if not isinstance(text, str):
                raise bad(f"Missing or invalid '{p}.text': expected a string.", f"{p}.text")
            texts.append(text)
        elif kind == "image_url":
            iu = part.get("image_url")
            if isinstance(iu, str):
                iu = {"url": iu}
            if not isinstance(iu, dict) or not isinstance(iu.get("url"), str):
                raise bad(f"Missing or invalid '{p}.image_url.url'.", f"{p}.image_url.url")
            detail = iu.get("detail") or "auto"
            if detail not in ("auto", "low", "high"):
                raise bad(
                    f"Invalid value for '{p}.image_url.detail': use auto, low or high.",
                    f"{p}.image_url.detail",
                )
            images.append(decode_image(iu["url"], detail))
        else:
            raise bad(
                f"Invalid value for '{p}.type': {kind!r}; supported: 'text', 'image_url'.",
                f"{p}.type",
            )
    return "\n".join(texts), images


def _message(m: Any, where: str) -> Message:
    if not isinstance(m, dict):
        raise bad(f"Invalid type for '{where}': expected an object.", where)
    role = m.get("role")
    if role not in _ROLES:
        raise bad(f"Invalid value for '{where}.role': {role!r}.", f"{where}.role")
    text, images = _content(m.get("content"), f"{where}.content")
    msg = Message(role=role, text=text, images=images)
    if role == "assistant":
        msg.tool_calls = parse_tool_calls(m.get("tool_calls"), f"{where}.tool_calls")
    elif role == "tool":
        call_id = m.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise bad(f"Missing parameter 'tool_call_id' in '{where}'.", f"{where}.tool_call_id")
        msg.tool_call_id = call_id
    return msg


def _check_tool_order(messages: list[Message]) -> None:
    """OpenAI's rule: the answers to an assistant's tool calls come right after it."""
    pending: set[str] = set()
    for i, m in enumerate(messages):
        if m.role == "tool":
            if m.tool_call_id not in pending:
                raise bad(
                    f"Invalid parameter: messages with role 'tool' must be a response to a "
                    f"preceding message with 'tool_calls' (messages[{i}].tool_call_id "
                    f"{m.tool_call_id!r} answers no pending call).",
                    f"messages[{i}].tool_call_id",
                )
            pending.discard(m.tool_call_id)
            continue
        if pending:
            raise bad(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                f"responding to each 'tool_call_id'. Missing: {', '.join(sorted(pending))}.",
                f"messages[{i}].role",
            )
        pending = {c.id for c in m.tool_calls}
    if pending:
        raise bad(
            "An assistant message with 'tool_calls' must be followed by tool messages "
            f"responding to each 'tool_call_id'. Missing: {', '.join(sorted(pending))}.",
            f"messages[{len(messages) - 1}].tool_calls",
        )


def _messages(raw: Any) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        raise bad("'messages' must be a non-empty array of message objects.", "messages")
    messages = [_message(m, f"messages[{i}]") for i, m in enumerate(raw)]
    _check_tool_order(messages)
    return messages


def parse_request(raw: bytes, models: tuple[str, ...]) -> ChatRequest:
    """Validate a request body; the model may carry an ``@fault`` suffix (kept as given)."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(
            f"The request body is not valid JSON ({e.__class__.__name__}): send a JSON object.",
            None,
        ) from None
    if not isinstance(body, dict):
        raise bad("The request body must be a JSON object.", None)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("You must provide a model parameter.", "model")
    base = model.split("@", 1)[0]
    if base not in models:
        raise DemoHTTPError(
            404,
            f"The model '{base}' does not exist on this offline demo server. "
            f"Available models: {', '.join(models)} (demo-vision describes images, "
            "demo-image draws and edits them).",
            param="model",
            code="model_not_found",
        )
    messages = _messages(body.get("messages"))

    stream = _opt(body, "stream", (bool,), "a boolean") or False
    n = _opt(body, "n", (int,), "an integer")
    if n is not None and not 1 <= n <= 128:
        raise bad("Invalid 'n': must be between 1 and 128.", "n")
    max_tokens = _opt(body, "max_completion_tokens", (int,), "an integer")
    max_tokens = _opt(body, "max_tokens", (int,), "an integer") or max_tokens
    if max_tokens is not None and max_tokens < 1:
        raise bad("Invalid 'max_tokens': must be at least 1.", "max_tokens")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (
        not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop)
    ):
        raise bad("Invalid 'stop': a string or an array of up to 4 strings.", "stop")
    for key in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        _opt(body, key, (int, float), "a number")
    _opt(body, "seed", (int,), "an integer")
    _opt(body, "user", (str,), "a string")
    _opt(body, "logit_bias", (dict,), "an object")
    opts = _opt(body, "stream_options", (dict,), "an object") or {}
    modalities = _opt(body, "modalities", (list,), "an array of strings") or []
    extras = parse_extras(body)
    return ChatRequest(
        model=base,
        messages=messages,
        stream=stream,
        n=n or 1,
        max_tokens=max_tokens,
        stop=[s for s in (stop or []) if s],
        include_usage=bool(opts.get("include_usage")) and stream,
        modalities=[str(x) for x in modalities],
        response_format=extras.response_format,
        tools=extras.tools,
        tool_choice=extras.tool_choice,
        parallel_tool_calls=extras.parallel_tool_calls,
        json_schema=extras.json_schema,
    )
