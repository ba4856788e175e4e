"""Rendering a long reply in a real kernel: the CPU the kernel spends rendering updates,
as a share of the stream's wall time, at 500 and 5,000 tokens/s; bytes to the front end.

The reply is 200 KB of markdown as models write it (headings, paragraphs, lists, code,
tables, math, quotes), one word per token. The kernel's ``LiveReply._compose`` (where
every update is rendered) is wrapped to add up its thread CPU time and to note the text
length of each update; the stream's wall time is from the first update to the last, on
the kernel's clock. The baseline, in the same run, is what rendering the *whole* text
again at every one of those updates costs with the same libraries (markdown-it-py +
mdit-py-plugins + nh3, measured per byte on the whole reply in the same kernel).

The wrapper only needs ``LiveReply._compose`` and ``LiveReply._texts``, so the same
benchmark also runs against an older checkout of the package (``PYTHONPATH``), for the
figures before and after.
"""

from __future__ import annotations

import random
import re

from ._common import Row, row, size
from ._kernel import Kernel
from ._server import BenchServer, sse_events

RATES = (500, 5000)
TARGETS = {500: 0.10, 5000: 0.25}

SETUP = r"""
import time as _time
import jupyter_chatimg._render as _r
_bench = {"cpu": 0.0, "lengths": [], "first": None, "last": None}
if not hasattr(_r.LiveReply, "_bench_original"):
    _r.LiveReply._bench_original = _r.LiveReply._compose
def _bench_compose(self, *args, **kwargs):
    started, cpu = _time.monotonic(), _time.thread_time()
    try:
        return _r.LiveReply._bench_original(self, *args, **kwargs)
    finally:
        _bench["cpu"] += _time.thread_time() - cpu
        _bench["lengths"].append(sum(len("".join(p)) for p in list(self._texts.values())))
        _bench["first"] = _bench["first"] or started
        _bench["last"] = _time.monotonic()
_r.LiveReply._compose = _bench_compose

def _bench_reset():
    _bench.update(cpu=0.0, lengths=[], first=None, last=None)

def _bench_full_render_per_byte(text, repeats=2):
    # markdown-it-py + dollarmath + nh3 over the whole text: the naive way to render
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin
    import nh3
    md = MarkdownIt("commonmark", {"breaks": True}).enable(["table", "strikethrough"])
    dollarmath_plugin(md, double_inline=True)
    tags = {"p", "br", "hr", "em", "strong", "s", "code", "pre", "a", "blockquote", "h1", "h2",
            "h3", "h4", "h5", "h6", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th",
            "td", "span", "div"}
    best = None
    for _ in range(repeats):
        cpu = _time.thread_time()
        nh3.clean(md.render(text), tags=tags, attributes={"a": {"href"}})
        spent = _time.thread_time() - cpu
        best = spent if best is None else min(best, spent)
    return best / len(text)
"""

_WORDS = [
    "the",
    "model",
    "looks",
    "at",
    "each",
    "region",
    "of",
    "the",
    "picture",
    "and",
    "reports",
    "what",
    "it",
    "measured",
    "there",
    "including",
    "colour",
    "brightness",
    "contrast",
    "edges",
    "texture",
    "and",
    "the",
    "shapes",
    "it",
    "can",
    "find",
]


def reply_markdown(nbytes: int, seed: int = 7) -> str:
    """Markdown as a model writes a long answer: every kind of block, mostly prose."""
    rng = random.Random(seed)

    def sentence() -> str:
        words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 18))]
        if rng.random() < 0.3:
            k = rng.randrange(len(words))
            words[k] = f"**{words[k]}**"
        if rng.random() < 0.2:
            k = rng.randrange(len(words))
            words[k] = f"`{words[k]}_{rng.randint(0, 9)}`"
        return " ".join(words).capitalize() + "."

    blocks: list[str] = []
    total = 0
    n = 0
    while total < nbytes:
        n += 1
        kind = rng.random()
        if n % 12 == 1:
            block = f"## Part {n // 12 + 1}: {sentence()[:-1]}"
        elif kind < 0.45:
            block = " ".join(sentence() for _ in range(rng.randint(2, 5)))
        elif kind < 0.6:
            block = "\n".join(f"- {sentence()}" for _ in range(rng.randint(2, 5)))
        elif kind < 0.68:
            block = "\n".join(f"{i}. {sentence()}" for i in range(1, rng.randint(3, 6)))
        elif kind < 0.76:
            lines = [f"    value_{i} = measure(region[{i}]) * {rng.random():.3f}" for i in range(4)]
            block = "```python\nfor region in regions:\n" + "\n".join(lines) + "\n```"
        elif kind < 0.84:
            rows = [
                f"| {rng.choice(_WORDS)} | {rng.randint(0, 255)} | {rng.random():.2f} |"
                for _ in range(4)
            ]
            block = "| name | value | share |\n|---|---:|---:|\n" + "\n".join(rows)
        elif kind < 0.92:
            block = f"The mean is $\\mu = \\frac{{1}}{{n}}\\sum_i x_i$ and {sentence()}"
        else:
            block = f"> {sentence()}\n> {sentence()}"
        blocks.append(block)
        total += len(block) + 2
    return "\n\n".join(blocks)[:nbytes]


