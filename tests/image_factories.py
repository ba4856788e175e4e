"""Small, deterministic test images (PIL only) and helpers to read data URIs back.

``chart`` has few flat colours (the encoder should choose PNG), ``photo`` has
thousands of colours and no flat areas (JPEG). Every picture keeps a known
colour at a known place so tests can check pixels after a round trip:
the left third is pure red, the right third pure white (``chart``) or a
brightness gradient (``photo``).
"""

from __future__ import annotations

import base64
import io
import re
import struct
import zlib

from PIL import Image, ImageDraw

DATA_URI = re.compile(r"^data:image/(png|jpeg|webp|gif);base64,[A-Za-z0-9+/]+={0,2}$")
RED = (255, 0, 0)
WHITE = (255, 255, 255)


def chart(size: tuple[int, int] = (90, 60)) -> Image.Image:
    """RGB, few colours: red left third, green middle band, white right, a black line."""
    w, h = size
    img = Image.new("RGB", size, WHITE)
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, w // 3 - 1, h - 1], fill=RED)
    draw.rectangle([w // 3, h // 3, 2 * w // 3 - 1, 2 * h // 3 - 1], fill=(0, 160, 0))
    draw.line([(w // 3, h - 2), (w - 1, h - 2)], fill=(0, 0, 0), width=1)
    return img


def photo(size: tuple[int, int] = (240, 180), seed: int = 0) -> Image.Image:
    """RGB, photo-like: noise over gradients everywhere except a pure red left third."""
    w, h = size
    noise = Image.effect_noise(size, 48 + seed)
    ramp = Image.linear_gradient("L").resize(size)
    ramp_t = Image.linear_gradient("L").rotate(90).resize(size)
    img = Image.merge("RGB", (ramp, noise, ramp_t))
    img.paste(RED, (0, 0, w // 3, h))
    return img


def with_alpha(img: Image.Image) -> Image.Image:
    """RGBA copy of ``img``: right third fully transparent, middle third half transparent."""
    w, h = img.size
    alpha = Image.new("L", img.size, 255)
    alpha.paste(128, (w // 3, 0, 2 * w // 3, h))
    alpha.paste(0, (2 * w // 3, 0, w, h))
    out = img.convert("RGBA")
    out.putalpha(alpha)
    return out


def encoded(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def exif_jpeg(orientation: int = 6, size: tuple[int, int] = (60, 40)) -> bytes:
    """A wide JPEG stored red-left / blue-right, tagged with EXIF ``orientation``.

    With orientation 6 (rotate 90 degrees clockwise to display) the upright
    image is tall, red on top and blue at the bottom.
    """
    w, h = size
    img = Image.new("RGB", size, (0, 0, 255))
    img.paste(RED, (0, 0, w // 2, h))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(img, "JPEG", quality=95, exif=exif.tobytes())


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` but holds almost no data (a "bomb" header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def decode(url: str) -> Image.Image:
    """Check ``url`` against the schema's data URI pattern and open it (loaded)."""
    assert DATA_URI.match(url), url[:80]
    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    img.load()
    return img


def uri_format(url: str) -> str:
    """``png``, ``jpeg``, ``webp`` or ``gif`` from a data URI."""
    match = DATA_URI.match(url)
    assert match, url[:80]
    return match.group(1)


def payload(url: str) -> bytes:
    return base64.b64decode(url.split(",", 1)[1])


def close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 12) -> bool:
    """Pixels equal within ``tol`` per channel."""
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))
