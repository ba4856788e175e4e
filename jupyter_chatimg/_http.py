"""The HTTP layer: the only module that imports httpx.

POST a dialect's body to its path (SSE via httpx-sse, or a whole JSON reply),
retries before the first byte, timeouts, cancellation (``Cancel``), ``GET
/models``, the key kept off every host but the endpoint's, and ``download``:
the one raw GET that ``_fetch`` builds returned-image downloads on.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, cast
from urllib.parse import urljoin

import httpx
from httpx_sse import EventSource

from ._bounded import Abandoned, close_quietly, in_thread
from ._config import Settings, host_of, origin_of
from ._dialects import Delta, Dialect, ReplyParser
from ._dialects.chat import DIALECT as CHAT
from ._dialects.errors import body_excerpt, error_from_response
from ._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    StreamError,
    one_line,
    size_text,
)
from ._guard import GuardedStream, KeyMask, Stalled, TooLarge, TooLong, scrub_error
from ._result import ChatResult
from ._retry import retry_delay, retryable

__all__ = [
    "Cancel",
    "Client",
    "DownloadError",
    "DownloadTimeout",
    "DownloadTooLarge",
    "DownloadUnreachable",
    "download",
    "pooled_transport",
]

USER_AGENT = "jupyter-chatimg/0.1"
MAX_REDIRECTS = 5
DEADLINE_GRACE = 0.25
"""Seconds a deadline waits past the socket timeout of the same length (see ``download``)."""
ERROR_BODY_BYTES = 100_000
"""How much of an error answer is read (its message is near the start)."""

DEFAULT_SLEEP: Callable[[float], None] | None = None
"""How a ``Client`` made without ``sleep=`` waits between retries (a hook for tests);
None: wait on the request's ``Cancel``, so that Stop ends the wait at once."""


_SSL_CONTEXT: ssl.SSLContext | None = None
_NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def ssl_context() -> ssl.SSLContext:
    """The TLS context every request uses (httpx's default: certifi's CA bundle).

    Built once: loading the CA bundle takes 15-40 ms, which every request (and
    every time to first token) paid when each ``httpx.Client`` built its own.
    """
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        _SSL_CONTEXT = httpx.create_ssl_context(trust_env=False)
    return _SSL_CONTEXT


