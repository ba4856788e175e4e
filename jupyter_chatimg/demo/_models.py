"""What the demo models answer: a ``Reply`` (content tokens + images) for a request.

``demo-vision`` describes the pixels it receives; ``demo-image`` draws from the
prompt or edits a reference image. Both are deterministic: the same request
gives the same tokens and the same pixels.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import operator
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from PIL import Image

from ._chatopts import ToolCall
from ._describe import ImageStats, analyze, compare, describe
from ._draw import caption_card, draw_scene, scene_sentence
from ._edit import apply_edits
from ._facts import ChainFacts, DictFacts, ImageFacts
from ._faults import Faults, mdinject_text
from ._prompt import EDIT_HELP, parse_edits, parse_scene
from ._request import ChatRequest, ImageRef, decode_image
from ._structured import Facts, fill
from ._toolcalls import ToolResults, plan_calls, results_text, tool_results

DEMO_MODELS: tuple[str, ...] = ("demo-vision", "demo-image")
HUGE_DRAW_LIMIT = 16_000_000  # pixels; above this ``huge`` sends a flat PNG written by hand
_URI_PIECES = 8


@dataclass
class Reply:
    """One choice's content as the deltas to stream, plus images sent apart (OpenRouter)
    and the tool calls it makes (then ``finish_reason`` is ``tool_calls``)."""

    tokens: list[str]
    images: list[str] = field(default_factory=list)
    finish_reason: str = "stop"
    tool_calls: list[ToolCall] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The whole content."""
        return "".join(self.tokens)


def tokenize(text: str) -> list[str]:
    """Words with their leading whitespace; joining the pieces gives ``text`` back."""
    return re.findall(r"\s*\S+|\s+$", text)


def finalize(tokens: list[str], stop: list[str], max_tokens: int | None) -> tuple[list[str], str]:
    """Apply ``stop`` sequences then ``max_tokens``; returns the tokens and finish_reason."""
    text = "".join(tokens)
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    if hits:
        cut, kept, pos = min(hits), [], 0
        for t in tokens:
            if pos + len(t) > cut:
                if cut > pos:
                    kept.append(t[: cut - pos])
                break
            kept.append(t)
            pos += len(t)
        tokens = kept
    if max_tokens is not None and len(tokens) > max_tokens:
        return tokens[:max_tokens], "length"
    return tokens, "stop"


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def encode_png(img: Image.Image) -> bytes:
    """PNG bytes of ``img`` (deterministic for the same pixels and Pillow)."""
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=6)
    return buf.getvalue()


