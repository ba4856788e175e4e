"""How a batch shows its progress, and the table of its results at the end.

An ipywidgets bar in a notebook (replaced by a table of results, thumbnails
and escaped text, when the batch ends), a tqdm-style line on stderr elsewhere.
"""

from __future__ import annotations

import base64
import html
import io
import sys
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

from ._errors import ChatImgError, one_line
from ._images import decode_data_uri
from ._messages import history_text
from ._result import ChatResult

__all__ = ["Progress", "input_thumb", "make_progress", "results_table"]

THUMBNAIL = 96
"""Side in pixels of the thumbnails in the results table."""
TABLE_ROWS = 100
"""Rows the results table shows; the rest are summed up in one line
(``results.to_pandas()`` has every row)."""
_TEXT_IN_TABLE = 400


class Progress(Protocol):
    def update(
        self, done: int, failed: int, elapsed: float, *, total: int | None = None, note: str = ""
    ) -> None: ...

    def close(
        self,
        results: list[ChatResult],
        thumbs: list[str | None],
        elapsed: float,
        *,
        resumed: Collection[int] = (),
    ) -> None: ...


class _NoProgress:
    def update(
        self, done: int, failed: int, elapsed: float, *, total: int | None = None, note: str = ""
    ) -> None:
        pass

    def close(
        self,
        results: list[ChatResult],
        thumbs: list[str | None],
        elapsed: float,
        *,
        resumed: Collection[int] = (),
    ) -> None:
        pass


def _count(done: int, total: int | None) -> str:
    return f"{done}/{total}" if total is not None else f"{done}/?"


