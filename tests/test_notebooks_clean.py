"""Every notebook in notebooks/ is saved executed, clean and small.

nbval checks that the saved outputs are what the code produces; this checks
what nbval does not: that the file a teacher opens on Binder holds no error, no
key, no half-run state and no megabytes of images.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
MAX_OUTPUT_BYTES = 2_000_000
# OpenAI-style secret keys: "sk-" then a long run of key characters ("sk-proj-...", "sk-or-v1-...").
KEY_SHAPED = re.compile(r"sk-[A-Za-z0-9_-]{20,}")
TRACEBACK = "Traceback (most recent call last)"


def problems(nb: Any, raw: str) -> list[str]:
    """What is wrong with one saved notebook (empty when it is clean)."""
    found: list[str] = []
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel != "python3":
        found.append(f"kernelspec name is {kernel!r}, not 'python3'")
    for key in sorted(set(KEY_SHAPED.findall(raw))):
        found.append(f"key-shaped string {key[:6]}... in the file")
    counts: list[int] = []
    output_bytes = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if not cell.source.strip():
            continue
        if cell.get("execution_count") is None:
            found.append(f"cell {index} was not executed (no execution_count)")
        else:
            counts.append(cell.execution_count)
        for output in cell.get("outputs", []):
            output_bytes += len(json.dumps(output))
            if output.get("output_type") == "error":
                found.append(f"cell {index} has an error output: {output.get('ename')}")
            text = output.get("text", "")
            if isinstance(text, list):
                text = "".join(text)
            if TRACEBACK in text:
                found.append(f"cell {index} printed a traceback")
    if counts != sorted(counts) or len(set(counts)) != len(counts):
        found.append(f"cells were not run once, top to bottom: execution counts {counts}")
    if output_bytes > MAX_OUTPUT_BYTES:
        found.append(f"outputs take {output_bytes:,} bytes (limit {MAX_OUTPUT_BYTES:,})")
    return found


def test_the_notebooks_are_there() -> None:
    names = {p.name for p in PATHS}
    assert {"01_quickstart.ipynb", "02_generate_and_edit.ipynb", "04_data_science.ipynb"} <= names


@pytest.mark.parametrize("path", PATHS, ids=[p.name for p in PATHS])
def test_notebook_is_saved_executed_and_clean(path: Path) -> None:
    raw = path.read_text(encoding="utf-8")
    nb = nbformat.reads(raw, as_version=4)
    assert problems(nb, raw) == []


def _notebook(*cells: Any, kernel: str = "python3") -> Any:
    nb = nbformat.v4.new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": "Python 3", "language": "python"}
    return nb


def _code(source: str, count: int | None, *outputs: Any) -> Any:
    cell = nbformat.v4.new_code_cell(source, execution_count=count)
    cell.outputs = list(outputs)
    return cell


def test_a_clean_notebook_has_no_problems() -> None:
    nb = _notebook(
        nbformat.v4.new_markdown_cell("# Title"),
        _code("x = 1", 1),
        _code("", None),
        _code("print(x)", 2, nbformat.v4.new_output("stream", name="stdout", text="1\n")),
    )
    assert problems(nb, nbformat.writes(nb)) == []


@pytest.mark.parametrize(
    ("nb", "expected"),
    [
        (
            _notebook(_code("1/0", 1, nbformat.v4.new_output("error", ename="ZeroDivisionError"))),
            "error output",
        ),
        (_notebook(_code("x = 1", None)), "not executed"),
        (_notebook(_code("a", 2), _code("b", 1)), "top to bottom"),
        (_notebook(_code("a", 1), _code("b", 1)), "top to bottom"),
        (_notebook(_code("a", 1), kernel="julia-1.10"), "kernelspec"),
        (
            _notebook(
                _code(
                    "f()",
                    1,
                    nbformat.v4.new_output("stream", name="stderr", text=TRACEBACK + "\n  ..."),
                )
            ),
            "traceback",
        ),
        (
            _notebook(
                _code(
                    "big",
                    1,
                    nbformat.v4.new_output(
                        "display_data", data={"image/png": "A" * (MAX_OUTPUT_BYTES + 1)}
                    ),
                )
            ),
            "bytes",
        ),
    ],
    ids=["error", "unexecuted", "out-of-order", "run-twice", "kernel", "traceback", "too-big"],
)
def test_each_problem_is_found(nb: Any, expected: str) -> None:
    found = problems(nb, nbformat.writes(nb))
    assert len(found) == 1 and expected in found[0], found


def test_a_key_shaped_string_is_found_without_printing_it() -> None:
    key = "sk-" + "proj-" + "Ab3" * 12
    nb = _notebook(_code(f"# {key}", 1))
    found = problems(nb, nbformat.writes(nb))
    assert len(found) == 1 and "key-shaped" in found[0]
    assert key not in found[0]
