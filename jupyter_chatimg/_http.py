"""The HTTP layer: the only module that imports httpx.

POST a dialect's body to its path (SSE via httpx-sse, or a whole JSON reply),
retries before the first byte, timeouts, cancellation (``Cancel``), ``GET
/models``, the key kept off every host but the endpoint's, and ``download``:
the one raw GET that ``_fetch`` builds returned-image downloads on.
"""

from __future__ import annotations

import contextlib
import json
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urljoin, urlsplit

import httpx
from httpx_sse import EventSource

from ._config import Settings
from ._dialects import Delta, Dialect, ReplyParser
from ._dialects.chat import DIALECT as CHAT
from ._dialects.errors import error_from_response, retry_after_seconds
from ._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    StreamError,
    one_line,
)
from ._result import ChatResult

__all__ = [
    "Cancel",
    "Client",
    "DownloadError",
    "DownloadTimeout",
    "DownloadTooLarge",
    "DownloadUnreachable",
    "download",
    "pooled_transport",
    "retry_delay",
    "retryable",
]

USER_AGENT = "jupyter-chatimg/0.1"
RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
MAX_RETRY_AFTER = 60.0
"""Longer server advice than this is not waited for: exponential backoff instead."""
BACKOFF_BASE = 0.5
BACKOFF_MAX = 8.0
MAX_REDIRECTS = 5
DEADLINE_GRACE = 0.25
"""Seconds a deadline waits past the socket timeout of the same length (see ``download``)."""
ERROR_BODY_BYTES = 100_000
"""How much of an error answer is read (its message is near the start)."""

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


def retryable(error: APIError) -> bool:
    """Whether a failed try may be repeated: 408, 409, 429, >= 500, or no answer at all.

    Never a reply that broke off mid-way (``StreamError``): its first byte came.
    """
    if isinstance(error, StreamError):
        return False
    if error.status is None:
        return isinstance(error, APIConnectionError)
    return error.status in RETRYABLE_STATUS


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
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings
        self._transport = transport
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
        on_delta: Callable[[Delta, ReplyParser], None] | None = None,
        on_retry: Callable[[str], None] | None = None,
        cancel: Cancel | None = None,
        dialect: Dialect = CHAT,
    ) -> ChatResult:
        """Send one chat completion request and read the whole reply.

        Streams when ``body["stream"]``; every content delta goes to
        ``on_delta`` as it arrives. A reply cut short raises ``StreamError``
        carrying the partial result (``.error`` set).
        """
        cancel = cancel or Cancel()
        started = time.perf_counter()
        parser = dialect.stream_parser()
        first: list[float] = []
        try:
            with self._http() as http:
                response = self._request(
                    http,
                    "POST",
                    self._url(dialect.path),
                    body,
                    on_retry,
                    cancel,
                    dialect.form(body),
                )
                cancel._attach(response)
                try:
                    content_type = response.headers.get("content-type", "")
                    if "text/event-stream" in content_type:
                        self._read_stream(response, parser, on_delta, cancel, started, first)
                        result = parser.result()
                        if not parser.finished:
                            missing = getattr(parser, "cut_reason", "no [DONE]")
                            raise StreamError(
                                f"the connection closed before the reply finished ({missing}); "
                                "the partial reply is kept - run the cell again for a whole one",
                                partial=result,
                            )
                    else:
                        result = dialect.parse_whole(self._read_whole(response, first))
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
        parser: ReplyParser,
        on_delta: Callable[[Delta, ReplyParser], None] | None,
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
                    if not first and (
                        delta.text or delta.images or delta.refusal or delta.partial_image
                    ):
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
    def _cancelled(parser: ReplyParser, cancel: Cancel) -> StreamError:
        err = StreamError(f"{cancel.reason}; the partial reply is kept", partial=parser.result())
        err.reason = cancel.reason  # type: ignore[attr-defined]
        return err

    def _read_whole(self, response: httpx.Response, first: list[float]) -> Any:
        """The whole reply's JSON (size-bounded; ``first`` gets the time of the first byte)."""
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
        return obj

    def _request(
        self,
        http: httpx.Client,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        on_retry: Callable[[str], None] | None,
        cancel: Cancel | None = None,
        form: tuple[dict[str, str], list[Any]] | None = None,
    ) -> httpx.Response:
        """Send with retries before the first byte; return a 2xx streaming response.

        ``body`` goes as JSON, or, when ``form`` is given (a dialect's
        multipart fields and files), as ``multipart/form-data`` instead.
        """
        headers = self._headers()
        payload: _Payload | None = None
        if form is not None:
            payload = _Payload(data=form[0], files=form[1])
        elif body is not None:
            payload = _Payload(
                content=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            )
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
                if not retryable(error):
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
        payload: _Payload | None,
        headers: httpx.Headers,
    ) -> httpx.Response:
        origin = _origin(url)
        for _ in range(MAX_REDIRECTS + 1):
            # Built anew for every try and redirect: a multipart body is read as it is sent.
            request = http.build_request(
                method, url, headers=headers, **(payload.arguments() if payload else {})
            )
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


