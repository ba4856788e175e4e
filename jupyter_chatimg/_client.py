"""The HTTP client: the only module that imports httpx.

POST to ``/chat/completions`` (SSE via httpx-sse, or a whole JSON reply),
retries before the first byte, timeouts, cancellation, ``GET /models``, and
fetching images that a reply points at (http(s) only, no key, no cookies,
size/time/pixel limits, no private addresses unless the endpoint is on one).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
from httpx_sse import EventSource

from ._config import Settings
from ._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ChatImgError,
    ImageInputError,
    NotFoundError,
    StreamError,
    one_line,
)
from ._images import decode_data_uri, decode_image_bytes
from ._result import ChatResult
from ._wire import Delta, StreamParser, error_from_response, parse_completion, retry_after_seconds

__all__ = ["Cancel", "Client", "fetch_image", "retry_delay"]

USER_AGENT = "jupyter-chatimg/0.1"
RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
MAX_RETRY_AFTER = 60.0
"""Longer server advice than this is not waited for: exponential backoff instead."""
BACKOFF_BASE = 0.5
BACKOFF_MAX = 8.0
MAX_REDIRECTS = 5
ERROR_BODY_BYTES = 100_000
"""How much of an error answer is read (its message is near the start)."""
IMAGE_FETCH_TIMEOUT = 30.0

Resolver = Callable[[str, int], list[str]]

DEFAULT_IMAGE_TRANSPORT: httpx.BaseTransport | None = None
"""Transport for image downloads when none is passed (a hook for tests and proxies)."""

DEFAULT_SLEEP: Callable[[float], None] | None = None
"""How a ``Client`` made without ``sleep=`` waits between retries (a hook for tests);
None: wait on the request's ``Cancel``, so that Stop ends the wait at once."""


_SSL_CONTEXT: ssl.SSLContext | None = None


def ssl_context() -> ssl.SSLContext:
    """The TLS context every request uses (httpx's default: certifi's CA bundle).

    Built once: loading the CA bundle takes 15-40 ms, which every request (and
    every time to first token) paid when each ``httpx.Client`` built its own.
    """
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        _SSL_CONTEXT = httpx.create_ssl_context(trust_env=False)
    return _SSL_CONTEXT


def resolve_host(host: str, port: int) -> list[str]:
    """The IP addresses ``host`` resolves to (the one place that does DNS)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _default_resolver() -> Resolver:
    # Looked up at call time so tests can replace resolve_host (there is no DNS offline).
    return resolve_host


def retry_delay(
    attempt: int, headers: Mapping[str, str] | None = None, *, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based).

    The server's ``retry-after-ms`` / ``retry-after`` when it is at most
    ``MAX_RETRY_AFTER``; else exponential backoff with jitter.
    """
    advice = retry_after_seconds(headers or {})
    if advice is not None and advice <= MAX_RETRY_AFTER:
        return advice
    base: float = min(BACKOFF_MAX, BACKOFF_BASE * (2**attempt))
    jitter: float = (rng or random).uniform(0.75, 1.0)
    return base * jitter


