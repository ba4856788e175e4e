"""The stream parser (``StreamParser``: feed every event, then ``result()``) on a
1 MB and a 4 MB reply: the time must grow linearly."""

from __future__ import annotations

from jupyter_chatimg._dialects.chat import StreamParser

from ._common import Row, median, ms, row, timed
from ._server import sse_events

MARKDOWN = (
    "## Results\n\nThe model found **three** regions; see `regions[0]` and the "
    "[docs](https://example.org/docs).\n\n- first item with *emphasis*\n- second item\n\n"
    "```python\nfor r in regions:\n    print(r.area)\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
)


def _datas(nbytes: int) -> list[str]:
    text = (MARKDOWN * (nbytes // len(MARKDOWN) + 1))[:nbytes]
    tokens = [text[i : i + 16] for i in range(0, len(text), 16)]
    return [e[6:].strip().decode() for e in sse_events(tokens)]


def _parse(datas: list[str]) -> int:
    parser = StreamParser()
    for data in datas:
        parser.feed(data)
    return len(parser.result().text)


def run(small: bool) -> list[Row]:
    mb = 50_000 if small else 1_000_000
    one, four = _datas(mb), _datas(4 * mb)
    t1: list[float] = []
    t4: list[float] = []
    for _ in range(1 if small else 3):
        t, n1 = timed(lambda: _parse(one))
        t1.append(t)
        t, n4 = timed(lambda: _parse(four))
        t4.append(t)
    a, b = median(t1), median(t4)
    assert n4 == 4 * n1
    return [
        row(
            f"stream parser, {4 * mb / 1e6:g} MB reply vs {mb / 1e6:g} MB "
            f"({len(four):,} vs {len(one):,} events)",
            f"{mb / 1e6:g} MB: {ms(a)}",
            f"{ms(b)}",
            f"{b / a:.2f}x",
            "<= 4.5x (linear)",
            b / a <= 4.5,
        )
    ]


if __name__ == "__main__":  # pragma: no cover
    import sys

    for r in run(small="--small" in sys.argv):
        print(r)
