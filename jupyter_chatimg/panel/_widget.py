"""ChatPanel: the ipywidgets chat panel (the only module family that imports ipywidgets).

Layout, top to bottom: settings (model, stream, temperature, max tokens,
detail, system prompt), the transcript, a one-line status, the image tray, the
prompt box, and Send / Stop / Clear / Export.

Threads: ``send()`` prepares the request in the caller's thread (so bad input
is reported at once) and runs it in a daemon worker thread, which writes into
the transcript by setting ``Output.outputs`` directly. A thread, not a
coroutine, because some front ends (Colab) do not run the kernel's asyncio
loop between cells. ``stop()`` sets the request's ``Cancel``, which closes the
connection at once; the partial reply stays on screen and in ``result``.

The panel keeps its own conversation (not the magic's ``--chat`` one), with
the same rules: each send carries the earlier whole turns (bounded by
``history_turns`` / ``history_images``) and the images the last reply returned.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as widgets
from PIL import Image

from .._config import configured
from .._errors import ChatImgError, ConfigError, StreamError, one_line
from .._html import renderer
from .._request import ImageRef, Request, request_fields
from .._result import ChatResult
from .._session import Cancel, Prepared, Session, settings_for
from ._keys import PROMPT_CLASS, SEND_MARKER, key_output
from ._sink import ReplySink, html_output, image_bundle, image_output, new_entry
from ._tray import Attachment, ImageTray, close_all

__all__ = ["ChatPanel", "Turn"]

_DETAILS = [
    ("detail: default", ""),
    ("detail: auto", "auto"),
    ("detail: low", "low"),
    ("detail: high", "high"),
]
DEFAULT_TEMPERATURE = 1.0
STOP_JOIN_SECONDS = 1.0
"""How long ``stop()`` waits for the worker to hand back the partial reply.

Closing the connection ends a streaming reply within milliseconds; a request
still waiting for the response headers only ends at its read timeout, so the
panel goes on without it after this long."""


@dataclass
class Turn:
    """One exchange: what was sent and what came back."""

    prompt: str
    attachments: list[Attachment] = field(default_factory=list)
    result: ChatResult | None = None
    reply_outputs: list[dict[str, Any]] = field(default_factory=list)
    """The reply's outputs as the transcript showed them last (safe HTML, images)."""

    @property
    def images(self) -> list[Image.Image]:
        """The images the reply returned."""
        return self.result.images if self.result is not None else []


def _user_namespace() -> Mapping[str, Any]:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipywidgets depends on IPython
        return {}
    shell = get_ipython()
    return shell.user_ns if shell is not None else {}


