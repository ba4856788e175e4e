"""Fixtures for browser tests: one JupyterLab per session, one chromium per session,
a fresh page (browser context) per module. All are stopped even when a test fails.

Mark browser tests with ``@pytest.mark.browser``; the root conftest skips them
when ``/usr/bin/chromium`` is missing (unless ``CI`` is set).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import JupyterLab, LabPage, close_quietly, launch_chromium, screenshots_taken


@pytest.fixture(scope="session")
def jupyter_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """A JupyterLab serving a temporary directory; write notebooks into ``.root_dir``."""
    with JupyterLab(tmp_path_factory.mktemp("lab") / "root") as lab:
        yield lab


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
def lab_page(jupyter_lab: JupyterLab, chromium: object) -> Iterator[LabPage]:
    """A JupyterLab page in a fresh browser context, for one test module."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    try:
        yield LabPage(page, jupyter_lab)
    finally:
        close_quietly([page, context])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List the screenshots browser tests saved."""
    shots = screenshots_taken()
    if shots:
        terminalreporter.section("browser screenshots")
        for path in shots:
            terminalreporter.write_line(str(path))
