"""Drive a real JupyterLab or Notebook 7 in Debian's chromium with Playwright (sync API), offline.

``JupyterServer(root, frontend)`` runs ``python -m jupyter lab`` (``"lab"``) or
``python -m jupyter notebook`` (``"notebook"``, Notebook 7) on 127.0.0.1 in a
subprocess with its own config, data, runtime and settings directories (news,
update checks and the PyPI extension manager off, all cells attached to the
DOM), and stops it with its kernels. ``launch_chromium`` starts
``/usr/bin/chromium`` headless with the flags it needs as root and offline.
``NotebookPage`` opens notebooks (``/lab/tree/<path>`` or ``/notebooks/<path>``)
and runs, edits and reads cells through the page, as a person would: both
front ends are JupyterLab components, so one set of DOM lookups serves both,
and the app object (``window.jupyterapp``) answers what the DOM cannot.

Every wait has a time-out whose message says what was awaited and where the
logs are. Screenshots and the server logs go to ``test-artifacts/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import nbformat

try:  # Guarded: without playwright the browser tests are skipped, not broken at import.
    from playwright.sync_api import Browser, Page, Playwright
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # pragma: no cover - the conftest skips browser tests then
    Browser = Page = Playwright = Any  # type: ignore[misc,assignment]
    PlaywrightTimeout = TimeoutError  # type: ignore[misc,assignment]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

# User settings that keep JupyterLab quiet, offline and fully in the DOM.
_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
}

_SCREENSHOTS: list[Path] = []


class HarnessError(RuntimeError):
    """A browser-test step did not happen in time or the Jupyter server failed."""


FRONTENDS = ("lab", "notebook")
"""The front ends the browser tests run in: JupyterLab and Notebook 7."""

FRONTEND_NAMES = {"lab": "JupyterLab", "notebook": "Notebook 7"}

DARK_THEME = "JupyterLab Dark"
LIGHT_THEME = "JupyterLab Light"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def screenshots_taken() -> list[Path]:
    """Paths of every screenshot saved in this session, in order."""
    return list(_SCREENSHOTS)


def write_notebook(path: Path, sources: Sequence[str]) -> Path:
    """Write a notebook of code cells (python3 kernel) at ``path``; return the path."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


