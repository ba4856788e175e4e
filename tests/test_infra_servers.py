"""The test replay server really cuts bodies into small pieces and records requests."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import httpx
import pytest
from _servers import ReplayServer, pieces


def _raw_exchange(server: ReplayServer, request: bytes) -> list[bytes]:
    """Send ``request`` on a raw socket; return every non-empty ``recv`` until EOF."""
    reads: list[bytes] = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        while data := sock.recv(65536):
            reads.append(data)
    return reads


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()


def _dechunk(raw: bytes) -> list[bytes]:
    """The chunks of a chunked HTTP/1.1 body, in order (the terminating 0-chunk excluded)."""
    rest = raw.split(b"\r\n\r\n", 1)[1]
    chunks = []
    while True:
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line, 16)
        if size == 0:
            return chunks
        chunks.append(rest[:size])
        assert rest[size : size + 2] == b"\r\n"
        rest = rest[size + 2 :]


def test_pieces_cover_data_with_sizes_in_range() -> None:
    data = bytes(range(256)) * 4
    cuts = pieces(data, (1, 9), seed=7)
    assert b"".join(cuts) == data
    assert all(1 <= len(p) <= 9 for p in cuts)
    assert len({len(p) for p in cuts}) == 9
    assert pieces(data, seed=7) == cuts
    assert pieces(data, seed=8) != cuts


def test_event_stream_is_sent_in_one_chunk_per_piece(replay_server: ReplayServer) -> None:
    body = b"".join(b'data: {"n": %d}\n\n' % i for i in range(40)) + b"data: [DONE]\n\n"
    replay_server.add_sse("GET", "/v1/stream", body, seed=11)
    raw = b"".join(_raw_exchange(replay_server, _get("/v1/stream")))
    head = raw.split(b"\r\n\r\n", 1)[0].lower()
    assert b"content-type: text/event-stream" in head
    assert b"transfer-encoding: chunked" in head
    chunks = _dechunk(raw)
    assert chunks == pieces(body, seed=11)
    assert len(chunks) > len(body) // 9


def test_body_arrives_in_many_reads(replay_server: ReplayServer) -> None:
    body = b"x" * 300
    replay_server.add("GET", "/v1/slow", body=body, delay=0.002, seed=3)
    reads = _raw_exchange(replay_server, _get("/v1/slow"))
    raw = b"".join(reads)
    assert raw.endswith(b"\r\n\r\n" + body)
    # One send per piece with TCP_NODELAY: the reader sees the cuts, not one block.
    assert len(reads) >= len(pieces(body, seed=3)) // 2


def test_records_requests_and_replays_queue(replay_server: ReplayServer) -> None:
    path = "/v1/chat/completions"
    replay_server.add_json("POST", path, {"n": 1})
    replay_server.add_json("POST", path, {"n": 2}, status=201)
    payload = {"model": "m", "messages": [{"role": "user", "content": "héllo"}]}
    with httpx.Client(base_url=replay_server.url) as client:
        got = [
            client.post(
                "/chat/completions?x=1", json=payload, headers={"Authorization": "Bearer k"}
            )
            for _ in range(3)
        ]
        missing = client.get("/models")
    assert [(r.status_code, r.json()["n"]) for r in got] == [(200, 1), (201, 2), (201, 2)]
    assert missing.status_code == 404
    assert "nothing queued for GET /v1/models" in missing.json()["error"]["message"]
    first = replay_server.requests[0]
    assert (first.method, first.path, first.query) == ("POST", path, "x=1")
    assert first.headers["authorization"] == "Bearer k"
    assert first.headers["content-type"] == "application/json"
    assert first.json == payload
    assert len(replay_server.requests_to(path, "POST")) == 3
    assert replay_server.wait_for_requests(4)[-1].path == "/v1/models"


def test_handler_builds_reply_from_request(replay_server: ReplayServer) -> None:
    from _servers import Reply

    replay_server.add_handler("POST", "/v1/echo", lambda req: Reply(body=req.body[::-1]))
    response = httpx.post(replay_server.url + "/echo", content=b"abc")
    assert response.content == b"cba"


def test_cut_after_closes_mid_body(replay_server: ReplayServer) -> None:
    replay_server.add("GET", "/v1/cut", body=b"0123456789" * 10, cut_after=25)
    with (
        httpx.Client() as client,
        client.stream("GET", replay_server.url + "/cut") as response,
    ):
        received = bytearray()
        with pytest.raises(httpx.RemoteProtocolError):
            for data in response.iter_bytes():
                received += data
    assert bytes(received) == (b"0123456789" * 10)[:25]


def test_cut_with_reset(replay_server: ReplayServer) -> None:
    replay_server.add_sse("GET", "/v1/reset", b"data: 1\n\n" * 20, cut_after=30, reset=True)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.get(replay_server.url + "/reset")


def test_hang_after_blocks_until_client_times_out(replay_server: ReplayServer) -> None:
    replay_server.add_sse("GET", "/v1/hang", b"data: 1\n\n" * 20, hang_after=12)
    started = time.monotonic()
    received = bytearray()
    with (
        httpx.Client(timeout=httpx.Timeout(5.0, read=0.3)) as client,
        client.stream("GET", replay_server.url + "/hang") as response,
        pytest.raises(httpx.ReadTimeout),
    ):
        for data in response.iter_bytes():
            received += data
    assert bytes(received) == (b"data: 1\n\n" * 20)[:12]
    assert time.monotonic() - started < 5


def test_close_releases_a_hanging_reply() -> None:
    server = ReplayServer()
    server.add("GET", "/v1/h", body=b"abc", hang_after=0)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(_get("/v1/h"))
        server.wait_for_requests(1)
        server.close()
        # After close the connection ends: headers then EOF, no body.
        raw = b""
        while data := sock.recv(4096):
            raw += data
    assert raw.startswith(b"HTTP/1.1 200")
    assert raw.endswith(b"\r\n\r\n")


def test_first_byte_delay(replay_server: ReplayServer) -> None:
    replay_server.add("GET", "/v1/late", body=b"ok", first_byte_delay=0.5)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(replay_server.url + "/late", timeout=httpx.Timeout(5.0, read=0.1))


def test_add_file_uses_headers_fixture(replay_server: ReplayServer, wire_dir: Path) -> None:
    replay_server.add_file(wire_dir / "error_429.json")
    replay_server.add_file(wire_dir / "openai_stream_basic.sse", path="/v1/s")
    limited = httpx.post(replay_server.url + "/chat/completions", json={})
    assert limited.status_code == 429
    assert limited.headers["retry-after-ms"] == "19850"
    assert limited.json() == json.loads((wire_dir / "error_429.json").read_bytes())
    stream = httpx.post(replay_server.url + "/s", json={})
    assert stream.headers["content-type"] == "text/event-stream"
    assert stream.content == (wire_dir / "openai_stream_basic.sse").read_bytes()


@pytest.fixture
def _dirty_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    monkeypatch.setenv("CHATIMG_BASE_URL", "http://127.0.0.1:9/v1")


def test_clean_env_removes_api_variables(_dirty_env: None, clean_env: pytest.MonkeyPatch) -> None:
    assert not [name for name in os.environ if name.startswith(("OPENAI_", "CHATIMG_"))]
