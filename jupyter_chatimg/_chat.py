"""chat / achat: messages -> client -> renderer -> ChatResult.

The one place where the pieces meet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from . import _cache
from ._client import Cancel, Client, fetch_result_images
from ._config import SETTING_NAMES, Settings, resolve_settings
from ._errors import BadRequestError, ChatImgError, ConfigError, StreamError
from ._images import encode_pil, image_digest
from ._markdown import find_markdown_images
from ._messages import Conversation, content_from_parts, system_message, user_message
from ._render import LiveReply, Sink
from ._result import ChatResult
from ._wire import build_request

__all__ = [
    "DEMO_NOTE",
    "Prepared",
    "achat",
    "chat",
    "clear_cache",
    "conversation",
    "list_models",
    "prepare",
    "prepare_request",
    "reset_conversation",
    "send",
]

DEMO_NOTE = (
    "offline demo model ({model}); set OPENAI_API_KEY (or CHATIMG_BASE_URL, "
    "%config ChatImg.base_url) for a real one"
)

_conversation = Conversation()


def conversation() -> Conversation:
    """The notebook's conversation (what ``chat=True`` / ``--chat`` continues)."""
    return _conversation


def reset_conversation() -> None:
    """Start the notebook's conversation over."""
    _conversation.reset()


def _settings_for(overrides: Mapping[str, Any]) -> Settings:
    settings = resolve_settings(overrides)
    if settings.demo:
        from .demo import ensure_demo_server  # the core never imports the demo eagerly

        settings = settings.with_overrides(base_url=ensure_demo_server().url)
    return settings


def _split_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    settings = {k: kwargs.pop(k) for k in list(kwargs) if k in SETTING_NAMES}
    return settings, kwargs


def digest_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """The request with every data URI replaced by a short digest (for provenance)."""

    def walk(value: Any) -> Any:
        if isinstance(value, str) and value.startswith("data:"):
            return image_digest(value)
        if isinstance(value, Mapping):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(dict(body))  # type: ignore[no-any-return]


def clear_cache() -> int:
    """Remove every cached reply (``cache=True`` / ``--cache``); return how many there were."""
    return _cache.clear_cache()


@dataclass
class Prepared:
    """A request ready to send: settings, body, the new user message, notes to show."""

    settings: Settings
    body: dict[str, Any]
    user: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def prepare(
    prompt: str | Sequence[Any],
    images: Iterable[Any] | Any = (),
    *,
    system: str | None = None,
    chat: bool = False,
    stream: bool | None = None,
    params: Mapping[str, Any] | None = None,
    settings_overrides: Mapping[str, Any] | None = None,
) -> tuple[Settings, dict[str, Any], dict[str, Any]]:
    """Resolve settings and build the request body; return (settings, body, user message)."""
    p = prepare_request(
        prompt,
        images,
        system=system,
        chat=chat,
        stream=stream,
        params=params,
        settings_overrides=settings_overrides,
    )
    return p.settings, p.body, p.user


def prepare_request(
    prompt: str | Sequence[Any],
    images: Iterable[Any] | Any = (),
    *,
    system: str | None = None,
    chat: bool = False,
    stream: bool | None = None,
    params: Mapping[str, Any] | None = None,
    settings_overrides: Mapping[str, Any] | None = None,
) -> Prepared:
    """``prepare``, also returning the notes for the reply's output (history dropped)."""
    settings = _settings_for(dict(settings_overrides or {}, stream=stream))
    parts: list[Any] = [prompt] if isinstance(prompt, str) else list(prompt)
    if images is not None and not isinstance(images, (list, tuple)):
        images = [images]
    parts.extend(images or ())
    if not any((isinstance(p, str) and p.strip()) or not isinstance(p, str) for p in parts):
        raise ConfigError(
            "empty prompt: write a question in the cell, or attach an image with --image NAME"
        )
    content = content_from_parts(parts, max_side=settings.max_side, detail=settings.detail)
    notes: list[str] = []
    if chat:
        _conversation.bound(settings.history_turns, settings.history_images)
        note = _conversation.take_note()
        if note:
            notes.append(note)
        content = _conversation.carry_images(content)
    user = user_message(content)
    messages: list[dict[str, Any]] = []
    if chat and not system:
        system = _conversation.system
    if system:
        messages.append(system_message(system))
    if chat:
        messages.extend(_conversation.messages())
    messages.append(user)
    params = dict(params or {})
    extra = params.pop("extra", None)
    if extra is not None and not isinstance(extra, Mapping):
        raise ConfigError(f"extra: expected a dict of request fields, got {type(extra).__name__}")
    body = build_request(
        settings.model, messages, stream=settings.stream, params=params, extra=extra
    )
    return Prepared(settings, body, user, notes)


