"""Parsing of ``%%chatimg`` / ``%chatimg`` options (pure: no namespace, no I/O)."""

from __future__ import annotations

import argparse
import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ._errors import ConfigError

__all__ = ["MagicArgs", "parse_cell_line", "parse_line_magic"]


@dataclass
class MagicArgs:
    """The options of one magic call, with JSON options decoded."""

    model: str | None = None
    images: list[str] = field(default_factory=list)
    system: str | None = None
    stream: bool | None = None
    params: dict[str, Any] = field(default_factory=dict)
    tools_expr: str | None = None
    schema_expr: str | None = None
    """An expression giving the schema of the reply (``--schema``)."""
    max_tool_rounds: int | None = None
    extra: dict[str, Any] | None = None
    detail: str | None = None
    max_side: int | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    timeout: float | None = None
    out: str | None = None
    chat: bool = False
    reset: bool = False
    cache: bool | None = None
    show_stats: bool | None = None
    debug: bool = False
    each: str | None = None
    """An expression giving images: the prompt is sent once per image (``--each``)."""
    concurrency: int | None = None
    api: str | None = None
    """``auto``, ``chat`` or ``images`` (``--api``); None: auto."""
    mask: str | None = None
    """An expression giving the mask of an Images API edit (``--mask``)."""
    prompt: str = ""


