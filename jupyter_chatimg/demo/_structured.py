"""Fill a JSON Schema with a value that conforms to it, using known facts where they fit.

``fill(schema, facts)`` walks the schema: for each property it asks ``facts`` for
candidate values (by property name) and keeps the first one that the property's
schema accepts; anything else gets a type-correct neutral value (``""``, ``0``,
``false``, the first ``enum`` value, ``minItems`` items ...). ``anyOf``/``oneOf``
take the first branch that gives a valid value. The result is checked against
the whole schema at the end; if facts led somewhere invalid, the neutral fill is
returned instead. Standard library only (``_jsonschema`` is the checker).
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any, Protocol

from ._jsonschema import conforms, has_type, json_equal, merge, resolve
from ._regex_sample import sample

MAX_DEPTH = 24
_FORMATS = {
    "date-time": "2023-11-14T22:13:20Z",
    "date": "2023-11-14",
    "time": "22:13:20Z",
    "email": "demo@example.com",
    "idn-email": "demo@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "/",
    "iri-reference": "/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "hostname": "localhost",
    "idn-hostname": "localhost",
    "duration": "PT0S",
    "json-pointer": "",
    "regex": ".*",
}
_TYPE_HINTS = {
    "object": ("properties", "required", "additionalProperties", "patternProperties"),
    "array": ("items", "prefixItems", "minItems", "maxItems", "contains", "uniqueItems"),
    "string": ("minLength", "maxLength", "pattern", "format"),
    "number": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
}


class Facts(Protocol):
    """What is known, looked up by property name."""

    def values(self, name: str) -> list[Any]:
        """Candidate values for a property called ``name``, best first."""
        ...

    def child(self, name: str) -> Facts:
        """The facts for the properties of an object property called ``name``."""
        ...

    def items(self, name: str) -> list[Facts] | None:
        """One scope per element for an array of objects called ``name`` (None: unknown)."""
        ...


class NoFacts:
    """Nothing is known: every value is neutral."""

    def values(self, name: str) -> list[Any]:
        return []

    def child(self, name: str) -> Facts:
        return self

    def items(self, name: str) -> list[Facts] | None:
        return None


NO_FACTS = NoFacts()


def fill(schema: dict[str, Any] | bool, facts: Facts = NO_FACTS) -> Any:
    """A value valid against ``schema``, measured from ``facts`` where they fit."""
    value = _Filler(schema).value(schema, "", facts, 0)
    if facts is NO_FACTS or conforms(value, schema):
        return value
    neutral = _Filler(schema).value(schema, "", NO_FACTS, 0)
    return neutral if conforms(neutral, schema) else value


def format_sample(fmt: str, k: int = 0) -> str:
    """The ``k``-th example of a string ``format`` (``""`` for formats it does not know)."""
    base = _FORMATS.get(fmt, "")
    if not k or not base:
        return base
    varied = {
        "date-time": f"2023-11-14T22:{k % 60:02d}:{k // 60 % 60:02d}Z",
        "date": (date(2023, 11, 14) + timedelta(days=k)).isoformat(),
        "time": f"22:{k % 60:02d}:{k // 60 % 60:02d}Z",
        "email": f"demo{k}@example.com",
        "uuid": f"00000000-0000-4000-8000-{k:012d}",
        "ipv4": f"127.0.{k // 256 % 256}.{k % 256}",
        "hostname": f"host{k}.localhost",
    }
    return varied.get(fmt, f"{base}{k}" if fmt in ("uri", "url", "iri") else base)


def _types(s: dict[str, Any]) -> list[str]:
    kinds = s.get("type")
    if isinstance(kinds, str):
        return [kinds]
    if isinstance(kinds, list):
        return [str(k) for k in kinds]
    for kind, keys in _TYPE_HINTS.items():
        if any(k in s for k in keys):
            return [kind]
    return []


def _fuzzy_enum(candidate: Any, options: list[Any]) -> Any:
    """The enum option ``candidate`` names (exactly, ignoring case, or as a word in it)."""
    for o in options:
        if json_equal(o, candidate):
            return o
    if not isinstance(candidate, str):
        return None
    c = candidate.strip().lower()
    for o in options:
        if isinstance(o, str) and o.strip().lower() == c:
            return o
    for o in options:
        if isinstance(o, str) and c and (c in o.lower().split() or o.lower() in c.split()):
            return o
    return None


def _bounds(s: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    lo, hi = s.get("minimum"), s.get("maximum")
    xlo, xhi = s.get("exclusiveMinimum"), s.get("exclusiveMaximum")
    if isinstance(xlo, bool):  # draft 4: a flag on minimum
        xlo, lo = (lo, None) if xlo else (None, lo)
    if isinstance(xhi, bool):
        xhi, hi = (hi, None) if xhi else (None, hi)
    return lo, hi, xlo, xhi


def _neutral_number(s: dict[str, Any], integer: bool) -> float:
    """0 when allowed, else the valid number nearest to a bound (on the ``multipleOf`` grid)."""
    lo, hi, xlo, xhi = _bounds(s)
    step = s.get("multipleOf")
    step = step if isinstance(step, (int, float)) and step > 0 else None
    unit = step or 1
    starts: list[float] = [0]
    starts += [lo] if lo is not None else []
    starts += [xlo + unit] if xlo is not None else []
    starts += [hi] if hi is not None else []
    starts += [xhi - unit] if xhi is not None else []
    low = lo if lo is not None else xlo
    high = hi if hi is not None else xhi
    if low is not None and high is not None:
        starts.append((low + high) / 2)
    check = {k: v for k, v in s.items() if k not in ("enum", "const")}
    check["type"] = "integer" if integer else "number"
    for start in starts:
        grid = (
            [start]
            if step is None
            else [math.ceil(start / step) * step, math.floor(start / step) * step]
        )
        for v in grid:
            if integer and not float(v).is_integer():
                v = math.ceil(v)
            value = int(v) if float(v).is_integer() else float(v)
            if conforms(value, check):
                return value
    return 0


class _Filler:
    def __init__(self, root: Any) -> None:
        self.root = root

    def value(self, schema: Any, name: str, facts: Facts, depth: int) -> Any:
        s = resolve(schema, self.root)
        if s is True or s is False or not isinstance(s, dict):
            return self._any(name, facts)
        if "const" in s:
            return s["const"]
        if "allOf" in s:
            merged = {k: v for k, v in s.items() if k != "allOf"}
            for sub in s["allOf"]:
                r = resolve(sub, self.root)
                merged = merge(merged, r if isinstance(r, dict) else {})
            return self.value(merged, name, facts, depth + 1)
        for key in ("anyOf", "oneOf"):
            if key in s:
                return self._choice(s, key, name, facts, depth)
        if "enum" in s:
            return self._enum(s, name, facts)
        kind = self._kind(s, name, facts)
        if kind == "object":
            return self._object(s, name, facts, depth)
        if kind == "array":
            return self._array(s, name, facts, depth)
        if kind == "string":
            return self._string(s, name, facts)
        if kind in ("integer", "number"):
            return self._number(s, name, facts, kind == "integer")
        if kind == "boolean":
            return next((c for c in facts.values(name) if c is True or c is False), False)
        if kind == "null":
            return None
        return self._any(name, facts, s)

    def _any(self, name: str, facts: Facts, s: dict[str, Any] | None = None) -> Any:
        for c in facts.values(name):
            if s is None or conforms(c, s, self.root):
                return c
        return None

    def _kind(self, s: dict[str, Any], name: str, facts: Facts) -> str | None:
        kinds = _types(s)
        if len(kinds) <= 1:
            return kinds[0] if kinds else None
        for c in facts.values(name):
            for k in kinds:
                if k != "null" and has_type(c, k) and conforms(c, {**s, "type": k}, self.root):
                    return k
        return next((k for k in kinds if k != "null"), kinds[0])

    def _choice(self, s: dict[str, Any], key: str, name: str, facts: Facts, depth: int) -> Any:
        base = {k: v for k, v in s.items() if k != key}
        options = [resolve(o, self.root) for o in s[key]]
        known = bool(facts.values(name) or facts.items(name))
        for scope in (facts,) if facts is NO_FACTS else (facts, NO_FACTS):
            for opt in options:
                if opt is False or (known and scope is facts and _types_of(opt) == ["null"]):
                    continue
                branch = merge(base, opt) if isinstance(opt, dict) else base
                v = self.value(branch, name, scope, depth + 1)
                for alt in (v, *_nudged(v)):  # oneOf: 0 is an integer and a number
                    if conforms(alt, s, self.root):
                        return alt
        first = options[0] if options and isinstance(options[0], dict) else {}
        return self.value(merge(base, first), name, NO_FACTS, depth + 1)

    def _enum(self, s: dict[str, Any], name: str, facts: Facts) -> Any:
        options = list(s["enum"])
        rest = {k: v for k, v in s.items() if k != "enum"}
        for c in facts.values(name):
            hit = _fuzzy_enum(c, options)
            if hit is not None and conforms(hit, rest, self.root):
                return hit
        return next(
            (o for o in options if conforms(o, rest, self.root)), options[0] if options else None
        )

    def _string(self, s: dict[str, Any], name: str, facts: Facts) -> str:
        found = facts.values(name)
        texts = [c for c in found if isinstance(c, str)]  # strings first, then numbers as text
        texts += [str(c) for c in found if isinstance(c, (int, float)) and not isinstance(c, bool)]
        for text in texts:
            for variant in (text, _shorten(text, s.get("maxLength"))):
                if conforms(variant, s, self.root):
                    return variant
        return self._neutral_string(s)

    def _neutral_string(self, s: dict[str, Any]) -> str:
        fmt = s.get("format")
        text = format_sample(str(fmt)) if fmt else ""
        if "pattern" in s:
            found = sample(str(s["pattern"]))
            if found is not None and not text:
                text = found
        low = s.get("minLength", 0)
        if isinstance(low, int) and len(text) < low:
            text += "-" * (low - len(text))
        high = s.get("maxLength")
        return text[:high] if isinstance(high, int) else text

    def _number(self, s: dict[str, Any], name: str, facts: Facts, integer: bool) -> float:
        for c in facts.values(name):
            if isinstance(c, bool) or not isinstance(c, (int, float)):
                continue
            v = round(c) if integer and isinstance(c, float) else c
            if conforms(v, s, self.root):
                return v
        return _neutral_number(s, integer)

    def _object(self, s: dict[str, Any], name: str, facts: Facts, depth: int) -> dict[str, Any]:
        inner = facts.child(name) if name else facts
        props: dict[str, Any] = s.get("properties", {}) or {}
        required = [r for r in s.get("required", []) if isinstance(r, str)]
        out: dict[str, Any] = {}
        if depth > MAX_DEPTH:
            return out
        for key, sub in props.items():
            known = bool(inner.values(key) or inner.items(key))
            if key in required or (known and resolve(sub, self.root) is not False):
                out[key] = self.value(sub, key, inner, depth + 1)
        extra = s.get("additionalProperties", True)
        for key in required:
            if key not in out:  # required but not described: whatever the rest allows
                out[key] = self.value(
                    extra if isinstance(extra, dict) else True, key, inner, depth + 1
                )
        self._size_object(s, out, props, inner, depth)
        return out

    def _size_object(
        self,
        s: dict[str, Any],
        out: dict[str, Any],
        props: dict[str, Any],
        facts: Facts,
        depth: int,
    ) -> None:
        low, high = s.get("minProperties", 0), s.get("maxProperties")
        for key, sub in props.items():
            if len(out) >= low:
                break
            if key not in out and resolve(sub, self.root) is not False:
                out[key] = self.value(sub, key, facts, depth + 1)
        extra = s.get("additionalProperties", True)
        n = 1
        while len(out) < low and extra is not False:
            key = f"extra_{n}"
            n += 1
            if key not in out:
                out[key] = self.value(
                    extra if isinstance(extra, dict) else True, key, facts, depth + 1
                )
        required = set(s.get("required", []))
        if isinstance(high, int):
            for key in [k for k in reversed(list(out)) if k not in required]:
                if len(out) <= high:
                    break
                del out[key]

    def _array(self, s: dict[str, Any], name: str, facts: Facts, depth: int) -> list[Any]:
        items = s.get("items", True)
        prefix = s.get("prefixItems")
        if isinstance(items, list):  # draft-4 tuple
            prefix, items = items, s.get("additionalItems", True)
        prefix = prefix if isinstance(prefix, list) else []
        low, high = s.get("minItems", 0), s.get("maxItems")
        out: list[Any] = []
        if depth > MAX_DEPTH:
            return out
        scopes = facts.items(name) if "object" in _types_of(resolve(items, self.root)) else None
        if scopes is not None and not prefix:
            out = [self.value(items, "", sc, depth + 1) for sc in scopes]
        else:
            out = self._array_from_facts(s, name, facts) or []
        for i in range(len(out), max(low, len(prefix))):
            sub = prefix[i] if i < len(prefix) else items
            out.append(self._element(sub, out, s.get("uniqueItems", False), depth))
        if "contains" in s and not any(conforms(v, s["contains"], self.root) for v in out):
            out.insert(0, self.value(s["contains"], "", NO_FACTS, depth + 1))
        return out[:high] if isinstance(high, int) else out

    def _array_from_facts(self, s: dict[str, Any], name: str, facts: Facts) -> list[Any] | None:
        """The first list among the facts whose elements fit (after matching enums)."""
        items = s.get("items", True)
        high = s.get("maxItems")
        for c in facts.values(name):
            if not isinstance(c, list):
                continue
            out: list[Any] = []
            for element in c:
                fitted = self._fit(element, items)
                if fitted is not None and not (
                    s.get("uniqueItems") and any(json_equal(fitted, o) for o in out)
                ):
                    out.append(fitted)
            out = out[:high] if isinstance(high, int) else out
            if out or not c:
                return out
        return None

    def _fit(self, element: Any, items: Any) -> Any:
        if conforms(element, items, self.root):
            return element
        s = resolve(items, self.root)
        if isinstance(s, dict) and "enum" in s:
            hit = _fuzzy_enum(element, list(s["enum"]))
            return hit if hit is not None and conforms(hit, s, self.root) else None
        if isinstance(s, dict) and isinstance(element, str):
            short = _shorten(element, s.get("maxLength"))
            return short if conforms(short, s, self.root) else None
        return None

    def _element(self, sub: Any, before: list[Any], unique: bool, depth: int) -> Any:
        v = self.value(sub, "", NO_FACTS, depth + 1)
        if not unique or not any(json_equal(v, b) for b in before):
            return v
        r = resolve(sub, self.root)
        fmt = str(r.get("format", "")) if isinstance(r, dict) else ""
        pattern = str(r.get("pattern", "")) if isinstance(r, dict) else ""
        for k in range(1, 64):
            extra = [format_sample(fmt, k)] if fmt else []
            found = sample(pattern, k) if pattern else None
            extra += [found] if found is not None else []
            for alt in [*_variants(v, k), *extra]:
                if conforms(alt, sub, self.root) and not any(json_equal(alt, b) for b in before):
                    return alt
        return v


def _types_of(s: Any) -> list[str]:
    return _types(s) if isinstance(s, dict) else []


def _nudged(v: Any) -> list[Any]:
    """Values near ``v`` of a narrower or wider type (to leave an overlapping branch)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return []
    return [v + 0.5, v - 0.5, float(v) + 1.5]


def _variants(v: Any, k: int) -> list[Any]:
    """Other values like ``v`` (for ``uniqueItems``)."""
    if isinstance(v, bool):
        return [not v] if k == 1 else []
    if isinstance(v, (int, float)):
        return [v + k, v - k, v + k / 4]
    if isinstance(v, str):
        return [v * (k + 1), f"{v}{k}" if v else str(k), v + "-" * k]
    if isinstance(v, list):
        return [[*v, k]]
    if isinstance(v, dict):
        return [{**v, f"extra_{k}": k}]
    return [k]


def _shorten(text: str, limit: Any) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters."""
    if not isinstance(limit, int) or len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return cut[:space].rstrip(" ,;:") if space > limit // 2 else cut
