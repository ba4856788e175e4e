"""demo-vision: descriptions checked against images whose properties the test knows."""

from __future__ import annotations

import json
import re

import httpx
import numpy as np
import pytest
from _demo import http, server  # noqa: F401 - fixtures
from PIL import Image, ImageDraw

from jupyter_chatimg.demo._colors import PALETTE, darker, lighter, name_of
from jupyter_chatimg.demo._describe import analyze
from jupyter_chatimg.demo._testing import data_uri, user_message


def ask(http: httpx.Client, *messages: dict[str, object], **extra: object) -> str:
    body = {"model": "demo-vision", "messages": list(messages), **extra}
    r = http.post("/chat/completions", json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["choices"][0]["message"]["content"])


def red_square_on_white() -> Image.Image:
    img = Image.new("RGB", (240, 240), "white")
    ImageDraw.Draw(img).rectangle((60, 60, 179, 179), fill=(220, 20, 20))
    return img


def photo_like(w: int = 320, h: int = 240) -> Image.Image:
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x / w * 200, y / h * 180, (x + y) / (w + h) * 160], axis=-1)
    noise = rng.normal(0, 18, (h, w, 3))
    return Image.fromarray(np.clip(base + noise + 30, 0, 255).astype("uint8"))


def colour_shares(text: str) -> dict[str, int]:
    line = next(ln for ln in text.splitlines() if ln.startswith("- Colour"))
    return {n: int(p) for n, p in re.findall(r"\*\*([a-z ]+)\*\* \((\d+)%\)", line)}


def test_every_palette_colour_is_named_back() -> None:
    for name, rgb in PALETTE.items():
        assert name_of(rgb)[0] == name
    assert name_of(lighter(PALETTE["blue"])) == ("blue", "light")
    assert name_of(darker(PALETTE["green"])) == ("green", "dark")


def test_red_square_on_white(http: httpx.Client) -> None:
    text = ask(http, user_message("What do you see?", red_square_on_white()))
    shares = colour_shares(text)
    assert set(shares) == {"white", "red"}
    assert 70 <= shares["white"] <= 80 and 20 <= shares["red"] <= 30  # 120² of 240² = 25 %
    assert "square" in text.splitlines()[2]  # the orientation of a 240x240 image
    assert "240×240" in text
    assert "drawing" in text and "photograph" not in text
    assert "white background" in text and "center" in text
    assert "Transparency: none" in text


@pytest.mark.parametrize(
    ("size", "word"), [((300, 600), "portrait"), ((600, 300), "landscape"), ((400, 400), "square")]
)
def test_orientation(http: httpx.Client, size: tuple[int, int], word: str) -> None:
    text = ask(http, user_message("describe", Image.new("RGB", size, (30, 80, 220))))
    head = text.splitlines()[2]
    assert f"{size[0]}×{size[1]} {word}" in head
    assert "single flat colour, **blue**" in text


def test_transparency_is_measured(http: httpx.Client) -> None:
    img = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    ImageDraw.Draw(img).rectangle((0, 0, 49, 99), fill=(40, 170, 60, 255))  # left half opaque
    text = ask(http, user_message("describe", img))
    m = re.search(r"(\d+)% of the pixels are fully transparent", text)
    assert m and int(m.group(1)) == 50
    assert "green" in text
    opaque = ask(http, user_message("describe", Image.new("RGBA", (50, 50), (0, 0, 0, 255))))
    assert "every pixel is opaque" in opaque and "transparent" not in opaque


def test_brightness_and_contrast_words(http: httpx.Client) -> None:
    dark = ask(http, user_message("d", Image.new("RGB", (64, 64), (10, 10, 10))))
    assert "very dark" in dark and "contrast: very low" in dark
    checker = Image.new("L", (64, 64), 0)
    draw = ImageDraw.Draw(checker)
    for i in range(0, 64, 8):
        for j in range(0, 64, 8):
            if (i + j) // 8 % 2:
                draw.rectangle((i, j, i + 7, j + 7), fill=255)
    text = ask(http, user_message("d", checker))
    assert "contrast: high" in text
    assert "black" in text and "white" in text
    assert "like text or line art" in text


