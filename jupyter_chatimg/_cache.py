"""A local reply cache: an identical request is answered without asking the endpoint.

Off by default (``cache=True``, ``--cache``, ``%config ChatImg.cache = True``).
The key is a SHA-256 of the endpoint and the request body as sorted JSON:
model, parameters and messages, so every image's bytes (inside its ``data:``
URI) are part of it and one changed pixel misses. ``stream`` and
``stream_options`` are left out (they change how a reply travels, not what it
says). The endpoint is its base URL, or ``demo`` for the offline demo (whose
port changes with every kernel). The API key is neither part of the key nor
stored: an entry holds the reply's text, images (PNG), usage and ids.

Entries are JSON files under ``<cache dir>/replies/``; the cache dir is the
``cache_dir`` setting, else ``$CHATIMG_CACHE_DIR``, else
``$XDG_CACHE_HOME/jupyter_chatimg``, else ``~/.cache/jupyter_chatimg``. The
total size is bounded by ``cache_max_bytes``: the least recently used entries
go first.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from ._config import Settings, configured
from ._errors import ChatImgError
from ._images import decode_image_bytes
from ._result import ChatResult, Choice

__all__ = [
    "CACHE_NOTE",
    "cache_dir",
    "cache_key",
    "clear_cache",
    "entry_result",
    "load",
    "result_entry",
    "store",
]

CACHE_NOTE = "from cache: no request was sent (run without --cache for a fresh reply)"
FORMAT = 1
_NOT_IN_KEY = frozenset({"stream", "stream_options"})


def cache_dir(settings: Settings | None = None) -> Path:
    """The directory that holds the cache (not created here)."""
    if settings is not None and settings.cache_dir:
        return Path(settings.cache_dir).expanduser()
    env = os.environ.get("CHATIMG_CACHE_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "jupyter_chatimg"


def _replies(settings: Settings | None) -> Path:
    if settings is None:  # the %config value, if any
        settings = Settings(cache_dir=configured().get("cache_dir"))
    return cache_dir(settings) / "replies"


def cache_key(settings: Settings, body: Mapping[str, Any]) -> str:
    """The hex SHA-256 that names the entry for ``body`` sent to ``settings``' endpoint."""
    endpoint = "demo" if settings.demo else settings.base_url.rstrip("/")
    request = {k: v for k, v in body.items() if k not in _NOT_IN_KEY}
    text = json.dumps(
        {"format": FORMAT, "endpoint": endpoint, "request": request},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _png(image: Image.Image) -> str:
    work = image
    if work.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
        work = work.convert("RGBA" if "A" in work.getbands() else "RGB")
    buf = io.BytesIO()
    work.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def result_entry(result: ChatResult, image: Callable[[Image.Image], str] = _png) -> dict[str, Any]:
    """``result`` as JSON-able data (never the key): text, usage, ids, and each
    image as ``image(im)`` (default: base64 PNG). The journal of ``chat_many``
    stores its lines in this form too."""
    return {
        "format": FORMAT,
        "model": result.model,
        "id": result.id,
        "usage": result.usage,
        "system_fingerprint": result.system_fingerprint,
        "stored": time.time(),
        "choices": [
            {
                "index": c.index,
                "text": c.text,
                "finish_reason": c.finish_reason,
                "refusal": c.refusal,
                "tool_calls": c.tool_calls,
                "image_urls": c.image_urls,
                "image_errors": c.image_errors,
                "images": [image(im) for im in c.images],
            }
            for c in result.choices
        ],
    }


def _unpng(data: str) -> Image.Image:
    return decode_image_bytes(base64.b64decode(data), label="cached image")


def entry_result(
    entry: Mapping[str, Any], image: Callable[[str], Image.Image] = _unpng, *, cached: bool = True
) -> ChatResult:
    """The ``ChatResult`` that ``result_entry`` stored (``image`` reads its images back)."""
    choices = []
    for c in entry["choices"]:
        images = [image(data) for data in c["images"]]
        choices.append(
            Choice(
                index=int(c["index"]),
                text=str(c["text"]),
                images=images,
                image_urls=[str(u) for u in c.get("image_urls") or []],
                image_errors={str(k): str(v) for k, v in (c.get("image_errors") or {}).items()},
                finish_reason=c.get("finish_reason"),
                refusal=c.get("refusal"),
                tool_calls=list(c.get("tool_calls") or []),
            )
        )
    return ChatResult(
        choices=choices or [Choice()],
        model=entry.get("model"),
        id=entry.get("id"),
        usage=entry.get("usage"),
        system_fingerprint=entry.get("system_fingerprint"),
        cached=cached,
    )


def load(settings: Settings, body: Mapping[str, Any]) -> ChatResult | None:
    """The cached reply for ``body``, or None (a damaged entry is removed and misses)."""
    path = _replies(settings) / (cache_key(settings, body) + ".json")
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    try:
        entry = json.loads(raw)
        if entry.get("format") != FORMAT:
            raise ValueError("another format")
        result = entry_result(entry)
    except (ValueError, KeyError, TypeError, AttributeError, ChatImgError):
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # recently used: evicted last
    return result


def cacheable(result: ChatResult) -> bool:
    """Only whole, error-free replies whose images all arrived are kept."""
    return (
        result.error is None
        and not result.cached
        and all(c.finish_reason not in (None, "error") for c in result.choices)
        and not any(c.image_errors for c in result.choices)
    )


def store(settings: Settings, body: Mapping[str, Any], result: ChatResult) -> bool:
    """Keep ``result`` as the reply to ``body``; True if it was stored.

    A cache that cannot be written (read-only home, full disk) is skipped
    silently: the reply itself is fine.
    """
    if not cacheable(result):
        return False
    folder = _replies(settings)
    data = json.dumps(result_entry(result), ensure_ascii=False).encode("utf-8")
    limit = settings.cache_max_bytes
    if limit <= 0 or len(data) > limit:
        return False
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, folder / (cache_key(settings, body) + ".json"))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError:
        return False
    _evict(folder, limit)
    return True


def _evict(folder: Path, limit: int) -> None:
    entries: list[tuple[float, int, Path]] = []
    for path in folder.glob("*.json"):
        try:
            stat = path.stat()
        except OSError:
            continue
        entries.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries, key=lambda e: e[0]):
        if total <= limit:
            break
        with contextlib.suppress(OSError):
            path.unlink()
            total -= size


def clear_cache(settings: Settings | None = None) -> int:
    """Remove every cached reply (in ``settings``' cache dir, else the configured one).

    Returns how many there were.
    """
    folder = _replies(settings)
    removed = 0
    for path in folder.glob("*.json"):
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    return removed
