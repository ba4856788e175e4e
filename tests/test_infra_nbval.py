"""nbval, taught by tests/_nbval_updates.py, checks cells that update displays in place.

Each notebook is executed with nbclient (which applies updates like a front
end) to save its final outputs, then checked by ``pytest --nbval`` in a
subprocess run from a temporary directory.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
SANITIZE = ROOT / "notebooks" / "sanitize.cfg"

STREAMED = [
    # Two handles updated in turns, display and updates in the same cell.
    """\
from IPython.display import Markdown, display
h = display(Markdown("a"), display_id=True)
g = display(Markdown("x0"), display_id=True)
for i in range(1, 8):
    h.update(Markdown("a" * (i + 1)))
    if i % 2:
        g.update(Markdown(f"x{i}"))
print("done")""",
    # One id shown twice: an update replaces both; an unrelated output stays.
    """\
from IPython.display import update_display
display(Markdown("p"), display_id="shared")
display(Markdown("untouched"))
display(Markdown("p"), display_id="shared")
for word in ("q", "qq", "final shared"):
    update_display(Markdown(word), display_id="shared")""",
    # Updates sent from a thread while the cell waits for it.
    """\
import threading
k = display(Markdown("k0"), display_id=True)
def work():
    for i in range(1, 6):
        k.update(Markdown(f"k{i}"))
worker = threading.Thread(target=work)
worker.start()
worker.join()""",
]

VARYING = """\
import random, time
port = random.randint(20000, 60000)
print(f"demo server at http://127.0.0.1:{port}/v1")
print(f"ttft {random.random():.3f} s, total {random.random() * 9:.2f} s")
print(f"id chatcmpl-{random.getrandbits(64):x}")
print(f"<object at 0x{random.getrandbits(48) | 1 << 44:x}>")
print("the stable part")"""


def _executed(path: Path, sources: list[str]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    nbformat.write(nb, path)
    return nb


def _run_nbval(folder: Path, *args: str, plugin: bool = True) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", f"--rootdir={folder}"]
    cmd += ["--nbval", "--nbval-current-env", f"--nbval-sanitize-with={SANITIZE}"]
    if plugin:
        cmd += ["-p", "tests._nbval_updates"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [*cmd, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )
    return proc.returncode, proc.stdout + proc.stderr


def _outcomes(output: str) -> dict[str, str]:
    found = re.finditer(r"^(?P<outcome>PASSED|FAILED) (?P<test>\S+::Cell \d+)", output, re.M)
    return {m["test"]: m["outcome"] for m in found}


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """streamed.ipynb as executed, and tampered.ipynb whose saved outputs are wrong."""
    folder = tmp_path_factory.mktemp("nbval")
    good = _executed(folder / "streamed.ipynb", [*STREAMED, VARYING])
    # The saved state must be the final one, as a front end would save it.
    first = [out["data"]["text/markdown"] for out in good.cells[0].outputs if "data" in out]
    assert first == ["aaaaaaaa", "x7"]
    second = [out["data"]["text/markdown"] for out in good.cells[1].outputs]
    assert second == ["final shared", "untouched", "final shared"]
    assert good.cells[2].outputs[0]["data"]["text/markdown"] == "k5"
    bad = nbformat.read(folder / "streamed.ipynb", as_version=4)
    bad.cells[0].outputs[0]["data"]["text/markdown"] = "aaaaaaa"  # one update short
    bad.cells[1].outputs[1]["data"]["text/markdown"] = "final shared"  # wrong output updated
    stream = bad.cells[3].outputs[0]
    stream["text"] = stream["text"].replace("stable", "STABLE")  # not a varying part
    nbformat.write(bad, folder / "tampered.ipynb")
    return folder


@pytest.fixture(scope="module")
def nbval_run(notebooks: Path) -> tuple[int, dict[str, str], str]:
    code, output = _run_nbval(notebooks)
    return code, _outcomes(output), output


def test_nbval_applies_display_updates(nbval_run: tuple[int, dict[str, str], str]) -> None:
    code, outcomes, output = nbval_run
    assert "unhandled iopub msg: update_display_data" not in output
    assert {k: v for k, v in outcomes.items() if not k.endswith("Cell 3")} == {
        "streamed.ipynb::Cell 0": "PASSED",
        "streamed.ipynb::Cell 1": "PASSED",
        "streamed.ipynb::Cell 2": "PASSED",
        "tampered.ipynb::Cell 0": "FAILED",
        "tampered.ipynb::Cell 1": "FAILED",
        "tampered.ipynb::Cell 2": "PASSED",
    }, output
    assert code == 1


def test_sanitize_file_masks_only_what_varies(nbval_run: tuple[int, dict[str, str], str]) -> None:
    _, outcomes, output = nbval_run
    assert outcomes["streamed.ipynb::Cell 3"] == "PASSED", output
    assert outcomes["tampered.ipynb::Cell 3"] == "FAILED", output


def test_plain_nbval_fails_on_streamed_cells(notebooks: Path) -> None:
    """The trap is real: without the plugin, nbval compares the first display."""
    code, output = _run_nbval(notebooks, "streamed.ipynb", plugin=False)
    assert "unhandled iopub msg: update_display_data" in output
    assert _outcomes(output)["streamed.ipynb::Cell 0"] == "FAILED", output
    assert code == 1