class Cancel:
    """A Stop button for one request: thread-safe, closes the connection at once."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._response: httpx.Response | None = None
        self.reason = "stopped"

    def set(self, reason: str = "stopped") -> None:
        self.reason = reason
        self._event.set()
        with self._lock:
            response = self._response
        if response is not None:
            # Closing from another thread is best effort: the reader notices either way.
            with contextlib.suppress(Exception):
                response.close()

    @property
    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)

    def _attach(self, response: httpx.Response | None) -> None:
        with self._lock:
            self._response = response


class Client:
    """Talks to one endpoint with one set of settings.

    ``transport`` is injected for tests and exotic set-ups (as in httpx).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        resolver: Resolver | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings
        self._transport = transport
        self._resolver = resolver
        self._sleep = sleep if sleep is not None else DEFAULT_SLEEP
        self.attempts: list[tuple[int | None, float]] = []
        """(status or None for a connection error, delay before the next try) per failed try."""

    # -- the endpoint ---------------------------------------------------------

    def _headers(self) -> httpx.Headers:
        # httpx.Headers masks Authorization in its repr: a verbose traceback that shows
        # local variables (IPython's %xmode Verbose) must not show the key.
        headers = httpx.Headers(
            {"User-Agent": USER_AGENT, "Accept": "application/json, text/event-stream"}
        )
        if self.settings.api_key is not None:
            headers["Authorization"] = "Bearer " + self.settings.api_key.reveal()
        return headers

    def _http(self) -> httpx.Client:
        s = self.settings
        timeout = httpx.Timeout(s.timeout, connect=s.connect_timeout, pool=s.connect_timeout)
        # httpx drops Authorization on redirects to another origin; we also only
        # follow redirects that stay on the endpoint's host (see _send).
        return httpx.Client(
            timeout=timeout,
            transport=self._transport,
            follow_redirects=False,
            trust_env=False,
            verify=ssl_context(),
        )

    def _url(self, path: str) -> str:
        return self.settings.base_url.rstrip("/") + path

    def list_models(self) -> list[str]:
        """Model ids from ``GET /models`` (an ``APIError`` if the server has none)."""
        with self._http() as http:
            response = self._request(http, "GET", self._url("/models"), None, None)
            try:
                data = json.loads(_read_at_most(response, self.settings.max_reply_bytes))
            except ValueError:
                raise APIError(
                    f"GET /models on {self.settings.host} did not return JSON; check the base URL",
                    status=response.status_code,
                ) from None
            except httpx.HTTPError as exc:
                raise APIConnectionError(
                    f"the connection to {self.settings.host} broke while listing models "
                    f"({type(exc).__name__}); try again"
                ) from None
            finally:
                response.close()
        items = data.get("data") if isinstance(data, Mapping) else data
        if not isinstance(items, list):
            raise APIError("GET /models did not return a list of models", status=200, body=data)
        return [str(m.get("id")) for m in items if isinstance(m, Mapping) and m.get("id")]

    def complete(
        self,
        body: dict[str, Any],
        *,
        on_delta: Callable[[Delta, StreamParser], None] | None = None,
        on_retry: Callable[[str], None] | None = None,
        cancel: Cancel | None = None,
    ) -> ChatResult:
        """Send one chat completion request and read the whole reply.

        Streams when ``body["stream"]``; every content delta goes to
        ``on_delta`` as it arrives. A reply cut short raises ``StreamError``
        carrying the partial result (``.error`` set).
        """
        cancel = cancel or Cancel()
        started = time.perf_counter()
        parser = StreamParser()
        first: list[float] = []
        try:
            with self._http() as http:
                response = self._request(
                    http, "POST", self._url("/chat/completions"), body, on_retry, cancel
                )
                cancel._attach(response)
                try:
                    content_type = response.headers.get("content-type", "").lower()
                    if "text/event-stream" in content_type:
                        self._read_stream(response, parser, on_delta, cancel, started, first)
                        result = parser.result()
                        if not parser.finished:
                            raise StreamError(
                                "the connection closed before the reply finished (no [DONE]); "
                                "the partial reply is kept - run the cell again for a whole one",
                                partial=result,
                            )
                    else:
                        result = self._read_whole(response, started, first)
                finally:
                    cancel._attach(None)
                    response.close()
        except StreamError as exc:
            self._scrub(exc)
            partial = exc.partial or parser.result()
            self._finish(partial, body, started, first, exc)
            exc.partial = partial
            raise
        except KeyboardInterrupt:
            partial = parser.result()
            err = StreamError(
                "interrupted by the user; the connection was closed and the partial reply kept",
                partial=partial,
            )
            err.reason = "interrupted"  # type: ignore[attr-defined]
            self._finish(partial, body, started, first, err)
            raise err from None
        except APIError as exc:
            self._scrub(exc)
            raise
        self._finish(result, body, started, first, None)
        return result

    def _finish(
        self,
        result: ChatResult,
        body: dict[str, Any],
        started: float,
        first: list[float],
        error: BaseException | None,
    ) -> None:
        result.timings.total = time.perf_counter() - started
        result.timings.first_token = (first[0] - started) if first else None
        result.endpoint = self.settings.host
        result.error = error
        if result.model is None:
            result.model = str(body.get("model"))

    def _read_stream(
        self,
        response: httpx.Response,
        parser: StreamParser,
        on_delta: Callable[[Delta, StreamParser], None] | None,
        cancel: Cancel,
        started: float,
        first: list[float],
    ) -> None:
        limit = self.settings.max_reply_bytes
        # httpx-sse reads the text through ``iter_text``; the proxy counts it as it
        # comes, so the size bound holds even for one endless line with no event end.
        events = EventSource(cast(httpx.Response, _Counted(response, limit)))
        try:
            for sse in events.iter_sse():
                if cancel.is_set:
                    raise self._cancelled(parser, cancel)
                for delta in parser.feed(sse.data, sse.event or "message"):
                    if not first and (delta.text or delta.images or delta.refusal):
                        first.append(time.perf_counter())
                    if on_delta is not None:
                        on_delta(delta, parser)
                if parser.done:
                    break
        except _TooLarge:
            raise StreamError(
                f"the reply passed the size limit of {_size(limit)} and was cut; "
                "raise ChatImg.max_reply_bytes if you trust this endpoint",
                partial=parser.result(),
            ) from None
        except httpx.TimeoutException:
            if cancel.is_set:
                raise self._cancelled(parser, cancel) from None
            raise StreamError(
                f"no data from {self.settings.host} for {self.settings.timeout:g} s mid-reply; "
                "the partial reply is kept (raise --timeout for slow models)",
                partial=parser.result(),
            ) from None
        except (httpx.HTTPError, OSError, RuntimeError) as exc:
            if cancel.is_set:
                raise self._cancelled(parser, cancel) from None
            raise StreamError(
                f"the connection to {self.settings.host} broke mid-reply ({type(exc).__name__}); "
                "the partial reply is kept - run the cell again for a whole one",
                partial=parser.result(),
            ) from None
        if cancel.is_set and not parser.finished:
            raise self._cancelled(parser, cancel)

    @staticmethod
    def _cancelled(parser: StreamParser, cancel: Cancel) -> StreamError:
        err = StreamError(f"{cancel.reason}; the partial reply is kept", partial=parser.result())
        err.reason = cancel.reason  # type: ignore[attr-defined]
        return err

    def _read_whole(
        self, response: httpx.Response, started: float, first: list[float]
    ) -> ChatResult:
        limit = self.settings.max_reply_bytes
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise APIError(
                f"the reply is {_size(int(declared))}, above the limit of {_size(limit)}; "
                "raise ChatImg.max_reply_bytes if you trust this endpoint",
                status=response.status_code,
            )
        buf = bytearray()
        try:
            for piece in response.iter_bytes():
                if not first:
                    first.append(time.perf_counter())
                buf += piece
                if len(buf) > limit:
                    raise APIError(
                        f"the reply passed the size limit of {_size(limit)}; "
                        "raise ChatImg.max_reply_bytes if you trust this endpoint",
                        status=response.status_code,
                    )
        except httpx.TimeoutException:
            raise APITimeoutError(
                f"{self.settings.host} stopped sending the reply for {self.settings.timeout:g} s; "
                "try again, or raise --timeout for slow models"
            ) from None
        except (httpx.HTTPError, OSError) as exc:
            raise APIConnectionError(
                f"the connection to {self.settings.host} broke while reading the reply "
                f"({type(exc).__name__}); try again"
            ) from None
        try:
            obj = json.loads(buf)  # from the bytearray: no second copy of a large reply
        except ValueError:
            raise APIError(
                f"the reply from {self.settings.host} is not JSON: "
                f"{one_line(bytes(buf[:200]).decode('utf-8', 'replace'), 120)}; "
                "check that the base URL points at an OpenAI-compatible API",
                status=response.status_code,
            ) from None
        del buf
        return parse_completion(obj)

    def _request(
        self,
        http: httpx.Client,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        on_retry: Callable[[str], None] | None,
        cancel: Cancel | None = None,
    ) -> httpx.Response:
        """Send with retries before the first byte; return a 2xx streaming response."""
        payload = (
            json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            if body is not None
            else None
        )
        headers = self._headers()
        if payload is not None:
            headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            if cancel is not None and cancel.is_set:
                raise StreamError(f"{cancel.reason} before the reply began", partial=ChatResult())
            status: int | None = None
            resp_headers: Mapping[str, str] = {}
            try:
                response = self._send(http, method, url, payload, headers)
            except httpx.TimeoutException as exc:
                error: APIError = APITimeoutError(
                    f"{self.settings.host} did not answer within "
                    f"{self._timeout_of(exc):g} s; check that the server is up, or raise --timeout"
                )
            except (httpx.TransportError, OSError) as exc:
                error = APIConnectionError(
                    f"cannot reach {self.settings.host} ({_reason(exc)}); check the base URL "
                    "and that the server is running"
                )
            else:
                if response.status_code < 300:
                    return response
                status = response.status_code
                resp_headers = response.headers
                try:
                    raw = _read_at_most(response, ERROR_BODY_BYTES)
                except httpx.HTTPError:
                    raw = b""
                finally:
                    response.close()
                error = error_from_response(status, resp_headers, raw)
                self._scrub(error)
                self._add_hint(error)
                if status not in RETRYABLE_STATUS:
                    raise error
            if attempt >= self.settings.max_retries:
                if attempt:
                    error.hint = (
                        error.hint + "; " if error.hint else ""
                    ) + f"gave up after {attempt + 1} tries"
                raise error
            delay = retry_delay(attempt, resp_headers)
            self.attempts.append((status, delay))
            if on_retry is not None:
                what = f"HTTP {status} from {self.settings.host}" if status else error.message
                on_retry(
                    f"{what.split(';')[0]}; retrying in {delay:.1f} s "
                    f"({attempt + 1}/{self.settings.max_retries})"
                )
            if self._wait(delay, cancel):
                raise StreamError(
                    f"{cancel.reason if cancel else 'stopped'} before the reply began",
                    partial=ChatResult(),
                )
            attempt += 1

    def _wait(self, delay: float, cancel: Cancel | None) -> bool:
        """Wait ``delay`` seconds before a retry; True if the request was cancelled."""
        if self._sleep is not None:
            self._sleep(delay)
            return cancel is not None and cancel.is_set
        if cancel is not None:
            return cancel.wait(delay)
        time.sleep(delay)
        return False

    def _timeout_of(self, exc: Exception) -> float:
        if isinstance(exc, httpx.ConnectTimeout):
            return self.settings.connect_timeout
        return self.settings.timeout

    def _send(
        self,
        http: httpx.Client,
        method: str,
        url: str,
        payload: bytes | None,
        headers: httpx.Headers,
    ) -> httpx.Response:
        origin = _origin(url)
        for _ in range(MAX_REDIRECTS + 1):
            request = http.build_request(method, url, content=payload, headers=headers)
            response = http.send(request, stream=True)
            if (
                response.status_code not in (301, 302, 303, 307, 308)
                or "location" not in response.headers
            ):
                return response
            target = urljoin(url, response.headers["location"])
            response.close()
            if _origin(target) != origin:
                # The key goes only to the endpoint's host (same scheme and port, too:
                # never in clear text after a redirect from https to http).
                headers = headers.copy()
                headers.pop("authorization", None)
            if response.status_code == 303:
                method, payload = "GET", None
            url = target
        raise APIConnectionError(
            f"too many redirects from {self.settings.host}; check the base URL"
        )

    def _scrub(self, error: APIError) -> None:
        """Remove the key from what the server said: some gateways echo it in errors."""
        if self.settings.api_key is None:
            return
        key = self.settings.api_key.reveal()
        if len(key) < 8 or key not in f"{error.message}{error.body}":
            return
        error.message = error.message.replace(key, "***")
        error.args = (error.message,)
        error.body = _scrubbed(error.body, key)

    def _add_hint(self, error: APIError) -> None:
        s = self.settings
        if isinstance(error, AuthenticationError):
            if s.api_key is None:
                error.hint = (
                    f"no key was sent to {s.host}: name the environment variable that holds "
                    "its key with --api-key-env NAME (or %config ChatImg.api_key_env)"
                )
            else:
                error.hint = f"check the key in {s.key_source}"
        elif isinstance(error, NotFoundError):
            error.hint = f"check the model name ({s.model!r}) and the base URL; %chatimg_models lists the models"
        elif isinstance(error, BadRequestError) and "stream_options" in error.message:
            error.hint = "this server rejects stream_options"