@lru_cache(maxsize=4)
def flat_png(side: int, rgb: tuple[int, int, int]) -> bytes:
    """A ``side``×``side`` single-colour PNG (1-bit palette), written row by row without
    the pixels in memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    comp = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then palette index 0 for every pixel
    parts = [comp.compress(row) for _ in range(side)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 3, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"PLTE", bytes(rgb))
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )


def markdown_image_tokens(uri: str, alt: str = "demo-image") -> list[str]:
    """A markdown image whose data URI is spread over several deltas."""
    step = max(64, -(-len(uri) // _URI_PIECES))
    return [f"![{alt}](", *(uri[i : i + step] for i in range(0, len(uri), step)), ")"]


# --- demo-vision ------------------------------------------------------------------------

_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.Mod: operator.mod,
    ast.FloorDiv: operator.floordiv,
}


def _arith(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _arith(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_arith(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _arith(node.left), _arith(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ValueError("exponent too large")
        return float(_OPS[type(node.op)](left, right))
    raise ValueError("not arithmetic")


def _arithmetic_answer(prompt: str) -> str | None:
    for m in re.finditer(r"[-(]*\d[\d.\s()+\-*/%^]*", prompt):
        expr = m.group(0).strip().replace("^", "**")
        if not re.search(r"\d\s*[-+*/%]", expr):
            continue
        try:
            value = _arith(ast.parse(expr, mode="eval"))
        except (SyntaxError, ValueError, ZeroDivisionError, OverflowError):
            continue
        shown = f"{value:g}" if value != int(value) or abs(value) >= 1e15 else str(int(value))
        return f"That one I can do: `{expr} = {shown}`."
    return None


def _no_image_text(req: ChatRequest) -> str:
    prompt = req.prompt.strip()
    lines = []
    hello = re.match(r"(hi|hello|hey|good (morning|afternoon|evening))\b", prompt, re.I)
    lines.append(
        ("Hello! " if hello else "")
        + "I am **demo-vision**, the offline demo model built into jupyter_chatimg. "
        "I do not understand language and I do not recognise objects: I measure the "
        "pixels of the images you attach (size, orientation, colours, brightness, "
        "contrast, transparency, and whether it looks like a photo or a drawing) and "
        "describe what I measured."
    )
    lines.append("")
    lines.append(
        "No image came with this message, so there is nothing to measure. Attach one "
        "(for example `%%chatimg --image img`), or ask `demo-image` to draw one."
    )
    if prompt:
        answer = _arithmetic_answer(prompt)
        n_words = len(prompt.split())
        lines.append("")
        lines.append(
            answer
            or f"About your message ({n_words} word{'s' if n_words != 1 else ''}): I cannot "
            "answer it; set `OPENAI_API_KEY` (or a base URL) to talk to a real model."
        )
    return "\n".join(lines)


_MD_DATA_IMAGE = re.compile(r"!\[[^\]]*\]\((data:image/[^)\s]+)\)")


def _history_image(req: ChatRequest) -> ImageRef | None:
    """The most recent image earlier in the conversation (sent, or drawn by us)."""
    for m in reversed(req.messages[:-1] if req.messages else []):
        found = [r for r in m.images if r.image is not None]
        if m.role == "assistant":
            found += [decode_image(u) for u in _MD_DATA_IMAGE.findall(m.text)]
        found = [r for r in found if r.image is not None]
        if found:
            return found[-1]
    return None


def _conversation_images(req: ChatRequest) -> list[ImageRef]:
    """Images sent earlier by the user, else the latest image in the conversation."""
    sent = [i for m in req.messages if m.role == "user" for i in m.images]
    if sent:
        return sent
    prior = _history_image(req)
    return [prior] if prior else []


def _ref_problem(ref: ImageRef) -> str:
    if ref.is_remote:
        host = urlsplit(ref.url).hostname or "an http(s) address"
        return (
            f"a link to `{host}`, which I cannot fetch: this demo works offline. "
            "Send the image itself (a `data:` URI) instead."
        )
    return f"I could not use it: {ref.error}."


def _stats_json(s: ImageStats) -> dict[str, Any]:
    return {
        "width": s.width,
        "height": s.height,
        "orientation": s.orientation,
        "mode": s.mode,
        "format": s.fmt,
        "colors": [{"name": n, "share": round(v, 3)} for n, v in s.colors],
        "brightness": round(s.brightness, 1),
        "contrast": round(s.contrast, 1),
        "transparent_share": round(s.transparent, 3),
        "kind": s.kind,
        "distinct_colors_in_sample": s.distinct,
    }


def vision_text(req: ChatRequest) -> str:
    """``demo-vision``'s reply to ``req``."""
    refs = req.last_user_images
    earlier = False
    if not refs:
        refs = _conversation_images(req)
        earlier = bool(refs)
    if not refs:
        text = _no_image_text(req)
        if req.response_format in ("json_object", "json_schema"):
            return json.dumps({"model": "demo-vision", "images": [], "note": text}, indent=1)
        return text
    measured: list[tuple[str, ImageStats]] = []
    blocks: list[str] = []
    several = len(refs) > 1
    for i, ref in enumerate(refs, 1):
        title = f"Image {i}" if several else None
        if ref.image is None:
            blocks.append(f"**{title or 'The image'}**: {_ref_problem(ref)}")
            continue
        stats = analyze(ref.image, ref.fmt, ref.n_bytes)
        measured.append((title or "The image", stats))
        blocks.append(describe(stats, title))
    if req.response_format in ("json_object", "json_schema"):
        return json.dumps(
            {"model": "demo-vision", "images": [_stats_json(s) for _, s in measured]}, indent=1
        )
    intro = "Here is what I measured in the pixels (offline demo model: no object recognition)."
    if earlier:
        intro += " No image came with this message, so I used the ones from earlier."
    parts = [intro, *blocks]
    if len(measured) > 1:
        parts.append(compare(measured))
    return "\n\n".join(parts)


def structured_text(req: ChatRequest, results: ToolResults | None = None) -> str:
    """JSON valid against the request's ``json_schema``, filled from what was measured on
    the conversation's images (and from tool results, when there are any)."""
    refs = req.last_user_images or _conversation_images(req)
    stats = [analyze(r.image, r.fmt, r.n_bytes) for r in refs if r.image is not None]
    facts: Facts = ImageFacts(stats)
    if results is not None:
        facts = ChainFacts(DictFacts(results.data()), facts)
    return json.dumps(fill(req.json_schema or {}, facts), ensure_ascii=False)


# --- demo-image -------------------------------------------------------------------------


@dataclass
class ImageOutcome:
    """What ``demo-image`` did: a sentence, and the PNG images it made (maybe none)."""

    sentence: str
    pngs: list[bytes]
    verb: str = "Generating"


