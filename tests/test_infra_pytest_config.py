"""The project's pytest set-up: nbval on notebooks only, markers, browser skips, .ci/run."""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _root_conftest() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_root_conftest_copy", ROOT / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pytest_configuration(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.getini("testpaths") == ["tests", "notebooks"]
    assert float(pytestconfig.getini("timeout")) > 0
    addopts = pytestconfig.getini("addopts")
    assert "--nbval" in addopts
    assert "--nbval-sanitize-with=notebooks/sanitize.cfg" in addopts
    assert (ROOT / "notebooks" / "sanitize.cfg").is_file()
    assert {m.split(":")[0] for m in pytestconfig.getini("markers")} >= {"browser", "slow"}


def test_no_notebook_under_tests() -> None:
    found = [p for p in (ROOT / "tests").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts]
    assert found == [], "notebooks belong in notebooks/ (nbval would run them as tests)"


def test_a_notebook_under_tests_is_not_collected() -> None:
    """Even if one appears, tests/conftest.py keeps nbval from collecting it."""
    probe_dir = ROOT / "tests" / f"_probe_{os.getpid()}"
    probe_dir.mkdir()
    try:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
        nbformat.write(nb, probe_dir / "probe.ipynb")
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
             str(probe_dir)],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        shutil.rmtree(probe_dir)
    assert proc.returncode == 5, proc.stdout + proc.stderr  # 5: no tests collected
    assert "probe.ipynb::Cell" not in proc.stdout


def test_browser_tests_skip_without_chromium_unless_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    conftest = _root_conftest()
    monkeypatch.setattr(conftest, "CHROMIUM", Path("/nonexistent/chromium"))
    monkeypatch.delenv("CI", raising=False)
    reason = conftest.browser_skip_reason()
    assert reason is not None and "/nonexistent/chromium" in reason
    monkeypatch.setenv("CI", "true")
    assert conftest.browser_skip_reason() is None


def test_ci_script_is_executable_bash() -> None:
    script = ROOT / ".ci" / "run"
    assert script.stat().st_mode & stat.S_IXUSR
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    assert '.venv/bin/python -m pytest "$@"' in text
    subprocess.run(["bash", "-n", str(script)], check=True)