class _TooLarge(Exception):
    """The reply passed ``max_reply_bytes``."""


class _Counted:
    """The response as httpx-sse reads it (``headers``, and ``iter_text`` for 0.4.2+ or
    ``iter_lines`` for 0.4.0 and 0.4.1), counting the text as it comes."""

    def __init__(self, response: httpx.Response, limit: int) -> None:
        self._response = response
        self._limit = limit
        self.received = 0
        # httpx-sse compares the media type case-sensitively; media types are not.
        self.headers = response.headers.copy()
        self.headers["content-type"] = self.headers.get("content-type", "").lower()

    def iter_text(self) -> Iterator[str]:
        for text in self._response.iter_text():
            self.received += len(text)
            if self.received > self._limit:
                raise _TooLarge
            yield text

    def iter_lines(self) -> Iterator[str]:
        """Lines end at CRLF, LF or CR only (not at U+2028 etc. as httpx's ``iter_lines``)."""
        line: list[str] = []
        after_cr = False
        for text in self.iter_text():
            if not text:
                continue
            if after_cr and text[0] == "\n":
                text = text[1:]  # the LF of a CRLF split between two reads
            after_cr = text.endswith("\r")
            *ended, rest = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
            if ended:
                ended[0] = "".join(line) + ended[0]
                line = []
                yield from ended
            line.append(rest)
        if any(line):
            yield "".join(line)


