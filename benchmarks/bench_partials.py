"""Images API streams in a real kernel: partial images replaced in place.

A loopback server streams a 1024x1024 generation the way the Images API does
(``image_generation.partial_image`` x3, coarse to fine, then
``image_generation.completed``), each event a full-size PNG, the events
0.3 s apart (real partials come seconds apart). Measured in the same run:

- bytes: every display message of the cell (text outputs included) against
  the final image's encoded bytes as the server sent them (target <= 4.2x);
- first partial: the kernel's header date of the first display message that
  carries an image minus the time the server began sending that event
  (target <= 20 ms).
"""

from __future__ import annotations

import base64
import io
import json

from PIL import Image, ImageDraw, ImageFilter

from ._common import Row, median, ms, row, size
from ._kernel import Kernel
from ._server import BenchServer
from .bench_images import photo

PAUSE = 0.3


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def illustration(side: int) -> Image.Image:
    """A flat, few-colour picture (the other common kind of generated image)."""
    img = Image.new("RGB", (side, side), (250, 240, 215))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, side * 2 // 3, side, side), fill=(90, 160, 80))
    draw.ellipse((side // 10, side // 10, side // 3, side // 3), fill=(250, 200, 40))
    for k in range(5):
        x = side // 8 + k * side // 6
        draw.polygon(
            [(x, side * 2 // 3), (x + side // 12, side // 3), (x + side // 6, side * 2 // 3)],
            fill=(40 + 30 * k, 90, 140),
        )
    draw.rectangle((side // 2, side // 2, side // 2 + side // 5, side * 2 // 3), fill=(180, 50, 40))
    return img


def steps(final: Image.Image) -> list[Image.Image]:
    """Three honest steps towards ``final``, each a full-size image: blurred less and less
    (the first is as large as a PNG of a blurred picture gets, the hard case for latency)."""
    return [final.filter(ImageFilter.GaussianBlur(r)) for r in (12, 4, 1.5)]


def events(final: Image.Image) -> tuple[list[bytes], int, list[int]]:
    """The SSE events, the final PNG's size, and the partial PNGs' sizes."""
    out: list[bytes] = []
    sizes: list[int] = []
    common = {
        "size": "1024x1024",
        "quality": "high",
        "background": "opaque",
        "output_format": "png",
    }
    for i, step in enumerate(steps(final)):
        data = _png(step)
        sizes.append(len(data))
        obj = {
            "type": "image_generation.partial_image",
            "b64_json": base64.b64encode(data).decode(),
            "partial_image_index": i,
            **common,
        }
        out.append(
            b"event: image_generation.partial_image\ndata: " + json.dumps(obj).encode() + b"\n\n"
        )
    data = _png(final)
    usage = {"input_tokens": 20, "output_tokens": 4160, "total_tokens": 4180}
    obj = {
        "type": "image_generation.completed",
        "b64_json": base64.b64encode(data).decode(),
        "usage": usage,
        **common,
    }
    out.append(b"event: image_generation.completed\ndata: " + json.dumps(obj).encode() + b"\n\n")
    return out, len(data), sizes


def _cell(url: str) -> str:
    return f"%%chatimg --base-url {url} -m gpt-image-1 --partial-images 3\na lighthouse at dusk"


def measure(
    k: Kernel, srv: BenchServer, final: Image.Image, repeats: int
) -> tuple[list[float], list[int], list[int], int, list[int]]:
    evs, final_bytes, partial_sizes = events(final)
    delays: list[float] = []
    sent_bytes: list[int] = []
    messages: list[int] = []
    for _ in range(repeats):
        sent_at = srv.set_reply(evs, pauses={i: PAUSE for i in range(len(evs))})
        cell = k.run(_cell(srv.url))
        shown = cell.displays
        first = next(
            m
            for m in shown
            if any(t.startswith("image/") for t in m.msg["content"].get("data", {}))
        )
        delays.append(first.sent - sent_at[0])
        sent_bytes.append(sum(m.size for m in shown))
        messages.append(len(shown))
    return delays, sent_bytes, messages, final_bytes, partial_sizes


def run(small: bool) -> list[Row]:
    rows: list[Row] = []
    side = 256 if small else 1024
    repeats = 1 if small else 7
    # The target case: a picture with detail, as image models mostly make. The second is a
    # flat few-colour drawing whose final PNG is tiny (9 KB at 1024x1024): its blurred
    # partials are larger than the final itself, so no ratio to it can be promised.
    cases = [
        ("photo-like", photo(side, side, seed=7), True),
        ("flat drawing", illustration(side), False),
    ]
    with BenchServer() as srv, Kernel.start() as k:
        k.run("%load_ext jupyter_chatimg")
        k.run(_cell(srv.url))  # warm up: imports, the first connection
        for name, final, target in cases:
            delays, sent, msgs, final_bytes, partials = measure(k, srv, final, repeats)
            ratio = median([s / final_bytes for s in sent])
            naive = 4 / 3 * (sum(partials) + final_bytes)
            rows.append(
                row(
                    f"bytes to the front end, {side}x{side} {name} stream with 3 partials "
                    f"({msgs[-1]} display msgs)",
                    f"final PNG as sent {size(final_bytes)}; partial PNGs "
                    f"{', '.join(size(p) for p in partials)}; all re-sent in base64 {size(naive)}",
                    f"{size(median([float(s) for s in sent]))} "
                    f"({median([float(s) for s in sent]) / naive:.0%} of re-sending every image)",
                    f"{ratio:.2f}x the final image",
                    "<= 4.2x" if target else "- (partials larger than the final)",
                    ratio <= 4.2 if target else None,
                )
            )
            d = median(delays)
            rows.append(
                row(
                    f"first partial image ({size(partials[0])} PNG) sent by the server -> its "
                    f"display message, {name} (kernel clock)",
                    "-",
                    f"{ms(d)} (max {ms(max(delays))})",
                    "-",
                    "<= 20 ms",
                    d <= 0.020,
                )
            )
    return rows


if __name__ == "__main__":  # pragma: no cover
    import sys

    for r in run(small="--small" in sys.argv):
        print(r)
