"""``Session``: the one place where a ``Request`` becomes a ``ChatResult``.

Every front end builds a ``Request`` and calls ``Session.ask`` (or
``prepare`` then ``send``, when bad input must be reported before a worker
thread starts). Only here are settings resolved, the cache read and written,
messages and the body built (through the dialect), the HTTP layer called,
the reply rendered, returned images fetched, failures turned into results
(``ChatResult.failed``) and conversation turns recorded::

    Request -> prepare: settings, messages, body -> send: cache | HTTP stream
            -> dialect events -> render (in place) -> images -> ChatResult

A failure raises the usual ``ChatImgError`` whose ``.partial`` is the failed
``ChatResult`` (what arrived, and the error), already shown when displaying.
A kernel interrupt is kept and shown the same way, then re-raised as the
``KeyboardInterrupt`` it is (with ``.partial``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _cache
from ._config import Settings, resolve_settings
from ._dialects import Dialect
from ._dialects.chat import DIALECT as CHAT
from ._dialects.chat import build_request as build_body
from ._dialects.images import (
    EDIT,
    GENERATION,
    IMAGE_ONLY_FIELDS,
    build_edit,
    build_generation,
    checked_fields,
    choose_api,
    wants_stream,
)
from ._dialects.images import check_fields as check_image_fields
from ._errors import BadRequestError, ChatImgError, ConfigError, StreamError
from ._fetch import fetch_result_images
from ._http import Cancel, Client, pooled_transport
from ._images import encode_pil, image_digest
from ._messages import Conversation, build_messages, history_text
from ._render import LiveReply, Sink
from ._request import Request
from ._result import ChatResult
from ._retry import MAX_RETRY_AFTER, retry_delay, retryable
from ._uploads import build_image_inputs

__all__ = [
    "DEMO_NOTE",
    "MAX_RETRY_AFTER",
    "Cancel",
    "Conversation",
    "Prepared",
    "Session",
    "digest_request",
    "pooled_transport",
    "retry_delay",
    "retryable",
    "settings_for",
]

DEMO_NOTE = (
    "offline demo model ({model}); set OPENAI_API_KEY (or CHATIMG_BASE_URL, "
    "%config ChatImg.base_url) for a real one"
)
DEMO_ENDPOINT_NOTE = (
    "offline demo endpoint: it has demo-vision and demo-image only, not {model!r}; set "
    "OPENAI_API_KEY (or CHATIMG_BASE_URL, %config ChatImg.base_url) for a real model"
)
_DEMO_MODELS = re.compile(r"^demo-(vision|image)(@.*)?$")
# The demo's Images API also answers for the real image models' ids (DESIGN 7).
_DEMO_IMAGE_MODELS = re.compile(r"^(demo-image|gpt-image|chatgpt-image|dall-e-[23])", re.I)


def demo_note(model: str, api: str = "chat") -> str:
    """The one line that says the offline demo answered (and for which model)."""
    if _DEMO_MODELS.match(model) or (api == "images" and _DEMO_IMAGE_MODELS.match(model)):
        return DEMO_NOTE.format(model=model)
    return DEMO_ENDPOINT_NOTE.format(model=model)


def settings_for(overrides: Mapping[str, Any]) -> Settings:
    """Resolve settings; start the offline demo when they point at it."""
    settings = resolve_settings(overrides)
    if settings.demo:
        from .demo import ensure_demo_server  # the core never imports the demo eagerly

        settings = settings.with_overrides(base_url=ensure_demo_server().url)
    return settings


def _refuse_image_fields(request: Request, settings: Settings) -> None:
    """A chat request with Images API fields (``size=``, ``mask=`` ...) is a mistake: say so."""
    names = [k for k, v in request.params.items() if k in IMAGE_ONLY_FIELDS and v is not None]
    if request.mask is not None:
        names.append("mask")
    if names:
        raise ConfigError(
            f"{names[0]}: an Images API field, but {settings.model} speaks chat completions; "
            "use an image model (gpt-image-1 ...), --api images (api='images'), or list the "
            "model in %config ChatImg.image_models"
        )


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


@dataclass
class Prepared:
    """A request ready to send: its settings, dialect, body and what to show with it."""

    request: Request
    settings: Settings
    dialect: Dialect
    body: dict[str, Any]
    user: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def failed(self, exc: BaseException) -> ChatResult:
        """``exc`` as this request's result (what arrived before it, if anything)."""
        s = self.settings
        return ChatResult.failed(
            exc, model=s.model, endpoint=s.host, demo=s.demo, request=digest_request(self.body)
        )


