"""Prompt text and images -> chat message parts; ``{name}`` interpolation; history.

The prompt may mention notebook variables as ``{name}``, ``{name.attr}`` or
with literal subscripts, ``{Out[3]}``, ``{imgs[0]}``, ``{row["image"]}``
(only integer or quoted-string subscripts: nothing is evaluated): an image
goes in as an image part at that place in the message, a list of images (or
anything with ``.tolist()`` giving images, such as a pandas column) as all of
them, anything else as ``str(value)``.  ``{{`` and ``}}`` are literal braces;
braces around anything that is not such a field (JSON, code) are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._errors import ChatImgError, ConfigError
from ._images import DEFAULT_MAX_SIDE, decode_data_uri, is_image_like, to_image_urls

__all__ = [
    "Conversation",
    "ImageRef",
    "as_images",
    "content_from_parts",
    "interpolate",
    "system_message",
    "user_message",
]

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SUBSCRIPT = r"""\[\s*(?:-?\d+|'[^'\\\]\n]*'|"[^"\\\]\n]*")\s*\]"""
_FIELD = re.compile(r"\{\{|\}\}|\{(" + _NAME + r"(?:\." + _NAME + "|" + _SUBSCRIPT + r")*)\}")
_STEP = re.compile(r"\.(" + _NAME + r")|\[\s*(-?\d+|'[^']*'|\"[^\"]*\")\s*\]")


@dataclass(frozen=True)
class ImageRef:
    """An image placed in a prompt, with the label used in error messages."""

    value: Any
    label: str


def as_images(value: Any) -> Any:
    """``value`` itself if it is image-like; a list if it is a collection of images.

    Collections are lists and tuples (taken as they are), anything with a
    ``.tolist()`` method (a pandas Series or column, a numpy object array) and
    other iterables such as generators, as long as every item is image-like.
    Anything else comes back unchanged.
    """
    if isinstance(value, (str, bytes, bytearray, memoryview, Mapping)) or is_image_like(value):
        return value
    items: Any = None
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and not isinstance(value, type):
        try:
            items = tolist()
        except Exception:  # a foreign object's tolist: then it is just not a collection
            items = None
    elif isinstance(value, Iterable) and not isinstance(value, (list, tuple)):
        try:
            items = list(value)
        except Exception:
            items = None
    if isinstance(items, list) and items and all(is_image_like(item) for item in items):
        return items
    return value


def _lookup(path: str, namespace: Mapping[str, Any]) -> Any:
    head = re.match(_NAME, path)
    assert head is not None  # the field pattern guarantees a leading name
    name = head.group(0)
    if name not in namespace:
        raise ConfigError(
            f"prompt: {{{path}}} names no variable {name!r} in the notebook; "
            f"define it, or write {{{{{path}}}}} for literal braces"
        )
    value = namespace[name]
    shown = name
    for step in _STEP.finditer(path, head.end()):
        attr, key_text = step.group(1), step.group(2)
        if attr is not None:
            try:
                value = getattr(value, attr)
            except AttributeError:
                raise ConfigError(
                    f"prompt: {{{path}}}: {type(value).__name__} has no attribute {attr!r}; "
                    "check the name, or write {{...}} for literal braces"
                ) from None
            shown += "." + attr
            continue
        key: int | str = key_text[1:-1] if key_text[0] in "'\"" else int(key_text)
        try:
            value = value[key]
        except (LookupError, TypeError) as exc:
            kind = type(exc).__name__
            raise ConfigError(
                f"prompt: {{{path}}}: {shown}[{key!r}] failed ({kind}); "
                "check the index, or write {{...}} for literal braces"
            ) from None
        shown += f"[{key!r}]"
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
        value = as_images(_lookup(name, namespace))
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
