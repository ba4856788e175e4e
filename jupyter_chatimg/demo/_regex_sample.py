"""A short string that a regular expression matches, for JSON Schema ``pattern``.

It walks the parse tree of Python's own regex parser (``re._parser``, ``sre_parse``
before 3.11) and takes the shortest way through: fewest repeats, first branch,
first character of a class (``k`` > 0 varies those choices, for ``uniqueItems``). The result is checked with ``re.search``; patterns
it cannot satisfy (back-references, tricky look-arounds) give None.
"""

from __future__ import annotations

import importlib
import re
import warnings
from functools import lru_cache
from typing import Any

_POOL = "a0_ xA-."
_CATEGORY = {
    "CATEGORY_DIGIT": "0",
    "CATEGORY_NOT_DIGIT": "a",
    "CATEGORY_WORD": "a",
    "CATEGORY_NOT_WORD": " ",
    "CATEGORY_SPACE": " ",
    "CATEGORY_NOT_SPACE": "a",
}


def _parser() -> Any:
    try:
        return importlib.import_module("re._parser")
    except ImportError:  # Python 3.10
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return importlib.import_module("sre_parse")


class _Unsupported(Exception):
    pass


def _in_set(items: list[tuple[Any, Any]], ch: str) -> bool:
    for op, arg in items:
        name = str(op)
        if name == "LITERAL" and ord(ch) == arg:
            return True
        if name == "RANGE" and arg[0] <= ord(ch) <= arg[1]:
            return True
        if name == "CATEGORY" and re.fullmatch(_category_class(str(arg)), ch):
            return True
    return False


def _category_class(name: str) -> str:
    return {
        "CATEGORY_DIGIT": r"\d",
        "CATEGORY_NOT_DIGIT": r"\D",
        "CATEGORY_WORD": r"\w",
        "CATEGORY_NOT_WORD": r"\W",
        "CATEGORY_SPACE": r"\s",
        "CATEGORY_NOT_SPACE": r"\S",
    }.get(name, r"[^\s\S]")


class _Picker:
    """Chooses among ``n`` options at each decision point: the digits of ``k`` in a mixed
    radix, so ``k = 0`` takes every first option and other ``k`` give other strings."""

    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, n: int) -> int:
        if n <= 1:
            return 0
        i = self.k % n
        self.k //= n
        return i


def _class_chars(items: list[tuple[Any, Any]]) -> list[str]:
    if items and str(items[0][0]) == "NEGATE":
        rest = items[1:]
        found = [ch for ch in _POOL if not _in_set(rest, ch)]
        if not found:
            raise _Unsupported
        return found
    chars: list[str] = []
    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            chars.append(chr(arg))
        elif name == "RANGE":
            chars.extend(chr(c) for c in range(arg[0], min(arg[1], arg[0] + 9) + 1))
        elif name == "CATEGORY":
            first = _CATEGORY.get(str(arg), "a")
            chars.extend([first, *("123" if first == "0" else "bcd" if first == "a" else "")])
        else:
            raise _Unsupported
    return chars


def _walk(tree: Any, pick: _Picker) -> str:
    out: list[str] = []
    for op, arg in tree:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name == "NOT_LITERAL":
            options = [c for c in _POOL if ord(c) != arg]
            out.append(options[pick(len(options))])
        elif name == "ANY":
            out.append("abcd"[pick(4)])
        elif name == "IN":
            chars = _class_chars(list(arg))
            out.append(chars[pick(len(chars))])
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = arg
            count = low + pick(min(3, high - low + 1))
            out.extend(_walk(sub, pick) for _ in range(count))
        elif name == "SUBPATTERN":
            out.append(_walk(arg[-1], pick))
        elif name == "ATOMIC_GROUP":
            out.append(_walk(arg, pick))
        elif name == "BRANCH":
            branches = arg[1]
            out.append(_walk(branches[pick(len(branches))], pick))
        elif name in ("AT", "ASSERT", "ASSERT_NOT"):
            continue
        else:
            raise _Unsupported
    return "".join(out)


@lru_cache(maxsize=1024)
def sample(pattern: str, k: int = 0) -> str | None:
    """A short string that ``re.search(pattern, s)`` accepts (``k`` > 0: another one), or
    None."""
    try:
        found = _walk(_parser().parse(pattern), _Picker(k))
        return found if re.search(pattern, found) else None
    except (_Unsupported, re.error, StopIteration, IndexError, TypeError, ValueError):
        return None
