"""What every dialect provides to the session and the HTTP layer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .._result import ChatResult

__all__ = ["Delta", "Dialect", "ReplyParser"]


@dataclass
class Delta:
    """What one event added to choice ``index``."""

    index: int
    text: str = ""
    images: list[str] = field(default_factory=list)
    refusal: str = ""
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    """When this event changed the choice's tool calls: all of them so far, merged
    (wire shape ``{"id", "type", "function": {"name", "arguments"}}``)."""
    partial_image: str | None = None
    """A partial image (``data:`` URI) that replaces the previous one (Images API streams)."""


class ReplyParser(Protocol):
    """An incremental reader of one streamed reply (one Server-Sent Event at a time)."""

    done: bool
    """True once the stream said it is over (``[DONE]`` or an equivalent)."""

    @property
    def finished(self) -> bool:
        """True when the reply is complete (not cut short)."""
        ...

    def feed(self, data: str, event: str = "message") -> Iterable[Delta]: ...

    def result(self) -> ChatResult: ...


class Dialect(Protocol):
    """How one API is spoken: where to post, how to read the reply."""

    name: str
    path: str

    def stream_parser(self) -> ReplyParser: ...

    def parse_whole(self, obj: Any) -> ChatResult: ...

    def form(self, body: Mapping[str, Any]) -> tuple[dict[str, str], list[Any]] | None:
        """The body as multipart (text fields, files for httpx's ``files=``), or None for JSON."""
        ...
