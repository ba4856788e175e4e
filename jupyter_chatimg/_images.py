"""Encoding and decoding images, with limits: PIL -> ``data:`` URI, and back.

What users pass is turned into PIL images or encoded bytes by ``_image_inputs``;
what goes to the model from there (``encode_pil`` and the helpers it shares
with ``_image_inputs``):

* the image is bounded first (long side <= ``max_side``, 512 for
  ``detail="low"``, never enlarged), then put into a mode PNG/JPEG can store;
* PNG when it has real transparency or looks like a graphic (few colours or
  large flat areas, measured on a small nearest-neighbour sample); a graphic
  with <= 256 colours becomes an exact palette PNG, one with more colours a
  palette PNG only when that changes no channel by more than a few levels;
* JPEG (quality 85) for photos; an opaque alpha band is composited onto white;
* modes PNG/JPEG cannot store are converted: CMYK, YCbCr, HSV, LAB -> RGB;
  I and I;16 -> L with their actual range (min..max) stretched to 0..255;
  F -> L with [0, 1] as black..white, or its actual range when outside it;
* numpy arrays: uint8 as is, bool as 0/255, uint16 grey by its actual range
  and uint16 colour by its full 0..65535 range, other integers when within
  0..255 (else grey by its range), floats as [0, 1] with values outside
  clipped and NaN as 0;
* the caller's object is never changed (Pillow's ``thumbnail``, ``draft`` and
  ``save`` all act on the image they are called on: we only call them on our
  own copies);
* encoded input (bytes, files, ``data:`` URIs) already in a format every
  endpoint accepts and within the bound is sent as it is, after a full decode
  proves it readable.

Coming back (``decode_image_bytes`` / ``decode_data_uri``): the declared size is
checked before any pixel is decoded, then the image is loaded and turned
upright. ``mime_of_pil`` / ``pil_to_bytes`` choose and write the display format.

Every failure is an ``ImageInputError`` whose text is one line:
``<label>: <what is wrong>; <what to do>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
import re
import warnings
from typing import Any

from PIL import ExifTags, Image, ImageChops, ImageOps, UnidentifiedImageError

from ._errors import ConfigError, ImageInputError, one_line

__all__ = [
    "DEFAULT_MAX_SIDE",
    "LOW_DETAIL_SIDE",
    "MAX_INPUT_BYTES",
    "MAX_INPUT_PIXELS",
    "decode_data_uri",
    "decode_image_bytes",
    "encode_pil",
    "image_digest",
    "mime_of_pil",
    "pil_to_bytes",
]

DEFAULT_MAX_SIDE = 2048
LOW_DETAIL_SIDE = 512
MAX_INPUT_PIXELS = 100_000_000
MAX_INPUT_BYTES = 256 * 1024 * 1024
"""Encoded input (bytes, files, data: URIs) larger than this is refused unread."""

JPEG_QUALITY = 85
DISPLAY_JPEG_QUALITY = 90
PALETTE_TOLERANCE = 12
"""Largest per-channel change (of 255) accepted when a many-colour graphic is put on a palette."""

_HINT_KINDS = "pass a PIL image, a numpy array, a Figure, bytes, a path or an http(s)/data: URL"
_HINT_SHRINK = "downscale it first (img.thumbnail((2048, 2048)))"
_DETAILS = ("auto", "low", "high")
_SENDABLE = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "GIF": "gif"}
_PLAIN_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA"})
# modes whose resampling means what it should; the others are converted first
_RESIZE_NATIVE = frozenset({"L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"})
_SAMPLE_SIDE = 128
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SPACE = re.compile(r"\s+")
_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+):")
_FOREIGN_SCHEMES = frozenset(
    {"file", "ftp", "ftps", "sftp", "javascript", "vbscript", "blob", "about"}
)
_IMAGE_SUFFIX = re.compile(
    r"\.(png|jpe?g|gif|webp|bmp|tiff?|ico|avif|heic|heif|ppm|pgm|pbm|qoi|tga|jp2|psd)$", re.I
)


# --------------------------------------------------------------------------- public API


def encode_pil(
    img: Image.Image, *, max_side: int = DEFAULT_MAX_SIDE, detail: str | None = None
) -> str:
    """One PIL image -> ``data:`` URI (PNG or JPEG, bounded; ``img`` is left untouched)."""
    mime, data = _encode(img, _bound(max_side, detail), "image")
    return _data_uri(mime, data)


def decode_image_bytes(
    data: bytes, *, max_pixels: int = MAX_INPUT_PIXELS, label: str = "image"
) -> Image.Image:
    """Encoded image bytes -> a fully loaded PIL image, turned upright by its EXIF orientation.

    The declared size is checked against ``max_pixels`` before decoding.
    """
    raw = _as_bytes(data, label)
    img = _open(raw, label, "the bytes are", max_pixels)
    _load(img, label, "the bytes are")
    return _upright_in_place(img)


def decode_data_uri(
    url: str, *, max_pixels: int = MAX_INPUT_PIXELS, label: str = "image"
) -> Image.Image:
    """A ``data:image/...;base64,...`` URI -> a fully loaded, upright PIL image."""
    raw = _data_uri_bytes(url, label)
    img = _open(raw, label, "the data: URI is", max_pixels)
    _load(img, label, "the data: URI is")
    return _upright_in_place(img)


def image_digest(url: str) -> str:
    """A short stable description of an image URL for logs and provenance (never raises).

    ``data:image/png;sha256:<12 hex>,<W>x<H>,<N> bytes`` for data URIs (no
    payload), the URL itself cut to 200 characters otherwise.
    """
    text = str(url)
    if text[:5].lower() != "data:":
        return text[:200]
    head, _, payload = text.partition(",")
    mime = head[5:].split(";", 1)[0].strip().lower() or "text/plain"
    try:
        raw = base64.b64decode(re.sub(r"\s+", "", payload), validate=False)
    except (binascii.Error, ValueError):
        digest = hashlib.sha256(payload.encode("utf-8", "replace")).hexdigest()[:12]
        return f"data:{mime};sha256:{digest},invalid base64,{len(payload)} chars"
    digest = hashlib.sha256(raw).hexdigest()[:12]
    size = "?x?"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(raw), formats=_open_formats()) as img:
                size = f"{img.width}x{img.height}"
    except Exception:  # a digest is for logs: any unreadable payload just has no size
        pass
    return f"data:{mime};sha256:{digest},{size},{len(raw)} bytes"


def mime_of_pil(img: Image.Image) -> str:
    """The format for *displaying* ``img``: PNG for transparency or few colours, else JPEG."""
    if img.mode in ("1", "P", "PA") or "transparency" in img.info:
        return "image/png"
    if img.mode in ("LA", "RGBA", "La", "RGBa") and _alpha_min(img) < 255:
        return "image/png"
    sample = img
    if img.width > _SAMPLE_SIDE or img.height > _SAMPLE_SIDE:
        sample = img.resize(_fit(img.size, _SAMPLE_SIDE), Image.Resampling.NEAREST)
    sample = _normalize(sample, "image")
    if sample.mode in ("LA", "RGBA"):
        sample = sample.convert(sample.mode[:-1])  # opaque: the alpha band says nothing
    return "image/png" if _looks_graphic(sample) else "image/jpeg"


def pil_to_bytes(img: Image.Image, mime: str) -> bytes:
    """Encode ``img`` at full size for display: ``image/jpeg`` (quality 90) or ``image/png``."""
    kind = mime.lower().removeprefix("image/")
    if kind not in ("png", "jpeg", "jpg"):
        raise ValueError(
            f"pil_to_bytes: unsupported mime {mime!r}; use 'image/png' or 'image/jpeg'"
        )
    method = _transpose_method(img)
    if kind == "png" and img.mode in ("1", "P"):
        work = img.copy() if method is None else img.transpose(method)
        return _save_png(work, optimize=False)
    work = _normalize(img, "image")
    if method is not None:
        work = work.transpose(method)
    elif work is img:
        work = img.copy()
    if kind == "png":
        return _save_png(work, optimize=False)
    if work.mode in ("LA", "RGBA"):
        work = _flatten(work)
    return _save_jpeg(work, quality=DISPLAY_JPEG_QUALITY, graphic=False)


# --------------------------------------------------------------------------- dispatch


def _bound(max_side: int, detail: str | None) -> int | None:
    """The long-side bound for ``max_side`` / ``detail`` (None: no bound)."""
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 0:
        raise ConfigError(
            f"max_side must be a whole number >= 0 (0 = never downscale), got {max_side!r}"
        )
    if detail is not None and (not isinstance(detail, str) or detail.lower() not in _DETAILS):
        raise ConfigError(f"detail must be 'auto', 'low' or 'high', got {detail!r}")
    bound = max_side or None
    if detail is not None and detail.lower() == "low":
        bound = min(bound or LOW_DETAIL_SIDE, LOW_DETAIL_SIDE)
    return bound


def _as_bytes(data: object, label: str) -> bytes:
    raw = bytes(data) if isinstance(data, (bytearray, memoryview)) else data
    if not isinstance(raw, bytes):
        kind = type(data).__name__
        raise ImageInputError(f"{label}: a {kind} is not encoded image bytes; {_HINT_KINDS}")
    if not raw:
        raise ImageInputError(
            f"{label}: the bytes are empty; pass the bytes of an encoded image (PNG, JPEG ...)"
        )
    if len(raw) > MAX_INPUT_BYTES:
        raise ImageInputError(
            f"{label}: the bytes are {len(raw) / 1e6:.0f} MB, above the "
            f"{MAX_INPUT_BYTES / 1e6:.0f} MB limit; {_HINT_SHRINK}"
        )
    return raw


# --------------------------------------------------------------------------- encoded input


def _data_uri_to_url(url: str, bound: int | None, label: str) -> str:
    raw = _data_uri_bytes(url, label)
    # re-encoded only when it must shrink or its format is not one every endpoint takes
    return _encoded_to_url(raw, bound, label, "the data: URI is", passthrough="always")


def _data_uri_bytes(url: str, label: str) -> bytes:
    # A returned image can be tens of MB of base64: one copy of the payload, no more.
    text = url.strip() if isinstance(url, str) else ""
    if text[:5].lower() != "data:":
        raise ImageInputError(f"{label}: not a data: URI; pass data:image/png;base64,...")
    comma = text.find(",")
    if comma < 0:
        raise ImageInputError(
            f"{label}: malformed data: URI (no comma before the data); "
            "pass data:image/png;base64,..."
        )
    params = [p.strip().lower() for p in text[5:comma].split(";")]
    mime = params[0] or "text/plain"
    if not mime.startswith("image/"):
        raise ImageInputError(
            f"{label}: the data: URI holds {mime}, not an image; "
            "pass a data:image/...;base64,... URI"
        )
    if "base64" not in params[1:]:
        raise ImageInputError(
            f"{label}: the data: URI is not base64-encoded; "
            f"encode the image as data:{mime};base64,..."
        )
    clean = text[comma + 1 :]
    del text
    if _SPACE.search(clean):
        clean = _SPACE.sub("", clean)
    if not clean:
        raise ImageInputError(f"{label}: the data: URI holds no data; check where it came from")
    if len(clean) > MAX_INPUT_BYTES * 4 // 3 + 4:
        raise ImageInputError(
            f"{label}: the data: URI is {len(clean) / 1e6:.0f} MB, above the "
            f"{MAX_INPUT_BYTES / 1e6:.0f} MB limit; {_HINT_SHRINK}"
        )
    if ("-" in clean or "_" in clean) and not ("+" in clean or "/" in clean):
        clean = clean.replace("-", "+").replace("_", "/")
    clean += "=" * (-len(clean.rstrip("=")) % 4) if "=" not in clean else ""
    try:
        # a2b_base64 reads an ASCII str in place (b64decode would copy it to bytes first)
        return binascii.a2b_base64(clean, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageInputError(
            f"{label}: the data: URI holds invalid base64 ({_reason(exc)}); "
            "check that it was not cut or altered"
        ) from None


def _encoded_to_url(
    data: bytes, bound: int | None, label: str, what: str, passthrough: str = "checked"
) -> str:
    """Encoded image bytes -> URL: sent as they are when possible, else decoded and re-encoded.

    ``passthrough="always"`` (data: URIs): only a format endpoints may not take,
    or a size above the bound, forces re-encoding. ``"checked"`` (bytes, files):
    also a rotation to apply, an animation, an unusual mode or a heavy file
    (more than 4 bits per pixel, i.e. a photo stored losslessly). ``"never"``:
    always decoded and re-encoded.
    """
    img = _open(data, label, what, MAX_INPUT_PIXELS)
    fmt = _SENDABLE.get(img.format or "")
    if fmt is not None and passthrough != "never" and _fit(img.size, bound) == img.size:
        keep = passthrough == "always" or (
            img.mode in _PLAIN_MODES
            and getattr(img, "n_frames", 1) == 1
            and _transpose_method(img) is None
            and (len(data) <= 65536 or len(data) * 8 <= 4 * img.width * img.height)
        )
        if keep:
            _load(img, label, what)
            return _data_uri(f"image/{fmt}", data)
    target = _fit(img.size, bound)
    if img.format == "JPEG" and target != img.size:
        # our own object: libjpeg may decode at 1/2, 1/4 or 1/8 scale if that covers the target
        img.draft(None, target)
    _load(img, label, what)
    return _data_uri(*_encode(img, bound, label))


def _open_formats() -> list[str]:
    """Every format Pillow reads except EPS (which runs Ghostscript on the data)."""
    Image.init()
    return [f for f in Image.ID if f != "EPS"]


def _open(data: bytes, label: str, what: str, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and refuse a declared size above ``max_pixels``."""
    img: Image.Image | None
    try:
        with warnings.catch_warnings():
            # Our own pixel limit decides; Pillow's warning would fire from 89 MP.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=_open_formats())
    except Image.DecompressionBombError:
        img = _open_unchecked(data)
        if img is None:
            raise ImageInputError(
                f"{label}: the image is larger than {_megapixels(max_pixels)} megapixels; "
                f"{_HINT_SHRINK}"
            ) from None
    except UnidentifiedImageError:
        raise ImageInputError(
            f"{label}: {what} not a readable image (cannot identify image file); {_todo(data)}"
        ) from None
    except Exception as exc:  # a broken header surfaces as any of a dozen exception types
        raise ImageInputError(
            f"{label}: {what} not a readable image ({_reason(exc)}); check the file"
        ) from None
    _check_pixels(img.size, label, max_pixels)
    return img


