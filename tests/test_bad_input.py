"""Bad input, typed into a real IPython shell as a user types it (DESIGN.md section 8).

Every case asserts the exact one line the user sees (``chatimg: ...`` on
stderr for what is caught before sending; the ``⚠`` line of the reply for what
the server refused) and, for the first group, that nothing reached the server.
"""

from __future__ import annotations

import json
import socket
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from _ipython import ipython_shell  # noqa: F401  (fixture)
from _servers import ReplayServer
from PIL import Image

import jupyter_chatimg as ci
from jupyter_chatimg._config import host_of

KEY = "sk-test-bad-input-secret-abcdefghijklmnop"
PATH = "/v1/chat/completions"
ANY_IMAGE = "pass a PIL image, a numpy array, a Figure, bytes, a path or an http(s)/data: URL"
OPTIONS = "see %%chatimg? for the options"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def claimed_png(width: int, height: int) -> bytes:
    """A tiny PNG file whose header claims ``width`` x ``height`` (a decompression bomb's shape)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b""))
        + _png_chunk(b"IEND", b"")
    )


NAMESPACE: dict[str, Any] = {
    "count": 3,
    "settings": {"a": 1},
    "corrupt": b"\x89PNG\r\n\x1a\nnot really a png",
    "words": b"hello world",
    "bomb": claimed_png(50_000, 50_000),
    "nothing": [],
    "cube": np.zeros((2, 3, 4, 5), dtype=np.uint8),
    "red": Image.new("RGB", (8, 8), "red"),
    "caption": "a caption",
    "Image": Image,
    "loop": (lambda x: (x.append(x), x)[1])([Image.new("RGB", (4, 4))]),
    "unprintable": type("Unprintable", (), {"__str__": lambda self: 1 / 0})(),
}

# (cell as typed, the exact line on stderr after "⚠ ")
BEFORE_SENDING: dict[str, tuple[str, str]] = {
    # Issue 16 (4): "chatimg: %%chatimg: unrecognized arguments" (two prefixes, and %%
    # for a one-line magic).
    "an unknown option in a line magic (issue 16)": (
        "%chatimg --bogus-opt hi",
        "unrecognized arguments: --bogus-opt; see %chatimg? for the options",
    ),
    # Issue 15 (1): a character device reports size 0 and was read without limit.
    "a device path (issue 15)": (
        """%%chatimg -i "'/dev/zero'"\nhi""",
        "--image '/dev/zero': '/dev/zero' is not a regular file (a device, a pipe or a socket); "
        "pass the path of an image file",
    ),
    # Issue 15 (7): RecursionError with 18 frames; str() raising with 8.
    "a list that contains itself (issue 15)": (
        "%%chatimg -i loop\nhi",
        "--image loop[1]: the list contains itself (or is nested too deep); "
        "pass a flat list of images",
    ),
    "a variable whose str() raises (issue 15)": (
        "%%chatimg\nSay {unprintable}",
        "prompt: {unprintable}: str() of the Unprintable failed (ZeroDivisionError: division "
        "by zero); pass a value that prints, or write {{unprintable}}",
    ),
    # Issue 15 (8): the quotes inside the expression were stripped (a SyntaxError).
    "an expression with quotes inside (issue 15)": (
        "%%chatimg -i Image.open('/nonexistent/x.png')\nhi",
        "--image Image.open('/nonexistent/x.png'): evaluating it failed (FileNotFoundError: "
        "[Errno 2] No such file or directory: '/nonexistent/x.png')",
    ),
    "a path after -i, as written (issue 15)": (
        "%%chatimg -i /nonexistent/x.png\nhi",
        "--image /nonexistent/x.png: no such file '/nonexistent/x.png'; check the path "
        "(relative paths start at {cwd})",
    ),
    "unknown variable in --image": (
        "%%chatimg --image nosuch\nhi",
        "--image nosuch: name 'nosuch' is not defined; define it in the notebook first "
        "(or pass a path or URL in quotes)",
    ),
    "unknown function in --image": (
        "%%chatimg --image 'load_it()'\nhi",
        "--image load_it(): name 'load_it' is not defined; define it in the notebook first "
        "(or pass a path or URL in quotes)",
    ),
    "--image expression that raises": (
        "%%chatimg --image 1/0\nhi",
        "--image 1/0: evaluating it failed (ZeroDivisionError: division by zero)",
    ),
    "an int as an image": (
        "%%chatimg --image count\nhi",
        f"--image count: an int is not an image; {ANY_IMAGE}",
    ),
    "a dict as an image": (
        "%%chatimg --image settings\nhi",
        "--image settings: a dict is not an image; pass a list of images (in the order they "
        "should be sent)",
    ),
    "a plain string as the second image": (
        "%%chatimg --image red --image caption\nhi",
        f"--image caption: a str is not an image; {ANY_IMAGE}",
    ),
    "corrupt bytes": (
        "%%chatimg --image corrupt\nhi",
        "--image corrupt: the bytes are not a readable image (Truncated File Read); check the file",
    ),
    "bytes that are not an image": (
        "%%chatimg --image words\nhi",
        "--image words: the bytes are not a readable image (cannot identify image file); "
        "check the file",
    ),
    "a 50,000 x 50,000 image": (
        "%%chatimg --image bomb\nhi",
        "--image bomb: 50000x50000 is 2500 megapixels, above the 100 megapixel limit; downscale "
        "it first (img.thumbnail((2048, 2048)))",
    ),
    "an empty list of images": (
        "%%chatimg --image nothing\nhi",
        "--image nothing: the list is empty; pass at least one image",
    ),
    "a numpy array of the wrong shape": (
        "%%chatimg --image cube\nhi",
        "--image cube: a numpy array of shape (2, 3, 4, 5) is not an image; for a batch pass "
        "list(arr); one image is HxW, HxWx1, HxWx3 or HxWx4",
    ),
    "a path that does not exist": (
        "%%chatimg --image '\"/no/such/file.png\"'\nhi",
        "--image \"/no/such/file.png\": no such file '/no/such/file.png'; check the path "
        "(relative paths start at {cwd})",
    ),
    "a file: URL": (
        "%%chatimg --image '\"file:///etc/passwd\"'\nhi",
        '--image "file:///etc/passwd": file: URLs cannot be sent, only http(s) and data: URLs; '
        "pass the file's path instead",
    ),
    "an ftp: URL": (
        "%%chatimg --image '\"ftp://host/y.png\"'\nhi",
        '--image "ftp://host/y.png": ftp: URLs cannot be sent, only http(s) and data: URLs; '
        "download it and pass the bytes or the path",
    ),
    "an http URL with no host": (
        "%%chatimg --image '\"http://\"'\nhi",
        "--image \"http://\": the URL 'http://' has no host; check it",
    ),
    "a data: URI that is not an image": (
        "%%chatimg --image '\"data:text/plain;base64,aGVsbG8=\"'\nhi",
        '--image "data:text/plain;base64,aGVsbG8=": the data: URI holds text/plain, not an '
        "image; pass a data:image/...;base64,... URI",
    ),
    "an empty prompt and no image": (
        "%%chatimg\n   \n",
        "empty prompt: write a question in the cell, or attach an image with --image NAME",
    ),
    "an empty line magic": (
        "%chatimg",
        "empty prompt: write a question in the cell, or attach an image with --image NAME",
    ),
    "an unknown {name} in the prompt": (
        "%%chatimg\nDescribe {nosuch} please",
        "prompt: {nosuch} names no variable 'nosuch' in the notebook; define it, or write "
        "{{nosuch}} for literal braces",
    ),
    "--stream and --no-stream": (
        "%%chatimg --stream --no-stream\nhi",
        f"argument --no-stream: not allowed with argument --stream; {OPTIONS}",
    ),
    "--json and --extra both set response_format": (
        '%%chatimg --json --extra \'{"response_format": {"type": "text"}}\'\nhi',
        "--json and --extra both set response_format; keep one of them",
    ),
    "an unknown option": (
        "%%chatimg --frobnicate\nhi",
        f"unrecognized arguments: --frobnicate; {OPTIONS}",
    ),
    "an unterminated quote": (
        '%%chatimg --system "be brief\nhi',
        "cannot read the options (No closing quotation); check the quotes",
    ),
    "invalid JSON in --extra": (
        "%%chatimg --extra '{bad json'\nhi",
        "--extra: not valid JSON (Expecting property name enclosed in double quotes at column 2); "
        "quote it, e.g. --extra '{\"key\": 1}'",
    ),
    "a JSON list in --extra": (
        "%%chatimg --extra '[1]'\nhi",
        "--extra: expected a JSON object, got list",
    ),
    "a JSON list in --logit-bias": (
        "%%chatimg --logit-bias '[1, 2]'\nhi",
        "--logit-bias: expected a JSON object, got list",
    ),
    "invalid JSON in --logit-bias": (
        "%%chatimg --logit-bias '{1: 5}'\nhi",
        "--logit-bias: not valid JSON (Expecting property name enclosed in double quotes at "
        "column 2); quote it, e.g. --logit-bias '{\"key\": 1}'",
    ),
    "a logit bias out of range": (
        "%%chatimg --logit-bias '{\"50256\": 500}'\nhi",
        "logit_bias: {'50256': 500} is not valid; expected an object of token id -> integer "
        "-100..100",
    ),
    "more than 4 --stop": (
        "%%chatimg --stop a --stop b --stop c --stop d --stop e\nhi",
        "--stop: at most 4 stop strings, got 5",
    ),
    "an ftp:// base URL": (
        "%%chatimg --base-url ftp://example.com/v1\nhi",
        "base_url: 'ftp://example.com/v1' is not an http(s) URL; give the endpoint's base URL, "
        "e.g. https://api.openai.com/v1",
    ),
    "a base URL that is not a URL": (
        "%%chatimg --base-url 'not a url'\nhi",
        "base_url: 'not a url' is not an http(s) URL; give the endpoint's base URL, "
        "e.g. https://api.openai.com/v1",
    ),
    "no key for api.openai.com": (
        "%%chatimg --base-url https://api.openai.com/v1\nhi",
        # Issue 15 (12): the key that is set is named, with the endpoint it is paired with.
        "no API key for https://api.openai.com/v1: CHATIMG_API_KEY is set for {chatimg_host}, "
        "not for this endpoint (a key goes only to the scheme, host and port it was given for); "
        "name the variable that holds this endpoint's key with --api-key-env NAME",
    ),
    "the key itself given to --api-key-env": (
        f"%%chatimg --api-key-env {KEY}\nhi",
        "--api-key-env takes the NAME of an environment variable, not the key itself (a cell's "
        "source is saved in the notebook); e.g. --api-key-env MY_KEY",
    ),
    "--api-key-env naming an unset variable": (
        "%%chatimg --api-key-env NOT_SET_ANYWHERE\nhi",
        "the environment variable NOT_SET_ANYWHERE named by api_key_env is not set in the kernel; "
        "set it (os.environ or the shell that started Jupyter) and re-run",
    ),
    "--temperature out of range": (
        "%%chatimg --temperature 3\nhi",
        "temperature: 3.0 is not valid; expected number 0..2",
    ),
    "--temperature not a number": (
        "%%chatimg --temperature hot\nhi",
        f"argument --temperature/-t: invalid float value: 'hot'; {OPTIONS}",
    ),
    "--top-p out of range": (
        "%%chatimg --top-p 1.5\nhi",
        "top_p: 1.5 is not valid; expected number 0..1",
    ),
    "--n zero": ("%%chatimg --n 0\nhi", "n: 0 is not valid; expected integer 1..128"),
    "--max-tokens zero": (
        "%%chatimg --max-tokens 0\nhi",
        "max_tokens: 0 is not valid; expected integer >= 1",
    ),
    "--frequency-penalty out of range": (
        "%%chatimg --frequency-penalty 5\nhi",
        "frequency_penalty: 5.0 is not valid; expected number -2..2",
    ),
    "--seed not an integer": (
        "%%chatimg --seed 1.5\nhi",
        f"argument --seed: invalid int value: '1.5'; {OPTIONS}",
    ),
    "a negative --max-side": (
        "%%chatimg --max-side -5\nhi",
        "--max-side: -5 must be >= 0 pixels (0 = send as is)",
    ),
    "a zero --timeout": (
        "%%chatimg --timeout 0\nhi",
        "--timeout: 0 must be a positive number of seconds",
    ),
    "an unknown --detail": (
        "%%chatimg --detail ultra\nhi",
        "argument --detail: invalid choice: 'ultra' (choose from 'auto', 'low', "
        f"'high'); {OPTIONS}",
    ),
    "--tools naming nothing": (
        "%%chatimg --tools nosuch\nhi",
        "--tools nosuch: NameError: name 'nosuch' is not defined; give a list of tool dicts or a "
        "JSON list",
    ),
    "invalid JSON in --tool-choice": (
        "%%chatimg --tool-choice '{bad'\nhi",
        "--tool-choice: not valid JSON (Expecting property name enclosed in double quotes at "
        "column 2); quote it, e.g. --tool-choice '{\"key\": 1}'",
    ),
}


@pytest.fixture
def server(clean_env: pytest.MonkeyPatch) -> Iterator[ReplayServer]:
    from _servers import _Server

    # The server's own tracebacks (a client that closed after [DONE] while the server
    # still wrote the chunked terminator) go to the same stderr the test asserts on.
    clean_env.setattr(_Server, "handle_error", lambda self, request, address: None)
    with ReplayServer() as srv:
        clean_env.setenv("CHATIMG_BASE_URL", srv.url)
        clean_env.setenv("CHATIMG_API_KEY", KEY)
        yield srv


@pytest.fixture
def shell(ipython_shell: Any, server: ReplayServer) -> Iterator[Any]:
    ipython_shell.user_ns.update(NAMESPACE)
    yield ipython_shell
    for name in NAMESPACE:
        ipython_shell.user_ns.pop(name, None)


def run(shell: Any, capsys: pytest.CaptureFixture[str], cell: str) -> tuple[str, str]:
    capsys.readouterr()
    shell.user_ns.pop("_", None)
    shell.run_cell(cell)
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_at_least_thirty_cases() -> None:
    assert len(BEFORE_SENDING) + 4 >= 30


@pytest.mark.parametrize("name", list(BEFORE_SENDING))
def test_refused_before_sending(
    name: str, shell: Any, server: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    cell, message = BEFORE_SENDING[name]
    out, err = run(shell, capsys, cell)
    chatimg_host = host_of(os.environ.get("CHATIMG_BASE_URL", ""))
    expected = message.replace("{cwd}", os.getcwd()).replace("{chatimg_host}", chatimg_host)
    assert err == "⚠ " + expected + "\n"
    assert out == ""
    assert server.requests == []  # nothing was sent
    assert KEY not in out + err


def sse_reply(text: str) -> str:
    chunk = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": "stop"}]}
    return f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n"


def test_a_good_cell_still_works_after_all_that(
    shell: Any, server: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    for cell, _ in BEFORE_SENDING.values():
        run(shell, capsys, cell)
    server.add_sse("POST", PATH, sse_reply("Fine."))
    out, err = run(shell, capsys, "%%chatimg --image red\nWhat colour?")
    assert out.strip() == "Fine." and err == ""
    assert len(server.requests) == 1
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def _error(status: int, message: str) -> dict[str, Any]:
    body = {"error": {"message": message, "type": "x", "param": None, "code": None}}
    return {
        "status": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
    }


def test_unknown_model_gives_one_line_with_the_hint(
    shell: Any, server: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.add("POST", PATH, **_error(404, "The model `gpt-9` does not exist"))
    out, err = run(shell, capsys, "%%chatimg -m gpt-9\nhi")
    assert err == ""
    assert out == (
        "⚠ HTTP 404: The model `gpt-9` does not exist (check the model name ('gpt-9') and the "
        "base URL; %chatimg_models lists the models)\n"
    )
    assert isinstance(shell.user_ns["_"].error, ci.APIError)
    assert len(server.requests) == 1


def test_401_with_no_key_named_says_how_to_name_one(
    shell: Any, server: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # The key is paired with 127.0.0.1:PORT; "localhost:PORT" is another host: it gets no key.
    other = server.url.replace("127.0.0.1", "localhost")
    server.add("POST", PATH, **_error(401, "Missing bearer token"))
    out, err = run(shell, capsys, f"%%chatimg --base-url {other}\nhi")
    host = f"localhost:{server.port}"
    assert out == (
        f"⚠ HTTP 401: Missing bearer token (no key was sent to {host}: name the environment "
        "variable that holds its key with --api-key-env NAME (or %config ChatImg.api_key_env))\n"
    )
    assert err == ""
    assert len(server.requests) == 1 and "authorization" not in server.requests[0].headers


def test_401_with_a_wrong_key_names_where_it_came_from(
    shell: Any, server: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.add("POST", PATH, **_error(401, "Incorrect API key provided: sk-bad-i***mnop"))
    out, err = run(shell, capsys, "%%chatimg\nhi")
    assert out == (
        "⚠ HTTP 401: Incorrect API key provided: sk-bad-i***mnop (check the key in "
        "CHATIMG_API_KEY)\n"
    )
    assert KEY not in out and err == ""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "line"),
    [
        (
            "http://127.0.0.1:{port}/v1",
            "⚠ cannot reach 127.0.0.1:{port} (connection refused); check the base URL and that "
            "the server is running",
        ),
        (
            "http://no-such-host.invalid/v1",
            "⚠ cannot reach no-such-host.invalid (the host name does not resolve); check the "
            "base URL and that the server is running",
        ),
    ],
)
def test_unreachable_host(
    url: str, line: str, shell: Any, server: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    out, err = run(shell, capsys, f"%%chatimg --base-url {url.format(port=port)}\nhi")
    assert out == line.format(port=port) + "\n" and err == ""
    assert isinstance(shell.user_ns["_"].error, ci.APIError)
