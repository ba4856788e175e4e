"""A small JSON Schema checker (standard library only), enough to keep the demo's
structured replies and tool arguments valid.

It understands the keywords that structured-output schemas use: ``type`` (also a
list), ``enum``, ``const``, ``properties``, ``required``, ``additionalProperties``,
``patternProperties``, ``min/maxProperties``, ``items`` (a schema, or a list as in
draft 4), ``prefixItems``, ``min/maxItems``, ``uniqueItems``, ``contains``,
``minimum``/``maximum`` and their exclusive forms (numbers, or draft-4 booleans),
``multipleOf``, ``min/maxLength``, ``pattern``, ``format`` (a few common ones),
``allOf``/``anyOf``/``oneOf``/``not`` and local ``$ref`` (``#/$defs/...``,
``#/definitions/...``, ``#``). Unknown keywords are ignored, as JSON Schema says.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time
from typing import Any
from uuid import UUID

Schema = dict[str, Any] | bool
MAX_REF_DEPTH = 64
_NUMBER_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_HOST = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*"
)


def pointer(root: Any, ref: str) -> Any:
    """The target of a local ``$ref`` (``#`` or ``#/a/b``), or None when it does not resolve."""
    if not ref.startswith("#"):
        return None
    node = root
    for raw in ref[1:].split("/")[1:]:
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node


def resolve(schema: Schema, root: Any) -> Schema:
    """``schema`` with its ``$ref`` chain followed; sibling keywords are kept (they win)."""
    seen = 0
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        target = pointer(root, schema["$ref"])
        seen += 1
        if target is None or seen > MAX_REF_DEPTH:
            return {k: v for k, v in schema.items() if k != "$ref"}
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        if target is False:
            return False
        schema = merge(target if isinstance(target, dict) else {}, siblings)
    return schema


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Both schemas at once (for ``allOf`` and for a branch with its parent's keywords)."""
    out = dict(a)
    for key, value in b.items():
        if key not in out:
            out[key] = value
        elif key == "properties" and isinstance(value, dict):
            props = dict(out[key])
            for name, sub in value.items():
                old = props.get(name)
                both = isinstance(old, dict) and isinstance(sub, dict)
                props[name] = {"allOf": [old, sub]} if both and old != sub else sub
            out[key] = props
        elif key == "required" and isinstance(value, list):
            out[key] = list(dict.fromkeys([*out[key], *value]))
        elif key in ("minimum", "minLength", "minItems", "minProperties", "exclusiveMinimum"):
            out[key] = _tighter(out[key], value, max)
        elif key in ("maximum", "maxLength", "maxItems", "maxProperties", "exclusiveMaximum"):
            out[key] = _tighter(out[key], value, min)
        elif key == "type":
            out[key] = _type_meet(out[key], value)
        elif key == "allOf":
            out[key] = [*out[key], *value]
        elif key in ("anyOf", "oneOf"):
            out["allOf"] = [*out.get("allOf", []), {key: out.pop(key)}, {key: value}]
        else:
            out[key] = value
    return out


def _tighter(x: Any, y: Any, pick: Any) -> Any:
    if isinstance(x, bool) or isinstance(y, bool):  # draft-4 exclusive flags
        return x or y
    return pick(x, y)


def _type_meet(x: Any, y: Any) -> Any:
    xs = x if isinstance(x, list) else [x]
    ys = y if isinstance(y, list) else [y]
    both = [t for t in xs if t in ys or (t == "integer" and "number" in ys)]
    both += [t for t in ys if t == "integer" and "number" in xs and t not in both]
    return both if len(both) != 1 else both[0]


def json_type(value: Any) -> str:
    """The JSON type name of a Python value (``integer`` for whole numbers)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "unknown"


def has_type(value: Any, kind: str) -> bool:
    """Whether ``value`` is of JSON type ``kind``."""
    actual = json_type(value)
    return actual == kind or (kind == "number" and actual == "integer")


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: ``true`` is not ``1``, ``1`` is ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and bool(a == b)


def format_ok(value: str, fmt: str) -> bool:
    """Whether ``value`` matches a common ``format`` (unknown formats always match)."""
    checks: dict[str, Any] = {
        "date-time": lambda v: datetime.fromisoformat(v.replace("Z", "+00:00")) and "T" in v,
        "date": lambda v: date.fromisoformat(v) and len(v) == 10,
        "time": lambda v: time.fromisoformat(v.replace("Z", "+00:00")),
        "email": lambda v: _EMAIL.fullmatch(v),
        "uri": lambda v: re.match(r"[A-Za-z][A-Za-z0-9+.-]*:\S+$", v),
        "uuid": lambda v: UUID(v) and len(v) == 36,
        "ipv4": lambda v: (
            re.fullmatch(r"(\d{1,3})(\.\d{1,3}){3}", v) and all(int(p) < 256 for p in v.split("."))
        ),
        "hostname": lambda v: _HOST.fullmatch(v),
    }
    check = checks.get(fmt)
    if check is None:
        return True
    try:
        return bool(check(value))
    except ValueError:
        return False


def _pattern_ok(value: str, pattern: Any) -> bool:
    try:
        return re.search(str(pattern), value) is not None
    except re.error:
        return True  # a regex dialect Python cannot read: do not judge


def _number_ok(v: float, s: dict[str, Any]) -> bool:
    lo, hi = s.get("minimum"), s.get("maximum")
    xlo, xhi = s.get("exclusiveMinimum"), s.get("exclusiveMaximum")
    if isinstance(xlo, bool):  # draft 4
        xlo, lo = (lo, None) if xlo else (None, lo)
    if isinstance(xhi, bool):
        xhi, hi = (hi, None) if xhi else (None, hi)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        return False
    if (xlo is not None and v <= xlo) or (xhi is not None and v >= xhi):
        return False
    m = s.get("multipleOf")
    if isinstance(m, (int, float)) and m > 0:
        q = v / m
        return math.isfinite(q) and abs(q - round(q)) < 1e-9
    return True


def _string_ok(v: str, s: dict[str, Any]) -> bool:
    n = len(v)
    if n < s.get("minLength", 0) or ("maxLength" in s and n > s["maxLength"]):
        return False
    if "pattern" in s and not _pattern_ok(v, s["pattern"]):
        return False
    return "format" not in s or format_ok(v, str(s["format"]))


def _array_ok(v: list[Any], s: dict[str, Any], root: Any) -> bool:
    if len(v) < s.get("minItems", 0) or ("maxItems" in s and len(v) > s["maxItems"]):
        return False
    if s.get("uniqueItems") and any(
        json_equal(v[i], v[j]) for i in range(len(v)) for j in range(i + 1, len(v))
    ):
        return False
    prefix = s.get("prefixItems")
    items = s.get("items")
    if isinstance(items, list):  # draft 4 tuples
        prefix, items = items, s.get("additionalItems")
    prefix = prefix if isinstance(prefix, list) else []
    for i, item in enumerate(v):
        sub = prefix[i] if i < len(prefix) else items
        if sub is not None and not conforms(item, sub, root):
            return False
    if "contains" in s:
        hits = sum(1 for item in v if conforms(item, s["contains"], root))
        if hits < s.get("minContains", 1) or ("maxContains" in s and hits > s["maxContains"]):
            return False
    return True


def _object_ok(v: dict[str, Any], s: dict[str, Any], root: Any) -> bool:
    if any(k not in v for k in s.get("required", [])):
        return False
    if len(v) < s.get("minProperties", 0) or len(v) > s.get("maxProperties", len(v)):
        return False
    props = s.get("properties", {})
    patterns = s.get("patternProperties", {})
    extra = s.get("additionalProperties", True)
    for key, item in v.items():
        matched = False
        if key in props:
            matched = True
            if not conforms(item, props[key], root):
                return False
        for pat, sub in patterns.items():
            if _pattern_ok(key, pat):
                matched = True
                if not conforms(item, sub, root):
                    return False
        if not matched and not conforms(item, extra, root):
            return False
        if "propertyNames" in s and not conforms(key, s["propertyNames"], root):
            return False
    return True


def _combinators_ok(value: Any, s: dict[str, Any], root: Any) -> bool:
    if "allOf" in s and not all(conforms(value, sub, root) for sub in s["allOf"]):
        return False
    if "anyOf" in s and not any(conforms(value, sub, root) for sub in s["anyOf"]):
        return False
    if "oneOf" in s and sum(1 for sub in s["oneOf"] if conforms(value, sub, root)) != 1:
        return False
    return not ("not" in s and conforms(value, s["not"], root))


def conforms(value: Any, schema: Schema, root: Any = None) -> bool:
    """Whether ``value`` is valid against ``schema`` (``root`` resolves ``$ref``)."""
    root = schema if root is None else root
    s = resolve(schema, root)
    if isinstance(s, bool):
        return s
    kinds = s.get("type")
    if kinds is not None:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if not any(has_type(value, str(k)) for k in kinds):
            return False
    if "enum" in s and not any(json_equal(value, e) for e in s["enum"]):
        return False
    if "const" in s and not json_equal(value, s["const"]):
        return False
    kind = json_type(value)
    if kind in ("integer", "number") and not _number_ok(value, s):
        return False
    if kind == "string" and not _string_ok(value, s):
        return False
    if kind == "array" and not _array_ok(value, s, root):
        return False
    if kind == "object" and not _object_ok(value, s, root):
        return False
    return _combinators_ok(value, s, root)
