"""Structured output: schema objects -> ``response_format``; replies -> validated objects.

``schema=`` (``--schema``) takes a pydantic model class, a dataclass, a
TypedDict (or another type pydantic knows) or a JSON Schema dict. The request
asks for ``response_format: {"type": "json_schema", "json_schema": {"name",
"schema", "strict"}}``; strict mode (OpenAI's rules: every object lists all
its properties as required and sets ``additionalProperties: false``) is
used whenever the schema allows it: objects get those two keywords added,
and a schema with open objects (``dict[str, X]``, ``additionalProperties``
true or a schema) or whose root is not an object is sent with ``strict``
false. The reply is validated against the schema as the user gave it.

A reply that is not valid JSON or does not fit raises
``StructuredOutputError`` (its ``.field`` is the first failing field); the
session keeps the text in the result and shows one line.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import ConfigError, StructuredOutputError, one_line
from ._typeschema import Invalid, Shape, UnsupportedType, schema_shape, type_name, type_shape

__all__ = ["JSON_OBJECT", "Structured", "structured"]

_NAME_OK = re.compile(r"[^A-Za-z0-9_-]+")
WHAT = "give a pydantic model class, a dataclass, a TypedDict or a JSON Schema dict"


@dataclass(frozen=True)
class Structured:
    """What a request asks the reply to be, and how to read the reply into it."""

    name: str
    schema: dict[str, Any] | None
    """The JSON Schema sent (strict form when ``strict``); None for plain ``json_object``."""
    strict: bool
    shape: Shape | None
    """Validates the decoded reply into the user's type (None: any JSON)."""

    def response_format(self) -> dict[str, Any]:
        if self.schema is None:
            return {"type": "json_object"}
        return {
            "type": "json_schema",
            "json_schema": {"name": self.name, "schema": self.schema, "strict": self.strict},
        }

    def parse(self, text: str, *, finish_reason: str | None = None) -> Any:
        """The reply's text as the validated object (raises ``StructuredOutputError``)."""
        cut = (
            " (the reply was cut at max_tokens: finish_reason length)"
            if finish_reason == "length"
            else ""
        )
        stripped = _unfence(text)
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as exc:
            where = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
            if not stripped:
                where = "the reply is empty"
            raise StructuredOutputError(
                one_line(
                    f"the reply is not valid JSON ({where}){cut}; its text is kept in result.text"
                ),
                reason=where,
            ) from None
        if self.shape is None:
            return value
        try:
            return self.shape.load(value)
        except Invalid as exc:
            field = exc.field or "(the whole reply)"
            raise StructuredOutputError(
                one_line(
                    f"the reply does not fit the schema {self.name}: {field}: {exc.reason}{cut}; "
                    "its text is kept in result.text"
                ),
                field=exc.field,
                reason=exc.reason,
            ) from None


JSON_OBJECT = Structured(name="json_object", schema=None, strict=False, shape=None)
"""``--json``: any JSON object; ``result.parsed`` is the parsed JSON."""


def _unfence(text: str) -> str:
    """The JSON inside a reply wrapped in one markdown code fence (some models do that)."""
    stripped = text.strip()
    match = re.fullmatch(r"```[A-Za-z0-9_-]*\s*\n(.*?)\n?```", stripped, re.S)
    return match.group(1).strip() if match else stripped


def structured(schema: Any) -> Structured:
    """What ``schema=`` asks for (``ConfigError`` when it is not a schema, nothing sent)."""
    if isinstance(schema, Mapping):
        return _from_dict(schema)
    if not _is_type_like(schema):
        kind = type(schema).__name__
        article = "an" if kind[:1].lower() in "aeiou" else "a"
        raise ConfigError(
            f"schema: {one_line(repr(schema), 60)} ({article} {kind}) is not a schema; {WHAT}"
        )
    try:
        shape = type_shape(schema)
    except UnsupportedType as exc:
        raise ConfigError(f"schema: {exc}") from None
    root = shape.schema
    if root.get("type") != "object" and "$ref" not in root:
        raise ConfigError(
            f"schema: {type_name(schema)} does not describe a JSON object (structured output "
            f"needs one at the top); {WHAT}"
        )
    name = getattr(schema, "__name__", None) or "response"
    return _made(name, shape)


def _is_type_like(value: Any) -> bool:
    """Classes and typing constructs (``list[Caption]``, ``Literal[...]``), not instances."""
    import typing

    return isinstance(value, type) or typing.get_origin(value) is not None


def _from_dict(schema: Mapping[str, Any]) -> Structured:
    try:
        json.dumps(schema)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"schema: the dict is not JSON ({exc}); {WHAT}") from None
    looks_like_schema = any(
        k in schema
        for k in ("type", "properties", "$ref", "anyOf", "oneOf", "allOf", "enum", "const", "$defs")
    )
    if not looks_like_schema:
        raise ConfigError(
            f"schema: {one_line(repr(dict(schema)), 60)} is not a JSON Schema (no type, "
            f"properties or $ref); {WHAT}"
        )
    try:
        shape = schema_shape(schema)
    except UnsupportedType as exc:
        raise ConfigError(f"schema: {exc}; {WHAT}") from None
    return _made(str(schema.get("title") or "response"), shape)


def _made(name: str, shape: Shape) -> Structured:
    strict_schema = strict_form(shape.schema)
    sent = strict_schema if strict_schema is not None else copy.deepcopy(shape.schema)
    clean = _NAME_OK.sub("_", name)[:64] or "response"
    return Structured(name=clean, schema=sent, strict=strict_schema is not None, shape=shape)


def strict_form(schema: Mapping[str, Any]) -> dict[str, Any] | None:
    """The schema in OpenAI's strict form, or None when it cannot be strict.

    Every object gets ``additionalProperties: false`` and lists all its
    properties as required; ``default: null`` is dropped. A root that is not
    an object, or an object open to other keys, cannot be strict.
    """
    out = copy.deepcopy(dict(schema))
    root = _resolve(out, out)
    if not isinstance(root, dict) or root.get("type") != "object":
        return None
    try:
        _strictify(out, out)
    except _NotStrict:
        return None
    return out


class _NotStrict(Exception):
    pass


def _resolve(node: Any, root: dict[str, Any]) -> Any:
    ref = node.get("$ref") if isinstance(node, dict) else None
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        return target
    return node


_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMAS = ("items", "not", "if", "then", "else", "contains", "additionalItems")


def _strictify(node: Any, root: dict[str, Any]) -> None:
    if not isinstance(node, dict):
        return
    if node.get("default", ...) is None:
        node.pop("default")
    if node.get("type") == "object" or isinstance(node.get("properties"), dict):
        if node.get("additionalProperties", False) is not False or node.get("patternProperties"):
            raise _NotStrict
        node["additionalProperties"] = False
        properties = node.get("properties") or {}
        node["properties"] = properties
        node["required"] = list(properties)
    for key in _SCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            for sub in node[key].values():
                _strictify(sub, root)
    for key in _SCHEMA_LISTS:
        if isinstance(node.get(key), list):
            for sub in node[key]:
                _strictify(sub, root)
    for key in _SCHEMAS:
        _strictify(node.get(key), root)