class Cancel:
    """A Stop button for one request: thread-safe, closes the connection at once."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._response: httpx.Response | None = None
        self.reason = "stopped"

    def set(self, reason: str = "stopped") -> None:
        """Stop: returns at once; the connection is closed in the background."""
        self.reason = reason
        self._event.set()
        with self._lock:
            response = self._response
        if response is not None:
            # Closing a response another thread is reading can wait on httpcore's locks:
            # never in the caller's thread (a Stop button, a cell calling panel.stop()).
            threading.Thread(target=close_quietly, args=(response,), daemon=True).start()

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

    ``transport`` is injected for tests and exotic set-ups (as in httpx); it
    belongs to the caller, who closes it: its connections are kept alive from
    one request to the next (a batch worker's pool).
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
            transport=_Borrowed(self._transport) if self._transport is not None else None,
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
                data = self._read_whole(response, [])
            finally:
                response.close()
        items = data.get("data") if isinstance(data, Mapping) else data
        if not isinstance(items, list):
            raise APIError("GET /models did not return a list of models", status=200, body=data)
        return [str(m.get("id")) for m in items if isinstance(m, Mapping) and m.get("id")]

    # -- files and batches (the Batch API, DESIGN 4.4) ----------------------------

    def request_json(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        retry_no_answer: bool = True,
        content: Callable[[], Any] | None = None,
        content_headers: Mapping[str, str] | None = None,
    ) -> Any:
        """``method path`` with a JSON body, or ``content`` (a fresh body per try, e.g. a
        file streamed from disk, with its ``content_headers``); the answer's JSON."""
        with self._http() as http:
            response = self._request(
                http,
                method,
                self._url(path),
                body,
                None,
                retry_no_answer=retry_no_answer,
                content=content,
                content_headers=content_headers,
            )
            try:
                return self._read_whole(response, [])
            finally:
                response.close()

    def download_to(self, path: str, out: BinaryIO, max_bytes: int) -> int:
        """``GET path`` (a file's content) written to ``out``; how many bytes came.

        Past ``max_bytes`` the download stops with an ``APIError``.
        """
        received = 0
        with self._http() as http:
            response = self._request(http, "GET", self._url(path), None, None)
            try:
                for piece in response.iter_bytes():
                    received += len(piece)
                    if received > max_bytes:
                        raise APIError(
                            f"{path} passed the size limit of {size_text(max_bytes)}; "
                            "raise ChatImg.max_reply_bytes if you trust this endpoint",
                            status=response.status_code,
                        )
                    out.write(piece)
            except httpx.TimeoutException:
                raise APITimeoutError(
                    f"{self.settings.host} stopped sending {path} for "
                    f"{self.settings.timeout:g} s; run again to fetch it"
                ) from None
            except (httpx.HTTPError, OSError) as exc:
                raise APIConnectionError(
                    f"the connection to {self.settings.host} broke while reading {path} "
                    f"({type(exc).__name__}); run again to fetch it"
                ) from None
            finally:
                response.close()
        return received

    def complete(
        self,
        body: dict[str, Any],
        *,
        on_delta: Callable[[Delta, ReplyParser], None] | None = None,
        on_retry: Callable[[str], None] | None = None,
        cancel: Cancel | None = None,
        dialect: Dialect = CHAT,
    ) -> ChatResult:
        """Send one request in ``dialect`` and read the whole reply.

        Streams when the server answers with an event stream; every delta goes
        to ``on_delta`` as it arrives. A reply cut short raises ``StreamError``
        carrying the partial result (``.error`` set). A kernel interrupt closes
        the connection and goes on as ``KeyboardInterrupt`` whose
        ``chatimg_error`` is that ``StreamError``, partial reply and all.
        """
        cancel = cancel or Cancel()
        started = time.perf_counter()
        parser = dialect.stream_parser()
        first: list[float] = []
        try:
            with self._http() as http:
                json_body, sending = _encoded(body, dialect)
                response = self._request(
                    http, "POST", self._url(dialect.path), json_body, on_retry, cancel, **sending
                )
                result = self._read(response, dialect, parser, on_delta, cancel, first)
        except StreamError as exc:
            self._scrub(exc)
            exc.partial = exc.partial or parser.result()
            self._finish(exc.partial, body, started, first, exc)
            raise
        except KeyboardInterrupt as interrupt:
            err = StreamError(
                "interrupted by the user; the connection was closed and the partial reply kept",
                partial=parser.result(),
            )
            err.reason = "interrupted"  # type: ignore[attr-defined]
            self._finish(err.partial, body, started, first, err)  # type: ignore[arg-type]
            interrupt.chatimg_error = err  # type: ignore[attr-defined]
            raise
        except APIError as exc:
            self._scrub(exc)
            raise
        self._finish(result, body, started, first, None)
        return result

    def _read(
        self,
        response: httpx.Response,
        dialect: Dialect,
        parser: ReplyParser,
        on_delta: Callable[[Delta, ReplyParser], None] | None,
        cancel: Cancel,
        first: list[float],
    ) -> ChatResult:
        """The reply of a 2xx response: an event stream, or one whole JSON document."""
        cancel._attach(response)
        try:
            # A media type is case-insensitive: TEXT/EVENT-STREAM is an event stream too.
            content_type = response.headers.get("content-type", "").lower()
            if "text/event-stream" not in content_type:
                return dialect.parse_whole(self._read_whole(response, first))
            self._read_stream(response, parser, on_delta, cancel, first)
            result = parser.result()
            if not parser.finished:
                missing = getattr(parser, "cut_reason", "no [DONE]")
                raise StreamError(
                    f"the connection closed before the reply finished ({missing}); "
                    "the partial reply is kept - run the cell again for a whole one",
                    partial=result,
                )
            return result
        finally:
            cancel._attach(None)
            response.close()

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
        first: list[float],
    ) -> None:
        s = self.settings
        guard = GuardedStream(response, s, self._key())
        # httpx-sse reads the text through the guard, which counts it (the size bound
        # holds even for one endless line), masks the key and cuts a stream that
        # sends nothing but comments or keep-alives for ``timeout`` seconds.
        events = EventSource(cast(httpx.Response, guard))
        try:
            for sse in events.iter_sse():
                if cancel.is_set:
                    raise self._cancelled(parser, cancel)
                deltas = parser.feed(sse.data, sse.event or "message")
                if deltas or len(sse.data) > 2:
                    guard.last_data = time.monotonic()
                for delta in deltas:
                    if not first and (
                        delta.text or delta.images or delta.refusal or delta.partial_image
                    ):
                        first.append(time.perf_counter())
                    if on_delta is not None:
                        on_delta(delta, parser)
                if parser.done:
                    break
        except (TooLarge, Stalled, TooLong, httpx.HTTPError, OSError, RuntimeError) as exc:
            if cancel.is_set:
                raise self._cancelled(parser, cancel) from None
            raise StreamError(self._cut_reason(exc), partial=parser.result()) from None
        if cancel.is_set and not parser.finished:
            raise self._cancelled(parser, cancel)

    def _cut_reason(self, exc: BaseException) -> str:
        s = self.settings
        if isinstance(exc, TooLarge):
            return (
                f"the reply passed the size limit of {size_text(s.max_reply_bytes)} and was cut; "
                "raise ChatImg.max_reply_bytes if you trust this endpoint"
            )
        if isinstance(exc, (httpx.TimeoutException, Stalled)):
            return (
                f"no data from {s.host} for {s.timeout:g} s mid-reply; "
                "the partial reply is kept (raise --timeout for slow models)"
            )
        if isinstance(exc, TooLong):
            return (
                f"the reply took longer than total_timeout ({s.total_timeout:g} s) and was cut; "
                "the partial reply is kept"
            )
        return (
            f"the connection to {s.host} broke mid-reply ({type(exc).__name__}); "
            "the partial reply is kept - run the cell again for a whole one"
        )

    def _key(self) -> str | None:
        key = self.settings.api_key
        return key.reveal() if key is not None else None

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
                f"the reply is {size_text(int(declared))}, above the limit of {size_text(limit)}; "
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
                        f"the reply passed the size limit of {size_text(limit)}; "
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
        data = KeyMask(self._key()).mask_bytes(buf)
        del buf
        try:
            obj = json.loads(data)  # from the bytearray: no second copy of a large reply
        except ValueError:
            answered = host_of(str(response.url)) or self.settings.host
            raise APIError(
                f"the reply from {answered} is not JSON: {body_excerpt(response.headers.get('content-type', ''), data)}; "
                "check that the base URL points at an OpenAI-compatible API",
                status=response.status_code,
            ) from None
        del data
        return obj

    def _request(
        self,
        http: httpx.Client,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        on_retry: Callable[[str], None] | None,
        cancel: Cancel | None = None,
        *,
        content: Callable[[], Any] | None = None,
        content_headers: Mapping[str, str] | None = None,
        retry_no_answer: bool = True,
    ) -> httpx.Response:
        """Send with retries before the first byte; return a 2xx streaming response.

        ``content`` makes a fresh body for each try (bytes or an iterator of
        them, e.g. a file streamed from disk) with ``content_headers``; else
        ``body`` is sent as JSON. ``retry_no_answer=False``: a try that got no
        answer at all is not repeated (a request that may have been carried
        out, such as creating a batch, must not be made twice).
        """
        payload = (
            json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            if body is not None
            else None
        )
        headers = self._headers()
        if payload is not None:
            headers["Content-Type"] = "application/json"
        for name, value in (content_headers or {}).items():
            headers[name] = value
        attempt = 0
        while True:
            if cancel is not None and cancel.is_set:
                raise _stopped_early(cancel)
            body_now = content() if content is not None else payload
            outcome = self._try(http, method, url, body_now, headers, cancel)
            if isinstance(outcome, httpx.Response):
                return outcome
            error, status, resp_headers = outcome
            may_have_happened = status is None and getattr(error, "request_sent", True)
            if may_have_happened and not retry_no_answer:
                raise error
            if not retryable(error) or attempt >= self.settings.max_retries:
                if attempt:
                    tries = f"gave up after {attempt + 1} tries"
                    error.hint = f"{error.hint}; {tries}" if error.hint else tries
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
                raise _stopped_early(cancel)
            attempt += 1

    def _try(
        self,
        http: httpx.Client,
        method: str,
        url: str,
        payload: Any,
        headers: httpx.Headers,
        cancel: Cancel | None,
    ) -> httpx.Response | tuple[APIError, int | None, Mapping[str, str]]:
        """One try: a 2xx response, or (the error, its status, its headers)."""
        try:
            response = self._send(http, method, url, payload, headers, cancel)
        except httpx.TimeoutException as exc:
            return (
                APITimeoutError(
                    f"{self.settings.host} did not answer within "
                    f"{self._timeout_of(exc):g} s; check that the server is up, or raise --timeout"
                ),
                None,
                {},
            )
        except (httpx.TransportError, OSError) as exc:
            unreachable = APIConnectionError(
                f"cannot reach {self.settings.host} ({_reason(exc)}); check the base URL "
                "and that the server is running"
            )
            # Never connected: the request cannot have been carried out.
            unreachable.request_sent = not isinstance(exc, httpx.ConnectError)  # type: ignore[attr-defined]
            return unreachable, None, {}
        if response.status_code < 300:
            return response
        try:
            raw = KeyMask(self._key()).mask_bytes(_read_at_most(response, ERROR_BODY_BYTES))
        except httpx.HTTPError:
            raw = b""
        finally:
            response.close()
        error = error_from_response(response.status_code, response.headers, bytes(raw))
        self._scrub(error)
        self._add_hint(error)
        return error, response.status_code, response.headers

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
        payload: Any,
        headers: httpx.Headers,
        cancel: Cancel | None = None,
    ) -> httpx.Response:
        origin = origin_of(url)
        for _ in range(MAX_REDIRECTS + 1):
            request = http.build_request(method, url, content=payload, headers=headers)
            response = self._until_headers(http, request, cancel)
            if (
                response.status_code not in (301, 302, 303, 307, 308)
                or "location" not in response.headers
            ):
                return response
            target = urljoin(url, response.headers["location"])
            response.close()
            if origin_of(target) != origin:
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

    def _until_headers(
        self, http: httpx.Client, request: httpx.Request, cancel: Cancel | None
    ) -> httpx.Response:
        """``http.send`` bounded in time as a whole, headers included, and by Stop.

        The socket's read timeout restarts with every byte, so a server that
        trickles its headers could hold the kernel for ever; here the waiting
        thread gives up after connect + read timeout, and Stop ends it at once.
        """
        s = self.settings
        try:
            return in_thread(
                lambda: http.send(request, stream=True),
                limit=s.connect_timeout + s.timeout + DEADLINE_GRACE,
                cancel=cancel,
            )
        except Abandoned as exc:
            if exc.cancelled and cancel is not None:
                raise _stopped_early(cancel) from None
            raise httpx.ReadTimeout(
                "no complete response headers in time", request=request
            ) from None

    def _scrub(self, error: APIError) -> None:
        """Remove the key from what the server said: some gateways echo it in errors."""
        scrub_error(error, self._key())

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