class _OptionError(Exception):
    """What argparse found wrong, before it is said for the magic it was typed in."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _OptionError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise _OptionError((message or "").strip())


def _parse(words: list[str], magic: str) -> argparse.Namespace:
    """The options, or one line that names the magic as it was typed (``%`` or ``%%``)."""
    try:
        return _PARSER.parse_args(words)
    except _OptionError as exc:
        what = f"{exc}; " if str(exc) else ""
        raise ConfigError(f"{what}see {magic}? for the options") from None


def _build_parser() -> _Parser:
    p = _Parser(prog="%%chatimg", add_help=False, allow_abbrev=False)
    p.add_argument("--model", "-m")
    p.add_argument("--image", "-i", action="append", default=[], metavar="EXPR")
    p.add_argument("--system", "-s")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--no-stream", dest="stream", action="store_false", default=None)
    group.add_argument("--stream", dest="stream", action="store_true", default=None)
    p.add_argument("--temperature", "-t", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--n", "-n", type=int)
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--stop", action="append", default=[])
    p.add_argument("--presence-penalty", type=float)
    p.add_argument("--frequency-penalty", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--user")
    p.add_argument("--json", action="store_true")
    p.add_argument("--logit-bias", metavar="JSON")
    p.add_argument("--tools", metavar="EXPR")
    p.add_argument("--max-tool-rounds", type=int, metavar="N")
    p.add_argument("--schema", metavar="EXPR")
    p.add_argument("--tool-choice")
    p.add_argument("--extra", metavar="JSON")
    p.add_argument("--detail", choices=["auto", "low", "high"])
    p.add_argument("--max-side", type=int)
    p.add_argument("--base-url")
    p.add_argument("--api-key-env")
    p.add_argument("--out", "-o")
    p.add_argument("--chat", action="store_true")
    p.add_argument("--reset", action="store_true")
    p.add_argument("--cache", action="store_true", default=None)
    p.add_argument("--no-cache", dest="cache", action="store_false")
    p.add_argument("--stats", dest="show_stats", action="store_true", default=None)
    p.add_argument("--timeout", type=float)
    p.add_argument("--debug", action="store_true")
    p.add_argument("--each", metavar="EXPR")
    p.add_argument("--concurrency", "-j", type=int)
    # The Images API (DESIGN 2, 4.2): which dialect, and the fields of generations and edits.
    p.add_argument("--api", choices=["auto", "chat", "images"])
    p.add_argument("--size", metavar="WxH")
    p.add_argument("--quality", metavar="Q")
    p.add_argument("--background", choices=["transparent", "opaque", "auto"])
    p.add_argument("--output-format", choices=["png", "jpeg", "webp"])
    p.add_argument("--partial-images", type=int, metavar="N")
    p.add_argument("--mask", metavar="EXPR")
    return p


_PARSER = _build_parser()
# Options that take a value (so the line magic knows where the prompt starts).
_VALUED = {
    s
    for action in _PARSER._actions
    if action.nargs is None and not isinstance(action.const, bool) and action.option_strings
    for s in action.option_strings
} - {
    "--no-stream",
    "--stream",
    "--json",
    "--chat",
    "--reset",
    "--cache",
    "--no-cache",
    "--stats",
    "--debug",
}


def _json_option(name: str, text: str | None, *, want: type) -> Any:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{name}: not valid JSON ({exc.msg} at column {exc.colno}); quote it, e.g. {name} '{{\"key\": 1}}'"
        ) from None
    if not isinstance(value, want):
        raise ConfigError(
            f"{name}: expected a JSON {want.__name__ if want is not dict else 'object'}, got {type(value).__name__}"
        )
    return value


def _check(ns: argparse.Namespace) -> None:
    """Options that cannot work together or as given: one line each."""
    if ns.stop and len(ns.stop) > 4:
        raise ConfigError(f"--stop: at most 4 stop strings, got {len(ns.stop)}")
    if ns.max_side is not None and ns.max_side < 0:
        raise ConfigError(f"--max-side: {ns.max_side} must be >= 0 pixels (0 = send as is)")
    if ns.timeout is not None and ns.timeout <= 0:
        raise ConfigError(f"--timeout: {ns.timeout:g} must be a positive number of seconds")
    if ns.api_key_env and (
        ns.api_key_env.startswith("sk-")
        or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", ns.api_key_env)
    ):
        raise ConfigError(
            "--api-key-env takes the NAME of an environment variable, not the key itself "
            "(a cell's source is saved in the notebook); e.g. --api-key-env MY_KEY"
        )
    if ns.schema is not None and ns.json:
        raise ConfigError(
            "--schema and --json both set the reply's format; keep one of them "
            "(--schema already asks for JSON that fits it)"
        )
    if ns.max_tool_rounds is not None and ns.max_tool_rounds < 0:
        raise ConfigError(f"--max-tool-rounds: {ns.max_tool_rounds} must be a whole number >= 0")
    if ns.each is not None and ns.chat:
        raise ConfigError("--each runs the prompt once per image on its own; drop --chat")
    if ns.concurrency is not None and ns.each is None:
        raise ConfigError("--concurrency: only with --each EXPR (one request per image)")
    if ns.concurrency is not None and ns.concurrency < 1:
        raise ConfigError(f"--concurrency: {ns.concurrency} must be a whole number >= 1")


def _from_namespace(ns: argparse.Namespace, prompt: str) -> MagicArgs:
    _check(ns)
    extra = _json_option("--extra", ns.extra, want=dict)
    logit_bias = _json_option("--logit-bias", ns.logit_bias, want=dict)
    if ns.json and extra and "response_format" in extra:
        raise ConfigError("--json and --extra both set response_format; keep one of them")
    if ns.schema is not None and extra and "response_format" in extra:
        raise ConfigError("--schema and --extra both set response_format; keep one of them")
    params: dict[str, Any] = {
        "temperature": ns.temperature,
        "top_p": ns.top_p,
        "n": ns.n,
        "max_tokens": ns.max_tokens,
        "stop": (ns.stop[0] if len(ns.stop) == 1 else ns.stop) if ns.stop else None,
        "presence_penalty": ns.presence_penalty,
        "frequency_penalty": ns.frequency_penalty,
        "seed": ns.seed,
        "user": ns.user,
        "logit_bias": logit_bias,
        "response_format": {"type": "json_object"} if ns.json else None,
        "tool_choice": _tool_choice(ns.tool_choice),
        "size": ns.size,
        "quality": ns.quality,
        "background": ns.background,
        "output_format": ns.output_format,
        "partial_images": ns.partial_images,
    }
    return MagicArgs(
        model=ns.model,
        images=list(ns.image),
        system=ns.system,
        stream=ns.stream,
        params={k: v for k, v in params.items() if v is not None},
        tools_expr=ns.tools,
        schema_expr=ns.schema,
        max_tool_rounds=ns.max_tool_rounds,
        extra=extra,
        detail=ns.detail,
        max_side=ns.max_side,
        base_url=ns.base_url,
        api_key_env=ns.api_key_env,
        timeout=ns.timeout,
        out=ns.out,
        chat=ns.chat,
        reset=ns.reset,
        cache=ns.cache,
        show_stats=ns.show_stats,
        debug=ns.debug,
        each=ns.each,
        concurrency=ns.concurrency,
        api=ns.api,
        mask=ns.mask,
        prompt=prompt,
    )


def _tool_choice(value: str | None) -> Any:
    if value is None:
        return None
    if value in ("none", "auto", "required"):
        return value
    if value.lstrip().startswith("{"):
        return _json_option("--tool-choice", value, want=dict)
    return {"type": "function", "function": {"name": value}}


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise ConfigError(f"cannot read the options ({exc}); check the quotes") from None


_EXPRESSION_OPTIONS = frozenset({"--image", "-i", "--tools", "--schema", "--each"})
"""Options whose value is a Python expression: kept as written, quotes and all."""


def _expression(token: str) -> str:
    """An expression option's value as the user meant it.

    A token that is one shell-quoted string (``"'/x.png'"``, ``'img'``) is
    unquoted once; anything else (``Image.open('/x.png')``, ``imgs[0]``) is kept
    exactly as written, so the quotes inside a Python expression survive.
    """
    pieces = _split(token)
    if len(pieces) == 1 and len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        return pieces[0]
    return token


def _option_words(line: str) -> list[str]:
    """The option line as words: shell rules, except for the values of expression options."""
    words: list[str] = []
    expression_next = False
    for _, _, token in _tokens(line):
        if expression_next:
            words.append(_expression(token))
            expression_next = False
            continue
        name, eq, value = token.partition("=")
        if eq and name in _EXPRESSION_OPTIONS:
            words.append(f"{name}={_expression(value)}")
            continue
        words.extend(_split(token) or [""])
        expression_next = token in _EXPRESSION_OPTIONS
    return words


def parse_cell_line(line: str, cell: str) -> MagicArgs:
    """Options from the ``%%chatimg`` line; the cell is the prompt."""
    return _from_namespace(_parse(_option_words(line), "%%chatimg"), cell)


def parse_line_magic(line: str) -> MagicArgs:
    """``%chatimg [options] prompt``: options first, the rest of the line is the prompt."""
    tokens = list(_tokens(line))
    i = 0
    while i < len(tokens):
        text = tokens[i][2]
        if text == "--":
            i += 1
            break
        if not text.startswith("-") or text == "-":
            break
        i += 1
        if text.split("=", 1)[0] in _VALUED and "=" not in text:
            i += 1
    end = tokens[i][0] if i < len(tokens) else len(line)
    options = " ".join(tok[2] for tok in tokens[:i] if tok[2] != "--" and tok[0] < end)
    prompt = line[end:] if i < len(tokens) else ""
    ns = _parse(_option_words(options), "%chatimg")
    return _from_namespace(ns, prompt.strip())


_TOKEN = re.compile(r"""("(?:\\.|[^"\\])*"|'[^']*'|\S)+""")


def _tokens(line: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group(0)) for m in _TOKEN.finditer(line)]
