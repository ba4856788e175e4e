""".ci/run's own behaviour, run for real on a copy with stand-ins for the slow parts.

A copy of ``.ci/run`` runs in a temporary checkout whose ``.venv/bin/python``
and ``.ci/lowest`` are small scripts with a chosen exit code, and whose chromium
path, ``id``, ``sudo`` and ``apt-get`` are stand-ins on ``PATH``: the exit code
and the closing line say which step failed, and a machine where chromium is
missing and nothing can install it gets one clear message, not a sudo error.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_LINE = "chromium=/usr/bin/chromium"


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


class Checkout:
    """A temporary checkout holding a copy of .ci/run and stand-ins for what it calls."""

    def __init__(self, tmp_path: Path, *, chromium: bool, uid: int, sudo: str | None) -> None:
        self.root = tmp_path / "repo"
        self.calls = tmp_path / "calls.log"
        self.calls.touch()
        script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
        assert script.count(CHROMIUM_LINE) == 1
        fake_chromium = tmp_path / "chromium"
        if chromium:
            _script(fake_chromium, 'echo "Chromium 1.0 (stand-in)"')
        script = script.replace(CHROMIUM_LINE, f"chromium={fake_chromium}")
        (self.root / ".ci").mkdir(parents=True)
        (self.root / ".ci" / "run").write_text(script, encoding="utf-8")
        _script(
            self.root / ".ci" / "lowest",
            f'echo "lowest $*" >>{self.calls}; echo "stand-in lowest step"; exit ${{FAKE_LOWEST:-0}}',
        )
        _script(
            self.root / ".venv" / "bin" / "python",
            f'case "$*" in *"-m pytest"*) echo "pytest $*" >>{self.calls}; '
            "echo '1 passed'; exit ${FAKE_PYTEST:-0};; esac; exit 0",
        )
        # PATH: stand-ins for id, sudo and apt-get, and the real tools the script uses.
        self.bin = tmp_path / "bin"
        _script(self.bin / "id", f"echo {uid}")
        _script(self.bin / "apt-get", f'echo "apt-get $*" >>{self.calls}')
        if sudo == "password":
            _script(self.bin / "sudo", 'echo "sudo: a password is required" >&2; exit 1')
        elif sudo == "passwordless":
            _script(self.bin / "sudo", f'echo "sudo $*" >>{self.calls}; shift; "$@"')
        for tool in ("bash", "dirname"):
            found = shutil.which(tool)
            assert found is not None
            (self.bin / tool).symlink_to(found)
        (self.bin / "python3").symlink_to(sys.executable)

    def without_apt(self) -> None:
        (self.bin / "apt-get").unlink()

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CI")}
        environ.update(env, PATH=str(self.bin))
        return subprocess.run(
            [shutil.which("bash") or "/bin/bash", str(self.root / ".ci" / "run"), *args],
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    def called(self) -> list[str]:
        return self.calls.read_text(encoding="utf-8").splitlines()


@pytest.fixture
def checkout(tmp_path: Path) -> Checkout:
    return Checkout(tmp_path, chromium=True, uid=0, sudo=None)


def last_line(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("pytest_code", "lowest_code", "exit_code"), [(0, 0, 0), (1, 0, 1), (0, 1, 1), (2, 1, 2)]
)
def test_the_exit_code_and_the_closing_lines_say_which_step_failed(
    checkout: Checkout, pytest_code: int, lowest_code: int, exit_code: int
) -> None:
    proc = checkout.run(FAKE_PYTEST=str(pytest_code), FAKE_LOWEST=str(lowest_code))
    assert proc.returncode == exit_code, proc.stdout + proc.stderr
    assert checkout.called() == ["pytest -m pytest", "lowest "]
    step1 = "passed" if pytest_code == 0 else f"FAILED (exit code {pytest_code})"
    step2 = "passed" if lowest_code == 0 else f"FAILED (exit code {lowest_code})"
    assert last_line(proc).endswith(
        f"step 1 (tests in .venv) {step1}; step 2 (lowest versions in .venv-lowest) {step2}"
    )
    assert "stand-in lowest step" in proc.stdout


def test_with_pytest_arguments_the_lowest_step_is_skipped_and_says_so(
    checkout: Checkout,
) -> None:
    proc = checkout.run("-k", "wire", "-x", FAKE_LOWEST="1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert checkout.called() == ["pytest -m pytest -k wire -x"]
    assert "step 2 (lowest versions in .venv-lowest) skipped" in last_line(proc)
    assert "bash .ci/lowest" in last_line(proc)


@pytest.mark.parametrize("apt", [True, False], ids=["apt", "no-apt"])
@pytest.mark.parametrize("sudo", ["password", None], ids=["sudo-asks-password", "no-sudo"])
def test_chromium_missing_and_no_way_to_install_it_is_one_clear_message(
    tmp_path: Path, sudo: str | None, apt: bool
) -> None:
    checkout = Checkout(tmp_path, chromium=False, uid=1000, sudo=sudo)
    if not apt:
        checkout.without_apt()
    proc = checkout.run()
    assert proc.returncode == 1
    assert checkout.called() == []  # neither apt-get nor the tests ran
    message = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(message) == 1, proc.stderr
    missing = f".ci/run: chromium ({tmp_path / 'chromium'}, for the browser tests) is missing, and "
    assert message[0].startswith(missing), message
    if apt:
        assert "installing it (apt-get install chromium) needs root: " in message[0]
        assert "run .ci/run as root or with passwordless sudo" in message[0]
        assert "sudo apt-get install chromium" in message[0]
    else:
        assert "this machine has no apt-get to install it with" in message[0]
    assert "password is required" not in proc.stdout + proc.stderr


def test_chromium_missing_as_root_is_installed_with_apt(tmp_path: Path) -> None:
    checkout = Checkout(tmp_path, chromium=False, uid=0, sudo=None)
    proc = checkout.run()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    called = checkout.called()
    assert called[:2] == ["apt-get update -qq", "apt-get install -y -qq chromium"]
    assert called[2:] == ["pytest -m pytest", "lowest "]


def test_chromium_missing_with_passwordless_sudo_is_installed_through_sudo(
    tmp_path: Path,
) -> None:
    checkout = Checkout(tmp_path, chromium=False, uid=1000, sudo="passwordless")
    proc = checkout.run()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    called = checkout.called()
    assert called[:4] == [
        "sudo -n true",
        "sudo -n apt-get update -qq",
        "apt-get update -qq",
        "sudo -n apt-get install -y -qq chromium",
    ]
