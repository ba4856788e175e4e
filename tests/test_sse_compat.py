"""Event streams read alike with every httpx-sse release the package allows (DESIGN.md 9).

httpx-sse 0.4.0 and 0.4.1 read ``response.iter_lines()``; 0.4.2 and later read
``response.iter_text()`` and split lines themselves. The client hands httpx-sse
a proxy of the response that counts what it reads (the size bound), so the
proxy must offer both, count both, and split lines only where an event stream
does (CRLF, LF, CR: never at U+2028, U+2029 or U+0085, which may stand raw in
JSON). Each test runs with the installed httpx-sse and with each reading style
emulated, so both the normal and the lowest-versions CI step cover both.

Media types are case-insensitive: ``TEXT/EVENT-STREAM`` is an event stream.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from _servers import ReplayServer
from httpx_sse import EventSource, ServerSentEvent
from httpx_sse._decoders import SSEDecoder  # in every release since 0.4.0

import jupyter_chatimg as ci

PATH = "/v1/chat/completions"
_EOL = re.compile(r"\r\n|\r|\n")


def _read_lines(self: EventSource) -> Iterator[ServerSentEvent]:
    """``EventSource.iter_sse`` as httpx-sse 0.4.0 and 0.4.1 wrote it."""
    self._check_content_type()
    decoder = SSEDecoder()
    for line in self._response.iter_lines():
        sse = decoder.decode(line.rstrip("\n"))
        if sse is not None:
            yield sse


def _read_text(self: EventSource) -> Iterator[ServerSentEvent]:
    """``EventSource.iter_sse`` as httpx-sse 0.4.2 and later read: text, split on CRLF/LF/CR."""
    self._check_content_type()
    decoder = SSEDecoder()
    pending = ""
    for text in self._response.iter_text():
        pending += text
        held = pending.endswith("\r")  # maybe the first half of a CRLF: wait for the next
        *lines, pending = _EOL.split(pending[:-1] if held else pending)
        pending += "\r" if held else ""
        for line in lines:
            sse = decoder.decode(line)
            if sse is not None:
                yield sse


READERS = {
    "installed": None,
    "iter_lines (httpx-sse 0.4.0, 0.4.1)": _read_lines,
    "iter_text (httpx-sse 0.4.2+)": _read_text,
}


@pytest.fixture(params=list(READERS))
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """httpx-sse as installed, or ``EventSource.iter_sse`` replaced by one reading style."""
    style = READERS[request.param]
    if style is not None:
        monkeypatch.setattr(EventSource, "iter_sse", style)
    return str(request.param)


def chunk(text: str, *, ends: tuple[str, str] = ("\n", "\n")) -> str:
    """One event: its data line, then the blank line (each with its own line end)."""
    # ensure_ascii=False: U+2028 and friends stand raw in the data, as JSON allows.
    event = {"choices": [{"index": 0, "delta": {"content": text}}]}
    return "data: " + json.dumps(event, ensure_ascii=False) + ends[0] + ends[1]


FINISH = 'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
# Line separators that str.splitlines (and so httpx's iter_lines) also splits at, and
# multibyte characters that the 1-9 byte pieces cut in the middle.
ODD = ["one\u2028two", " three\u2029four", " five\x85six", " ✓ 🪁 naïve", " end."]


def stream_reply(
    srv: ReplayServer, body: str, content_type: str, seed: int = 0, **delivery: Any
) -> None:
    headers = {"Content-Type": content_type, "Cache-Control": "no-cache"}
    srv.add("POST", PATH, 200, headers, body, seed=seed, framing="chunked", **delivery)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "ends",
    [("\n", "\n"), ("\r\n", "\r\n"), ("\r", "\r"), ("\r\n", "\n"), ("\n", "\r")],
    ids=["LF", "CRLF", "CR", "CRLF-LF", "LF-CR"],
)
def test_line_separators_inside_data_stay_in_the_text(
    reader: str, ends: tuple[str, str], seed: int, clean_env: pytest.MonkeyPatch
) -> None:
    """Pieces of 1-3 bytes cut every line end and every multibyte character somewhere."""
    body = "".join(chunk(t, ends=ends) for t in ODD) + FINISH
    with ReplayServer() as srv:
        stream_reply(srv, body, "text/event-stream", seed, chunk_sizes=(1, 3))
        result = ci.chat("Go.", base_url=srv.url, display=False, max_retries=0)
    assert result.error is None
    assert result.text == "".join(ODD)


@pytest.mark.parametrize("content_type", ["TEXT/EVENT-STREAM", "Text/Event-Stream; charset=UTF-8"])
def test_an_uppercase_event_stream_media_type_is_an_event_stream(
    reader: str, content_type: str, clean_env: pytest.MonkeyPatch
) -> None:
    tokens = ["Alpha", " beta", " gamma"]
    with ReplayServer() as srv:
        stream_reply(srv, "".join(chunk(t) for t in tokens) + FINISH, content_type)
        result = ci.chat("Go.", base_url=srv.url, display=False, max_retries=0, stream=True)
    assert result.error is None, result.error
    assert result.text == "Alpha beta gamma"
    assert result.finish_reason == "stop"


def test_one_endless_line_is_cut_at_the_size_bound(
    reader: str, clean_env: pytest.MonkeyPatch
) -> None:
    """Whichever way httpx-sse reads, what it reads is counted."""
    with ReplayServer() as srv:
        stream_reply(srv, chunk("Start.") + "data: " + "x" * 5000, "text/event-stream")
        with pytest.raises(ci.StreamError) as info:
            ci.chat("Go.", base_url=srv.url, display=False, max_retries=0, max_reply_bytes=800)
    assert "the reply passed the size limit of 800 bytes" in str(info.value)
    assert info.value.partial is not None and info.value.partial.text == "Start."
