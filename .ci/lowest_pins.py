"""The lowest resolution: each runtime dependency pinned at the lower bound pyproject.toml declares.

    python .ci/lowest_pins.py [pyproject.toml]           # pip constraints on stdout
    python .ci/lowest_pins.py --check [pyproject.toml]   # are those versions installed here?

The pins are derived, never written by hand, so they cannot drift from the
bounds (DESIGN.md 3: every lower bound is one the tests have passed with).
Every entry of ``[project] dependencies`` must declare an inclusive lower bound
(``>=X``, ``~=X`` or ``==X``): a dependency without one is an error, since
nothing would say which oldest version the tests must pass with. Markers are
kept (``pkg==1.0 ; python_version < "3.12"``); extras are dropped (pip refuses
them in constraints). Only the runtime dependencies are pinned: the test extras
resolve freely around the pins. Should a test tool ever refuse a pin, choose a
release of that tool that accepts it, add it below with the reason, and say so
in the commit.

Needs ``packaging`` (and ``tomli`` before Python 3.11).
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TEST_TOOL_PINS: dict[str, str] = {}
"""``name`` -> ``==version`` for a test tool that refuses a lowest pin (none today)."""


class NoLowerBound(ValueError):
    """A runtime dependency declares no inclusive lower bound."""


def lower_bound(requirement: Requirement) -> Version:
    """The lowest version ``requirement`` allows (its ``>=``, ``~=`` or ``==`` version)."""
    bounds = [
        Version(spec.version)
        for spec in requirement.specifier
        if spec.operator in (">=", "~=", "==") and not spec.version.endswith(".*")
    ]
    if not bounds:
        raise NoLowerBound(
            f"pyproject.toml: the dependency {str(requirement)!r} declares no lower bound; "
            "give it the lowest version the tests pass with (>=X)"
        )
    return max(bounds)


def pins(pyproject: str) -> list[tuple[Requirement, Version]]:
    """Each runtime dependency of ``pyproject`` (TOML text) with its lower bound."""
    dependencies = tomllib.loads(pyproject)["project"].get("dependencies", [])
    return [(req, lower_bound(req)) for req in map(Requirement, dependencies)]


def constraints(pyproject: str) -> str:
    """The pip constraints file: one ``name==lower bound`` line per runtime dependency."""
    lines = ["# derived by .ci/lowest_pins.py from pyproject.toml: each runtime dependency"]
    lines.append("# at its declared lower bound (do not edit: change the bound instead)")
    for req, bound in pins(pyproject):
        marker = f" ; {req.marker}" if req.marker is not None else ""
        lines.append(f"{req.name}=={bound}{marker}")
    for name, spec in TEST_TOOL_PINS.items():
        lines.append(f"{name}{spec}")
    return "\n".join(lines) + "\n"


def check_installed(pyproject: str) -> list[str]:
    """One line per pinned dependency as installed here; problems start with ``!``."""
    report = []
    for req, bound in pins(pyproject):
        if req.marker is not None and not req.marker.evaluate():
            report.append(f"  {req.name}: not needed here ({req.marker})")
            continue
        try:
            installed = version(canonicalize_name(req.name))
        except PackageNotFoundError:
            report.append(f"! {req.name}: not installed (lower bound {bound})")
            continue
        mark = " " if Version(installed) == bound else "!"
        report.append(f"{mark} {req.name} {installed} (lower bound {bound})")
    return report


def main(argv: list[str]) -> int:
    check = "--check" in argv
    paths = [a for a in argv if a != "--check"]
    path = Path(paths[0] if paths else "pyproject.toml")
    text = path.read_text(encoding="utf-8")
    try:
        if not check:
            sys.stdout.write(constraints(text))
            return 0
        report = check_installed(text)
    except NoLowerBound as exc:
        print(f"lowest_pins: {exc}", file=sys.stderr)
        return 2
    print("\n".join(report))
    if any(line.startswith("!") for line in report):
        print("lowest_pins: the versions installed are not the lower bounds", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
