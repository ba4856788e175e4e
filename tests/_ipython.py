"""A real IPython shell with the extension loaded as a user loads it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def ipython_shell(clean_env: pytest.MonkeyPatch) -> Iterator[Any]:
    from IPython.testing.globalipapp import get_ipython

    shell = get_ipython()
    shell.run_line_magic("load_ext", "jupyter_chatimg")
    shell.run_line_magic("config", "ChatImg.max_retries = 0")
    yield shell
    for name in ("max_retries", "model", "base_url", "update_interval", "cache"):
        shell.run_line_magic("config", f"ChatImg.{name} = None")
    shell.run_line_magic("chatimg_reset", "")
