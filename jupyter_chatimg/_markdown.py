r"""Model output is data: find the images in reply markdown and make it safe to show.

Public functions: :func:`find_markdown_images`, :func:`image_urls_in_markdown`
and :func:`safe_markdown` (the text to send to the front end as
``text/markdown``). Pure functions, standard library only.

Why a scanner of our own and not markdown-it-py: the question is not "what HTML
does CommonMark make of this" but "what could *any* front end make of it", and
no library answers that. JupyterLab renders with marked, which differs from
CommonMark where it matters (link destinations, ``~del~`` and ``*em*`` lexed
across ``code spans``, bare URLs that swallow backticks, list items that end
early or take lazy lines), and before marked runs, JupyterLab's ``removeMath``
(ported below from ``@jupyterlab/rendermime/src/latex.ts``) cuts ``$...$``,
``\begin{x}...\end{x}`` and ``\\(...\\)`` out of the text, which can cut
a code span or a fence in two. So the text is read twice, **B** as CommonMark +
GFM tables (block structure after commonmark.js) and **A** as JupyterLab sees it
after removeMath, and only what both readings call code *and* no renderer
quirk can reach is left byte for byte: fences at column 0 (or at the content
column of list items without lazy lines or tabs, closed), and single-line code
spans with nothing before them that could pair their backticks differently.
Everywhere else:

* ``<`` is neutralised: ``&lt;`` where both readings see text, ``\lt`` in A's
  math, ``<`` + U+200B (invisible) where a reading may see code;
* images become ``image_label(url)`` or ``[image: alt]``; any other ``![``
  gets a backslash, so no image can form whatever a parser decides;
* links, definitions and ``](`` leading to a scheme other than http(s),
  mailto, tel, ftp lose their link (dangerous links keep their text);
* MathJax macros that set CSS, ids or links (``\style``, ``\href``, ...:
  JupyterLab loads the html TeX package without "safe") are broken, and
  quotes in math are escaped (JupyterLab pastes math back unescaped, also
  into attributes such as a link title).

The result goes through the same function again until nothing changes (one
extra pass as a rule), so the guarantee is checked on the output itself.
Linear time: regular expressions find the candidate characters, Python looks
at those. Text that would make JupyterLab's own backtracking regexes (and our
port of them) run for long is shown fully escaped instead.
"""

from __future__ import annotations

import html
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["MarkdownImage", "find_markdown_images", "image_urls_in_markdown", "safe_markdown"]


@dataclass(frozen=True)
class MarkdownImage:
    """One markdown image found in a text (offsets of the whole construct)."""

    start: int
    end: int
    alt: str
    url: str


# --------------------------------------------------------------------------- text


_NORM_RE = re.compile(r"\r\n?|[\u2028\u2029\x00]")
_ZWSP = "\u200b"


def _normalise(text: str) -> tuple[str, list[int]]:
    """Line ends to ``\\n`` (JS regexes also break lines at U+2028/9); NUL to U+FFFD.

    Returns the text and the normalised positions where a ``\\r\\n`` lost a char.
    """
    if not _NORM_RE.search(text):
        return text, []
    drops: list[int] = []
    out: list[str] = []
    last = 0
    shift = 0
    for m in _NORM_RE.finditer(text):
        out.append(text[last : m.start()])
        s = m.group()
        if s == "\r\n":
            drops.append(m.start() - shift)
            shift += 1
            out.append("\n")
        elif s == "\x00":
            out.append("\ufffd")
        else:
            out.append("\n")
        last = m.end()
    out.append(text[last:])
    return "".join(out), drops


_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_ENTITY_RE = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_ESCAPE_RE = re.compile(r"\\([!-/:-@\[-`{-~])")


def _group1(m: re.Match[str]) -> str:
    return m.group(1)


def _unescape(s: str) -> str:
    """What a renderer makes of a destination, title or label: escapes and entities."""
    if "\\" in s:
        s = _ESCAPE_RE.sub(_group1, s)
    if "&" in s:
        s = html.unescape(s)
    return s


def _literal(s: str) -> str:
    """Markdown that renders exactly ``s`` as plain text, whatever surrounds it."""
    s = " ".join(_unescape(s).split())
    return "".join("\\" + c if c in _ASCII_PUNCT else c for c in s)


def _label_key(label: str) -> str:
    return " ".join(label.split()).casefold()


# ----------------------------------------------------------------- JupyterLab math


_MATHSPLIT = re.compile(
    r"(\$\$?|\\(?:begin|end)\{[a-z]*\*?\}|\\[{}$]|[{}]|(?:\n\s*)+|@@\d+@@|\\\\(?:\(|\)|\[|\]))",
    re.IGNORECASE,
)
_JL_FENCE = re.compile(r"^(`{3,}|~{3,})[^`\n]*\n[\s\S]*?^\1`*$", re.MULTILINE)
_JL_CODE = re.compile(r"(^|[^\\])(`+)([^\n]*?[^`\n])\2(?!`)", re.MULTILINE)
_NL2 = re.compile(r"\n.*\n")
_MATH_OUTSIDE = re.compile(
    r"\$\$?|\\(?:begin|end)\{[a-z]*\*?\}|\\[{}$]|@@\d+@@|\\\\(?:\(|\)|\[|\])", re.IGNORECASE
)


def _dollars(text: str, a: int, b: int) -> Iterable[int]:
    d = text.find("$", a, b)
    while d >= 0:
        yield d
        d = text.find("$", d + 1, b)


def _math_chunks(text: str) -> list[tuple[int, int]]:
    """Spans that JupyterLab's ``removeMath`` takes out before markdown runs.

    Same tokens and rules as latex.ts; outside math only the tokens that can
    start math (or be stored as math, "@@1@@") are looked at, for speed.
    """
    if "$" not in text and "\\" not in text and "@@" not in text:
        return []
    work = text
    if "`" in text or "~~~" in text:
        protected: list[tuple[int, int]] = [m.span() for m in _JL_FENCE.finditer(text)]
        protected += [m.span() for m in _JL_CODE.finditer(text)]
        dollars = sorted({d for a, b in protected for d in _dollars(text, a, b)})
        if dollars:
            parts: list[str] = []
            prev = 0
            for d in dollars:
                parts.append(text[prev:d])
                parts.append("\x01")  # protected: not a delimiter
                prev = d + 1
            parts.append(text[prev:])
            work = "".join(parts)
    chunks: list[tuple[int, int]] = []
    pos = 0
    n = len(work)
    while pos < n:
        m = _MATH_OUTSIDE.search(work, pos)
        if m is None:
            break
        tok = m.group()
        pos = m.end()
        if tok[:1] == "@":
            chunks.append(m.span())
            continue
        if tok in ("$", "$$"):
            end = tok
        elif tok in ("\\\\(", "\\\\["):
            end = "\\\\)" if tok[-1] == "(" else "\\\\]"
        elif tok[1:6] == "begin":
            end = "\\end" + tok[6:]
        else:
            continue
        start = m.start()
        last: int | None = None  # end of a closing token seen while braces were open
        last_pos = 0
        braces = 0
        closed = False
        for t in _MATHSPLIT.finditer(work, pos):
            tok = t.group()
            if tok[:1] == "@":
                chunks.append(t.span())
            elif tok == end:
                if braces:
                    last, last_pos = t.end(), t.end()
                else:
                    chunks.append((start, t.end()))
                    pos = t.end()
                    closed = True
                    break
            elif tok[:1] == "\n" and _NL2.search(tok):
                if last is not None:
                    chunks.append((start, last))
                    pos = last_pos
                else:
                    pos = t.end()
                closed = True
                break
            elif tok == "{":
                braces += 1
            elif tok == "}" and braces:
                braces -= 1
        if not closed:
            if last is not None:
                chunks.append((start, last))
            break
    return chunks


