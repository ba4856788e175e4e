"""Apply parsed ``Edit`` instructions to an image, in order, with Pillow.

Every edit keeps an alpha channel when the image has one, and returns RGB or
RGBA so the result can always be saved as PNG.
"""

from __future__ import annotations

from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from ._prompt import Edit

THUMBNAIL_SIDE = 128


def _split_alpha(img: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    if img.mode == "RGBA":
        return img.convert("RGB"), img.getchannel("A")
    return img, None


def _with_alpha(rgb: Image.Image, alpha: Image.Image | None) -> Image.Image:
    if alpha is None:
        return rgb
    out = rgb.convert("RGBA")
    out.putalpha(alpha.resize(rgb.size) if alpha.size != rgb.size else alpha)
    return out


def normalize(img: Image.Image) -> Image.Image:
    """The image as RGB, or RGBA when it has any transparency."""
    has_alpha = img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        img.mode == "P" and "transparency" in img.info
    )
    return img.convert("RGBA" if has_alpha else "RGB")


def _colour_op(img: Image.Image, fn: object) -> Image.Image:
    rgb, alpha = _split_alpha(img)
    return _with_alpha(fn(rgb), alpha)  # type: ignore[operator]


def _sepia(rgb: Image.Image) -> Image.Image:
    gray = ImageOps.grayscale(rgb)
    return ImageOps.colorize(gray, black=(40, 26, 13), white=(255, 240, 192), mid=(170, 120, 70))


def _pixelate(img: Image.Image, block: float) -> tuple[Image.Image, int]:
    b = int(block) or max(2, min(img.size) // 32)
    small = img.resize((max(1, img.width // b), max(1, img.height // b)), Image.Resampling.BOX)
    return small.resize(img.size, Image.Resampling.NEAREST), b


def _rotate(img: Image.Image, angle: float) -> Image.Image:
    # ``angle`` is clockwise; PIL rotates counterclockwise.
    turns = {
        90: Image.Transpose.ROTATE_270,
        180: Image.Transpose.ROTATE_180,
        270: Image.Transpose.ROTATE_90,
    }
    a = angle % 360
    if a == 0:
        return img
    if a in turns:
        return img.transpose(turns[int(a)])
    fill = (0, 0, 0, 0) if img.mode == "RGBA" else (255, 255, 255)
    return img.rotate(-a, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=fill)


def apply_edit(img: Image.Image, edit: Edit) -> tuple[Image.Image, str]:
    """``(edited image, what was done)`` for one edit; ``img`` is RGB or RGBA."""
    k = edit.kind
    if k == "grayscale":
        return _colour_op(img, lambda im: ImageOps.grayscale(im).convert("RGB")), "grayscale"
    if k == "invert":
        return _colour_op(img, ImageOps.invert), "inverted the colours"
    if k == "sepia":
        return _colour_op(img, _sepia), "sepia tone"
    if k == "posterize":
        bits = int(edit.a)
        return _colour_op(
            img, lambda im: ImageOps.posterize(im, bits)
        ), f"posterized to {bits} bits"
    if k == "blur":
        r = edit.a
        return img.filter(ImageFilter.GaussianBlur(r)), f"Gaussian blur (radius {r:g})"
    if k == "sharpen":
        return img.filter(ImageFilter.UnsharpMask(radius=2, percent=160, threshold=2)), "sharpened"
    if k == "edges":
        return _colour_op(img, lambda im: im.filter(ImageFilter.FIND_EDGES)), "found edges"
    if k == "emboss":
        return _colour_op(img, lambda im: im.filter(ImageFilter.EMBOSS)), "embossed"
    if k == "rotate":
        a = edit.a
        way = "clockwise" if a >= 0 else "counterclockwise"
        return _rotate(img, a), f"rotated {abs(a):g}° {way}"
    if k == "flip":
        return img.transpose(Image.Transpose.FLIP_TOP_BOTTOM), "flipped top to bottom"
    if k == "mirror":
        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "mirrored left to right"
    if k == "pixelate":
        out, b = _pixelate(img, edit.a)
        return out, f"pixelated ({b}-pixel blocks)"
    if k == "resize":
        w, h = int(edit.a), int(edit.b)
        return img.resize((w, h), Image.Resampling.LANCZOS), f"resized to {w}×{h}"
    if k == "scale":
        f = edit.a / 100
        w, h = max(1, round(img.width * f)), max(1, round(img.height * f))
        return img.resize((w, h), Image.Resampling.LANCZOS), f"scaled by {edit.a:g}% to {w}×{h}"
    if k == "crop_square":
        side = min(img.size)
        x0, y0 = (img.width - side) // 2, (img.height - side) // 2
        return img.crop((x0, y0, x0 + side, y0 + side)), f"cropped to a {side}×{side} square"
    if k == "crop":
        w, h = min(int(edit.a), img.width), min(int(edit.b), img.height)
        x0, y0 = (img.width - w) // 2, (img.height - h) // 2
        return img.crop((x0, y0, x0 + w, y0 + h)), f"cropped the centre to {w}×{h}"
    if k == "border":
        default = max(4, round(min(img.size) * 0.04))
        width = int(edit.a) if edit.a > 0 else default * 2 if edit.a < 0 else default
        color = edit.color or (0, 0, 0)
        fill = (*color, 255) if img.mode == "RGBA" else color
        return ImageOps.expand(img, border=width, fill=fill), (
            f"added a {width}-pixel {edit.color_name or 'black'} border"
        )
    if k == "brighten":
        return _colour_op(img, lambda im: ImageEnhance.Brightness(im).enhance(1.3)), "brightened"
    if k == "darken":
        return _colour_op(img, lambda im: ImageEnhance.Brightness(im).enhance(0.7)), "darkened"
    if k == "contrast_up":
        out = _colour_op(img, lambda im: ImageEnhance.Contrast(im).enhance(1.6))
        return out, "increased the contrast"
    if k == "contrast_down":
        out = _colour_op(img, lambda im: ImageEnhance.Contrast(im).enhance(0.6))
        return out, "reduced the contrast"
    if k == "thumbnail":
        out = img.copy()
        out.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
        return out, f"made a thumbnail ({out.width}×{out.height})"
    raise ValueError(f"unknown edit {k!r}")


def apply_edits(img: Image.Image, edits: list[Edit]) -> tuple[Image.Image, list[str]]:
    """Apply ``edits`` in order; returns the result and one phrase per edit."""
    out = normalize(img)
    done = []
    for e in edits:
        out, what = apply_edit(out, e)
        done.append(what)
    return out, done
