"""Draw a parsed ``Scene`` (or a caption card) with ``PIL.ImageDraw``.

No anti-aliasing: every shape is one exact palette colour, so tests (and the
demo's own describer) can find it on the pixels. Shapes of one group sit in a
grid of cells inside their region, never touching each other.
"""

from __future__ import annotations

import math
import textwrap

from PIL import Image, ImageDraw, ImageFont

from ._colors import PALETTE, RGB
from ._prompt import Scene, ShapeGroup

_SIZE_FACTOR = {"tiny": 0.3, "small": 0.45, "medium": 0.65, "large": 0.82, "huge": 0.92}
_DEFAULT_COLORS = ("red", "blue", "green", "orange", "purple", "yellow", "cyan", "magenta")

Box = tuple[float, float, float, float]


def _region(position: str | None, w: int, h: int) -> Box:
    half_w, half_h = w / 2, h / 2
    regions: dict[str, Box] = {
        "left": (0, 0, half_w, h),
        "right": (half_w, 0, w, h),
        "top": (0, 0, w, half_h),
        "bottom": (0, half_h, w, h),
        "center": (w / 4, h / 4, 3 * w / 4, 3 * h / 4),
        "top left": (0, 0, half_w, half_h),
        "top right": (half_w, 0, w, half_h),
        "bottom left": (0, half_h, half_w, h),
        "bottom right": (half_w, half_h, w, h),
    }
    return regions.get(position or "", (0, 0, w, h))


def _cells(region: Box, n: int) -> list[Box]:
    x0, y0, x1, y1 = region
    rw, rh = x1 - x0, y1 - y0
    cols = max(1, min(n, math.ceil(math.sqrt(n * rw / rh))))
    rows = math.ceil(n / cols)
    cw, ch = rw / cols, rh / rows
    cells = []
    for i in range(n):
        r, c = divmod(i, cols)
        in_row = min(cols, n - r * cols)
        dx = x0 + (cols - in_row) * cw / 2  # centre an incomplete last row
        cells.append((dx + c * cw, y0 + r * ch, dx + (c + 1) * cw, y0 + (r + 1) * ch))
    return cells


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    pts = []
    for k in range(10):
        rad = r if k % 2 == 0 else r * 0.42
        a = -math.pi / 2 + k * math.pi / 5
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


def _heart(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    pts = []
    for k in range(64):
        t = 2 * math.pi * k / 64
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        pts.append((cx + x * r / 17, cy - y * r / 17 - r * 0.05))
    return pts


def _draw_shape(draw: ImageDraw.ImageDraw, kind: str, cell: Box, factor: float, fill: RGB) -> None:
    x0, y0, x1, y1 = cell
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = min(x1 - x0, y1 - y0) * factor
    r = side / 2
    if kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif kind == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=max(2, round(r / 4)))
    elif kind == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif kind in ("rectangle", "ellipse"):
        w = (x1 - x0) * factor / 2
        h = min(w * 0.6, (y1 - y0) * factor / 2)
        box = (cx - w, cy - h, cx + w, cy + h)
        (draw.rectangle if kind == "rectangle" else draw.ellipse)(box, fill=fill)
    elif kind == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r * 0.85), (cx - r, cy + r * 0.85)], fill=fill)
    elif kind == "diamond":
        draw.polygon(
            [(cx, cy - r), (cx + r * 0.75, cy), (cx, cy + r), (cx - r * 0.75, cy)], fill=fill
        )
    elif kind == "star":
        draw.polygon(_star(cx, cy, r), fill=fill)
    elif kind == "heart":
        draw.polygon(_heart(cx, cy, r), fill=fill)
    elif kind == "line":
        half = (x1 - x0) * factor / 2
        width = max(3, round(min(x1 - x0, y1 - y0) * 0.05))
        draw.line((cx - half, cy, cx + half, cy), fill=fill, width=width)


def group_colors(scene: Scene) -> list[tuple[RGB, str]]:
    """The colour of each group: as named, else a default that differs from the background."""
    named = {g.color_name.split()[-1] for g in scene.groups if g.color_name}
    defaults = [n for n in _DEFAULT_COLORS if PALETTE[n] != scene.background]
    defaults = [n for n in defaults if n not in named] or defaults
    out: list[tuple[RGB, str]] = []
    k = 0
    for g in scene.groups:
        if g.color is not None and g.color_name is not None:
            out.append((g.color, g.color_name))
        else:
            name = defaults[k % len(defaults)]
            k += 1
            out.append((PALETTE[name], name))
    return out


def draw_scene(scene: Scene, size: tuple[int, int] | None = None) -> Image.Image:
    """Render ``scene`` as an RGB image (``size`` overrides the scene's canvas size)."""
    w, h = size or (scene.width, scene.height)
    img = Image.new("RGB", (w, h), scene.background)
    draw = ImageDraw.Draw(img)
    free = [g for g in scene.groups if g.position is None]
    strips = _cells((0, 0, w, h), len(free)) if free else []
    # With several unplaced groups, side by side reads better than a square grid.
    if len(free) > 1:
        strips = [(w * i / len(free), 0, w * (i + 1) / len(free), h) for i in range(len(free))]
    colors = group_colors(scene)
    k = 0
    for g, (rgb, _) in zip(scene.groups, colors, strict=True):
        if g.position is None:
            region = strips[k]
            k += 1
        else:
            region = _region(g.position, w, h)
        for cell in _cells(region, g.count):
            _draw_shape(draw, g.kind, cell, _SIZE_FACTOR[g.size], rgb)
    return img


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError):  # Pillow built without FreeType
        return ImageFont.load_default()


def caption_card(text: str, size: tuple[int, int] = (512, 512)) -> Image.Image:
    """A card showing ``text`` (the prompt nothing was recognised in), framed."""
    w, h = size
    img = Image.new("RGB", size, (245, 245, 240))
    draw = ImageDraw.Draw(img)
    margin = max(8, w // 16)
    draw.rectangle(
        (margin // 2, margin // 2, w - margin // 2, h - margin // 2), outline=(60, 60, 60), width=3
    )
    font_size = max(10, min(w, h) // 18)
    font = _font(font_size)
    chars = max(8, int((w - 2 * margin) / (font_size * 0.6)))
    head = textwrap.wrap("demo-image found nothing it can draw in:", width=chars)
    body = textwrap.wrap(" ".join(text.split()), width=chars)
    room = max(1, (h - 2 * margin) // (font_size + 6) - len(head) - 1)
    y = margin
    for line in [*head, "", *body[:room]]:
        draw.text((margin, y), line, fill=(40, 40, 40), font=font)
        y += font_size + 6
    return img


def scene_sentence(scene: Scene) -> str:
    """What was drawn, in one sentence."""
    colors = group_colors(scene)
    parts = []
    for g, (_, cname) in zip(scene.groups, colors, strict=True):
        noun = g.kind + ("" if g.count == 1 else "es" if g.kind.endswith("s") else "s")
        count = "one" if g.count == 1 else str(g.count)
        size = "" if g.size == "medium" else f"{g.size} "
        where = f" at the {g.position}" if g.position else ""
        parts.append(f"{count} {size}{cname} {noun}{where}")
    if not parts:
        what = f"a plain {scene.background_name} canvas"
    else:
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        what = f"{listed} on a {scene.background_name} background"
    return f"I drew a {scene.width}×{scene.height} image: {what}."


__all__ = ["ShapeGroup", "caption_card", "draw_scene", "group_colors", "scene_sentence"]
