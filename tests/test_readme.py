"""The README's two set-up commands: exactly two, one line each, and they work.

The first (install and run the quick start on the demo) is run for real in a
fresh clone with a fresh venv and no key. The second is CI itself
(``bash .ci/run``), so it is only checked to be that, and that ``.ci/run`` ends
by running the project's single test command (then only the lowest-versions step).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETUP_HEADING = "## Set up on a fresh machine"
MAIN_HEADING = "### 1."
TESTS_HEADING = "### 2."
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
REPLY = "Here is what I measured in the pixels"
DEMO_NOTE = "offline demo model"


def setup_section(readme: str) -> str:
    """The text of the set-up section (up to the next level-2 heading)."""
    start = readme.index(SETUP_HEADING) + len(SETUP_HEADING)
    end = readme.find("\n## ", start)
    return readme[start : end if end != -1 else len(readme)]


def setup_commands(readme: str) -> dict[str, str]:
    """The single-line command under each numbered heading of the set-up section."""
    section = setup_section(readme)
    blocks = FENCE.findall(section)
    assert len(blocks) == 2, f"the set-up section must hold exactly two code blocks: {blocks}"
    commands: dict[str, str] = {}
    for heading in (MAIN_HEADING, TESTS_HEADING):
        at = section.index("\n" + heading)
        block = FENCE.search(section, at)
        assert block is not None, f"no code block under {heading}"
        lines = [line for line in block.group(1).splitlines() if line.strip()]
        assert len(lines) == 1, f"the command under {heading} must be one line: {lines}"
        commands[heading] = lines[0].strip()
    return commands


def _clean_env() -> dict[str, str]:
    drop = ("OPENAI_", "CHATIMG_", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "JUPYTER_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def test_exactly_two_single_line_commands() -> None:
    commands = setup_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert commands[MAIN_HEADING].startswith("python3 -m venv .venv && ")
    assert "notebooks/01_quickstart.ipynb" in commands[MAIN_HEADING]


def test_the_parser_rejects_a_third_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    extra = readme.replace(SETUP_HEADING + "\n", SETUP_HEADING + "\n\n```bash\nmake all\n```\n", 1)
    with pytest.raises(AssertionError, match="exactly two"):
        setup_commands(extra)


def test_the_test_command_is_ci_run_which_ends_with_pytest() -> None:
    commands = setup_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert commands[TESTS_HEADING] == "bash .ci/run"
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    runs = [
        i for i, line in enumerate(script) if line.strip().startswith(".venv/bin/python -m pytest")
    ]
    assert runs, ".ci/run does not run .venv/bin/python -m pytest"
    # After the test run, only the lowest-versions step (.ci/lowest, tests/test_infra_lowest.py)
    # and reporting: the exit code is pytest's, or the lowest step's when pytest passed.
    after = [line.strip() for line in script[runs[-1] + 1 :]]
    others = [
        line
        for line in after
        if line
        and not line.startswith(("#", "printf", "echo", "done_step", "exit", '"'))
        and not re.fullmatch(r"\w+=\S*|\w+=\"[^\"$`]*\"", line)
        and not line.startswith("if [[ $# -eq 0 ]]; then bash .ci/lowest ||")
    ]
    assert others == [], f".ci/run does more after pytest: {others}"
    ending = [line for line in after if line and not line.startswith("#")]
    assert ending and ending[-1].startswith("exit"), ending


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_main_command_in_a_fresh_clone(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    command = setup_commands((clone / "README.md").read_text(encoding="utf-8"))[MAIN_HEADING]
    # Issue 16 (1): a key in the shell must not send command 1 to a paid model (or crash it).
    env = {**_clean_env(), "OPENAI_API_KEY": "sk-test-readme-not-a-real-key-0123456789"}
    proc = subprocess.run(
        ["bash", "-c", command],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=1100,
        check=False,
    )
    tail = f"\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"exit code {proc.returncode}{tail}"
    # The executed quick start, printed: the demo's streamed reply and its one-line note.
    assert REPLY in proc.stdout, tail
    assert DEMO_NOTE in proc.stdout, tail
    assert "Traceback" not in proc.stdout + proc.stderr, tail
    # Issue 16 (10): self-contained (no links to image files never written) and quiet.
    assert "_files/" not in proc.stdout, tail
    assert "![png](data:image/png;base64," in proc.stdout, tail
    assert "IPKernelApp" not in proc.stderr and "NbConvertApp" not in proc.stderr, tail
    # It ran with the package installed from the clone into the clone's .venv.
    where = subprocess.run(
        [
            str(clone / ".venv" / "bin" / "python"),
            "-c",
            "import jupyter_chatimg as c; print(c.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=_clean_env(),
        cwd=tmp_path,
    ).stdout.strip()
    assert Path(where).is_relative_to(clone), where
    # And it left the checkout as it found it (.venv is ignored by git).
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True, check=True
    ).stdout
    assert status == "", status


def test_every_magic_option_and_setting_is_documented() -> None:
    from jupyter_chatimg._magic import _TRAITS
    from jupyter_chatimg._magic_args import _PARSER

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    options = {
        s for action in _PARSER._actions for s in action.option_strings if s.startswith("--")
    }
    missing = sorted(o for o in options if f"`{o}" not in readme)
    assert missing == [], f"options not in the README's table: {missing}"
    unlisted = sorted(name for name in _TRAITS if f"| `{name}` |" not in readme)
    assert unlisted == [], f"%config settings not in the README's table: {unlisted}"
