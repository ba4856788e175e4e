"""Returned images: decoding ``data:`` URIs and downloading http(s) links, under rules.

The rules (DESIGN 8): http(s) only; no key, no cookies; size, time (headers
included) and pixel limits; a host list when ``image_hosts`` is set; never a
link-local or cloud-metadata address; private and loopback addresses only
when they are the endpoint's own host (a local vLLM or Ollama serving its
images). Each address is checked after DNS and after every redirect, and the
connection goes to the address that was checked.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from ._config import Settings
from ._errors import ChatImgError, ImageInputError, size_text
from ._http import (
    USER_AGENT,
    Downloaded,
    DownloadError,
    DownloadTimeout,
    DownloadTooLarge,
    DownloadUnreachable,
    download,
)
from ._images import decode_data_uri, decode_image_bytes
from ._result import ChatResult

__all__ = [
    "IMAGE_FETCH_TIMEOUT",
    "endpoint_is_private",
    "fetch_image",
    "fetch_result_images",
    "resolve_host",
]

IMAGE_FETCH_TIMEOUT = 30.0
MAX_REDIRECTS = 5

Resolver = Callable[[str, int], list[str]]

DEFAULT_IMAGE_TRANSPORT: Any = None
"""Transport for image downloads when none is passed (a hook for tests and proxies)."""


def resolve_host(host: str, port: int) -> list[str]:
    """The IP addresses ``host`` resolves to (the one place that does DNS)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _default_resolver() -> Resolver:
    # Looked up at call time so tests can replace resolve_host (there is no DNS offline).
    return resolve_host


def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address, with IPv4 inside IPv6 (mapped, 6to4, Teredo) judged as IPv4."""
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address):
        inner = addr.ipv4_mapped or addr.sixtofour or (addr.teredo[1] if addr.teredo else None)
        if inner is not None:
            addr = inner
    return addr


def _is_public(ip: str) -> bool:
    """A globally routed unicast address (not private, loopback, link-local, shared
    (CGNAT), documentation, reserved ...)."""
    addr = _address(ip)
    return addr.is_global and not addr.is_multicast


def _never_fetched(ip: str) -> bool:
    """Link-local addresses (169.254.0.0/16, fe80::/10: cloud metadata services live
    there), multicast and unspecified addresses: not fetched whatever the endpoint."""
    addr = _address(ip)
    return addr.is_link_local or addr.is_multicast or addr.is_unspecified


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


def _endpoint_ips(settings: Settings, resolver: Resolver) -> frozenset[str]:
    parts = urlsplit(settings.base_url)
    if not parts.hostname:
        return frozenset()
    try:
        return frozenset(resolver(parts.hostname, parts.port or 443))
    except (OSError, ValueError):
        return frozenset()


def _check_address(host: str, ips: list[str], private_ok: frozenset[str] | bool) -> None:
    for ip in ips:
        if _is_public(ip):
            continue
        if private_ok is True or (isinstance(private_ok, frozenset) and ip in private_ok):
            if _never_fetched(ip):
                raise ImageInputError(
                    f"not fetched: {host} is a link-local address (cloud metadata services "
                    "live there); such links are never loaded"
                )
            continue
        raise ImageInputError(
            f"not fetched: {host} is a private, loopback or link-local address "
            "(allowed only when the endpoint itself is on one)"
        )


def _accept(host: str, max_bytes: int) -> Callable[[int, Mapping[str, str]], bool]:
    """Whether to read a response's body (False: a redirect to follow); raises if it is no image."""

    def accept(status: int, headers: Mapping[str, str]) -> bool:
        if status in (301, 302, 303, 307, 308) and "location" in headers:
            return False
        if status != 200:
            raise ImageInputError(f"not fetched: {host} answered HTTP {status}")
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype and not (ctype.startswith("image/") or ctype == "application/octet-stream"):
            raise ImageInputError(f"not fetched: the link is {ctype}, not an image")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise ImageInputError(
                f"not fetched: {size_text(int(declared))} is above the {size_text(max_bytes)} limit"
            )
        return True

    return accept