_STRUCTURAL = re.compile(r"[\n`\[\]()|]")


def _chunks_inert(text: str, chunks: list[tuple[int, int]]) -> bool:
    """Whether cutting the chunks out cannot change code or link structure.

    Inside one line and without backticks, brackets, parentheses or "|", a
    chunk can neither end a code span, a destination or a table cell nor join
    lines; escapes and entities inside it end inside it too.
    """
    if "`" not in text and "~~~" not in text:
        return True  # no code anywhere in either reading
    return not any(_STRUCTURAL.search(text, a, b) for a, b in chunks)


def _filler(text: str, chunks: list[tuple[int, int]]) -> str:
    """The text as JupyterLab's markdown parser sees it, kept at the same length."""
    if not chunks:
        return text
    parts: list[str] = []
    last = 0
    for a, b in sorted(chunks):
        if a < last:
            a = last
        if b <= a:
            continue
        parts.append(text[last:a])
        parts.append("@" * (b - a))  # lines joined, as JupyterLab's "@@0@@" joins them
        last = b
    parts.append(text[last:])
    return "".join(parts)


# ---------------------------------------------------------------------- blocks


class _Block:
    __slots__ = (
        "closed",
        "fence_char",
        "fence_len",
        "fence_offset",
        "first_child",
        "html_type",
        "kind",
        "lazy",
        "lines",
        "marker_offset",
        "padding",
        "span",
        "sure",
    )

    def __init__(self, kind: str) -> None:
        self.kind = kind  # doc quote list item para table heading fence code
        self.lines: list[tuple[int, int]] = []
        self.fence_char = ""
        self.fence_len = 0
        self.fence_offset = 0
        self.marker_offset = 0
        self.padding = 0
        self.first_child = False
        self.html_type = 0
        self.lazy = False
        self.span = [0, 0]
        self.sure = False
        self.closed = False


_CONTAINERS = frozenset(("doc", "quote", "item"))
_MAX_DEPTH = 40
_PREFIX = re.compile(r"(?:[ \t]*(?:>|(?:[*+-]|\d{1,9}[.)])(?=[ \t]|$)))*[ \t]*")
_ACCEPTS_LINES = frozenset(("para", "table", "fence", "code", "html"))
_BLOCK_TAGS = (
    "address|article|aside|base|basefont|blockquote|body|caption|center|col|colgroup|dd|"
    "details|dialog|dir|div|dl|dt|fieldset|figcaption|figure|footer|form|frame|frameset|"
    "h[123456]|head|header|hr|html|iframe|legend|li|link|main|menu|menuitem|nav|noframes|ol|"
    "optgroup|option|p|param|search|section|summary|table|tbody|td|tfoot|th|thead|title|tr|"
    "track|ul"
)
_ATTR = r"""(?:\s+[a-zA-Z_:][a-zA-Z0-9_.:-]*(?:\s*=\s*(?:[^"'=<>`\x00-\x20]+|'[^']*'|"[^"]*"))?)"""
_HTML_OPEN = [
    re.compile(r"<(?:script|pre|textarea|style)(?:\s|>|$)", re.IGNORECASE),
    re.compile(r"<!--"),
    re.compile(r"<[?]"),
    re.compile(r"<![A-Za-z]"),
    re.compile(r"<!\[CDATA\["),
    re.compile(r"</?(?:" + _BLOCK_TAGS + r")(?:\s|/?>|$)", re.IGNORECASE),
    re.compile(r"(?:<[A-Za-z][A-Za-z0-9-]*" + _ATTR + r"*\s*/?>|</[A-Za-z][A-Za-z0-9-]*\s*>)\s*$"),
]
_MARKED_HTML = re.compile(r"<(?:[a-z].*>|!--)", re.IGNORECASE)
_HTML_CLOSE = [
    re.compile(r"</(?:script|pre|textarea|style)>", re.IGNORECASE),
    re.compile(r"-->"),
    re.compile(r"\?>"),
    re.compile(r">"),
    re.compile(r"\]\]>"),
]
_MAYBE_SPECIAL = re.compile(r"[#`~*+_=<>0-9|:-]")
_ATX = re.compile(r"#{1,6}(?:[ \t]+|$)")
_FENCE_OPEN = re.compile(r"`{3,}(?!.*`)|~{3,}")
_PARA_SPECIAL = re.compile(r"^(?:[ ]{0,3}(?:[#`~*+_=<>|:0-9\t-]|$)|[ ]*\t|[ \t]*$)", re.MULTILINE)
_FENCE_LIKE = re.compile(r"^[ ]{0,3}[`~]{3}|^[ ]*\t", re.MULTILINE)
_MARKED_CLOSE = re.compile(r"[~`]* *")
_FENCE_CLOSE = re.compile(r"(?:`{3,}|~{3,})(?=[ \t]*$)")
_SETEXT = re.compile(r"(?:=+|-+)[ \t]*$")
_HR = re.compile(r"(?:(?:\*[ \t]*){3,}|(?:_[ \t]*){3,}|(?:-[ \t]*){3,})$")
_BULLET = re.compile(r"[*+-]")
_ORDERED = re.compile(r"(\d{1,9})([.)])")
_TABLE_DELIM = re.compile(r"\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_TABLE_END_LIST = re.compile(r"(?:[*+-]|1[.)])[ \t]")


def _split_cells(row: str) -> int:
    """How many cells a GFM table row has (pipes escaped with a backslash don't split)."""
    row = row.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    n = 1
    i = 0
    while True:
        j = row.find("|", i)
        if j < 0:
            return n
        k = j
        while k > 0 and row[k - 1] == "\\":
            k -= 1
        if (j - k) % 2 == 0:
            n += 1
        i = j + 1


@dataclass
class _Doc:
    """Block structure of one reading of the text (absolute offsets)."""

    inline: list[tuple[str, list[tuple[int, int]]]] = field(default_factory=list)
    code: list[tuple[int, int]] = field(default_factory=list)
    weak: list[tuple[int, int]] = field(default_factory=list)
    fences: list[tuple[int, int]] = field(default_factory=list)  # sure fences, whole
    tab_at: int = 1 << 62  # first line with a tab among its indentation or markers


