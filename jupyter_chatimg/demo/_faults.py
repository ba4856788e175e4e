"""Fault injection: parse a fault spec (``X-Demo-Fault`` header or ``model@spec``).

The syntax is documented in the package docstring (``jupyter_chatimg.demo``).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, fields
from http import HTTPStatus

from ._request import DemoHTTPError

#: Markdown/HTML injection payloads sent by the ``mdinject`` fault, one per line of the
#: reply; ``PORT`` is replaced by the server's port. Keep in sync with the package docstring.
MDINJECT_PAYLOADS: tuple[str, ...] = (
    "<img src=x onerror=alert(1)>",
    "<script>alert(2)</script>",
    "[click](javascript:alert(3))",
    "![x](http://127.0.0.1:PORT/leak?q=secret)",
    "![ref][leak]\n\n[leak]: http://127.0.0.1:PORT/leak?q=ref",
    "<http://127.0.0.1:PORT/leak?q=autolink>",
    "<!--><img src=x onerror=alert(4)>-->",
    "<!-- --!><img src=x onerror=alert(5)>",
    '<a href="data:text/html,<script>alert(6)</script>">data link</a>',
    "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCg3KTwvc2NyaXB0Pg==)",
    "[vb](vbscript:msgbox(8))",
    "<svg onload=alert(9)>",
    '<iframe src="javascript:alert(10)"></iframe>',
    "`<b>inline code stays literal</b>`",
    '```html\n<script>alert("fenced code stays literal")</script>\n```',
)


def mdinject_text(port: int) -> str:
    """The injection payloads as one markdown block for a server on ``port``."""
    body = "\n\n".join(p.replace("PORT", str(port)) for p in MDINJECT_PAYLOADS)
    return "\n\n**Injection test payloads follow (mdinject fault):**\n\n" + body + "\n"


#: The error ``type`` and ``code`` an injected ``status=CODE`` fault answers with.
STATUS_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    408: ("timeout_error", "timeout"),
    409: ("conflict_error", "conflict"),
    422: ("invalid_request_error", "unprocessable"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


def injected_error(status: int, headers: dict[str, str] | None = None) -> DemoHTTPError:
    """The error a ``status=CODE`` fault answers (live requests and batch lines alike)."""
    kind, code = STATUS_ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    message = f"demo fault: injected {status} {reason}"
    return DemoHTTPError(status, message, type=kind, code=code, headers=headers)


class FaultSyntaxError(ValueError):
    """A fault spec that cannot be parsed."""


@dataclass(frozen=True)
class Faults:
    """A parsed fault spec; ``spec`` is the normalised text (the key for ``times``)."""

    spec: str = ""
    status: int | None = None
    retry_after: str | None = None
    retry_after_ms: int | None = None
    times: int | None = None
    html: int | None = None
    cut: int | None = None
    eof: int | None = None
    error: int | None = None
    event_error: int | None = None
    malformed: int | None = None
    slow: float = 0.0
    delay: float = 0.0
    hang: bool = False
    long: int | None = None
    huge: int | None = None
    mdinject: bool = False
    ping: bool = False
    tag: str | None = None
    image_url: str | None = None
    batch_fail: bool = False
    batch_expire: int | None = None

    @property
    def any(self) -> bool:
        """Whether any fault is set."""
        return bool(self.spec)


_INT = {
    "status",
    "times",
    "html",
    "cut",
    "eof",
    "error",
    "event_error",
    "malformed",
    "long",
    "huge",
    "retry_after_ms",
    "batch_expire",
}
_FLOAT = {"slow", "delay"}
_FLAG = {"hang", "mdinject", "ping", "batch_fail"}
_KNOWN = {f.name for f in fields(Faults)} - {"spec"}
IMAGE_URL_MODES = ("ok", "404", "notimage")
MAX_LONG = 1_000_000
MAX_HUGE = 20_000


def parse_faults(*texts: str | None) -> Faults:
    """Parse and merge fault specs (``;``-separated ``key=value`` or ``flag`` items)."""
    items = [i.strip() for t in texts if t for i in t.split(";") if i.strip()]
    values: dict[str, object] = {}
    for item in items:
        key, _, raw = item.partition("=")
        name = key.strip().lower().replace("-", "_")
        raw = raw.strip()
        if name not in _KNOWN:
            known = ", ".join(sorted(k.replace("_", "-") for k in _KNOWN))
            raise FaultSyntaxError(f"unknown demo fault {key.strip()!r}; known faults: {known}")
        try:
            if name == "image_url":
                values[name] = raw.lower() or "ok"
                if values[name] not in IMAGE_URL_MODES:
                    raise ValueError(raw)
            elif name in _FLAG:
                values[name] = raw.lower() not in ("0", "false", "no", "off")
            elif name in _INT:
                values[name] = int(raw)
            elif name in _FLOAT:
                values[name] = float(raw)
            else:  # retry_after (seconds or an HTTP date, sent as given) or tag
                if not raw or not re.fullmatch(r"[\w ,:+.-]+", raw):
                    raise ValueError(raw)
                values[name] = raw
        except ValueError:
            raise FaultSyntaxError(
                f"demo fault {key.strip()!r} needs a valid value, got {raw!r}"
            ) from None
    for name in ("status", "html"):
        v = values.get(name)
        if isinstance(v, int) and not 400 <= v <= 599:
            raise FaultSyntaxError(f"demo fault {name}={v}: give an HTTP error status, 400 to 599")
    for name, cap in (("long", MAX_LONG), ("huge", MAX_HUGE)):
        v = values.get(name)
        if isinstance(v, int) and not 1 <= v <= cap:
            raise FaultSyntaxError(f"demo fault {name}={v}: give a number from 1 to {cap}")
    expire = values.get("batch_expire")
    if isinstance(expire, int) and expire < 0:
        raise FaultSyntaxError(
            f"demo fault batch-expire={expire}: give a number of lines, 0 or more"
        )
    for name in ("slow", "delay"):
        v = values.get(name)
        if isinstance(v, float) and not 0 <= v <= 600:
            raise FaultSyntaxError(f"demo fault {name}={v}: give seconds from 0 to 600")
    return Faults(spec=";".join(items), **values)  # type: ignore[arg-type]


class FaultCounter:
    """Counts requests per spec string, for ``times=N`` and for tests (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def active(self, faults: Faults) -> bool:
        """Count this request; whether its faults apply (always, unless ``times`` ran out)."""
        if not faults.any:
            return False
        with self._lock:
            n = self._counts.get(faults.spec, 0) + 1
            self._counts[faults.spec] = n
        return faults.times is None or n <= faults.times

    def count(self, spec: str) -> int:
        """How many requests carried ``spec`` (normalised as ``Faults.spec``)."""
        with self._lock:
            return self._counts.get(spec, 0)