class ChatPanel(widgets.VBox):  # type: ignore[misc]
    """A chat panel: prompt, image tray, settings, Send/Stop, a streaming transcript.

    Keywords are the defaults of every request, as for ``chat``: ``model``,
    ``system``, ``stream``, ``temperature``, ``max_tokens``, ``detail``, the
    settings (``base_url``, ``api_key_env``, ``timeout``, ``max_side`` ...)
    and any other request field (``top_p=``, ``seed=``, ``extra=`` ...).
    There is deliberately no API key field: name the environment variable
    that holds it with ``api_key_env``.

    From Python: ``panel.prompt.value``, ``panel.add_image(img)``,
    ``panel.send()`` (returns at once), ``panel.wait()``, ``panel.stop()``,
    ``panel.busy``, ``panel.result``, ``panel.history``, ``panel.images``,
    ``panel.clear()``, ``panel.export()``.
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        system: str | None = None,
        stream: bool | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        detail: str | None = None,
        **defaults: Any,
    ) -> None:
        if "api_key" in defaults:
            raise ConfigError(
                "ChatPanel takes no API key (widget state can be saved into the notebook); "
                "put the key in an environment variable and pass api_key_env='NAME'"
            )
        # Bad defaults fail here, once: the fields are checked as the request is prepared.
        self._fields = request_fields(**defaults)
        Session.check_fields(self._fields["params"], schema=self._fields["schema"])
        self._overrides = dict(self._fields["overrides"])
        self._temperature_given = temperature is not None
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._cancel: Any = None
        self._generation = 0
        self._detached: int | None = None
        """The generation of a worker Stop stopped waiting for (it still hands over its partial)."""
        self._session = Session()
        """The panel's own conversation (not the notebook's ``--chat`` one)."""
        self.history: list[Turn] = []
        """Every exchange so far, oldest first."""
        self.result: ChatResult | None = None
        """The last reply (partial, with ``.error`` set, after Stop or a failure)."""

        self._make_settings(model, system, stream, temperature, detail, max_tokens)
        self._make_transcript()
        self._make_prompt_and_buttons()
        self._lay_out()
        self.add_class("chatimg-panel")
        self._watch_cells()
        self.refresh_models(wait=False)

    # -- building the widgets ----------------------------------------------------------

    def _make_settings(
        self,
        model: str | None,
        system: str | None,
        stream: bool | None,
        temperature: float | None,
        detail: str | None,
        max_tokens: int | None,
    ) -> None:
        """The model box and the main parameters (one row), and the system prompt."""
        initial_model, note = self._initial_model(model)
        self.model = widgets.Combobox(
            value=initial_model,
            options=[initial_model] if initial_model else [],
            placeholder="model id",
            description="Model",
            ensure_option=False,
            layout=widgets.Layout(width="300px"),
        )
        self.model.add_class("chatimg-model")
        self.stream = widgets.Checkbox(
            value=bool(configured().get("stream", True)) if stream is None else bool(stream),
            description="stream",
            indent=False,
            layout=widgets.Layout(width="80px"),
        )
        self.temperature = widgets.BoundedFloatText(
            value=DEFAULT_TEMPERATURE if temperature is None else float(temperature),
            min=0.0,
            max=2.0,
            step=0.1,
            description="temp.",
            tooltip="temperature (sent when it differs from 1.0 or was given)",
            layout=widgets.Layout(width="150px"),
        )
        self.max_tokens = widgets.BoundedIntText(
            value=max_tokens or 0,
            min=0,
            max=10_000_000,
            description="max tokens",
            tooltip="0 = the model's limit",
            layout=widgets.Layout(width="190px"),
        )
        self.detail = widgets.Dropdown(
            options=_DETAILS, value=detail or "", layout=widgets.Layout(width="150px")
        )
        self.system = widgets.Textarea(
            value=system or "",
            placeholder="system prompt (optional)",
            rows=1,
            layout=widgets.Layout(width="100%"),
        )
        self.status = widgets.Label(value=note, layout=widgets.Layout(width="100%"))
        self.status.add_class("chatimg-status")

    def _make_transcript(self) -> None:
        """The transcript (newest message kept in view) and the image tray."""
        # column-reverse (children newest first) keeps the view pinned to the newest
        # message as it grows, without any JavaScript.
        self._entries: list[widgets.Output] = []
        self.transcript = widgets.VBox(
            layout=widgets.Layout(
                flex_flow="column-reverse",
                width="100%",
                max_height="520px",
                overflow="auto",
                # The front end's theme colour (JupyterLab, Notebook 7); the fallback elsewhere.
                border="1px solid var(--jp-border-color2, #ddd)",
                padding="4px",
            )
        )
        self.transcript.add_class("chatimg-transcript")
        self.tray = ImageTray(_user_namespace, self._report)

    def _make_prompt_and_buttons(self) -> None:
        """The prompt box (Ctrl/Cmd+Enter sends) and Send / Stop / Clear / Export."""
        self.prompt = widgets.Textarea(
            placeholder="Ask about the images, or describe an image to make (Ctrl/Cmd+Enter sends)",
            rows=3,
            layout=widgets.Layout(width="100%"),
        )
        self.prompt.add_class(PROMPT_CLASS)
        self.prompt.observe(self._on_prompt, names="value")
        self.send_button = widgets.Button(
            description="Send", button_style="primary", icon="paper-plane"
        )
        self.send_button.add_class("chatimg-send")
        self.stop_button = widgets.Button(
            description="Stop", button_style="warning", icon="stop", disabled=True
        )
        self.stop_button.add_class("chatimg-stop")
        self.clear_button = widgets.Button(
            description="Clear", icon="trash", tooltip="start the conversation over"
        )
        self.export_button = widgets.Button(
            description="Export",
            icon="download",
            tooltip="show the conversation as cell outputs (kept when saved)",
        )
        self.send_button.on_click(lambda _: self.send())
        self.stop_button.on_click(lambda _: self.stop())
        self.clear_button.on_click(lambda _: self.clear())
        self.export_button.on_click(lambda _: self._export_from_button())
        self._keys = widgets.Output(layout=widgets.Layout(height="0px", overflow="hidden"))
        self._keys.outputs = (key_output(),)
        self._exports = widgets.Output()

    def _lay_out(self) -> None:
        settings_row = widgets.HBox(
            [self.model, self.stream, self.temperature, self.max_tokens, self.detail],
            layout=widgets.Layout(flex_flow="row wrap"),
        )
        buttons = widgets.HBox(
            [self.send_button, self.stop_button, self.clear_button, self.export_button]
        )
        super().__init__(
            [
                settings_row,
                self.system,
                self.transcript,
                self.status,
                self.tray.box,
                self.prompt,
                buttons,
                self._exports,
                self._keys,
            ]
        )

    # -- public API --------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while a reply is on its way."""
        with self._lock:
            return self._worker is not None

    @property
    def entries(self) -> tuple[widgets.Output, ...]:
        """The transcript's messages (one ``Output`` each), oldest first."""
        return tuple(self._entries)

    @property
    def images(self) -> list[Image.Image]:
        """The images the last reply returned."""
        return self.result.images if self.result is not None else []

    @property
    def attachments(self) -> list[Attachment]:
        """The images waiting in the tray for the next send."""
        return list(self.tray.attachments)

    def add_image(self, image: Any, label: str | None = None) -> None:
        """Attach an image (PIL image, array, Figure, encoded bytes; a list adds each)."""
        self.tray.add(image, label=label)

    def remove_image(self, index: int) -> None:
        """Take attachment ``index`` out of the tray."""
        self.tray.remove(index)

    def refresh_images(self) -> None:
        """Look for image-like variables in the notebook again (the picker's list)."""
        self.tray.refresh()

    def send(self) -> None:
        """Send the prompt and the attached images; returns at once (see ``wait``).

        Problems (an empty prompt, an unreadable image, a reply still coming)
        are shown as one line in ``status``; ``result`` then holds the error.
        """
        with self._lock:
            if self._worker is not None:
                self._report("a reply is still coming: press Stop first")
                return
        text = self.prompt.value.replace(SEND_MARKER, "")
        attachments = list(self.tray.attachments)
        if not text.strip() and not attachments:
            empty = ConfigError("empty prompt: type a question, or attach an image")
            self.result = ChatResult(error=empty)
            self._report(str(empty))
            return
        try:
            prepared = self._prepare(text, attachments)
        except ChatImgError as exc:
            self.result = ChatResult(error=exc)
            self._report(str(exc))
            return
        except Exception as exc:  # a widget callback must not leave a traceback
            self.result = ChatResult(error=exc)
            self._report(f"could not prepare the request: {type(exc).__name__}: {exc}")
            return
        turn = Turn(prompt=text, attachments=attachments)
        self._show_user_turn(turn)
        reply = new_entry("chatimg-reply")
        self._append_entry(reply)
        cancel = Cancel()
        with self._lock:
            self._generation += 1
            self._detached = None
            generation = self._generation
            self._cancel = cancel
            worker = threading.Thread(
                target=self._run,
                args=(prepared, turn, ReplySink(reply), cancel, generation),
                name="chatimg-panel",
                daemon=True,
            )
            self._worker = worker
        self.history.append(turn)
        self.prompt.value = ""
        self.tray.clear()
        self._set_busy(True)
        self._report("")
        worker.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the reply under way (if any); True when none is running any more.

        Interrupting the kernel while waiting stops the reply (its partial text is kept).
        """
        with self._lock:
            worker = self._worker
        if worker is None:
            return True
        try:
            worker.join(timeout)
        except KeyboardInterrupt:
            self.stop()
            raise
        return not worker.is_alive()

    def stop(self) -> None:
        """Stop the reply under way; its partial text stays in the transcript and ``result``."""
        with self._lock:
            worker, cancel = self._worker, self._cancel
        if worker is None or cancel is None:
            return
        cancel.set("stopped")
        if worker is not threading.current_thread():
            worker.join(STOP_JOIN_SECONDS)
        line = "stopped; the request is still closing in the background"
        with self._lock:
            detached = self._worker is worker
            if detached:  # still winding down: let the panel go on without it
                self._worker = None
                self._detached = self._generation
                self._generation += 1
                self.result = ChatResult(error=StreamError(line, partial=None))
        if detached:
            self._set_busy(False)
            self._report(line)

    def clear(self) -> None:
        """Start over: stop any reply, empty the transcript, history and conversation."""
        self.stop()
        for entry in self._entries:
            close_all(entry)
        self._entries.clear()
        self.transcript.children = ()
        self.history.clear()
        self._session.reset()
        self.result = None
        self._exports.outputs = ()
        self._report("")

    def export(self) -> None:
        """Show the conversation as ordinary cell outputs (markdown and images).

        Widget state is not kept when a notebook is saved; these outputs are.
        """
        from IPython.display import display as _display

        display: Callable[..., Any] = _display
        for data, metadata in self.export_bundles():
            display(data, raw=True, metadata=metadata)

    def export_bundles(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """``(data, metadata)`` of each output ``export()`` shows, in order."""
        bundles: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for turn in self.history:
            user, plain = _user_html(turn.prompt)
            bundles.append(({"text/html": user, "text/plain": plain}, {}))
            for item in turn.attachments:
                bundles.append(image_bundle(item.thumb))
            if turn.result is None and not turn.reply_outputs:
                continue
            # The reply's own outputs: safe HTML (its text/plain holds no data: URI), images.
            head = "<p><strong>Assistant:</strong></p>\n"
            outputs = [(dict(o["data"]), dict(o["metadata"])) for o in turn.reply_outputs]
            if not outputs or "text/html" not in outputs[0][0]:
                outputs.insert(0, ({"text/html": "", "text/plain": ""}, {}))
            first = outputs[0][0]
            first["text/html"] = head + (first["text/html"] or "<p><em>(no reply)</em></p>")
            first["text/plain"] = "Assistant: " + (first["text/plain"] or "(no reply)")
            bundles.extend(outputs)
        return bundles

    def close(self) -> None:
        """Stop any reply and close the panel and every widget in it."""
        if hasattr(self, "_lock"):
            self.stop()
        for child in tuple(getattr(self, "children", ())):
            close_all(child)
        super().close()

    def __repr__(self) -> str:
        # Deterministic and short: it is the text/plain saved with the widget's output.
        return "ChatPanel(an interactive chat widget: run the notebook to use it)"

    # -- the request ---------------------------------------------------------------

    def _initial_model(self, model: str | None) -> tuple[str, str]:
        if model:
            return model, ""
        try:
            return settings_for(self._overrides).model, ""
        except ChatImgError as exc:
            return "", "⚠ " + str(exc)

    def _request_params(self) -> dict[str, Any]:
        params = dict(self._fields["params"])
        temperature = float(self.temperature.value)
        if self._temperature_given or temperature != DEFAULT_TEMPERATURE:
            params["temperature"] = temperature
        if self.max_tokens.value:
            params["max_tokens"] = int(self.max_tokens.value)
        return params

    def _prepare(self, text: str, attachments: list[Attachment]) -> Prepared:
        overrides = dict(self._overrides)
        overrides["model"] = self.model.value.strip() or None
        overrides["detail"] = self.detail.value or None
        parts: list[Any] = [text]
        parts.extend(ImageRef(item.value, "image") for item in attachments)
        request = Request(
            parts=tuple(parts),
            system=self.system.value if self.system.value.strip() else None,
            stream=bool(self.stream.value),
            chat=True,  # the panel's own conversation, with the same rules as --chat
            params=self._request_params(),
            extra=self._fields["extra"],
            schema=self._fields["schema"],
            overrides={k: v for k, v in overrides.items() if v is not None},
            api=self._fields["api"],
            mask=self._fields["mask"],
        )
        return self._session.prepare(request)

    def _run(
        self,
        prepared: Prepared,
        turn: Turn,
        sink: ReplySink,
        cancel: Cancel,
        generation: int,
    ) -> None:
        error = ""
        result: ChatResult
        try:
            result = self._session.send(prepared, sink, cancel=cancel)
        except ChatImgError as exc:
            result = exc.partial or ChatResult.failed(exc)
            # A reply the user stopped says so itself ("⚠ stopped; ..."): not twice.
            error = "" if getattr(exc, "reason", None) == "stopped" else str(exc)
        except BaseException as exc:  # never a traceback in some other cell
            result = prepared.failed(exc)
            error = one_line(f"unexpected error: {type(exc).__name__}: {exc}")
            if not sink.final:
                sink.error(error)
        turn.result = result
        turn.reply_outputs = list(sink.outputs)
        with self._lock:
            # A worker that Stop gave up waiting for hands over nothing: the panel moved on.
            current = generation == self._generation
            if current:
                self.result = result
                self._worker = None
                self._cancel = None
                if result.error is None:
                    # Nothing is sent that the tray does not show: the returned images go
                    # back only as visible, removable attachments (not carried silently).
                    self._session.conversation.pending_images.clear()
            elif generation == self._detached and self._worker is None:
                # Stop gave up waiting, and nothing was sent since: what arrived is still
                # this panel's last reply (not the placeholder "still closing" result).
                self.result = result
                self._detached = None
        if current:
            if result.error is None and result.images:
                self.tray.offer_returned(list(result.images))
            self._set_busy(False)
            self._report(error)

    # -- widgets -------------------------------------------------------------------

    def _report(self, line: str) -> None:
        self.status.value = ("⚠ " + one_line(line)) if line else ""

    def _set_busy(self, busy: bool) -> None:
        self.send_button.disabled = busy
        self.stop_button.disabled = not busy

    def _append_entry(self, entry: widgets.Output) -> None:
        self._entries.append(entry)
        self.transcript.children = tuple(reversed(self._entries))

    def _show_user_turn(self, turn: Turn) -> None:
        entry = new_entry("chatimg-user")
        user, plain = _user_html(turn.prompt)
        outputs = [html_output(user, plain)]
        outputs.extend(image_output(item.thumb) for item in turn.attachments)
        entry.outputs = tuple(outputs)
        self._append_entry(entry)

    def _on_prompt(self, change: dict[str, Any]) -> None:
        value = change["new"]
        if isinstance(value, str) and value.endswith(SEND_MARKER):
            self.prompt.value = value.replace(SEND_MARKER, "")
            self.send()

    def _export_from_button(self) -> None:
        # A button callback has no cell to write into: show the export inside the panel.
        outputs = []
        for data, metadata in self.export_bundles():
            outputs.append({"output_type": "display_data", "data": data, "metadata": metadata})
        self._exports.outputs = tuple(outputs)
        self._report("")

    def _watch_cells(self) -> None:
        """Refresh the image picker after every cell (weakly: a closed panel stops listening)."""
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover
            return
        shell = get_ipython()
        if shell is None:
            return
        ref = weakref.ref(self)

        def after_cell(*_: Any) -> None:
            panel = ref()
            if panel is None or panel.comm is None:
                shell.events.unregister("post_run_cell", after_cell)
                return
            with contextlib.suppress(Exception):  # never break the user's cells
                panel.tray.refresh()

        shell.events.register("post_run_cell", after_cell)

    def refresh_models(self, wait: bool = True) -> bool:
        """Fill the model list from the endpoint's ``GET /models``; True when it answered.

        Many servers list no models: the box stays free text then.
        ``wait=False`` asks in a background thread and returns False at once.
        """
        overrides = {k: self._overrides.get(k) for k in ("base_url", "api_key_env")}
        ref = weakref.ref(self)

        def fetch() -> bool:
            try:
                models = Session.list_models(overrides)
            except Exception:  # a server without /models, or one not reachable yet
                return False
            panel = ref()
            if panel is None or not models:
                return False
            panel.model.options = sorted(set(models))
            return True

        if wait:
            return fetch()
        threading.Thread(target=fetch, name="chatimg-models", daemon=True).start()
        return False


def _user_html(prompt: str) -> tuple[str, str]:
    body = renderer().render(prompt) if prompt.strip() else "<p><em>(images only)</em></p>\n"
    return "<p><strong>You:</strong></p>\n" + body, prompt or "(images)"
