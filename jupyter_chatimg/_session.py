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

Tools and structured output (DESIGN 4.3): when ``tools`` holds Python
functions (``_tools``), a reply that asks for them is followed by running
them and asking the model again with their results, up to
``max_tool_rounds`` times, every round shown in the same output
(``_render_tools``); ``ChatResult.rounds`` keeps the replies. With
``schema`` (``_structured``) or ``response_format`` ``json_object``, the
final text is parsed into ``ChatResult.parsed``; a reply that does not fit
raises ``StructuredOutputError`` (text kept, one line shown).

A kernel interrupt is kept and shown the same way, then re-raised as the
``KeyboardInterrupt`` it is (with ``.partial``).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _cache
from ._config import Settings, resolve_settings
from ._dialects import Delta, Dialect, ReplyParser
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
from ._errors import (
    BadRequestError,
    ChatImgError,
    ConfigError,
    StreamError,
    StructuredOutputError,
    ToolLoopError,
)
from ._fetch import fetch_result_images
from ._http import Cancel, Client, pooled_transport
from ._images import encode_pil, image_digest
from ._messages import Conversation, build_messages, history_text, tool_round_messages
from ._render import LiveReply, Sink, default_sink
from ._render_tools import ToolView
from ._request import Request
from ._result import ChatResult, Timings, ToolCall
from ._retry import MAX_RETRY_AFTER, retry_delay, retryable
from ._structured import JSON_OBJECT, Structured, structured
from ._tools import Toolbox, forced_choice, images_of, toolbox
from ._uploads import build_image_inputs

