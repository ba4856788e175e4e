"""The lowest-versions CI step: pins derived from pyproject.toml, and what it runs.

``.ci/lowest_pins.py`` turns each runtime dependency's declared lower bound into
an ``==`` pin (so the pins cannot drift from the bounds), ``.ci/lowest``
installs the package under those pins in ``.venv-lowest`` and runs the tests
that exercise the dependencies, and ``.ci/run`` runs it after the main tests.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: pytest brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PINS_SCRIPT = ROOT / ".ci" / "lowest_pins.py"
LOWEST = ROOT / ".ci" / "lowest"
# The tests that must run at the lowest versions (the wire, the kernel, images, settings,
# the panel's widgets, the magic's traitlets, both httpx-sse reading styles).
MUST_RUN = [
    "tests/test_wire_fixtures.py",
    "tests/test_faults.py",
    "tests/test_kernel.py",
    "tests/test_images.py",
    "tests/test_config.py",
    "tests/test_panel.py",
    "tests/test_bad_input.py",
    "tests/test_sse_compat.py",
]


def _pins_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_lowest_pins", PINS_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lowest_pins = _pins_module()


def pyproject(*dependencies: str) -> str:
    deps = ", ".join(json.dumps(d) for d in dependencies)  # a JSON string is a TOML string
    return f"[project]\nname = 'x'\nversion = '1'\ndependencies = [{deps}]\n"


def pin_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_one_pin_per_runtime_dependency_at_its_declared_lower_bound() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    declared = tomllib.loads(text)["project"]["dependencies"]
    expected = []
    for dep in declared:
        found = re.fullmatch(r"([A-Za-z0-9._-]+)\s*>=\s*([0-9][0-9a-z.]*)", dep)
        assert found, f"{dep!r}: each runtime dependency declares its lower bound as >=X"
        expected.append(f"{found[1]}=={found[2]}")
    assert pin_lines(lowest_pins.constraints(text)) == expected


def test_the_command_prints_the_constraints_file() -> None:
    proc = subprocess.run(
        [sys.executable, str(PINS_SCRIPT), str(ROOT / "pyproject.toml")],
        capture_output=True,
        text=True,
        check=True,
    )
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert proc.stdout == lowest_pins.constraints(text)
    assert "httpx-sse==0.4" in proc.stdout.splitlines()


def test_markers_kept_extras_dropped_compatible_and_exact_bounds() -> None:
    text = pyproject(
        "a[extra]>=1.2",
        "b~=2.1",
        "c==3.0.1",
        "d>=1,<2",
        "e>=0.5; python_version < '3.12'",
        "f>=1.0,>=1.4",
    )
    assert pin_lines(lowest_pins.constraints(text)) == [
        "a==1.2",
        "b==2.1",
        "c==3.0.1",
        "d==1",
        'e==0.5 ; python_version < "3.12"',
        "f==1.4",
    ]


@pytest.mark.parametrize("dep", ["nolow", "nolow<2", "nolow>1.0", "nolow==1.*"])
def test_a_dependency_without_a_lower_bound_is_refused(dep: str, tmp_path: Path) -> None:
    with pytest.raises(lowest_pins.NoLowerBound, match="nolow"):
        lowest_pins.constraints(pyproject("ok>=1", dep))
    path = tmp_path / "pyproject.toml"
    path.write_text(pyproject("ok>=1", dep), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(PINS_SCRIPT), str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert "declares no lower bound" in proc.stderr and "nolow" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_reports_versions_that_are_not_the_lower_bounds(tmp_path: Path) -> None:
    # pytest is installed here at a version far above 1.0; the other is not installed.
    text = pyproject(
        "pytest>=1.0",
        "surely-not-installed-xyz>=1.0",
        "pytest>=1.0; python_version < '3.0'",
    )
    report = lowest_pins.check_installed(text)
    assert report[0].startswith("! pytest ") and report[0].endswith("(lower bound 1.0)")
    assert report[1] == "! surely-not-installed-xyz: not installed (lower bound 1.0)"
    assert report[2].startswith("  pytest: not needed here")
    path = tmp_path / "pyproject.toml"
    path.write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(PINS_SCRIPT), "--check", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "not the lower bounds" in proc.stderr


def test_check_accepts_a_lower_bound_written_short(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lowest_pins, "version", lambda name: {"httpx-sse": "0.4.0"}[name])
    report = lowest_pins.check_installed(pyproject("httpx-sse>=0.4"))
    assert report == ["  httpx-sse 0.4.0 (lower bound 0.4)"]


def _lowest_script() -> str:
    return LOWEST.read_text(encoding="utf-8")


def test_the_lowest_step_derives_installs_checks_and_tests() -> None:
    assert LOWEST.stat().st_mode & stat.S_IXUSR
    text = _lowest_script()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    assert ".ci/lowest_pins.py pyproject.toml >" in text
    assert re.search(r'pip install --quiet -e "\.\[test\]" -c "\$pins"', text)
    assert ".ci/lowest_pins.py --check pyproject.toml" in text
    assert re.search(r'-m pytest -p no:cacheprovider "\$\{tests\[@\]\}" "\$@"', text)
    subprocess.run(["bash", "-n", str(LOWEST)], check=True)


def _selection() -> tuple[list[str], list[str], list[str]]:
    """The paths, ``--ignore``s and ``--ignore-glob``s of the lowest step's test run."""
    block = re.search(r"^tests=\(\n(.*?)^\)", _lowest_script(), re.M | re.S)
    assert block is not None
    words = shlex.split(block[1])
    ignores = [w.split("=", 1)[1] for w in words if w.startswith("--ignore=")]
    globs = [w.split("=", 1)[1] for w in words if w.startswith("--ignore-glob=")]
    paths = [w for i, w in enumerate(words) if not w.startswith("-") and words[i - 1] != "-m"]
    return paths, ignores, globs


def test_the_lowest_step_runs_the_dependency_tests_and_no_notebook() -> None:
    paths, ignores, globs = _selection()
    assert paths == ["tests"]  # explicit: nbval (addopts) finds no notebook to run
    assert "tests/browser" in ignores
    for name in MUST_RUN:
        assert (ROOT / name).is_file(), name
        assert name not in ignores, name
        assert not any(fnmatch.fnmatch(name, g) for g in globs), name
    assert fnmatch.fnmatch("tests/test_infra_lowest.py", "tests/test_infra_*")


def test_ci_run_runs_the_lowest_step_after_the_tests() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    main = script.index('.venv/bin/python -m pytest "$@"')
    lowest = script.index("bash .ci/lowest ||")
    assert main < lowest
    assert ".venv-lowest/" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
