"""The demo server as an HTTP server: routes, errors, lifecycle, CLI, robustness."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from _demo import http, server  # noqa: F401 - fixtures

from jupyter_chatimg import demo
from jupyter_chatimg.demo import DEMO_MODELS, DemoServer, ensure_demo_server, serve_demo
from jupyter_chatimg.demo._faults import MDINJECT_PAYLOADS

ROOT = Path(__file__).resolve().parents[1]


def chat_body(**extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "model": "demo-vision",
        "messages": [{"role": "user", "content": "hello"}],
    }
    body.update(extra)
    return body


def test_url_shape_and_loopback_only(server: DemoServer) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}/v1"
    assert server.host == "127.0.0.1"
    assert "running" in repr(server)


def test_models_list(http: httpx.Client) -> None:
    r = http.get("/models")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == list(DEMO_MODELS)
    assert all(m["object"] == "model" and m["owned_by"] for m in body["data"])
    one = http.get("/models/demo-image").json()
    assert one["id"] == "demo-image"


def test_unknown_model_is_404_naming_the_available_ones(http: httpx.Client) -> None:
    r = http.post("/chat/completions", json=chat_body(model="gpt-4o"))
    assert r.status_code == 404
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert "gpt-4o" in err["message"] and "demo-vision" in err["message"]
    assert err["param"] == "model" and err["code"] == "model_not_found"
    assert http.get("/models/gpt-4o").status_code == 404


@pytest.mark.parametrize(
    ("content", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(), "model"),
        (json.dumps({"model": "demo-vision"}).encode(), "messages"),
        (json.dumps({"model": "demo-vision", "messages": []}).encode(), "messages"),
        (json.dumps(chat_body(n="2")).encode(), "n"),
        (json.dumps(chat_body(n=0)).encode(), "n"),
        (json.dumps(chat_body(stream="yes")).encode(), "stream"),
        (json.dumps(chat_body(max_tokens=True)).encode(), "max_tokens"),
        (json.dumps(chat_body(temperature="hot")).encode(), "temperature"),
        (json.dumps(chat_body(stop=["a", "b", "c", "d", "e"])).encode(), "stop"),
        (
            json.dumps(
                chat_body(messages=[{"role": "user", "content": [{"type": "audio", "x": 1}]}])
            ).encode(),
            "messages[0].content[0].type",
        ),
        (json.dumps(chat_body(messages=[{"role": "robot", "content": "x"}])).encode(), None),
    ],
)
def test_bad_requests_are_400_with_standard_body(
    http: httpx.Client, content: bytes, param: str | None
) -> None:
    r = http.post(
        "/chat/completions", content=content, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert err["message"]
    if param is not None:
        assert err["param"] == param


def test_other_paths_and_methods(http: httpx.Client) -> None:
    r = http.get("/chat/completions")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert "error" in r.json()
    assert http.post("/models", json={}).status_code == 405
    r = http.post("/embeddings", json={})
    assert r.status_code == 404 and "Invalid URL" in r.json()["error"]["message"]
    assert http.delete("/chat/completions").status_code == 405


def test_authorization_accepted_never_required_never_echoed(http: httpx.Client) -> None:
    key = "sk-test-secret-demo-key-123456"
    plain = http.post("/chat/completions", json=chat_body())
    keyed = http.post(
        "/chat/completions", json=chat_body(), headers={"Authorization": f"Bearer {key}"}
    )
    assert plain.status_code == keyed.status_code == 200
    assert key not in keyed.text and key not in str(keyed.headers)
    bad = http.post(
        "/chat/completions",
        json=chat_body(model="nope"),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert key not in bad.text


def test_keep_alive_serves_several_requests_on_one_connection(http: httpx.Client) -> None:
    # Errors, streams and plain answers leave the connection usable.
    for body in (chat_body(stream=True), chat_body(model="nope"), chat_body()):
        http.post("/chat/completions", json=body)
    assert http.get("/models").status_code == 200


def test_concurrent_requests(server: DemoServer) -> None:
    results: list[int] = []

    def work() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            r = c.post("/chat/completions", json=chat_body(stream=True))
            results.append(r.status_code)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 8


def test_client_disconnect_mid_stream_is_survived_quietly() -> None:
    code = f"""
import socket, sys, json
sys.path.insert(0, {str(ROOT)!r})
from jupyter_chatimg.demo import serve_demo
import httpx
with serve_demo() as s:
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", s.port)) as c:
            body = json.dumps({{"model": "demo-vision@slow=0.01;long=400", "stream": True,
                               "messages": [{{"role": "user", "content": "hi"}}]}}).encode()
            c.sendall(b"POST /v1/chat/completions HTTP/1.1\\r\\nHost: x\\r\\n"
                      b"Content-Type: application/json\\r\\nContent-Length: "
                      + str(len(body)).encode() + b"\\r\\n\\r\\n" + body)
            c.recv(2000)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\\x01\\0\\0\\0\\0\\0\\0\\0")
    r = httpx.get(s.url + "/models", timeout=5)
    print("STATUS", r.status_code)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert "STATUS 200" in proc.stdout, proc.stderr
    assert proc.stderr == ""


