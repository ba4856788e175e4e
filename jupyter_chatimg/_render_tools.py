"""Tool calls in a reply's outputs, and the rounds of a tool loop in one row of outputs.

``ToolView`` sits beside a reply's ``LiveReply`` (``_render``): the session
feeds it the deltas (``on_delta``) and hands ``view.calls_html`` to the
LiveReply (``live.calls``), which shows it in an output of its own after the
reply's text each time it composes an update. While the calls stream, each
one's function name and its arguments (pretty JSON once they parse, as they
came until then) are shown as escaped HTML (a code block); in a terminal each
call is printed once it is whole.

In a tool loop (``loop=True``) every round gets its own LiveReply writing
through ``round_sink()`` into the same row of outputs, after the outputs of
the rounds before it: earlier rounds, the calls' result lines (``tool_ran``:
a summary and the time, or the one-line error sent back to the model) and
the images they returned stay above the round that is streaming, and only
the last round's final update is final. The notes (demo, cache) are shown
under the round that is streaming (the session takes them off a round's
final update when another round follows).
"""

from __future__ import annotations

import json
import threading
from typing import Any

from ._errors import one_line
from ._html import escape
from ._render import Sink, image_output, line_html
from ._result import ChatResult, ToolCall
from ._tools import images_of

__all__ = ["MAX_ARGUMENT_CHARS", "ToolView", "call_html", "result_line"]

MAX_ARGUMENT_CHARS = 4000
"""Characters of a call's arguments shown (the rest stays in ``result.tool_calls``)."""


def _pretty(arguments: str) -> str:
    text = arguments.strip()
    try:
        shown = json.dumps(json.loads(text), indent=2, ensure_ascii=False) if text else "{}"
    except ValueError:
        shown = arguments  # still streaming, or not JSON: as it came
    if len(shown) > MAX_ARGUMENT_CHARS:
        shown = (
            shown[:MAX_ARGUMENT_CHARS] + f"\n… ({len(shown) - MAX_ARGUMENT_CHARS} more characters)"
        )
    return shown


def call_html(call: dict[str, Any], *, choice: int = 0) -> str:
    """One call as (escaped) HTML: its function name, then its arguments in a code block."""
    function = call.get("function") or {}
    name = str(function.get("name") or "") or "(no name yet)"
    arguments = _pretty(str(function.get("arguments") or ""))
    where = f"choice {choice + 1} · " if choice else ""
    return (
        f"<p><strong>🔧 {escape(where + name)}</strong></p>\n"
        f'<pre><code class="language-json">{escape(arguments)}\n</code></pre>\n'
    )


def _terminal_call(call: dict[str, Any], choice: int = 0) -> str:
    function = call.get("function") or {}
    where = f"choice {choice + 1}: " if choice else ""
    args = _pretty(str(function.get("arguments") or ""))
    return f"[tool call] {where}{function.get('name') or '?'} {args}\n"


def _summary(call: ToolCall) -> str:
    images = images_of(call.result)
    if images:
        return ", ".join(f"image {im.width}×{im.height}" for im in images)
    text = call.output or ""
    return repr(text) if isinstance(call.result, str) else text


def result_line(call: ToolCall) -> str:
    """One line for a call the kernel handled: its result summary and time, or its error."""
    took = f" · {call.seconds:.2f} s" if call.seconds is not None else ""
    if call.error is not None:
        return one_line(f"⚠ {call.name or '?'}: {call.error} (sent back to the model){took}", 240)
    return one_line(f"↳ {call.name} → {_summary(call)}{took}", 240)