class _BlockParser:
    """Line-by-line block parsing after commonmark.js (plus marked's GFM tables)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.doc = _Doc()
        self.stack: list[_Block] = [_Block("doc")]
        self.line = ""
        self.base = 0
        self.offset = 0
        self.column = 0
        self.partial_tab = False
        self.next_nonspace = 0
        self.next_nonspace_col = 0
        self.indent = 0
        self.indented = False
        self.blank = False
        self.all_closed = True
        self.diverged = False

    # -- cursor
    def find_next_nonspace(self) -> None:
        line = self.line
        i = self.offset
        cols = self.column
        n = len(line)
        while i < n:
            c = line[i]
            if c == " ":
                i += 1
                cols += 1
            elif c == "\t":
                i += 1
                cols += 4 - (cols % 4)
            else:
                break
        self.blank = i >= n
        self.next_nonspace = i
        self.next_nonspace_col = cols
        self.indent = cols - self.column
        self.indented = self.indent >= 4

    def advance_next_nonspace(self) -> None:
        self.offset = self.next_nonspace
        self.column = self.next_nonspace_col
        self.partial_tab = False

    def advance_offset(self, count: int, columns: bool) -> None:
        line = self.line
        n = len(line)
        while count > 0 and self.offset < n:
            c = line[self.offset]
            if c == "\t":
                to_tab = 4 - (self.column % 4)
                if columns:
                    self.partial_tab = to_tab > count
                    step = min(count, to_tab)
                    self.column += step
                    self.offset += 0 if self.partial_tab else 1
                    count -= step
                else:
                    self.partial_tab = False
                    self.column += to_tab
                    self.offset += 1
                    count -= 1
            else:
                self.partial_tab = False
                self.offset += 1
                self.column += 1
                count -= 1

    def peek(self, i: int) -> str:
        return self.line[i] if i < len(self.line) else ""

    # -- tree
    @property
    def tip(self) -> _Block:
        return self.stack[-1]

    def finalize(self) -> None:
        b = self.stack.pop()
        if b.kind in ("para", "heading") and b.lines:
            self.doc.inline.append((b.kind, b.lines))
        elif b.kind == "table":
            self.doc.inline.extend(("table", [ln]) for ln in b.lines)
        elif b.kind == "fence":
            # marked re-lexes list items and quotes from text it cut out its own
            # way (a lazy line can end an item early, tabs count differently):
            # only a fence at column 0 outside any container is sure
            if b.sure and not b.closed and len(self.stack) > 1:
                b.sure = False  # nested: closed ones only
            if b.sure and any(_MATH_DELIM.search(self.text, x, y) for x, y in b.lines):
                b.sure = False
            if not b.sure:  # renderers may end this fence elsewhere: pairs shift after it
                self.diverged = True
            if b.sure:
                self.doc.code.extend(b.lines)
                self.doc.fences.append((b.span[0], b.span[1]))
            else:
                self.doc.weak.extend(b.lines)
        elif b.kind == "code":
            # whether a line is indented code depends on list rules that renderers
            # do not share (marked keeps more lines in a list item): never trusted
            self.doc.weak.extend(b.lines)

    def close_to(self, depth: int) -> None:
        while len(self.stack) > depth:
            self.finalize()

    def add_child(self, kind: str) -> _Block:
        while self.tip.kind not in _CONTAINERS and self.tip.kind != "list":
            self.finalize()
        while (self.tip.kind == "list") != (kind == "item"):
            if self.tip.kind == "list":
                self.finalize()
            else:  # an item needs a list around it
                self.stack.append(_Block("list"))
        parent = self.tip
        parent.first_child = True
        b = _Block(kind)
        self.stack.append(b)
        return b

    def add_line(self) -> None:
        if self.partial_tab:
            self.offset += 1
            self.partial_tab = False
        self.tip.lines.append((self.base + self.offset, self.base + len(self.line)))

    # -- continuation of open blocks: 0 matched, 1 not matched, 2 line consumed
    def cont(self, b: _Block) -> int:
        k = b.kind
        if k == "quote":
            if not self.indented and self.peek(self.next_nonspace) == ">":
                self.advance_next_nonspace()
                self.advance_offset(1, False)
                if self.peek(self.offset) in (" ", "\t"):
                    self.advance_offset(1, True)
                return 0
            return 1
        if k == "item":
            if self.blank:
                if not b.first_child:
                    return 1
                self.advance_next_nonspace()
                return 0
            if self.indent >= b.marker_offset + b.padding:
                self.advance_offset(b.marker_offset + b.padding, True)
                return 0
            return 1
        if k == "list":
            return 0
        if k == "fence":
            rest = self.line[self.next_nonspace :]
            m = _FENCE_CLOSE.match(rest)
            closes = (
                self.indent <= 3
                and rest[:1] == b.fence_char
                and m is not None
                and len(m.group()) >= b.fence_len
            )
            marked_closes = (
                self.indent <= 3
                and rest.startswith(b.fence_char * b.fence_len)
                and _MARKED_CLOSE.fullmatch(rest, b.fence_len) is not None
            )
            if closes != marked_closes:  # from here on fences pair differently
                self.diverged = True
                b.sure = False
            b.span[1] = self.base + len(self.line)
            if len(self.stack) > 2 and "\t" in self.line[: self.next_nonspace]:
                b.sure = False  # tabs inside list items: marked counts them its own way
            if closes:
                b.closed = True
                self.finalize()
                return 2
            i = b.fence_offset
            while i > 0 and self.peek(self.offset) in (" ", "\t"):
                self.advance_offset(1, True)
                i -= 1
            return 0
        if k == "code":
            if self.indent >= 4:
                self.advance_offset(4, True)
                return 0
            if self.blank:
                self.advance_next_nonspace()
                return 0
            return 1
        if k == "html":
            return 1 if self.blank and b.html_type >= 6 else 0
        if k == "table":
            return 1 if self.blank else 0
        if k == "para":
            return 1 if self.blank else 0
        return 1  # heading

    # -- block starts: 0 none, 1 container, 2 leaf
    def start(self, container: _Block, depth: int) -> int:
        line = self.line
        nn = self.next_nonspace
        rest = line[nn:]
        c0 = rest[:1]
        if not self.indented:
            if len(self.stack) > _MAX_DEPTH and c0 in ">*+-0123456789":
                return 0  # deeper nesting is read as text: linear time, and not trusted
            if c0 == ">":
                self.advance_next_nonspace()
                self.advance_offset(1, False)
                if self.peek(self.offset) in (" ", "\t"):
                    self.advance_offset(1, True)
                self.close_to(depth)
                self.add_child("quote")
                return 1
            if c0 == "#" and _ATX.match(rest):
                self.advance_next_nonspace()
                self.close_to(depth)
                self.add_child("heading")
                self.add_line()
                self.finalize()
                return 3
            if c0 in ("`", "~"):
                m = _FENCE_OPEN.match(rest)
                if m is not None:
                    n = len(m.group())
                    self.close_to(depth)
                    b = self.add_child("fence")
                    b.fence_char = c0
                    b.fence_len = n
                    b.fence_offset = self.indent
                    # sure: at column 0, or at the content column of list items
                    # that had no lazy line and no tab (marked agrees there)
                    b.sure = (
                        self.indent == 0
                        and not self.diverged
                        and "\t" not in line[:nn]
                        and all(
                            c.kind in ("doc", "list") or (c.kind == "item" and not c.lazy)
                            for c in self.stack[:-1]
                        )
                    )
                    b.span = [self.base, self.base + len(line)]
                    if not b.sure:
                        self.diverged = True
                    self.advance_next_nonspace()
                    self.advance_offset(n, False)
                    # the info string is not code: treat it as text
                    info = (self.base + self.offset, self.base + len(line))
                    self.doc.inline.append(("info", [info]))
                    return 3
            if c0 == "<":
                # marked also ends a list item (instead of a lazy line) at "<tag ...>"
                lazy = not self.all_closed and self.tip.kind == "para"
                for t, rx in enumerate(_HTML_OPEN, 1):
                    hit = rx.match(rest) is not None
                    if t == 7:
                        hit = (hit and container.kind != "para") or (
                            lazy and _MARKED_HTML.match(rest) is not None
                        )
                    if hit:
                        self.close_to(depth)
                        self.add_child("html").html_type = t
                        return 2
            if container.kind == "para" and _TABLE_DELIM.match(rest) and "|" in rest:
                head = container.lines[-1] if container.lines else None
                if head is not None:
                    head_text = self.text[head[0] : head[1]]
                    if "|" in head_text and _split_cells(head_text) == _split_cells(rest):
                        container.lines.pop()
                        self.close_to(depth)
                        if self.tip.kind == "para":
                            self.finalize()
                        table = self.add_child("table")
                        table.lines.append(head)
                        self.advance_next_nonspace()
                        self.add_line()
                        return 3
            if (
                container.kind == "para"
                and c0 in ("=", "-")
                and _SETEXT.match(rest)
                and self.para_has_text(container)
            ):
                self.close_to(depth)
                self.finalize()
                return 3
            if c0 in ("*", "_", "-") and _HR.match(rest):
                self.close_to(depth)
                self.add_child("hr")
                self.finalize()
                return 3
            item = self.list_marker(container)
            if item is not None:
                self.close_to(depth)
                b = self.add_child("item")
                b.marker_offset, b.padding = item
                b.lazy = "\t" in line[: self.offset + 1]  # a tab: not a clean item
                return 1
        elif self.tip.kind != "para" and not self.blank:
            self.advance_offset(4, True)
            self.close_to(depth)
            self.add_child("code")
            return 2
        return 0

    def para_has_text(self, para: _Block) -> bool:
        s = "\n".join(self.text[a:b] for a, b in para.lines)
        return bool(s[_skip_defs(s, 0, None) :].strip())

    def list_marker(self, container: _Block) -> tuple[int, int] | None:
        if self.indent >= 4:
            return None
        line = self.line
        rest = line[self.next_nonspace :]
        m = _BULLET.match(rest)
        if m is None:
            m = _ORDERED.match(rest)
            if m is None or (container.kind == "para" and int(m.group(1)) != 1):
                return None
        mlen = len(m.group())
        after = self.next_nonspace + mlen
        nextc = self.peek(after)
        if nextc not in ("", " ", "\t"):
            return None
        if container.kind == "para" and not line[after:].strip(" \t"):
            return None
        marker_offset = self.indent
        self.advance_next_nonspace()
        self.advance_offset(mlen, True)
        start_col = self.column
        start_off = self.offset
        while True:
            self.advance_offset(1, True)
            nextc = self.peek(self.offset)
            if not (self.column - start_col < 5 and nextc in (" ", "\t")):
                break
        blank_item = self.offset >= len(line)
        spaces = self.column - start_col
        if spaces >= 5 or spaces < 1 or blank_item:
            padding = mlen + 1
            self.column = start_col
            self.offset = start_off
            self.partial_tab = False
            if self.peek(self.offset) in (" ", "\t"):
                self.advance_offset(1, True)
        else:
            padding = mlen + spaces
        return marker_offset, padding

    def table_ends(self) -> bool:
        """marked ends a table at an hr, heading, quote, fence or list start."""
        rest = self.line[self.next_nonspace :]
        return bool(
            self.indented
            or _HR.match(rest)
            or _ATX.match(rest)
            or rest[:1] == ">"
            or _FENCE_OPEN.match(rest)
            or _TABLE_END_LIST.match(rest)
        )

    # -- one line
    def line_in(self, line: str, base: int) -> None:
        self.line = line
        self.base = base
        self.offset = 0
        self.column = 0
        self.partial_tab = False
        stack = self.stack
        if "\t" in line and not (len(stack) == 2 and stack[1].kind == "fence"):
            prefix = _PREFIX.match(line)
            if prefix is not None and "\t" in prefix.group():
                # marked expands tabs in lists and quotes and then cuts the text
                # after them at offsets of the unexpanded text: characters go
                # missing there, so nothing after this is sure any more
                self.diverged = True
                self.doc.tab_at = min(self.doc.tab_at, base)
        depth = 1
        while depth < len(stack):
            b = stack[depth]
            self.find_next_nonspace()
            r = self.cont(b)
            if r == 2:
                return
            if r == 1:
                break
            depth += 1
        all_closed = depth == len(stack)
        self.all_closed = all_closed
        container = stack[depth - 1]
        matched_leaf = container.kind in ("fence", "code", "html")
        if container.kind == "table" and all_closed:
            self.find_next_nonspace()
            if self.table_ends():
                self.close_to(depth - 1)
                depth -= 1
                container = self.tip
            else:
                self.advance_next_nonspace()
                self.add_line()
                return
        while not matched_leaf:
            self.find_next_nonspace()
            if not self.indented and not _MAYBE_SPECIAL.match(self.line, self.next_nonspace):
                self.advance_next_nonspace()
                break
            r = self.start(container, depth)
            if r == 0:
                self.advance_next_nonspace()
                break
            if r == 3:
                return
            container = self.tip
            depth = len(self.stack)
            if r == 2:
                matched_leaf = True
        if not all_closed and not self.blank and self.tip.kind == "para":
            self.add_line()  # lazy continuation
            for c in self.stack:
                c.lazy = True
            return
        self.close_to(depth)
        if container is not self.tip:
            container = self.tip
        if container.kind in _ACCEPTS_LINES:
            self.add_line()
            t = container.html_type
            if 1 <= t <= 5 and _HTML_CLOSE[t - 1].search(self.line, self.offset):
                self.finalize()
        elif self.offset < len(self.line) and not self.blank:
            self.add_child("para")
            self.advance_next_nonspace()
            self.add_line()

    def bulk(self, pos: int, rx: re.Pattern[str], strip: bool) -> int:
        """Add the lines from ``pos`` up to the next line ``rx`` finds to the tip as is."""
        text = self.text
        m = rx.search(text, pos)
        stop = m.start() if m is not None else len(text)
        if stop <= pos:
            return pos
        tip = self.tip
        lines = tip.lines
        while pos < stop:
            j = text.find("\n", pos, stop)
            end = stop if j < 0 else j
            a = pos
            if strip:
                while text[a] in " \t":
                    a += 1
            lines.append((a, end))
            pos = end + 1
        if tip.kind == "fence":
            tip.span[1] = lines[-1][1]
        return min(pos, stop)

    def parse(self) -> _Doc:
        text = self.text
        pos = 0
        n = len(text)
        stack = self.stack
        while pos <= n:
            if (
                pos < n
                and text[pos] == "\n"
                and (
                    len(stack) == 1
                    or (len(stack) == 2 and stack[1].kind in ("para", "table"))
                    or (len(stack) == 2 and stack[1].kind == "html" and stack[1].html_type >= 6)
                )
            ):
                # fast path: an empty line at top level ends a paragraph
                self.close_to(1)
                pos += 1
                continue
            if len(stack) == 2 and pos < n:
                # fast paths: plain lines of a top-level paragraph or fence
                kind = stack[1].kind
                if kind == "para":
                    pos = self.bulk(pos, _PARA_SPECIAL, True)
                elif kind == "fence":
                    pos = self.bulk(pos, _FENCE_LIKE, False)
                if pos >= n:
                    break
            j = text.find("\n", pos)
            if j < 0:
                j = n
            if j == n and pos == n and n > 0:
                break
            self.line_in(text[pos:j], pos)
            pos = j + 1
        self.close_to(1)
        self.stack.pop()
        self.doc.code.sort()
        return self.doc


# ---------------------------------------------------------------------- inline


_LABEL_RE = re.compile(r"\[((?:[^\\\[\]]|\\.){0,999})\]", re.DOTALL)
_DEF_HEAD = re.compile(r"[ \t]{0,3}\[((?:[^\\\[\]]|\\.){0,999})\]:[ \t]*\n?[ \t]*", re.DOTALL)
_TITLE_RE = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|\((?:[^()\\]|\\.)*\)", re.DOTALL)
_WS_TO_EOL = re.compile(r"[ \t]*(?:\n|\Z)")
_INLINE_SPECIAL = re.compile(r"[\\`\[\]]|!\[")
_BACKTICKS = re.compile(r"`+")
_UNSURE_CODE = re.compile(r"[|~*_\n$]|\\(?:begin|end)\{|\\\\[()\[\]]")
# math delimiters: a math pre-pass that ignores code (nbconvert's mistune) may
# pair one inside code with one outside and cut the code in two
_MATH_DELIM = re.compile(r"\$|\\(?:begin|end)\{|\\\\[()\[\]]")


_DEST_STOP = re.compile(r"[\x00-\x20()\\]")


def _parse_dest(s: str, i: int) -> tuple[int, str] | None:
    """A link destination at ``s[i]``: (end, destination as written) or None."""
    n = len(s)
    if i < n and s[i] == "<":
        j = i + 1
        while j < n:
            c = s[j]
            if c == ">":
                return j + 1, s[i + 1 : j]
            if c in "<\n":
                return None
            j += 2 if c == "\\" else 1
        return None
    depth = 0
    j = i
    while True:
        m = _DEST_STOP.search(s, j)
        if m is None:
            j = n
            break
        j = m.start()
        c = s[j]
        if c == "\\":
            j += 2 if j + 1 < n and s[j + 1] in _ASCII_PUNCT else 1
            continue
        if c == "(":
            depth += 1
            if depth > 10:  # CommonMark allows 32; deeper ones are caught by the nets
                return None
        elif c == ")":
            if depth == 0:
                break
            depth -= 1
        else:  # space or control character
            break
        j += 1
    if depth != 0:
        return None
    return j, s[i:j]


def _skip_ws(s: str, i: int, newline: bool = True) -> tuple[int, bool]:
    """Skip spaces and tabs and at most one line end; (end, saw any)."""
    n = len(s)
    j = i
    seen_nl = False
    while j < n:
        c = s[j]
        if c in " \t":
            j += 1
        elif c == "\n" and newline and not seen_nl:
            seen_nl = True
            j += 1
        else:
            break
    return j, j > i


def _parse_def(s: str, i: int) -> tuple[int, str, str, int] | None:
    """A link reference definition at ``s[i]``: (end, label, dest, dest_start)."""
    m = _DEF_HEAD.match(s, i)
    if m is None or not m.group(1).strip():
        return None
    j = m.end()
    d = _parse_dest(s, j)
    if d is None:
        return None
    dest_end, dest = d
    if dest_end == j and not s.startswith("<>", j):
        return None
    k, saw = _skip_ws(s, dest_end)
    if saw:
        t = _TITLE_RE.match(s, k)
        if t is not None and "\n\n" not in t.group():
            e = _WS_TO_EOL.match(s, t.end())
            if e is not None:
                return e.end(), m.group(1), dest, j
    e = _WS_TO_EOL.match(s, dest_end)
    if e is None:
        return None
    return e.end(), m.group(1), dest, j


def _skip_defs(s: str, i: int, out: list[tuple[int, int, str, str, int]] | None) -> int:
    while True:
        d = _parse_def(s, i)
        if d is None:
            return i
        if out is not None:
            out.append((i, d[0], d[1], d[2], d[3]))
        i = d[0]
        if i >= len(s):
            return i


@dataclass
class _Found:
    """What one reading found: all offsets absolute."""

    code: list[tuple[int, int]] = field(default_factory=list)
    weak: list[tuple[int, int]] = field(default_factory=list)  # code spans holding a "|"
    images: list[tuple[int, int, str, str]] = field(default_factory=list)
    links: list[tuple[int, int, str, str]] = field(default_factory=list)
    defs: list[tuple[int, str]] = field(default_factory=list)  # (offset of "[", dest)
    pending: int | None = None  # start of an unfinished image at the very end
    parens: set[int] = field(default_factory=set)  # "(" that open a destination
    spans: list[tuple[int, int, int, int]] = field(default_factory=list)  # sure-looking
    info: list[tuple[int, int]] = field(default_factory=list)  # fence info strings


class _Inline:
    """One block's inline content: its lines joined with ``\\n``, mapped back."""

    def __init__(self, text: str, kind: str, lines: list[tuple[int, int]]) -> None:
        self.kind = kind
        self.lines = lines
        self.s = "\n".join(text[a:b] for a, b in lines)
        self.starts: list[int] = []
        pos = 0
        for a, b in lines:
            self.starts.append(pos)
            pos += b - a + 1

    def abs(self, i: int) -> int:
        k = bisect_right(self.starts, i) - 1
        return self.lines[k][0] + (i - self.starts[k])

    def abs_end(self, i: int) -> int:
        return self.lines[0][0] if i == 0 else self.abs(i - 1) + 1

    def cut(self, start: int) -> _Inline | None:
        """The same block from local offset ``start`` on (after definitions)."""
        if start >= len(self.s):
            return None
        a = self.abs(start)
        lines = [(max(x, a), y) for x, y in self.lines if y >= a]
        blk = _Inline.__new__(_Inline)
        blk.kind = self.kind
        blk.lines = lines
        blk.s = self.s[start:]
        blk.starts = []
        pos = 0
        for x, y in lines:
            blk.starts.append(pos)
            pos += y - x + 1
        return blk