def test_close_ends_hung_connections_and_frees_the_port() -> None:
    s = serve_demo()
    port = s.port
    errors: list[BaseException] = []

    def hang() -> None:
        try:
            httpx.post(
                s.url + "/chat/completions",
                json=chat_body(),
                headers={"X-Demo-Fault": "hang"},
                timeout=30,
            )
        except httpx.HTTPError as e:
            errors.append(e)

    t = threading.Thread(target=hang)
    t.start()
    # Wait until the hanging request has been received (it is then a tracked connection).
    for _ in range(1000):  # up to 10 s under load; usually a few ms
        if s._httpd._conns:
            break
        threading.Event().wait(0.01)
    s.close()
    t.join(10)
    assert not t.is_alive()
    assert errors and isinstance(errors[0], httpx.RemoteProtocolError)
    assert s.closed and "closed" in repr(s)
    s.close()  # idempotent
    with DemoServer(port) as again:  # the port can be reused at once
        assert httpx.get(again.url + "/models", timeout=5).status_code == 200


def test_context_manager_closes() -> None:
    with serve_demo() as s:
        url = s.url
        assert httpx.get(url + "/models", timeout=5).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/models", timeout=2)


def test_ensure_demo_server_is_a_thread_safe_singleton() -> None:
    found: list[DemoServer] = []
    threads = [
        threading.Thread(target=lambda: found.append(ensure_demo_server())) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(s) for s in found}) == 1
    assert ensure_demo_server() is found[0]
    assert httpx.get(found[0].url + "/models", timeout=5).status_code == 200


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_cli_starts_answers_models_and_stops_cleanly(stop: signal.Signals) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_chatimg.demo", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "export OPENAI_BASE_URL=http://127.0.0.1:" in line
        url = line.split("export OPENAI_BASE_URL=")[1].split()[0]
        assert url.endswith("/v1")
        r = httpx.get(url + "/models", timeout=5)
        assert [m["id"] for m in r.json()["data"]] == list(DEMO_MODELS)
    finally:
        proc.send_signal(stop)  # SIGINT is Ctrl+C
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "stopped" in out
    assert err == ""


def test_cli_reports_a_busy_port_in_one_line() -> None:
    with serve_demo() as s:
        proc = subprocess.run(
            [sys.executable, "-m", "jupyter_chatimg.demo", "--port", str(s.port)],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "--port 0" in proc.stderr


def test_leak_endpoint_records_hits(server: DemoServer) -> None:
    before = len(server.leaks)
    r = httpx.get(f"http://127.0.0.1:{server.port}/leak?q=probe", timeout=5)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert server.leaks[before:] == ["/leak?q=probe"]


def test_docstring_documents_faults_and_exact_mdinject_payloads() -> None:
    doc = demo.__doc__ or ""
    for key in (
        "status=",
        "retry-after=",
        "retry-after-ms=",
        "times=",
        "html=",
        "cut=",
        "error=",
        "event-error=",
        "malformed=",
        "slow=",
        "delay=",
        "hang",
        "long=",
        "huge=",
        "mdinject",
        "X-Demo-Fault",
    ):
        assert key in doc, key
    for payload in MDINJECT_PAYLOADS:
        for line in payload.splitlines():
            assert line in doc, line


def test_demo_package_imports_no_core_module_and_no_httpx() -> None:
    code = (
        "import sys; import jupyter_chatimg.demo, jupyter_chatimg.demo.__main__; "
        "import jupyter_chatimg.demo._testing; "
        "bad = [m for m in sys.modules if m == 'httpx' or (m.startswith('jupyter_chatimg.') "
        "and not m.startswith('jupyter_chatimg.demo'))]; print(bad)"
    )
    # Import the demo package with a stub parent so the core's __init__ does not run.
    stub = (
        "import sys, types; m = types.ModuleType('jupyter_chatimg'); "
        f"m.__path__ = [{str(ROOT / 'jupyter_chatimg')!r}]; sys.modules['jupyter_chatimg'] = m; "
    )
    proc = subprocess.run(
        [sys.executable, "-c", stub + code], capture_output=True, text=True, timeout=30
    )
    assert proc.stdout.strip() == "[]", proc.stderr


def test_same_request_gives_byte_identical_replies(http: httpx.Client) -> None:
    body = chat_body(
        model="demo-image",
        stream=True,
        messages=[{"role": "user", "content": "two red hearts on a dark blue background"}],
        stream_options={"include_usage": True},
    )
    first = http.post("/chat/completions", json=body).content
    second = http.post("/chat/completions", json=body).content
    assert first == second  # ids and "created" too: they derive from the request
    other = http.post("/chat/completions", json={**body, "n": 2}).content
    assert other != first
