"""ChatResult and its choices: plain data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["BatchResults", "ChatResult", "Choice", "Timings"]


@dataclass
class Timings:
    """Seconds measured by the client for one reply."""

    first_token: float | None = None
    """From sending the request to the first byte of reply content."""
    total: float | None = None
    """From sending the request to the end of the reply."""

    def as_dict(self) -> dict[str, float | None]:
        return {"first_token": self.first_token, "total": self.total}


@dataclass
class Choice:
    """One of the ``n`` alternatives of a reply."""

    index: int = 0
    text: str = ""
    images: list[Image.Image] = field(default_factory=list)
    image_urls: list[str] = field(default_factory=list)
    """The URLs (or data URIs) the images came from, in order; a failed one keeps its place."""
    image_errors: dict[str, str] = field(default_factory=dict)
    """URL -> one-line reason, for returned images that could not be fetched or decoded."""
    finish_reason: str | None = None
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


@dataclass(repr=False)
class ChatResult:
    """What came back for one request: text, images, usage, timings, and any error."""

    choices: list[Choice] = field(default_factory=lambda: [Choice()])
    model: str | None = None
    id: str | None = None
    usage: dict[str, Any] | None = None
    system_fingerprint: str | None = None
    timings: Timings = field(default_factory=Timings)
    error: BaseException | None = None
    """None, or the error that cut this (partial) reply short."""
    raw: Any = None
    """The final JSON (non-streaming), or the chunks assembled into one such object (streaming)."""
    request: dict[str, Any] | None = None
    """The request as sent, with images replaced by short digests."""
    endpoint: str | None = None
    """The endpoint's host (never the key)."""
    cached: bool = False
    demo: bool = False
    warnings: list[str] = field(default_factory=list)
    """Oddities in the reply that were ignored (e.g. a choice with a negative index)."""

    @property
    def text(self) -> str:
        """The text of the first choice."""
        return self.choices[0].text if self.choices else ""

    @property
    def images(self) -> list[Image.Image]:
        """The images returned with the first choice, as PIL images."""
        return self.choices[0].images if self.choices else []

    @property
    def finish_reason(self) -> str | None:
        return self.choices[0].finish_reason if self.choices else None

    @property
    def ok(self) -> bool:
        return self.error is None

    def __repr__(self) -> str:
        text = self.text
        short = text if len(text) <= 60 else text[:57] + "..."
        parts = [f"text={short!r}"]
        if self.images:
            parts.append(f"images={len(self.images)}")
        if len(self.choices) > 1:
            parts.append(f"choices={len(self.choices)}")
        if self.model:
            parts.append(f"model={self.model!r}")
        if self.finish_reason:
            parts.append(f"finish_reason={self.finish_reason!r}")
        if self.error is not None:
            parts.append(f"error={str(self.error)!r}")
        return f"ChatResult({', '.join(parts)})"

    @classmethod
    def failed(
        cls,
        exc: BaseException,
        *,
        model: str | None = None,
        endpoint: str | None = None,
        demo: bool = False,
        request: dict[str, Any] | None = None,
    ) -> ChatResult:
        """The result of a request that failed with ``exc``: what arrived, and the error.

        The one way a failure becomes a result: the partial reply the error
        carries (a cut stream's text) is kept, and what it lacks is filled in.
        """
        partial = getattr(exc, "partial", None)
        result = partial if isinstance(partial, ChatResult) else cls()
        result.error = exc
        result.model = result.model or model
        result.endpoint = result.endpoint or endpoint
        result.demo = result.demo or demo
        if result.request is None:
            result.request = request
        return result

    def provenance(self) -> dict[str, Any]:
        """How this answer was obtained: model, endpoint host, parameters, usage, timings."""
        params = {}
        if self.request:
            params = {k: v for k, v in self.request.items() if k not in ("messages",)}
        return {
            "model": self.model,
            "endpoint": self.endpoint,
            "params": params,
            "usage": self.usage,
            "timings": self.timings.as_dict(),
            "finish_reason": self.finish_reason,
            "cached": self.cached,
            "error": str(self.error) if self.error is not None else None,
        }


_TABLE_COLUMNS = ("text", "error", "finish_reason", "model", "images")
_USAGE_COLUMNS = ("prompt_tokens", "completion_tokens", "total_tokens")


class BatchResults(list[ChatResult]):
    """The results of ``chat_many``, one per item in input order: a ``list`` with
    ``.to_pandas()``. ``labels`` are the input's index labels when the items came
    from a pandas Series (a DataFrame column), so that the table joins back."""

    labels: list[Any] | None = None

    def __init__(self, results: Any = (), labels: list[Any] | None = None) -> None:
        super().__init__(results)
        if labels is not None and len(labels) == len(self):
            self.labels = list(labels)

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame``, one row per item: ``text``, ``error`` (None or one
        line), ``finish_reason``, ``model``, ``images`` (how many came back), the
        usage numbers (``prompt_tokens``, ``completion_tokens``, ``total_tokens`` and
        any other the server counted) and, when the results have a ``parsed`` object
        (a schema's dataclass, pydantic model or dict), one column per field.
        The index is the item's position (or the input Series' labels)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "to_pandas() needs pandas, which is not installed: pip install pandas"
            ) from None
        rows = [_row(r) for r in self]
        columns = list(_TABLE_COLUMNS) + list(_USAGE_COLUMNS)
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        if self.labels is not None:
            index = pd.Index(self.labels, name="index")
        else:
            index = pd.RangeIndex(len(rows), name="index")
        return pd.DataFrame(rows, columns=columns, index=index)


def _row(result: ChatResult) -> dict[str, Any]:
    row: dict[str, Any] = {
        "text": result.text,
        "error": str(result.error) if result.error is not None else None,
        "finish_reason": result.finish_reason,
        "model": result.model,
        "images": len(result.images),
    }
    for key in _USAGE_COLUMNS:
        row[key] = None
    for key, value in (result.usage or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            row[str(key)] = value
    for key, value in _fields_of(getattr(result, "parsed", None)).items():
        row[f"parsed_{key}" if key in row else key] = value
    return row


def _fields_of(parsed: Any) -> dict[str, Any]:
    """A parsed object's fields: a dict, a dataclass, a pydantic model (else one column)."""
    import dataclasses

    if parsed is None:
        return {}
    if isinstance(parsed, dict):
        return {str(k): v for k, v in parsed.items()}
    if dataclasses.is_dataclass(parsed) and not isinstance(parsed, type):
        return {f.name: getattr(parsed, f.name) for f in dataclasses.fields(parsed)}
    dump = getattr(parsed, "model_dump", None)
    if callable(dump):
        data = dump()
        if isinstance(data, dict):
            return {str(k): v for k, v in data.items()}
    return {"parsed": parsed}
