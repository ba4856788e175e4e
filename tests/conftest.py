"""Shared fixtures: a loopback replay server, the wire fixtures, a clean environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from _servers import ReplayServer

# Notebooks live in notebooks/ and are checked by nbval there; a notebook under
# tests/ would be collected by nbval too, so none is ever collected here.
collect_ignore_glob = ["*.ipynb"]

TESTS = Path(__file__).resolve().parent
_ENV_PREFIXES = ("OPENAI_", "CHATIMG_")


@pytest.fixture
def replay_server() -> Iterator[ReplayServer]:
    """A fresh ``ReplayServer`` on 127.0.0.1, closed after the test."""
    with ReplayServer() as server:
        yield server


@pytest.fixture
def wire_dir() -> Path:
    """``tests/fixtures/wire``: raw response bodies plus ``expected.json``."""
    return TESTS / "fixtures" / "wire"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Remove every ``OPENAI_*`` and ``CHATIMG_*`` variable; returns the monkeypatch."""
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES):
            monkeypatch.delenv(name)
    return monkeypatch
