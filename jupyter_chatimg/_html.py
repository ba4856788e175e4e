r"""Model text -> safe HTML, rendered in the kernel (DESIGN.md section 5).

The text is parsed by markdown-it-py (``_markdown.make_parser``: CommonMark,
tables, strikethrough, dollar math) and the HTML is cleaned by nh3 (the Rust
sanitiser ammonia) with an allow-list: no script, style, event handler,
iframe, object, form or ``<img>``; links only to http(s) and mailto, with
``rel="noopener noreferrer"``. The front end shows this HTML as it is: no
front end parses the model's markdown again, so safety does not depend on
any front end's parser.

* Code spans and code blocks keep their text exactly (escaped once).
* ``$...$`` / ``$$...$$`` math is kept as written (HTML-escaped, with its
  ``$`` delimiters) for the front end's MathJax. MathJax macros that make
  links, set styles or ids, or load code (``\href``, ``\style``, ``\class``,
  ``\cssId``, ``\data``, ``\require``, ``\unicode``, ``\bbox``, ``\url``,
  ``\mmlToken``, ``\setOptions``) get a zero-width joiner after their
  backslash everywhere outside code (MathJax typesets ``\begin{..}`` outside
  ``$`` too, and ignores code): they show as text, ordinary math is untouched.
* Images never become ``<img>``: ``LiveReply`` shows them as image outputs
  of their own, and an image left inside a text (see ``_render``) becomes a
  short label.
* ``trust_html=True`` lets raw HTML in the text through as written (the
  sanitiser is not run; markdown links and images follow the rules above).

:class:`IncrementalHtml` renders a growing text: top-level blocks that can
no longer change are rendered once and kept, so each update renders only the
last blocks (linear time for the whole stream). :func:`stable_end` says how
much of a streamed text can be shown without a structure that the next token
would undo.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.normalize_url import normalizeLink
from markdown_it.token import Token
from markdown_it.utils import OptionsDict

from ._markdown import make_parser, open_image_start

__all__ = [
    "ALLOWED_TAGS",
    "MATHJAX_MACROS",
    "IncrementalHtml",
    "Renderer",
    "escape",
    "plain_inline",
    "plain_text",
    "renderer",
    "stable_end",
]

ALLOWED_TAGS = frozenset(
    {
        *("p", "br", "hr", "em", "strong", "del", "s", "code", "pre", "a", "blockquote"),
        *("h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li"),
        *("table", "thead", "tbody", "tr", "th", "td", "span", "div"),
    }
)
_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}
_SCHEMES = {"http", "https", "mailto"}
_SAFE_LINK = re.compile(r"(?:https?:|mailto:)", re.IGNORECASE)
_ALIGN = re.compile(r"text-align:(left|center|right)\Z")

MATHJAX_MACROS = (
    "href",
    "style",
    "class",
    "cssId",
    "data",
    "require",
    "unicode",
    "bbox",
    "url",
    "mmlToken",
    "setOptions",
)
"""MathJax 3 macros that make links, set CSS, ids or data attributes, or load extensions."""
# An odd run of backslashes before one of them (an even run is "\\" + letters: no macro).
_MACRO_RE = re.compile(r"(?<!\\)((?:\\\\)*\\)(?=(?:" + "|".join(MATHJAX_MACROS) + r")(?![A-Za-z]))")
_ZWJ = "\u200d"
# MathJax does not typeset inside these (and code must stay byte for byte).
_CODE_RE = re.compile(r"<pre[\s>].*?</pre>|<code[\s>].*?</code>", re.DOTALL | re.IGNORECASE)

ImageLabel = Callable[[str, str], str]
"""(url, alt) -> the HTML shown in place of an image left inside a text."""
_LABEL = "jupyter_chatimg.label"


def escape(text: str) -> str:
    """Text made safe for HTML (``<``, ``>``, ``&`` and quotes)."""
    return html.escape(text, quote=True)


def _default_label(url: str, alt: str) -> str:
    return f"<em>[image: {escape(alt)}]</em>" if alt.strip() else "<em>[image]</em>"


def neutralise_macros(markup: str) -> str:
    """Break the MathJax macros that link, style or load code, outside code."""
    if "\\" not in markup:
        return markup
    out: list[str] = []
    pos = 0
    for m in _CODE_RE.finditer(markup):
        out.append(_MACRO_RE.sub(r"\1" + _ZWJ, markup[pos : m.start()]))
        out.append(m.group())
        pos = m.end()
    out.append(_MACRO_RE.sub(r"\1" + _ZWJ, markup[pos:]))
    return "".join(out)


def _clean(markup: str) -> str:
    return nh3.clean(
        markup,
        tags=set(ALLOWED_TAGS),
        attributes={k: set(v) for k, v in _ATTRIBUTES.items()},
        url_schemes=set(_SCHEMES),
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


# ------------------------------------------------------------------- rendering


def _math(delimiter: str, tag: str) -> Callable[..., str]:
    def render(self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: Any) -> str:
        body = escape(tokens[idx].content.strip())
        if tag == "div":
            return f"<div>{delimiter}\n{body}\n{delimiter}</div>\n"
        return f"<{tag}>{delimiter}{body}{delimiter}</{tag}>"

    return render


def _image(self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: Any) -> str:
    token = tokens[idx]
    label: ImageLabel = env.get(_LABEL) or _default_label
    return label(str(token.attrs.get("src", "")), token.content)


def _fix_tokens(tokens: list[Token]) -> None:
    """Links only to http(s)/mailto (others keep their text); table alignment without CSS."""
    for token in tokens:
        if token.type in ("th_open", "td_open") and token.attrs:
            m = _ALIGN.match(str(token.attrs.get("style", "")))
            token.attrs = {"align": m.group(1)} if m else {}
        elif token.type == "inline" and token.children:
            kept: list[Token] = []
            dropping = False
            for child in token.children:
                if child.type == "link_open":
                    href = str(child.attrs.get("href", "")).strip()
                    if _SAFE_LINK.match(href):
                        child.attrs["href"] = normalizeLink(href)
                        kept.append(child)
                    else:
                        dropping = True
                elif child.type == "link_close" and dropping:
                    dropping = False
                else:
                    kept.append(child)
            token.children = kept


class Renderer:
    """Markdown -> safe HTML with one configuration (``trust_html`` or not)."""

    def __init__(self, *, trust_html: bool = False) -> None:
        self.trust_html = trust_html
        md = make_parser(html=trust_html)
        md.add_render_rule("image", _image)
        md.add_render_rule("math_inline", _math("$", "span"))
        md.add_render_rule("math_inline_double", _math("$$", "span"))
        md.add_render_rule("math_block", _math("$$", "div"))
        md.add_render_rule("math_block_label", _math("$$", "div"))
        self.md: MarkdownIt = md

    def render(
        self, text: str, env: dict[str, Any] | None = None, label: ImageLabel | None = None
    ) -> str:
        """The safe HTML of ``text`` (a whole document). ``env`` collects link definitions."""
        env = {} if env is None else env
        if label is not None:
            env[_LABEL] = label
        try:
            tokens = self.md.parse(text, env)
            _fix_tokens(tokens)
            markup = self.md.renderer.render(tokens, self.md.options, env)
        finally:
            env.pop(_LABEL, None)
        if not self.trust_html:
            markup = _clean(markup)
        return neutralise_macros(markup)


_RENDERERS: dict[bool, Renderer] = {}


def renderer(trust_html: bool = False) -> Renderer:
    """The shared renderer for this setting (building one takes a few milliseconds)."""
    r = _RENDERERS.get(trust_html)
    if r is None:
        r = _RENDERERS[trust_html] = Renderer(trust_html=trust_html)
    return r


# ------------------------------------------------------------------- streaming


_BLANK_LINE = re.compile(r"\n[ \t]*\n")


def _finished_prefix(md: MarkdownIt, tail: str) -> int:
    """How much of ``tail`` is top-level blocks that no later text can change.

    A top-level block is finished when the next top-level block has begun on a
    complete line after a blank line: the blank line closed it (a paragraph,
    quote, table, heading), or the new block's first line did (a list or
    indented code that would otherwise go on). Open fences, math and HTML
    blocks run to the end of the text, and a list goes on past blank lines
    while its items do, so neither gives a new top-level block too early.
    """
    if _BLANK_LINE.search(tail) is None:
        return 0
    tokens: list[Token] = []
    md.block.parse(tail, md, {}, tokens)
    starts: list[int] | None = None
    best = 0
    for token in tokens:
        if token.level != 0 or token.nesting == -1 or not token.map or token.map[0] == 0:
            continue
        if starts is None:
            starts = [0, *(m.end() for m in re.finditer("\n", tail))]
        line = token.map[0]
        if line + 1 >= len(starts):
            continue  # its first line is not complete yet
        if tail[starts[line - 1] : starts[line] - 1].strip(" \t"):
            continue  # no blank line before it
        best = starts[line]
    return best


class IncrementalHtml:
    """The safe HTML of one growing markdown text; finished blocks are rendered once.

    ``html(text)`` takes the whole text so far (each call's text extends the
    previous one). Link reference definitions may change blocks before them:
    while streaming, a finished block keeps the rendering it had; the final
    call renders the whole text again when the text defines any.
    """

    def __init__(self, r: Renderer, label: ImageLabel | None = None) -> None:
        self._r = r
        self._label = label
        self._done = ""
        self._end = 0
        self._env: dict[str, Any] = {}

    @property
    def finished(self) -> int:
        """Where the blocks that may still change begin."""
        return self._end

    def html(self, text: str, *, final: bool = False) -> str:
        tail = text[self._end :]
        if not final:
            cut = _finished_prefix(self._r.md, tail)
            if cut:
                self._done += self._r.render(tail[:cut], self._env, self._label)
                self._end += cut
                tail = tail[cut:]
        env = {"references": dict(self._env.get("references", {}))}
        markup = self._r.render(tail, env, self._label) if tail.strip() else ""
        if final and self._end and env["references"]:
            return self._r.render(text, {}, self._label)  # definitions can reach back
        return self._done + markup


# "-", "==", "* *", "|---|:-:", "#", "12.", "```py", "~~", "[ref]: http...": a partial
# last line that the next characters could turn into a heading, a rule, a table head,
# a list, a fence or a link definition.
_HOLD_LINE = re.compile(
    r" {0,3}(?:[-=*_+:| \t]*|#{1,6}|\d{1,9}[.)]?|`{1,2}|`{3,}[^\n]*|~{1,2}|~{3,}[^\n]*"
    r"|\[[^\]\n]*\]:[^\n]*)\Z"
)


def stable_end(text: str, lo: int = 0) -> int:
    """How much of streamed ``text`` (from ``lo``) can be shown now.

    Held back: an image still arriving (no half ``data:`` URI), and an
    unfinished last line that could still become a setext underline, a
    thematic break, a table delimiter row, a heading, a list marker, a fence
    or a link definition (shown once its line is complete).
    """
    end = len(text)
    image = open_image_start(text, lo)
    if image is not None:
        end = image
    line = max(lo, text.rfind("\n", lo, end) + 1)
    if line < end and _HOLD_LINE.match(text, line, end) is not None:
        end = line
    return end


# ---------------------------------------------------------------------- plain


def plain_inline(md: MarkdownIt, text: str, image: ImageLabel | None = None) -> str:
    """One line (or paragraph) of inline markdown as plain text: no emphasis markers,
    code without backticks, math as written, links as ``text (url)``."""
    out: list[str] = []
    link: list[str] = []  # href of the open link, and where its text began
    start = 0
    for token in md.parseInline(text, {})[0].children or []:
        t = token.type
        if t in ("text", "code_inline", "html_inline"):
            out.append(token.content)
        elif t in ("softbreak", "hardbreak"):
            out.append("\n")
        elif t.startswith("math_inline"):
            out.append(token.markup + token.content + token.markup)
        elif t == "image":
            label = image(str(token.attrs.get("src", "")), token.content) if image else None
            out.append(label if label is not None else f"[image: {token.content}]")
        elif t == "link_open":
            link = [str(token.attrs.get("href", ""))]
            start = len(out)
        elif t == "link_close" and link:
            shown = "".join(out[start:])
            href = link[0]
            if href and href not in (shown, "mailto:" + shown) and _SAFE_LINK.match(href):
                out.append(f" ({href})")
            link = []
    return "".join(out)


def plain_text(md: MarkdownIt, text: str, limit: int = 200) -> str:
    """A short plain-text version of a markdown text (the ``text/plain`` of an output)."""
    source = text[: limit * 2]
    cut = open_image_start(source) if len(text) > len(source) else None
    if cut is not None:
        source = source[:cut]  # an image cut in two by the limit: not half a data: URI
    lines: list[str] = []
    bullets: list[str] = []  # the marker of each list we are in ("-", or "1." counting up)
    bullet = ""
    for token in md.parse(source, {}):
        if token.type == "bullet_list_open":
            bullets.append("-")
        elif token.type == "ordered_list_open":
            bullets.append(str(token.attrs.get("start", 1)))
        elif token.type in ("bullet_list_close", "ordered_list_close") and bullets:
            bullets.pop()
        elif token.type == "list_item_open" and bullets:
            mark = bullets[-1]
            if mark != "-":
                bullets[-1] = str(int(mark) + 1)
                mark += "."
            bullet = "  " * (len(bullets) - 1) + mark + " "
        elif token.type == "inline":
            text = plain_inline(md, token.content, lambda url, alt: "[image]")
            lines.append(bullet + text)
            bullet = ""
        elif token.type in ("fence", "code_block", "math_block"):
            lines.append(token.content.rstrip("\n"))
    plain = "\n".join(line for line in lines if line)
    if len(plain) > limit or len(text) > len(source):
        plain = plain[: limit - 3].rstrip() + "..."
    return plain
