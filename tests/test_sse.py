"""The SSE decoder (``_sse``) against httpx-sse, the reference it replaces for speed.

Every wire fixture and a set of hand-made edge cases are fed in random pieces
(1-9 characters, and whole) and must give exactly the events httpx-sse gives
for the same text (events with data or a name; httpx-sse also yields id-only
events, which carry no data and which the parser skips anyway).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from httpx_sse._decoders import SSEDecoder as RefDecoder
from httpx_sse._decoders import SSELineDecoder

from jupyter_chatimg._sse import SSEDecoder, iter_sse

WIRE = Path(__file__).parent / "fixtures" / "wire"

EDGE_CASES = {
    "crlf": "data: a\r\n\r\ndata: b\r\n\r\n",
    "cr only": "data: a\r\rdata: b\r\r",
    "mixed": "data: a\n\r\ndata: b\r\n\ndata: c\r\r",
    "no space": "data:a\n\ndata:  two spaces\n\n",
    "multi-line": "data: one\ndata: two\ndata:\n\n",
    "comment and event": ': ping\nevent: error\ndata: {"x": 1}\n\n: keep-alive\n\n',
    "field without colon": "data\n\ndata: x\nevent\n\n",
    "blank runs": "\n\n\ndata: a\n\n\n\n\ndata: b\n\n",
    "event only": "event: done\n\n",
    "unknown fields": "id: 7\nretry: 10\nfoo: bar\ndata: x\n\nid: 8\n\n",
    "u2028 inside": "data: a\u2028b\u2029c\x85d\x0ce\n\n",
    "unterminated last": "data: a\n\ndata: cut",
    "leading space field": " data: x\n\ndata: y\n\n",
}


def ours(pieces: list[str]) -> list[tuple[str, str]]:
    return list(iter_sse(pieces))


def cut(text: str, seed: int) -> list[str]:
    rng = random.Random(seed)
    out, pos = [], 0
    while pos < len(text):
        n = rng.randint(1, 9)
        out.append(text[pos : pos + n])
        pos += n
    return out


def _texts() -> dict[str, str]:
    texts = dict(EDGE_CASES)
    for path in sorted(WIRE.glob("*.sse")):
        texts[path.name] = path.read_text(encoding="utf-8")
    return texts


def _expected(text: str) -> list[tuple[str, str]]:
    # httpx-sse yields an event at every blank line after any field, data or not;
    # keep those with data lines or an event name (what the decoder delivers).
    splitter = SSELineDecoder()
    lines = splitter.decode(text) + splitter.flush()  # flush: what httpx-sse does at EOF
    ref = RefDecoder()
    out: list[tuple[str, str]] = []
    has = False
    for line in lines:
        line = line.rstrip("\n")
        if line and not line.startswith(":"):
            name = line.partition(":")[0]
            has = has or name in ("data", "event")
        sse = ref.decode(line)
        if sse is not None:
            if has:
                out.append((sse.event or "message", sse.data))
            has = False
    return out


@pytest.mark.parametrize("name", sorted(_texts()))
def test_same_events_as_httpx_sse(name: str) -> None:
    text = _texts()[name]
    expected = _expected(text)
    assert ours([text]) == expected
    for seed in range(20):
        assert ours(cut(text, seed)) == expected, seed


def test_an_event_in_many_pieces_is_joined_once() -> None:
    decoder = SSEDecoder()
    payload = "x" * 100_000
    pieces = ["data: "] + [payload[i : i + 100] for i in range(0, len(payload), 100)]
    for piece in pieces:
        assert decoder.feed(piece) == []
    assert decoder.feed("\n\n") == [("message", payload)]


def test_crlf_split_between_pieces_is_one_line_end() -> None:
    assert ours(["data: a\r", "\n", "\r", "\ndata: b\r", "\r"]) == [
        ("message", "a"),
        ("message", "b"),
    ]
