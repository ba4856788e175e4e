"""Sent images: a camera-like photo and a chart, PIL -> data URI, against a naive PNG."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jupyter_chatimg._images import decode_data_uri, encode_pil

from ._common import Row, median, ms, row, size, timed


def photo(width: int, height: int, seed: int = 1) -> Image.Image:
    """A synthetic camera photo: sky and ground gradients, soft large shapes, fine
    texture (foliage-like), a few hard-edged objects, and per-pixel sensor noise."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    horizon = 0.45 + 0.05 * np.sin(6.0 * x)
    sky = y < horizon
    img = np.empty((height, width, 3), np.float32)
    img[..., 0] = np.where(sky, 110 + 90 * y, 70 + 40 * (1 - y))
    img[..., 1] = np.where(sky, 150 + 70 * y, 95 + 50 * (1 - y))
    img[..., 2] = np.where(sky, 215 + 30 * y, 50 + 20 * y)

    def smooth(cells: tuple[int, int], amp: float) -> np.ndarray:
        small = Image.fromarray(rng.normal(0, 1, cells).astype(np.float32), mode="F")
        big = small.resize((width, height), Image.Resampling.BICUBIC)
        return np.asarray(big, dtype=np.float32)[..., None] * amp

    img += smooth((12, 16), 18.0)  # light falloff, clouds
    ground = ~sky[..., None]
    img += np.where(ground, smooth((height // 8, width // 8), 22.0), smooth((30, 40), 6.0))
    pic = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(pic)
    for _ in range(14):  # buildings, poles, a car: hard edges with shading
        x0 = int(rng.integers(0, width - width // 8))
        w = int(rng.integers(width // 40, width // 8))
        top = int(height * float(rng.uniform(0.2, 0.5)))
        shade = tuple(int(v) for v in rng.integers(60, 200, 3))
        draw.rectangle((x0, top, x0 + w, int(height * 0.75)), fill=shade)
    arr = np.asarray(pic, dtype=np.float32)
    arr += rng.normal(0.0, 4.0, arr.shape).astype(np.float32)  # sensor noise
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def chart(width: int, height: int) -> Image.Image:
    """A line-and-bar chart with few colours: axes, grid, three series, labels (not antialiased)."""
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.fontmode = "1"  # crisp text: a chart of few colours
    font = ImageFont.load_default(size=max(10, height // 40))
    left, right, top, bottom = width // 10, width - width // 20, height // 10, height - height // 8
    for i in range(11):
        gy = top + (bottom - top) * i // 10
        draw.line((left, gy, right, gy), fill=(220, 220, 220), width=1)
        draw.text(
            (left - width // 25, gy - height // 80), f"{100 - 10 * i}", fill="black", font=font
        )
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44)]
    n = 24
    for k, colour in enumerate(colours):
        pts = [
            (
                left + (right - left) * i // (n - 1),
                bottom - int((bottom - top) * (0.2 + 0.25 * k + 0.2 * np.sin(i / 3 + k))),
            )
            for i in range(n)
        ]
        draw.line(pts, fill=colour, width=max(2, width // 400))
    for i in range(n):
        bx = left + (right - left) * i // n + 4
        bh = int((bottom - top) * 0.15 * (1 + np.cos(i / 2)) / 2)
        draw.rectangle((bx, bottom - bh, bx + (right - left) // n - 8, bottom), fill=(214, 39, 40))
    draw.line((left, top, left, bottom, right, bottom), fill="black", width=3)
    draw.text((width // 3, height // 40), "Monthly values by series", fill="black", font=font)
    return img


def _naive(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _measure(img: Image.Image, repeats: int) -> tuple[float, str, float, str]:
    naive_t: list[float] = []
    ours_t: list[float] = []
    naive = ours = ""
    for _ in range(repeats):
        t, naive = timed(lambda: _naive(img))
        naive_t.append(t)
        t, ours = timed(lambda: encode_pil(img))
        ours_t.append(t)
    return median(naive_t), naive, median(ours_t), ours


def run(small: bool) -> list[Row]:
    rows: list[Row] = []
    w, h = (400, 300) if small else (4000, 3000)
    img = photo(w, h)
    nt, naive, ot, ours = _measure(img, 1 if small else 3)
    back = decode_data_uri(ours)
    speed, shrink = nt / ot, len(naive) / len(ours)
    rows.append(
        row(
            f"{w}x{h} RGB photo (synthetic camera-like) -> data URI, defaults",
            f"naive PNG + base64: {ms(nt)}, {size(len(naive))}",
            f"{ms(ot)}, {size(len(ours))}, {ours[5:15]}, {back.width}x{back.height}",
            f"{speed:.0f}x faster, {shrink:.0f}x smaller",
            ">= 10x faster, >= 20x smaller, long side <= 2048",
            speed >= 10 and shrink >= 20 and max(back.size) <= 2048,
        )
    )
    w, h = (320, 240) if small else (1600, 1200)
    img = chart(w, h)
    nt, naive, ot, ours = _measure(img, 1 if small else 5)
    back = decode_data_uri(ours)
    before = len(img.getcolors(1 << 24) or [])
    after = len(back.convert("RGB").getcolors(1 << 24) or [])
    same = back.size == img.size and before == after
    exact = same and np.array_equal(np.asarray(back.convert("RGB")), np.asarray(img))
    png = ours.startswith("data:image/png")
    rows.append(
        row(
            f"{w}x{h} chart, {before} colours -> data URI, defaults",
            f"naive PNG + base64: {ms(nt)}, {size(len(naive))}",
            f"{ms(ot)}, {size(len(ours))}, {'PNG' if png else 'not PNG'}, "
            f"{after} colours, pixels {'identical' if exact else 'changed'}",
            f"{len(naive) / len(ours):.2f}x smaller, {nt / ot:.2f}x the speed",
            "PNG, colours kept, smaller than naive",
            png and same and len(ours) < len(naive),
        )
    )
    return rows


if __name__ == "__main__":  # pragma: no cover
    import sys

    for r in run(small="--small" in sys.argv):
        print(r)
