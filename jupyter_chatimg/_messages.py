"""A ``Request`` and the conversation -> chat messages; the conversation itself.

``build_messages`` is the one place messages are assembled: the system
message, the history (bounded by turns and images), the images the last reply
returned (carried along with the next prompt), and the new user message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._config import Settings
from ._errors import ChatImgError, ConfigError
from ._image_inputs import to_image_urls
from ._images import DEFAULT_MAX_SIDE, decode_data_uri
from ._markdown import find_markdown_images
from ._request import ImageRef, Request, as_images
from ._result import ToolCall

__all__ = [
    "Conversation",
    "Messages",
    "build_messages",
    "content_from_parts",
    "history_text",
    "system_message",
    "tool_round_messages",
    "user_message",
]


def content_from_parts(
    parts: Iterable[Any],
    *,
    max_side: int = DEFAULT_MAX_SIDE,
    detail: str | None = None,
) -> str | list[dict[str, Any]]:
    """Turn text and images (in order) into message content.

    Text only gives a plain string; otherwise a list of ``text`` and
    ``image_url`` parts, adjacent text merged.
    """
    items: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, str):
            if items and items[-1]["type"] == "text":
                items[-1]["text"] += part
            elif part:
                items.append({"type": "text", "text": part})
            continue
        ref = part if isinstance(part, ImageRef) else ImageRef(part, "image")
        value = as_images(ref.value)
        for url in to_image_urls(value, max_side=max_side, detail=detail, label=ref.label):
            image_url: dict[str, Any] = {"url": url}
            if detail:
                image_url["detail"] = detail
            items.append({"type": "image_url", "image_url": image_url})
    # The cell's own leading and trailing newlines are not part of the prompt.
    if items and items[0]["type"] == "text":
        items[0]["text"] = items[0]["text"].lstrip("\n")
    if items and items[-1]["type"] == "text":
        items[-1]["text"] = items[-1]["text"].rstrip("\n")
    items = [item for item in items if item["type"] != "text" or item["text"]]
    if all(item["type"] == "text" for item in items):
        return "".join(item["text"] for item in items)
    return items


@dataclass
class Messages:
    """A request ready for a dialect: the messages, the new user message, notes to show."""

    messages: list[dict[str, Any]]
    user: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def build_messages(
    request: Request, settings: Settings, conversation: Conversation | None
) -> Messages:
    """The chat messages for ``request``: system, history (when ``conversation``), user.

    With a conversation: its bounds are applied first (a note says when turns
    were dropped), the images the last reply returned ride along with the new
    prompt, and a system message given once stays for later turns.
    """
    content = content_from_parts(request.parts, max_side=settings.max_side, detail=settings.detail)
    notes: list[str] = []
    system = request.system
    history: list[dict[str, Any]] = []
    if conversation is not None:
        conversation.bound(settings.history_turns, settings.history_images)
        note = conversation.take_note()
        if note:
            notes.append(note)
        content = conversation.carry_images(content)
        system = system or conversation.system
        history = conversation.messages()
    user = user_message(content)
    messages = [system_message(system)] if system else []
    messages.extend(history)
    messages.append(user)
    return Messages(messages, user, notes)


def history_text(text: str) -> str:
    """Reply text for the history: inline ``data:`` images become ``[image N]`` markers.

    The images themselves go back with the next user message; sending them a
    second time inside the assistant's text would only cost tokens.
    """
    out: list[str] = []
    pos = 0
    for n, image in enumerate(find_markdown_images(text), 1):
        if image.url.startswith("data:"):
            out.append(text[pos : image.start])
            out.append(f"[image {n}]")
            pos = image.end
    out.append(text[pos:])
    return "".join(out)


def user_message(content: str | list[dict[str, Any]]) -> dict[str, Any]:
    return {"role": "user", "content": content}


def system_message(text: str) -> dict[str, Any]:
    # A plain string: the gateways in DESIGN.md accept it and some reject parts here.
    return {"role": "system", "content": text}


def count_images(message: Mapping[str, Any]) -> int:
    content = message.get("content")
    if isinstance(content, list):
        return sum(1 for p in content if isinstance(p, Mapping) and p.get("type") == "image_url")
    return 0


@dataclass
class Conversation:
    """The notebook's running conversation, bounded in turns and images.

    Each turn is a user message and the assistant's reply, recorded only once
    the reply has come back whole: a failed, cut or interrupted reply leaves
    no trace, so running the cell again continues from the same place. With
    ``n > 1`` the first choice is what the history keeps.

    The images a model returned are kept and sent back at the start of the
    next user message (assistant messages cannot carry images), so "make the
    last image grayscale" works. When a bound is exceeded, the oldest turns
    are dropped first and a one-line note says so (``notes`` keeps them all;
    ``take_note()`` hands the newest to the next reply's output). A system
    message given once stays for the later turns until another one is given.
    """

    max_turns: int = 20
    max_images: int = 16
    turns: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    pending_images: list[str] = field(default_factory=list)
    """Image URLs the last reply returned, to go along with the next user message."""
    notes: list[str] = field(default_factory=list)
    system: str | None = None
    """The system message the conversation was given (kept for later turns without one)."""
    _unshown: list[str] = field(default_factory=list, repr=False)

    def messages(self) -> list[dict[str, Any]]:
        """The history as chat messages, oldest first."""
        out: list[dict[str, Any]] = []
        for user, assistant in self.turns:
            out.append(user)
            out.append(assistant)
        return out

    def image_urls(self) -> list[str]:
        """Every image in the history (sent, then returned and carried), oldest first."""
        urls: list[str] = []
        for user, _ in self.turns:
            content = user.get("content")
            if isinstance(content, list):
                urls.extend(
                    str(p["image_url"]["url"])
                    for p in content
                    if isinstance(p, Mapping) and p.get("type") == "image_url"
                )
        urls.extend(self.pending_images)
        return urls

    def images(self) -> list[Any]:
        """The history's images as PIL images (http(s) links are left out), oldest first."""
        out: list[Any] = []
        for url in self.image_urls():
            if url.startswith("data:"):
                try:
                    out.append(decode_data_uri(url, label="history image"))
                except ChatImgError:
                    continue
        return out

    def carry_images(self, content: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
        """Prefix ``content`` with the images the previous reply returned."""
        if not self.pending_images:
            return content
        parts: list[dict[str, Any]] = []
        n = len(self.pending_images)
        label = "the image" if n == 1 else f"the {n} images"
        parts.append(
            {"type": "text", "text": f"(For reference, {label} from your previous reply:)\n"}
        )
        for url in self.pending_images:
            parts.append({"type": "image_url", "image_url": {"url": url}})
        if isinstance(content, str):
            parts.append({"type": "text", "text": content})
        else:
            parts.extend(content)
        return parts

    def add_turn(self, user: dict[str, Any], reply_text: str, reply_images: Sequence[str]) -> None:
        """Record one exchange; returned images ride along with the next prompt."""
        self.turns.append((user, {"role": "assistant", "content": reply_text or ""}))
        self.pending_images = list(reply_images)
        self.bound()

    def bound(self, max_turns: int | None = None, max_images: int | None = None) -> int:
        """Apply the bounds (new ones if given); drop the oldest turns; return how many."""
        if max_turns is not None:
            self.max_turns = _whole(max_turns, "history_turns")
        if max_images is not None:
            self.max_images = _whole(max_images, "history_images")
        dropped = 0
        while self.turns and (
            len(self.turns) > self.max_turns or self.image_count() > self.max_images
        ):
            self.turns.pop(0)
            dropped += 1
        if dropped:
            note = (
                f"history: dropped the {_oldest(dropped)} to stay within "
                f"{self.max_turns} turns and {self.max_images} images "
                "(%config ChatImg.history_turns / history_images)"
            )
            self.notes.append(note)
            self._unshown.append(note)
        return dropped

    def take_note(self) -> str | None:
        """The note about turns dropped since the last call (None if none were)."""
        if not self._unshown:
            return None
        note = self._unshown[-1]
        self._unshown.clear()
        return note

    def reset(self) -> None:
        """Forget every turn, the carried images and the notes."""
        self.turns.clear()
        self.pending_images.clear()
        self.notes.clear()
        self._unshown.clear()
        self.system = None

    def image_count(self) -> int:
        """Images the next request would carry from the history."""
        return sum(count_images(u) for u, _ in self.turns) + len(self.pending_images)

    def __len__(self) -> int:
        return len(self.turns)

    def __repr__(self) -> str:
        lines = [f"Conversation({_turns(len(self.turns))}, {self.image_count()} image(s))"]
        for i, (user, assistant) in enumerate(self.turns, 1):
            lines.append(f"  {i}. user: {_summary(user)}")
            lines.append(f"     assistant: {_summary(assistant)}")
        if self.pending_images:
            lines.append(f"  next prompt carries {len(self.pending_images)} returned image(s)")
        return "\n".join(lines)


def _oldest(n: int) -> str:
    return "oldest turn" if n == 1 else f"{n} oldest turns"


def _turns(n: int) -> str:
    return f"{n} turn" if n == 1 else f"{n} turns"


def _whole(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{name}: {value!r} must be a whole number >= 0")
    return value


def _summary(message: Mapping[str, Any], limit: int = 70) -> str:
    content = message.get("content")
    if isinstance(content, list):
        text = "".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, Mapping) and p.get("type") == "text"
        )
        images = count_images(message)
    else:
        text, images = str(content or ""), 0
    flat = " ".join(text.split())
    short = flat if len(flat) <= limit else flat[: limit - 1] + "…"
    return repr(short) + (f" + {images} image(s)" if images else "")


def tool_round_messages(
    text: str,
    calls: Sequence[ToolCall],
    images: Mapping[str, Sequence[Any]],
    *,
    max_side: int = DEFAULT_MAX_SIDE,
    detail: str | None = None,
) -> list[dict[str, Any]]:
    """The messages that carry one round of a tool loop back to the model.

    The assistant's reply with its ``tool_calls`` (``text`` as its content),
    one ``tool`` message per call (``tool_call_id``, the call's output), and,
    when calls returned images (``images``: call id -> PIL images), one user
    message holding them as image parts (a tool message cannot carry images).
    """
    assistant: dict[str, Any] = {
        "role": "assistant",
        "content": text or None,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ],
    }
    out = [assistant]
    out.extend({"role": "tool", "tool_call_id": c.id, "content": c.output or ""} for c in calls)
    parts: list[Any] = []
    for call in calls:
        returned = images.get(call.id) or []
        if not returned:
            continue
        label = "the image" if len(returned) == 1 else f"the {len(returned)} images"
        parts.append(f"({label} returned by {call.name}, call {call.id}:)\n")
        parts.extend(ImageRef(im, f"the result of {call.name}") for im in returned)
    if parts:
        out.append(user_message(content_from_parts(parts, max_side=max_side, detail=detail)))
    return out
