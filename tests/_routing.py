"""Route image downloads for made-up hosts (cdn.example.com) to a loopback server.

There is no DNS and no internet here: tests replace the client's resolver so
that a fixture's host resolves to 127.0.0.1, and this transport sends the
(pinned) connection to the loopback server's port over real HTTP.
"""

from __future__ import annotations

import httpx


class LoopbackRouter(httpx.BaseTransport):
    """Send every request to ``127.0.0.1:port`` over plain HTTP, keeping path and Host."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: list[httpx.Request] = []
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self.port)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def resolve_to_loopback(host: str, port: int) -> list[str]:
    """A resolver where every name is 127.0.0.1."""
    return ["127.0.0.1"]
