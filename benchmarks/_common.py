"""Shared helpers: rows, medians, timing."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Row = dict[str, Any]

CHATIMG_ENV_PREFIXES = ("OPENAI_", "CHATIMG_")


def row(
    what: str,
    baseline: str,
    value: str,
    ratio: str = "-",
    target: str = "-",
    ok: bool | None = None,
) -> Row:
    """One line of the results table."""
    return {
        "what": what,
        "baseline": baseline,
        "value": value,
        "ratio": ratio,
        "target": target,
        "ok": ok,
    }


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``fn()`` took, and what it returned."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.2f} s"


def size(n: float) -> str:
    if n < 1000:
        return f"{n:.0f} B"
    if n < 1_000_000:
        return f"{n / 1000:.1f} KB"
    return f"{n / 1_000_000:.2f} MB"


def clean_env() -> dict[str, str]:
    """This process's environment without any endpoint or key settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(CHATIMG_ENV_PREFIXES)}


@contextmanager
def scrubbed_env() -> Iterator[None]:
    """Temporarily drop ``OPENAI_*`` / ``CHATIMG_*`` from ``os.environ``."""
    saved = {k: v for k, v in os.environ.items() if k.startswith(CHATIMG_ENV_PREFIXES)}
    for k in saved:
        del os.environ[k]
    try:
        yield
    finally:
        os.environ.update(saved)
