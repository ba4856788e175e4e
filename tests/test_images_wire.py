"""Every Images API fixture, delivered in random 1-9 byte pieces over loopback HTTP,
gives exactly the images, sizes, revised prompt, usage and error of expected.json:
through ``chat()`` (20 cuts each) and through ``%%chatimg`` in a real IPython shell."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from _ipython import ipython_shell  # noqa: F401 - fixture
from _routing import LoopbackRouter, resolve_to_loopback
from _servers import ReplayServer
from PIL import Image

import jupyter_chatimg as ci
from jupyter_chatimg import _fetch

WIRE = Path(__file__).parent / "fixtures" / "wire_images"
EXPECTED = json.loads((WIRE / "expected.json").read_text())
REPLIES = sorted(p.name for p in WIRE.iterdir() if p.name in EXPECTED)
SEEDS = range(20)
PATHS = {"generation": "/v1/images/generations", "edit": "/v1/images/edits"}
CDN_IMAGE = (200, 120, 40)


def cdn_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), CDN_IMAGE).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def cdn(clean_env: pytest.MonkeyPatch) -> ReplayServer:
    """cdn.example.com (the dall-e-3 fixture's signed URL), served on loopback."""
    with ReplayServer() as server:
        for url in EXPECTED["dalle3_url.json"]["urls"]:
            path = url.split("cdn.example.com", 1)[1].split("?", 1)[0]
            server.add("GET", path, headers={"Content-Type": "image/png"}, body=cdn_png())
        clean_env.setattr(_fetch, "resolve_host", resolve_to_loopback)
        clean_env.setattr(_fetch, "DEFAULT_IMAGE_TRANSPORT", LoopbackRouter(server.port))
        yield server


class Recorder:
    """A notebook-like sink that records every output it is shown, by slot."""

    wants_deltas = False

    def __init__(self) -> None:
        self.updates: list[str] = []
        self.shows: list[tuple[int, dict[str, Any], dict[str, Any]]] = []

    def show(
        self, slot: int, data: dict[str, Any], metadata: dict[str, Any], *, final: bool
    ) -> None:
        self.shows.append((slot, data, metadata))
        if "text/html" in data:
            self.updates.append(data["text/html"])

    @property
    def in_place(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Every image output shown, in order."""
        return [(d, md) for _, d, md in self.shows if any(k.startswith("image/") for k in d)]

    @property
    def image_slots(self) -> set[int]:
        return {slot for slot, d, _ in self.shows if any(k.startswith("image/") for k in d)}

    def delta(self, text: str) -> None:  # pragma: no cover - wants_deltas is False
        pass


def edit_input() -> Image.Image:
    return Image.new("RGB", (32, 32), (10, 120, 200))


def raw_of(url: str) -> bytes:
    return base64.b64decode(url.split(",", 1)[1])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run(
    name: str, seed: int, srv: ReplayServer, **kw: Any
) -> tuple[ci.ChatResult, BaseException | None]:
    want = EXPECTED[name]
    srv.add_file(WIRE / name, path=PATHS[want["kind"]], seed=seed)
    images = [edit_input()] if want["kind"] == "edit" else []
    model = "dall-e-3" if name.startswith("dalle") else "gpt-image-1"
    try:
        result = ci.chat(
            "a small red lighthouse", images, model=model, base_url=srv.url, max_retries=0, **kw
        )
    except ci.StreamError as exc:
        assert exc.partial is not None
        return exc.partial, exc
    except ci.APIError as exc:
        return ci.ChatResult(error=exc), exc
    return result, None


def check(name: str, result: ci.ChatResult, error: BaseException | None) -> None:
    want = EXPECTED[name]
    if want["outcome"] == "http_error":
        assert isinstance(error, ci.APIError)
        assert error.status == want["http_status"]
        assert error.message == want["error_message"]
        assert error.body["error"]["code"] == want["error_code"]
        assert "\n" not in str(error)
        return
    assert result.text == (want["revised_prompt"] or "")
    assert result.usage == want["usage"]
    assert all(isinstance(im, Image.Image) for im in result.images)
    if want["outcome"] == "stream_error":
        assert isinstance(error, ci.StreamError) and result.error is error
        assert "no completed event" in str(error) and "\n" not in str(error)
        # The last partial is the partial result's image.
        assert [sha(raw_of(u)) for u in result.choices[0].image_urls] == [
            want["kept_partial_sha256"]
        ]
        assert [im.size for im in result.images] == [tuple(s) for s in want["partial_sizes"][-1:]]
        return
    assert error is None and result.error is None
    assert len(result.images) == want["image_count"]
    if want.get("urls"):
        assert result.choices[0].image_urls == want["urls"]
        assert [im.getpixel((0, 0)) for im in result.images] == [CDN_IMAGE]
        return
    assert [im.size for im in result.images] == [tuple(s) for s in want["final_sizes"]]
    urls = result.choices[0].image_urls
    assert [sha(raw_of(u)) for u in urls] == want["final_sha256"]
    assert {u.split(";", 1)[0] for u in urls} == {f"data:image/{want['format']}"}
    assert {im.format for im in result.images} == {want["format"].upper()}


@pytest.mark.parametrize("name", REPLIES)
def test_fixture_in_random_pieces_through_chat(name: str, cdn: ReplayServer) -> None:
    want = EXPECTED[name]
    with ReplayServer() as srv:
        for seed in SEEDS:
            sink = Recorder()
            result, error = run(name, seed, srv, sink=sink, update_interval=1e-6)
            check(name, result, error)
            partials = [d for d, md in sink.in_place if "partial" in md.get("jupyter_chatimg", {})]
            # Every partial was shown in the one in-place output, as it came.
            assert len(partials) == want["partial_count"]
            shown = [
                sha(base64.b64decode(d[next(k for k in d if k != "text/plain")])) for d in partials
            ]
            assert shown == want["partial_sha256"]
            if want["outcome"] == "ok" and want["partial_count"]:
                # ... and the final image replaced the last one there (no second output).
                assert "partial" not in sink.in_place[-1][1].get("jupyter_chatimg", {})
                assert len(sink.image_slots) == 1
        # Every cut was a request of its own, to the endpoint of its kind.
        assert len(srv.requests) == len(SEEDS)
        assert {r.path for r in srv.requests} == {PATHS[want["kind"]]}


def test_stream_parser_reads_each_event_as_expected() -> None:
    """The parser alone: partial indexes, [DONE] or not, usage, the kept partial."""
    from httpx_sse._decoders import SSEDecoder

    from jupyter_chatimg._dialects.images import ImagesStreamParser

    for name in (n for n in REPLIES if n.endswith(".sse")):
        want = EXPECTED[name]
        parser = ImagesStreamParser()
        decoder = SSEDecoder()  # in every httpx-sse version; its line decoder is not
        text = (WIRE / name).read_text(encoding="utf-8")
        for line in re.split(r"\r\n|\r|\n", text):
            sse = decoder.decode(line)
            if sse is not None:
                parser.feed(sse.data, sse.event)
        assert parser.partials == want["partial_count"]
        assert parser.partial_indexes == want["partial_image_indexes"]
        assert parser.saw_done == want["saw_done_sentinel"]
        assert parser.finished == (want["outcome"] == "ok")
        assert parser.result().usage == want["usage"]


def test_dall_e_3_url_image_is_fetched_without_the_key(cdn: ReplayServer) -> None:
    with ReplayServer() as srv:
        result, error = run("dalle3_url.json", 0, srv, display=False)
        assert error is None
        # dall-e-3 does not stream: the request asked for a whole reply.
        assert "stream" not in srv.requests[0].json
    assert result.text.startswith("A watercolor painting of a small red lighthouse")
    assert [r.method for r in cdn.requests] == ["GET"]
    assert all("authorization" not in r.headers for r in cdn.requests)


def test_moderation_error_is_not_retried(cdn: ReplayServer) -> None:
    with ReplayServer() as srv:
        srv.add_file(WIRE / "error_moderation_blocked.json", path=PATHS["generation"])
        with pytest.raises(ci.BadRequestError) as info:
            ci.chat("x", model="gpt-image-1", base_url=srv.url, display=False, max_retries=3)
        assert len(srv.requests) == 1
    assert "rejected by the safety system" in str(info.value)


@pytest.mark.parametrize("name", REPLIES)
def test_fixture_through_the_magic(name: str, cdn: ReplayServer, ipython_shell: Any) -> None:
    """The same fixtures through %%chatimg in a real IPython shell (terminal: printed)."""
    want = EXPECTED[name]
    model = "dall-e-3" if name.startswith("dalle") else "gpt-image-1"
    ipython_shell.user_ns["photo"] = edit_input()
    image = "-i photo" if want["kind"] == "edit" else ""
    with ReplayServer() as srv:
        for seed in (3, 11):
            srv.add_file(WIRE / name, path=PATHS[want["kind"]], seed=seed)
            line = f"--base-url {srv.url} -m {model} {image} -o r"
            ipython_shell.run_cell_magic("chatimg", line, "a small red lighthouse")
            result = ipython_shell.user_ns["r"]
            assert ipython_shell.user_ns["_"] is result
            check(name, result, result.error)
        assert {r.path for r in srv.requests} == {PATHS[want["kind"]]}
