"""Python types <-> JSON Schema, and JSON values validated into Python objects.

Shared by ``_tools`` (a function's parameters) and ``_structured`` (the
schema of a reply). A ``Shape`` is a type's JSON Schema plus the way back:
``load`` validates a decoded JSON value and returns the Python object
(a dataclass instance, an enum member, a tuple ...).

With pydantic 2 installed, its ``TypeAdapter`` makes the schema and does the
validation (so pydantic models, dataclasses, TypedDicts, constrained types and
everything else pydantic knows work). Without it, the standard types are
supported: ``str``, ``int``, ``float``, ``bool``, ``None``, ``list[...]``,
``tuple[...]``, ``set[...]``, ``dict[str, ...]``, ``Literal``, ``Optional`` /
unions, ``Annotated``, ``Any``, enums, dataclasses and TypedDicts; values are
checked with ``jsonschema`` and then built into those types.

Errors: ``UnsupportedType`` (a type that has no JSON Schema: refused before
anything is sent) and ``Invalid`` (a value that does not fit; ``field`` names
the first failing one, ``reason`` says why).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Invalid",
    "Shape",
    "UnsupportedType",
    "check_json_schema",
    "field_path",
    "pydantic_adapter",
    "schema_shape",
    "type_name",
    "type_shape",
    "unsupported",
]


class UnsupportedType(Exception):
    """A type that cannot be described in JSON Schema (``str()``: why, in a few words)."""


class Invalid(Exception):
    """A JSON value that does not fit; ``field`` is the first failing one ("" = the whole)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Shape:
    """A type's JSON Schema and how a JSON value becomes an object of that type."""

    schema: dict[str, Any]
    load: Callable[[Any], Any]
    """Validate a decoded JSON value; return the object (raises ``Invalid``)."""
    target: Any = None
    """The Python type it was made from (None for a JSON Schema dict)."""


def type_name(tp: Any) -> str:
    """A short readable name of a type annotation."""
    if isinstance(tp, type):
        return tp.__qualname__
    return str(tp).replace("typing.", "")


def field_path(parts: typing.Iterable[Any]) -> str:
    """``("images", 0, "width")`` -> ``images[0].width``."""
    out = ""
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


# --- pydantic, when it is there -----------------------------------------------------


def pydantic_adapter(tp: Any) -> Any:
    """A pydantic 2 ``TypeAdapter`` for ``tp``; None without pydantic 2.

    Raises ``UnsupportedType`` when pydantic knows no schema for ``tp``.
    """
    try:
        import pydantic
    except ImportError:
        return None
    adapter_type = getattr(pydantic, "TypeAdapter", None)
    if adapter_type is None:  # pydantic 1: the standard types below
        return None
    try:
        adapter = adapter_type(tp)
        adapter.json_schema()
    except Exception:  # PydanticSchemaGenerationError, PydanticInvalidForJsonSchema ...
        raise UnsupportedType(unsupported(tp)) from None
    return adapter


def unsupported(tp: Any) -> str:
    """Why ``tp`` cannot be a parameter or a reply's type, and what can."""
    return (
        f"the type {type_name(tp)} has no JSON Schema; use str, int, float, bool, list, dict, "
        "Literal, Optional, an enum, a dataclass, a TypedDict or a pydantic model"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


def _pydantic_shape(tp: Any, adapter: Any) -> Shape:
    import pydantic

    def load(value: Any) -> Any:
        try:
            return adapter.validate_python(value)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            kind = first.get("type", "")
            reason = "missing" if kind == "missing" else str(first.get("msg", kind))
            raise Invalid(field_path(first.get("loc", ())), reason) from None

    return Shape(adapter.json_schema(), load, tp)


# --- the standard types, without pydantic -------------------------------------------


def type_shape(tp: Any, *, use_pydantic: bool | None = None) -> Shape:
    """The JSON Schema of the annotation ``tp`` and a loader into it.

    ``use_pydantic``: None (default) uses pydantic 2 when installed; False
    uses only the standard types (what happens without pydantic).
    """
    try:
        adapter = pydantic_adapter(tp) if use_pydantic is not False else None
    except UnsupportedType:
        # pydantic refuses a few types the standard path reads (typing.TypedDict
        # before Python 3.12): use those; else pydantic's verdict stands.
        try:
            _schema(tp, ())
        except UnsupportedType:
            raise UnsupportedType(unsupported(tp)) from None
        adapter = None
    if adapter is not None:
        return _pydantic_shape(tp, adapter)
    schema = _schema(tp, ())
    validator = _validator(schema)

    def load(value: Any) -> Any:
        _validate(validator, value)
        return _convert(tp, value)

    return Shape(schema, load, tp)


def schema_shape(schema: Mapping[str, Any]) -> Shape:
    """A JSON Schema dict as a ``Shape``: values are validated and returned as they are."""
    plain = dict(schema)
    check_json_schema(plain)
    validator = _validator(plain)

    def load(value: Any) -> Any:
        _validate(validator, value)
        return value

    return Shape(plain, load, None)


def check_json_schema(schema: Mapping[str, Any]) -> None:
    """Raise ``UnsupportedType`` when ``schema`` is not a valid JSON Schema."""
    from jsonschema import exceptions, validators

    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except exceptions.SchemaError as exc:
        where = field_path(exc.absolute_path)
        raise UnsupportedType(
            f"not a valid JSON Schema ({where + ': ' if where else ''}{exc.message[:160]})"
        ) from None


def _validator(schema: Mapping[str, Any]) -> Any:
    from jsonschema import validators

    return validators.validator_for(schema)(schema)


def _validate(validator: Any, value: Any) -> None:
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(value))
    if error is None:
        return
    path = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, Mapping):
        missing = [p for p in error.validator_value if p not in error.instance]
        if missing:
            raise Invalid(field_path([*path, missing[0]]), "missing")
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        known = set(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in known]
        if extra:
            raise Invalid(field_path([*path, extra[0]]), "not a field of the schema")
    raise Invalid(field_path(path), error.message[:200])