__all__ = [
    "DEMO_NOTE",
    "MAX_RETRY_AFTER",
    "Cancel",
    "Conversation",
    "Prepared",
    "Session",
    "digest_request",
    "parse_replies",
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
    tools: Toolbox | None = None
    """The request's tools; ``tools.runs`` when Python functions were passed (a tool loop)."""
    structured: Structured | None = None
    """What the reply's text is parsed into (``schema=``, ``json_object``), or None."""

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
    def check_fields(params: Mapping[str, Any], schema: Any = None) -> None:
        """Refuse unknown or ill-typed request fields (and tools, a schema) now
        (``ConfigError``), before any send.

        Fields of either dialect pass: which one a request speaks depends on its model.
        """
        images = {k: v for k, v in params.items() if k in IMAGE_ONLY_FIELDS}
        check_image_fields(images)
        chat_params = {k: v for k, v in params.items() if k not in images}
        fields, _, _ = tools_and_schema(chat_params, schema, None)
        build_body("model", [], stream=False, params=fields)

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
            params, tools, parse_as = tools_and_schema(
                request.params, request.schema, request.extra
            )
            body = build_body(
                settings.model,
                messages.messages,
                stream=settings.stream,
                params=params,
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
        return Prepared(
            request, settings, CHAT, body, messages.user, messages.notes, tools, parse_as
        )

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
        """Send a prepared request: cache or HTTP, render, fetch images, run the tool
        loop, parse structured output, record the turn."""
        return _Exchange(self, prepared, sink, display, cancel, transport).run()

    @staticmethod
    def _complete(
        result: ChatResult, prepared: Prepared, body: Mapping[str, Any] | None = None
    ) -> None:
        settings = prepared.settings
        result.request = digest_request(prepared.body if body is None else body)
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


def tools_and_schema(
    params: Mapping[str, Any], schema: Any, extra: Mapping[str, Any] | None
) -> tuple[dict[str, Any], Toolbox | None, Structured | None]:
    """The request fields with Python functions turned into tool dicts and ``schema``
    into ``response_format``; the toolbox; what the reply is parsed into."""
    fields = dict(params)
    tools = toolbox(fields.get("tools"))
    if tools is not None:
        fields["tools"] = tools.specs
    response_format = fields.get("response_format")
    if schema is not None:
        if response_format is not None or (extra and "response_format" in extra):
            raise ConfigError(
                "schema and response_format both set the reply's format; keep one of them "
                "(a schema is sent as response_format json_schema)"
            )
        wanted = structured(schema)
        fields["response_format"] = wanted.response_format()
        parse_as: Structured | None = wanted
    elif isinstance(response_format, Mapping) and response_format.get("type") == "json_object":
        parse_as = JSON_OBJECT
    elif isinstance(response_format, Mapping) and response_format.get("type") == "json_schema":
        given = response_format.get("json_schema")
        inner = given.get("schema") if isinstance(given, Mapping) else None
        try:
            parse_as = structured(inner) if isinstance(inner, Mapping) else JSON_OBJECT
        except ConfigError:
            parse_as = JSON_OBJECT
    else:
        parse_as = None
    return fields, tools, parse_as


def parse_replies(request: Request, results: Iterable[ChatResult]) -> None:
    """Structured output for results that did not come through ``send`` (the lines of a
    Batch API job, a journal's read-back): ``parsed`` is set, or ``error`` for a reply that
    is not valid JSON or does not fit. Results already parsed or failed are left alone."""
    _, _, parse_as = tools_and_schema(request.params, request.schema, request.extra)
    if parse_as is None:
        return
    for result in results:
        if result.error is not None or result.parsed is not None:
            continue
        if result.tool_calls and not result.text.strip():
            continue
        try:
            result.parsed = parse_as.parse(result.text, finish_reason=result.finish_reason)
        except StructuredOutputError as exc:
            exc.partial = result
            result.error = exc


def _sum_usage(rounds: list[ChatResult]) -> dict[str, Any] | None:
    """The usage of every round added up (numbers; other fields from the last round)."""
    usages = [r.usage for r in rounds if r.usage]
    if not usages:
        return None
    total = dict(usages[-1])
    for key in {k for u in usages for k in u}:
        values = [u.get(key) for u in usages]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            total[key] = sum(values)
    return total


class _Exchange:
    """One ``send``: the model asked once, or a tool loop of rounds, in one output.

    The loop: a reply whose first choice asks for tools (when Python functions
    were passed) has its calls run in order and the model is asked again with
    the results; it ends on a reply without tool calls, on Stop or an
    interrupt (what arrived is kept), or when reply ``max_tool_rounds + 1``
    still asks for tools (``ToolLoopError``: those calls are shown, not run).
    A forced ``tool_choice`` holds for the first request only.
    """

    def __init__(
        self,
        session: Session,
        prepared: Prepared,
        sink: Sink | None,
        display: bool,
        cancel: Cancel | None,
        transport: Any,
    ) -> None:
        self.session = session
        self.prepared = prepared
        self.settings = prepared.settings
        self.cancel = cancel
        self.transport = transport
        self.started = time.perf_counter()
        self.loop = prepared.tools is not None and prepared.tools.runs
        self.body = prepared.body
        self.rounds: list[ChatResult] = []
        self.live: LiveReply | None = None
        self.running: ToolCall | None = None
        self.view: ToolView | None = None
        if display:
            target = sink or default_sink()
            notes = self._notes() if self.loop else []
            self.view = ToolView(target, loop=self.loop, notes=notes)
            if self.loop and target.wants_deltas:
                for line in notes:
                    target.delta(line + "\n")

    def _notes(self) -> list[str]:
        settings = self.settings
        api = "images" if self.prepared.dialect.name.startswith("images") else "chat"
        shown = [demo_note(settings.model, api)] if settings.demo else []
        shown.extend(self.prepared.notes)
        return shown

    # -- the whole ---------------------------------------------------------------------

    def run(self) -> ChatResult:
        try:
            try:
                result = self._run()
            except KeyboardInterrupt as interrupt:
                self._interrupted(interrupt)
                raise
        except ChatImgError as exc:
            exc.partial = self._failed(exc)
            self._show_end(exc.partial)
            raise
        error = self._parse(result)
        self._show_end(result)
        if error is not None:
            raise error
        if self.prepared.request.chat:
            self.session._record(result, self.prepared)
        return result

    def _run(self) -> ChatResult:
        result = self._round()
        limit = self.settings.max_tool_rounds
        while self.loop and result.tool_calls:
            if len(self.rounds) > limit:
                raise ToolLoopError(
                    f"the model still asked for tools after {limit} round"
                    f"{'' if limit == 1 else 's'} of running them "
                    f"(max_tool_rounds {limit}); its last calls are shown but were not run - "
                    "raise --max-tool-rounds (max_tool_rounds=), or look at what the tools returned"
                )
            self._run_tools(result)
            self._check_cancel()
            result = self._round()
        return self._combined(self.rounds) if self.loop else result

    # -- one round -----------------------------------------------------------------------

    def _round(self) -> ChatResult:
        settings = self.settings
        started = time.perf_counter()
        cached = _cache.load(settings, self.body) if settings.cache else None
        self.live = self._new_live(cached is not None)
        if cached is not None:
            cached.timings.total = time.perf_counter() - started
            result = cached
        else:
            result = self._exchange()
        self.session._complete(result, self.prepared, self.body)
        self._calls_of(result)
        if settings.cache and cached is None:
            _cache.store(settings, self.body, result)
        self.rounds.append(result)
        if self.view is not None:
            self.view.round_done(result)
        return result

    def _calls_of(self, result: ChatResult) -> None:
        wire = result.choices[0].tool_calls if result.choices else []
        n = len(self.rounds)
        result.tool_calls = [ToolCall.from_wire(c, round=n, position=i) for i, c in enumerate(wire)]

    def _new_live(self, cached: bool) -> LiveReply | None:
        view = self.view
        if view is None:
            return None
        settings = self.settings
        shown: list[str] = []
        if not self.loop:
            shown = self._notes()
            if cached:
                shown.append(_cache.CACHE_NOTE)
        else:
            if cached and _cache.CACHE_NOTE not in view.notes:
                view.notes.append(_cache.CACHE_NOTE)
            if not view.sink.wants_deltas:  # a terminal printed them first
                shown = list(view.notes)  # under the round that streams (see _run_tools)
        live = LiveReply(
            sink=view.round_sink(),
            update_interval=settings.update_interval,
            trust_html=settings.trust_html,
            show_stats=settings.show_stats,
            notes=shown,
            max_display_chars=settings.max_display_chars,
        )
        live.calls = view.calls_html
        live.start()
        return live

    def _exchange(self) -> ChatResult:
        prepared = self.prepared
        client = Client(self.settings, transport=self.transport)
        live, view = self.live, self.view
        on_delta: Any = None
        if live is not None and view is not None:
            show = live.on_delta
            calls = view.on_delta

            def on_delta(delta: Delta, parser: ReplyParser) -> None:
                if delta.tool_calls is not None:
                    calls(delta)
                show(delta, parser)

        on_retry = live.status if live is not None else None

        def complete(body: dict[str, Any]) -> ChatResult:
            return client.complete(
                body,
                on_delta=on_delta,
                on_retry=on_retry,
                cancel=self.cancel,
                dialect=prepared.dialect,
            )

        try:
            return complete(self.body)
        except BadRequestError as exc:
            if "stream_options" not in self.body or "stream_options" not in exc.message:
                raise
            # Some servers reject stream_options: ask again without it (usage may be missing).
            prepared.body = {k: v for k, v in prepared.body.items() if k != "stream_options"}
            self.body = {k: v for k, v in self.body.items() if k != "stream_options"}
            return complete(self.body)

    # -- the tools -------------------------------------------------------------------------

    def _run_tools(self, result: ChatResult) -> None:
        """Run the calls of ``result`` (one round); the next body carries their results."""
        tools = self.prepared.tools
        assert tools is not None
        if self.live is not None:
            self.live.notes = []  # they move under the next round (or the closing line)
            self.live.finish(result)  # the round's last update (not the row's)
            self.live = None
        if self.view is not None:
            self.view.start_tools()
        images: dict[str, list[Any]] = {}
        for call in result.tool_calls:
            self._check_cancel()
            self.running = call
            tools.run(call)
            self.running = None
            returned = images_of(call.result) if call.ran and call.error is None else []
            if returned:
                images[call.id] = returned
            if self.view is not None:
                self.view.tool_ran(call, returned)
        settings = self.settings
        messages = tool_round_messages(
            result.text,
            result.tool_calls,
            images,
            max_side=settings.max_side,
            detail=settings.detail,
        )
        body = dict(self.body)
        body["messages"] = [*body["messages"], *messages]
        if forced_choice(body.get("tool_choice")):
            body["tool_choice"] = "auto"
        self.body = body

    def _check_cancel(self) -> None:
        cancel = self.cancel
        if cancel is not None and cancel.is_set:
            err = StreamError(f"{cancel.reason}; the rounds so far are kept")
            err.reason = cancel.reason  # type: ignore[attr-defined]
            raise err

    # -- the end ---------------------------------------------------------------------------

    def _combined(self, rounds: list[ChatResult]) -> ChatResult:
        """The loop's result: the last reply, with every round, call and the usage added up."""
        last = rounds[-1]
        return dataclasses.replace(
            last,
            rounds=list(rounds),
            tool_calls=[c for r in rounds for c in r.tool_calls],
            usage=_sum_usage(rounds),
            timings=Timings(
                first_token=rounds[0].timings.first_token,
                total=time.perf_counter() - self.started,
            ),
            error=None,
            parsed=None,
        )

    def _failed(self, exc: BaseException) -> ChatResult:
        """``exc`` as the result: what arrived (every round of a loop so far), and the error."""
        prepared = self.prepared
        partial = getattr(exc, "partial", None)
        kept = isinstance(partial, ChatResult) and any(partial is r for r in self.rounds)
        if not self.loop or not self.rounds:
            result = prepared.failed(exc)
            if any(c.image_urls and not c.images for c in result.choices):
                fetch_result_images(result, self.settings)  # a cut reply keeps its images too
            if not result.tool_calls:
                self._calls_of(result)
            return result
        rounds = list(self.rounds)
        if isinstance(partial, ChatResult) and not kept:
            # the round that broke off: what it sent so far is the last round
            partial.request = partial.request or digest_request(self.body)
            if any(c.image_urls and not c.images for c in partial.choices):
                fetch_result_images(partial, self.settings)
            self._calls_of(partial)
            partial.error = exc
            rounds.append(partial)
        result = self._combined(rounds)
        result.error = exc
        return result

    def _interrupted(self, interrupt: KeyboardInterrupt) -> None:
        """Keep and show what arrived; the caller re-raises the interrupt (with ``.partial``).

        The HTTP layer hands over the round's partial reply as ``chatimg_error``."""
        error = getattr(interrupt, "chatimg_error", None)
        if not isinstance(error, ChatImgError):
            running = self.running
            error = StreamError(
                f"interrupted by the user while {running.name} ran; what arrived is kept"
                if running is not None
                else "interrupted by the user; the partial reply is kept",
                partial=None,
            )
        result = self._failed(error)
        error.partial = result
        self._show_end(result)
        interrupt.partial = result  # type: ignore[attr-defined]

    def _parse(self, result: ChatResult) -> StructuredOutputError | None:
        """``result.parsed`` from the final text; the error (also set on ``result``) if it fails."""
        parse_as = self.prepared.structured
        if parse_as is None or (result.tool_calls and not result.text.strip()):
            return None
        try:
            result.parsed = parse_as.parse(result.text, finish_reason=result.finish_reason)
        except StructuredOutputError as exc:
            exc.partial = result
            result.error = exc
            return exc
        return None

    def _show_end(self, result: ChatResult) -> None:
        view = self.view
        if view is None:
            return
        view.closing = True
        if self.live is not None:
            self.live.finish(result)
            self.live = None
        elif not view.closed:
            view.close(result)