def _scan_inline(blk: _Inline, refs: dict[str, str], found: _Found, text_end: int) -> None:
    """Code spans, links and images of one block (CommonMark's bracket algorithm)."""
    s = blk.s
    n = len(s)
    runs: dict[int, list[int]] = {}
    if "`" in s:
        for bt in _BACKTICKS.finditer(s):
            runs.setdefault(len(bt.group()), []).append(bt.start())
    openers: list[tuple[int, bool, bool]] = []  # (position, is image, active)
    unsure = False  # once marked may pair backticks differently, it may for the rest
    floor = 0  # "[" openers below this index are inactive
    last_paren = s.rfind(")")
    i = 0
    while True:
        m = _INLINE_SPECIAL.search(s, i)
        if m is None:
            return
        p = m.start()
        c = s[p]
        if c == "\\":
            i = p + 2 if p + 1 < n and s[p + 1] in _ASCII_PUNCT else p + 1
            continue
        if c == "`":
            q = m.end() if m.group() != "`" else p + 1
            while q < n and s[q] == "`":
                q += 1
            run = runs.get(q - p, [])
            k = bisect_left(run, q)
            if k < len(run):
                close = run[k]
                span = (blk.abs(q), blk.abs_end(close))
                body = s[q:close]
                unsure = unsure or bool(_UNSURE_CODE.search(body)) or s[p - 1 : p] == "~"
                if not unsure:
                    found.spans.append((blk.abs(p), span[0], span[1], span[1] + q - p))
                elif blk.kind != "table" or "|" not in body:
                    # a table cell splits at "|", even in code; marked lexes ~del~
                    # and *em* (across ``double`` spans) first, so a "~", "*" or "_"
                    # inside may close something begun before the span; and its
                    # text rule swallows a run of backticks and tildes as one; a
                    # span over lines depends on list rules renderers do not share
                    found.weak.append(span)
                i = close + q - p
            else:
                i = q
            continue
        if c == "[":
            openers.append((p, False, True))
            i = p + 1
            continue
        if c == "!":
            openers.append((p, True, True))
            i = p + 2
            continue
        i = p + 1  # "]"
        if not openers:
            continue
        op, is_image, active = openers.pop()
        if len(openers) < floor:
            floor = len(openers)
            active = active and is_image
        if not active:
            continue
        inner = s[op + (2 if is_image else 1) : p]
        end = -1
        dest = ""
        if p + 1 < n and s[p + 1] == "(":
            j, _ = _skip_ws(s, p + 2)
            d = _parse_dest(s, j)
            if d is not None:
                dend, dest = d
                k, saw = _skip_ws(s, dend)
                if k < n and s[k] == ")":
                    end = k + 1
                elif saw:
                    t = _TITLE_RE.match(s, k)
                    if t is not None and "\n\n" not in t.group():
                        k2, _ = _skip_ws(s, t.end())
                        if k2 < n and s[k2] == ")":
                            end = k2 + 1
            if (
                end < 0
                and is_image
                and blk.abs_end(n) >= text_end
                and (last_paren < p + 2 or (d is not None and d[0] >= n))
            ):
                found.pending = blk.abs(op)
        if end < 0:
            lm = _LABEL_RE.match(s, p + 1)
            if lm is not None and lm.group(1).strip():
                key = _label_key(lm.group(1))
                if key in refs:
                    end, dest = lm.end(), refs[key]
            else:
                key = _label_key(inner)
                if inner.strip() and key in refs:
                    end = p + 3 if s.startswith("[]", p + 1) else p + 1
                    dest = refs[key]
        if end < 0:
            continue
        a, b = blk.abs(op), blk.abs_end(end)
        if s[p + 1 : p + 2] == "(":
            found.parens.add(blk.abs(p + 1))
        if is_image:
            found.images.append((a, b, inner, dest))
        else:
            found.links.append((a, b, inner, dest))
            floor = len(openers)  # links cannot hold links: earlier "[" go inactive
        i = end


