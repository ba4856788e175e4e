"""Read English prompts: what to draw (``parse_scene``) and which edits to apply
(``parse_edits``). Pure functions over the prompt text; no drawing here."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._colors import PALETTE, RGB, color_word, darker, lighter

DEFAULT_SIZE = (512, 512)
MAX_SIDE = 4096
MIN_SIDE = 16

SHAPES: dict[str, str] = {
    "circle": "circle",
    "dot": "circle",
    "ball": "circle",
    "disc": "circle",
    "disk": "circle",
    "sun": "circle",
    "square": "square",
    "box": "square",
    "rectangle": "rectangle",
    "rect": "rectangle",
    "bar": "rectangle",
    "triangle": "triangle",
    "star": "star",
    "line": "line",
    "stripe": "line",
    "ellipse": "ellipse",
    "oval": "ellipse",
    "heart": "heart",
    "diamond": "diamond",
    "ring": "ring",
}
_PLURALS = {"boxes": "box", "suns": "sun"}

COUNTS: dict[str, int] = {
    "a": 1,
    "an": 1,
    "one": 1,
    "single": 1,
    "two": 2,
    "pair": 2,
    "couple": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "dozen": 12,
    "several": 3,
    "some": 3,
    "many": 8,
}
MAX_COUNT = 64
PLURAL_COUNT = 3  # "blue circles" with no number

SIZES: dict[str, str] = {
    "tiny": "tiny",
    "little": "small",
    "small": "small",
    "medium": "medium",
    "big": "large",
    "large": "large",
    "huge": "huge",
    "giant": "huge",
    "enormous": "huge",
}
_POS_WORDS = {
    "top": "top",
    "upper": "top",
    "bottom": "bottom",
    "lower": "bottom",
    "left": "left",
    "right": "right",
    "center": "center",
    "centre": "center",
    "middle": "center",
    "centered": "center",
    "centred": "center",
}
_SHADES = {"light": "light", "pale": "light", "dark": "dark", "deep": "dark"}
_GLUE = {"the", "of", "in", "at", "filled", "solid", "colored", "coloured", "corner", "side"}
_CLAUSE = {",", ".", ";", "and", "with", "on", "plus", "next", "beside", "above", "below"}
STOPWORDS = {
    *[
        "a",
        "an",
        "the",
        "of",
        "on",
        "in",
        "at",
        "with",
        "and",
        "to",
        "draw",
        "make",
        "create",
        "generate",
        "render",
        "paint",
        "please",
        "me",
        "some",
        "is",
        "are",
        "that",
        "this",
        "it",
        "its",
        "for",
        "canvas",
        "picture",
        "image",
        "photo",
        "painting",
        "illustration",
        "show",
        "showing",
        "of",
        "there",
        "be",
        "has",
        "have",
        "by",
        "from",
        "into",
        "as",
        "very",
        "just",
    ],
}


@dataclass(frozen=True)
class ShapeGroup:
    """``count`` shapes of one ``kind``, colour, size and place."""

    kind: str
    count: int
    color: RGB | None
    color_name: str | None
    size: str
    position: str | None


@dataclass(frozen=True)
class Scene:
    """Everything ``parse_scene`` understood in a prompt."""

    width: int
    height: int
    background: RGB
    background_name: str
    groups: tuple[ShapeGroup, ...]
    recognised: bool
    unused: tuple[str, ...]


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z]+|\d+|[,.;]", text.lower())


def _color_at(tokens: list[str], i: int) -> tuple[RGB, str] | None:
    """The colour named by ``tokens[i]`` (with a light/dark word just before it)."""
    rgb = color_word(tokens[i])
    if rgb is None:
        return None
    name = "gray" if tokens[i] == "grey" else tokens[i]
    shade = _SHADES.get(tokens[i - 1]) if i > 0 else None
    if shade == "light":
        return lighter(rgb), f"light {name}"
    if shade == "dark":
        return darker(rgb), f"dark {name}"
    return rgb, name


def _shape_of(token: str) -> str | None:
    if token in SHAPES:
        return SHAPES[token]
    singular = _PLURALS.get(token) or (token[:-1] if token.endswith("s") else "")
    return SHAPES.get(singular)


def _position(words: set[str]) -> str | None:
    pos = {_POS_WORDS[w] for w in words if w in _POS_WORDS}
    row = "top" if "top" in pos else "bottom" if "bottom" in pos else ""
    col = "left" if "left" in pos else "right" if "right" in pos else ""
    if row and col:
        return f"{row} {col}"
    return row or col or ("center" if "center" in pos else None)


def _image_size(text: str, tokens: list[str], used: set[int]) -> tuple[int, int] | None:
    m = re.search(r"(\d{1,5})\s*(?:x|×|\*|by)\s*(\d{1,5})", text.lower())
    if m:
        w, h = (max(MIN_SIDE, min(MAX_SIDE, int(v))) for v in m.groups())
        for i, t in enumerate(tokens):
            if t in m.groups() or t == "x":
                used.add(i)
        return w, h
    for i, t in enumerate(tokens):
        if t in ("wide", "landscape", "horizontal", "panorama", "panoramic"):
            used.add(i)
            return (1024, 384) if t.startswith("panoram") else (768, 512)
        if t in ("tall", "portrait", "vertical"):
            used.add(i)
            return 512, 768
    return None


def parse_scene(prompt: str) -> Scene:
    """Shapes, colours, counts, sizes, positions, background and canvas size in ``prompt``."""
    tokens = _tokens(prompt)
    used: set[int] = set()
    size = _image_size(prompt, tokens, used)

    # Background: "<colour> background", "background of <colour>", "on (a) <colour>".
    background: tuple[RGB, str] | None = None
    for i, t in enumerate(tokens):
        if t in ("background", "backdrop", "bg", "sky"):
            for j in (i - 1, i + 1, i + 2):
                if 0 <= j < len(tokens) and j not in used and (c := _color_at(tokens, j)):
                    background = c
                    used.update({i, j, j - 1} if tokens[j - 1] in _SHADES else {i, j})
                    break
            if background:
                break
    if background is None:
        for i, t in enumerate(tokens):
            if t != "on":
                continue
            j = i + 1
            while j < len(tokens) and tokens[j] in ("a", "an", "the", "light", "dark", "pale"):
                j += 1
            if j < len(tokens) and (c := _color_at(tokens, j)):
                nxt = tokens[j + 1] if j + 1 < len(tokens) else ""
                if _shape_of(nxt) is None:
                    background = c
                    used.update(range(i, j + 1))
                    break

    groups: list[ShapeGroup] = []
    for i, t in enumerate(tokens):
        kind = _shape_of(t)
        if kind is None or i in used:
            continue
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if t == "square" and nxt in ("image", "picture", "canvas", "format", "photo"):
            used.update({i, i + 1})
            size = size or DEFAULT_SIZE
            continue
        used.add(i)
        count, count_set, shape_size, color = 1, False, "", None
        pos_words: set[str] = set()
        j = i - 1
        while j >= 0 and j not in used:
            w = tokens[j]
            if not count_set and w.isdigit():
                count, count_set = max(1, min(MAX_COUNT, int(w))), True
            elif not count_set and w in COUNTS:
                count, count_set = COUNTS[w], True
            elif w in SIZES and not shape_size:
                shape_size = SIZES[w]
            elif color is None and (c := _color_at(tokens, j)):
                color = c
                if j > 0 and tokens[j - 1] in _SHADES:
                    used.add(j)
                    j -= 1
            elif w in _POS_WORDS:
                pos_words.add(w)
            elif w not in _GLUE and w not in _SHADES:
                break
            used.add(j)
            j -= 1
        k = i + 1
        while k < len(tokens) and k - i <= 7 and k not in used:
            w = tokens[k]
            if w == "on" and k + 2 < len(tokens) and tokens[k + 2] in _POS_WORDS:
                used.add(k)
            elif _shape_of(w) or w in (",", ";", ".", "and", "with", "on"):
                break
            if w in _POS_WORDS:
                pos_words.add(w)
                used.add(k)
            elif w in _GLUE:
                used.add(k)
            k += 1
        groups.append(
            ShapeGroup(
                kind=kind,
                count=count if count_set or t in SHAPES else PLURAL_COUNT,
                color=color[0] if color else None,
                color_name=color[1] if color else None,
                size=shape_size or ("small" if t.startswith("dot") else "medium"),
                position=_position(pos_words),
            )
        )

    if not groups and background is None:
        # A colour with no shape ("a solid green image") fills the canvas.
        for i in range(len(tokens)):
            if (c := _color_at(tokens, i)) and i not in used:
                background = c
                used.add(i)
                break

    unused: list[str] = []
    for i, t in enumerate(tokens):
        if i in used or t in STOPWORDS or not t.isalpha() or t in _SHADES or t in _GLUE:
            continue
        if t not in unused:
            unused.append(t)
    width, height = size or DEFAULT_SIZE
    bg = background or (PALETTE["white"], "white")
    return Scene(
        width=width,
        height=height,
        background=bg[0],
        background_name=bg[1],
        groups=tuple(groups),
        recognised=bool(groups) or background is not None or size is not None,
        unused=tuple(unused[:8]),
    )


# --- edits -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Edit:
    """One recognised edit instruction, in the order it appears in the prompt."""

    kind: str
    a: float = 0.0
    b: float = 0.0
    color: RGB | None = None
    color_name: str | None = None


#: What ``parse_edits`` recognises, for honest "what I can do" replies.
EDIT_HELP = (
    "grayscale (or black and white), invert (negative), blur [N], sharpen, "
    "rotate N degrees [clockwise|counterclockwise], flip (vertical), mirror (horizontal), "
    "sepia, posterize [N bits], pixelate [N px], resize to WxH or by N%, crop to square, "
    "add a [colour] border [N px], brighten, darken, increase/decrease contrast, thumbnail, "
    "find edges, emboss"
)

_NUM = r"(\d+(?:\.\d+)?)"
_OBJ = r"(?:\s+(?:it|this|the\s+image|the\s+picture|the\s+photo|image|picture))?"
_EDIT_PATTERNS: list[tuple[str, str]] = [
    (
        "grayscale",
        r"\b(?:gr[ae]y\s*-?\s*scale\w*|black\s*(?:and|&|n)\s*white|b\s*&\s*w|"
        r"monochrome|desaturat\w*)",
    ),
    ("invert", r"\b(?:invert\w*|negative)\b"),
    ("blur", rf"\bblur\w*{_OBJ}(?:\s+(?:with\s+)?(?:a\s+)?(?:radius\s+(?:of\s+)?|by\s+)?{_NUM})?"),
    ("sharpen", r"\bsharpen\w*"),
    (
        "rotate",
        rf"\b(?:rotat\w*|turn){_OBJ}(?:\s+by)?(?:\s+(-?\d+(?:\.\d+)?)\s*(?:°|deg\w*)?)?"
        r"(?:\s+(?:degrees?\s+)?(clockwise|counter-?\s*clockwise|anti-?\s*clockwise|ccw|cw|"
        r"to\s+the\s+left|to\s+the\s+right|left|right))?",
    ),
    (
        "flip",
        rf"\bflip\w*{_OBJ}(?:\s+(horizontal\w*|vertical\w*|left\s*-?\s*to\s*-?\s*right|"
        r"upside\s*-?\s*down|top\s*-?\s*to\s*-?\s*bottom))?",
    ),
    ("mirror", rf"\bmirror\w*{_OBJ}(?:\s+(horizontal\w*|vertical\w*))?"),
    ("sepia", r"\bsepia\b"),
    (
        "posterize",
        rf"\bposteri[sz]\w*(?:{_OBJ}\s+(?:to|with)\s+(\d+)\s*(?:bits?|levels?|colou?rs?))?",
    ),
    (
        "pixelate",
        rf"\bpixel+ate?\w*(?:{_OBJ}\s+(?:with|by|to|in)?\s*(\d+)\s*(?:px|pixels?)?"
        r"(?:\s*blocks?)?)?",
    ),
    (
        "resize_wh",
        rf"\b(?:resize|scale|shrink|enlarge)\w*{_OBJ}(?:\s+(?:down\s+|up\s+)?(?:to|into))?"
        r"\s*(\d{1,5})\s*(?:x|×|\*|by)\s*(\d{1,5})",
    ),
    (
        "resize_pct",
        rf"\b(?:resize|scale|shrink|enlarge)\w*{_OBJ}(?:\s+(?:down\s+|up\s+)?"
        rf"(?:by|to))?\s*{_NUM}\s*(?:%|percent)",
    ),
    ("resize_half", r"\bhalf\s+(?:the\s+)?size\b|\bhalve\b"),
    ("resize_double", r"\bdouble\s+(?:the\s+)?size\b"),
    ("crop_wh", rf"\bcrop\w*{_OBJ}\s+(?:to\s+)?(\d{{1,5}})\s*(?:x|×|\*|by)\s*(\d{{1,5}})"),
    ("crop_square", rf"\bcrop\w*{_OBJ}\s+(?:to\s+|into\s+)?(?:a\s+)?square\b|\bsquare\s+crop\b"),
    ("border", r"\b(?:border|frame)\b"),
    ("brighten", r"\b(?:brighten\w*|brighter|lighten\w*|lighter)\b"),
    ("darken", r"\b(?:darken\w*|darker)\b"),
    ("contrast_up", r"\b(?:increase|more|boost|raise|higher|enhance|add)\s+(?:the\s+)?contrast\b"),
    ("contrast_down", r"\b(?:decrease|reduce|less|lower)\s+(?:the\s+)?contrast\b"),
    ("thumbnail", r"\bthumbnail\b"),
    ("edges", r"\b(?:find\s+(?:the\s+)?edges|edge\s*detect\w*|edges)\b"),
    ("emboss", r"\bemboss\w*"),
]


def _border(text: str, start: int, end: int) -> Edit:
    before = _tokens(text[max(0, start - 40) : start])[-5:]
    after = _tokens(text[end : end + 30])[:5]
    seps = (",", ";", ".", "and", "then")
    cut = max((i for i, t in enumerate(before) if t in seps), default=-1)
    before = before[cut + 1 :]
    after = after[: next((i for i, t in enumerate(after) if t in seps), len(after))]
    color: tuple[RGB, str] | None = None
    width = 0.0
    for toks in (before, after):
        for i in range(len(toks)):
            if color is None and (c := _color_at(toks, i)):
                color = c
            if toks[i].isdigit() and not width:
                width = float(toks[i])
    if "thick" in before or "wide" in before:
        width = width or -2.0  # twice the default, decided once the image size is known
    return Edit(
        "border",
        a=width,
        color=color[0] if color else PALETTE["black"],
        color_name=color[1] if color else "black",
    )


def parse_edits(prompt: str) -> list[Edit]:
    """Edits recognised in ``prompt``, in the order they appear."""
    text = prompt.lower()
    found: list[tuple[int, Edit]] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _EDIT_PATTERNS:
        for m in re.finditer(pattern, text):
            if any(s < m.end() and m.start() < e for s, e in taken):
                continue
            edit = _make_edit(kind, m, text)
            if edit is None:
                continue
            taken.append((m.start(), m.end()))
            found.append((m.start(), edit))
    found.sort(key=lambda t: t[0])
    return [e for _, e in found]


def _num(m: re.Match[str], group: int, default: float) -> float:
    v = m.group(group)
    return float(v) if v else default


def _make_edit(kind: str, m: re.Match[str], text: str) -> Edit | None:
    if kind == "rotate":
        angle = _num(m, 1, 90.0)
        direction = (m.group(2) or "").replace(" ", "")
        ccw = direction.startswith(("counter", "anti", "ccw")) or direction.endswith("left")
        bare = m.group(1) is None and not direction
        if (
            bare
            and m.group(0).startswith("turn")
            and not re.match(r"\s*(?:it|the)", text[m.end() :])
        ):
            return None  # a bare "turn" is too common a word to mean rotate
        return Edit("rotate", a=-angle if ccw else angle)
    if kind == "flip":
        how = m.group(1) or ""
        return Edit("mirror" if how.startswith(("horizontal", "left")) else "flip")
    if kind == "mirror":
        how = m.group(1) or ""
        return Edit("flip" if how.startswith("vertical") else "mirror")
    if kind == "blur":
        return Edit("blur", a=min(50.0, _num(m, 1, 4.0)))
    if kind == "posterize":
        return Edit("posterize", a=max(1.0, min(8.0, _num(m, 1, 3.0))))
    if kind == "pixelate":
        return Edit("pixelate", a=min(256.0, _num(m, 1, 0.0)))  # 0: chosen from the size
    if kind in ("resize_wh", "crop_wh"):
        w, h = (max(1, min(MAX_SIDE, int(v))) for v in (m.group(1), m.group(2)))
        return Edit("resize" if kind == "resize_wh" else "crop", a=w, b=h)
    if kind == "resize_pct":
        return Edit("scale", a=max(1.0, min(400.0, _num(m, 1, 100.0))))
    if kind == "resize_half":
        return Edit("scale", a=50.0)
    if kind == "resize_double":
        return Edit("scale", a=200.0)
    if kind == "border":
        return _border(text, m.start(), m.end())
    return Edit(kind)
