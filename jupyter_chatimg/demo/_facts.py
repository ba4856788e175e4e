"""Facts for structured replies: what the demo measured, looked up by property name.

``ImageFacts`` answers names such as ``width``, ``imageHeight``, ``orientation``,
``dominant_colour``, ``colors``, ``brightness``, ``contrast``, ``has_alpha``,
``transparency``, ``is_photo``, ``aspect_ratio``, ``mode``, ``format``,
``caption``/``description``/``summary``, ``count`` ... (property names are
split at camelCase and punctuation, so ``imageWidth``, ``image-width`` and
``image_width`` are the same). Each name gives candidates in several shapes
(``brightness``: 0-255, 0-1, percent, a word, a boolean): the filler keeps the
first one that the property's schema accepts. ``DictFacts`` answers from JSON
(tool results) by exact name; ``ChainFacts`` asks several in turn.
"""

from __future__ import annotations

import re
from math import gcd
from typing import Any

from ._colors import PALETTE, darker, lighter
from ._describe import ImageStats, brightness_word, contrast_word
from ._structured import Facts

_KIND_WORDS = {
    "photo": ["photo", "photograph", "photography", "natural", "realistic", "real"],
    "drawing": [
        "drawing",
        "illustration",
        "diagram",
        "chart",
        "graphic",
        "screenshot",
        "cartoon",
        "clipart",
        "art",
        "vector",
    ],
    "uncertain": ["uncertain", "unknown", "other", "mixed"],
}
# (pattern on the normalised name, concept); the first match wins, so order matters.
_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), c)
    for p, c in [
        (
            r"(^|_)(num|number_of|n|count_of|distinct|unique)_colou?rs?|colou?rs?_count|palette_size",
            "distinct",
        ),
        (
            r"(^|_)(image_count|num_images|n_images|number_of_images|images_count|total_images)$",
            "count",
        ),
        (r"(^|_)(count|how_many|quantity)$", "count"),
        (r"(^|_)(index|idx|image_index)$", "index"),
        (r"(^|_)(number|image_number|image_id|id)$", "number"),
        (r"megapixel", "megapixels"),
        (r"pixel_count|(^|_)pixels$|(^|_)area$|total_pixels|num_pixels", "pixels"),
        (r"file_size|(^|_)bytes$|byte_size|size_bytes|size_in_bytes", "bytes"),
        (r"aspect", "aspect"),
        (r"width|(^|_)w$", "width"),
        (r"height|(^|_)h$", "height"),
        (r"landscape", "is_landscape"),
        (r"portrait", "is_portrait"),
        (r"(^|_)(is_)?square$", "is_square"),
        (r"orientation|layout", "orientation"),
        (r"(^|_)(mode|colou?r_mode|colou?r_space|colorspace|channels)$", "mode"),
        (r"background", "background"),
        (r"colou?r|(^|_)hues?$|palette|tint", "color"),
        (r"(^|_)(is_)?dark", "is_dark"),
        (r"bright|luminan|lightness|luma|exposure|(^|_)light", "brightness"),
        (r"contrast", "contrast"),
        (r"has_alpha|alpha_channel", "has_alpha"),
        (r"opaque|opacity", "opaque"),
        (r"transparen|alpha", "transparency"),
        (r"(^|_)(kind|type|category|class|style|medium|image_type|genre)$", "kind"),
        (r"photo|realistic", "is_photo"),
        (
            r"drawing|illustrat|diagram|chart|graphic|screenshot|cartoon|clip_?art|sketch",
            "is_drawing",
        ),
        (r"format|file_type|extension|encoding|mime", "format"),
        (r"symmetr", "symmetric"),
        (r"position|location|placement|where|focus", "where"),
        (r"(^|_)(size|dimensions?|resolution|shape|wxh)$", "size"),
        (
            r"caption|descri|summary|(^|_)alt|title|text|content|answer|explanation|comment|note"
            r"|observation|analysis|overview|reason|interpretation|details|(^|_)result$",
            "caption",
        ),
        (r"(^|_)model$", "model"),
    ]
]
_PER_IMAGE = re.compile(
    r"image|picture|photo|figure|input|file|result|item|frame|page|analys|attachment|descri|entr"
)
_COLOUR_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), c)
    for p, c in [
        (r"percent|pct", "percent"),
        (r"share|fraction|proportion|coverage|ratio|weight|frequency|amount|portion", "share"),
        (r"hex", "hex"),
        (r"rgb", "rgb"),
        (r"rank|order", "rank"),
        (r"(^|_)(index|idx)$", "index"),
        (r"dominant|is_main|primary", "is_top"),
        (r"(^|_)(name|colou?r|label|hue|value|shade)$", "name"),
    ]
]