def _read(text: str) -> _Found:
    """One full reading (blocks, definitions, inline constructs) of ``text``."""
    doc = _BlockParser(text).parse()
    found = _Found(code=doc.code, weak=doc.weak)
    blocks: list[_Inline] = []
    refs: dict[str, str] = {}
    for kind, lines in doc.inline:
        if kind == "info":
            found.info.extend(lines)
        blk: _Inline | None = _Inline(text, kind, lines)
        if kind == "para" and blk is not None and blk.s.startswith("["):
            defs: list[tuple[int, int, str, str, int]] = []
            start = _skip_defs(blk.s, 0, defs)
            for a, _b, label, dest, _ds in defs:
                refs.setdefault(_label_key(label), dest)
                found.defs.append((blk.abs(blk.s.index("[", a)), dest))
            if start:
                blk = blk.cut(start)
        if blk is not None:
            blocks.append(blk)
    text_end = len(text.rstrip())
    for blk in blocks:
        if _INLINE_SPECIAL.search(blk.s):
            _scan_inline(blk, refs, found, text_end)
    # Renderers group lines into paragraphs differently (marked's lists): a
    # backtick that is not a delimiter of a sure span, outside a sure fence, may
    # pair with a later one there, so no span after it is sure.
    found.spans.sort()
    delims = {a for a, _b, _c, _d in found.spans} | {c for _a, _b, c, _d in found.spans}
    fences = _Ranges(doc.fences)
    stray = min(len(text), doc.tab_at)
    for m in _BACKTICKS.finditer(text):
        p = m.start()
        if p not in delims and p not in fences:
            stray = p
            break
    for a, b, c, _d in found.spans:
        (found.code if a < stray else found.weak).append((b, c))
    found.code.sort()
    found.images.sort()
    found.links.sort()
    return found