class ToolView:
    """The tool calls of a reply, and the rounds of a tool loop, in one row of outputs."""

    def __init__(self, sink: Sink, *, loop: bool = False, notes: list[str] | None = None) -> None:
        self.sink = sink
        self.loop = loop
        self.notes = list(notes or []) if loop else []
        """In a loop: the notes each round's LiveReply shows under it (else the LiveReply's own)."""
        self.closing = not loop
        """True once the next final update of a round is the row's last."""
        self._lock = threading.Lock()
        self._calls: dict[int, list[dict[str, Any]]] = {}
        self._printed = 0
        self._base = 0  # the row's outputs before the round that is streaming
        self._used = 0  # outputs the streaming round created
        self.closed = False

    # -- a round ------------------------------------------------------------------

    def round_sink(self) -> Sink:
        """The sink for a round's LiveReply (the real one when there is no loop)."""
        return _RoundSink(self) if self.loop else self.sink

    def on_delta(self, delta: Any) -> None:
        """Take a delta's tool calls (all of its choice's calls so far)."""
        calls = getattr(delta, "tool_calls", None)
        if calls is None:
            return
        with self._lock:
            self._calls[delta.index] = calls
        if self.sink.wants_deltas:
            self._print_calls(whole=False)

    def round_done(self, result: ChatResult) -> None:
        """The round's reply is in: its calls as received (before its final update)."""
        with self._lock:
            for choice in result.choices:
                if choice.tool_calls:
                    self._calls[choice.index] = list(choice.tool_calls)
        if self.sink.wants_deltas:
            self._print_calls(whole=True)

    def calls_html(self, final: bool) -> tuple[str, str]:
        """The round's calls as ``(html, plain)`` (empty strings while there are none)."""
        with self._lock:
            calls = [(index, c) for index in sorted(self._calls) for c in self._calls[index]]
        html = "".join(call_html(call, choice=index) for index, call in calls)
        plain = " ".join(
            f"[tool call {(c.get('function') or {}).get('name') or '?'}]" for _, c in calls
        )
        return html, plain

    # -- between rounds ---------------------------------------------------------------

    def start_tools(self) -> None:
        """The round's outputs are final: keep them above what comes next."""
        with self._lock:
            self._base += self._used
            self._used = 0
            self._calls = {}
            self._printed = 0

    def _append(self, data: dict[str, Any], metadata: dict[str, Any], *, final: bool) -> None:
        """One more output of the row, after everything (between rounds)."""
        with self._lock:
            slot = self._base
            self._base += 1
        self.sink.show(slot, data, metadata, final=final)

    def tool_ran(self, call: ToolCall, images: list[Any]) -> None:
        """Show one call's outcome (a line, and the images it returned) at once."""
        line = result_line(call)
        if self.sink.wants_deltas:
            self.sink.delta(line + "\n")
            return
        self._append({"text/html": line_html(line), "text/plain": line}, {}, final=False)
        for image in images:
            data, metadata = image_output(image)
            self._append(data, metadata, final=False)

    def close(self, result: ChatResult) -> None:
        """The last output when the loop ended between rounds (Stop, an interrupt)."""
        if self.closed:
            return
        self.closed = True
        lines = list(self.notes)
        if result.error is not None:
            lines.append("⚠ " + str(result.error))
        if self.sink.wants_deltas:  # the terminal printed the notes first
            if result.error is not None:
                self.sink.delta("⚠ " + one_line(str(result.error), 400) + "\n")
            return
        data = {
            "text/html": "".join(line_html(x) for x in lines),
            "text/plain": "\n".join(one_line(x, 400) for x in lines) or "(reply)",
        }
        self._append(data, {"jupyter_chatimg": result.provenance()}, final=True)

    # -- the terminal ---------------------------------------------------------------------

    def _print_calls(self, *, whole: bool) -> None:
        """Print each call of choice 0 once it is whole (the next one began, or the reply ended)."""
        with self._lock:
            calls = self._calls.get(0, [])
            ready = len(calls) if whole else max(0, len(calls) - 1)
            todo = calls[self._printed : ready]
            self._printed = max(self._printed, ready)
        for call in todo:
            self.sink.delta("\n" + _terminal_call(call))


class _RoundSink:
    """A round's LiveReply writes here: its slots follow the row's outputs so far, and
    the round's final update is the row's last only when the view is closing."""

    def __init__(self, view: ToolView) -> None:
        self.view = view
        self.wants_deltas = view.sink.wants_deltas

    def show(
        self, slot: int, data: dict[str, Any], metadata: dict[str, Any], *, final: bool
    ) -> None:
        view = self.view
        last = final and view.closing
        if last:
            view.closed = True
        with view._lock:
            view._used = max(view._used, slot + 1)
            base = view._base
        view.sink.show(base + slot, data, metadata, final=last)

    @property
    def at_line_start(self) -> bool | None:
        return getattr(self.view.sink, "at_line_start", None)

    def delta(self, text: str) -> None:
        self.view.sink.delta(text)