def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    """The first ``limit`` bytes of the body; the rest is not read (an error page may be endless)."""
    buf = bytearray()
    for piece in response.iter_bytes():
        buf += piece
        if len(buf) >= limit:
            break
    return bytes(buf[:limit])


def _size(n: int) -> str:
    """``n`` bytes for a message: 512 bytes, 40 KB, 3.5 MB."""
    if n < 1000:
        return f"{n} bytes"
    if n < 1_000_000:
        return f"{n / 1000:.3g} KB"
    return f"{n / 1_000_000:.3g} MB"


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port or default


def _scrubbed(value: Any, key: str) -> Any:
    if isinstance(value, str):
        return value.replace(key, "***")
    if isinstance(value, Mapping):
        return {k: _scrubbed(v, key) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v, key) for v in value]
    return value


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if (
        "Name or service not known" in text
        or "nodename nor servname" in text
        or "getaddrinfo" in text
    ):
        return "the host name does not resolve"
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    return one_line(text, 80)


# -- returned images --------------------------------------------------------------


def _is_public(ip: str) -> bool:
    """A globally routed unicast address (not private, loopback, link-local, shared
    (CGNAT), documentation, reserved ...); IPv4 inside IPv6 is judged as IPv4."""
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address):
        inner = addr.ipv4_mapped or addr.sixtofour or (addr.teredo[1] if addr.teredo else None)
        if inner is not None:
            addr = inner
    return addr.is_global and not addr.is_multicast


