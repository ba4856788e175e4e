"""The key never leaks: notebooks, the panel, errors, reprs, tracebacks, logs.

With ``CHATIMG_API_KEY`` set to a known secret and ``CHATIMG_BASE_URL`` at a
loopback demo server (the key is paired with it, so it is really sent), every
notebook in ``notebooks/`` and a notebook of faults, errors, reprs, verbose
tracebacks, DEBUG logs and a driven panel are executed with nbclient (widget
state stored), saved, and searched for the key in several spellings: zero hits.
"""

from __future__ import annotations

import base64
import logging
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

import jupyter_chatimg as ci

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-leaktest-" + secrets.token_hex(16)

pytestmark = pytest.mark.timeout(600)


def spellings(key: str) -> list[str]:
    """The key as it could show up: whole, in parts, bearer header, base64, escaped."""
    return [
        key,
        key[3:19],
        key[-16:],
        base64.b64encode(key.encode()).decode()[:20],
        base64.b64encode(f"Bearer {key}".encode()).decode()[:20],
        key.encode().hex()[:24],
    ]


def assert_no_key(text: str, where: str) -> None:
    for spelling in spellings(SECRET):
        assert spelling not in text, f"the key ({spelling!r}) is in {where}"


@pytest.fixture
def demo_with_key(clean_env: pytest.MonkeyPatch) -> Iterator[Any]:
    server = ci.serve_demo()
    clean_env.setenv("CHATIMG_BASE_URL", server.url)
    clean_env.setenv("CHATIMG_API_KEY", SECRET)
    clean_env.setenv("CHATIMG_MODEL", "demo-vision")
    try:
        yield server
    finally:
        server.close()


FAULT_CELLS = [
    "%load_ext jupyter_chatimg",
    "import logging, os, sys, pickle\nimport jupyter_chatimg as ci\n"
    "from jupyter_chatimg._config import resolve_settings",
    "%%chatimg --stats\nWhat is 2+3?",
    "%%chatimg -m demo-image\na red circle on a blue background",
    "%%chatimg -m demo-vision@cut=3\nHello",
    "%%chatimg -m demo-vision@status=401\nHello",
    "%%chatimg -m demo-vision@html=502\nHello",
    "%%chatimg -m demo-vision@error=2\nHello",
    "%%chatimg -m demo-vision@event-error=2\nHello",
    "%%chatimg -m demo-vision@malformed=1\nHello",
    "%%chatimg --base-url https://api.openai.com/v1\nHello",
    "%%chatimg --api-key-env NOT_SET_ANYWHERE\nHello",
    # Reprs and strings of what a user may look at.
    "r = ci.chat('hi', display=False)\n"
    "print(repr(r), r.provenance(), r.request, r.raw, r.endpoint)\nr",
    "s = resolve_settings()\nprint(repr(s), str(s.api_key), repr(s.api_key), s.key_source)\n"
    "print(vars(s) if hasattr(s, '__dict__') else s.__dataclass_fields__.keys())\ns",
    "try:\n    pickle.dumps(s.api_key)\nexcept TypeError as exc:\n    print('pickle:', exc)",
    # Every error kind, as str, repr, body and partial.
    "for spec in ['status=400', 'status=401', 'status=403', 'status=404', 'status=429', "
    "'status=500', 'html=502', 'cut=2', 'error=1', 'event-error=1']:\n"
    "    try:\n"
    "        ci.chat('hi', model='demo-vision@' + spec, display=False, max_retries=0)\n"
    "    except ci.ChatImgError as exc:\n"
    "        print(type(exc).__name__, str(exc), repr(exc), getattr(exc, 'body', None), "
    "getattr(exc, 'partial', None), exc.__dict__)",
    "%config ChatImg",
    # DEBUG logs of httpx/httpcore and everything else, to the output.
    "logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, force=True)\n"
    "r = ci.chat('logged', display=False)\n"
    "logging.getLogger().setLevel(logging.WARNING)",
    # Tracebacks that print local variables (IPython's verbose mode), with --debug.
    "%xmode Verbose",
    "%%chatimg --debug -m demo-vision@status=401\nHello",
    "%%chatimg --debug --base-url https://api.openai.com/v1\nHello",
    "%%chatimg --debug -m demo-vision@cut=2\nHello",
    "ci.chat('hi', model='demo-vision@status=403', max_retries=0)",
    "%xmode Context",
    # The panel, driven from Python; its widget state is saved into the notebook.
    "%chatimg_panel",
    "p = _chatimg_panel\np.prompt.value = 'What is 2+3?'\np.send()\nassert p.wait(30)\n"
    "p.prompt.value = 'again'\np.model.value = 'demo-vision@status=401'\np.send()\n"
    "assert p.wait(30)\nprint(p.result, p.history)\np.export()",
]