def test_photo_versus_drawing(http: httpx.Client) -> None:
    photo = ask(http, user_message("d", photo_like()))
    assert "Looks like a photograph" in photo
    drawing = ask(http, user_message("d", red_square_on_white()))
    assert "drawing, chart" in drawing


def test_several_images_are_described_and_compared(http: httpx.Client) -> None:
    bright = Image.new("RGB", (100, 100), (250, 250, 250))
    dark = Image.new("RGB", (300, 200), (20, 20, 60))
    text = ask(http, user_message("compare these", bright, dark))
    assert "**Image 1**: a 100×100" in text and "**Image 2**: a 300×200" in text
    assert "Image 1 is the brightest" in text and "Image 2 the darkest" in text
    assert "Image 2 is the largest" in text


def test_remote_url_is_refused_honestly(http: httpx.Client) -> None:
    text = ask(
        http,
        user_message("describe", "https://example.com/cat.png", red_square_on_white()),
    )
    assert "example.com" in text and "cannot fetch" in text and "offline" in text
    assert "**Image 2**: a 240×240" in text


def test_corrupt_image_is_reported_not_an_error(http: httpx.Client) -> None:
    text = ask(http, user_message("describe", "data:image/png;base64,aGVsbG8gd29ybGQ="))
    assert "not a readable image" in text


def test_no_image_says_what_it_is(http: httpx.Client) -> None:
    text = ask(http, {"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"})
    assert "offline demo model" in text and "demo-image" in text and "Attach" in text
    assert "`2 + 3 * 4 = 14`" in ask(http, {"role": "user", "content": "what is 2 + 3 * 4?"})


def test_earlier_images_are_used_when_the_last_message_has_none(http: httpx.Client) -> None:
    text = ask(
        http,
        user_message("describe", red_square_on_white()),
        {"role": "assistant", "content": "It is red."},
        {"role": "user", "content": "and again?"},
    )
    assert "from earlier" in text and "red" in text


def test_an_image_drawn_earlier_is_described(http: httpx.Client) -> None:
    drawn = http.post(
        "/chat/completions",
        json={"model": "demo-image", "messages": [{"role": "user", "content": "a green square"}]},
    ).json()["choices"][0]["message"]["content"]
    text = ask(
        http,
        {"role": "user", "content": "a green square"},
        {"role": "assistant", "content": drawn},
        {"role": "user", "content": "describe it"},
    )
    assert "512×512" in text and "green" in text and "from earlier" in text


def test_json_mode(http: httpx.Client) -> None:
    text = ask(
        http,
        user_message("describe", Image.new("RGB", (300, 600), "white")),
        response_format={"type": "json_object"},
    )
    data = json.loads(text)
    assert data["images"][0]["orientation"] == "portrait"
    assert data["images"][0]["colors"][0]["name"] == "white"


def test_unusual_modes_are_measured() -> None:
    for img in (
        Image.new("I;16", (40, 30), 1000),
        Image.new("F", (40, 30), 0.5),
        Image.new("CMYK", (40, 30), (0, 255, 255, 0)),
        Image.new("P", (40, 30), 3),
        Image.new("LA", (40, 30), (128, 0)),
        Image.new("1", (40, 30), 1),
    ):
        stats = analyze(img)
        assert stats.width == 40 and stats.height == 30


def test_big_image_is_fast_enough() -> None:
    import time

    big = Image.fromarray(np.random.default_rng(1).integers(0, 255, (3000, 4000, 3), "uint8"))
    t0 = time.perf_counter()
    stats = analyze(big)
    assert time.perf_counter() - t0 < 2.0
    assert stats.kind == "photo"


def test_describes_jpeg_and_reports_format(http: httpx.Client) -> None:
    big = Image.linear_gradient("L").resize((2200, 1400)).convert("RGB")
    text = ask(http, user_message("d", data_uri(big, "JPEG")))
    assert "2200×1400 landscape JPEG image" in text  # the true size, not a reduced decode
