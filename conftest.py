"""Project-wide pytest set-up: nbval display updates, sanitize path, browser tests.

The single test command is ``.venv/bin/python -m pytest`` from the repository
root; ``pyproject.toml`` turns nbval on for ``notebooks/``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

# nbval must apply update_display_data like a front end (DESIGN.md section 9).
pytest_plugins = ["tests._nbval_updates"]

ROOT = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")


def pytest_configure(config: pytest.Config) -> None:
    """Resolve the nbval sanitize file; keep the machine's endpoint settings out.

    The notebooks are checked against the offline demo: a key or base URL in
    the environment would send them (and the kernels nbval starts, which
    inherit this environment) to a real endpoint.
    """
    for name in [n for n in os.environ if n.startswith(("OPENAI_", "CHATIMG_"))]:
        del os.environ[name]
    sanitize = getattr(config.option, "nbval_sanitize_with", None)
    if sanitize and not Path(sanitize).exists() and (ROOT / sanitize).exists():
        config.option.nbval_sanitize_with = str(ROOT / sanitize)


def browser_skip_reason() -> str | None:
    """Why browser tests cannot run here, or None (always None when ``CI`` is set)."""
    if os.environ.get("CI"):
        return None
    if not CHROMIUM.exists():
        return f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium; CI=1 forces)"
    if importlib.util.find_spec("playwright") is None:
        return "needs the playwright Python package (pip install -e '.[test]')"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``browser`` tests with a clear reason when chromium is absent outside CI."""
    reason = browser_skip_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.get_closest_marker("browser") is not None:
            item.add_marker(skip)