class _Borrowed(httpx.BaseTransport):
    """A caller's transport that the per-request ``httpx.Client`` uses but does not close.

    Closing the client would close the pool and every kept-alive connection
    with it: a batch worker would open (and tear down) one connection per item.
    """

    def __init__(self, transport: httpx.BaseTransport) -> None:
        self._transport = transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._transport.handle_request(request)

    def close(self) -> None:
        pass  # the owner closes it


def _encoded(
    body: dict[str, Any], dialect: Dialect
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(JSON body, ``_request`` keywords): the body as JSON, or as the dialect's multipart form.

    A form (an Images API edit: text fields and image files) is encoded once by
    httpx's multipart encoder; each try sends those same bytes.
    """
    form = dialect.form(body)
    if form is None:
        return body, {}
    fields, files = form
    encoded = httpx.Request("POST", "http://form.invalid/", data=fields, files=files)
    data = encoded.read()
    return None, {
        "content": lambda: data,
        "content_headers": {"Content-Type": encoded.headers["content-type"]},
    }


def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    """The first ``limit`` bytes of the body; the rest is not read (an error page may be endless)."""
    buf = bytearray()
    for piece in response.iter_bytes():
        buf += piece
        if len(buf) >= limit:
            break
    return bytes(buf[:limit])


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
    closer: list[httpx.Client] = []
    try:
        # A little longer than the socket's own timeout, so that a silent server is
        # reported as such; a trickle that keeps the socket busy ends here.
        return in_thread(
            lambda: _download(
                url, headers, sni_hostname, timeout, max_bytes, accept, transport, closer
            ),
            limit=timeout + DEADLINE_GRACE,
            on_abandon=lambda: _close_all(closer),
        )
    except Abandoned:
        raise DownloadTimeout("deadline") from None


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
                        raise DownloadTooLarge(size_text(max_bytes))
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
    """A transport with its own connection pool and the shared TLS context (one per batch worker).

    Its connections are kept alive across requests, with ``TCP_NODELAY``: httpx
    writes a request's headers and body separately, and on a reused connection
    Nagle's algorithm would hold the body back until the server's delayed ACK
    (40 ms on Linux) - on every request.
    """
    return httpx.HTTPTransport(verify=ssl_context(), socket_options=_NODELAY)


def _close_all(clients: list[httpx.Client]) -> None:
    for http in clients:
        close_quietly(http)


def _stopped_early(cancel: Cancel | None) -> StreamError:
    """The error of a request stopped before its reply began (``.reason``: why)."""
    reason = cancel.reason if cancel is not None else "stopped"
    err = StreamError(f"{reason} before the reply began", partial=ChatResult())
    err.reason = reason  # type: ignore[attr-defined]
    return err