def _pinned(
    url: str,
    allow_private: frozenset[str] | bool,
    allowed_hosts: tuple[str, ...],
    resolver: Resolver,
) -> tuple[str, str, dict[str, str], bool]:
    """(the URL with the checked address in place of the host, the host, headers, https?).

    Every rule that needs only the URL and DNS is applied here: scheme, host
    list, addresses. Connecting to the address that was checked means no
    second DNS answer can differ.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImageInputError(
            f"not fetched: only http(s) image links are loaded, not {parts.scheme or 'this'}:"
        )
    host = parts.hostname.lower()
    if allowed_hosts and not any(host == h or host.endswith("." + h) for h in allowed_hosts):
        raise ImageInputError(f"not fetched: {host} is not in ChatImg.image_hosts")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        ips = resolver(host, port)
    except (OSError, ValueError):
        ips = []
    if not ips:
        raise ImageInputError(f"not fetched: the host {host} does not resolve")
    _check_address(host, ips, allow_private)
    ip = ips[0]
    netloc = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    headers = {
        "Host": parts.netloc.rsplit("@", 1)[-1],
        "User-Agent": USER_AGENT,
        "Accept": "image/*",
    }
    return pinned, host, headers, parts.scheme == "https"


def fetch_image(
    url: str,
    *,
    allow_private: frozenset[str] | bool = False,
    allowed_hosts: tuple[str, ...] = (),
    max_bytes: int = 50_000_000,
    timeout: float = IMAGE_FETCH_TIMEOUT,
    resolver: Resolver | None = None,
    transport: Any = None,
) -> Any:
    """Decode a ``data:`` URI or download an http(s) image, under the safety rules.

    ``allow_private``: True lets any private or loopback address through (the
    demo); a set of addresses lets just those (the endpoint's own). Link-local
    addresses are never fetched. ``timeout`` bounds the whole download,
    redirects and headers included. Raises ``ImageInputError`` with a one-line reason.
    """
    if url.startswith("data:"):
        return decode_data_uri(url, label="returned image")
    deadline = time.monotonic() + timeout
    resolver = resolver or _default_resolver()
    for _ in range(MAX_REDIRECTS + 1):
        pinned, host, headers, https = _pinned(url, allow_private, allowed_hosts, resolver)
        left = deadline - time.monotonic()
        if left <= 0:
            raise ImageInputError(f"not fetched: took longer than {timeout:g} s")
        got = _download(pinned, host, headers, https, left, timeout, max_bytes, transport)
        if got.status != 200:
            url = urljoin(url, got.headers["location"])
            continue
        return decode_image_bytes(got.body, label="returned image")
    raise ImageInputError("not fetched: too many redirects")


def _download(
    pinned: str,
    host: str,
    headers: dict[str, str],
    https: bool,
    left: float,
    timeout: float,
    max_bytes: int,
    transport: Any,
) -> Downloaded:
    """One GET of a checked address, its failures as one-line ``ImageInputError``s."""
    try:
        return download(
            pinned,
            headers=headers,
            sni_hostname=host if https else None,
            timeout=left,
            max_bytes=max_bytes,
            accept=_accept(host, max_bytes),
            transport=transport,
        )
    except DownloadTimeout as exc:
        if str(exc) == "no answer":
            raise ImageInputError(
                f"not fetched: {host} did not answer within {timeout:g} s"
            ) from None
        raise ImageInputError(f"not fetched: took longer than {timeout:g} s") from None
    except DownloadTooLarge as exc:
        raise ImageInputError(f"not fetched: larger than the {exc} limit") from None
    except DownloadUnreachable as exc:
        raise ImageInputError(f"not fetched: cannot reach {host} ({exc})") from None
    except DownloadError as exc:
        raise ImageInputError(f"not fetched: the download from {host} broke ({exc})") from None


def fetch_result_images(
    result: ChatResult,
    settings: Settings,
    *,
    resolver: Resolver | None = None,
    transport: Any = None,
) -> None:
    """Fill every choice's ``images`` from its ``image_urls``; failures go to ``image_errors``.

    Interrupting the kernel here stops the downloads (the rest are listed as not
    fetched) and keeps the reply.
    """
    allow: frozenset[str] | bool | None = True if settings.demo else None
    transport = transport or DEFAULT_IMAGE_TRANSPORT
    interrupted = False
    for choice in result.choices:
        for url in choice.image_urls:
            if interrupted:
                choice.image_errors[url] = "not fetched: interrupted by the user"
                continue
            if allow is None and not url.startswith("data:"):
                # Resolved only when needed: a DNS lookup per reply would slow every reply.
                allow = _endpoint_ips(settings, resolver or _default_resolver())
            try:
                image = fetch_image(
                    url,
                    allow_private=allow if allow is not None else False,
                    allowed_hosts=settings.image_hosts,
                    max_bytes=settings.max_image_bytes,
                    timeout=settings.image_timeout,
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
