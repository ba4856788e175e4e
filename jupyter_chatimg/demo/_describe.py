"""Measure an image's pixels and describe what was measured, in plain markdown.

Nothing here guesses at content: every sentence comes from a number computed
on a small nearest-neighbour sample of the image (at most ``SAMPLE_SIDE`` on
the long side), so the text is deterministic and cheap.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from math import gcd

from PIL import Image

from ._colors import name_of

SAMPLE_SIDE = 128
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


@dataclass(frozen=True)
class ImageStats:
    """What was measured on one image (all shares are fractions 0..1)."""

    width: int
    height: int
    mode: str
    fmt: str | None
    n_bytes: int | None
    has_alpha: bool
    transparent: float  # alpha == 0
    translucent: float  # 0 < alpha < 255
    colors: list[tuple[str, float]] = field(default_factory=list)  # named, by share
    brightness: float = 0.0  # mean luma 0..255 over opaque pixels
    contrast: float = 0.0  # standard deviation of luma
    distinct: int = 0  # distinct RGB values in the sample
    sample_pixels: int = 0
    flat: float = 0.0  # neighbouring pairs of equal colour
    edges: float = 0.0  # neighbouring pairs with a strong luma step
    symmetric_lr: bool = False
    symmetric_tb: bool = False
    background: str | None = None
    content_share: float = 0.0
    content_where: str | None = None

    @property
    def orientation(self) -> str:
        """``portrait``, ``landscape`` or ``square``."""
        if self.width == self.height:
            return "square"
        ratio = self.width / self.height
        if 0.95 <= ratio <= 1.05:
            return "nearly square"
        return "landscape" if ratio > 1 else "portrait"

    @property
    def kind(self) -> str:
        """``photo``, ``drawing`` or ``uncertain``: a guess from colours and flat areas."""
        if self.sample_pixels == 0:
            return "uncertain"
        variety = self.distinct / self.sample_pixels
        if self.distinct <= 64 or self.flat >= 0.8:
            return "drawing"
        if variety >= 0.2 and self.flat < 0.5:
            return "photo"
        return "uncertain"


def _to_rgba_sample(img: Image.Image) -> Image.Image:
    w, h = img.size
    scale = min(1.0, SAMPLE_SIDE / max(w, h))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        img = img.convert("F")
        lo, hi = img.getextrema()
        low = float(lo)  # type: ignore[arg-type]
        span = float(hi) - low or 1.0  # type: ignore[arg-type]
        img = img.point(lambda v: (v - low) * 255.0 / span).convert("L")
    small = img.resize(size, Image.Resampling.NEAREST) if size != img.size else img
    if small.mode == "CMYK" or small.mode == "YCbCr":
        small = small.convert("RGB")
    return small.convert("RGBA")


def _where(cx: float, cy: float) -> str:
    col = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
    row = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
    if row and col:
        return f"{row} {col}"
    return row or col or "center"


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in _ALPHA_MODES or (img.mode == "P" and "transparency" in img.info)


def shown_mode(img: Image.Image) -> str:
    """The mode of the picture as its maker made it. A palette (``P``/``PA``) is how a
    file stores colours to save bytes (clients often send RGB pictures as palette
    PNGs), not what the picture is, so it is reported as ``RGB`` or ``RGBA``."""
    if img.mode in ("P", "PA"):
        return "RGBA" if _has_alpha(img) else "RGB"
    return img.mode


def analyze(img: Image.Image, fmt: str | None = None, n_bytes: int | None = None) -> ImageStats:
    """Measure ``img`` (any PIL mode); ``mode`` is ``shown_mode(img)``."""
    width, height = img.size
    has_alpha = _has_alpha(img)
    small = _to_rgba_sample(img)
    sw, sh = small.size
    raw = small.tobytes()  # RGBA bytes; getdata() is deprecated in new Pillow
    pixels = [(raw[i], raw[i + 1], raw[i + 2], raw[i + 3]) for i in range(0, len(raw), 4)]
    total = len(pixels)
    transparent = sum(1 for p in pixels if p[3] == 0) / total
    translucent = sum(1 for p in pixels if 0 < p[3] < 255) / total
    opaque = [p[:3] for p in pixels if p[3] >= 128]
    base = dict(
        width=width,
        height=height,
        mode=shown_mode(img),
        fmt=fmt,
        n_bytes=n_bytes,
        has_alpha=has_alpha,
        transparent=transparent,
        translucent=translucent,
    )
    if not opaque:
        return ImageStats(**base)  # type: ignore[arg-type]

    names: dict[tuple[int, ...], tuple[str, str]] = {}
    counts: Counter[tuple[int, ...]] = Counter(opaque)
    by_base: Counter[str] = Counter()
    qualifiers: dict[str, Counter[str]] = {}
    for rgb, n in counts.items():
        nm = names[rgb] = name_of(rgb)
        by_base[nm[0]] += n
        qualifiers.setdefault(nm[0], Counter())[nm[1]] += n
    n_opaque = len(opaque)
    colors: list[tuple[str, float]] = []
    for base_name, n in by_base.most_common():
        share = n / n_opaque
        if share < 0.005 and colors:
            break
        qual, qn = qualifiers[base_name].most_common(1)[0]
        label = f"{qual} {base_name}" if qual and qn >= 0.7 * n else base_name
        colors.append((label, share))
        if len(colors) == 6:
            break

    lumas = [0.299 * r + 0.587 * g + 0.114 * b for r, g, b in opaque]
    mean = sum(lumas) / n_opaque
    std = (sum((v - mean) ** 2 for v in lumas) / n_opaque) ** 0.5

    # Neighbour statistics on the full sample grid (transparent pixels included).
    grid = [pixels[y * sw : (y + 1) * sw] for y in range(sh)]

    def luma(p: tuple[int, int, int, int]) -> float:
        return 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]

    pairs = flat = edges = 0
    for y in range(sh):
        row = grid[y]
        below = grid[y + 1] if y + 1 < sh else None
        for x in range(sw):
            p = row[x]
            for q in (row[x + 1] if x + 1 < sw else None, below[x] if below else None):
                if q is None:
                    continue
                pairs += 1
                d = abs(p[0] - q[0]) + abs(p[1] - q[1]) + abs(p[2] - q[2])
                if d <= 6:
                    flat += 1
                if abs(luma(p) - luma(q)) > 40:
                    edges += 1

    def mirror_diff(flip: Image.Transpose) -> float:
        a = small.convert("L")
        b = a.transpose(flip)
        da, db = a.tobytes(), b.tobytes()
        return sum(abs(u - v) for u, v in zip(da, db, strict=True)) / (255 * len(da))

    # Background: the colour name covering most of the border, if it clearly dominates.
    border = [*grid[0], *grid[-1], *(r[0] for r in grid), *(r[-1] for r in grid)]
    border_names = Counter(names[p[:3]][0] if p[3] >= 128 else "transparent" for p in border)
    bg_name, bg_n = border_names.most_common(1)[0]
    background = bg_name if bg_n >= 0.6 * len(border) else None
    content_share, content_where = 0.0, None
    if background is not None:
        xs = ys = 0.0
        hits = 0
        for y in range(sh):
            for x, p in enumerate(grid[y]):
                label = names[p[:3]][0] if p[3] >= 128 else "transparent"
                if label != background:
                    hits += 1
                    xs += x + 0.5
                    ys += y + 0.5
        content_share = hits / total
        if hits:
            content_where = _where(xs / hits / sw, ys / hits / sh)

    return ImageStats(
        **base,  # type: ignore[arg-type]
        colors=colors,
        brightness=mean,
        contrast=std,
        distinct=len(counts),
        sample_pixels=n_opaque,
        flat=flat / pairs if pairs else 1.0,
        edges=edges / pairs if pairs else 0.0,
        symmetric_lr=sw > 1 and mirror_diff(Image.Transpose.FLIP_LEFT_RIGHT) < 0.03,
        symmetric_tb=sh > 1 and mirror_diff(Image.Transpose.FLIP_TOP_BOTTOM) < 0.03,
        background=background,
        content_share=content_share,
        content_where=content_where,
    )


def _pct(share: float) -> str:
    pct = share * 100
    if 0 < pct < 1:
        return "<1%"
    return f"{pct:.0f}%"


def _aspect(w: int, h: int) -> str:
    g = gcd(w, h)
    a, b = w // g, h // g
    if a <= 32 and b <= 32:
        return f"{a}:{b}"
    return f"{w / h:.2f}:1"


# Coarse words rather than exact counts: lossy encoders (JPEG) differ slightly between
# library versions, and saved notebook outputs must not change with them.
def _distinct_words(n: int) -> str:
    if n <= 64:
        return str(n)
    return "hundreds of" if n < 1000 else "thousands of"


def _flat_words(share: float) -> str:
    if share >= 0.8:
        return "large flat areas"
    return "some flat areas" if share >= 0.5 else "few flat areas"


def _edge_words(share: float) -> str:
    if share < 0.02:
        return "few sharp edges"
    return "some sharp edges" if share < 0.15 else "many sharp edges"


def brightness_word(v: float) -> str:
    """A word for mean luma 0..255."""
    if v < 50:
        return "very dark"
    if v < 100:
        return "dark"
    if v < 160:
        return "medium brightness"
    if v < 210:
        return "bright"
    return "very bright"


def contrast_word(std: float) -> str:
    """A word for the standard deviation of luma."""
    if std < 20:
        return "very low"
    if std < 45:
        return "low"
    if std < 75:
        return "moderate"
    return "high"


def _colour_list(colors: list[tuple[str, float]]) -> str:
    items = [f"**{name}** ({_pct(share)})" for name, share in colors]
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def describe(stats: ImageStats, title: str | None = None) -> str:
    """Markdown describing ``stats``: a heading line then one bullet per measurement."""
    s = stats
    fmt = f"{s.fmt} " if s.fmt else ""
    head = (
        f"a {s.width}×{s.height} {s.orientation} {fmt}image "
        f"(aspect {_aspect(s.width, s.height)}, mode {s.mode})."
    )
    lines = [f"**{title}**: {head}" if title else head[0].upper() + head[1:]]
    if s.has_alpha:
        if s.transparent or s.translucent:
            parts = []
            if s.transparent:
                parts.append(f"{_pct(s.transparent)} of the pixels are fully transparent")
            if s.translucent:
                parts.append(f"{_pct(s.translucent)} are partly transparent")
            lines.append("- Transparency: " + ", ".join(parts) + ".")
        else:
            lines.append("- Transparency: it has an alpha channel, but every pixel is opaque.")
    else:
        lines.append("- Transparency: none (no alpha channel).")
    if not s.colors:
        lines.append("- Every pixel is transparent, so there are no colours to measure.")
        return "\n".join(lines)
    if s.distinct == 1:
        where = "in every opaque pixel" if s.transparent or s.translucent else "everywhere"
        lines.append(f"- Colour: a single flat colour, **{s.colors[0][0]}**, {where}.")
    else:
        lines.append(f"- Colours: {_colour_list(s.colors)}.")
    lines.append(
        f"- Brightness: {brightness_word(s.brightness)} (mean {s.brightness:.0f}/255); "
        f"contrast: {contrast_word(s.contrast)} (spread {s.contrast:.0f})."
    )
    if s.distinct > 1:
        detail = (
            f"{_distinct_words(s.distinct)} distinct colours, {_flat_words(s.flat)}, "
            f"{_edge_words(s.edges)}"
        )
        kind = {
            "photo": "Looks like a photograph or another natural image",
            "drawing": "Looks like a drawing, chart, diagram or screenshot rather than a photo",
            "uncertain": "Could be a detailed illustration or a simple photo",
        }[s.kind]
        lines.append(f"- {kind} ({detail}).")
        two = s.colors[:2]
        if (
            len(two) == 2
            and two[0][1] + two[1][1] >= 0.9
            and {two[0][0], two[1][0]} & {"white", "light gray"}
            and {two[0][0], two[1][0]} & {"black", "dark gray"}
            and s.edges > 0.05
        ):
            lines.append("- High-contrast and two-toned, like text or line art.")
    if s.background and s.content_where and 0.003 <= s.content_share <= 0.9:
        lines.append(
            f"- Against a {s.background} background, the rest of the picture sits "
            f"mostly at the {s.content_where} and covers about {_pct(s.content_share)} of it."
        )
    sym = [
        w for w, ok in (("left to right", s.symmetric_lr), ("top to bottom", s.symmetric_tb)) if ok
    ]
    if sym and s.distinct > 1:
        lines.append(f"- Roughly mirror-symmetric {' and '.join(sym)}.")
    return "\n".join(lines)


def compare(items: list[tuple[str, ImageStats]]) -> str:
    """A short markdown paragraph comparing several measured images."""
    if len(items) < 2:
        return ""
    lines = ["**Comparison**:"]
    bright = max(items, key=lambda t: t[1].brightness)
    dark = min(items, key=lambda t: t[1].brightness)
    if bright[1].brightness - dark[1].brightness >= 5:
        lines.append(
            f"- {bright[0]} is the brightest (mean {bright[1].brightness:.0f}), "
            f"{dark[0]} the darkest (mean {dark[1].brightness:.0f})."
        )
    else:
        lines.append("- They are about equally bright.")
    big = max(items, key=lambda t: t[1].width * t[1].height)
    small = min(items, key=lambda t: t[1].width * t[1].height)
    if big[1].width * big[1].height != small[1].width * small[1].height:
        lines.append(
            f"- {big[0]} is the largest ({big[1].width}×{big[1].height}), "
            f"{small[0]} the smallest ({small[1].width}×{small[1].height})."
        )
    else:
        lines.append(f"- All have the same size ({big[1].width}×{big[1].height}).")
    tops = {t[1].colors[0][0] for t in items if t[1].colors}
    if len(tops) == 1 and all(t[1].colors for t in items):
        lines.append(f"- All are mostly {tops.pop()}.")
    kinds = {t[1].kind for t in items}
    if len(kinds) > 1:
        lines.append(
            "- Kinds differ: "
            + ", ".join(
                f"{name} looks like a {s.kind}" for name, s in items if s.kind != "uncertain"
            )
            + "."
        )
    return "\n".join(lines)
