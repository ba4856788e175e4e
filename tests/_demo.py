"""Fixtures for the demo server's tests: one server per module, an httpx client per test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from jupyter_chatimg.demo import DemoServer, serve_demo


@pytest.fixture(scope="module")
def server() -> Iterator[DemoServer]:
    """The offline demo endpoint on a free loopback port."""
    with serve_demo() as s:
        yield s


@pytest.fixture
def http(server: DemoServer) -> Iterator[httpx.Client]:
    """An httpx client whose base URL is the demo's ``/v1``."""
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c
