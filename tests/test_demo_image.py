"""demo-image: what it draws and how it edits, checked on the pixels."""

from __future__ import annotations

import math

import httpx
import pytest
from _demo import http, server  # noqa: F401 - fixtures
from PIL import Image, ImageDraw

from jupyter_chatimg.demo._colors import PALETTE, lighter
from jupyter_chatimg.demo._prompt import parse_edits, parse_scene
from jupyter_chatimg.demo._testing import (
    components,
    decode_data_uri,
    markdown_data_uris,
    near,
    user_message,
)

RED, BLUE, WHITE = PALETTE["red"], PALETTE["blue"], PALETTE["white"]


def post(http: httpx.Client, *messages: dict[str, object], **extra: object) -> dict[str, object]:
    r = http.post(
        "/chat/completions", json={"model": "demo-image", "messages": list(messages), **extra}
    )
    assert r.status_code == 200, r.text
    message = r.json()["choices"][0]["message"]
    assert isinstance(message, dict)
    return message


def draw(http: httpx.Client, prompt: str) -> tuple[Image.Image, str]:
    content = str(post(http, {"role": "user", "content": prompt})["content"])
    uris = markdown_data_uris(content)
    assert len(uris) == 1, content
    return decode_data_uri(uris[0]).convert("RGB"), content


def edit(http: httpx.Client, prompt: str, img: Image.Image) -> tuple[Image.Image | None, str]:
    content = str(post(http, user_message(prompt, img))["content"])
    uris = markdown_data_uris(content)
    return (decode_data_uri(uris[0]) if uris else None), content


def marked() -> Image.Image:
    """A 120x80 white image with a red 20x20 block in the top-left corner."""
    img = Image.new("RGB", (120, 80), "white")
    ImageDraw.Draw(img).rectangle((0, 0, 19, 19), fill=RED)
    return img


def colourful() -> Image.Image:
    img = Image.new("RGB", (64, 48))
    img.putdata(
        [((x * 4) % 256, (y * 5) % 256, (x * y) % 256) for y in range(48) for x in range(64)]
    )
    return img


def pixels(img: Image.Image) -> list[tuple[int, int, int]]:
    raw = img.convert("RGB").tobytes()
    return [(raw[i], raw[i + 1], raw[i + 2]) for i in range(0, len(raw), 3)]


# --- generation ----------------------------------------------------------------------


