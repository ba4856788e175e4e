"""When and how the demo models call tools, and how they answer from tool results.

A request with function ``tools`` gets ``tool_calls`` when its last user message names
one of them (``get_weather``, ``get weather``, ``getWeather``), with arguments read
from the prompt (``_promptfacts``) and always valid against the tool's schema.
``tool_choice`` ``none`` never calls, a named function is always called, ``required``
calls the named tools or else the first one. Once the conversation holds the
``tool`` messages answering the last assistant's calls (and, optionally, user
messages carrying images the tools returned), ``auto`` answers in text from them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ._chatopts import ToolCall, ToolSpec
from ._describe import analyze, describe
from ._promptfacts import name_pattern, prompt_facts
from ._request import ChatRequest, Message
from ._structured import fill

MAX_QUOTE = 800


@dataclass
class ToolResults:
    """What came back for the last assistant's tool calls."""

    calls: list[ToolCall]
    texts: dict[str, str]  # tool_call_id -> result text
    images: list[Image.Image] = field(default_factory=list)

    def data(self) -> dict[str, Any]:
        """The results as JSON data keyed by function name (parsed when they are JSON)."""
        out: dict[str, Any] = {}
        for call in self.calls:
            text = self.texts.get(call.id, "")
            out[call.name] = _parse(text)
        out["result"] = "\n".join(self.texts.values())
        return out


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def tool_results(req: ChatRequest) -> ToolResults | None:
    """The results answering the last assistant's tool calls, when nothing else followed."""
    last = next(
        (i for i in range(len(req.messages) - 1, -1, -1) if req.messages[i].role == "assistant"),
        None,
    )
    if last is None or not req.messages[last].tool_calls:
        return None
    after: list[Message] = req.messages[last + 1 :]
    if not all(m.role == "tool" or (m.role == "user" and m.images) for m in after):
        return None
    texts = {m.tool_call_id or "": m.text for m in after if m.role == "tool"}
    images = [r.image for m in after if m.role == "user" for r in m.images if r.image is not None]
    return ToolResults(req.messages[last].tool_calls, texts, images)


def _named(prompt: str, tools: list[ToolSpec]) -> list[ToolSpec]:
    hits = []
    for t in tools:
        m = name_pattern(t.name).search(prompt)
        if m:
            hits.append((m.start(), t))
    return [t for _, t in sorted(hits, key=lambda h: h[0])]


def chosen_tools(req: ChatRequest) -> list[ToolSpec]:
    """The tools this request's reply calls (none: a text reply)."""
    if not req.tools or req.tool_choice == "none":
        return []
    by_name = {t.name: t for t in req.tools}
    if req.tool_choice.startswith("function:"):
        return [by_name[req.tool_choice.split(":", 1)[1]]]
    answering = tool_results(req) is not None
    named = [] if answering else _named(req.prompt, req.tools)
    if req.tool_choice == "required" and not named:
        named = _named(req.prompt, req.tools) or req.tools[:1]
    return named if req.parallel_tool_calls else named[:1]


def plan_calls(req: ChatRequest) -> list[ToolCall]:
    """The ``tool_calls`` of the reply: ids derived from the request, arguments valid."""
    calls = []
    context = json.dumps([len(req.messages), req.prompt], ensure_ascii=False)
    for i, tool in enumerate(chosen_tools(req)):
        args = fill(tool.parameters, prompt_facts(req.prompt, tool.name, tool.parameters))
        arguments = json.dumps(args, ensure_ascii=False)
        digest = hashlib.sha256(f"{context}\0{i}\0{tool.name}\0{arguments}".encode()).hexdigest()
        calls.append(ToolCall(id="call_" + digest[:24], name=tool.name, arguments=arguments))
    return calls


def _summary(value: Any) -> list[str]:
    if isinstance(value, dict):
        if not value:
            return ["an empty object"]
        lines = [f"- {k}: {json.dumps(v, ensure_ascii=False)}" for k, v in list(value.items())[:12]]
        return lines + ([f"- ... and {len(value) - 12} more fields"] if len(value) > 12 else [])
    if isinstance(value, list):
        shown = ", ".join(json.dumps(v, ensure_ascii=False) for v in value[:10])
        more = f" ... ({len(value)} in all)" if len(value) > 10 else ""
        return [f"a list of {len(value)}: {shown}{more}"]
    if isinstance(value, str):
        text = value.strip() or "(an empty result)"
        if len(text) > MAX_QUOTE:
            text = text[:MAX_QUOTE] + " …"
        return ["> " + line if line else ">" for line in text.splitlines()]
    return [json.dumps(value)]


def results_text(results: ToolResults) -> str:
    """A text answer quoting each tool's result (the demo does not reason about them)."""
    parts = [
        "Here is what the tools returned (offline demo model: I quote the results, "
        "I do not reason about them)."
    ]
    for call in results.calls:
        text = results.texts.get(call.id, "")
        parts.append(f"**{call.name}** returned:\n" + "\n".join(_summary(_parse(text))))
    several = len(results.images) > 1
    for i, img in enumerate(results.images, 1):
        title = f"Returned image {i}" if several else "The returned image"
        parts.append(describe(analyze(img, img.format), title))
    return "\n\n".join(parts)
