"""The chat completions dialect: request bodies and replies (pure, no I/O).

``StreamParser`` is an incremental decoder in the spirit of httpx's: feed it
the Server-Sent Events one at a time (as decoded by httpx-sse) and it returns
what each one adds; ``parse_completion`` reads a whole (non-streamed) reply;
error answers are read by ``errors``, shared with the other dialects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._errors import (
    APIError,
    ConfigError,
    StreamError,
    one_line,
)
from .._markdown import image_urls_in_markdown
from .._result import ChatResult, Choice
from .base import Delta
from .errors import error_message_of, loads

__all__ = [
    "DIALECT",
    "REQUEST_FIELDS",
    "ChatDialect",
    "Delta",
    "StreamParser",
    "build_request",
    "parse_completion",
]

# Request fields the seed APIs list, with a check of type and range
# (../shared/schema/chat_request.schema.json).
REQUEST_FIELDS: dict[str, str] = {
    "temperature": "number 0..2",
    "top_p": "number 0..1",
    "n": "integer 1..128",
    "max_tokens": "integer >= 1",
    "max_completion_tokens": "integer >= 1",
    "stop": "a string or up to 4 strings",
    "presence_penalty": "number -2..2",
    "frequency_penalty": "number -2..2",
    "logit_bias": "an object of token id -> integer -100..100",
    "user": "a string",
    "response_format": 'an object like {"type": "json_object"}',
    "seed": "an integer",
    "tools": "a list of tool objects",
    "tool_choice": '"none", "auto", "required" or {"type": "function", ...}',
    "modalities": 'a list such as ["image", "text"]',
    "stream_options": "an object",
}

_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0, 2),
    "top_p": (0, 1),
    "presence_penalty": (-2, 2),
    "frequency_penalty": (-2, 2),
}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_field(name: str, value: Any) -> Any:
    def bad() -> ConfigError:
        return ConfigError(f"{name}: {value!r} is not valid; expected {REQUEST_FIELDS[name]}")

    if name in _RANGES:
        lo, hi = _RANGES[name]
        if not _is_number(value) or not lo <= value <= hi:
            raise bad()
    elif name == "n":
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 128:
            raise bad()
    elif name in ("max_tokens", "max_completion_tokens"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise bad()
    elif name == "seed":
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad()
    elif name == "stop":
        if isinstance(value, str):
            return value
        if not isinstance(value, (list, tuple)) or not value or len(value) > 4:
            raise ConfigError(
                f"stop: give 1 to 4 stop strings, not {len(value) if isinstance(value, (list, tuple)) else value!r}"
            )
        if not all(isinstance(s, str) for s in value):
            raise bad()
        return list(value)
    elif name == "user":
        if not isinstance(value, str):
            raise bad()
    elif name == "logit_bias":
        if not isinstance(value, Mapping) or not all(
            isinstance(v, int) and not isinstance(v, bool) and -100 <= v <= 100
            for v in value.values()
        ):
            raise bad()
        return {str(k): v for k, v in value.items()}
    elif name == "response_format":
        if not isinstance(value, Mapping) or value.get("type") not in (
            "text",
            "json_object",
            "json_schema",
        ):
            raise bad()
    elif name == "tools":
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(t, Mapping) and t.get("type") in ("function", "custom") for t in value
        ):
            raise bad()
        return list(value)
    elif name == "tool_choice" and not (
        value in ("none", "auto", "required")
        or (isinstance(value, Mapping) and value.get("type") == "function")
    ):
        raise bad()
    return value


def build_request(
    model: str,
    messages: list[dict[str, Any]],
    *,
    stream: bool,
    params: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    include_usage: bool = True,
) -> dict[str, Any]:
    """The JSON body of a chat completions request.

    ``params`` are checked request fields (None values left out); ``extra`` is
    merged last, unchecked, for gateway-specific fields.
    """
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
    if stream and include_usage:
        body["stream_options"] = {"include_usage": True}
    for name, value in (params or {}).items():
        if value is None:
            continue
        if name not in REQUEST_FIELDS:
            raise ConfigError(
                f"{name!r} is not a known request field; pass it with extra={{{name!r}: ...}} "
                "(--extra JSON in the magic) if your endpoint accepts it"
            )
        body[name] = _check_field(name, value)
    if extra:
        if not isinstance(extra, Mapping):
            raise ConfigError(f"extra: expected a JSON object, got {type(extra).__name__}")
        body.update(extra)
    return body


# --- replies -----------------------------------------------------------------

MAX_CHOICES = 128
"""The largest ``n`` the API allows: a choice index must be in 0..127."""


@dataclass
class _ChoiceState:
    index: int
    text: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)


class StreamParser:
    """Incremental decoder of a streamed chat completion (one SSE event at a time).

    Raises ``StreamError`` (with the partial result) when the stream carries an
    error; ``done`` turns true at ``[DONE]``.
    """

    def __init__(self) -> None:
        self._choices: dict[int, _ChoiceState] = {}
        self.done = False
        self.saw_done = False
        self.usage: dict[str, Any] | None = None
        self.model: str | None = None
        self.id: str | None = None
        self.system_fingerprint: str | None = None
        self.created: Any = None
        self.chunks = 0
        """How many chunks arrived. They are not kept: 20,000 chunk dicts alive at once
        cost the garbage collector more than parsing them (``result().raw`` assembles them)."""
        self.skipped = 0
        """Events whose data was empty or not JSON (keep-alives, malformed chunks)."""
        self.ignored_indexes: list[Any] = []
        """Choice indexes that make no sense (negative, not integers, past ``n``'s range)."""

    @property
    def finished(self) -> bool:
        """True once ``[DONE]`` has arrived, or a ``finish_reason`` for every choice seen
        (with ``n`` > 1, one finished choice does not make a cut reply whole)."""
        if self.saw_done:
            return True
        states = self._choices.values()
        return bool(states) and all(c.finish_reason for c in states)

    def feed(self, data: str, event: str = "message") -> list[Delta]:
        """Decode one event's data; return what it added."""
        if self.done:
            return []
        stripped = data.strip()
        if event == "error":
            obj = loads(stripped)
            raise self._error("reported an error mid-reply", obj if obj is not None else stripped)
        if not stripped:
            return []
        if stripped == "[DONE]":
            self.done = self.saw_done = True
            return []
        obj = loads(stripped)
        if type(obj) is not dict and not isinstance(obj, Mapping):
            self.skipped += 1
            return []
        if obj.get("error"):
            raise self._error("reported an error mid-reply", obj)
        self._take_meta(obj)
        choices = obj.get("choices")
        if type(choices) is list and len(choices) == 1:
            # The common chunk, once per token: one choice already seen, a text delta
            # (with or without role) and nothing else; what _feed_choice would do.
            raw = choices[0]
            if type(raw) is dict and not raw.get("finish_reason"):
                body = raw.get("delta")
                if type(body) is dict and (len(body) == 1 or (len(body) == 2 and "role" in body)):
                    content = body.get("content")
                    index = raw.get("index", 0)
                    state = self._choices.get(index) if type(index) is int else None
                    if content and type(content) is str and state is not None:
                        state.text.append(content)
                        return [Delta(state.index, content)]
        if not isinstance(choices, list):
            return []
        deltas: list[Delta] = []
        for raw_choice in choices:
            if type(raw_choice) is not dict and not isinstance(raw_choice, Mapping):
                continue
            delta = self._feed_choice(raw_choice)
            if delta is not None:
                deltas.append(delta)
                if delta.finish_reason == "error":
                    raise self._error("ended the reply with an error", raw_choice, obj)
        return deltas

    def _error(self, what: str, obj: Any, body: Any = None) -> StreamError:
        raw = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)[:300]
        fallback = "finish_reason: error" if "ended" in what else raw
        return StreamError(
            f"the server {what}: {error_message_of(obj, fallback)}",
            partial=self.result(),
            body=body if body is not None else obj,
        )

    def _take_meta(self, obj: Mapping[str, Any]) -> None:
        """The chunk's id, model, fingerprint, creation time and usage (when it has them)."""
        get = obj.get
        self.chunks += 1
        if self.created is None:
            self.created = get("created")
        value = get("model")
        if value:
            self.model = value
        value = get("id")
        if value:
            self.id = value
        value = get("system_fingerprint")
        if value:
            self.system_fingerprint = value
        usage = get("usage")
        if usage is not None and isinstance(usage, Mapping):
            self.usage = dict(usage)

    def _feed_choice(self, raw: Mapping[str, Any]) -> Delta | None:
        index = raw.get("index", 0)
        if type(index) is not int or not 0 <= index < MAX_CHOICES:
            # -5, "0", 1e9: no choice of this reply; the text must not land in another one.
            self.ignored_indexes.append(index)
            return None
        state = self._choices.get(index)
        if state is None:
            state = self._choices[index] = _ChoiceState(index)
        # Once per streamed token: dict checks first (json gives dicts), the ABC check after.
        body: Mapping[str, Any] = {}
        for key in ("delta", "message"):
            value = raw.get(key)
            if value is not None and (type(value) is dict or isinstance(value, Mapping)):
                body = value
                break
        if type(body) is dict and (len(body) == 1 or (len(body) == 2 and "role" in body)):
            # the common chunk: a text delta and nothing else
            content = body.get("content")
            if content and type(content) is str:
                state.text.append(content)
                out = Delta(index, content)
                reason = raw.get("finish_reason")
                if reason and isinstance(reason, str):
                    state.finish_reason = out.finish_reason = reason
                return out
        out = Delta(index)
        content = body.get("content")
        if isinstance(content, str) and content:
            state.text.append(content)
            out.text = content
        elif isinstance(content, list):
            text, urls = _content_parts(content)
            if text:
                state.text.append(text)
                out.text = text
            out.images.extend(self._add_images(state, urls))
        images = body.get("images")
        if images is not None:
            out.images.extend(self._add_images(state, _image_list(images)))
        refusal = body.get("refusal")
        if refusal and isinstance(refusal, str):
            state.refusal.append(refusal)
            out.refusal = refusal
        tool_calls = body.get("tool_calls")
        if tool_calls is not None and isinstance(tool_calls, list) and tool_calls:
            _merge_tool_calls(state.tool_calls, tool_calls)
            out.tool_calls = [
                {"id": c["id"], "type": c["type"], "function": dict(c["function"])}
                for c in state.tool_calls.values()
            ]
        reason = raw.get("finish_reason")
        if reason and isinstance(reason, str):
            state.finish_reason = reason
            out.finish_reason = reason
        if out.text or out.images or out.refusal or out.finish_reason or out.tool_calls:
            return out
        return None

    @staticmethod
    def _add_images(state: _ChoiceState, urls: list[str]) -> list[str]:
        added = [u for u in urls if u not in state.images]
        state.images.extend(dict.fromkeys(added))
        return list(dict.fromkeys(added))

    def text(self, index: int = 0) -> str:
        state = self._choices.get(index)
        return "".join(state.text) if state else ""

    def result(self) -> ChatResult:
        """The reply so far as a ChatResult (image URLs listed, not yet decoded)."""
        states = [self._choices[i] for i in sorted(self._choices)] or [_ChoiceState(0)]
        choices = []
        for state in states:
            text = "".join(state.text)
            urls = list(state.images)
            if "![" in text:  # every markdown image has one; most replies none
                urls.extend(u for u in image_urls_in_markdown(text) if u not in urls)
            choices.append(
                Choice(
                    index=state.index,
                    text=text,
                    image_urls=urls,
                    finish_reason=state.finish_reason,
                    refusal="".join(state.refusal) or None,
                    tool_calls=[state.tool_calls[k] for k in sorted(state.tool_calls)],
                )
            )
        warnings = []
        if self.ignored_indexes:
            shown = ", ".join(dict.fromkeys(repr(i)[:20] for i in self.ignored_indexes))
            warnings.append(f"ignored choices with impossible indexes: {shown}")
        return ChatResult(
            choices=choices,
            model=self.model,
            id=self.id,
            usage=self.usage,
            system_fingerprint=self.system_fingerprint,
            raw=self._assembled(choices),
            warnings=warnings,
        )

    def _assembled(self, choices: list[Choice]) -> dict[str, Any]:
        """The chunks so far as one ``chat.completion`` object (the shape of a whole reply)."""
        out: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [],
        }
        for choice in choices:
            state = self._choices.get(choice.index)
            message: dict[str, Any] = {"role": "assistant", "content": choice.text or None}
            if state is not None and state.images:
                message["images"] = [
                    {"type": "image_url", "image_url": {"url": u}} for u in state.images
                ]
            if choice.refusal:
                message["refusal"] = choice.refusal
            if choice.tool_calls:
                message["tool_calls"] = choice.tool_calls
            out["choices"].append(
                {"index": choice.index, "message": message, "finish_reason": choice.finish_reason}
            )
        if self.usage is not None:
            out["usage"] = self.usage
        if self.system_fingerprint is not None:
            out["system_fingerprint"] = self.system_fingerprint
        return out