def execute(path: Path, tmp_path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        store_widget_state=True,
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    nbformat.write(nb, path)
    return nb


def notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks_to_check() -> None:
    assert notebooks()


def test_every_notebook_and_the_panel_keep_the_key_out(demo_with_key: Any, tmp_path: Path) -> None:
    copies = []
    for source in notebooks():
        copy = tmp_path / source.name
        shutil.copy(source, copy)
        copies.append(copy)
    for extra in (ROOT / "notebooks").iterdir():  # images and data the notebooks read
        if extra.is_file() and extra.suffix != ".ipynb":
            shutil.copy(extra, tmp_path / extra.name)
    faults = tmp_path / "zz_faults_and_errors.ipynb"
    nbformat.write(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in FAULT_CELLS]),
        faults,
    )
    copies.append(faults)

    for path in copies:
        execute(path, tmp_path)
        assert_no_key(path.read_text(encoding="utf-8"), path.name)

    # The fault notebook really did what it says (so that "no key" means something).
    saved = nbformat.read(faults, as_version=4)
    text = path_text(saved)
    for expected in (
        "HTTP 401: demo fault: injected 401",
        "check the key in CHATIMG_API_KEY",
        "the server reported an error mid-reply",
        "HTTP Request: POST",  # the DEBUG logs are there
        "ConfigError",  # a verbose traceback is there
        "Secret('***')",
        "<environment: ",  # a verbose traceback showed the environment, without values
        "Hello! I am",  # replies arrived (the key was sent with each request)
        "application/vnd.jupyter.widget-state+json",
    ):
        assert expected in text, expected
    assert all(c.get("execution_count") for c in saved.cells)
    # Any other file the notebooks wrote.
    for written in tmp_path.rglob("*"):
        if written.is_file() and written.stat().st_size < 50_000_000:
            assert_no_key(written.read_bytes().decode("utf-8", "replace"), str(written))