@dataclass(frozen=True)
class _Payload:
    """A request body: JSON bytes (``content``), or multipart text fields and files."""

    content: bytes | None = None
    data: Mapping[str, str] | None = None
    files: list[Any] | None = None

    def arguments(self) -> dict[str, Any]:
        """Keywords for ``httpx.Client.build_request``."""
        if self.content is not None:
            return {"content": self.content}
        return {"data": dict(self.data or {}), "files": list(self.files or [])}


class _TooLarge(Exception):
    """The reply passed ``max_reply_bytes``."""


class _Counted:
    """The response as httpx-sse reads it (``headers``, ``iter_text``), counting the
    text as it comes."""

    def __init__(self, response: httpx.Response, limit: int) -> None:
        self._response = response
        self._limit = limit
        self.received = 0
        self.headers = response.headers

    def iter_text(self) -> Iterator[str]:
        for text in self._response.iter_text():
            self.received += len(text)
            if self.received > self._limit:
                raise _TooLarge
            yield text


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


# -- raw downloads (the policy around them is _fetch's) ----------------------------


class DownloadError(Exception):
    """A download failed before its body was whole (``str``: a short reason)."""


class DownloadTimeout(DownloadError):
    """A download passed its deadline (headers included)."""


class DownloadTooLarge(DownloadError):
    """The body passed ``max_bytes``."""


class DownloadUnreachable(DownloadError):
    """No connection could be made (``str``: why)."""


@dataclass
class Downloaded:
    """What one GET brought: status, headers and (for a 200 that was accepted) the body."""

    status: int
    headers: Mapping[str, str]
    body: bytes = b""


def download(
    url: str,
    *,
    headers: Mapping[str, str],
    sni_hostname: str | None,
    timeout: float,
    max_bytes: int,
    accept: Callable[[int, Mapping[str, str]], bool],
    transport: httpx.BaseTransport | None = None,
) -> Downloaded:
    """One GET (no redirects followed, no cookies, no key) within ``timeout`` seconds in all.

    The deadline covers the whole exchange, headers included: a server that
    trickles its headers one byte at a time cannot hold the kernel. The body is
    read only when ``accept(status, headers)`` says so; past ``max_bytes`` the
    download stops with ``DownloadError``. Runs in a helper thread so the
    deadline holds whatever the socket does; the caller's thread only waits.
    """
    outcome: list[Downloaded | BaseException] = []
    done = threading.Event()
    closer: list[httpx.Client] = []

    def run() -> None:
        try:
            outcome.append(
                _download(url, headers, sni_hostname, timeout, max_bytes, accept, transport, closer)
            )
        except BaseException as exc:  # handed to the waiting thread
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="chatimg-download", daemon=True).start()
    # A little longer than the socket's own timeout, so that a silent server is
    # reported as such; a trickle that keeps the socket busy ends here.
    if not done.wait(timeout + DEADLINE_GRACE):
        for http in closer:
            with contextlib.suppress(Exception):
                http.close()
        raise DownloadTimeout("deadline")
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _download(
    url: str,
    headers: Mapping[str, str],
    sni_hostname: str | None,
    timeout: float,
    max_bytes: int,
    accept: Callable[[int, Mapping[str, str]], bool],
    transport: httpx.BaseTransport | None,
    closer: list[httpx.Client],
) -> Downloaded:
    deadline = time.monotonic() + timeout
    extensions = {"sni_hostname": sni_hostname} if sni_hostname else {}
    # A fresh client per image: no cookies carried over, no auth, no Referer.
    with httpx.Client(
        timeout=httpx.Timeout(timeout),
        transport=transport,
        follow_redirects=False,
        trust_env=False,
        verify=ssl_context(),
    ) as http:
        closer.append(http)
        try:
            request = http.build_request("GET", url, headers=dict(headers), extensions=extensions)
            response = http.send(request, stream=True)
            try:
                got = Downloaded(response.status_code, dict(response.headers))
                if not accept(got.status, got.headers):
                    return got
                buf = bytearray()
                for piece in response.iter_bytes():
                    buf += piece
                    if time.monotonic() > deadline:
                        raise DownloadTimeout("deadline")
                    if len(buf) > max_bytes:
                        raise DownloadTooLarge(_size(max_bytes))
                got.body = bytes(buf)
                return got
            finally:
                response.close()
        except httpx.TimeoutException:
            raise DownloadTimeout("no answer") from None
        except (httpx.ConnectError, OSError) as exc:
            raise DownloadUnreachable(_reason(exc)) from None
        except httpx.HTTPError as exc:
            raise DownloadError(type(exc).__name__) from None


def pooled_transport() -> httpx.BaseTransport:
    """A transport with its own connection pool and the shared TLS context (one per batch worker)."""
    return httpx.HTTPTransport(verify=ssl_context())