class _TextProgress:
    """``chatimg: 12/64 [####      ] 1 failed, 1.2 s`` on stderr, rewritten in place."""

    def __init__(self, total: int | None, stream: Any = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.update(0, 0, 0.0)

    def _line(self, done: int, failed: int, elapsed: float, note: str = "") -> str:
        width = 24
        filled = width * done // max(1, self.total or done or 1)
        bar = "#" * filled + " " * (width - filled)
        tail = f", {failed} failed" if failed else ""
        tail += f", {note}" if note else ""
        return f"chatimg: {_count(done, self.total)} [{bar}]{tail}, {elapsed:.1f} s"

    def update(
        self, done: int, failed: int, elapsed: float, *, total: int | None = None, note: str = ""
    ) -> None:
        if total is not None:
            self.total = total
        self.stream.write("\r" + self._line(done, failed, elapsed, note))
        self.stream.flush()

    def close(
        self,
        results: list[ChatResult],
        thumbs: list[str | None],
        elapsed: float,
        *,
        resumed: Collection[int] = (),
    ) -> None:
        failed = sum(1 for r in results if r.error is not None)
        self.total = len(results)
        self.stream.write("\r" + self._line(len(results), failed, elapsed) + "\n")
        shown = 0
        for i, r in enumerate(results):
            if r.error is not None:
                shown += 1
                if shown > TABLE_ROWS:
                    self.stream.write(f"  ... {failed - TABLE_ROWS} more failed items\n")
                    break
                self.stream.write(f"  item {i}: {one_line(str(r.error), 200)}\n")
        self.stream.flush()


class _WidgetProgress:
    """An ipywidgets bar and label, replaced by the results table when done."""

    def __init__(self, total: int | None) -> None:
        import ipywidgets as widgets
        from IPython.display import display

        self.total = total
        self.bar = widgets.IntProgress(
            value=0, min=0, max=max(1, total or 1), description="chatimg"
        )
        self.label = widgets.Label(value=_count(0, total))
        self.box = widgets.HBox([self.bar, self.label])
        self.display_id = uuid.uuid4().hex
        display(self.box, display_id=self.display_id)  # type: ignore[no-untyped-call]

    def update(
        self, done: int, failed: int, elapsed: float, *, total: int | None = None, note: str = ""
    ) -> None:
        if total is not None:
            self.total = total
        self.bar.max = max(1, self.total if self.total is not None else done + 1)
        self.bar.value = done
        self.bar.bar_style = "warning" if failed else ""
        tail = f", {failed} failed" if failed else ""
        tail += f", {note}" if note else ""
        self.label.value = f"{_count(done, self.total)}{tail}, {elapsed:.1f} s"

    def close(
        self,
        results: list[ChatResult],
        thumbs: list[str | None],
        elapsed: float,
        *,
        resumed: Collection[int] = (),
    ) -> None:
        from IPython.display import update_display

        for widget in (self.box, self.bar, self.label):
            widget.close()  # children are not closed with their box
        table = results_table(results, thumbs, elapsed=elapsed, resumed=resumed)
        update_display(table, raw=True, display_id=self.display_id)  # type: ignore[no-untyped-call]


def _thumb_of_image(image: Any) -> str | None:
    try:
        small = image.copy()
        small.thumbnail((THUMBNAIL, THUMBNAIL))
        if small.mode not in ("1", "L", "LA", "P", "RGB", "RGBA"):
            small = small.convert("RGBA" if "A" in small.getbands() else "RGB")
        buf = io.BytesIO()
        small.save(buf, format="PNG")
    except Exception:  # a thumbnail is decoration: an odd image just has none
        return None
    return base64.b64encode(buf.getvalue()).decode("ascii")


def input_thumb(body: Mapping[str, Any]) -> str | None:
    """A thumbnail of the first ``data:`` image of the last user message."""
    messages = body.get("messages") or []
    content = messages[-1].get("content") if messages else None
    if not isinstance(content, list):
        return None
    for part in content:
        url = (part.get("image_url") or {}).get("url", "") if isinstance(part, Mapping) else ""
        if isinstance(url, str) and url.startswith("data:"):
            try:
                return _thumb_of_image(decode_data_uri(url, label="batch item"))
            except ChatImgError:
                return None
    return None


def _img(data: str | None) -> str:
    if not data:
        return ""
    return f'<img src="data:image/png;base64,{data}" alt="" style="max-width:{THUMBNAIL}px">'


def results_table(
    results: Sequence[ChatResult],
    thumbs: Sequence[str | None] = (),
    *,
    elapsed: float | None = None,
    resumed: Collection[int] = (),
) -> dict[str, str]:
    """A display bundle (``text/html`` + ``text/plain``) of a batch's results.

    One row per item (the first ``TABLE_ROWS``): the input's thumbnail
    (``thumbs``, base64 PNGs), the reply text (escaped: model output is never
    HTML here), the first returned image and any error; items read back from
    a journal (``resumed``) say so. Images in the text are shown as markers.
    """
    failed = sum(1 for r in results if r.error is not None)
    took = f" in {elapsed:.1f} s" if elapsed is not None else ""
    count = f"{len(results)} item" + ("" if len(results) == 1 else "s")
    summary = f"{count}, {len(results) - failed} ok, {failed} failed{took}"
    if resumed:
        summary += f" ({len(resumed)} read back from the journal)"
    rows = []
    plain = [summary]
    for i, r in enumerate(results):
        if i >= TABLE_ROWS:
            more = f"… {len(results) - TABLE_ROWS} more items: results.to_pandas() has every row"
            rows.append(f'<tr><td colspan="4">{html.escape(more)}</td></tr>')
            plain.append(more)
            break
        thumb = thumbs[i] if i < len(thumbs) else None
        text = " ".join(history_text(r.text).split())
        short = text if len(text) <= _TEXT_IN_TABLE else text[: _TEXT_IN_TABLE - 1] + "…"
        out_thumb = _thumb_of_image(r.images[0]) if r.images else None
        more = f" (+{len(r.images) - 1})" if len(r.images) > 1 else ""
        note = ""
        if r.error is not None:
            note = "⚠ " + one_line(str(r.error), 200)
        elif r.cached:
            note = "from cache"
        elif i in resumed:
            note = "from the journal"
        rows.append(
            "<tr>"
            f'<td style="text-align:right;vertical-align:top">{i}</td>'
            f'<td style="vertical-align:top">{_img(thumb)}</td>'
            f'<td style="text-align:left;vertical-align:top">{html.escape(short)}'
            + (f"<br><small>{html.escape(note)}</small>" if note else "")
            + "</td>"
            f'<td style="vertical-align:top">{_img(out_thumb)}{html.escape(more)}</td>'
            "</tr>"
        )
        line = short if len(short) <= 70 else short[:69] + "…"
        plain.append(f"{i:>3}  {'ERROR ' + note if r.error is not None else line}")
    table = (
        f"<p>{html.escape(summary)}</p>"
        '<table><thead><tr><th>#</th><th>input</th><th style="text-align:left">reply</th>'
        "<th>image</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )
    return {"text/html": table, "text/plain": "\n".join(plain)}


def make_progress(total: int | None, *, display: bool, in_notebook: bool) -> Progress:
    """The progress display for a batch of ``total`` items (None: not known yet)."""
    if not display or total == 0:
        return _NoProgress()
    return _WidgetProgress(total) if in_notebook else _TextProgress(total)
