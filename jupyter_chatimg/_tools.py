"""Python callables as tools: their schemas, running one call, and the loop's policy.

``toolbox(tools)`` takes what the user passed as ``tools=`` / ``--tools``: a
function, or a list mixing functions and tool dicts. Dicts pass through
unchanged; each function becomes a ``{"type": "function", "function":
{"name", "description", "parameters"}}`` dict made from its signature, type
hints and docstring (``_typeschema``: pydantic when installed, else the
standard types). A parameter whose type has no JSON Schema is refused here,
before anything is sent.

``Toolbox.run(call)`` runs one call the model asked for, with its arguments
parsed and validated; what goes back to the model (``call.output``) is the
result as text (a str as it is, anything else as JSON), an error text for an
unknown name, bad arguments or an exception, and for images a note (the
images themselves go in a user message after the tool messages). Only the
functions the user passed ever run.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._errors import ConfigError, one_line
from ._result import ToolCall
from ._typeschema import Invalid, Shape, UnsupportedType, type_name, type_shape

__all__ = [
    "MAX_OUTPUT_CHARS",
    "Tool",
    "Toolbox",
    "forced_choice",
    "images_of",
    "tool_from_function",
    "toolbox",
]

MAX_OUTPUT_CHARS = 100_000
"""A tool's result sent back to the model is cut after this many characters."""
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Params|Returns?|Raises|Yields|Examples?|Notes?)\s*:?\s*$"
)


@dataclass(frozen=True)
class Tool:
    """A Python function offered to the model as a tool."""

    name: str
    function: Callable[..., Any]
    spec: dict[str, Any]
    """The tool dict sent in the request."""
    parameters: dict[str, Shape]
    required: frozenset[str]
    positional: tuple[str, ...] = ()
    """Positional-only parameters (passed by position, in this order)."""

    def bind(self, arguments: str) -> tuple[list[Any], dict[str, Any]]:
        """The call's JSON arguments as validated ``(args, kwargs)`` (raises ``Invalid``)."""
        text = arguments.strip()
        try:
            value = json.loads(text) if text else {}
        except ValueError as exc:
            raise Invalid("", f"the arguments are not valid JSON ({exc})") from None
        if not isinstance(value, Mapping):
            raise Invalid("", f"the arguments must be a JSON object, not {type(value).__name__}")
        unknown = [k for k in value if k not in self.parameters]
        if unknown:
            raise Invalid(str(unknown[0]), f"{self.name} has no parameter {unknown[0]!r}")
        missing = [k for k in self.parameters if k in self.required and k not in value]
        if missing:
            raise Invalid(missing[0], "missing")
        loaded: dict[str, Any] = {}
        for key, raw in value.items():
            try:
                loaded[key] = self.parameters[key].load(raw)
            except Invalid as exc:
                path = key + (
                    "." + exc.field if exc.field and not exc.field.startswith("[") else exc.field
                )
                raise Invalid(path, exc.reason) from None
        args = [loaded.pop(name) for name in self.positional if name in loaded]
        return args, loaded


@dataclass
class Toolbox:
    """The tools of one request: the dicts to send, and the functions that may run."""

    specs: list[dict[str, Any]]
    functions: dict[str, Tool] = field(default_factory=dict)
    declared: frozenset[str] = frozenset()
    """Names of tools given as dicts (declared, never run here)."""

    @property
    def runs(self) -> bool:
        """True when Python functions were passed (the session runs a tool loop)."""
        return bool(self.functions)

    def run(self, call: ToolCall) -> ToolCall:
        """Run ``call`` if it names one of the functions; fill in its outcome.

        Unknown names, bad arguments and exceptions become ``call.error`` and an
        error text in ``call.output``; they do not raise (``KeyboardInterrupt`` does).
        """
        tool = self.functions.get(call.name)
        if tool is None:
            if call.name in self.declared:
                why = f"{call.name} is declared as a tool dict, not a Python function: it cannot run here"
            else:
                names = ", ".join(sorted(self.functions)) or "none"
                why = f"unknown function {call.name!r}; the functions are: {names}"
            return _failed(call, why)
        try:
            args, kwargs = tool.bind(call.arguments)
        except Invalid as exc:
            where = f"argument {exc.field}: " if exc.field else ""
            return _failed(call, f"bad arguments for {call.name}: {where}{exc.reason}")
        started = time.perf_counter()
        try:
            value = tool.function(*args, **kwargs)
        except Exception as exc:
            call.seconds = time.perf_counter() - started
            call.ran = True
            return _failed(call, f"{call.name} raised {type(exc).__name__}: {exc}")
        call.seconds = time.perf_counter() - started
        call.ran = True
        call.result = value
        call.output = output_text(value)
        return call