# ---------------------------------------------------------------------- policy


_SAFE_SCHEMES = frozenset(("http", "https", "mailto", "tel", "ftp"))
_SCHEME_RE = re.compile(r"[^/?#]*?:")
_INVISIBLE_RE = re.compile(
    "[\x00-\x20\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e"
    "\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufeff\uffa0]"
)


def _dangerous(dest: str) -> bool:
    """A link destination with a scheme other than http(s), mailto, tel or ftp."""
    d = _INVISIBLE_RE.sub("", _unescape(dest)).lower()
    m = _SCHEME_RE.match(d)
    return m is not None and m.group()[:-1] not in _SAFE_SCHEMES


_IMG_URL_RE = re.compile(r"(?:https?://|data:image/[a-z0-9.+-]+;base64,)", re.IGNORECASE)
# MathJax macros (html, bbox, require, unicode packages) that set CSS, ids, links
_MACRO_RE = re.compile(
    r"\\(?=(?:style|class|cssId|href|data|require|bbox|unicode|mmlToken|url|"
    r"setOptions)(?![A-Za-z]))"
)
_NET_RE = re.compile(r"!\[|\]\([ \t\n]*<?|\[(?:[^\\\[\]\n]|\\.){0,999}\]:[ \t\n]*<?")
_CLOSE_PAREN = re.compile(r"\)")
_URL_WORD = re.compile(r"(?:https?://|ftp://|www\.)[^\s<]*", re.IGNORECASE)
_DEST_END = re.compile(r"[\s)>]")