class JupyterServer:
    """JupyterLab (``frontend="lab"``) or Notebook 7 (``"notebook"``) on loopback.

    Serves ``root_dir``; use as a context manager.
    """

    def __init__(
        self, root_dir: Path, frontend: str = "lab", startup_timeout: float = 90.0
    ) -> None:
        if frontend not in FRONTENDS:
            raise ValueError(f"frontend must be one of {FRONTENDS}, not {frontend!r}")
        self.root_dir = root_dir
        self.frontend = frontend
        self.name = FRONTEND_NAMES[frontend]
        self.startup_timeout = startup_timeout
        self.token = secrets.token_hex(16)
        self.port = 0
        self.url = ""
        self.log_path = ARTIFACTS / ("jupyterlab.log" if frontend == "lab" else "notebook.log")
        self._home = root_dir.parent / f"{root_dir.name}-jupyter-home"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def __enter__(self) -> JupyterServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _environment(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OPENAI_", "CHATIMG_", "JUPYTER_", "JPY_"))
        }
        for name, sub in (
            ("JUPYTER_CONFIG_DIR", "config"),
            ("JUPYTER_DATA_DIR", "data"),
            ("JUPYTER_RUNTIME_DIR", "runtime"),
            ("IPYTHONDIR", "ipython"),
        ):
            env[name] = str(self._home / sub)
        env["JUPYTERLAB_SETTINGS_DIR"] = str(self._home / "lab-settings")
        env["JUPYTERLAB_WORKSPACES_DIR"] = str(self._home / "workspaces")
        env["JUPYTER_PLATFORM_DIRS"] = "1"
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _write_settings(self) -> Path:
        settings = self._home / "lab-settings"
        for plugin, values in _SETTINGS.items():
            target = settings / f"{plugin}.jupyterlab-settings"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(values), encoding="utf-8")
        return settings

    def command(self) -> list[str]:
        """The command line that starts this server."""
        # Notebook 7 is a LabServerApp too: the same switches under its own class name.
        # The LabApp ones also reach the jupyterlab server extension that Notebook 7
        # loads beside itself (news, update checks, extension manager).
        apps = ["LabApp"] if self.frontend == "lab" else ["LabApp", "JupyterNotebookApp"]
        settings, workspaces = self._write_settings(), self._home / "workspaces"
        per_app = [
            flag
            for app in apps
            for flag in (
                f"--{app}.expose_app_in_browser=True",
                f"--{app}.user_settings_dir={settings}",
                f"--{app}.workspaces_dir={workspaces}",
            )
        ]
        return [
            sys.executable,
            "-m",
            "jupyter",
            self.frontend,
            "--no-browser",
            "--allow-root",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.root_dir}",
            "--ServerApp.terminals_enabled=False",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            *per_app,
            "--LanguageServerManager.autodetect=False",
        ]

    def start(self) -> None:
        """Start the server and wait until its API answers (a new port if one was taken)."""
        self.root_dir.mkdir(parents=True, exist_ok=True)
        ARTIFACTS.mkdir(exist_ok=True)
        for _attempt in range(3):
            if self._start_once():
                return
        raise HarnessError(f"{self.name} found no free port in 3 tries; see {self.log_path}")

    def _start_once(self) -> bool:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = self.log_path.open("wb")
        proc = self._proc = subprocess.Popen(
            self.command(),
            cwd=self.root_dir,
            env=self._environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.stop()
                if "already in use" in self.log_tail():
                    return False  # another process took the port in between
                raise HarnessError(
                    f"{self.name} exited with code {proc.returncode} while starting; "
                    f"see {self.log_path}:\n{self.log_tail()}"
                )
            with contextlib.suppress(OSError):
                self.api("GET", "/api/status", timeout=2)
                return True
            time.sleep(0.2)  # polling another process: it has no way to tell us it is up
        self.stop()
        raise HarnessError(
            f"{self.name} did not answer on {self.url} within {self.startup_timeout:.0f} s; "
            f"see {self.log_path}:\n{self.log_tail()}"
        )

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        """Call the server's REST API with the token; return the decoded JSON (or None)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
        return json.loads(raw) if raw else {}

    def notebook_url(self, notebook: str) -> str:
        """The page URL that opens ``notebook`` (relative to ``root_dir``).

        JupyterLab: ``/lab/tree/<path>`` in a reset workspace (only this notebook
        open); Notebook 7: ``/notebooks/<path>``, a page of its own.
        """
        if self.frontend == "lab":
            return f"{self.url}/lab/tree/{notebook}?reset&token={self.token}"
        return f"{self.url}/notebooks/{notebook}?token={self.token}"

    def write_notebook(self, name: str, sources: Sequence[str]) -> Path:
        """Write a notebook of code cells under ``root_dir``."""
        return write_notebook(self.root_dir / name, sources)

    def copy_in(self, source: Path, name: str | None = None) -> Path:
        """Copy a file (e.g. one of ``notebooks/``) under ``root_dir``; return the copy."""
        target = self.root_dir / (name or source.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return target

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log."""
        if not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Shut the server (and so its kernels) down; kill it if it does not stop."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError, urllib.error.URLError):
                self.api("POST", "/api/shutdown", timeout=5)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None


def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's chromium, headless, as Playwright's browser (never a downloaded one)."""
    if not Path(CHROMIUM).exists():
        raise HarnessError(f"{CHROMIUM} not found: apt-get install chromium")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)


# In-page lookups: the notebook panel marked by open_notebook, and one of its cells.
_FIND = """
const findPanel = (path) => [...document.querySelectorAll('.jp-NotebookPanel')]
    .find((node) => node.getAttribute('data-chatimg-path') === path);
const findCell = (path, index) => {
    const panel = findPanel(path);
    return panel ? panel.querySelectorAll('.jp-Notebook .jp-Cell')[index] : undefined;
};
"""


def _js(args: str, body: str) -> str:
    return f"({args}) => {{ {_FIND} {body} }}"


class NotebookPage:
    """A JupyterLab or Notebook 7 page showing one notebook at a time (cells are 0-based)."""

    def __init__(self, page: Page, server: JupyterServer, timeout: float = 60.0) -> None:
        self.page = page
        self.server = server
        self.timeout = timeout
        self.notebook = ""
        page.set_default_timeout(timeout * 1000)

    @property
    def frontend(self) -> str:
        """``"lab"`` or ``"notebook"``."""
        return self.server.frontend

    def _wait(self, what: str, js: str, arg: Any = None, timeout: float | None = None) -> None:
        limit = self.timeout if timeout is None else timeout
        try:
            self.page.wait_for_function(js, arg=arg, timeout=limit * 1000, polling="raf")
        except PlaywrightTimeout:
            shot = self.screenshot(f"timeout-{Path(self.notebook).stem}-{len(_SCREENSHOTS)}")
            where = self.notebook or "the page"
            raise HarnessError(
                f"timed out after {limit:.0f} s waiting for {what} in {where} "
                f"({self.server.name}); screenshot {shot}; log {self.server.log_path}"
            ) from None

    def open_notebook(self, name: str) -> None:
        """Open ``name`` (relative to the server's root) alone; wait for an idle kernel."""
        self.notebook = name
        self.page.goto(self.server.notebook_url(name), wait_until="domcontentloaded")
        # Mark the panel that shows this file, so that later lookups find it
        # whatever else is open (the app is exposed as window.jupyterapp in both
        # front ends; Notebook 7's shell has one main widget, JupyterLab's many).
        self._wait(
            f"notebook {name} to show its cells",
            """(path) => {
                const app = window.jupyterapp;
                if (!app || !app.shell) return false;
                const widget = [...app.shell.widgets('main')]
                    .find((w) => w.context && w.context.path === path);
                if (!widget || !widget.node.querySelector('.jp-Notebook .jp-Cell')) return false;
                widget.node.setAttribute('data-chatimg-path', path);
                return true;
            }""",
            name,
        )
        self.wait_for_kernel_idle()

    def run_command(self, command: str, args: dict[str, Any] | None = None) -> None:
        """Run a front-end command (``app.commands.execute``) and wait for it to finish."""
        self.page.evaluate(
            "([command, args]) => window.jupyterapp.commands.execute(command, args)",
            [command, args or {}],
        )

    def set_theme(self, theme: str) -> None:
        """Switch the page (and the saved setting) to ``theme``; wait until it shows."""
        self.run_command("apputils:change-theme", {"theme": theme})
        # JupyterLab covers the page with its splash screen (the logo) while the
        # theme's CSS loads, and fades it out after: wait until it is gone.
        self._wait(
            f"the {theme} theme",
            """(theme) => document.body.dataset.jpThemeName === theme
                && !document.querySelector('#jupyterlab-splash')""",
            theme,
        )

    def wait_for_kernel_idle(self, timeout: float | None = None) -> None:
        """Wait until the notebook's kernel is connected and idle.

        The toolbar indicator says "idle" before any kernel exists, so this asks
        the notebook's session itself.
        """
        self._wait(
            "the kernel to be idle",
            """(path) => {
                const app = window.jupyterapp;
                const widget = app && [...app.shell.widgets('main')]
                    .find((w) => w.context && w.context.path === path);
                const ctx = widget && widget.sessionContext;
                const kernel = ctx && ctx.isReady && ctx.session && ctx.session.kernel;
                return !!kernel && kernel.connectionStatus === 'connected'
                    && kernel.status === 'idle';
            }""",
            self.notebook,
            timeout=timeout,
        )

    def cells(self) -> Any:
        """A locator of the open notebook's cells."""
        panel = f'.jp-NotebookPanel[data-chatimg-path="{self.notebook}"]'
        return self.page.locator(f"{panel} .jp-Notebook .jp-Cell")

    def cell(self, index: int) -> Any:
        """A locator of cell ``index``."""
        return self.cells().nth(index)

    def run_cell(self, index: int, advance: bool = False) -> None:
        """Select cell ``index`` and run it from the keyboard (does not wait for the end).

        Ctrl+Enter runs in place; ``advance=True`` presses Shift+Enter, which
        moves on and, on the last cell, appends a new one (as both front ends do).
        """
        self.cell(index).locator(".jp-InputArea-prompt").first.click()
        self.page.keyboard.press("Shift+Enter" if advance else "Control+Enter")

    def run_all(self) -> None:
        """Run all cells via the Run menu (does not wait for them to finish).

        Both front ends have a menu bar with Run > Run All Cells.
        """
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        item = self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$"))
        item.first.click()

    def wait_until_executed(self, index: int, timeout: float | None = None) -> None:
        """Wait until cell ``index`` has run (an execution count, no ``[*]``)."""
        self._wait(
            f"cell {index} to finish running",
            _js(
                "[path, index]",
                """const cell = findCell(path, index);
                const prompt = cell && cell.querySelector('.jp-InputArea-prompt');
                return !!prompt && /\\[\\d+\\]/.test(prompt.textContent);""",
            ),
            [self.notebook, index],
            timeout=timeout,
        )

    def type_into_cell(self, index: int, text: str, replace: bool = True) -> None:
        """Put ``text`` into cell ``index``'s editor as typed input (no auto-close/indent)."""
        editor = self.cell(index).locator(".cm-content").first
        editor.click()
        if replace:
            self.page.keyboard.press("ControlOrMeta+A")
            self.page.keyboard.press("Delete")
        self.page.keyboard.insert_text(text)

    def output_text(self, index: int) -> str:
        """The visible text of cell ``index``'s output area."""
        return str(self.cell(index).locator(".jp-OutputArea").first.inner_text())

    def output_html(self, index: int) -> str:
        """The HTML of cell ``index``'s output area."""
        return str(self.cell(index).locator(".jp-OutputArea").first.inner_html())

    def wait_for_output(self, index: int, pattern: str, timeout: float | None = None) -> str:
        """Wait until cell ``index``'s output text matches regex ``pattern``; return the text."""
        self._wait(
            f"cell {index} output to match {pattern!r}",
            _js(
                "[path, index, pattern]",
                """const cell = findCell(path, index);
                const out = cell && cell.querySelector('.jp-OutputArea');
                return !!out && new RegExp(pattern).test(out.innerText);""",
            ),
            [self.notebook, index, pattern],
            timeout=timeout,
        )
        return self.output_text(index)

    def record_outputs(self, index: int, key: str = "default") -> None:
        """Start recording every distinct text that cell ``index``'s output area shows.

        A MutationObserver in the page sees each DOM change, so no state is
        missed however fast updates come; read them with ``recorded_outputs``.
        """
        self.page.evaluate(
            _js(
                "[path, index, key]",
                """const cell = findCell(path, index);
                if (!cell) throw new Error(`no cell ${index} in ${path}`);
                window.__chatimgSeen = window.__chatimgSeen || {};
                const seen = window.__chatimgSeen[key] = [];
                const note = () => {
                    const out = cell.querySelector('.jp-OutputArea');
                    const text = out ? out.innerText.trim() : '';
                    if (text && seen[seen.length - 1] !== text) seen.push(text);
                };
                new MutationObserver(note).observe(
                    cell, {subtree: true, childList: true, characterData: true});
                note();""",
            ),
            [self.notebook, index, key],
        )

    def recorded_outputs(self, key: str = "default") -> list[str]:
        """The distinct output texts recorded so far, in order."""
        return list(self.page.evaluate("(key) => (window.__chatimgSeen || {})[key] || []", key))

    def record_output_elements(self, index: int, key: str = "default") -> None:
        """Start recording the output elements of cell ``index`` at every DOM change.

        Each state is a list with one ``[element_id, text, images]`` per output
        element (``.jp-OutputArea-output``): ``element_id`` stays the same for
        the same DOM node, so a test can tell an output updated in place from one
        replaced or appended; ``images`` counts its ``<img>`` elements. Nothing
        here depends on which renderer (markdown, HTML, image) made the output.
        Read the states with ``recorded_output_elements``.
        """
        self.page.evaluate(
            _js(
                "[path, index, key]",
                """const cell = findCell(path, index);
                if (!cell) throw new Error(`no cell ${index} in ${path}`);
                window.__chatimgStates = window.__chatimgStates || {};
                const states = window.__chatimgStates[key] = [];
                const ids = new WeakMap();
                let next = 0;
                let last = '';
                const note = () => {
                    const state = [...cell.querySelectorAll('.jp-OutputArea-output')].map((el) => {
                        if (!ids.has(el)) ids.set(el, next++);
                        return [ids.get(el), el.innerText.trim(), el.querySelectorAll('img').length];
                    });
                    const json = JSON.stringify(state);
                    if (json !== last) { states.push(state); last = json; }
                };
                new MutationObserver(note).observe(
                    cell, {subtree: true, childList: true, characterData: true});
                note();""",
            ),
            [self.notebook, index, key],
        )

    def recorded_output_elements(self, key: str = "default") -> list[list[tuple[int, str, int]]]:
        """The states recorded by ``record_output_elements``, in order."""
        states = self.page.evaluate("(key) => (window.__chatimgStates || {})[key] || []", key)
        return [[(int(i), str(text), int(n)) for i, text, n in state] for state in states]

    def screenshot(self, name: str) -> Path:
        """Save a full-page screenshot into ``test-artifacts/``, print and return its path.

        The file is ``<name>_<frontend>.png`` (``_lab`` or ``_notebook``).
        """
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}_{self.frontend}.png"
        with contextlib.suppress(Exception):  # a screenshot must never hide the real failure
            self.page.screenshot(path=str(path), full_page=True)
            _SCREENSHOTS.append(path)
            print(f"screenshot: {path}")
        return path


def close_quietly(things: Iterable[Any]) -> None:
    """Close pages, contexts and browsers, ignoring errors of already dead ones."""
    for thing in things:
        with contextlib.suppress(Exception):
            thing.close()