def _todo(data: bytes) -> str:
    """What to do with bytes Pillow cannot identify: say what they are when that is clear."""
    head = data[:256].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "SVG is not a raster image: render it to PNG first (e.g. with cairosvg)"
    if head.startswith(b"%pdf"):
        return "a PDF is not an image: render a page to PNG first"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc"):
        return "HEIC needs the pillow-heif plugin: pip install pillow-heif, or convert it to JPEG"
    if head.startswith((b"<!doctype html", b"<html")):
        return "this is an HTML page (an error page?), not an image: check where it came from"
    return "check the file"


def _open_unchecked(data: bytes) -> Image.Image | None:
    """Open through the format registry without Pillow's bomb check, to learn the declared size.

    ``Image.open`` refuses above 2 x ``Image.MAX_IMAGE_PIXELS`` before telling
    the size; our own limit (and message) must decide instead.
    """
    prefix = data[:16]
    for fmt in _open_formats():
        factory, accept = Image.OPEN.get(fmt, (None, None))
        if factory is None or (accept is not None and not accept(prefix)):
            continue
        try:
            opened: Image.Image = factory(io.BytesIO(data), "")
            return opened
        except Exception:  # not this format: try the next one, like Image.open does
            continue
    return None


def _load(img: Image.Image, label: str, what: str) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
    except ImageInputError:
        raise
    except Exception as exc:  # truncated or corrupt: OSError, SyntaxError, ValueError, zlib.error
        raise ImageInputError(
            f"{label}: {what} not a readable image ({_reason(exc)}); check the file"
        ) from None