def image_outcome(req: ChatRequest, huge: int | None) -> ImageOutcome:
    """Generate or edit, as the prompt and the attached images ask."""
    prompt = req.prompt
    edits = parse_edits(prompt)
    refs = req.last_user_images
    scene = parse_scene(prompt)
    if not refs and edits and not scene.groups:
        prior = _history_image(req)
        refs = [prior] if prior else []
    if refs:
        usable = [r for r in refs if r.image is not None]
        problems = [
            f"Image {i}: {_ref_problem(r)}" for i, r in enumerate(refs, 1) if r.image is None
        ]
        if not usable:
            return ImageOutcome(" ".join(problems) + " Nothing was edited.", [], "Editing")
        if not edits:
            hint = ""
            if re.search(r"\b(describe|what|caption|explain|tell)\b", prompt, re.I):
                hint = " To have an image described, use the model `demo-vision`."
            return ImageOutcome(
                "I found no edit I know in your instruction, so I returned no image "
                f"(I do not invent one). I can: {EDIT_HELP}.{hint}",
                [],
                "Editing",
            )
        pngs, sentences = [], []
        for i, ref in enumerate(usable, 1):
            assert ref.image is not None
            out, done = apply_edits(ref.image, edits)
            if huge:
                side = min(huge, int(HUGE_DRAW_LIMIT**0.5))
                out = out.resize((side, side), Image.Resampling.NEAREST)
            pngs.append(encode_png(out))
            label = f"Image {i}: " if len(usable) > 1 else ""
            sentences.append(
                f"{label}Applied: {', then '.join(done)}; the result is {out.width}×{out.height}."
            )
        return ImageOutcome(" ".join([*sentences, *problems]), pngs, "Editing")

    if huge and huge * huge > HUGE_DRAW_LIMIT:
        png = flat_png(huge, scene.background)
        return ImageOutcome(
            f"I made a flat {scene.background_name} {huge}×{huge} image "
            "(huge fault: too large to draw shapes on).",
            [png],
        )
    size = (huge, huge) if huge else None
    if not scene.recognised:
        card = caption_card(prompt, size or (512, 512))
        return ImageOutcome(
            "I found nothing I know how to draw in your prompt (I understand colours, "
            "shapes such as circle, square, rectangle, triangle, star, line, ellipse, heart, "
            "diamond, ring, counts, sizes, positions, a background colour and an image "
            "size), so the image is a card showing your prompt.",
            [encode_png(card)],
        )
    img = draw_scene(scene, size)
    sentence = scene_sentence(scene)
    if size:
        sentence = sentence.replace(f"{scene.width}×{scene.height}", f"{huge}×{huge}", 1)
    if scene.unused:
        sentence += f" Words I did not use: {', '.join(scene.unused)}."
    if edits:
        sentence += " (I also saw an edit instruction, but no image came with it: attach one.)"
    return ImageOutcome(sentence, [encode_png(img)])


def _progress(verb: str) -> str:
    steps = "".join(f"> Progress **{p}%**\n" for p in (25, 50, 75, 100))
    return f"> {verb} with `demo-image` (offline demo model)...\n{steps}> Done ✅\n\n"


# --- long replies -----------------------------------------------------------------------

_LOREM = [
    "The",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "while",
    "the",
    "demo",
    "server",
    "streams",
    "one",
    "word",
    "after",
    "another",
    "as",
    "fast",
    "as",
    "it",
    "can.",
]


@lru_cache(maxsize=8)
def long_tokens(n: int) -> tuple[str, ...]:
    """``n`` word tokens (cached: benchmarks ask for the same length repeatedly)."""
    return tuple((" " if i else "") + _LOREM[i % len(_LOREM)] for i in range(n))


def build_reply(
    req: ChatRequest, faults: Faults, port: int, publish: Callable[[bytes], str] | None = None
) -> Reply:
    """The content of one choice (all choices are the same) for ``req``.

    With the ``image-url`` fault, ``publish(png)`` stores an image and returns its http URL.
    """
    if faults.long:
        return Reply(tokens=list(long_tokens(faults.long)))
    extra = mdinject_text(port) if faults.mdinject else ""
    calls = plan_calls(req)
    if calls:
        return Reply(tokens=[], tool_calls=calls, finish_reason="tool_calls")
    results = tool_results(req)
    if req.json_schema is not None:
        return Reply(tokens=tokenize(structured_text(req, results)))
    if results is not None:
        return Reply(tokens=tokenize(results_text(results) + extra))
    if req.model == "demo-vision":
        hint = ""
        if req.has_tools:
            hint = (
                "\n\n_(Tools were offered; I call one when your message names it, e.g. "
                f"`{req.tools[0].name}`.)_"
            )
        return Reply(tokens=tokenize(vision_text(req) + hint + extra))
    outcome = image_outcome(req, faults.huge)
    by_url = faults.image_url is not None and publish is not None
    uris = [publish(p) if by_url and publish else png_data_uri(p) for p in outcome.pngs]
    if "image" in req.modalities:
        return Reply(tokens=tokenize(outcome.sentence + extra), images=uris)
    tokens: list[str] = []
    if uris:
        tokens += tokenize(_progress(outcome.verb))
        for uri in uris:
            tokens += [*markdown_image_tokens(uri), "\n\n"]
            if by_url:  # gateways add a download link: a link, not an image
                tokens += tokenize(f"[Download the image]({uri})\n\n")
    tokens += tokenize(outcome.sentence + extra)
    return Reply(tokens=tokens)
