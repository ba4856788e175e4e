"""Colour names: the palette the demo draws with and the names it gives to pixels.

``name_of(rgb)`` and ``PALETTE`` agree: every palette colour is named back with
its own name, so a drawn "red circle" is described as red.
"""

from __future__ import annotations

RGB = tuple[int, int, int]

#: The colours the demo draws and names (the names are also what pixels get).
PALETTE: dict[str, RGB] = {
    "red": (230, 25, 25),
    "orange": (245, 130, 20),
    "yellow": (250, 215, 30),
    "olive": (120, 115, 20),
    "green": (40, 170, 60),
    "cyan": (20, 200, 220),
    "blue": (30, 80, 220),
    "purple": (130, 50, 180),
    "magenta": (220, 40, 200),
    "pink": (245, 150, 190),
    "brown": (130, 80, 40),
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "gray": (128, 128, 128),
}

#: Extra words the prompt parser understands, drawn with their own shade.
SYNONYMS: dict[str, RGB] = {
    "grey": PALETTE["gray"],
    "violet": (140, 70, 200),
    "lime": (120, 220, 40),
    "navy": (20, 30, 110),
    "teal": (0, 128, 128),
    "turquoise": (64, 224, 208),
    "gold": (240, 190, 20),
    "golden": (240, 190, 20),
    "silver": (192, 192, 192),
    "maroon": (128, 0, 0),
    "indigo": (75, 0, 130),
    "crimson": (200, 20, 60),
    "scarlet": (255, 36, 0),
    "beige": (225, 205, 165),
    "tan": (210, 180, 140),
    "lavender": (190, 170, 240),
    "coral": (255, 127, 80),
    "salmon": (250, 128, 114),
    "khaki": (195, 176, 145),
}


def color_word(word: str) -> RGB | None:
    """The RGB of a single colour word (``"red"``, ``"grey"``, ``"navy"``), or None."""
    return PALETTE.get(word) or SYNONYMS.get(word)


def lighter(rgb: RGB) -> RGB:
    """A light variant: halfway to white."""
    r, g, b = rgb
    return ((r + 255) // 2, (g + 255) // 2, (b + 255) // 2)


def darker(rgb: RGB) -> RGB:
    """A dark variant: 60 % of each channel."""
    r, g, b = rgb
    return (r * 3 // 5, g * 3 // 5, b * 3 // 5)


def _hue(r: int, g: int, b: int, mx: int, chroma: int) -> float:
    if mx == r:
        h = ((g - b) / chroma) % 6
    elif mx == g:
        h = (b - r) / chroma + 2
    else:
        h = (r - g) / chroma + 4
    return h * 60.0


def name_of(rgb: tuple[int, ...]) -> tuple[str, str]:
    """``(base name, qualifier)`` for one colour; the qualifier is ``""``, ``"light"`` or
    ``"dark"``. Base names are the keys of ``PALETTE``."""
    r, g, b = rgb[0], rgb[1], rgb[2]
    mx, mn = max(r, g, b), min(r, g, b)
    chroma = mx - mn
    if mx < 40:
        return "black", ""
    if chroma < 25 or chroma < 0.12 * mx:
        if mx >= 225:
            return "white", ""
        if mx < 60:
            return "black", ""
        return "gray", "light" if mx >= 175 else "dark" if mx < 90 else ""
    v = mx / 255
    s = chroma / mx
    h = _hue(r, g, b, mx, chroma)
    if h < 15 or h >= 340:
        name = "pink" if s < 0.5 and v > 0.75 else "brown" if v < 0.6 and s < 0.6 else "red"
    elif h < 45:
        name = "brown" if v < 0.65 or (s < 0.5 and v < 0.85) else "orange"
    elif h < 70:
        name = "olive" if v < 0.55 else "yellow"
    elif h < 165:
        name = "green"
    elif h < 195:
        name = "cyan"
    elif h < 255:
        name = "blue"
    elif h < 290:
        name = "purple"
    elif h < 320:
        name = "magenta" if v >= 0.5 else "purple"
    else:
        name = "pink" if v >= 0.6 else "magenta"
    if name in ("pink", "brown", "olive"):
        return name, ""
    qualifier = "dark" if v < 0.45 else "light" if s < 0.45 and v > 0.8 else ""
    return name, qualifier
