"""Fixtures for browser tests: one server per front end per session, one chromium per
session, a fresh page (browser context) per module and front end. All are stopped even
when a test fails.

``jupyter_server`` is parametrized over ``FRONTENDS`` (JupyterLab, Notebook 7), so
every test that uses it, or ``notebook_page``, runs once in each front end (test ids
end in ``[lab]`` / ``[notebook]``). pytest groups the tests by front end, and a
session fixture's instance is torn down before its next parameter is set up: one
server runs at a time. A test that makes sense in one front end only says so with
``@pytest.mark.parametrize("jupyter_server", ["lab"], indirect=True)``.

Mark browser tests with ``@pytest.mark.browser``; the root conftest skips them
when ``/usr/bin/chromium`` is missing (unless ``CI`` is set).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import (
    FRONTENDS,
    JupyterServer,
    NotebookPage,
    close_quietly,
    launch_chromium,
    screenshots_taken,
)


@pytest.fixture(scope="session", params=FRONTENDS)
def jupyter_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JupyterServer]:
    """JupyterLab or Notebook 7 serving a temporary directory (notebooks go in ``.root_dir``)."""
    frontend = str(request.param)
    with JupyterServer(tmp_path_factory.mktemp(frontend) / "root", frontend) as server:
        yield server


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """Debian's chromium driven by Playwright (sync API)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            close_quietly([browser])


@pytest.fixture(scope="module")
def notebook_page(jupyter_server: JupyterServer, chromium: object) -> Iterator[NotebookPage]:
    """A page of the front end in a fresh browser context, for one test module."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    try:
        yield NotebookPage(page, jupyter_server)
    finally:
        close_quietly([page, context])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List the screenshots browser tests saved."""
    shots = screenshots_taken()
    if shots:
        terminalreporter.section("browser screenshots")
        for path in shots:
            terminalreporter.write_line(str(path))
