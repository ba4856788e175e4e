"""Markdown images in reply text: found (with offsets) by markdown-it's own reading, and
an image still arriving at the end of a streamed text recognised, so it is never shown half."""

from __future__ import annotations

import gc
import json
import random
import time
from pathlib import Path

import pytest

from jupyter_chatimg._markdown import (
    MarkdownImage,
    find_markdown_images,
    image_urls_in_markdown,
    open_image_start,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "wire"


# -------------------------------------------------------------- images found


def test_gateway_fixture_finds_only_the_kite() -> None:
    expected = json.loads((FIXTURES / "expected.json").read_text())
    text = expected["gateway_gpt4o_image_progress.sse"]["final_text"]
    images = find_markdown_images(text)
    assert [i.url for i in images] == expected["gateway_gpt4o_image_progress.sse"]["images"]
    assert images[0].alt == "gen_01fixture"
    assert text[images[0].start : images[0].end].startswith("![gen_01fixture](")
    assert text[images[0].start : images[0].end].endswith("kite-over-dunes.png)")
    assert image_urls_in_markdown(text) == expected["gateway_gpt4o_image_progress.sse"]["images"]


def test_all_image_forms() -> None:
    text = (
        '![a](http://h/1.png) ![b](<http://h/2 b.png> "t") ![c][R] ![d][] ![e]'
        " [link](http://h/no.png) `![code](http://h/no2.png)`\n\n"
        "[r]: http://h/3.png\n[D]: <http://h/4.png>\n[e]: http://h/5.png 'x'\n"
    )
    found = find_markdown_images(text)
    assert [(i.alt, i.url) for i in found] == [
        ("a", "http://h/1.png"),
        ("b", "http://h/2 b.png"),
        ("c", "http://h/3.png"),
        ("d", "http://h/4.png"),
        ("e", "http://h/5.png"),
    ]
    for img in found:
        assert text[img.start] == "!" and text[img.end - 1] in ")]"


def test_nested_brackets_and_linked_image() -> None:
    found = find_markdown_images("[![a [b] c](http://h/i.png)](https://page)")
    assert found == [MarkdownImage(1, 27, "a [b] c", "http://h/i.png")]


def test_images_in_code_are_not_found() -> None:
    text = "```\n![a](http://h/1.png)\n```\n\n    ![b](http://h/2.png)\n\n`![c](http://h/3.png)`"
    assert find_markdown_images(text) == []


def test_offsets_with_crlf() -> None:
    text = "line\r\n\r\n![a](http://h/1.png)"
    (img,) = find_markdown_images(text)
    assert text[img.start : img.end] == "![a](http://h/1.png)"


def test_image_urls_filter_and_dedupe() -> None:
    data = "data:image/png;base64,iVBORw0KGgo="
    text = (
        f"![1](https://h/a.png) ![2](http://h/b.png) ![3]({data}) ![4](https://h/a.png)"
        " ![5](ftp://h/c.png) ![6](data:text/html;base64,PGI+) ![7](/rel.png)"
    )
    assert image_urls_in_markdown(text) == ["https://h/a.png", "http://h/b.png", data]


def test_growing_text_reports_an_image_only_when_complete() -> None:
    full = 'Before ![a (kite)](https://h/x_(1).png "t") after [dl](https://h/d.png)'
    link_end = full.index(" after")
    for cut in range(len(full) + 1):
        found = find_markdown_images(full[:cut])
        if cut < link_end:
            assert found == [], cut
        else:
            assert [i.url for i in found] == ["https://h/x_(1).png"], cut


def test_images_in_containers_and_tables_have_their_offsets() -> None:
    text = (
        "> quote ![q](http://h/q.png)\n> ![w\n> rap](http://h/w.png)\n\n"
        "- item\n  ![i](http://h/i.png)\n\n"
        "| ![a](http://h/a.png) | ![a](http://h/a.png) |\n|---|---|\n"
        "| x \\| y ![b](http://h/b.png) | ![a](http://h/a.png) |\n\n"
        "# head ![h](http://h/h.png) #\n"
    )
    found = find_markdown_images(text)
    assert [i.alt for i in found] == ["q", "w\nrap", "i", "a", "a", "b", "a", "h"]
    starts = [i.start for i in found]
    assert starts == sorted(set(starts))  # each one its own place, in order
    for img in found:
        assert text[img.start : img.start + 2] == "![" and text[img.end - 1] == ")"
        assert img.url.startswith("http://h/")


def test_images_in_math_are_not_images() -> None:
    assert find_markdown_images("$![a](http://h/1.png)$ and $$![b](http://h/2.png)$$") == []


def test_random_texts_offsets_point_at_the_construct() -> None:
    pieces = [
        "![a](http://h/1.png)",
        "`",
        "```\n",
        "\n\n",
        "\n",
        "> ",
        "- ",
        "    ",
        "[",
        "]",
        "(",
        ")",
        "text ",
        "| ",
        "|---|\n",
        "$",
        "\\",
        "![b][r]",
        "\n[r]: http://h/r.png\n",
        "\t",
        "\r\n",
    ]
    rng = random.Random(11)
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 14)))
        last = -1
        for img in find_markdown_images(text):
            assert text[img.start : img.start + 2] == "![", (text, img)
            assert text[img.end - 1] in ")]", (text, img)
            assert img.start > last
            last = img.start


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("see ![kite](data:image/png;base64,iVBOR", 4),
        ("see ![kite](", 4),
        ("see ![kite]", 4),
        ("see ![ki", 4),
        ("see ![a ![b](u", 4),
        ("see !", 4),
        ("see ![kite](u) done", None),
        ("see ![kite] done", None),
        ("see ![kite](u v", None),  # a space ends a destination: not an image any more
        ("line ![a\nb", None),  # alt text does not go over lines here
        ("Wow!! fine", None),
    ],
)
def test_open_image_start(text: str, start: int | None) -> None:
    assert open_image_start(text) == start


