"""Every fault mode of the demo server behaves as its docstring says (httpx over loopback)."""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Any

import httpx
import pytest
from _demo import http, server  # noqa: F401 - fixtures
from PIL import Image

from jupyter_chatimg.demo import DemoServer
from jupyter_chatimg.demo._faults import MDINJECT_PAYLOADS, FaultSyntaxError, parse_faults
from jupyter_chatimg.demo._testing import decode_data_uri, markdown_data_uris


def body(model: str = "demo-vision", stream: bool = True, **extra: object) -> dict[str, Any]:
    return {
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "hello there"}],
        **extra,
    }


def read_raw(http: httpx.Client, fault: str | None, **kw: Any) -> tuple[bytes, Exception | None]:
    """The raw response bytes received, and the error that ended the read (if any)."""
    headers = {"X-Demo-Fault": fault} if fault else {}
    got = bytearray()
    try:
        with http.stream("POST", "/chat/completions", json=body(**kw), headers=headers) as r:
            assert r.status_code == 200
            for piece in r.iter_raw():
                got += piece
    except httpx.HTTPError as e:
        return bytes(got), e
    return bytes(got), None


def events(raw: bytes) -> list[str]:
    return [e for e in raw.decode().split("\n\n") if e.strip()]


def chunks(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for e in events(raw):
        data = e.removeprefix("data: ")
        if data.startswith("{"):
            try:
                out.append(json.loads(data))
            except ValueError:
                continue  # the malformed fault's line
    return out


def content_of(cs: list[dict[str, Any]]) -> list[str]:
    return [
        c["choices"][0]["delta"]["content"]
        for c in cs
        if c.get("choices") and c["choices"][0]["delta"].get("content")
    ]


def finishes(cs: list[dict[str, Any]]) -> list[str]:
    return [
        c["choices"][0]["finish_reason"]
        for c in cs
        if c.get("choices") and c["choices"][0]["finish_reason"]
    ]


def test_parse_faults_syntax() -> None:
    f = parse_faults("status=429; retry-after=2;retry-after-ms=1500;times=3", "cut=5")
    assert (f.status, f.retry_after, f.retry_after_ms, f.times, f.cut) == (429, "2", 1500, 3, 5)
    assert f.spec == "status=429;retry-after=2;retry-after-ms=1500;times=3;cut=5"
    assert parse_faults("hang").hang and parse_faults("mdinject").mdinject
    assert not parse_faults(None, "").any
    for bad in (
        "explode",
        "status=abc",
        "status=999",
        "status=204",
        "long=0",
        "slow=-1",
        "huge=999999",
    ):
        with pytest.raises(FaultSyntaxError):
            parse_faults(bad)


@pytest.mark.parametrize("status", [400, 401, 408, 429, 500, 503])
def test_status_with_openai_error_body(http: httpx.Client, status: int) -> None:
    r = http.post(
        "/chat/completions",
        json=body(),
        headers={"X-Demo-Fault": f"status={status};retry-after=7;retry-after-ms=6500"},
    )
    assert r.status_code == status
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert f"injected {status}" in err["message"]
    assert r.headers["retry-after"] == "7" and r.headers["retry-after-ms"] == "6500"
    if status == 429:
        assert err["code"] == "rate_limit_exceeded"


def test_times_fails_first_n_then_succeeds(http: httpx.Client, server: DemoServer) -> None:
    spec = "status=503;times=2;tag=times-test"
    codes = [
        http.post(
            "/chat/completions", json=body(stream=False), headers={"X-Demo-Fault": spec}
        ).status_code
        for _ in range(4)
    ]
    assert codes == [503, 503, 200, 200]
    assert server.fault_hits("status=503; times=2; tag=times-test") == 4
    # Another spec string has its own count.
    other = http.post(
        "/chat/completions",
        json=body(stream=False),
        headers={"X-Demo-Fault": "status=503;times=2;tag=other"},
    )
    assert other.status_code == 503


def test_model_suffix_selects_faults(http: httpx.Client) -> None:
    r = http.post("/chat/completions", json=body(model="demo-vision@status=500", stream=False))
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    ok = http.post("/chat/completions", json=body(model="demo-vision@long=7", stream=False))
    assert ok.json()["model"] == "demo-vision"
    assert len(ok.json()["choices"][0]["message"]["content"].split()) == 7


def test_bad_spec_is_400(http: httpx.Client) -> None:
    r = http.post("/chat/completions", json=body(), headers={"X-Demo-Fault": "explode=1"})
    assert r.status_code == 400
    assert "unknown demo fault 'explode'" in r.json()["error"]["message"]


def test_faults_apply_to_models_endpoint(http: httpx.Client) -> None:
    assert http.get("/models", headers={"X-Demo-Fault": "status=500"}).status_code == 500


def test_html_error_page(http: httpx.Client) -> None:
    r = http.post("/chat/completions", json=body(), headers={"X-Demo-Fault": "html=502"})
    assert r.status_code == 502
    assert r.headers["content-type"].startswith("text/html")
    assert "<html>" in r.text and "502 Bad Gateway" in r.text


def test_cut_closes_mid_stream(http: httpx.Client) -> None:
    raw, err = read_raw(http, "cut=5")
    assert isinstance(err, httpx.RemoteProtocolError)
    cs = chunks(raw)
    assert len(content_of(cs)) == 5
    assert finishes(cs) == [] and b"[DONE]" not in raw


def test_cut_non_streaming_truncates_the_body(http: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/chat/completions", json=body(stream=False), headers={"X-Demo-Fault": "cut=1"})


def test_eof_ends_cleanly_without_finish(http: httpx.Client) -> None:
    raw, err = read_raw(http, "eof=3")
    assert err is None
    cs = chunks(raw)
    assert len(content_of(cs)) == 3 and finishes(cs) == [] and b"[DONE]" not in raw


def test_error_after_n_tokens(http: httpx.Client) -> None:
    raw, err = read_raw(http, "error=4")
    assert err is None
    evs = events(raw)
    assert evs[-1].startswith('data: {"error"')
    payload = json.loads(evs[-1].removeprefix("data: "))
    assert payload["error"]["message"] == "demo fault: injected error after 4 tokens"
    assert len(content_of(chunks(raw))) == 4 and b"[DONE]" not in raw


def test_event_error(http: httpx.Client) -> None:
    raw, _ = read_raw(http, "event-error=2")
    last = events(raw)[-1]
    assert last.startswith("event: error\ndata: {")
    assert "injected error after 2 tokens" in last
    assert len(content_of(chunks(raw))) == 2


def test_error_non_streaming_is_a_200_error_body(http: httpx.Client) -> None:
    r = http.post("/chat/completions", json=body(stream=False), headers={"X-Demo-Fault": "error=1"})
    assert r.status_code == 200 and "injected error" in r.json()["error"]["message"]


def test_malformed_line_then_normal(http: httpx.Client) -> None:
    clean, _ = read_raw(http, None)
    raw, err = read_raw(http, "malformed=3")
    assert err is None
    bad = []
    for e in events(raw):
        data = e.removeprefix("data: ")
        if data.startswith("{"):
            try:
                json.loads(data)
            except ValueError:
                bad.append(data)
    assert len(bad) == 1
    assert "".join(content_of(chunks(raw))) == "".join(content_of(chunks(clean)))
    assert raw.rstrip().endswith(b"data: [DONE]")


def test_ping_comments(http: httpx.Client) -> None:
    raw, _ = read_raw(http, "ping", max_tokens=4)
    assert sum(1 for e in events(raw) if e == ": ping") == 4


def test_slow_tokens(http: httpx.Client) -> None:
    arrivals: list[float] = []
    t0 = time.monotonic()
    with http.stream(
        "POST",
        "/chat/completions",
        json=body(max_tokens=5),
        headers={"X-Demo-Fault": "slow=0.1"},
    ) as r:
        for line in r.iter_lines():
            if '"content":"' in line and '"role"' not in line:
                arrivals.append(time.monotonic())
    assert len(arrivals) == 5
    # The server waits 0.1 s before each chunk after the first; arrival gaps alone could
    # shrink when this client reads late, so check the total, which cannot.
    assert arrivals[-1] - t0 >= 0.4


def test_delay_before_headers(http: httpx.Client) -> None:
    t0 = time.monotonic()
    r = http.post(
        "/chat/completions", json=body(stream=False), headers={"X-Demo-Fault": "delay=0.3"}
    )
    assert r.status_code == 200 and time.monotonic() - t0 >= 0.3


def test_hang_never_answers_and_the_server_stays_up(server: DemoServer) -> None:
    with httpx.Client(base_url=server.url, timeout=httpx.Timeout(5, read=0.5)) as c:
        with pytest.raises(httpx.ReadTimeout):
            c.post("/chat/completions", json=body(), headers={"X-Demo-Fault": "hang"})
        assert c.get("/models").status_code == 200


def test_long_reply_is_fast(http: httpx.Client) -> None:
    t0 = time.monotonic()
    raw, err = read_raw(http, "long=20000", stream_options={"include_usage": True})
    elapsed = time.monotonic() - t0
    assert err is None
    cs = chunks(raw)
    assert len(content_of(cs)) == 20000
    assert cs[-1]["usage"]["completion_tokens"] == 20000
    assert elapsed < 5, elapsed


def test_huge_image(http: httpx.Client) -> None:
    r = http.post(
        "/chat/completions",
        json=body(
            model="demo-image", stream=False, messages=[{"role": "user", "content": "a red circle"}]
        ),
        headers={"X-Demo-Fault": "huge=2500"},
    )
    img = decode_data_uri(markdown_data_uris(r.json()["choices"][0]["message"]["content"])[0])
    assert img.size == (2500, 2500)
    assert img.getpixel((1250, 1250))[:3] == (230, 25, 25)


def test_huge_flat_image_beyond_drawing_size(http: httpx.Client) -> None:
    r = http.post(
        "/chat/completions",
        json=body(
            model="demo-image", stream=False, messages=[{"role": "user", "content": "on blue"}]
        ),
        headers={"X-Demo-Fault": "huge=9000"},
    )
    uri = markdown_data_uris(r.json()["choices"][0]["message"]["content"])[0]
    head = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert head.size == (9000, 9000)  # header only: decoding it is the client's problem


def test_mdinject_payloads(http: httpx.Client, server: DemoServer) -> None:
    r = http.post(
        "/chat/completions", json=body(stream=False), headers={"X-Demo-Fault": "mdinject"}
    )
    text = r.json()["choices"][0]["message"]["content"]
    for p in MDINJECT_PAYLOADS:
        assert p.replace("PORT", str(server.port)) in text
    assert f"http://127.0.0.1:{server.port}/leak?q=secret" in text


def test_image_url_mode_serves_images_over_http(http: httpx.Client, server: DemoServer) -> None:
    r = http.post(
        "/chat/completions",
        json=body(
            model="demo-image@image-url",
            stream=False,
            messages=[{"role": "user", "content": "a red circle"}],
        ),
    )
    text = r.json()["choices"][0]["message"]["content"]
    assert "data:" not in text
    url = text.split("![demo-image](")[1].split(")")[0]
    assert url.startswith(f"http://127.0.0.1:{server.port}/v1/files/")
    assert f"[Download the image]({url})" in text
    img = Image.open(io.BytesIO(httpx.get(url, timeout=5).content))
    assert img.size == (512, 512) and img.convert("RGB").getpixel((256, 256)) == (230, 25, 25)
    missing = http.post(
        "/chat/completions",
        json=body(
            model="demo-image@image-url=404",
            stream=False,
            messages=[{"role": "user", "content": "a red circle"}],
        ),
    ).json()["choices"][0]["message"]["content"]
    gone = missing.split("![demo-image](")[1].split(")")[0]
    assert httpx.get(gone, timeout=5).status_code == 404
    fake = http.post(
        "/chat/completions",
        json=body(
            model="demo-image@image-url=notimage",
            stream=False,
            modalities=["image"],
            messages=[{"role": "user", "content": "a red circle"}],
        ),
    ).json()["choices"][0]["message"]["images"][0]["image_url"]["url"]
    resp = httpx.get(fake, timeout=5)
    assert resp.headers["content-type"] == "image/png" and resp.content.startswith(b"<html>")
