"""Validate what a chat request asks beyond text: function tools, ``tool_choice``,
assistant ``tool_calls`` and ``response_format`` (``json_schema`` included).

The rules and messages follow OpenAI's API, so a client that passes here passes there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ._httperror import bad

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TOOLS = 128


@dataclass(frozen=True)
class ToolCall:
    """One function call an assistant message made (arguments as the JSON text sent)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolSpec:
    """One function tool offered in ``tools``."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class Extras:
    """The validated tool and output-format fields of a request."""

    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: str = "auto"  # auto, none, required, or "function:NAME"
    parallel_tool_calls: bool = True
    response_format: str = "text"
    json_schema: dict[str, Any] | None = None


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise bad(
            f"Invalid '{where}': {value!r}. Expected a string of letters, digits, '_' or '-' "
            "(1 to 64 characters).",
            where,
        )
    return value


def _tool(raw: Any, where: str) -> ToolSpec | None:
    if not isinstance(raw, dict):
        raise bad(f"Invalid type for '{where}': expected an object.", where)
    kind = raw.get("type", "function")
    if kind == "custom":
        return None  # accepted, never called by the demo
    if kind != "function":
        raise bad(
            f"Invalid value for '{where}.type': {kind!r}. Supported values are: 'function' "
            "and 'custom'.",
            f"{where}.type",
        )
    fn = raw.get("function")
    if not isinstance(fn, dict):
        raise bad(f"Missing required parameter: '{where}.function'.", f"{where}.function")
    name = _name(fn.get("name"), f"{where}.function.name")
    params = fn.get("parameters")
    if params is None:
        params = {"type": "object", "properties": {}}
    if not isinstance(params, dict):
        raise bad(
            f"Invalid type for '{where}.function.parameters': expected an object (a JSON Schema).",
            f"{where}.function.parameters",
        )
    desc = fn.get("description")
    return ToolSpec(name=name, description=desc if isinstance(desc, str) else "", parameters=params)


def _tools(raw: Any) -> list[ToolSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad("Invalid type for 'tools': expected an array of tool objects.", "tools")
    if len(raw) > MAX_TOOLS:
        raise bad(f"Invalid 'tools': at most {MAX_TOOLS} tools are allowed.", "tools")
    specs = [s for i, t in enumerate(raw) if (s := _tool(t, f"tools[{i}]")) is not None]
    names = [t.name for t in specs]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise bad(f"Invalid 'tools': the function name '{dup}' is used twice.", "tools")
    return specs


def _tool_choice(raw: Any, tools: list[ToolSpec], offered: bool) -> str:
    if raw is None:
        return "auto"
    if not offered:
        raise bad(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
            "specified.",
            "tool_choice",
        )
    if raw in ("none", "auto", "required"):
        return str(raw)
    if isinstance(raw, dict) and raw.get("type") == "function":
        fn = raw.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str):
            raise bad(
                "Missing required parameter: 'tool_choice.function.name'.",
                "tool_choice.function.name",
            )
        if name not in {t.name for t in tools}:
            raise bad(
                f"Invalid value for 'tool_choice': function '{name}' not found in 'tools'.",
                "tool_choice",
            )
        return "function:" + name
    raise bad(
        "Invalid value for 'tool_choice': use 'none', 'auto', 'required' or "
        '{"type": "function", "function": {"name": ...}}.',
        "tool_choice",
    )


def _response_format(raw: Any) -> tuple[str, dict[str, Any] | None]:
    if raw is None:
        return "text", None
    if not isinstance(raw, dict):
        raise bad("Invalid type for 'response_format': expected an object.", "response_format")
    kind = raw.get("type", "text")
    if kind in ("text", "json_object"):
        return str(kind), None
    if kind != "json_schema":
        raise bad(
            f"Invalid value for 'response_format.type': {kind!r}. Supported values are: "
            "'text', 'json_object' and 'json_schema'.",
            "response_format.type",
        )
    spec = raw.get("json_schema")
    if not isinstance(spec, dict):
        raise bad(
            "Missing required parameter: 'response_format.json_schema'.",
            "response_format.json_schema",
        )
    _name(spec.get("name"), "response_format.json_schema.name")
    schema = spec.get("schema", {})
    if not isinstance(schema, dict):
        raise bad(
            "Invalid type for 'response_format.json_schema.schema': expected an object.",
            "response_format.json_schema.schema",
        )
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise bad(
            "Invalid type for 'response_format.json_schema.strict': expected a boolean.",
            "response_format.json_schema.strict",
        )
    return "json_schema", schema


def parse_extras(body: dict[str, Any]) -> Extras:
    """Validate ``tools``, ``tool_choice``, ``parallel_tool_calls`` and ``response_format``."""
    tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"), tools, body.get("tools") is not None)
    parallel = body.get("parallel_tool_calls", True)
    if not isinstance(parallel, bool):
        raise bad(
            "Invalid type for 'parallel_tool_calls': expected a boolean.", "parallel_tool_calls"
        )
    kind, schema = _response_format(body.get("response_format"))
    return Extras(tools, choice, parallel, kind, schema)


def parse_tool_calls(raw: Any, where: str) -> list[ToolCall]:
    """An assistant message's ``tool_calls`` (absent or null: none)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad(f"Invalid type for '{where}': expected an array.", where)
    calls = []
    for i, c in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(c, dict) or not isinstance(c.get("function"), dict):
            raise bad(f"Missing required parameter: '{at}.function'.", f"{at}.function")
        if not isinstance(c.get("id"), str):
            raise bad(f"Missing required parameter: '{at}.id'.", f"{at}.id")
        fn = c["function"]
        args = fn.get("arguments", "")
        if not isinstance(args, str):
            raise bad(f"Invalid type for '{at}.function.arguments': expected a string.", at)
        calls.append(ToolCall(c["id"], _name(fn.get("name"), f"{at}.function.name"), args))
    return calls