_SIMPLE: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    None: {"type": "null"},
}


def _origin(tp: Any) -> Any:
    return typing.get_origin(tp)


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__required_keys__")


def _is_union(tp: Any) -> bool:
    return _origin(tp) in (typing.Union, types.UnionType)


def _schema(tp: Any, seen: tuple[Any, ...]) -> dict[str, Any]:
    try:
        simple = _SIMPLE.get(tp)
    except TypeError:  # an unhashable annotation
        simple = None
    if simple is not None:
        return dict(simple)
    if tp is Any or tp is object:
        return {}
    origin = _origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _schema(args[0], seen)
    if origin is typing.Literal:
        values = list(args)
        if not all(isinstance(v, (str, int, float, bool)) or v is None for v in values):
            raise UnsupportedType(
                f"{type_name(tp)}: Literal values must be str, int, float or bool"
            )
        return {"enum": values}
    if _is_union(tp):
        return {"anyOf": [_schema(a, seen) for a in args]}
    container = _container_schema(tp, origin, args, seen)
    if container is not None:
        return container
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        values = [m.value for m in tp]
        if not all(isinstance(v, (str, int, float, bool)) for v in values):
            raise UnsupportedType(f"{tp.__qualname__}: enum values must be str, int, float or bool")
        return {"title": tp.__name__, "enum": values}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if tp in seen:
            raise UnsupportedType(f"{tp.__qualname__} refers to itself (install pydantic for that)")
        hints = _hints(tp)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for f in dataclasses.fields(tp):
            if not f.init:
                continue
            properties[f.name] = _schema(hints.get(f.name, Any), (*seen, tp))
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                required.append(f.name)
        return _object(tp.__name__, properties, required)
    if _is_typeddict(tp):
        if tp in seen:
            raise UnsupportedType(f"{tp.__qualname__} refers to itself (install pydantic for that)")
        hints = _hints(tp)
        properties = {k: _schema(v, (*seen, tp)) for k, v in hints.items()}
        required = [k for k in hints if k in tp.__required_keys__]
        return _object(tp.__name__, properties, required)
    raise UnsupportedType(unsupported(tp))


def _container_schema(
    tp: Any, origin: Any, args: tuple[Any, ...], seen: tuple[Any, ...]
) -> dict[str, Any] | None:
    """Lists, sets, tuples and ``dict[str, X]``; None for anything else."""
    if tp in (list, set, frozenset, tuple) or origin in (list, set, frozenset):
        item = args[0] if args else Any
        return {"type": "array", "items": _schema(item, seen)}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _schema(args[0], seen)}
        items = [_schema(a, seen) for a in args]
        return {
            "type": "array",
            "prefixItems": items,
            "minItems": len(items),
            "maxItems": len(items),
        }
    if tp is dict or origin is dict:
        if args and args[0] is not str:
            raise UnsupportedType(
                f"{type_name(tp)}: JSON object keys are strings; use dict[str, ...]"
            )
        value = args[1] if len(args) == 2 else Any
        return {"type": "object", "additionalProperties": _schema(value, seen)}
    return None


def _object(title: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"title": title, "type": "object", "properties": properties}
    if required:
        out["required"] = required
    out["additionalProperties"] = False
    return out


def _hints(tp: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(tp, include_extras=True)
    except Exception as exc:
        raise UnsupportedType(
            f"the type hints of {type_name(tp)} cannot be read ({_first_line(exc)})"
        ) from None


def _convert(tp: Any, value: Any) -> Any:
    """A JSON value that passed the schema of ``tp`` -> an object of ``tp``."""
    origin = _origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _convert(args[0], value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if _is_union(tp):
        for arg in args:
            try:
                _validate(_validator(_schema(arg, ())), value)
            except Invalid:
                continue
            return _convert(arg, value)
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type) and isinstance(value, Mapping):
        hints = _hints(tp)
        kwargs = {k: _convert(hints.get(k, Any), v) for k, v in value.items()}
        return tp(**kwargs)
    if _is_typeddict(tp) and isinstance(value, Mapping):
        hints = _hints(tp)
        return {k: _convert(hints.get(k, Any), v) for k, v in value.items()}
    if isinstance(value, list):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return tuple(_convert(a, v) for a, v in zip(args, value, strict=False))
        item = args[0] if args else Any
        items = [_convert(item, v) for v in value]
        if tp is tuple or origin is tuple:
            return tuple(items)
        if tp in (set, frozenset) or origin in (set, frozenset):
            return (frozenset if frozenset in (tp, origin) else set)(items)
        return items
    if (tp is dict or origin is dict) and isinstance(value, Mapping) and len(args) == 2:
        return {k: _convert(args[1], v) for k, v in value.items()}
    return value