def path_text(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + str(nb.metadata)


def test_key_reaches_the_endpoint_and_no_log(
    clean_env: pytest.MonkeyPatch, replay_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    clean_env.setenv("CHATIMG_BASE_URL", replay_server.url)
    clean_env.setenv("CHATIMG_API_KEY", SECRET)
    replay_server.add_sse(
        "POST",
        "/v1/chat/completions",
        'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n'
        "data: [DONE]\n\n",
    )
    replay_server.add(
        "POST",
        "/v1/fail/chat/completions",
        401,
        {"Content-Type": "application/json"},
        '{"error": {"message": "bad key", "type": "auth"}}',
    )
    with caplog.at_level(logging.DEBUG):
        for name in ("httpx", "httpcore", "hpack", "h11", "jupyter_chatimg"):
            logging.getLogger(name).setLevel(logging.DEBUG)
        result = ci.chat("hi", display=False)
        with pytest.raises(ci.AuthenticationError) as info:
            ci.chat("hi", display=False, base_url=replay_server.url + "/fail")
    assert replay_server.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert replay_server.requests[1].headers["authorization"] == f"Bearer {SECRET}"  # same host
    assert any("HTTP Request" in r.getMessage() for r in caplog.records)
    logged = "\n".join(
        f"{r.name} {r.getMessage()} {r.args!r} {r.__dict__!r}" for r in caplog.records
    )
    assert_no_key(logged, "the DEBUG logs")
    err = info.value
    for shown in (str(err), repr(err), repr(err.body), repr(err.__dict__), repr(result)):
        assert_no_key(shown, "an error or result")
    from jupyter_chatimg._config import resolve_settings
    from jupyter_chatimg._http import Client

    settings = resolve_settings()
    client = Client(settings)
    assert settings.api_key is not None and settings.api_key.reveal() == SECRET
    for shown in (repr(settings), str(settings), repr(vars(client)), repr(client._headers())):
        assert_no_key(shown, "settings or client")


@pytest.mark.parametrize(
    ("status", "body", "stream"),
    [
        (401, '{"error": {"message": "Invalid API key: %s", "type": "auth", "key": "%s"}}', False),
        (200, '{"error": {"message": "quota exceeded for %s", "detail": "%s"}}', False),
        (
            200,
            'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
            'data: {"error": {"message": "key %s revoked", "param": "%s"}}\n\n',
            True,
        ),
    ],
)
def test_a_server_that_echoes_the_key_does_not_make_it_show(
    status: int,
    body: str,
    stream: bool,
    clean_env: pytest.MonkeyPatch,
    replay_server: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clean_env.setenv("CHATIMG_BASE_URL", replay_server.url)
    clean_env.setenv("CHATIMG_API_KEY", SECRET)
    content_type = "text/event-stream" if stream else "application/json"
    replay_server.add(
        "POST",
        "/v1/chat/completions",
        status,
        {"Content-Type": content_type},
        body % (SECRET, SECRET),
    )
    with pytest.raises(ci.APIError) as info:
        ci.chat("hi", stream=stream, max_retries=0)
    err = info.value
    shown = capsys.readouterr()
    partial = getattr(err, "partial", None)
    for text in (
        str(err),
        repr(err),
        repr(err.body),
        repr(err.args),
        shown.out,
        shown.err,
        repr(partial),
    ):
        assert_no_key(text, "an echoed error")
    assert "***" in str(err)


def test_settings_copy_but_never_pickle_or_show_the_key() -> None:
    import copy
    import dataclasses
    import pickle

    from jupyter_chatimg._config import resolve_settings

    settings = resolve_settings(env={"OPENAI_API_KEY": SECRET}, config={})
    copied = copy.deepcopy(settings)
    assert copied.api_key is not None and copied.api_key.reveal() == SECRET
    assert_no_key(repr(dataclasses.asdict(settings)), "asdict(settings)")
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(settings)


def test_the_key_is_masked_before_any_code_holds_it(
    clean_env: pytest.MonkeyPatch, replay_server: Any
) -> None:
    # Issue 15 (3): a gateway echoed the Authorization header in a mid-stream error event;
    # the error line was masked, but a verbose traceback's local variables held the key.
    import traceback

    clean_env.setenv("CHATIMG_BASE_URL", replay_server.url)
    clean_env.setenv("CHATIMG_API_KEY", SECRET)
    echo = f"Bearer {SECRET}"
    body = (
        'data: {"choices":[{"index":0,"delta":{"content":"you sent ' + echo + ' "}}]}\n\n'
        'data: {"error":{"message":"bad header ' + echo + '"}}\n\n'
    )
    # 1-3 byte pieces: the key arrives split across reads.
    replay_server.add(
        "POST", "/v1/chat/completions", 200, {"Content-Type": "text/event-stream"}, body,
        chunk_sizes=(1, 3),
    )  # fmt: skip
    with pytest.raises(ci.StreamError) as info:
        ci.chat("hi", max_retries=0, display=False)
    err = info.value
    assert err.partial is not None and err.partial.text == "you sent Bearer *** "
    package = str(Path(ci.__file__).parent)
    ours = [
        f
        for f, _ in traceback.walk_tb(err.__traceback__)
        if f.f_code.co_filename.startswith(package)
    ]
    assert len(ours) >= 3  # chat -> session -> HTTP layer
    for frame in ours:  # what %xmode Verbose prints: every local of every frame of ours
        for name, value in frame.f_locals.items():
            assert_no_key(f"{name} = {value!r}", f"a local of {frame.f_code.co_name}")
    assert_no_key(repr(err.partial.raw), "the partial reply")