def endpoint_is_private(settings: Settings, resolver: Resolver | None = None) -> bool:
    """Whether the endpoint itself is on a private, loopback or link-local address."""
    parts = urlsplit(settings.base_url)
    if not parts.hostname:
        return False
    try:
        ips = (resolver or _default_resolver())(parts.hostname, parts.port or 443)
    except (OSError, ValueError):
        return False
    return any(not _is_public(ip) for ip in ips)


@contextmanager
def _image_http(transport: httpx.BaseTransport | None, timeout: float) -> Iterator[httpx.Client]:
    # A fresh client per image: no cookies carried over, no auth, no Referer.
    with httpx.Client(
        timeout=httpx.Timeout(timeout),
        transport=transport,
        follow_redirects=False,
        trust_env=False,
        verify=ssl_context(),
    ) as http:
        yield http


def fetch_image(
    url: str,
    *,
    allow_private: bool = False,
    allowed_hosts: tuple[str, ...] = (),
    max_bytes: int = 50_000_000,
    timeout: float = IMAGE_FETCH_TIMEOUT,
    resolver: Resolver | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Any:
    """Decode a ``data:`` URI or download an http(s) image, under the safety rules.

    Raises ``ImageInputError`` with a one-line reason.
    """
    if url.startswith("data:"):
        return decode_data_uri(url, label="returned image")
    deadline = time.monotonic() + timeout
    resolver = resolver or _default_resolver()
    with _image_http(transport, timeout) as http:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ImageInputError(
                    f"not fetched: only http(s) image links are loaded, not {parts.scheme or 'this'}:"
                )
            host = parts.hostname.lower()
            if allowed_hosts and not any(
                host == h or host.endswith("." + h) for h in allowed_hosts
            ):
                raise ImageInputError(f"not fetched: {host} is not in ChatImg.image_hosts")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            try:
                ips = resolver(host, port)
            except (OSError, ValueError):
                raise ImageInputError(f"not fetched: the host {host} does not resolve") from None
            if not ips:
                raise ImageInputError(f"not fetched: the host {host} does not resolve")
            if not allow_private and not all(_is_public(ip) for ip in ips):
                raise ImageInputError(
                    f"not fetched: {host} is a private, loopback or link-local address "
                    "(allowed only when the endpoint itself is on one)"
                )
            ip = ips[0]
            # Connect to the address we checked (no second DNS answer can differ).
            netloc = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
            pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
            headers = {
                "Host": parts.netloc.rsplit("@", 1)[-1],
                "User-Agent": USER_AGENT,
                "Accept": "image/*",
            }
            extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
            try:
                request = http.build_request("GET", pinned, headers=headers, extensions=extensions)
                response = http.send(request, stream=True)
            except httpx.TimeoutException:
                raise ImageInputError(
                    f"not fetched: {host} did not answer within {timeout:g} s"
                ) from None
            except (httpx.TransportError, OSError) as exc:
                raise ImageInputError(
                    f"not fetched: cannot reach {host} ({_reason(exc)})"
                ) from None
            try:
                if (
                    response.status_code in (301, 302, 303, 307, 308)
                    and "location" in response.headers
                ):
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status_code != 200:
                    raise ImageInputError(
                        f"not fetched: {host} answered HTTP {response.status_code}"
                    )
                ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if ctype and not (
                    ctype.startswith("image/") or ctype == "application/octet-stream"
                ):
                    raise ImageInputError(f"not fetched: the link is {ctype}, not an image")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise ImageInputError(
                        f"not fetched: {_size(int(declared))} is above the {_size(max_bytes)} limit"
                    )
                buf = bytearray()
                for piece in response.iter_bytes():
                    buf += piece
                    if len(buf) > max_bytes:
                        raise ImageInputError(
                            f"not fetched: larger than the {_size(max_bytes)} limit"
                        )
                    if time.monotonic() > deadline:
                        raise ImageInputError(f"not fetched: took longer than {timeout:g} s")
            except httpx.TimeoutException:
                raise ImageInputError(
                    f"not fetched: {host} did not answer within {timeout:g} s"
                ) from None
            except httpx.HTTPError as exc:
                raise ImageInputError(
                    f"not fetched: the download from {host} broke ({type(exc).__name__})"
                ) from None
            finally:
                response.close()
            return decode_image_bytes(bytes(buf), label="returned image")
    raise ImageInputError("not fetched: too many redirects")


def fetch_result_images(
    result: ChatResult,
    settings: Settings,
    *,
    resolver: Resolver | None = None,
    transport: httpx.BaseTransport | None = None,
) -> None:
    """Fill every choice's ``images`` from its ``image_urls``; failures go to ``image_errors``.

    Interrupting the kernel here stops the downloads (the rest are listed as not
    fetched) and keeps the reply.
    """
    allow_private: bool | None = True if settings.demo else None
    transport = transport or DEFAULT_IMAGE_TRANSPORT
    interrupted = False
    for choice in result.choices:
        for url in choice.image_urls:
            if interrupted:
                choice.image_errors[url] = "not fetched: interrupted by the user"
                continue
            if allow_private is None and not url.startswith("data:"):
                # Resolved only when needed: a DNS lookup per reply would slow every reply.
                allow_private = endpoint_is_private(settings, resolver)
            try:
                image = fetch_image(
                    url,
                    allow_private=bool(allow_private),
                    allowed_hosts=settings.image_hosts,
                    max_bytes=settings.max_image_bytes,
                    resolver=resolver,
                    transport=transport,
                )
            except ChatImgError as exc:
                choice.image_errors[url] = str(exc)
            except KeyboardInterrupt:
                interrupted = True
                choice.image_errors[url] = "not fetched: interrupted by the user"
            else:
                choice.images.append(image)
