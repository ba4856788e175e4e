"""Binder: a fresh venv built from binder/ alone runs every notebook without an error.

repo2docker (what mybinder.org builds with) starts from an image that already
has JupyterLab and ipykernel, then, from the repository root, runs
``pip install -r binder/requirements.txt`` and ``binder/postBuild`` when it
exists. This test does the same in a new venv (the image's part is ipykernel
and nbclient), then executes every notebook in notebooks/ with that venv's
kernel, in a copy, with no OPENAI_* / CHATIMG_* variable set (Binder has no
key): each must run top to bottom against the offline demo.

pip's cache is reused (repo2docker passes --no-cache-dir; the result is the same).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# What repo2docker's base image provides and the test needs to run notebooks.
IMAGE_PACKAGES = ("ipykernel", "nbclient")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# Runs inside the Binder venv: executes one notebook copy and reports, as JSON on
# the last line, the errors and where the kernel imported the package from.
RUNNER = r"""
import json, sys
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
nb.cells.append(nbformat.v4.new_code_cell(
    "import sys as _s, jupyter_chatimg as _c; print(_s.prefix); print(_c.__file__)"
))
client = NotebookClient(
    nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}
)
errors = []
try:
    client.execute()
except CellExecutionError as exc:
    errors.append(str(exc).splitlines()[-1] if str(exc) else repr(exc))
for cell in nb.cells:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            errors.append(f"{out.get('ename')}: {out.get('evalue')}")
        elif out.get("name") == "stderr" and "Traceback" in out.get("text", ""):
            errors.append(out["text"][-500:])
probe = nb.cells[-1].outputs[0]["text"].split() if nb.cells[-1].outputs else []
print(json.dumps({"errors": errors, "probe": probe}))
"""


def _clean_env(venv: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "CHATIMG_", "PYTHON", "VIRTUAL_ENV", "JUPYTER_"))
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    # The venv's own kernelspec, whatever a user-level one says.
    env["JUPYTER_PREFER_ENV_PATH"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["MPLBACKEND"] = "Agg"
    return env


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> str:
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


@pytest.fixture(scope="module")
def binder_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A venv built the way repo2docker builds the Binder image (module-wide)."""
    venv = tmp_path_factory.mktemp("binder") / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=120)
    env = _clean_env(venv)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    _run([*pip, *IMAGE_PACKAGES], cwd=ROOT, env=env, timeout=600)
    _run([*pip, "-r", "binder/requirements.txt"], cwd=ROOT, env=env, timeout=600)
    post_build = BINDER / "postBuild"
    if post_build.exists():
        _run(["bash", str(post_build)], cwd=ROOT, env=env, timeout=600)
    yield venv, env
    shutil.rmtree(venv, ignore_errors=True)


def test_binder_files() -> None:
    requirements = (BINDER / "requirements.txt").read_text().splitlines()
    entries = [line.split("#")[0].strip() for line in requirements]
    # repo2docker runs pip from the repository root: "." is the repository itself.
    assert "." in entries
    assert ".." not in entries and "-e .." not in entries
    # Binder reads only binder/ when it exists; no stray root-level config competes.
    for name in ("environment.yml", "Dockerfile", "apt.txt"):
        assert not (ROOT / name).exists(), f"{name} at the root is ignored by Binder (binder/ wins)"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_in_the_binder_env(
    notebook: Path, binder_venv: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    venv, env = binder_venv
    copy = tmp_path / notebook.name
    shutil.copy(notebook, copy)
    runner = tmp_path / "run_notebook.py"
    runner.write_text(RUNNER)
    out = _run(
        [str(venv / "bin" / "python"), str(runner), str(copy), str(tmp_path)],
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    report = json.loads(out.strip().splitlines()[-1])
    assert report["errors"] == []
    prefix, package = report["probe"]
    # The kernel is the Binder venv's, and the package is the one pip installed there.
    assert Path(prefix) == venv
    assert Path(package).is_relative_to(venv), package
