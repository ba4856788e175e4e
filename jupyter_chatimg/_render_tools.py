"""Tool calls in a reply's output, and the rounds of a tool loop in one growing output.

``ToolView`` sits beside a reply's ``LiveReply`` (``_render``): the session
feeds it the deltas (``on_delta``) and hands ``view.decorate`` to the
LiveReply, which calls it each time it composes an update. While the calls
stream, each one's function name and its arguments (pretty JSON once they
parse, as they came until then) follow the reply's text; in a terminal each
call is printed once it is whole.

In a tool loop (``loop=True``) every round gets its own LiveReply writing
through ``round_sink()`` into the same output: earlier rounds, the calls'
result lines (``tool_ran``: a summary and the time, or the one-line error
sent back to the model) and the images they returned stay above the round
that is streaming, and only the last round's final update is final.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from ._errors import one_line
from ._render import PLACEHOLDER, Sink, escape_inline
from ._result import ChatResult, ToolCall
from ._tools import images_of

__all__ = ["MAX_ARGUMENT_CHARS", "ToolView", "call_markdown", "result_line"]

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


def _fence(text: str) -> str:
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def call_markdown(call: dict[str, Any], *, choice: int = 0) -> str:
    """One call as markdown: its function name, then its arguments in a code block."""
    function = call.get("function") or {}
    name = str(function.get("name") or "") or "(no name yet)"
    arguments = _pretty(str(function.get("arguments") or ""))
    fence = _fence(arguments)
    where = f"choice {choice + 1} · " if choice else ""
    return f"**🔧 {where}{escape_inline(name)}**\n\n{fence}json\n{arguments}\n{fence}"


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
    """The tool calls of a reply, and the rounds of a tool loop, in one output (module doc)."""

    def __init__(self, sink: Sink, *, loop: bool = False, notes: list[str] | None = None) -> None:
        self.sink = sink
        self.loop = loop
        self.notes = list(notes or []) if loop else []
        """In a loop the view shows the notes (after everything); else the LiveReply does."""
        self.closing = not loop
        """True once the next final update of a round is the output's last."""
        self._lock = threading.Lock()
        self._calls: dict[int, list[dict[str, Any]]] = {}
        self._done: list[str] = []
        self._body = ""
        self._printed = 0
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

    def decorate(self, markdown: str, final: bool) -> tuple[str, str]:
        """A round's markdown with its calls after it (and, in a loop, earlier rounds above)."""
        with self._lock:
            blocks = [
                call_markdown(call, choice=index)
                for index in sorted(self._calls)
                for call in self._calls[index]
            ]
            body = "\n\n".join(b for b in (markdown, *blocks) if b)
            plain = " ".join(
                f"[tool call {(c.get('function') or {}).get('name') or '?'}]"
                for index in sorted(self._calls)
                for c in self._calls[index]
            )
            if final:
                self._body = body
            if not self.loop:
                return body, plain
            shown = body if (body or final) else PLACEHOLDER
            return self._compose(shown), plain

    def _compose(self, current: str) -> str:
        """Under the lock: earlier rounds and results, ``current``, then the notes."""
        notes = ["*" + escape_inline(line) + "*" for line in self.notes]
        return "\n\n".join(b for b in (*self._done, current, *notes) if b)

    # -- between rounds ---------------------------------------------------------------

    def start_tools(self) -> None:
        """The round's output is final: keep it above what comes next."""
        with self._lock:
            if self._body:
                self._done.append(self._body)
            self._body = ""
            self._calls = {}
            self._printed = 0

    def tool_ran(self, call: ToolCall, images: list[Any]) -> None:
        """Show one call's outcome (a line, and the images it returned) at once."""
        line = result_line(call)
        with self._lock:
            self._done.append("*" + escape_inline(line) + "*")
            markdown = self._compose("")
        if self.sink.wants_deltas:
            self.sink.delta(line + "\n")
        else:
            self.sink.update(markdown, line, final=False, metadata=None)
        for image in images:
            self.sink.image(image, metadata=None)

    def close(self, result: ChatResult) -> None:
        """The last update when the loop ended between rounds (Stop, an interrupt)."""
        if self.closed:
            return
        self.closed = True
        tail = "⚠ " + str(result.error) if result.error is not None else ""
        with self._lock:
            markdown = self._compose("*" + escape_inline(tail) + "*" if tail else "")
        self.sink.update(markdown, tail or "(reply)", final=True, metadata=result.provenance())

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
    """A round's LiveReply writes here: the round's final update is the output's last only
    when the view is closing; images and terminal text pass through."""

    def __init__(self, view: ToolView) -> None:
        self.view = view
        self.wants_deltas = view.sink.wants_deltas

    def update(
        self, markdown: str, plain: str, *, final: bool, metadata: dict[str, Any] | None
    ) -> None:
        last = final and self.view.closing
        if last:
            self.view.closed = True
        self.view.sink.update(markdown, plain, final=last, metadata=metadata)

    def image(self, image: Any, *, metadata: dict[str, Any] | None) -> None:
        self.view.sink.image(image, metadata=metadata)

    def delta(self, text: str) -> None:
        self.view.sink.delta(text)