class Session:
    """A conversation with endpoints: what ``chat()``, the magic, the panel and
    ``chat_many`` all send through. ``conversation`` is continued by requests
    made with ``chat=True``."""

    def __init__(self, conversation: Conversation | None = None) -> None:
        self.conversation = conversation if conversation is not None else Conversation()

    def reset(self) -> None:
        """Start the conversation over."""
        self.conversation.reset()

    @staticmethod
    def check_fields(params: Mapping[str, Any]) -> None:
        """Refuse unknown or ill-typed request fields now (``ConfigError``), before any send.

        Fields of either dialect pass: which one a request speaks depends on its model.
        """
        images = {k: v for k, v in params.items() if k in IMAGE_ONLY_FIELDS}
        check_image_fields(images)
        build_body(
            "model", [], stream=False, params={k: v for k, v in params.items() if k not in images}
        )

    @staticmethod
    def api_for(request: Request, settings: Settings) -> str:
        """``chat`` or ``images``: the dialect ``request`` speaks (the one place it is chosen)."""
        return choose_api(request.api, settings.model, settings.image_models)

    @staticmethod
    def list_models(overrides: Mapping[str, Any] | None = None) -> list[str]:
        """The endpoint's model ids (``GET /models``)."""
        return Client(settings_for(overrides or {})).list_models()

    # -- the pipeline ----------------------------------------------------------

    def ask(
        self,
        request: Request,
        sink: Sink | None = None,
        *,
        display: bool = True,
        cancel: Cancel | None = None,
        transport: Any = None,
    ) -> ChatResult:
        """Send ``request``; show the reply as it comes (unless ``display=False``)."""
        prepared = self.prepare(request)
        return self.send(prepared, sink, display=display, cancel=cancel, transport=transport)

    def prepare(self, request: Request, settings: Settings | None = None) -> Prepared:
        """Settings, messages and body for ``request``; bad input raises here, nothing is sent.

        ``settings``: already resolved for ``request``'s overrides (``chat_many``
        resolves them once for all its items instead of once per item).
        """
        try:
            if settings is None:
                settings = settings_for(request.settings_overrides())
            conversation = self.conversation if request.chat else None
            if self.api_for(request, settings) == "images":
                return self._prepare_images(request, settings, conversation)
            _refuse_image_fields(request, settings)
            messages = build_messages(request, settings, conversation)
            body = build_body(
                settings.model,
                messages.messages,
                stream=settings.stream,
                params=request.params,
                extra=request.extra,
            )
        except ChatImgError as exc:
            if exc.partial is None:
                exc.partial = ChatResult.failed(
                    exc,
                    model=settings.model if settings else None,
                    endpoint=settings.host if settings else None,
                    demo=bool(settings and settings.demo),
                )
            raise
        return Prepared(request, settings, CHAT, body, messages.user, messages.notes)

    @staticmethod
    def _prepare_images(
        request: Request, settings: Settings, conversation: Conversation | None
    ) -> Prepared:
        """An Images API request: a generation, or (with images) a multipart edit."""
        model = settings.model
        stream = wants_stream(model, settings.stream, request.params)
        edit = any(True for _ in request.images()) or bool(
            conversation is not None and conversation.pending_images
        )
        checked_fields(model, request.params, edit=edit, stream=stream)  # before any encoding
        inputs = build_image_inputs(request, settings, conversation)
        if inputs.images:
            body = build_edit(
                model,
                inputs.prompt,
                inputs.images,
                inputs.mask,
                stream=stream,
                params=request.params,
                extra=request.extra,
            )
            dialect = EDIT
        else:
            body = build_generation(
                model, inputs.prompt, stream=stream, params=request.params, extra=request.extra
            )
            dialect = GENERATION
        return Prepared(request, settings, dialect, body, inputs.user, inputs.notes)

    def send(
        self,
        prepared: Prepared,
        sink: Sink | None = None,
        *,
        display: bool = True,
        cancel: Cancel | None = None,
        transport: Any = None,
    ) -> ChatResult:
        """Send a prepared request: cache or HTTP, render, fetch images, record the turn."""
        started = time.perf_counter()
        settings = prepared.settings
        cached = _cache.load(settings, prepared.body) if settings.cache else None
        live = self._live(prepared, sink, cached is not None) if display else None
        try:
            if cached is not None:
                cached.timings.total = time.perf_counter() - started
                result = cached
            else:
                result = self._exchange(prepared, live, cancel, transport)
            self._complete(result, prepared)
        except ChatImgError as exc:
            self._fail(exc, prepared, live)
            raise
        except KeyboardInterrupt as interrupt:
            # Kept and shown, then the interrupt goes on: ``except Exception`` (or
            # ``except ChatImgError``) in a loop must not swallow the user's Stop.
            error = getattr(interrupt, "chatimg_error", None) or StreamError(
                "interrupted by the user; the partial reply is kept", partial=None
            )
            interrupt.partial = self._fail(error, prepared, live)  # type: ignore[attr-defined]
            raise
        if live is not None:
            live.finish(result)
        if settings.cache and cached is None:
            _cache.store(settings, prepared.body, result)
        if prepared.request.chat:
            self._record(result, prepared)
        return result

    # -- its steps -------------------------------------------------------------

    @staticmethod
    def _fail(exc: ChatImgError, prepared: Prepared, live: LiveReply | None) -> ChatResult:
        """Turn ``exc`` into the request's result (``exc.partial``) and show it."""
        exc.partial = prepared.failed(exc)
        if any(c.image_urls and not c.images for c in exc.partial.choices):
            fetch_result_images(exc.partial, prepared.settings)  # a cut reply keeps its images
        if live is not None:
            live.finish(exc.partial)
        return exc.partial

    def _live(self, prepared: Prepared, sink: Sink | None, cached: bool) -> LiveReply:
        settings = prepared.settings
        api = "images" if prepared.dialect.name.startswith("images") else "chat"
        shown = [demo_note(settings.model, api)] if settings.demo else []
        shown.extend(prepared.notes)
        if cached:
            shown.append(_cache.CACHE_NOTE)
        live = LiveReply(
            sink=sink,
            update_interval=settings.update_interval,
            trust_html=settings.trust_html,
            show_stats=settings.show_stats,
            notes=shown,
        )
        live.start()
        return live

    def _exchange(
        self, prepared: Prepared, live: LiveReply | None, cancel: Cancel | None, transport: Any
    ) -> ChatResult:
        client = Client(prepared.settings, transport=transport)
        on_delta = live.on_delta if live is not None else None
        on_retry = live.status if live is not None else None

        def complete(body: dict[str, Any]) -> ChatResult:
            return client.complete(
                body, on_delta=on_delta, on_retry=on_retry, cancel=cancel, dialect=prepared.dialect
            )

        try:
            return complete(prepared.body)
        except BadRequestError as exc:
            if "stream_options" not in prepared.body or "stream_options" not in exc.message:
                raise
            # Some servers reject stream_options: ask again without it (usage may be missing).
            prepared.body = {k: v for k, v in prepared.body.items() if k != "stream_options"}
            return complete(prepared.body)

    @staticmethod
    def _complete(result: ChatResult, prepared: Prepared) -> None:
        settings = prepared.settings
        result.request = digest_request(prepared.body)
        result.demo = settings.demo
        result.endpoint = settings.host
        if not result.cached:
            fetch_result_images(result, settings)

    def _record(self, result: ChatResult, prepared: Prepared) -> None:
        """Add a whole reply to the conversation (its first choice; images carried on)."""
        if prepared.user is None or result.error is not None:
            return
        first = (prepared.body.get("messages") or [{}])[0]
        if first.get("role") == "system" and isinstance(first.get("content"), str):
            self.conversation.system = first["content"]
        max_side = prepared.settings.max_side
        returned = [encode_pil(im, max_side=max_side) for im in result.images]
        self.conversation.add_turn(prepared.user, history_text(result.text), returned)