def normalize(name: str) -> str:
    """``imageWidth``, ``Image-Width``, ``image width`` -> ``image_width``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return "_".join(re.findall(r"[a-z0-9]+", spaced.lower()))


def concept(name: str) -> str | None:
    """What an image property called ``name`` means (``width``, ``color`` ...), or None."""
    n = normalize(name)
    return next((c for pattern, c in _RULES if pattern.search(n)), None)


def aspect_text(w: int, h: int) -> str:
    """``16:9`` for small ratios, else ``1.78:1``."""
    g = gcd(w, h) or 1
    a, b = w // g, h // g
    return f"{a}:{b}" if a <= 32 and b <= 32 else f"{w / h:.2f}:1"


def shown_rgb(label: str) -> tuple[int, int, int]:
    """An RGB for a colour label such as ``red``, ``light blue`` or ``dark gray``."""
    qualifier, _, base = label.rpartition(" ")
    rgb = PALETTE.get(base, PALETTE["gray"])
    return lighter(rgb) if qualifier == "light" else darker(rgb) if qualifier == "dark" else rgb


def caption(s: ImageStats) -> str:
    """One short sentence about an image."""
    text = f"A {s.width}×{s.height} {s.orientation} image"
    if s.colors:
        top = s.colors[0]
        text += f", mostly {top[0]} ({top[1] * 100:.0f}%)"
        others = [c for c, _ in s.colors[1:3]]
        text += f" with {' and '.join(others)}" if others else ""
    text += f"; {brightness_word(s.brightness)}, {contrast_word(s.contrast)} contrast"
    if s.transparent or s.translucent:
        text += ", partly transparent"
    return text + "."


class ColourFacts:
    """One measured colour: its name, share, hex and RGB."""

    def __init__(self, label: str, share: float, index: int) -> None:
        self.label, self.share, self.index = label, share, index

    def values(self, name: str) -> list[Any]:
        n = normalize(name)
        kind = next((c for p, c in _COLOUR_RULES if p.search(n)), None) or "name"
        rgb = shown_rgb(self.label)
        base = self.label.rpartition(" ")[2]
        table: dict[str, list[Any]] = {
            "percent": [round(self.share * 100, 1), round(self.share, 3)],
            "share": [round(self.share, 3), round(self.share * 100, 1)],
            "hex": ["#{:02x}{:02x}{:02x}".format(*rgb)],
            "rgb": [list(rgb), "rgb({}, {}, {})".format(*rgb)],
            "rank": [self.index + 1],
            "index": [self.index],
            "is_top": [self.index == 0],
            "name": [self.label, base],
        }
        return table[kind]

    def child(self, name: str) -> Facts:
        return self

    def items(self, name: str) -> list[Facts] | None:
        return None


class ImageFacts:
    """Facts about one image (``stats``), or a set of images (``each`` per image)."""

    def __init__(self, stats: list[ImageStats], index: int = 0, per_image: bool = False) -> None:
        self.stats = stats
        self.index = index
        self.per_image = per_image

    @property
    def _s(self) -> ImageStats | None:
        return self.stats[self.index] if self.index < len(self.stats) else None

    def _each(self) -> list[ImageFacts]:
        return [ImageFacts(self.stats, i, True) for i in range(len(self.stats))]

    def values(self, name: str) -> list[Any]:
        c = concept(name)
        found = self._concept(c) if c else []
        if not self.per_image and len(self.stats) > 1 and c not in (None, "count", "model"):
            each = [f._concept(c) for f in self._each()]
            if all(each):
                found = [*found, [e[0] for e in each]]
        return found

    def _concept(self, c: str) -> list[Any]:
        if c == "count":
            return [len(self.stats)]
        if c == "model":
            return ["demo-vision"]
        if c == "index":
            return [self.index]
        if c == "number":
            return [self.index + 1, f"image_{self.index + 1}"]
        s = self._s
        if s is None:
            return []
        if c == "caption" and not self.per_image and len(self.stats) > 1:
            parts = [f"Image {i}: {caption(t)}" for i, t in enumerate(self.stats, 1)]
            return [" ".join(parts), caption(s)]
        return _measured(s, c)

    def child(self, name: str) -> Facts:
        return self

    def items(self, name: str) -> list[Facts] | None:
        n = normalize(name)
        s = self._s
        if s is not None and concept(name) == "color":
            return [ColourFacts(label, share, i) for i, (label, share) in enumerate(s.colors)]
        if not self.per_image and _PER_IMAGE.search(n):
            return list(self._each())
        return None


def _measured(s: ImageStats, c: str) -> list[Any]:
    """Candidates for concept ``c`` measured on one image (several shapes, best first)."""
    w, h, b, std = s.width, s.height, s.brightness, s.contrast
    labels = [label for label, _ in s.colors]
    bases = list(dict.fromkeys(label.rpartition(" ")[2] for label in labels))
    alpha = s.transparent + s.translucent > 0
    orient = [s.orientation, "square"] if s.orientation == "nearly square" else [s.orientation]
    table: dict[str, list[Any]] = {
        "distinct": [s.distinct],
        "megapixels": [round(w * h / 1e6, 3)],
        "pixels": [w * h],
        "bytes": [s.n_bytes] if s.n_bytes is not None else [],
        "aspect": [round(w / h, 3), aspect_text(w, h), f"{w}:{h}"],
        "width": [w],
        "height": [h],
        "is_landscape": [w > h],
        "is_portrait": [h > w],
        "is_square": [w == h],
        "orientation": orient,
        "mode": [s.mode, s.mode.lower()],
        "background": [s.background] if s.background else [],
        "color": [*labels[:1], *bases[:1], labels, bases],
        "is_dark": [b < 100],
        "brightness": [
            round(b, 1),
            round(b / 255, 3),
            round(b / 2.55, 1),
            brightness_word(b),
            b >= 160,
        ],
        "contrast": [
            round(std, 1),
            round(std / 255, 3),
            round(std / 2.55, 1),
            contrast_word(std),
            std >= 45,
        ],
        "has_alpha": [s.has_alpha],
        "opaque": [not alpha, round(1 - s.transparent, 3)],
        "transparency": [alpha, round(s.transparent, 3), round(s.transparent * 100, 1)],
        "kind": _KIND_WORDS[s.kind],
        "is_photo": [s.kind == "photo"],
        "is_drawing": [s.kind == "drawing"],
        "format": [s.fmt, s.fmt.lower(), f"image/{s.fmt.lower()}"] if s.fmt else [],
        "symmetric": [s.symmetric_lr or s.symmetric_tb],
        "where": [s.content_where] if s.content_where else [],
        "size": [f"{w}x{h}", [w, h], w * h],
        "caption": [caption(s)],
    }
    return table.get(c, [])


def _flatten(obj: Any, out: dict[str, list[Any]]) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.setdefault(normalize(str(key)), []).append(value)
            _flatten(value, out)
    elif isinstance(obj, list):
        for value in obj:
            _flatten(value, out)


class DictFacts:
    """Facts from JSON data (a tool's result): keys at any depth, by normalised name."""

    def __init__(self, data: Any) -> None:
        self.data = data
        self._by_name: dict[str, list[Any]] = {}
        _flatten(data, self._by_name)

    def values(self, name: str) -> list[Any]:
        return list(self._by_name.get(normalize(name), []))

    def child(self, name: str) -> Facts:
        found = [v for v in self.values(name) if isinstance(v, dict)]
        return DictFacts(found[0]) if found else self

    def items(self, name: str) -> list[Facts] | None:
        for v in self.values(name):
            if isinstance(v, list) and all(isinstance(x, dict) for x in v):
                return [DictFacts(x) for x in v]
        return None


class ChainFacts:
    """Several sources, asked in order."""

    def __init__(self, *sources: Facts) -> None:
        self.sources = sources

    def values(self, name: str) -> list[Any]:
        return [v for s in self.sources for v in s.values(name)]

    def child(self, name: str) -> Facts:
        return ChainFacts(*(s.child(name) for s in self.sources))

    def items(self, name: str) -> list[Facts] | None:
        return next((i for s in self.sources if (i := s.items(name)) is not None), None)