def _upright_in_place(img: Image.Image) -> Image.Image:
    if _transpose_method(img) is not None:
        ImageOps.exif_transpose(img, in_place=True)
    return img


def _sniff(head: bytes) -> bool:
    """Whether ``head`` starts like an encoded image Pillow can read."""
    if head.startswith(
        (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*")
    ):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    if head[4:12] in (b"ftypavif", b"ftypavis") or head[:4] == b"qoif":
        return True
    if head[:4] == b"\x00\x00\x01\x00" and len(head) >= 6 and head[4:6] != b"\x00\x00":
        return True  # ICO
    if head[:2] == b"BM" and len(head) >= 18:
        return int.from_bytes(head[14:18], "little") in (12, 40, 52, 56, 64, 108, 124)
    return False


# --------------------------------------------------------------------------- other inputs


# --------------------------------------------------------------------------- encoding


def _encode(img: Image.Image, bound: int | None, label: str) -> tuple[str, bytes]:
    """Bound, orient, normalise and encode one image: (mime, bytes). ``img`` is never changed."""
    _check_pixels(img.size, label, MAX_INPUT_PIXELS)
    try:
        method = _transpose_method(img)
        target = _fit(img.size, bound)
        if target == img.size and img.mode in ("1", "P"):
            # palette and bilevel images are graphics: PNG keeps them exact (and their transparency)
            return "image/png", _save_png(
                img.copy() if method is None else img.transpose(method), optimize=True
            )
        work = img if img.mode in _RESIZE_NATIVE else _normalize(img, label)
        if target != work.size:
            work = work.resize(target, Image.Resampling.HAMMING, reducing_gap=3.0)
        work = _normalize(work, label)
        if method is not None:
            work = work.transpose(method)
        elif work is img:
            work = img.copy()  # Image.save leaves attributes on the image it is called on
        return _choose_and_save(work)
    except ImageInputError:
        raise
    except Exception as exc:  # a lazily opened image whose data is broken or whose file is gone
        raise ImageInputError(
            f"{label}: the image could not be read or encoded ({_reason(exc)}); "
            "check that img.load() works"
        ) from None


def _choose_and_save(work: Image.Image) -> tuple[str, bytes]:
    """``work`` is ours, in mode L, LA, RGB or RGBA, already bounded and upright."""
    if work.mode in ("LA", "RGBA"):
        if _alpha_min(work) < 255:
            return "image/png", _png_with_alpha(work)
        work = _flatten(work)
    if _looks_graphic(work):
        data = _png_graphic(work)
        if len(data) * 2 > work.width * work.height:
            # more than 4 bits per pixel: photo-like after all, unless JPEG does not help much
            jpeg = _save_jpeg(work, quality=JPEG_QUALITY, graphic=True)
            if 3 * len(jpeg) < len(data):
                return "image/jpeg", jpeg
        return "image/png", data
    return "image/jpeg", _save_jpeg(work, quality=JPEG_QUALITY, graphic=False)


def _png_graphic(work: Image.Image) -> bytes:
    if work.mode == "L":
        return _save_png(work, optimize=False)
    colours = work.getcolors(256)
    palette = _palette(work, len(colours), 0) if colours else _palette(work, 256, PALETTE_TOLERANCE)
    if palette is not None:
        return _save_png(palette, optimize=True)
    return _save_png(work, optimize=False)


def _png_with_alpha(work: Image.Image) -> bytes:
    if work.mode == "RGBA":
        colours = work.getcolors(256)
        if colours:
            rgb = work.convert("RGB")
            rgb_colours = rgb.getcolors(256) or []
            # a palette with tRNS is exact only when each colour has one alpha value
            if len(rgb_colours) == len(colours):
                palette = _palette(rgb, len(colours), 0)
                if palette is not None:
                    alpha = {tuple(c[:3]): c[3] for _, c in colours if isinstance(c, tuple)}
                    flat = palette.getpalette() or []
                    trns = bytes(
                        alpha.get(tuple(flat[i : i + 3]), 255) for i in range(0, len(flat), 3)
                    )
                    palette.info["transparency"] = trns
                    return _save_png(palette, optimize=True)
    return _save_png(work, optimize=False)


def _palette(rgb: Image.Image, colours: int, tolerance: int) -> Image.Image | None:
    """``rgb`` on a palette of ``colours`` entries; None if a channel moves by > ``tolerance``."""
    q = rgb.quantize(max(colours, 1), method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE)
    back = q.convert(rgb.mode)
    worst = max(hi for _, hi in _extrema(ImageChops.difference(back, rgb)))
    return q if worst <= tolerance else None


def _looks_graphic(img: Image.Image) -> bool:
    """Few colours or large flat areas (charts, screenshots, line art), on a small sample."""
    sample = img
    if img.width > _SAMPLE_SIDE or img.height > _SAMPLE_SIDE:
        sample = img.resize(_fit(img.size, _SAMPLE_SIDE), Image.Resampling.NEAREST)
    total = sample.width * sample.height
    colours = sample.getcolors(total) or []
    # a grey image never has more than 256 levels: only very few of them mean line art
    if len(colours) <= (16 if sample.mode == "L" else 256):
        return True
    counts = sorted((count for count, _ in colours), reverse=True)
    return sum(counts[:8]) * 2 >= total


def _normalize(img: Image.Image, label: str) -> Image.Image:
    """``img`` in one of L, LA, RGB, RGBA (the same object when it already is)."""
    mode = img.mode
    if mode in ("L", "RGB"):
        if "transparency" in img.info:
            return img.convert("LA" if mode == "L" else "RGBA")
        return img
    if mode in ("LA", "RGBA"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode in ("P", "PA"):
        palette_alpha = img.palette is not None and img.palette.mode == "RGBA"
        if mode == "PA" or "transparency" in img.info or palette_alpha:
            return img.convert("RGBA")
        return img.convert("RGB")
    if mode == "La":
        return img.convert("LA")
    if mode == "RGBa":
        return img.convert("RGBA")
    if mode == "I" or mode.startswith("I;16"):
        return _int_to_l(img)
    if mode == "F":
        return _float_to_l(img)
    try:
        return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX ...
    except (ValueError, OSError) as exc:
        raise ImageInputError(
            f"{label}: PIL mode {mode} cannot be converted to RGB ({_reason(exc)}); "
            "convert it first"
        ) from None


def _int_to_l(img: Image.Image) -> Image.Image:
    """16/32-bit grey -> 8-bit, its actual range (min..max) stretched to 0..255."""
    as_i = img if img.mode == "I" else img.convert("I")
    lo, hi = _extrema(as_i)[0]
    return _scale_to_l(as_i.convert("F"), float(lo), float(hi))


def _float_to_l(img: Image.Image) -> Image.Image:
    """32-bit float grey -> 8-bit: [0, 1] means black..white; any other range is stretched."""
    lo, hi = (float(v) for v in _extrema(img)[0])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if lo >= 0.0 and hi <= 1.0:
        lo, hi = 0.0, 1.0
    return _scale_to_l(img, lo, hi)


def _scale_to_l(img: Image.Image, lo: float, hi: float) -> Image.Image:
    if hi <= lo:
        return Image.new("L", img.size, int(min(max(lo, 0.0), 255.0)))
    scale = 255.0 / (hi - lo)
    offset = -lo * scale + 0.5
    scaled = img.point(lambda v: v * scale + offset)  # type: ignore[arg-type,operator,no-any-return]
    return scaled.convert("L")


def _flatten(img: Image.Image) -> Image.Image:
    """Composite LA/RGBA onto white -> L/RGB."""
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", img.size, (255, 255, 255, 255))
    out = Image.alpha_composite(white, rgba).convert("RGB")
    return out.convert("L") if img.mode == "LA" else out


def _alpha_min(img: Image.Image) -> int:
    band = "A" if "A" in img.getbands() else img.getbands()[-1]
    return int(_extrema(img.getchannel(band))[0][0])


def _extrema(img: Image.Image) -> list[tuple[Any, Any]]:
    ext = img.getextrema()
    if ext and not isinstance(ext[0], tuple):
        return [ext]  # type: ignore[list-item]
    return list(ext)  # type: ignore[arg-type]


def _save_png(img: Image.Image, *, optimize: bool) -> bytes:
    buf = io.BytesIO()
    # icc_profile=None: a profile copied along a mode conversion may no longer match the pixels
    img.save(buf, "PNG", optimize=optimize, icc_profile=None)
    return buf.getvalue()


def _save_jpeg(img: Image.Image, *, quality: int, graphic: bool) -> bytes:
    buf = io.BytesIO()
    # 4:4:4 for graphics keeps thin coloured lines and text from bleeding
    img.save(buf, "JPEG", quality=quality, optimize=True, subsampling=0 if graphic else 2)
    return buf.getvalue()


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


# --------------------------------------------------------------------------- small helpers


def _fit(size: tuple[int, int], bound: int | None) -> tuple[int, int]:
    """``size`` scaled so the long side is at most ``bound`` (never enlarged)."""
    w, h = size
    if bound is None or max(w, h) <= bound:
        return w, h
    if w >= h:
        return bound, max(1, round(h * bound / w))
    return max(1, round(w * bound / h)), bound


def _check_pixels(size: tuple[int, int], label: str, max_pixels: int) -> None:
    w, h = size
    if w * h > max_pixels:
        raise ImageInputError(
            f"{label}: {w}x{h} is {_megapixels(w * h)} megapixels, above the "
            f"{_megapixels(max_pixels)} megapixel limit; {_HINT_SHRINK}"
        )


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.2f}".rstrip("0").rstrip(".")


def _transpose_method(img: Image.Image) -> Image.Transpose | None:
    try:
        orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # malformed EXIF: treat as upright rather than refuse the image
        return None
    return _TRANSPOSE.get(orientation) if isinstance(orientation, int) else None


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message, without object reprs, for a one-line error."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = re.sub(r" <[^>]*>", "", text)
    return one_line(text, 120)