def _image_list(items: Any) -> list[str]:
    urls: list[str] = []
    if not isinstance(items, list):
        return urls
    for item in items:
        if not isinstance(item, Mapping):
            continue
        image_url = item.get("image_url")
        url = image_url.get("url") if isinstance(image_url, Mapping) else image_url
        if isinstance(url, str) and url:
            urls.append(url)
    return urls


def _content_parts(parts: list[Any]) -> tuple[str, list[str]]:
    texts: list[str] = []
    urls: list[str] = []
    for part in parts:
        if not isinstance(part, Mapping):
            continue
        if part.get("type") in ("text", "output_text") and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif part.get("type") == "image_url":
            urls.extend(_image_list([part]))
    return "".join(texts), urls


def _merge_tool_calls(acc: dict[int, dict[str, Any]], calls: list[Any]) -> None:
    """Merge one event's ``tool_calls`` pieces into the calls so far (DESIGN 4.3).

    A piece with an ``index`` belongs to that call. Without one (some servers
    omit it): a piece whose ``id`` was seen belongs to that call, one with a new
    ``id`` starts a call, and one without ``id`` continues the last call if it
    is the event's first piece and names no other function (else it is the
    next call, by position).
    A name sent again whole (some servers repeat it in every piece) is not doubled.
    """
    for n, call in enumerate(calls):
        if not isinstance(call, Mapping):
            continue
        idx = call.get("index")
        cid = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
        if not isinstance(idx, int) or isinstance(idx, bool):
            known = [k for k, slot in acc.items() if cid is not None and slot["id"] == cid]
            if known:
                idx = known[0]
            elif cid is None and n == 0 and acc and not _starts_another(acc, call):
                idx = next(reversed(acc))
            else:
                idx = max(acc) + 1 if acc else 0
        slot = acc.setdefault(
            idx, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if cid is not None:
            slot["id"] = cid
        if isinstance(call.get("type"), str) and call["type"]:
            slot["type"] = call["type"]
        fn = call.get("function")
        if isinstance(fn, Mapping):
            name = fn.get("name")
            if isinstance(name, str) and name != slot["function"]["name"]:
                slot["function"]["name"] += name
            arguments = fn.get("arguments")
            if isinstance(arguments, str):
                slot["function"]["arguments"] += arguments
            elif isinstance(arguments, Mapping):  # a few servers send an object, not JSON text
                slot["function"]["arguments"] += json.dumps(arguments, ensure_ascii=False)


def _starts_another(acc: dict[int, dict[str, Any]], call: Mapping[str, Any]) -> bool:
    """An index-less, id-less piece naming another function than the last call: a new call."""
    fn = call.get("function")
    name = fn.get("name") if isinstance(fn, Mapping) else None
    last = acc[next(reversed(acc))]["function"]["name"]
    return isinstance(name, str) and bool(name) and bool(last) and name != last


def parse_completion(obj: Any) -> ChatResult:
    """A whole ``chat.completion`` (or Images API ``data[]``) -> ChatResult."""
    if not isinstance(obj, Mapping):
        raise APIError(
            f"the reply is not a JSON object: {one_line(str(obj), 120)}", status=200, body=obj
        )
    if obj.get("error"):
        raise APIError(error_message_of(obj, json.dumps(obj)[:300]), status=200, body=obj)
    parser = StreamParser()
    parser.model = obj.get("model")
    parser.id = obj.get("id")
    parser.system_fingerprint = obj.get("system_fingerprint")
    if isinstance(obj.get("usage"), Mapping):
        parser.usage = dict(obj["usage"])
    choices = obj.get("choices")
    if isinstance(choices, list):
        for raw in choices:
            if isinstance(raw, Mapping):
                parser._feed_choice(raw)
    elif isinstance(obj.get("data"), list):
        state = parser._choices.setdefault(0, _ChoiceState(0))
        for item in obj["data"]:
            if not isinstance(item, Mapping):
                continue
            if isinstance(item.get("b64_json"), str):
                state.images.append("data:image/png;base64," + item["b64_json"])
            elif isinstance(item.get("url"), str):
                state.images.append(item["url"])
        state.finish_reason = "stop"
    result = parser.result()
    result.raw = dict(obj)
    return result


class ChatDialect:
    """``POST /chat/completions`` (DESIGN 4.1)."""

    name = "chat"
    path = "/chat/completions"

    def stream_parser(self) -> StreamParser:
        return StreamParser()

    def parse_whole(self, obj: Any) -> ChatResult:
        return parse_completion(obj)

    def form(self, body: Mapping[str, Any]) -> None:
        """Chat completions are JSON."""
        return None


DIALECT = ChatDialect()
