"""Images in: every input kind and PIL mode -> bounded PNG/JPEG data URIs, and the errors.

Each round trip decodes the data URI with PIL and checks the size, the mode
family, the format chosen and a few known pixels; the caller's object must be
unchanged afterwards.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from image_factories import (
    DATA_URI,
    RED,
    WHITE,
    chart,
    close,
    data_uri,
    decode,
    encoded,
    exif_jpeg,
    payload,
    photo,
    png_header_only,
    uri_format,
    with_alpha,
)
from PIL import Image, ImageChops, ImageDraw, ImageOps, features

from jupyter_chatimg._errors import ConfigError, ImageInputError
from jupyter_chatimg._image_inputs import is_image_like, to_image_urls
from jupyter_chatimg._images import (
    DEFAULT_MAX_SIDE,
    LOW_DETAIL_SIDE,
    MAX_INPUT_PIXELS,
    decode_data_uri,
    decode_image_bytes,
    encode_pil,
    image_digest,
    mime_of_pil,
    pil_to_bytes,
)

HINT = "pass a PIL image, a numpy array, a Figure, bytes, a path or an http(s)/data: URL"

# chart()/photo() are 90x60 / 240x180; these points are red, and white or transparent
RED_AT = (5, 30)
RIGHT_AT = (80, 10)


def one(obj: Any, **kw: Any) -> str:
    urls = to_image_urls(obj, **kw)
    assert len(urls) == 1
    return urls[0]


def snapshot(img: Image.Image) -> tuple[Any, ...]:
    palette = img.getpalette() if img.mode in ("P", "PA") else None
    return img.mode, img.size, img.tobytes(), dict(img.info), palette


def rgba_at(img: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    return tuple(img.convert("RGBA").getpixel(xy))  # type: ignore[arg-type]


def grey_at(img: Image.Image, xy: tuple[int, int]) -> int:
    return int(img.convert("L").getpixel(xy))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- PIL modes


def _one_bit() -> Image.Image:
    grey = chart().convert("L").point(lambda v: 255 if v > 128 else 0)
    return grey.convert("1", dither=Image.Dither.NONE)


def _p_transparent() -> Image.Image:
    p = chart().quantize(8, dither=Image.Dither.NONE)
    p.info["transparency"] = p.getpixel(RIGHT_AT)
    return p


def _int_image(mode: str, high: int, low: int = 0) -> Image.Image:
    img = Image.new(mode, (90, 60), low)
    img.paste(high, (0, 0, 30, 60))
    return img


def _float_image(left: float, middle: float, right: float) -> Image.Image:
    img = Image.new("F", (90, 60), right)
    img.paste(left, (0, 0, 30, 60))
    img.paste(middle, (30, 0, 60, 60))
    return img


def _red_opaque(img: Image.Image) -> None:
    assert close(rgba_at(img, RED_AT), (*RED, 255))


def _right_transparent(img: Image.Image) -> None:
    _red_opaque(img)
    assert rgba_at(img, RIGHT_AT)[3] == 0
    assert abs(rgba_at(img, (45, 10))[3] - 128) <= 2


def _red_and_white(img: Image.Image) -> None:
    _red_opaque(img)
    assert close(rgba_at(img, RIGHT_AT), (*WHITE, 255))


def _red_photo(img: Image.Image) -> None:
    assert close(rgba_at(img, (20, 90)), (*RED, 255), tol=16)


def _alpha_zero_right(img: Image.Image) -> None:
    assert rgba_at(img, RIGHT_AT)[3] == 0


def _red_and_alpha_zero_right(img: Image.Image) -> None:
    _red_opaque(img)
    _alpha_zero_right(img)


def _grey_photo(img: Image.Image) -> None:
    assert abs(grey_at(img, (20, 90)) - 76) <= 16  # red as grey


def _grey(left: int, right: int, tol: int = 3) -> Callable[[Image.Image], None]:
    def check(img: Image.Image) -> None:
        assert abs(grey_at(img, RED_AT) - left) <= tol
        assert abs(grey_at(img, RIGHT_AT) - right) <= tol

    return check


MODE_CASES: list[
    tuple[str, Callable[[], Image.Image], str, set[str], Callable[[Image.Image], None]]
] = [
    ("RGB chart", chart, "png", {"P", "RGB"}, _red_and_white),
    ("RGB photo", photo, "jpeg", {"RGB"}, _red_photo),
    (
        "RGBA transparent chart",
        lambda: with_alpha(chart()),
        "png",
        {"P", "RGBA"},
        _right_transparent,
    ),
    (
        "RGBA transparent photo",
        lambda: with_alpha(photo((90, 60))),
        "png",
        {"RGBA"},
        _right_transparent,
    ),
    ("RGBA opaque photo", lambda: photo().convert("RGBA"), "jpeg", {"RGB"}, _red_photo),
    (
        "LA transparent",
        lambda: with_alpha(chart()).convert("LA"),
        "png",
        {"LA"},
        _alpha_zero_right,
    ),
    ("LA opaque photo", lambda: photo().convert("LA"), "jpeg", {"L"}, _grey_photo),
    ("L chart", lambda: chart().convert("L"), "png", {"L"}, _grey(76, 255, tol=0)),
    ("L photo", lambda: photo().convert("L"), "jpeg", {"L"}, _grey_photo),
    ("1", _one_bit, "png", {"1", "L"}, _grey(0, 255, tol=0)),
    ("P", lambda: chart().quantize(8, dither=Image.Dither.NONE), "png", {"P"}, _red_and_white),
    (
        "P with transparency",
        _p_transparent,
        "png",
        {"P"},
        _red_and_alpha_zero_right,
    ),
    (
        "P with RGBA palette",
        lambda: with_alpha(chart()).quantize(16, method=Image.Quantize.FASTOCTREE),
        "png",
        {"P", "RGBA"},
        _right_transparent,
    ),
    ("CMYK chart", lambda: chart().convert("CMYK"), "png", {"P", "RGB"}, _red_and_white),
    ("CMYK photo", lambda: photo().convert("CMYK"), "jpeg", {"RGB"}, _red_photo),
    ("YCbCr photo", lambda: photo().convert("YCbCr"), "jpeg", {"RGB"}, _red_photo),
    ("HSV photo", lambda: photo().convert("HSV"), "jpeg", {"RGB"}, _red_photo),
    ("RGBa", lambda: with_alpha(chart()).convert("RGBa"), "png", {"P", "RGBA"}, _right_transparent),
    (
        "La",
        lambda: with_alpha(chart()).convert("LA").convert("La"),
        "png",
        {"LA"},
        _alpha_zero_right,
    ),
    ("I wide range", lambda: _int_image("I", 100_000), "png", {"L"}, _grey(255, 0, tol=0)),
    (
        "I within 0..255",
        lambda: chart().convert("L").convert("I"),
        "png",
        {"L"},
        _grey(76, 255, tol=0),
    ),
    ("I;16", lambda: _int_image("I;16", 65535), "png", {"L"}, _grey(255, 0, tol=0)),
    ("I;16 12-bit data", lambda: _int_image("I;16", 4095), "png", {"L"}, _grey(255, 0, tol=0)),
    ("I;16 narrow range", lambda: _int_image("I;16", 300, 100), "png", {"L"}, _grey(255, 0, tol=0)),
    ("F in [0, 1]", lambda: _float_image(1.0, 0.5, 0.25), "png", {"L"}, _grey(255, 64, tol=1)),
    ("F outside [0, 1]", lambda: _float_image(5.0, 0.0, -5.0), "png", {"L"}, _grey(255, 0, tol=1)),
]


@pytest.mark.parametrize(
    ("make", "fmt", "modes", "check"), [c[1:] for c in MODE_CASES], ids=[c[0] for c in MODE_CASES]
)
def test_pil_modes_round_trip(
    make: Callable[[], Image.Image], fmt: str, modes: set[str], check: Callable[[Image.Image], None]
) -> None:
    img = make()
    before = snapshot(img)
    url = one(img)
    assert snapshot(img) == before, "the caller's image changed"
    assert uri_format(url) == fmt
    out = decode(url)
    assert out.size == img.size
    assert out.mode in modes
    check(out)
    assert encode_pil(img) == url


def test_float_image_middle_value_is_scaled_by_its_range() -> None:
    out = decode(one(_float_image(5.0, 0.0, -5.0)))
    assert abs(grey_at(out, (45, 30)) - 128) <= 1


def test_p_and_1_images_stay_exact_palette_pngs() -> None:
    p = chart().quantize(8, dither=Image.Dither.NONE)
    out = decode(one(p))
    assert out.mode == "P"
    assert out.convert("RGB").tobytes() == p.convert("RGB").tobytes()


# --------------------------------------------------------------------------- format choice


def test_photo_goes_jpeg_and_chart_goes_png() -> None:
    assert uri_format(one(photo())) == "jpeg"
    assert uri_format(one(chart((400, 300)))) == "png"


def test_graphic_with_few_colours_is_put_on_an_exact_palette() -> None:
    img = chart((400, 300))
    out = decode(one(img))
    assert out.mode == "P"
    assert out.convert("RGB").tobytes() == img.tobytes()


def _antialiased(colours: list[str], size: tuple[int, int]) -> Image.Image:
    big = chart((1200, 900))
    draw = ImageDraw.Draw(big)
    for i, colour in enumerate(colours):
        draw.line([(0, 100 * i), (1199, 899 - 37 * i)], fill=colour, width=5)
    return big.resize(size, Image.Resampling.LANCZOS)  # blends -> many colours


def test_antialiased_graphic_is_palettised_within_tolerance() -> None:
    img = _antialiased(["red", "blue", "black"], (800, 600))
    assert img.getcolors(256) is None
    out = decode(one(img))
    assert out.mode == "P"
    extrema = ImageChops.difference(out.convert("RGB"), img).getextrema()
    assert max(hi for _, hi in extrema) <= 12  # type: ignore[misc]


def test_dense_graphic_that_a_palette_would_change_stays_lossless() -> None:
    colours = ["red", "blue", "orange", "purple", "teal", "black", "gold", "navy"]
    img = _antialiased(colours, (301, 227))
    out = decode(one(img))
    assert (out.format, out.mode) == ("PNG", "RGB")
    assert out.tobytes() == img.tobytes()


def test_chart_png_is_smaller_than_a_naive_png() -> None:
    img = chart((1600, 1200))
    url = one(img)
    assert uri_format(url) == "png"
    assert len(payload(url)) < len(encoded(img, "PNG"))


def test_large_photo_is_bounded_and_at_least_20x_smaller_than_raw() -> None:
    img = photo((4000, 3000))
    url = one(img)
    assert uri_format(url) == "jpeg"
    assert decode(url).size == (2048, 1536)
    assert len(url) * 20 < 4000 * 3000 * 3


def test_photos_use_jpeg_quality_85() -> None:
    out = decode(one(photo()))
    # libjpeg's quality 85 luminance table starts with 5 (quality 75 gives 8, 95 gives 2)
    assert out.quantization[0][0] == 5  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- caller's object


@pytest.mark.parametrize("max_side", [DEFAULT_MAX_SIDE, 50, 0])
@pytest.mark.parametrize(
    "make",
    [
        chart,
        photo,
        lambda: with_alpha(chart()),
        lambda: chart().quantize(8),
        lambda: chart().convert("CMYK"),
        _p_transparent,
    ],
    ids=["chart", "photo", "rgba", "P", "CMYK", "P-transparent"],
)
def test_caller_image_is_never_changed(make: Callable[[], Image.Image], max_side: int) -> None:
    img = make()
    before = snapshot(img)
    url = one(img, max_side=max_side)
    assert snapshot(img) == before
    assert not hasattr(img, "encoderinfo") or img.encoderinfo == {}
    assert max(decode(url).size) == (min(max(img.size), max_side) if max_side else max(img.size))


def test_lazily_opened_caller_image_keeps_its_exif_and_size() -> None:
    img = Image.open(io.BytesIO(exif_jpeg(6)))
    out = decode(encode_pil(img))
    assert out.size == (40, 60)
    assert img.size == (60, 40)
    assert img.getexif()[0x0112] == 6


# --------------------------------------------------------------------------- bounds


@pytest.mark.parametrize(
    ("size", "max_side", "detail", "expected"),
    [
        ((3000, 1000), DEFAULT_MAX_SIDE, None, (2048, 683)),
        ((1000, 3000), DEFAULT_MAX_SIDE, None, (683, 2048)),
        ((3000, 1000), 1000, None, (1000, 333)),
        ((3000, 1000), DEFAULT_MAX_SIDE, "low", (512, 171)),
        ((3000, 1000), DEFAULT_MAX_SIDE, "high", (2048, 683)),
        ((3000, 1000), DEFAULT_MAX_SIDE, "auto", (2048, 683)),
        ((3000, 1000), 0, None, (3000, 1000)),
        ((3000, 1000), 0, "low", (512, 171)),
        ((3000, 1000), 300, "low", (300, 100)),
        ((100, 50), DEFAULT_MAX_SIDE, None, (100, 50)),
        ((100, 50), DEFAULT_MAX_SIDE, "low", (100, 50)),
        ((100, 50), 60, None, (60, 30)),
        ((5000, 1), 1000, None, (1000, 1)),
    ],
)
def test_bounds(
    size: tuple[int, int], max_side: int, detail: str | None, expected: tuple[int, int]
) -> None:
    sources = [chart(size), photo(size)] if min(size) > 2 else [Image.new("RGB", size, RED)]
    for img in sources:
        assert decode(one(img, max_side=max_side, detail=detail)).size == expected
    assert decode(encode_pil(sources[0], max_side=max_side, detail=detail)).size == expected


def test_low_detail_side_is_512() -> None:
    assert LOW_DETAIL_SIDE == 512


def test_downscaled_picture_keeps_its_content() -> None:
    out = decode(one(chart((900, 600)), max_side=90))
    assert out.size == (90, 60)
    _red_and_white(out)


# --------------------------------------------------------------------------- EXIF orientation


@pytest.mark.parametrize("orientation", range(1, 9))
def test_decode_image_bytes_applies_every_exif_orientation(orientation: int) -> None:
    data = exif_jpeg(orientation)
    out = decode_image_bytes(data)
    reference = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert reference is not None
    assert out.size == reference.size == ((60, 40) if orientation <= 4 else (40, 60))
    assert out.tobytes() == reference.tobytes()
    assert out.getexif().get(0x0112, 1) == 1


def _top_red_bottom_blue(img: Image.Image) -> None:
    assert img.size == (40, 60)
    assert close(rgba_at(img, (20, 5)), (*RED, 255), tol=24)
    assert close(rgba_at(img, (20, 55)), (0, 0, 255, 255), tol=24)


def test_exif_orientation_6_from_bytes_path_and_pil(tmp_path: Path) -> None:
    data = exif_jpeg(6)
    path = tmp_path / "rotated.jpg"
    path.write_bytes(data)
    for source in (data, path, str(path), Image.open(io.BytesIO(data))):
        _top_red_bottom_blue(decode(one(source)))


def test_exif_orientation_6_in_a_data_uri_is_applied_on_decode() -> None:
    url = data_uri(exif_jpeg(6), "image/jpeg")
    _top_red_bottom_blue(decode_data_uri(url))


# --------------------------------------------------------------------------- numpy


def _np() -> Any:
    return pytest.importorskip("numpy")


def _array_cases() -> list[tuple[str, Callable[[], Any], set[str], Callable[[Image.Image], None]]]:
    def gray(
        dtype: str, left: float, right: float, extra: Callable[[Any], Any] | None = None
    ) -> Callable[[], Any]:
        def make() -> Any:
            numpy = _np()
            a = numpy.full((60, 90), right, dtype=dtype)
            a[:, :30] = left
            return extra(a) if extra else a

        return make

    def rgb(dtype: str, scale: float) -> Callable[[], Any]:
        def make() -> Any:
            numpy = _np()
            return (numpy.asarray(chart()).astype(dtype) * scale).astype(dtype)

        return make

    def clipped_colour() -> Any:
        numpy = _np()
        a = numpy.zeros((60, 90, 3), dtype=numpy.float64)
        a[:, :30] = (1.5, -0.5, 0.0)
        a[:, 30:] = (3.0, 2.0, 1.2)
        return a

    def with_nan() -> Any:
        numpy = _np()
        a = numpy.full((60, 90), numpy.nan, dtype=numpy.float32)
        a[:, :30] = 1.0
        return a

    def rgba() -> Any:
        return _np().asarray(with_alpha(chart()))

    def photo_float() -> Any:
        return _np().asarray(photo()).astype("float32") / 255.0

    def reversed_view() -> Any:
        return _np().asarray(chart())[:, ::-1]

    return [
        ("uint8 HxW", gray("uint8", 200, 0), {"L"}, _grey(200, 0, tol=0)),
        (
            "uint8 HxWx1",
            gray("uint8", 200, 0, lambda a: a[:, :, None]),
            {"L"},
            _grey(200, 0, tol=0),
        ),
        ("uint8 HxWx3", rgb("uint8", 1), {"P", "RGB"}, _red_and_white),
        ("uint8 HxWx4", rgba, {"P", "RGBA"}, _right_transparent),
        ("bool", gray("bool", True, False), {"L"}, _grey(255, 0, tol=0)),
        ("uint16 grey, actual range", gray("uint16", 4000, 1000), {"L"}, _grey(255, 0, tol=0)),
        ("uint16 colour, full range", rgb("uint16", 257), {"P", "RGB"}, _red_and_white),
        ("int64 within 0..255", rgb("int64", 1), {"P", "RGB"}, _red_and_white),
        ("int32 grey, negative", gray("int32", 5, -5), {"L"}, _grey(255, 0, tol=0)),
        ("float64 colour in [0, 1]", rgb("float64", 1 / 255), {"P", "RGB"}, _red_and_white),
        ("float colour outside [0, 1] is clipped", clipped_colour, {"P", "RGB"}, _red_and_white),
        (
            "float grey outside [0, 1] is clipped",
            gray("float32", 2.0, -1.0),
            {"L"},
            _grey(255, 0, tol=0),
        ),
        ("float with NaN", with_nan, {"L"}, _grey(255, 0, tol=0)),
        ("float photo", photo_float, {"RGB"}, _red_photo),
        (
            "non-contiguous view",
            reversed_view,
            {"P", "RGB"},
            lambda im: _red_opaque(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
        ),
    ]


ARRAY_CASES = _array_cases()


@pytest.mark.parametrize(
    ("make", "modes", "check"), [c[1:] for c in ARRAY_CASES], ids=[c[0] for c in ARRAY_CASES]
)
def test_numpy_arrays_round_trip(
    make: Callable[[], Any], modes: set[str], check: Callable[[Image.Image], None]
) -> None:
    arr = make()
    before = arr.copy()
    assert is_image_like(arr)
    out = decode(one(arr))
    assert (arr == before).all() or _np().isnan(before).any()
    assert out.size == (arr.shape[1], arr.shape[0])
    assert out.mode in modes
    check(out)


def test_float_photo_array_is_sent_as_jpeg() -> None:
    arr = _np().asarray(photo()).astype("float32") / 255.0
    assert uri_format(one(arr)) == "jpeg"


# --------------------------------------------------------------------------- matplotlib, _repr_png_


@pytest.fixture
def red_figure() -> Any:
    numpy = _np()
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2), dpi=50)
    ax = fig.add_axes((0.1, 0.1, 0.8, 0.8))
    ax.imshow(numpy.tile(numpy.array([1.0, 0.0, 0.0]), (10, 15, 1)))
    ax.set_title("red")
    return fig


def test_matplotlib_figure_is_drawn_tight_as_png(red_figure: Any) -> None:
    assert is_image_like(red_figure)
    reference = io.BytesIO()
    red_figure.savefig(reference, format="png", bbox_inches="tight")
    expected = Image.open(reference).size
    url = one(red_figure)
    assert uri_format(url) == "png"
    out = decode(url)
    assert out.size == expected
    assert close(rgba_at(out, (out.width // 2, out.height // 2)), (*RED, 255), tol=8)


def test_matplotlib_axes_gets_a_hint(red_figure: Any) -> None:
    ax = red_figure.axes[0]
    assert not is_image_like(ax)
    with pytest.raises(ImageInputError) as info:
        one(ax, label="--image ax")
    assert (
        str(info.value)
        == "--image ax: an Axes is not an image; pass its .figure (the matplotlib Figure) instead"
    )


class _HasPng:
    def __init__(self, data: Any) -> None:
        self.data = data

    def _repr_png_(self) -> Any:
        return self.data


class _HasJpeg:
    def _repr_jpeg_(self) -> bytes:
        return encoded(photo(), "JPEG", quality=80)


def test_repr_png_and_repr_jpeg_objects() -> None:
    png = encoded(chart(), "PNG")
    assert is_image_like(_HasPng(png))
    assert payload(one(_HasPng(png))) == png
    assert payload(one(_HasPng((png, {"width": 10})))) == png
    assert uri_format(one(_HasJpeg())) == "jpeg"
    assert not is_image_like(_HasPng)  # the class itself is not an image


# --------------------------------------------------------------------------- bytes, paths, URLs


def test_bytes_in_a_sendable_format_pass_through_unchanged() -> None:
    for data in (
        encoded(chart(), "PNG"),
        encoded(photo(), "JPEG", quality=85),
        encoded(chart(), "GIF"),
    ):
        assert is_image_like(data)
        for kind in (bytes, bytearray, memoryview):
            assert payload(one(kind(data))) == data


@pytest.mark.skipif(not features.check("webp"), reason="Pillow without WebP")
def test_webp_bytes_pass_through() -> None:
    data = encoded(photo(), "WEBP")
    url = one(data)
    assert uri_format(url) == "webp"
    assert payload(url) == data


@pytest.mark.parametrize(("fmt", "expected"), [("BMP", "png"), ("TIFF", "png"), ("PPM", "png")])
def test_other_formats_are_re_encoded(fmt: str, expected: str) -> None:
    url = one(encoded(chart(), fmt))
    assert uri_format(url) == expected
    _red_and_white(decode(url))


def test_heavy_lossless_photo_bytes_are_re_encoded_as_jpeg() -> None:
    data = encoded(photo((400, 300)), "PNG")
    url = one(data)
    assert uri_format(url) == "jpeg"
    assert len(payload(url)) < len(data) / 2


def test_big_jpeg_bytes_are_decoded_at_reduced_scale_and_bounded() -> None:
    img = photo((4400, 3000))
    out = decode(one(encoded(img, "JPEG", quality=90)))
    assert out.size == (2048, 1396)
    _red_photo(out)


def test_animated_gif_bytes_send_the_first_frame() -> None:
    frames = [chart(), chart().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    url = one(data)
    assert payload(url) != data
    _red_and_white(decode(url))


def test_paths_as_str_and_path(tmp_path: Path) -> None:
    path = tmp_path / "chart.png"
    chart().save(path)
    assert is_image_like(path)
    assert not is_image_like(str(path))  # a str is text unless it is a URL
    assert payload(one(path)) == path.read_bytes()
    assert payload(one(str(path))) == path.read_bytes()


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/cat.png",
        "http://127.0.0.1:8000/a/b.jpg?size=large#x",
        "HTTPS://EXAMPLE.COM/X",
    ],
)
def test_http_urls_pass_through(url: str) -> None:
    assert is_image_like(url)
    assert to_image_urls(url) == [url]


def test_data_uri_in_a_sendable_format_passes_through() -> None:
    data = encoded(chart(), "PNG")
    url = data_uri(data)
    assert one(url) == url


def test_data_uri_is_validated_and_normalised() -> None:
    data = encoded(chart(), "PNG")
    b64 = data_uri(data).split(",", 1)[1]
    wrapped = "data:image/jpeg;base64," + "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76))
    url = one(wrapped)
    assert url == data_uri(data, "image/png")  # the real format, no newlines


def test_data_uri_is_re_encoded_when_it_must_shrink_or_its_format_is_not_sendable() -> None:
    big = one(data_uri(encoded(chart((1200, 300)), "PNG")), max_side=600)
    assert decode(big).size == (600, 150)
    bmp = one(data_uri(encoded(chart(), "BMP"), "image/bmp"))
    assert uri_format(bmp) == "png"
    _red_and_white(decode(bmp))
    low = one(data_uri(encoded(chart((1200, 300)), "PNG")), detail="low")
    assert decode(low).size == (512, 128)


def test_lists_and_tuples_are_flattened_in_order() -> None:
    urls = to_image_urls([chart(), (photo(), "https://x.org/a.png"), [encoded(chart(), "PNG")]])
    assert [uri_format(u) if u.startswith("data:") else u for u in urls] == [
        "png",
        "jpeg",
        "https://x.org/a.png",
        "png",
    ]


def test_every_data_uri_matches_the_schema_pattern() -> None:
    sources: list[Any] = [
        chart(),
        photo(),
        with_alpha(chart()),
        encoded(chart(), "BMP"),
        chart().convert("F"),
    ]
    for url in to_image_urls(sources):
        assert DATA_URI.match(url)
        assert "\n" not in url


# --------------------------------------------------------------------------- is_image_like


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ("hello", False),
        ("cat.png", False),
        ("https://example.com/a.png", True),
        ("data:image/png;base64,iVBORw0KGgo=", True),
        ("data:text/plain;base64,aGk=", False),
        ("ftp://example.com/a.png", False),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 8, True),
        (b"\xff\xd8\xff\xe0", True),
        (b"GIF89a....", True),
        (b"RIFF\0\0\0\0WEBPVP8 ", True),
        (b"BM tax report", False),
        (b"hello world", False),
        (b"", False),
        ([], False),
        ([chart(), "hello"], False),
        (None, False),
        (42, False),
        ({"a": 1}, False),
    ],
)
def test_is_image_like(obj: Any, expected: bool) -> None:
    assert is_image_like(obj) is expected


def test_is_image_like_for_images_and_lists(tmp_path: Path) -> None:
    numpy = _np()
    assert is_image_like(chart())
    assert is_image_like([chart(), (photo(), "https://x.org/a.png")])
    assert is_image_like(numpy.zeros((4, 5, 3), dtype=numpy.uint8))
    assert not is_image_like(numpy.zeros((4, 5, 2), dtype=numpy.uint8))
    assert not is_image_like(numpy.zeros((4,)))
    assert not is_image_like(numpy.zeros((4, 5), dtype=complex))
    assert not is_image_like(tmp_path / "missing.png")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert not is_image_like(text)


# --------------------------------------------------------------------------- errors


def _lazy(data: bytes) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data))


def _closed_image() -> Image.Image:
    img = Image.open(io.BytesIO(encoded(chart(), "PNG")))
    img.load()
    img.close()
    return img


def _truncated_png() -> bytes:
    return encoded(photo(), "PNG")[:2000]


ERROR_CASES: list[tuple[str, Callable[[], Any], str]] = [
    ("str", lambda: "x", "a str is not an image; " + re.escape(HINT)),
    ("None", lambda: None, "None is not an image; " + re.escape(HINT)),
    ("int", lambda: 42, "an int is not an image; " + re.escape(HINT)),
    (
        "set",
        lambda: {1},
        r"a set is not an image; pass a list of images \(in the order they should be sent\)",
    ),
    (
        "garbage bytes",
        lambda: b"hello world, not an image",
        r"the bytes are not a readable image \(cannot identify image file\); check the file",
    ),
    (
        "SVG",
        lambda: b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        r"the bytes are not a readable image \(cannot identify image file\); "
        r"SVG is not a raster image: render it to PNG first \(e\.g\. with cairosvg\)",
    ),
    (
        "PDF",
        lambda: b"%PDF-1.7\n...",
        r"the bytes are not a readable image \(cannot identify image file\); "
        r"a PDF is not an image: render a page to PNG first",
    ),
    (
        "HTML error page",
        lambda: b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>",
        r"the bytes are not a readable image \(cannot identify image file\); "
        r"this is an HTML page \(an error page\?\), not an image: check where it came from",
    ),
    (
        "closed image",
        _closed_image,
        r"the image could not be read or encoded \(Operation on closed image\); "
        r"check that img\.load\(\) works",
    ),
    (
        "empty bytes",
        lambda: b"",
        r"the bytes are empty; pass the bytes of an encoded image \(PNG, JPEG \.\.\.\)",
    ),
    (
        "truncated",
        _truncated_png,
        r"the bytes are not a readable image \(.+\); check the file",
    ),
    (
        "bomb",
        lambda: png_header_only(50_000, 50_000),
        r"50000x50000 is 2500 megapixels, above the 100 megapixel limit; "
        r"downscale it first \(img\.thumbnail\(\(2048, 2048\)\)\)",
    ),
    (
        "just above the limit",
        lambda: png_header_only(10_001, 10_000),
        r"10001x10000 is 100\.01 megapixels, above the 100 megapixel limit; downscale it first .+",
    ),
    (
        "lazy bomb image",
        lambda: _lazy(png_header_only(12_000, 9_000)),
        r"12000x9000 is 108 megapixels, above the 100 megapixel limit; downscale it first .+",
    ),
    (
        "missing file",
        lambda: "nope/missing.png",
        r"no such file 'nope/missing\.png'; check the path \(relative paths start at .+\)",
    ),
    (
        "missing Path",
        lambda: Path("missing.png"),
        r"no such file 'missing\.png'; check the path \(.+\)",
    ),
    (
        "folder",
        lambda: Path(__file__).parent,
        r"'.+' is a folder, not an image file; pass the path of an image file",
    ),
    ("empty list", lambda: [], r"the list is empty; pass at least one image"),
    ("empty tuple", lambda: (), r"the tuple is empty; pass at least one image"),
    (
        "ftp",
        lambda: "ftp://example.com/a.png",
        r"ftp: URLs cannot be sent, only http\(s\) and data: URLs; download it and pass the bytes "
        r"or the path",
    ),
    (
        "file URL",
        lambda: "file:///tmp/a.png",
        r"file: URLs cannot be sent, only http\(s\) and data: URLs; pass the file's path instead",
    ),
    (
        "URL with spaces",
        lambda: "https://example.com/a cat.png",
        r"the URL 'https://example\.com/a cat\.png' contains spaces; write them as %20",
    ),
    ("URL without host", lambda: "http://", r"the URL 'http://' has no host; check it"),
    (
        "data: not an image",
        lambda: "data:text/plain;base64,aGVsbG8=",
        r"the data: URI holds text/plain, not an image; pass a data:image/\.\.\.;base64,\.\.\. URI",
    ),
    (
        "data: not base64",
        lambda: "data:image/svg+xml,<svg/>",
        r"the data: URI is not base64-encoded; encode the image as "
        r"data:image/svg\+xml;base64,\.\.\.",
    ),
    (
        "data: invalid base64",
        lambda: "data:image/png;base64,iVBO*RW0KGgo",
        r"the data: URI holds invalid base64 \(.+\); check that it was not cut or altered",
    ),
    (
        "data: empty",
        lambda: "data:image/png;base64,",
        r"the data: URI holds no data; check where it came from",
    ),
    (
        "data: no comma",
        lambda: "data:image/png;base64",
        r"malformed data: URI \(no comma before the data\); .+",
    ),
    (
        "data: not an image",
        lambda: "data:image/png;base64,aGVsbG8gd29ybGQ=",
        r"the data: URI is not a readable image \(cannot identify image file\); check the file",
    ),
    (
        "array shape",
        lambda: _np().zeros((10, 10, 2)),
        r"a numpy array of shape \(10, 10, 2\) is not an image; pass HxW, HxWx1, HxWx3 or HxWx4",
    ),
    (
        "channel-first",
        lambda: _np().zeros((3, 10, 10)),
        r"a numpy array of shape \(3, 10, 10\) is not an image; it looks channel-first: pass "
        r"arr\.transpose\(1, 2, 0\)",
    ),
    (
        "batch",
        lambda: _np().zeros((2, 10, 10, 3)),
        r"a numpy array of shape \(2, 10, 10, 3\) is not an image; for a batch pass list\(arr\); "
        r".+",
    ),
    (
        "empty array",
        lambda: _np().zeros((0, 10)),
        r"the array is empty \(shape \(0, 10\)\); pass an image with at least one pixel",
    ),
    (
        "complex dtype",
        lambda: _np().zeros((4, 4), dtype=complex),
        r"a numpy array of dtype complex128 is not an image; use uint8, uint16, bool or floats in "
        r"\[0, 1\]",
    ),
    (
        "object dtype",
        lambda: _np().full((4, 4), None, dtype=object),
        r"a numpy array of dtype object is not an image; .+",
    ),
    (
        "NaN only",
        lambda: _np().full((4, 4), _np().nan),
        r"the array holds only NaN values; nothing to draw, check the data",
    ),
    (
        "int colour out of range",
        lambda: _np().full((4, 4, 3), 300, dtype="int32"),
        r"int32 colour values range 300\.\.300, outside 0\.\.255; convert with "
        r"arr\.astype\(np\.uint8\) or scale to floats in \[0, 1\]",
    ),
    (
        "repr_png gives None",
        lambda: _HasPng(None),
        r"_HasPng\._repr_png_\(\) gave no image data; pass a PIL image instead",
    ),
    (
        "broken lazy image",
        lambda: Image.open(io.BytesIO(_truncated_png())),
        r"the image could not be read or encoded \(.+\); check that img\.load\(\) works",
    ),
]


@pytest.mark.parametrize(
    ("make", "pattern"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_errors_are_one_clear_line(make: Callable[[], Any], pattern: str) -> None:
    obj = make()
    with pytest.raises(ImageInputError) as info:
        to_image_urls(obj, label="--image x")
    message = str(info.value)
    assert "\n" not in message and len(message) <= 300
    assert message.startswith("--image x")
    assert "; " in message  # what went wrong; what to do
    assert re.fullmatch(re.escape("--image x: ") + pattern, message), message


def test_list_items_are_labelled_by_position() -> None:
    with pytest.raises(ImageInputError) as info:
        to_image_urls([chart(), [photo(), "nope"]], label="--image x")
    assert str(info.value) == f"--image x[1][1]: a str is not an image; {HINT}"


def test_bomb_check_happens_before_decoding() -> None:
    # 30000 x 30000 RGB would need 2.7 GB: refused from the header alone
    with pytest.raises(ImageInputError, match=r"30000x30000 is 900 megapixels"):
        decode_image_bytes(png_header_only(30_000, 30_000), label="returned image")
    with pytest.raises(
        ImageInputError,
        match=r"^returned image: 3000x3000 is 9 megapixels, above the 4 megapixel limit",
    ):
        decode_image_bytes(
            png_header_only(3000, 3000), max_pixels=4_000_000, label="returned image"
        )


def test_default_pixel_limit() -> None:
    assert MAX_INPUT_PIXELS == 100_000_000


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"max_side": -1}, r"max_side must be a whole number >= 0 \(0 = never downscale\), got -1"),
        ({"max_side": 1.5}, r"max_side must be .+, got 1\.5"),
        ({"detail": "medium"}, r"detail must be 'auto', 'low' or 'high', got 'medium'"),
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        to_image_urls(chart(), **kwargs)


def test_decoders_raise_one_line_errors_with_their_label() -> None:
    with pytest.raises(
        ImageInputError,
        match=r"^returned image: the bytes are not a readable image \(cannot identify image "
        r"file\); check the file$",
    ):
        decode_image_bytes(b"502 Bad Gateway", label="returned image")
    with pytest.raises(ImageInputError, match=r"^returned image: .+; this is an HTML page"):
        decode_image_bytes(b"<html>502 Bad Gateway</html>", label="returned image")
    with pytest.raises(
        ImageInputError, match=r"^returned image: the data: URI holds text/html, not an image; .+"
    ):
        decode_data_uri("data:text/html;base64,PGI+", label="returned image")


# ------------------------------------------------------------------ decoding, digest, display


def test_decode_data_uri_round_trip() -> None:
    img = decode_data_uri(one(with_alpha(chart())))
    assert img.size == (90, 60)
    _right_transparent(img)


def test_image_digest() -> None:
    url = one(chart())
    digest = image_digest(url)
    assert re.fullmatch(r"data:image/png;sha256:[0-9a-f]{12},90x60,\d+ bytes", digest)
    assert digest == image_digest(url)
    assert str(len(payload(url))) in digest
    assert image_digest("https://example.com/a.png") == "https://example.com/a.png"
    assert (
        image_digest("https://example.com/" + "a" * 500)
        == ("https://example.com/" + "a" * 500)[:200]
    )
    assert image_digest("data:image/png;base64,!!!").startswith("data:image/png;sha256:")
    assert image_digest("data:image/png;base64,aGVsbG8=").startswith("data:image/png;sha256:")


@pytest.mark.parametrize(
    ("make", "mime"),
    [
        (photo, "image/jpeg"),
        (chart, "image/png"),
        (lambda: with_alpha(photo()), "image/png"),
        (lambda: photo().convert("RGBA"), "image/jpeg"),
        (lambda: chart().quantize(8), "image/png"),
        (_one_bit, "image/png"),
        (lambda: photo().convert("L"), "image/jpeg"),
        (lambda: photo().convert("CMYK"), "image/jpeg"),
        (lambda: _int_image("I;16", 65535), "image/png"),
        (lambda: _float_image(1.0, 0.5, 0.0), "image/png"),
    ],
)
def test_mime_of_pil_and_pil_to_bytes(make: Callable[[], Image.Image], mime: str) -> None:
    img = make()
    before = snapshot(img)
    assert mime_of_pil(img) == mime
    for kind in ("image/png", "image/jpeg"):
        out = Image.open(io.BytesIO(pil_to_bytes(img, kind)))
        assert out.format == kind.split("/")[1].upper()
        assert out.size == img.size
    assert snapshot(img) == before


def test_pil_to_bytes_jpeg_composites_transparency_onto_white() -> None:
    out = Image.open(io.BytesIO(pil_to_bytes(with_alpha(chart()), "image/jpeg"))).convert("RGB")
    assert close(out.getpixel(RIGHT_AT), WHITE)  # type: ignore[arg-type]
    assert close(out.getpixel((45, 30)), (127, 207, 127))  # type: ignore[arg-type]  # half green over white
    assert close(out.getpixel(RED_AT), RED)  # type: ignore[arg-type]


def test_pil_to_bytes_png_is_lossless_and_keeps_alpha() -> None:
    img = with_alpha(chart())
    out = Image.open(io.BytesIO(pil_to_bytes(img, "image/png")))
    assert out.convert("RGBA").tobytes() == img.tobytes()
    with pytest.raises(ValueError, match="unsupported mime"):
        pil_to_bytes(img, "image/bmp")


def test_pil_to_bytes_applies_exif_orientation() -> None:
    img = Image.open(io.BytesIO(exif_jpeg(6)))
    out = Image.open(io.BytesIO(pil_to_bytes(img, "image/png")))
    _top_red_bottom_blue(out)


# --------------------------------------------------------------------------- imports


def test_images_module_does_not_import_numpy_matplotlib_or_front_end_libraries() -> None:
    code = (
        "import sys\n"
        "import jupyter_chatimg._images as m\n"
        "from PIL import Image\n"
        "before = set(sys.modules)\n"
        "import jupyter_chatimg._image_inputs as inputs\n"
        "img = Image.new('RGB', (30, 20), 'red')\n"
        "inputs.to_image_urls([img, img.convert('RGBA'), b'\\x89PNG\\r\\n\\x1a\\n'[:0] or img], "
        "max_side=16)\n"
        "inputs.is_image_like(img); m.mime_of_pil(img); m.pil_to_bytes(img, 'image/png')\n"
        "new = set(sys.modules) - before\n"
        "bad = sorted(n for n in new if n.split('.')[0] in ('numpy', 'matplotlib', 'IPython', "
        "'ipywidgets', 'httpx'))\n"
        "print(bad)\n"
        "src = open(m.__file__).read()\n"
        "assert 'import httpx' not in src and 'import IPython' not in src and 'ipywidgets' not in "
        "src\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


# -- issue 15: inputs that crashed or hung the kernel, or vanished ----------------------


def test_devices_fifos_and_folders_are_refused_before_reading(tmp_path: Path) -> None:
    # Issue 15 (1): /dev/zero reported size 0 and was read until the kernel ran out of
    # memory; a FIFO blocked for ever. Nothing that is not a regular file is opened.
    import os
    import threading

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)

    def refuse(path: Any, outcome: list[str]) -> None:
        try:
            to_image_urls(path)
        except ImageInputError as exc:
            outcome.append(str(exc))

    for path in (Path("/dev/zero"), fifo, str(fifo)):
        outcome: list[str] = []
        worker = threading.Thread(target=refuse, args=(path, outcome), daemon=True)
        worker.start()
        worker.join(5)
        assert not worker.is_alive(), f"{path} blocked"
        assert "is not a regular file (a device, a pipe or a socket)" in outcome[0]
    assert not is_image_like(Path("/dev/zero")) and not is_image_like(fifo)


def test_endless_and_self_containing_image_collections_are_refused(
    clean_env: pytest.MonkeyPatch,
) -> None:
    # Issue 15 (1, 7): an endless iterable grew to 7.9 GB; a list containing itself
    # gave a RecursionError with 18 frames.
    import itertools

    import jupyter_chatimg as ci

    red = Image.new("RGB", (4, 4), "red")
    with pytest.raises(ci.ConfigError, match=r"images: more than 1000 items \(an endless"):
        ci.chat("hi", images=(red for _ in itertools.count()), display=False)
    loop: list[Any] = [red]
    loop.append(loop)
    with pytest.raises(ImageInputError, match=r"contains itself"):
        ci.chat("hi", images=loop, display=False)
    assert not is_image_like(loop)


def test_paths_urls_and_data_uris_in_images_are_always_images(
    clean_env: pytest.MonkeyPatch,
) -> None:
    # Issue 15 (6): chat("p", images=["/nonexistent.png"]) sent "p/nonexistent.png" as text.
    import jupyter_chatimg as ci

    with pytest.raises(ImageInputError, match=r"no such file '/nonexistent\.png'") as info:
        ci.chat("p", images=["/nonexistent.png"], display=False)
    assert info.value.partial is not None and info.value.partial.request is None  # not sent
    with pytest.raises(ImageInputError, match=r"a str is not an image"):
        ci.chat("p", images="just some words", display=False)