def _failed(call: ToolCall, why: str) -> ToolCall:
    call.error = one_line(why)
    call.output = "error: " + call.error
    return call


def images_of(value: Any) -> list[Any]:
    """The PIL images a tool returned (one, or a list/tuple of them), else []."""
    from PIL import Image

    if isinstance(value, Image.Image):
        return [value]
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, Image.Image) for v in value)
    ):
        return list(value)
    return []


def output_text(value: Any) -> str:
    """What a tool's result looks like to the model."""
    images = images_of(value)
    if images:
        sizes = ", ".join(f"{im.width}x{im.height}" for im in images)
        what = "an image" if len(images) == 1 else f"{len(images)} images"
        return f"(the function returned {what}, {sizes}; it follows in the next user message)"
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=_jsonable)
        except (TypeError, ValueError):
            text = str(value)
    if len(text) > MAX_OUTPUT_CHARS:
        text = text[:MAX_OUTPUT_CHARS] + f"… ({len(text) - MAX_OUTPUT_CHARS} more characters cut)"
    return text


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return str(value)


def toolbox(tools: Any) -> Toolbox | None:
    """The ``tools`` request field as given (None, a function, or a list of functions and
    tool dicts) -> a ``Toolbox``; None when there are no tools. ``ConfigError`` for
    anything else, or a function whose parameters have no JSON Schema."""
    if tools is None:
        return None
    if callable(tools) and not isinstance(tools, Mapping):
        items: Sequence[Any] = [tools]
    elif isinstance(tools, Mapping):
        items = [tools]
    elif isinstance(tools, (list, tuple)):
        items = tools
    else:
        raise ConfigError(
            f"tools: a {type(tools).__name__} is not a function or a list of tools; "
            "give a function, or a list of functions and tool dicts"
        )
    specs: list[dict[str, Any]] = []
    functions: dict[str, Tool] = {}
    declared: set[str] = set()
    for i, item in enumerate(items):
        if isinstance(item, Mapping):
            specs.append(dict(item))
            fn = item.get("function")
            if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
                declared.add(fn["name"])
            continue
        if not callable(item):
            raise ConfigError(
                f"tools[{i}]: a {type(item).__name__} is not a function or a tool dict; "
                "give functions and tool dicts"
            )
        tool = tool_from_function(item)
        if tool.name in functions or tool.name in declared:
            raise ConfigError(f"tools: two tools are named {tool.name!r}; names must differ")
        functions[tool.name] = tool
        specs.append(tool.spec)
    return Toolbox(specs, functions, frozenset(declared))


def tool_from_function(function: Callable[..., Any]) -> Tool:
    """The tool made from ``function`` (``ConfigError`` when it cannot be one)."""
    name = getattr(function, "__name__", None)
    if not isinstance(name, str) or not _NAME.match(name):
        shown = name if isinstance(name, str) else type(function).__name__
        raise ConfigError(
            f"tools: {shown!r} cannot be a tool name (letters, digits, _ and -, at most 64); "
            "pass a function defined with def"
        )
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        raise ConfigError(
            f"tools: the signature of {name} cannot be read; wrap it in a def"
        ) from None
    try:
        hints = _hints(function)
    except Exception as exc:
        raise ConfigError(f"tools: {name}: its type hints cannot be read ({exc})") from None
    summary, described = _docstring(inspect.getdoc(function) or "")
    properties: dict[str, Any] = {}
    parameters: dict[str, Shape] = {}
    required: list[str] = []
    positional: list[str] = []
    defs: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind is param.VAR_KEYWORD:
            continue  # **kwargs: nothing to offer by name
        shape, schema = _parameter(name, param, hints, described)
        defs.update(schema.pop("$defs", {}))
        if param.default is param.empty:
            required.append(param.name)
        properties[param.name] = schema
        parameters[param.name] = shape
        if param.kind is param.POSITIONAL_ONLY:
            positional.append(param.name)
    schema_of_args: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema_of_args["required"] = required
    schema_of_args["additionalProperties"] = False
    if defs:
        schema_of_args["$defs"] = defs
    spec_fn: dict[str, Any] = {"name": name}
    if summary:
        spec_fn["description"] = summary
    spec_fn["parameters"] = schema_of_args
    return Tool(
        name=name,
        function=function,
        spec={"type": "function", "function": spec_fn},
        parameters=parameters,
        required=frozenset(required),
        positional=tuple(positional),
    )