def _escaped(text: str, p: int) -> bool:
    """Whether ``text[p]`` follows an odd number of backslashes."""
    k = p
    while k > 0 and text[k - 1] == "\\":
        k -= 1
    return (p - k) % 2 == 1


def _dest_prefix(text: str, i: int) -> str:
    """The start of a link destination at ``text[i]``, as a renderer would decode it."""
    m = _DEST_END.search(text, i, i + 200)
    return _unescape(text[i : m.start() if m else i + 200])


_SAFE_AFTER_LT = frozenset(" \t\n0123456789=-<" + _ZWSP)


def _merge(ranges: Iterable[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out, [r[0] for r in out]


class _Ranges:
    """A set of positions given as ranges, for membership tests."""

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        self.ranges, self.starts = _merge(ranges)

    def __contains__(self, p: int) -> bool:
        k = bisect_right(self.starts, p) - 1
        return k >= 0 and p < self.ranges[k][1]


def _fallback_label(alt: str) -> str:
    alt = _literal(alt)
    return "\\[image: " + alt + "\\]" if alt else "\\[image\\]"


_PENDING_LABEL = "\\[image …\\]"


class _Readings:
    """Both readings of one text, and what they agree is code."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.chunks = _math_chunks(text)
        self.b = _read(text)
        self.filled = _filler(text, self.chunks)
        inert = not self.chunks or _chunks_inert(text, self.chunks)
        self.a = self.b if inert else _read(self.filled)
        both = (self.b,) if self.a is self.b else (self.b, self.a)
        self.both = both
        self.b_code = _Ranges(self.b.code)
        self.a_code = self.b_code if self.a is self.b else _Ranges(self.a.code)
        self.math = _Ranges(self.chunks)
        self.weak = _Ranges(w for f in both for w in f.weak)

    def sure(self, p: int) -> bool:
        """Whether ``text[p]`` is code in both readings (left byte for byte)."""
        return p in self.b_code and p in self.a_code


def _construct_edits(
    r: _Readings, image_label: Callable[[str], str | None] | None
) -> list[tuple[int, int, str]]:
    """Images become labels, dangerous links their text, dangerous definitions text."""
    edits: list[tuple[int, int, str]] = []
    spans: list[tuple[int, int, str]] = []
    seen: set[tuple[int, int]] = set()
    for f in r.both:
        for s0, e0, alt, dest in f.images:
            if (s0, e0) not in seen:
                seen.add((s0, e0))
                url = _unescape(dest).strip()
                label = image_label(url) if image_label is not None else None
                spans.append((s0, e0, label if label is not None else _fallback_label(alt)))
        for s0, e0, inner, dest in f.links:
            if (s0, e0) not in seen and _dangerous(dest):
                seen.add((s0, e0))
                spans.append((s0, e0, _literal(inner)))
        for off, dest in f.defs:
            if _dangerous(dest):
                edits.append((off, off, "\\"))  # the definition becomes visible text
        if f.pending is not None:
            spans.append((f.pending, len(r.text), _PENDING_LABEL))
    spans.sort(key=lambda t: (t[0], -t[1]))
    cur: tuple[int, int, str] | None = None
    for s0, e0, rep in spans:
        if cur is not None and s0 < cur[1]:
            if e0 > cur[1]:  # readings overlap: keep the first, show the rest as text
                cur = (cur[0], e0, cur[2] + _literal(r.text[cur[1] : e0]))
            continue
        if cur is not None:
            edits.append(cur)
        cur = (s0, e0, rep)
    if cur is not None:
        edits.append(cur)
    return edits


def _lt_edits(r: _Readings) -> list[tuple[int, int, str]]:
    """Every "<" that some reading may see outside code can no longer start a tag."""
    edits: list[tuple[int, int, str]] = []
    text = r.text
    p = text.find("<")
    while p >= 0:
        bc = p in r.b_code
        ac = p in r.a_code
        am = not ac and p in r.math
        weak = p in r.weak
        nxt = text[p + 1 : p + 2]
        unsafe = nxt == "" or nxt not in _SAFE_AFTER_LT
        if bc and (ac or am) and not weak:
            pass  # code everywhere (JupyterLab escapes math itself)
        elif not bc and not ac and not am and not weak:
            if unsafe:
                edits.append((p, p + 1, "&lt;"))  # text everywhere
        elif unsafe and am and not bc:
            edits.append((p, p + 1, "\\lt "))  # JupyterLab's math, text elsewhere
        elif unsafe:
            edits.append((p + 1, p + 1, _ZWSP))  # code in one reading only
        p = text.find("<", p + 1)
    return edits


def _net_edits(r: _Readings) -> list[tuple[int, int, str]]:
    """Safety nets that do not depend on parsing links the way every renderer does.

    marked (JupyterLab's parser) ends destinations differently from CommonMark,
    so no "![" outside code may start an image, no "](" or "[x]:" may lead to a
    dangerous scheme, and nothing may take a backtick away from a code span.
    """
    edits: list[tuple[int, int, str]] = []
    text = r.text
    parens = {p for f in r.both for p in f.parens}
    ticks: list[int] | None = None
    closing: list[int] = []
    for m in _NET_RE.finditer(text):
        p = m.start()
        if r.sure(p) or _escaped(text, p):
            continue
        g = m.group()
        if g == "![":
            edits.append((p, p, "\\"))
        elif _dangerous(_dest_prefix(text, m.end())):
            edits.append((p + 1, p + 1, "\\") if g[0] == "]" else (p, p, "\\"))
        elif g[0] == "]" and p + 1 not in parens:
            # marked may end a destination at a later ")": one holding a backtick
            # takes it away from the code span it opens
            if ticks is None:
                ticks = [t.start() for t in _BACKTICKS.finditer(text)]
                closing = [c.start() for c in _CLOSE_PAREN.finditer(text)]
            t = bisect_right(ticks, p)
            c = bisect_right(closing, p)
            if (
                t < len(ticks)
                and c < len(closing)
                and ticks[t] < closing[c]
                and "\n\n" not in text[p : min(closing[c], p + 10000)]
            ):
                edits.append((p + 1, p + 1, "\\"))
    # marked's bare-URL autolinks run to the next space or "<", backticks included
    for view in (text, r.filled) if r.chunks else (text,):
        for m in _URL_WORD.finditer(view):
            p = m.start()
            if "`" in m.group() and not r.sure(p):
                k = text.find(":", p, p + 6) if m.group()[0] in "hHfF" else p + 3
                if k >= 0:
                    edits.append((k, k, "\\"))
    # markdown-it tries tables before fences: a "|" in a fence's info string could
    # make the fence a table head, and its content markdown
    for a0, b0 in r.b.info:
        q = text.find("|", a0, b0)
        while q >= 0:
            edits.append((q, q + 1, "&#124;"))
            q = text.find("|", q + 1, b0)
    return edits


def _jupyterlab_edits(r: _Readings) -> list[tuple[int, int, str]]:
    """What JupyterLab's math step and MathJax would otherwise turn into markup."""
    edits: list[tuple[int, int, str]] = []
    text = r.text
    # it throws on an "@@9@@" that its removeMath did not make ("@\@9@@")
    q = text.find("\\@")
    while q >= 0:
        if not r.sure(q) and not _escaped(text, q):
            edits.append((q, q + 2, "&#64;"))
        q = text.find("\\@", q + 2)
    # it pastes math back into the HTML without escaping quotes: a chunk that
    # ends up in an attribute (a link title, a fence's language) breaks out
    for a0, b0 in r.chunks:
        q = text.find('"', a0, b0)
        while q >= 0:
            if not r.sure(q):
                edits.append((q, q + 1, "&quot;"))
            q = text.find('"', q + 1, b0)
    # MathJax macros that set styles, ids or links, and entities that spell them
    if "\\" in text:
        for m in _MACRO_RE.finditer(text):
            if not r.sure(m.start()):
                edits.append((m.start() + 1, m.start() + 1, _ZWSP))
    if "&" in text:
        for m in _ENTITY_RE.finditer(text):
            if r.sure(m.start()):
                continue
            ch = html.unescape(m.group())
            if len(ch) == 1 and ch.isascii() and ch.isalpha():
                edits.append((m.start(), m.end(), ch))
            elif ch == "\\":
                edits.append((m.start(), m.end(), "\\\\"))
    return edits


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    """Replace (start, end) spans and insert at start == end; spans win over what they hold."""
    out: list[str] = []
    pos = 0
    for s0, e0, rep in sorted(set(edits), key=lambda e: (e[0], e[0] - e[1])):
        if s0 < pos:
            continue  # inside a span already replaced
        out.append(text[pos:s0])
        out.append(rep)
        pos = e0
    out.append(text[pos:])
    return "".join(out)


def _one_pass(text: str, image_label: Callable[[str], str | None] | None, trust_html: bool) -> str:
    r = _Readings(text)
    edits = _construct_edits(r, image_label)
    if not trust_html:
        edits += _lt_edits(r)
    edits += _net_edits(r)
    edits += _jupyterlab_edits(r)
    return _apply(text, edits) if edits else text


_HARD = {
    "&": "&amp;",
    "<": "&lt;",
    "[": "\\[",
    "]": "\\]",
    "\\": "\\\\" + _ZWSP,
    "`": "\\`",
    "~": "\\~",
    "$": "\\$",
    "@": "&#64;",
}
_HARD_RE = re.compile(r"[&<\[\]\\`~$@]")


def _hard_safe(text: str) -> str:
    """Last resort: no markup at all, no code, no math (text stays readable)."""
    return _HARD_RE.sub(lambda m: _HARD[m.group()], text)


_COST_LIMIT = 30_000_000
_FENCE_LINE = re.compile(r"^(`{3,}|~{3,})([^\n]*)", re.MULTILINE)
_ONLY_TICKS = re.compile(r"`*")


def _fence_cost(text: str) -> int:
    """Characters JupyterLab's fence regex scans: openers look ahead for a closer."""
    lines = [(m.start(), m.group(1), m.group(2)) for m in _FENCE_LINE.finditer(text)]
    if len(lines) > 1000:
        return _COST_LIMIT + 1
    n = len(text)
    cost = 0
    i = 0
    while i < len(lines):
        pos, run, rest = lines[i]
        i += 1
        if "`" in rest or text.find("\n", pos) < 0:
            continue  # not an opener: the regex fails at once
        tried = [run] if run[0] == "`" else ["~" * k for k in range(len(run), 2, -1)]
        for fence in tried:
            j = i
            while j < len(lines):
                other, orest = lines[j][1], lines[j][2]
                if run[0] == "`":
                    hit = other[0] == "`" and len(other) >= len(fence) and not orest.strip(" ")
                else:
                    hit = other == fence and _ONLY_TICKS.fullmatch(orest) is not None
                if hit:
                    break
                j += 1
            if j < len(lines):
                cost += lines[j][0] - pos
                i = j + 1
                break
            cost += n - pos
    return cost


def _jupyterlab_cost(text: str) -> int:
    """A bound on the steps of JupyterLab's removeMath regexes on ``text``.

    Its code-span regex backtracks: per line, about the line's length times the
    sum of the squares of its backtick runs; its fence regex scans ahead from
    every fence line that has no closer. Text over the limit would stall our
    port of them, and JupyterLab itself, so it is shown fully escaped instead.
    """
    if "`" not in text and "~~~" not in text:
        return 0
    cost = _fence_cost(text)
    line_start = -1
    line_len = 0
    squares = 0
    for m in _BACKTICKS.finditer(text):
        a = m.start()
        if a >= line_start + line_len + 1 or line_start < 0:
            cost += line_len * squares
            line_start = text.rfind("\n", 0, a) + 1
            e = text.find("\n", a)
            line_len = (len(text) if e < 0 else e) - line_start
            squares = 0
        r = m.end() - a
        if r > 1 or a == 0 or text[a - 1] != "\\":  # "\`" cannot open there
            squares += r * r
    return cost + line_len * squares


# ---------------------------------------------------------------------- public


def find_markdown_images(text: str) -> list[MarkdownImage]:
    """Every markdown image outside code, inline or by reference, in document order.

    Offsets are in ``text``; ``url`` is the destination with escapes and entities
    resolved (without ``<>`` or title). Plain links are not images. An image whose
    closing parenthesis has not arrived yet (a streamed prefix) is not reported.
    """
    norm, drops = _normalise(text)
    out: list[MarkdownImage] = []
    for s0, e0, alt, dest in _read(norm).images:
        a = s0 + bisect_left(drops, s0)
        b = e0 + bisect_left(drops, e0)
        out.append(MarkdownImage(a, b, alt, _unescape(dest)))
    return out


def image_urls_in_markdown(text: str) -> list[str]:
    """URLs of the markdown images a client should fetch or decode, in order, once each.

    Only ``http://``, ``https://`` and ``data:image/...;base64,...``.
    """
    seen: set[str] = set()
    out: list[str] = []
    for img in find_markdown_images(text):
        url = img.url.strip()
        if _IMG_URL_RE.match(url) and url not in seen:
            seen.add(url)
            out.append(url)
    return out


def safe_markdown(
    text: str,
    *,
    image_label: Callable[[str], str | None] | None = None,
    trust_html: bool = False,
) -> str:
    """The reply text made safe to send to a front end as ``text/markdown``.

    Markdown images become ``image_label(url)`` (or ``[image: alt]`` when it
    returns None), raw HTML outside code is shown as text, links to schemes other
    than http(s), mailto, tel and ftp keep only their text, and code spans and
    code blocks stay byte for byte. ``trust_html=True`` keeps raw HTML (images and
    dangerous links are still replaced). Partial (streamed) text is fine: an
    image whose destination is still arriving shows as a placeholder.
    """
    out, _ = _normalise(text)
    if _jupyterlab_cost(out) > _COST_LIMIT:
        return _hard_safe(out)
    for _ in range(6):
        nxt = _one_pass(out, image_label, trust_html)
        if nxt == out:
            return out
        out = nxt
    return _hard_safe(out)