def test_open_image_on_a_huge_line_is_quick() -> None:
    text = "x " * 1000 + "![a](data:image/png;base64," + "A" * 2_000_000
    t = time.process_time()
    for _ in range(100):
        assert open_image_start(text) == 2000
    assert time.process_time() - t < 2


def _mixed_markdown(size: int) -> str:
    parts = [
        "# Heading\n\nSome **bold** text with `code` and a [link](https://example.com).\n\n",
        "- item one\n- item two with $x^2$ math\n\n",
        "```python\nfor i in range(10):\n    print(i < 5)\n```\n\n",
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n",
        "A paragraph with a < b and <b>html</b> and ![img](http://e/x.png).\n\n",
        "> quote with `a<b`\n\n",
        "1. step\n   ```bash\n   pip install x\n   ```\n\n",
    ]
    rng = random.Random(0)
    text = ""
    while len(text) < size:
        text += rng.choice(parts)
    return text


def test_link_destinations_are_read_as_markdown_it_reads_them() -> None:
    from markdown_it.helpers import parseLinkDestination

    from jupyter_chatimg._markdown import _link_destination

    rng = random.Random(1)
    alphabet = ["a", " ", "(", ")", "\\", "<", ">", "\n", "\x01", "\x7f", "&amp;", "\\ ", "\\("]
    for _ in range(50_000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        start = rng.randint(0, len(s))
        end = rng.randint(start, len(s))
        theirs, ours = parseLinkDestination(s, start, end), _link_destination(s, start, end)
        assert (ours.ok, ours.pos, ours.str) == (theirs.ok, theirs.pos, theirs.str), (s, start)


def test_a_huge_data_uri_is_found_quickly_and_without_copies() -> None:
    import base64
    import tracemalloc

    payload = base64.b64encode(bytes(range(256)) * 40_000).decode()  # 13.6 MB
    uri = "data:image/png;base64," + payload
    text = f"Here it is:\n\n> ![pic]({uri})\n\nand `{payload[:300]}` in code.\n"
    find_markdown_images("![warm](data:image/png;base64,AAAA)")
    tracemalloc.start()
    t = time.process_time()
    try:
        (image,) = find_markdown_images(text)
        elapsed = time.process_time() - t
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert image.url == uri and text[image.start : image.end] == f"![pic]({uri})"
    assert elapsed < 1  # markdown-it's own loop over the destination: about 2 s
    assert peak < 1.3 * len(uri)  # the URL itself, and no copy of the paragraph


def test_linear_time_on_hostile_input() -> None:
    n = 20_000
    hostile = [
        "![" * n,
        "[" * (n // 2) + "![a](b)" * (n // 12),
        "![a](" * (n // 5),
        "`" * n + "![a](b)",
        "` ``" * (n // 4) + "![a](b)",
        "](" * (n // 2) + "![a](b)",
        "".join("  " * i + "- ![a](b)\n" for i in range(120)),
        "> " * 2000 + "![a](b)",
    ]
    for text in hostile:
        start = time.process_time()
        find_markdown_images(text)
        assert time.process_time() - start < 5, text[:40]


def test_speed_on_200kb() -> None:
    small, large = _mixed_markdown(50_000), _mixed_markdown(200_000)
    assert len(find_markdown_images(small)) > 100

    def best(text: str) -> float:
        times = []
        gc.collect()
        gc.disable()
        try:
            for _ in range(5):
                t = time.process_time()
                find_markdown_images(text)
                times.append(time.process_time() - t)
        finally:
            gc.enable()
        return min(times)

    a, b = best(small), best(large)
    # 4x the text: about 4-5x the time here (quadratic would be 16x); room for a busy machine
    assert b < 5 and b / max(a, 1e-3) < 10
    assert find_markdown_images("no images here " * 10_000) == []
