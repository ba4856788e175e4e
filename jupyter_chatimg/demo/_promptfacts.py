"""Read tool-call arguments out of a prompt, guided by the tool's parameter schema.

``prompt_facts(prompt, tool_name, parameters)`` assigns to each parameter, in the
order the schema lists them, something from the prompt that fits its type:

- a value written next to the parameter's name (``width 300``, ``city: "Oslo"``,
  ``unit=celsius``) wins;
- ``enum`` parameters take the option the prompt mentions;
- integer/number parameters take the prompt's numbers in order;
- string parameters take quoted strings, colour words (for colour-ish names) or the
  prompt's remaining words (capitalised names such as ``New York`` first);
- booleans are true when the prompt names them (and does not negate them);
- arrays take all the numbers / quoted strings / colours / words that fit.

The result is a ``Facts`` for ``_structured.fill``, which keeps only what the schema
accepts and fills the rest with neutral values, so the arguments always validate.
"""

from __future__ import annotations

import re
from typing import Any

from ._colors import PALETTE, SYNONYMS
from ._jsonschema import resolve
from ._structured import NO_FACTS, Facts

_QUOTED = re.compile(r'"([^"]*)"|“([^”]*)”|‘([^’]*)’|(?<![\w])\'([^\']*)\'(?![\w])')
# A number, not inside a word ("gpt4"), but "300x200" gives 300 and 200.
_NUMBER = re.compile(r"(?<![A-WYZa-wyz_\d.])(?:-(?=\d))?\d+(?:\.\d+)?")
_COLOURS = {*PALETTE, *SYNONYMS}
_STOP_TEXT = """a an the and or but of in on at to for from by with without into onto as is are
was be been it its this that these those me my our your you i we he she they them please call
use using run invoke execute apply tool tools function functions could would can will should do
does did get give show tell what whats which who how when where why let lets make just also then
now some any all there here than so if about via set value values parameter parameters argument
arguments named called"""
STOPWORDS = frozenset(_STOP_TEXT.split())
_NEGATIONS = ("no", "not", "without", "don't", "dont", "never", "disable", "disabled")


