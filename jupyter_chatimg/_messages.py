"""Prompt text and images -> chat message parts; ``{name}`` interpolation; history.

The prompt may mention notebook variables as ``{name}`` (or ``{name.attr}``):
an image goes in as an image part at that place in the message, a list of
images as all of them, anything else as ``str(value)``.  ``{{`` and ``}}`` are
literal braces; braces around anything that is not a name (JSON, code) are
left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._errors import ConfigError
from ._images import DEFAULT_MAX_SIDE, is_image_like, to_image_urls

__all__ = [
    "Conversation",
    "ImageRef",
    "content_from_parts",
    "interpolate",
    "system_message",
    "user_message",
]

_FIELD = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\}")


@dataclass(frozen=True)
class ImageRef:
    """An image placed in a prompt, with the label used in error messages."""

    value: Any
    label: str


def _lookup(dotted: str, namespace: Mapping[str, Any]) -> Any:
    head, *rest = dotted.split(".")
    if head not in namespace:
        raise ConfigError(
            f"prompt: {{{dotted}}} names no variable {head!r} in the notebook; "
            f"define it, or write {{{{{dotted}}}}} for literal braces"
        )
    value = namespace[head]
    for attr in rest:
        try:
            value = getattr(value, attr)
        except AttributeError:
            raise ConfigError(
                f"prompt: {{{dotted}}}: {type(value).__name__} has no attribute {attr!r}; "
                "check the name, or write {{...}} for literal braces"
            ) from None
    return value


def interpolate(template: str, namespace: Mapping[str, Any]) -> list[str | ImageRef]:
    """Split ``template`` at ``{name}`` fields into text and images, in order."""
    out: list[str | ImageRef] = []
    pos = 0
    buf: list[str] = []
    for match in _FIELD.finditer(template):
        buf.append(template[pos : match.start()])
        pos = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            buf.append(token[0])
            continue
        name = match.group(1)
        value = _lookup(name, namespace)
        if is_image_like(value) and not isinstance(value, (str, bytes)):
            out.append("".join(buf))
            buf = []
            out.append(ImageRef(value, "{" + name + "}"))
        else:
            buf.append(str(value))
    buf.append(template[pos:])
    out.append("".join(buf))
    return [p for p in out if not (isinstance(p, str) and p == "")]


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
        for url in to_image_urls(ref.value, max_side=max_side, detail=detail, label=ref.label):
            image_url: dict[str, Any] = {"url": url}
            if detail:
                image_url["detail"] = detail
            items.append({"type": "image_url", "image_url": image_url})
    for item in items:
        if item["type"] == "text":
            item["text"] = item["text"].strip("\n") if len(items) == 1 else item["text"]
    if all(item["type"] == "text" for item in items):
        return "".join(item["text"] for item in items)
    return items


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

    Each turn is a user message and the assistant's reply. The images a model
    returned are kept and sent back in the next user message (assistant
    messages cannot carry images), so "make the last image grayscale" works.
    When a bound is exceeded, the oldest turns are dropped first and
    ``notes`` says so.
    """

    max_turns: int = 20
    max_images: int = 16
    turns: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    pending_images: list[str] = field(default_factory=list)
    """Image URLs the last reply returned, to go along with the next user message."""
    notes: list[str] = field(default_factory=list)

    def messages(self) -> list[dict[str, Any]]:
        """The history as chat messages, oldest first."""
        out: list[dict[str, Any]] = []
        for user, assistant in self.turns:
            out.append(user)
            out.append(assistant)
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
        self._enforce_bounds()

    def reset(self) -> None:
        self.turns.clear()
        self.pending_images.clear()
        self.notes.clear()

    def image_count(self) -> int:
        return sum(count_images(u) for u, _ in self.turns) + len(self.pending_images)

    def _enforce_bounds(self) -> None:
        dropped = 0
        while len(self.turns) > 1 and (
            len(self.turns) > self.max_turns or self.image_count() > self.max_images
        ):
            self.turns.pop(0)
            dropped += 1
        if dropped:
            self.notes.append(
                f"dropped the {dropped} oldest turn(s) to stay within {self.max_turns} turns "
                f"and {self.max_images} images (ChatImg.history_turns / history_images)"
            )

    def __len__(self) -> int:
        return len(self.turns)
