"""Small helpers for tests that talk to the demo server (stdlib + Pillow only)."""

from __future__ import annotations

import base64
import io
import re
from collections import deque
from collections.abc import Callable, Iterable

from PIL import Image

_MD_IMAGE = re.compile(r"!\[[^\]]*\]\((data:image/[^)\s]+)\)")


def data_uri(img: Image.Image, fmt: str = "PNG") -> str:
    """``img`` encoded as a ``data:image/...;base64,`` URI."""
    buf = io.BytesIO()
    img.save(buf, fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def decode_data_uri(uri: str) -> Image.Image:
    """The image in a base64 ``data:`` URI, fully loaded."""
    img = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    img.load()
    return img


def markdown_data_uris(text: str) -> list[str]:
    """The data URIs of the markdown images in ``text``, in order."""
    return _MD_IMAGE.findall(text)


def user_message(text: str, *images: Image.Image | str) -> dict[str, object]:
    """A user message with ``text`` then image parts (PIL images or URLs)."""
    parts: list[dict[str, object]] = [{"type": "text", "text": text}]
    for im in images:
        url = im if isinstance(im, str) else data_uri(im)
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return {"role": "user", "content": parts}


def components(
    img: Image.Image, match: Callable[[tuple[int, ...]], bool], min_size: int = 4
) -> list[list[tuple[int, int]]]:
    """4-connected regions of pixels for which ``match(pixel)`` is true (pure Python)."""
    rgb = img.convert("RGB")
    w, h = rgb.size
    px = rgb.load()
    assert px is not None
    mask = [[match(px[x, y]) for x in range(w)] for y in range(h)]  # type: ignore[arg-type]
    seen = [[False] * w for _ in range(h)]
    found: list[list[tuple[int, int]]] = []
    for y0 in range(h):
        for x0 in range(w):
            if not mask[y0][x0] or seen[y0][x0]:
                continue
            region: list[tuple[int, int]] = []
            queue = deque([(x0, y0)])
            seen[y0][x0] = True
            while queue:
                x, y = queue.popleft()
                region.append((x, y))
                for nx, ny in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
                    if 0 <= nx < w and 0 <= ny < h and mask[ny][nx] and not seen[ny][nx]:
                        seen[ny][nx] = True
                        queue.append((nx, ny))
            if len(region) >= min_size:
                found.append(region)
    return found


def near(rgb: Iterable[int], target: Iterable[int], tol: int = 40) -> bool:
    """Whether two colours are within ``tol`` on every channel."""
    return all(abs(a - b) <= tol for a, b in zip(rgb, target, strict=False))
