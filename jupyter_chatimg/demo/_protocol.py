"""The JSON shapes of OpenAI's chat-completions API, as the demo sends them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ._chatopts import ToolCall
from ._models import Reply

_ARGUMENT_PIECES = 6

FINGERPRINT = "fp_demo_0001"
_EPOCH = 1_700_000_000


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, as OpenAI sends it."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sse(obj: Any) -> bytes:
    """One Server-Sent Event carrying ``obj`` as JSON."""
    return b"data: " + dumps(obj) + b"\n\n"


DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class Envelope:
    """The fields every chunk or completion of one response shares."""

    id: str
    created: int
    model: str
    include_usage: bool = False

    @classmethod
    def for_request(cls, body: bytes, spec: str, model: str, include_usage: bool) -> Envelope:
        """Stable id and ``created`` derived from a hash of the request."""
        h = hashlib.sha256(body + b"\0" + spec.encode()).hexdigest()
        return cls(
            id="chatcmpl-demo" + h[:24],
            created=_EPOCH + int(h[24:32], 16) % 100_000_000,
            model=model,
            include_usage=include_usage,
        )

    def chunk(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        """A ``chat.completion.chunk`` event."""
        obj: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
        }
        if self.include_usage:
            obj["usage"] = usage
        return sse(obj)

    def content_template(self, index: int) -> tuple[bytes, bytes]:
        """Bytes before and after the JSON string of a content delta for choice ``index``."""
        marker = "\x00MARK\x00"
        event = self.chunk([choice(index, {"content": marker})])
        before, after = event.split(dumps(marker), 1)
        return before, after


def choice(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """One entry of a chunk's ``choices``."""
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}


class ContentEncoder:
    """Content-delta events built from precomputed templates (cheap for long replies)."""

    def __init__(self, env: Envelope, n: int) -> None:
        self._templates = [env.content_template(i) for i in range(n)]

    def event(self, index: int, text: str) -> bytes:
        """The event carrying ``text`` for choice ``index``."""
        before, after = self._templates[index]
        return before + dumps(text) + after


def usage(prompt_tokens: int, replies: list[Reply]) -> dict[str, Any]:
    """The ``usage`` object: tokens sent, plus a flat 85 per separately attached image and
    about one per 4 characters of tool-call names and arguments."""
    completion = sum(
        len(r.tokens)
        + 85 * len(r.images)
        + sum(3 + (len(c.name) + len(c.arguments)) // 4 for c in r.tool_calls)
        for r in replies
    )
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }


def images_field(uris: list[str]) -> list[dict[str, Any]]:
    """``message.images`` / ``delta.images`` as OpenRouter sends them."""
    return [{"type": "image_url", "image_url": {"url": u}, "index": i} for i, u in enumerate(uris)]


def completion(env: Envelope, replies: list[Reply], use: dict[str, Any]) -> dict[str, Any]:
    """A whole ``chat.completion`` object."""
    choices = []
    for i, r in enumerate(replies):
        message: dict[str, Any] = {"role": "assistant", "content": r.text, "refusal": None}
        if r.images:
            message["images"] = images_field(r.images)
        if r.tool_calls:
            message["content"] = r.text or None
            message["tool_calls"] = tool_calls_field(r.tool_calls)
        choices.append(
            {"index": i, "message": message, "logprobs": None, "finish_reason": r.finish_reason}
        )
    return {
        "id": env.id,
        "object": "chat.completion",
        "created": env.created,
        "model": env.model,
        "system_fingerprint": FINGERPRINT,
        "choices": choices,
        "usage": use,
    }


def tool_calls_field(calls: list[ToolCall]) -> list[dict[str, Any]]:
    """``message.tool_calls`` of a whole completion."""
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ]


def tool_call_deltas(calls: list[ToolCall]) -> list[dict[str, Any]]:
    """The ``delta`` of each chunk that streams ``calls`` the way OpenAI does: per call, a
    first chunk with ``index``, ``id``, ``type``, the name and empty arguments, then the
    arguments in several pieces."""
    deltas: list[dict[str, Any]] = []
    for i, c in enumerate(calls):
        head = {"index": i, "id": c.id, "type": "function"}
        deltas.append({"tool_calls": [{**head, "function": {"name": c.name, "arguments": ""}}]})
        step = max(1, -(-len(c.arguments) // _ARGUMENT_PIECES))
        for k in range(0, len(c.arguments), step):
            piece = c.arguments[k : k + step]
            deltas.append({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
    return deltas


def error_body(message: str, type: str, code: str | None, param: str | None = None) -> bytes:
    """The standard error body."""
    return dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


def models_list(models: tuple[str, ...]) -> dict[str, Any]:
    """``GET /v1/models``."""
    return {"object": "list", "data": [model_object(m) for m in models]}


def model_object(model: str) -> dict[str, Any]:
    """One entry of the models list."""
    return {"id": model, "object": "model", "created": _EPOCH, "owned_by": "jupyter_chatimg"}