def _words_of(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return re.findall(r"[a-z0-9]+", spaced.lower())


def name_pattern(name: str) -> re.Pattern[str]:
    """Matches ``get_weather``, ``get weather``, ``get-weather`` or ``getWeather`` as words."""
    words = _words_of(name)
    body = r"[\s_-]*".join(re.escape(w) for w in words) if words else re.escape(name)
    return re.compile(rf"(?<![\w]){body}(?![\w])", re.I)


def _number(text: str) -> int | float:
    v = float(text)
    return int(v) if v.is_integer() and "." not in text else v


class _Pools:
    """What the prompt offers, each item used once."""

    def __init__(self, prompt: str, tool_name: str, names: set[str]) -> None:
        text = name_pattern(tool_name).sub(" ", prompt)
        self.text = text
        self.quoted = [next(g for g in m.groups() if g is not None) for m in _QUOTED.finditer(text)]
        bare = _QUOTED.sub(" ", text)
        self.numbers: list[int | float] = [_number(m.group(0)) for m in _NUMBER.finditer(bare)]
        skip = set(_words_of(tool_name)) | STOPWORDS | names
        self.used_options: set[str] = set()
        tokens = re.findall(r"[A-Za-z][\w'-]*", _NUMBER.sub(" ", bare))
        self.colours = [t.lower() for t in tokens if t.lower() in _COLOURS]
        self.phrases = _phrases(bare, skip)

    def take(self, pool: list[Any]) -> list[Any]:
        return [pool.pop(0)] if pool else []


def _phrases(text: str, skip: set[str]) -> list[str]:
    """Content words in order; capitalised runs (``New York``) first, as one phrase."""
    names: list[str] = []
    others: list[str] = []
    for sentence in re.split(r"[.!?;\n]+", text):
        tokens = re.findall(r"[A-Za-z][\w'-]*", sentence)
        run: list[str] = []
        for i, t in enumerate([*tokens, ""]):
            capital = bool(t) and t[0].isupper() and t.lower() not in skip and i > 0
            if capital:
                run.append(t)
                continue
            if run:
                names.append(" ".join(run))
                run = []
            if t and t.lower() not in skip:
                others.append(t)
    return [*names, *[o for o in others if o not in " ".join(names).split()]]


def _named_value(text: str, key: str) -> str | None:
    """The value written right after the parameter's name in ``text``."""
    words = _words_of(key)
    if not words:
        return None
    name = r"[\s_-]*".join(re.escape(w) for w in words)
    m = re.search(
        rf"(?<![\w]){name}(?![\w])\s*(?:=|:|\bis\b|\bof\b|\bto\b|\bas\b)?\s*"
        r"(\"[^\"]*\"|'[^']*'|-?\d+(?:\.\d+)?|[A-Za-z][\w-]*)",
        text,
        re.I,
    )
    if not m:
        return None
    value = m.group(1)
    if value.lower() in STOPWORDS and not value.startswith(("'", '"')):
        return None
    return value.strip("\"'")


class PromptFacts:
    """Arguments read from a prompt (see the module docstring), by parameter name."""

    def __init__(self, assigned: dict[str, list[Any]], children: dict[str, Facts]) -> None:
        self.assigned = assigned
        self.children = children

    def values(self, name: str) -> list[Any]:
        return list(self.assigned.get(name, []))

    def child(self, name: str) -> Facts:
        return self.children.get(name, NO_FACTS)

    def items(self, name: str) -> list[Facts] | None:
        return None


def prompt_facts(prompt: str, tool_name: str, parameters: dict[str, Any]) -> PromptFacts:
    """The arguments ``prompt`` gives for a tool called ``tool_name`` (see module doc)."""
    names = {w for key in _all_keys(parameters) for w in _words_of(key)}
    return _assign(parameters, _Pools(prompt, tool_name, names), parameters)


def _all_keys(schema: Any) -> list[str]:
    if isinstance(schema, dict):
        keys = list(schema.get("properties", {}) or {})
        return keys + [k for v in schema.values() for k in _all_keys(v)]
    if isinstance(schema, list):
        return [k for v in schema for k in _all_keys(v)]
    return []


def _assign(schema: dict[str, Any], pools: _Pools, root: Any) -> PromptFacts:
    s = resolve(schema, root)
    props = s.get("properties", {}) if isinstance(s, dict) else {}
    assigned: dict[str, list[Any]] = {}
    children: dict[str, Facts] = {}
    subs = {k: resolve(v, root) for k, v in props.items()}
    for key, sub in subs.items():  # pass 1: values written next to their names
        named = _named_value(pools.text, key)
        if named is not None and isinstance(sub, dict) and _kind(sub) not in ("object", "array"):
            assigned[key] = _consume_named(named, pools)
    for key, sub in subs.items():  # pass 2: the rest, in order
        if key in assigned or not isinstance(sub, dict):
            continue
        kind = _kind(sub)
        if kind == "object":
            children[key] = _assign(sub, pools, root)
            assigned[key] = [{}]
        else:
            assigned[key] = _by_type(key, sub, kind, pools)
    return PromptFacts(assigned, children)


def _kind(s: dict[str, Any]) -> str:
    kinds = s.get("type")
    if isinstance(kinds, list):
        kinds = next((k for k in kinds if k != "null"), "null")
    if kinds:
        return str(kinds)
    if "properties" in s:
        return "object"
    if "items" in s:
        return "array"
    if "enum" in s:
        return "enum"
    for key in ("anyOf", "oneOf"):
        for option in s.get(key, []):
            if isinstance(option, dict) and _kind(option) not in ("null", "any"):
                return _kind(option)
    return "any"


def _consume_named(value: str, pools: _Pools) -> list[Any]:
    if re.fullmatch(r"-?\d+(?:\.\d+)?", value):
        number = _number(value)
        if number in pools.numbers:
            pools.numbers.remove(number)
        return [number, value]
    for pool in (pools.quoted, pools.phrases):
        if value in pool:
            pool.remove(value)
    if value.lower() in pools.colours:
        pools.colours.remove(value.lower())
    return [value]


def _mentions(text: str, options: list[Any], used: set[str]) -> list[Any]:
    """The string ``options`` the text names, in the order it names them (unused first)."""
    found = []
    for o in options:
        if isinstance(o, str) and o and (m := name_pattern(o).search(text)):
            found.append((o in used, m.start(), o))
    found.sort(key=lambda t: (t[0], t[1]))
    return [o for _, _, o in found]


def _by_type(key: str, s: dict[str, Any], kind: str, pools: _Pools) -> list[Any]:
    if "enum" in s:
        found = _mentions(pools.text, list(s["enum"]), pools.used_options)
        pools.used_options.update(str(o) for o in found[:1])
        return found
    colourish = bool(re.search(r"colou?r|hue|tint|shade|fill|background", key, re.I))
    if kind in ("integer", "number"):
        return pools.take(pools.numbers)
    if kind == "boolean":
        m = name_pattern(key).search(pools.text)
        if not m:
            return [False]
        before = pools.text[: m.start()].lower().split()[-2:]
        return [not any(w in _NEGATIONS for w in before)]
    if kind == "array":
        return _array_values(s, colourish, pools)
    if kind in ("string", "any", "enum"):
        if colourish and pools.colours:
            return pools.take(pools.colours)
        return pools.take(pools.quoted) or pools.take(pools.phrases) or pools.take(pools.colours)
    return []


def _drain(pool: list[Any]) -> list[Any]:
    found = list(pool)
    pool.clear()
    return found


def _array_values(s: dict[str, Any], colourish: bool, pools: _Pools) -> list[Any]:
    raw = s.get("items")
    items: dict[str, Any] = raw if isinstance(raw, dict) else {}
    kind = _kind(items) if items else "any"
    if "enum" in items:
        return [_mentions(pools.text, list(items["enum"]), set())]
    if kind in ("integer", "number"):
        return [_drain(pools.numbers)]
    if kind in ("string", "any"):
        if colourish and pools.colours:
            return [_drain(pools.colours)]
        return [_drain(pools.quoted) or _drain(pools.phrases)]
    return []