def _parameter(
    name: str, param: inspect.Parameter, hints: dict[str, Any], described: dict[str, str]
) -> tuple[Shape, dict[str, Any]]:
    """One parameter's shape and its schema in the tool (description and default added)."""
    if param.kind is param.VAR_POSITIONAL:
        raise ConfigError(
            f"tools: {name}(*{param.name}): a tool's arguments are named; "
            "use a list parameter instead of *args"
        )
    annotation = hints.get(param.name, Any)
    try:
        shape = type_shape(annotation)
    except UnsupportedType as exc:
        raise ConfigError(f"tools: {name}({param.name}: {type_name(annotation)}): {exc}") from None
    schema = dict(shape.schema)
    if param.name in described:
        schema["description"] = described[param.name]
    default = param.default
    if default is not param.empty and (
        default is None or isinstance(default, (str, int, float, bool))
    ):
        schema["default"] = default
    return shape, schema


def _hints(function: Callable[..., Any]) -> dict[str, Any]:
    import typing

    target = function
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        target = getattr(function, "__call__", function)  # noqa: B004 - a callable object's hints
    try:
        return typing.get_type_hints(target, include_extras=True)
    except TypeError:
        return {}


def _docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The description (text before the first section) and per-parameter descriptions.

    Reads Google style (``Args:`` then ``name (type): text``), NumPy style
    (``Parameters`` / ``----------``, ``name : type`` then indented text) and
    Sphinx style (``:param name: text``).
    """
    lines = doc.splitlines()
    described: dict[str, str] = {}
    summary: list[str] = []
    section: str | None = None
    current: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        sphinx = re.match(r"^:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$", stripped)
        if sphinx:
            current = sphinx.group(1)
            described[current] = sphinx.group(2).strip()
            section = "sphinx"
            i += 1
            continue
        if stripped.startswith(":"):  # :returns:, :raises: ... after the params
            section, current = "other", None
            i += 1
            continue
        heading = _SECTION.match(line)
        underline = i + 1 < len(lines) and re.fullmatch(r"\s*-{3,}\s*", lines[i + 1])
        if heading or (underline and stripped):
            word = (heading.group(1) if heading else stripped).lower()
            section = "params" if word.startswith(("arg", "param")) else "other"
            current = None
            i += 2 if underline else 1
            continue
        if section is None:
            summary.append(line)
        elif section in ("params", "sphinx") and stripped:
            item = re.match(r"^(\*{0,2}\w+)\s*(?:\(([^)]*)\))?\s*(?::\s*(.*))?$", stripped)
            indent = len(line) - len(line.lstrip())
            if (
                item
                and section == "params"
                and (current is None or indent <= _indent_of(lines, current))
            ):
                current = item.group(1).lstrip("*")
                text = item.group(3) or ""
                # NumPy style: "name : type" (the text comes on the next lines)
                described[current] = (
                    "" if (" : " in stripped and not item.group(2)) else text.strip()
                )
            elif current is not None:
                described[current] = (described[current] + " " + stripped).strip()
        elif not stripped:
            current = None if section == "sphinx" else current
        i += 1
    text = " ".join(" ".join(summary).split())
    return text, {k: " ".join(v.split()) for k, v in described.items() if v.strip()}


def _indent_of(lines: list[str], name: str) -> int:
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith(name) and re.match(rf"^\*{{0,2}}{re.escape(name)}\b", stripped):
            return len(line) - len(stripped)
    return 0


def forced_choice(tool_choice: Any) -> bool:
    """True when ``tool_choice`` forces a call (``required`` or a named function).

    Forcing is kept for the first request only: asked again with the results,
    a forced model could only call tools forever (the Agents SDK resets it the same way).
    """
    return tool_choice == "required" or (
        isinstance(tool_choice, Mapping) and tool_choice.get("type") == "function"
    )