def tokens_of(text: str) -> list[str]:
    """One token per word, with the whitespace before it (about 6 characters each)."""
    return re.findall(r"\s*\S+", text)


def _cell(url: str) -> str:
    return f"%%chatimg --base-url {url} --model bench\nExplain the picture at length."


def _stream(k: Kernel, srv: BenchServer, text: str, rate: int) -> dict[str, float]:
    tokens = tokens_of(text)
    srv.set_reply(sse_events(tokens), rate=rate)
    k.run("_bench_reset()")
    cell = k.run(_cell(srv.url), timeout=900)
    shown = cell.displays
    stats = k.run(
        "print(_bench['cpu'], _bench['last'] - _bench['first'], sum(_bench['lengths']), "
        "len(_bench['lengths']))"
    ).text()
    cpu, wall, lengths, updates = (float(x) for x in stats.split())
    sent = sum(m.size for m in shown)
    return {
        "cpu": cpu,
        "wall": wall,
        "lengths": lengths,
        "updates": updates,
        "sent": sent,
        "messages": len(shown),
        "tokens": len(tokens),
    }


def run(small: bool) -> list[Row]:
    nbytes = 6_000 if small else 200_000
    text = reply_markdown(nbytes)
    rows: list[Row] = []
    with BenchServer() as srv, Kernel.start() as k:
        k.run("%load_ext jupyter_chatimg")
        k.run(SETUP)
        srv.set_reply(sse_events(tokens_of(reply_markdown(3_000, seed=1))))
        k.run(_cell(srv.url))  # warm up: imports, parser set-up, connection
        k.run(f"_bench_text = {text!r}")
        per_byte = float(k.run("print(_bench_full_render_per_byte(_bench_text))").text())
        sent_per_byte: dict[int, float] = {}
        for rate in RATES:
            got = _stream(k, srv, text, rate)
            share = got["cpu"] / got["wall"]
            full = got["lengths"] * per_byte
            target = TARGETS[rate]
            sent_per_byte[rate] = got["sent"] / len(text)
            rows.append(
                row(
                    f"render CPU in the kernel, {len(text) / 1000:.0f} KB markdown reply at "
                    f"{rate:,} tokens/s ({got['tokens']:,.0f} tokens, {got['updates']:.0f} "
                    f"updates over {got['wall']:.1f} s)",
                    f"whole text rendered again at every update: {full:.2f} s = "
                    f"{full / got['wall']:.0%} of the stream",
                    f"{got['cpu']:.2f} s = {share:.1%} of the stream",
                    f"{full / max(got['cpu'], 1e-9):.0f}x less",
                    f"<= {target:.0%}",
                    share <= target if not small else None,
                )
            )
        # bytes to the front end: a quarter of the reply at the fast rate, against the whole
        quarter = text[: len(text) // 4]
        got = _stream(k, srv, quarter, RATES[-1])
        small_per_byte = got["sent"] / len(quarter)
        growth = sent_per_byte[RATES[-1]] / small_per_byte
        rows.append(
            row(
                f"bytes to the front end per reply byte at {RATES[-1]:,} tokens/s, "
                f"{len(text) / 1000:.0f} KB vs {len(quarter) / 1000:.0f} KB reply",
                f"{size(got['sent'])} for {len(quarter) / 1000:.0f} KB "
                f"({small_per_byte:.1f} B per reply byte)",
                f"{sent_per_byte[RATES[-1]]:.1f} B per reply byte "
                f"({size(sent_per_byte[RATES[-1]] * len(text))}); at 500/s: "
                f"{sent_per_byte[500]:.1f}",
                f"{growth:.2f}x",
                "<= 1.5x (linear)",
                growth <= 1.5 if not small else None,
            )
        )
    return rows


if __name__ == "__main__":  # pragma: no cover
    import sys

    for r in run(small="--small" in sys.argv):
        print(r)
