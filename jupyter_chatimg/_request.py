"""``Request``: what the user asked for, as one immutable value, built by pure code.

Every front end (``chat()``, the magic, the panel, ``chat_many``) turns what
the user gave into a ``Request`` here and hands it to a ``Session``. Building
one reads no file and sends nothing: images stay as the user's objects until
the session encodes them.

The prompt may mention notebook variables as ``{name}``, ``{name.attr}`` or
with literal subscripts, ``{Out[3]}``, ``{imgs[0]}``, ``{row["image"]}``
(only integer or quoted-string subscripts: nothing is evaluated): an image
goes in as an image part at that place in the message, a list of images (or
anything with ``.tolist()`` giving images, such as a pandas column) as all of
them, anything else as ``str(value)``.  ``{{`` and ``}}`` are literal braces;
braces around anything that is not such a field (JSON, code) are left alone.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from ._config import SETTING_NAMES
from ._errors import ConfigError
from ._image_inputs import is_image_like

__all__ = [
    "API_CHOICES",
    "EMPTY_PROMPT",
    "MAX_IMAGES",
    "ImageRef",
    "Request",
    "as_images",
    "bounded_list",
    "build_request",
    "interpolate",
    "request_fields",
]

API_CHOICES = ("auto", "chat", "images")
"""Which wire dialect a request speaks (``api=``, ``--api``): ``auto`` picks by the model."""
EMPTY_PROMPT = "empty prompt: write a question in the cell, or attach an image with --image NAME"
MAX_IMAGES = 1000
"""More images than this in one request is refused before any is read (an endless
iterable passed as ``images=`` would otherwise fill the memory)."""


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
            items = bounded_list(value, "images")
        except ConfigError:
            raise
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
            buf.append(_text_of(value, name))
    buf.append(template[pos:])
    out.append("".join(buf))
    return [p for p in out if not (isinstance(p, str) and p == "")]


def bounded_list(values: Iterable[Any], what: str, limit: int = MAX_IMAGES) -> list[Any]:
    """``list(values)``, refusing more than ``limit`` items before reading further."""
    items = list(itertools.islice(iter(values), limit + 1))
    if len(items) > limit:
        raise ConfigError(
            f"{what}: more than {limit} items (an endless iterable?); pass a list of at most "
            f"{limit}, or use chat_many for many requests"
        )
    return items


def _text_of(value: Any, name: str) -> str:
    try:
        return str(value)
    except Exception as exc:
        raise ConfigError(
            f"prompt: {{{name}}}: str() of the {type(value).__name__} failed "
            f"({type(exc).__name__}: {exc}); pass a value that prints, or write {{{{{name}}}}}"
        ) from None


@dataclass(frozen=True)
class Request:
    """One request as the user meant it: prompt parts, settings and request fields.

    ``parts`` are text and ``ImageRef`` in the order they go into the user
    message; ``overrides`` are settings for this request (``model``,
    ``base_url``, ``max_side`` ...; see ``Settings``); ``params`` are request
    fields (``temperature``, ``tools`` ...) and ``extra`` a dict merged into
    the body unchecked. ``chat`` continues the session's conversation.
    ``tools`` may hold Python functions (the session runs them in a tool
    loop); ``schema`` asks for structured output (a pydantic model class, a
    dataclass, a TypedDict or a JSON Schema dict; checked by the session).
    ``api`` picks the dialect (``auto``, ``chat``, ``images``; None: auto) and
    ``mask`` is the mask of an Images API edit (its transparent pixels mark
    where to edit).
    """

    parts: tuple[str | ImageRef, ...]
    system: str | None = None
    stream: bool | None = None
    chat: bool = False
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    extra: Mapping[str, Any] | None = None
    overrides: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    schema: Any = None
    api: str | None = None
    mask: ImageRef | None = None

    def evolve(self, **changes: Any) -> Request:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def settings_overrides(self) -> dict[str, Any]:
        """The settings this request sets (``stream`` among them)."""
        return dict(self.overrides, stream=self.stream)

    @property
    def text(self) -> str:
        """The prompt's text parts joined (for messages and tables)."""
        return "".join(p for p in self.parts if isinstance(p, str))

    def images(self) -> Iterator[ImageRef]:
        return (p for p in self.parts if isinstance(p, ImageRef))


def _image_parts(images: Any) -> list[ImageRef]:
    if images is None:
        return []
    if isinstance(images, (list, tuple)) or (
        isinstance(images, Iterable)
        and not isinstance(images, (str, bytes, bytearray))
        and not is_image_like(images)
    ):
        values = bounded_list(images, "images")
    else:
        values = [images]
    # In images=, a str is an image (a path, an http(s) URL or a data: URI), never text.
    return [ImageRef(value, "image") for value in values]


def build_request(
    prompt: str | Sequence[Any],
    images: Any = (),
    *,
    system: str | None = None,
    stream: bool | None = None,
    chat: bool = False,
    **kwargs: Any,
) -> Request:
    """A ``Request`` from ``chat()``-style arguments (pure: nothing is read or sent).

    ``prompt`` is text, or a list mixing text and images in order; ``images``
    go after it; keywords that name a setting (``model``, ``base_url``,
    ``max_side`` ...) are settings for this request, ``extra`` a dict merged
    into the body, and every other keyword a request field.
    """
    fields = request_fields(**kwargs)
    if isinstance(prompt, str):
        parts: list[Any] = [prompt]
    else:
        parts = [
            p if isinstance(p, (str, ImageRef)) else ImageRef(p, "image")
            for i, p in enumerate(bounded_list(prompt, "prompt"))
        ]
    parts.extend(_image_parts(images))
    if not any(isinstance(p, ImageRef) or p.strip() for p in parts):
        raise ConfigError(EMPTY_PROMPT)
    return Request(parts=tuple(parts), system=system, stream=stream, chat=chat, **fields)


def request_fields(**kwargs: Any) -> dict[str, Any]:
    """Sort ``chat()``-style keywords into a Request's ``overrides``, ``extra`` and ``params``.

    Keywords that name a setting are settings for this request; ``extra`` is a
    dict merged into the body; ``schema`` asks for structured output; ``api``
    picks the dialect and ``mask`` is the mask of an Images API edit;
    everything else is a request field.
    """
    overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in SETTING_NAMES}
    extra = kwargs.pop("extra", None)
    schema = kwargs.pop("schema", None)
    if extra is not None and not isinstance(extra, Mapping):
        raise ConfigError(f"extra: expected a dict of request fields, got {type(extra).__name__}")
    api = kwargs.pop("api", None)
    if api is not None and (not isinstance(api, str) or api.strip().lower() not in API_CHOICES):
        raise ConfigError(f"api: {api!r} is not one of {', '.join(API_CHOICES)}")
    mask = kwargs.pop("mask", None)
    return {
        "params": MappingProxyType(dict(kwargs)),
        "extra": MappingProxyType(dict(extra)) if extra is not None else None,
        "overrides": MappingProxyType({k: v for k, v in overrides.items() if v is not None}),
        "schema": schema,
        "api": api.strip().lower() if api is not None else None,
        "mask": mask if mask is None or isinstance(mask, ImageRef) else ImageRef(mask, "mask"),
    }