def chat(
    prompt: str | Sequence[Any],
    images: Iterable[Any] | Any = (),
    *,
    model: str | None = None,
    stream: bool | None = None,
    system: str | None = None,
    display: bool = True,
    chat: bool = False,
    base_url: str | None = None,
    api_key_env: str | None = None,
    timeout: float | None = None,
    sink: Sink | None = None,
    cancel: Cancel | None = None,
    **params: Any,
) -> ChatResult:
    """Send a prompt (and images) to the endpoint; show the reply as it streams.

    ``prompt`` is text, or a list mixing text and images sent in that order;
    ``images`` go after it. ``**params`` are request fields (``temperature=``,
    ``max_tokens=``, ``response_format=`` ...) and ``extra=`` a dict merged
    into the request; the settings keywords (``max_retries``, ``max_side``,
    ``detail``, ``update_interval``, ``show_stats`` ...) override the
    configuration for this call. Returns a ``ChatResult``; a reply cut short
    raises ``StreamError`` whose ``.partial`` holds what arrived.
    """
    overrides, params = _split_kwargs(dict(params))
    overrides.update(model=model, base_url=base_url, api_key_env=api_key_env, timeout=timeout)
    p = prepare_request(
        prompt,
        images,
        system=system,
        chat=chat,
        stream=stream,
        params=params,
        settings_overrides=overrides,
    )
    return send(
        p.settings,
        p.body,
        user=p.user,
        chat=chat,
        display=display,
        sink=sink,
        cancel=cancel,
        notes=p.notes,
    )


def send(
    settings: Settings,
    body: dict[str, Any],
    *,
    user: dict[str, Any] | None = None,
    chat: bool = False,
    display: bool = True,
    sink: Sink | None = None,
    cancel: Cancel | None = None,
    notes: Sequence[str] = (),
    transport: httpx.BaseTransport | None = None,
) -> ChatResult:
    """Send a prepared request, render it, fetch returned images, record the turn.

    With ``settings.cache`` an identical earlier reply is shown instead (no
    request is made), and a new whole reply is stored. With ``chat`` a whole
    reply is recorded in the conversation; a failed or cut one is not.
    """
    started = time.perf_counter()
    cached = _cache.load(settings, body) if settings.cache else None
    live: LiveReply | None = None
    if display:
        shown = [DEMO_NOTE.format(model=settings.model)] if settings.demo else []
        shown.extend(notes)
        if cached is not None:
            shown.append(_cache.CACHE_NOTE)
        live = LiveReply(
            sink=sink,
            update_interval=settings.update_interval,
            trust_html=settings.trust_html,
            show_stats=settings.show_stats,
            notes=shown,
        )
        live.start()
    if cached is not None:
        cached.timings.total = time.perf_counter() - started
        cached.request = digest_request(body)
        cached.demo = settings.demo
        cached.endpoint = settings.host
        if live is not None:
            live.finish(cached)
        _record(cached, settings, body, user if chat else None)
        return cached
    client = Client(settings, transport=transport)
    on_delta = live.on_delta if live is not None else None
    on_retry = live.status if live is not None else None
    try:
        try:
            result = client.complete(body, on_delta=on_delta, on_retry=on_retry, cancel=cancel)
        except BadRequestError as exc:
            if "stream_options" not in body or "stream_options" not in exc.message:
                raise
            body = {k: v for k, v in body.items() if k != "stream_options"}
            result = client.complete(body, on_delta=on_delta, on_retry=on_retry, cancel=cancel)
    except StreamError as exc:
        partial = exc.partial or ChatResult()
        _complete_result(partial, settings, body)
        if live is not None:
            live.finish(partial)
        exc.partial = partial
        raise
    except ChatImgError as exc:
        failed = ChatResult(
            error=exc, model=settings.model, endpoint=settings.host, demo=settings.demo
        )
        failed.request = digest_request(body)
        if live is not None:
            live.finish(failed)
        raise
    _complete_result(result, settings, body)
    if live is not None:
        live.finish(result)
    if settings.cache:
        _cache.store(settings, body, result)
    _record(result, settings, body, user if chat else None)
    return result


def _record(
    result: ChatResult, settings: Settings, body: Mapping[str, Any], user: dict[str, Any] | None
) -> None:
    """Add a whole reply to the conversation (its first choice; images carried on)."""
    if user is None or result.error is not None:
        return
    first = (body.get("messages") or [{}])[0]
    if first.get("role") == "system" and isinstance(first.get("content"), str):
        _conversation.system = first["content"]
    returned = [encode_pil(im, max_side=settings.max_side) for im in result.images]
    _conversation.add_turn(user, history_text(result.text), returned)


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


def _complete_result(result: ChatResult, settings: Settings, body: dict[str, Any]) -> None:
    result.request = digest_request(body)
    result.demo = settings.demo
    result.endpoint = settings.host
    fetch_result_images(result, settings)


async def achat(*args: Any, **kwargs: Any) -> ChatResult:
    """``chat`` for ``await``: runs in a worker thread; cancelling closes the connection."""
    cancel = kwargs.pop("cancel", None) or Cancel()
    task = asyncio.ensure_future(asyncio.to_thread(chat, *args, cancel=cancel, **kwargs))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        cancel.set("cancelled")
        raise


def list_models(*, base_url: str | None = None, api_key_env: str | None = None) -> list[str]:
    """The endpoint's model ids (``GET /models``)."""
    settings = _settings_for({"base_url": base_url, "api_key_env": api_key_env})
    return Client(settings).list_models()