def test_red_circle_on_white(http: httpx.Client) -> None:
    img, text = draw(http, "a red circle on a white background")
    w, h = img.size
    for corner in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)):
        assert img.getpixel(corner) == WHITE
    assert img.getpixel((w // 2, h // 2)) == RED
    reds = components(img, lambda p: p == RED)
    assert len(reds) == 1
    region = reds[0]
    xs, ys = [p[0] for p in region], [p[1] for p in region]
    cx, cy = sum(xs) / len(xs), sum(ys) / len(ys)
    assert abs(cx - w / 2) < 3 and abs(cy - h / 2) < 3
    diameter = max(xs) - min(xs) + 1
    assert abs(diameter - (max(ys) - min(ys) + 1)) <= 2
    # A disc fills pi/4 of its bounding box; a square would fill all of it.
    assert abs(len(region) / diameter**2 - math.pi / 4) < 0.03
    assert "one red circle" in text and "white background" in text


def test_three_blue_squares(http: httpx.Client) -> None:
    img, _ = draw(http, "three blue squares")
    blues = components(img, lambda p: p == BLUE)
    assert len(blues) == 3
    for region in blues:
        xs, ys = [p[0] for p in region], [p[1] for p in region]
        bw, bh = max(xs) - min(xs) + 1, max(ys) - min(ys) + 1
        assert bw == bh and len(region) == bw * bh  # filled squares


@pytest.mark.parametrize("count", [2, 5, 12])
def test_digit_counts(http: httpx.Client, count: int) -> None:
    img, _ = draw(http, f"{count} small green triangles on black")
    green = PALETTE["green"]
    assert len(components(img, lambda p: p == green)) == count
    assert img.getpixel((0, 0)) == (0, 0, 0)


def test_positions_and_background(http: httpx.Client) -> None:
    img, text = draw(
        http,
        "a yellow star in the top left and a purple heart at the bottom right "
        "on a light blue background",
    )
    w, h = img.size
    bg = lighter(BLUE)
    assert img.getpixel((w - 1, 0)) == bg and img.getpixel((0, h - 1)) == bg
    (star,) = components(img, lambda p: p == PALETTE["yellow"])
    (heart,) = components(img, lambda p: p == PALETTE["purple"])
    assert max(x for x, _ in star) < w / 2 and max(y for _, y in star) < h / 2
    assert min(x for x, _ in heart) > w / 2 and min(y for _, y in heart) > h / 2
    assert "top left" in text and "bottom right" in text


def test_two_unplaced_groups_sit_side_by_side(http: httpx.Client) -> None:
    img, _ = draw(http, "a red square and a blue circle")
    (red,) = components(img, lambda p: p == RED)
    (blue,) = components(img, lambda p: p == BLUE)
    assert max(x for x, _ in red) < min(x for x, _ in blue)


def test_sizes_and_canvas(http: httpx.Client) -> None:
    small, _ = draw(http, "a small red circle")
    large, _ = draw(http, "a large red circle")
    count = lambda im: sum(1 for p in pixels(im) if p == RED)  # noqa: E731
    assert count(large) > 2 * count(small)
    wide, _ = draw(http, "a wide image with a line")
    assert wide.size == (768, 512)
    tall, _ = draw(http, "a tall picture of an orange ellipse")
    assert tall.size == (512, 768)
    exact, _ = draw(http, "300x200 pink rectangle")
    assert exact.size == (300, 200)
    assert any(p == PALETTE["pink"] for p in pixels(exact))


def test_unrecognised_prompt_draws_a_caption_card(http: httpx.Client) -> None:
    img, text = draw(http, "a dragon reading poetry")
    assert "nothing I know how to draw" in text
    assert len(set(pixels(img))) > 2  # there is text on it


def test_unused_words_are_named(http: httpx.Client) -> None:
    _, text = draw(http, "a red circle with a dragon")
    assert "Words I did not use: dragon" in text


def test_gateway_reply_shape(http: httpx.Client) -> None:
    _, text = draw(http, "a red circle")
    lines = text.splitlines()
    assert lines[0].startswith("> ") and "Progress **50%**" in text and "> Done ✅" in text
    assert text.index("Done") < text.index("![demo-image](data:image/png;base64,")


def test_openrouter_reply_shape(http: httpx.Client) -> None:
    msg = post(http, {"role": "user", "content": "a red circle"}, modalities=["image", "text"])
    images = msg["images"]
    assert isinstance(images, list) and images[0]["type"] == "image_url"
    img = decode_data_uri(images[0]["image_url"]["url"])
    assert img.getpixel((256, 256)) == RED
    assert "![" not in str(msg["content"]) and "red circle" in str(msg["content"])


def test_generation_is_deterministic(http: httpx.Client) -> None:
    prompt = "four large magenta hearts on a dark green background, 640x480"
    a_img, a_text = draw(http, prompt)
    b_img, b_text = draw(http, prompt)
    assert a_text == b_text
    assert a_img.tobytes() == b_img.tobytes()


# --- editing -------------------------------------------------------------------------


def test_grayscale(http: httpx.Client) -> None:
    out, text = edit(http, "make it black and white", colourful())
    assert out is not None and out.size == (64, 48)
    assert all(r == g == b for r, g, b in pixels(out))
    assert "grayscale" in text


def test_invert(http: httpx.Client) -> None:
    src = colourful()
    out, _ = edit(http, "invert the colours", src)
    assert out is not None
    assert pixels(out) == [(255 - r, 255 - g, 255 - b) for r, g, b in pixels(src)]


def test_rotate_90_moves_the_marked_corner(http: httpx.Client) -> None:
    out, text = edit(http, "rotate 90 degrees", marked())
    assert out is not None and out.size == (80, 120)
    assert out.getpixel((79, 0)) == RED  # clockwise: top-left goes to top-right
    assert out.getpixel((0, 0)) == WHITE
    assert "clockwise" in text
    ccw, _ = edit(http, "rotate it 90 degrees counterclockwise", marked())
    assert ccw is not None and ccw.getpixel((0, 119)) == RED


def test_rotate_odd_angle_expands(http: httpx.Client) -> None:
    out, _ = edit(http, "rotate by 45 degrees", marked())
    assert out is not None and out.width > 120 and out.height > 80


def test_flip_and_mirror(http: httpx.Client) -> None:
    flipped, _ = edit(http, "flip it", marked())
    assert (
        flipped is not None
        and flipped.getpixel((0, 79)) == RED
        and flipped.getpixel((0, 0)) == WHITE
    )
    mirrored, _ = edit(http, "mirror", marked())
    assert mirrored is not None and mirrored.getpixel((119, 0)) == RED
    horizontal, _ = edit(http, "flip horizontally", marked())
    assert horizontal is not None and horizontal.getpixel((119, 0)) == RED


def test_crop_to_square_and_resize(http: httpx.Client) -> None:
    out, _ = edit(http, "crop to square", marked())
    assert out is not None and out.size == (80, 80)
    assert out.getpixel((0, 0)) == WHITE  # the centre crop drops the left 20 columns
    out, _ = edit(http, "resize to 60x40", marked())
    assert out is not None and out.size == (60, 40)
    assert near(out.getpixel((2, 2)), RED)
    out, _ = edit(http, "scale it by 50%", marked())
    assert out is not None and out.size == (60, 40)


def test_several_edits_apply_in_order(http: httpx.Client) -> None:
    out, text = edit(
        http, "rotate 90 degrees, then crop to square and add a 5 px blue border", marked()
    )
    assert out is not None and out.size == (90, 90)
    assert out.getpixel((0, 0)) == BLUE and out.getpixel((89, 89)) == BLUE
    assert text.index("rotated") < text.index("cropped") < text.index("border")


def test_filters_change_pixels_the_right_way(http: httpx.Client) -> None:
    src = marked()
    blurred, _ = edit(http, "blur", src)
    assert blurred is not None
    edge = blurred.getpixel((19, 10))
    assert edge != RED and edge != WHITE  # the hard edge got soft
    sepia, _ = edit(http, "sepia", colourful())
    assert sepia is not None
    assert all(r >= g >= b for r, g, b in pixels(sepia))
    poster, _ = edit(http, "posterize to 2 bits", colourful())
    assert poster is not None
    assert all(v % 64 == 0 for p in pixels(poster) for v in p)
    pix, _ = edit(http, "pixelate with 8 px blocks", colourful())
    assert pix is not None
    block = pix.crop((8, 8, 16, 16))
    assert len(set(pixels(block))) == 1
    bright, _ = edit(http, "brighten", colourful())
    dark, _ = edit(http, "darken", colourful())
    assert bright is not None and dark is not None
    mean = lambda im: sum(sum(p) for p in pixels(im)) / im.width / im.height  # noqa: E731
    assert mean(bright) > mean(colourful()) > mean(dark)
    thumb, _ = edit(http, "thumbnail", Image.new("RGB", (600, 300), "white"))
    assert thumb is not None and thumb.size == (128, 64)


def test_alpha_survives_edits(http: httpx.Client) -> None:
    img = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    ImageDraw.Draw(img).rectangle((0, 0, 19, 39), fill=(230, 25, 25, 255))
    out, _ = edit(http, "grayscale", img)
    assert out is not None and out.mode == "RGBA"
    assert out.getpixel((30, 5))[3] == 0 and out.getpixel((5, 5))[3] == 255


def test_unknown_instruction_returns_no_image(http: httpx.Client) -> None:
    out, text = edit(http, "make it look like a Van Gogh painting", marked())
    assert out is None
    assert "no image" in text and "grayscale" in text and "rotate" in text
    _, text = edit(http, "describe this picture", marked())
    assert "demo-vision" in text


def test_edit_of_an_image_from_earlier_in_the_conversation(http: httpx.Client) -> None:
    first = str(post(http, {"role": "user", "content": "a red square"})["content"])
    msg = post(
        http,
        {"role": "user", "content": "a red square"},
        {"role": "assistant", "content": first},
        {"role": "user", "content": "now invert it"},
    )
    uris = markdown_data_uris(str(msg["content"]))
    assert uris
    out = decode_data_uri(uris[0]).convert("RGB")
    assert out.getpixel((0, 0)) == (0, 0, 0)  # white background inverted


def test_editing_is_deterministic(http: httpx.Client) -> None:
    a, ta = edit(http, "sharpen and rotate 30 degrees", colourful())
    b, tb = edit(http, "sharpen and rotate 30 degrees", colourful())
    assert a is not None and b is not None
    assert ta == tb and a.tobytes() == b.tobytes()


# --- prompt parsing ------------------------------------------------------------------


def test_parse_scene_reads_counts_colours_sizes_positions() -> None:
    scene = parse_scene(
        "two small green stars in the top-left and a big dark red heart on the right, on black"
    )
    a, b = scene.groups
    assert (a.kind, a.count, a.size, a.color_name, a.position) == (
        "star",
        2,
        "small",
        "green",
        "top left",
    )
    assert (b.kind, b.count, b.size, b.color_name, b.position) == (
        "heart",
        1,
        "large",
        "dark red",
        "right",
    )
    assert scene.background_name == "black"
    assert parse_scene("a dragon").recognised is False
    assert parse_scene("blue circles").groups[0].count == 3  # a plural with no number
    assert parse_scene("a solid green image").background_name == "green"


def test_parse_edits_keeps_prompt_order() -> None:
    kinds = [e.kind for e in parse_edits("sepia, then mirror it, rotate 180 and add a red border")]
    assert kinds == ["sepia", "mirror", "rotate", "border"]
    assert parse_edits("turn it into black and white")[0].kind == "grayscale"
    assert parse_edits("what is this") == []
