"""Streaming in a real kernel: wall time against a bare httpx-sse loop, display
messages at 500 tokens/s, bytes sent to the front end, first-token delay."""

from __future__ import annotations

from ._common import Row, median, ms, row, size
from ._kernel import Cell, Kernel
from ._server import BenchServer, sse_events

BARE = '''
import json as _json, httpx as _httpx
from httpx_sse import connect_sse as _connect_sse

_TLS = _httpx.create_ssl_context()

def _bare(url, reuse_tls=False):
    """Read the stream with httpx + httpx-sse, decode each chunk, render nothing."""
    parts = []
    body = {"model": "bench", "messages": [{"role": "user", "content": "go"}], "stream": True}
    with _httpx.Client(timeout=120, verify=_TLS if reuse_tls else True) as client:
        with _connect_sse(client, "POST", url + "/chat/completions", json=body) as events:
            for sse in events.iter_sse():
                if sse.data == "[DONE]":
                    break
                chunk = _json.loads(sse.data)
                for choice in chunk.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        parts.append(text)
    return "".join(parts)
'''


def _tokens(n: int) -> list[str]:
    words = ("the", "model", "streams", "small", "deltas", "into", "a", "notebook", "cell", "fast")
    return [" " + words[i % len(words)] + ("." if i % 17 == 16 else "") for i in range(n)]


def _chatimg(url: str) -> str:
    return f"%%chatimg --base-url {url} --model bench\nCount to a large number, please."


def setup(k: Kernel) -> None:
    k.run("%load_ext jupyter_chatimg")
    k.run(BARE)


def wall_time(k: Kernel, srv: BenchServer, small: bool) -> list[Row]:
    n = 500 if small else 20_000
    srv.set_reply(sse_events(_tokens(n)))
    expected = "".join(_tokens(n))
    check = k.run(f"assert _bare({srv.url!r}) == {expected!r}")
    del check
    repeats = 1 if small else 11
    bare: list[float] = []
    warm: list[float] = []
    ours: list[float] = []
    for _ in range(1 if small else 2):  # warm up (imports, connections)
        k.run(f"_bare({srv.url!r})")
        k.run(_chatimg(srv.url))
    last: Cell | None = None
    for _ in range(repeats):
        bare.append(k.run(f"_bare({srv.url!r})").wall)
        last = k.run(_chatimg(srv.url))
        ours.append(last.wall)
        warm.append(k.run(f"_bare({srv.url!r}, reuse_tls=True)").wall)
    assert last is not None
    final = last.displays[-1].shown
    if expected.strip() not in final:
        raise RuntimeError("the final update does not carry the whole reply")
    b, o, w = median(bare), median(ours), median(warm)
    return [
        row(
            f"`%%chatimg` cell, {n:,} deltas as fast as loopback sends (kernel wall time)",
            f"bare httpx-sse loop cell: {ms(b)}",
            f"{ms(o)} ({len(last.displays)} display msgs)",
            f"{o / b:.2f}x",
            "<= 1.10x",
            o / b <= 1.10,
        ),
        row(
            "the same, against a bare loop that also reuses one TLS context (as the client does)",
            f"bare loop, TLS context reused: {ms(w)}",
            f"{ms(o)}",
            f"{o / w:.2f}x",
        ),
    ]


def message_count(k: Kernel, srv: BenchServer, small: bool) -> list[Row]:
    rate, seconds = 500, (1 if small else 10)
    n = rate * seconds
    srv.set_reply(sse_events(_tokens(n)), rate=rate)
    cell = k.run(_chatimg(srv.url))
    shown = cell.displays
    span = shown[-1].sent - shown[0].sent
    bound = int(seconds / 0.05) + 1
    return [
        row(
            f"display messages, {n:,} tokens over {seconds} s at {rate}/s",
            f"one per token: {n:,}",
            f"{len(shown)} (over {span:.1f} s)",
            f"{n / len(shown):.0f}x fewer",
            f"<= {bound} (>= 25x fewer)",
            len(shown) <= bound and n / len(shown) >= 25,
        )
    ]


def bytes_sent(k: Kernel, srv: BenchServer, small: bool) -> list[Row]:
    rate = 500
    sizes = (2_000, 4_000) if small else (25_000, 50_000, 100_000, 200_000)
    rows: list[Row] = []
    per_kb: list[float] = []
    for target in sizes:
        tokens: list[str] = []
        total = 0
        for tok in _tokens(target):
            if total >= target:
                break
            tokens.append(tok)
            total += len(tok)
        srv.set_reply(sse_events(tokens), rate=rate)
        cell = k.run(_chatimg(srv.url))
        shown = cell.displays
        sent = sum(m.size for m in shown)
        # Per-token full redraw: one message per token carrying the whole text so far.
        overhead = sent / len(shown) - sum(len(m.shown) for m in shown) / len(shown)
        redraw, prefix = 0.0, 0
        for tok in tokens:
            prefix += len(tok)
            redraw += prefix + overhead
        per_kb.append(sent / total)
        ok = None
        target_text = "-"
        if target == 100_000:
            target_text = "<= 5 MB"
            ok = sent <= 5_000_000
        rows.append(
            row(
                f"bytes to the front end, {total / 1000:.0f} KB reply at {rate} tokens/s "
                f"({len(shown)} msgs)",
                f"per-token full redraw: {size(redraw)}",
                f"{size(sent)} ({sent / total:.1f} B per reply byte)",
                f"{redraw / sent:.0f}x less",
                target_text,
                ok,
            )
        )
    growth = per_kb[-1] / per_kb[0]
    rows.append(
        row(
            "bytes per reply byte, largest vs smallest reply (O(n) keeps it flat)",
            f"O(n^2) would give {sizes[-1] / sizes[0]:.0f}x",
            f"{per_kb[0]:.1f} -> {per_kb[-1]:.1f}",
            f"{growth:.2f}x",
            "<= 1.5x (linear)",
            growth <= 1.5 if not small else None,
        )
    )
    return rows


def first_token(k: Kernel, srv: BenchServer, small: bool) -> list[Row]:
    tokens = ["FIRSTTOKEN", *_tokens(200)]
    kernel_side: list[float] = []
    client_side: list[float] = []
    for _ in range(1 if small else 7):
        sent_at = srv.set_reply(sse_events(tokens), pauses={1: 0.3, 2: 0.3})
        cell = k.run(_chatimg(srv.url))
        first = next(m for m in cell.displays if "FIRSTTOKEN" in m.shown)
        kernel_side.append(first.sent - sent_at[1])
        client_side.append(first.received - sent_at[1])
    d = median(kernel_side)
    return [
        row(
            "first token sent by the server -> its display message (kernel clock)",
            "-",
            f"{ms(d)} (max {ms(max(kernel_side))}; received here after {ms(median(client_side))})",
            "-",
            "<= 10 ms",
            d <= 0.010,
        )
    ]


def run(small: bool) -> list[Row]:
    rows: list[Row] = []
    with BenchServer() as srv, Kernel.start() as k:
        setup(k)
        rows += wall_time(k, srv, small)
        rows += message_count(k, srv, small)
        rows += bytes_sent(k, srv, small)
        rows += first_token(k, srv, small)
    return rows


if __name__ == "__main__":  # pragma: no cover
    import sys

    for r in run(small="--small" in sys.argv):
        print(r)
