"""The architecture of DESIGN section 3, checked from the source and by behaviour.

- the dependency direction, read from every import (function-level ones too);
- httpx, IPython and ipywidgets only where they belong;
- each setting declared once, with the %config traits, chat()'s keywords and
  the README's table derived from the declarations;
- one failure turned into one result whichever front end sent the request.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
from _ipython import ipython_shell  # noqa: F401  (a fixture)
from _servers import ReplayServer

import jupyter_chatimg as ci
from jupyter_chatimg import _config

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jupyter_chatimg"

# DESIGN section 3, top to bottom: a module imports only modules above it.
ORDER = [
    "_errors",
    "_config",
    "_result",
    "_markdown",
    "_images",
    "_image_inputs",
    "_request",
    "_messages",
    "_dialects",
    "_uploads",
    "_retry",
    "_guard",
    "_bounded",
    "_http",
    "_fetch",
    "_typeschema",
    "_tools",
    "_structured",
    "_html",
    "_terminal",
    "_render_images",
    "_render",
    "_render_tools",
    "_cache",
    "_session",
    "_chat",
    "_progress",
    "_rategate",
    "_journal",
    "_jobs",
    "_batch",
    "panel",
    "_magic_args",
    "_magic",
    "demo",
]
FRONT_ENDS = {"_chat", "_batch", "_magic", "panel"}
NOT_FOR_FRONT_ENDS = {"_dialects", "_http", "_messages"}


def unit_of(path: Path) -> str:
    """The unit of the module list a file belongs to (a package counts as one)."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def imported_units(path: Path) -> set[tuple[str, int]]:
    """(unit, line) of every package module ``path`` imports, at any level of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package_parts = path.relative_to(PACKAGE).parts[:-1]
    found: set[tuple[str, int]] = set()
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue  # for annotations only: no import at run time
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.startswith("jupyter_chatimg."):
                    found.add((node.module.split(".")[1], node.lineno))
                continue
            base = list(package_parts[: len(package_parts) - (node.level - 1)])
            target = [*base, *(node.module.split(".") if node.module else [])]
            if target:
                found.add((target[0], node.lineno))
            else:  # "from . import _cache"
                found.update((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("jupyter_chatimg."):
                    found.add((alias.name.split(".")[1], node.lineno))
    return found


def package_files() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE
    )


def test_every_module_is_in_the_module_list() -> None:
    units = {unit_of(p) for p in package_files()}
    assert units - set(ORDER) == set(), "add new modules to ORDER (DESIGN section 3)"


@pytest.mark.parametrize("path", package_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_module_list(path: Path) -> None:
    me = unit_of(path)
    rank = ORDER.index(me)
    for unit, line in imported_units(path):
        if unit == me:
            continue  # inside one package (panel/, _dialects/, demo/)
        assert unit in ORDER, f"{path.name}:{line} imports unknown module {unit}"
        starts_demo = unit == "demo" and me == "_session"  # on demand, inside a function
        assert ORDER.index(unit) < rank or starts_demo, (
            f"{path.name}:{line}: {me} imports {unit}, which is below it in DESIGN section 3"
        )
        if me in FRONT_ENDS:
            assert unit not in NOT_FOR_FRONT_ENDS, (
                f"{path.name}:{line}: the front end {me} imports {unit}; "
                "front ends talk to _session and _request"
            )


def test_the_demo_is_imported_only_to_start_it() -> None:
    # The core may start the demo on demand (inside a function), never at import time.
    for path in package_files():
        if unit_of(path) == "demo":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and "demo" in (node.module or ""):
                raise AssertionError(f"{path.name}: imports the demo at module level")


LIBRARIES = {"httpx": {"_http"}, "httpx_sse": {"_http"}, "ipywidgets": {"panel", "_progress"}}


@pytest.mark.parametrize("library", sorted(LIBRARIES))
def test_third_party_libraries_stay_in_their_module(library: str) -> None:
    users = set()
    for path in package_files():
        if unit_of(path) == "demo":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            if any(n == library or n.startswith(library + ".") for n in names):
                users.add(unit_of(path))
    assert users <= LIBRARIES[library], f"{library} imported by {sorted(users)}"


def test_nothing_before_the_renderer_imports_ipython_or_ipywidgets() -> None:
    before = ORDER[: ORDER.index("_render")]
    for path in package_files():
        if unit_of(path) not in before:
            continue
        source = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(import|from) (IPython|ipywidgets)", source, re.M), path.name


def test_no_function_outside_the_demo_is_over_60_lines() -> None:
    long = []
    for path in package_files():
        if unit_of(path) == "demo":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 60:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.name} ({length} lines)")
    assert long == []


# -- settings declared once ------------------------------------------------------------


def test_config_traits_are_the_declared_settings() -> None:
    from jupyter_chatimg._magic import ChatImg

    traits = ChatImg.class_traits(config=True)
    declared = {f.name: f for f in _config.SETTINGS}
    assert set(traits) == set(declared)
    for name, trait in traits.items():
        assert trait.help == declared[name].metadata["doc"], name
        assert trait.default_value is None  # None: not set, the next level decides


def test_chat_takes_every_declared_setting_as_a_keyword(clean_env: pytest.MonkeyPatch) -> None:
    from jupyter_chatimg._request import build_request

    values = {
        f.name: f.default if f.default is not None else "x"
        for f in _config.SETTINGS
        if f.name not in ("model", "base_url", "api_key_env", "timeout")
    }
    request = build_request("hi", **values)
    assert set(request.overrides) <= set(values)
    assert not request.params  # no setting was taken for a request field


def test_the_readme_table_is_derived_from_the_declarations() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert _config.settings_table() in readme, (
        "README.md's settings table differs from jupyter_chatimg._config.settings_table(); "
        "paste the function's output into the README"
    )


# -- one failure, four front ends --------------------------------------------------------

BODY = (
    b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"role":"assistant",'
    b'"content":"partial "}}]}\n\n'
    b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"words"}}]}\n\n'
    b'data: {"error":{"message":"the upstream model crashed","type":"server_error"}}\n\n'
)


def _fields(result: Any) -> dict[str, Any]:
    return {
        "error type": type(result.error).__name__,
        "message": str(result.error),
        "text": result.text,
        "model": result.model,
        "endpoint": result.endpoint,
        "demo": result.demo,
        "request model": (result.request or {}).get("model"),
        "request messages": [m["role"] for m in (result.request or {}).get("messages", [])],
    }


def _serve(server: ReplayServer, times: int) -> None:
    for _ in range(times):
        server.add(
            "POST",
            "/v1/chat/completions",
            200,
            {"Content-Type": "text/event-stream"},
            BODY,
            chunk_sizes=(1, 9),
        )


def test_the_same_failure_gives_the_same_result_in_every_front_end(
    ipython_shell: Any, replay_server: ReplayServer
) -> None:
    from jupyter_chatimg.panel import ChatPanel

    _serve(replay_server, 4)
    url = replay_server.url_for("/v1")
    options = {"base_url": url, "model": "m", "max_retries": 0}

    with pytest.raises(ci.StreamError) as info:
        ci.chat("hello", display=False, **options)  # type: ignore[arg-type]
    via_chat = info.value.partial

    ipython_shell.run_cell(f"%%chatimg --base-url {url} -m m -o failed\nhello")
    via_magic = ipython_shell.user_ns["failed"]

    panel = ChatPanel(**options)
    try:
        panel.prompt.value = "hello"
        panel.send()
        assert panel.wait(30)
        via_panel = panel.result
    finally:
        panel.close()

    (via_batch,) = ci.chat_many(["hello"], display=False, **options)  # type: ignore[arg-type]

    expected = _fields(via_chat)
    assert expected["error type"] == "StreamError"
    assert "the upstream model crashed" in expected["message"]
    assert expected["text"] == "partial words"
    assert expected["endpoint"] == replay_server.url_for("/v1").split("//")[1].split("/")[0]
    for name, result in (("magic", via_magic), ("panel", via_panel), ("chat_many", via_batch)):
        assert _fields(result) == expected, name
