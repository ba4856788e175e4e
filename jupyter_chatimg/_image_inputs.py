"""What users pass as images -> ``data:`` URIs: the adapters.

PIL images, numpy arrays, matplotlib Figures, objects with ``_repr_png_`` /
``_repr_jpeg_``, encoded bytes, paths, http(s) URLs and ``data:`` URIs, and
lists or tuples of them. Encoding, decoding and their limits are ``_images``'.

Reading is bounded before it starts: a path must be a regular file (a device
such as ``/dev/zero`` or a FIFO is refused before it is opened), no more than
``MAX_INPUT_BYTES`` are read, and nested lists may not contain themselves.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

from PIL import Image

from ._errors import ImageInputError, one_line
from ._images import (
    _FOREIGN_SCHEMES,
    _HINT_KINDS,
    _HINT_SHRINK,
    _IMAGE_SUFFIX,
    _URL_SCHEME,
    DEFAULT_MAX_SIDE,
    MAX_INPUT_BYTES,
    MAX_INPUT_PIXELS,
    _as_bytes,
    _bound,
    _check_pixels,
    _data_uri,
    _data_uri_to_url,
    _encode,
    _encoded_to_url,
    _reason,
    _sniff,
)

__all__ = ["MAX_NESTING", "is_image_like", "to_image_urls"]

MAX_NESTING = 8
"""How deep lists of images may nest (a list that contains itself is refused)."""


def is_image_like(obj: object, *, _inside: tuple[int, ...] = ()) -> bool:
    """Whether ``obj`` is something ``to_image_urls`` takes as an image.

    Cheap and decode-free: bytes are judged by their magic number, paths by
    the first bytes of the file, strings only when they are http(s) URLs or
    ``data:image/`` URIs (other strings are text, not file names).
    """
    if isinstance(obj, Image.Image):
        return True
    if _is_array(obj):
        return _array_shape_ok(obj)
    if _is_figure(obj):
        return True
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return _sniff(bytes(obj[:32]))
    if isinstance(obj, str):
        text = obj.strip()
        return bool(
            re.fullmatch(r"(?i)https?://[^/\s?#]+\S*", text) or re.match(r"(?i)data:image/", text)
        )
    if isinstance(obj, os.PathLike):
        try:
            path = Path(os.fspath(obj)).expanduser()
            if not path.is_file():  # a regular file: never a device or a FIFO
                return False
            with path.open("rb") as fh:
                return _sniff(fh.read(32))
        except (OSError, TypeError, ValueError):
            return False
    if isinstance(obj, (list, tuple)):
        if id(obj) in _inside or len(_inside) >= MAX_NESTING:
            return False
        inside = (*_inside, id(obj))
        return len(obj) > 0 and all(is_image_like(item, _inside=inside) for item in obj)
    return _repr_image_method(obj) is not None


def to_image_urls(
    obj: object,
    *,
    max_side: int = DEFAULT_MAX_SIDE,
    detail: str | None = None,
    label: str = "image",
) -> list[str]:
    """Turn an image-like object (or a list/tuple of them) into URLs for ``image_url.url``.

    http(s) URLs pass through unchanged; everything else becomes a
    ``data:image/(png|jpeg|webp|gif);base64,...`` URI, bounded by ``max_side``
    (0 = never downscale) and by 512 px when ``detail == "low"``. Lists are
    flattened in order. Raises ``ImageInputError`` (one line naming ``label``).
    """
    bound = _bound(max_side, detail)
    out: list[str] = []
    _collect(obj, bound, label, out)
    return out


def _collect(
    obj: object, bound: int | None, label: str, out: list[str], inside: tuple[int, ...] = ()
) -> None:
    if isinstance(obj, Image.Image):
        out.append(_data_uri(*_encode(obj, bound, label)))
    elif _is_array(obj):
        out.append(_data_uri(*_encode(_array_to_pil(obj, label), bound, label)))
    elif _is_figure(obj):
        # never passed through: matplotlib writes RGBA, the encoder finds a palette
        png = _figure_png(obj, label)
        out.append(_encoded_to_url(png, bound, label, "the Figure is", passthrough="never"))
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        out.append(_encoded_to_url(_as_bytes(obj, label), bound, label, "the bytes are"))
    elif isinstance(obj, str):
        out.append(_str_to_url(obj, bound, label))
    elif isinstance(obj, os.PathLike):
        out.append(_path_to_url(Path(os.fspath(obj)), bound, label))
    elif isinstance(obj, (list, tuple)):
        if not obj:
            kind = type(obj).__name__
            raise ImageInputError(f"{label}: the {kind} is empty; pass at least one image")
        if id(obj) in inside or len(inside) >= MAX_NESTING:
            raise ImageInputError(
                f"{label}: the {type(obj).__name__} contains itself (or is nested too deep); "
                "pass a flat list of images"
            )
        for i, item in enumerate(obj):
            _collect(item, bound, f"{label}[{i}]", out, (*inside, id(obj)))
    else:
        method = _repr_image_method(obj)
        if method is None:
            raise ImageInputError(_not_an_image(obj, label))
        out.append(_encoded_to_url(_call_repr(obj, method, label), bound, label, "its image is"))


def _not_an_image(obj: object, label: str) -> str:
    if obj is None:
        return f"{label}: None is not an image; {_HINT_KINDS}"
    name = type(obj).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    hint = _HINT_KINDS
    if _is_figure(getattr(obj, "figure", None)):
        hint = "pass its .figure (the matplotlib Figure) instead"
    elif isinstance(obj, (set, frozenset, dict)):
        hint = "pass a list of images (in the order they should be sent)"
    return f"{label}: {article} {name} is not an image; {hint}"


def _str_to_url(text: str, bound: int | None, label: str) -> str:
    s = text.strip()
    low = s[:8].lower()
    if low.startswith(("http://", "https://")):
        shown = one_line(s, 80)
        if re.search(r"\s", s):
            raise ImageInputError(f"{label}: the URL {shown!r} contains spaces; write them as %20")
        if not re.match(r"(?i)^https?://[^/\s?#]+", s):
            raise ImageInputError(f"{label}: the URL {shown!r} has no host; check it")
        return s
    if low.startswith("data:"):
        return _data_uri_to_url(s, bound, label)
    scheme = _URL_SCHEME.match(s)
    if scheme and (
        s[scheme.end() :].startswith("//") or scheme.group(1).lower() in _FOREIGN_SCHEMES
    ):
        name = scheme.group(1).lower()
        todo = (
            "pass the file's path instead"
            if name == "file"
            else "download it and pass the bytes or the path"
        )
        raise ImageInputError(
            f"{label}: {name}: URLs cannot be sent, only http(s) and data: URLs; {todo}"
        )
    if "\n" in s or len(s) > 4096 or not _looks_like_path(s):
        raise ImageInputError(f"{label}: a str is not an image; {_HINT_KINDS}")
    return _path_to_url(Path(s), bound, label)


def _looks_like_path(text: str) -> bool:
    return bool(_IMAGE_SUFFIX.search(text)) or "/" in text or "\\" in text or Path(text).exists()


def _path_to_url(path: Path, bound: int | None, label: str) -> str:
    full = path.expanduser()
    shown = one_line(str(path), 120)
    try:
        if not full.exists():
            raise ImageInputError(
                f"{label}: no such file {shown!r}; check the path "
                f"(relative paths start at {os.getcwd()})"
            )
        info = full.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ImageInputError(
                f"{label}: {shown!r} is a folder, not an image file; pass the path of an image file"
            )
        if not stat.S_ISREG(info.st_mode):
            raise ImageInputError(
                f"{label}: {shown!r} is not a regular file (a device, a pipe or a socket); "
                "pass the path of an image file"
            )
        size = info.st_size
        if size > MAX_INPUT_BYTES:
            raise ImageInputError(
                f"{label}: {shown!r} is {size / 1e6:.0f} MB, above the "
                f"{MAX_INPUT_BYTES / 1e6:.0f} MB limit; {_HINT_SHRINK}"
            )
        with full.open("rb") as fh:
            # Never more than the limit, whatever the file claims (it may grow while read).
            data = fh.read(MAX_INPUT_BYTES + 1)
        if len(data) > MAX_INPUT_BYTES:
            raise ImageInputError(
                f"{label}: {shown!r} is above the {MAX_INPUT_BYTES / 1e6:.0f} MB limit; "
                f"{_HINT_SHRINK}"
            )
    except OSError as exc:
        raise ImageInputError(
            f"{label}: cannot read {shown!r} ({_reason(exc)}); check the file and its permissions"
        ) from None
    return _encoded_to_url(data, bound, label, f"{shown!r} is", passthrough="checked")


def _is_array(obj: object) -> bool:
    mod = type(obj).__module__
    return mod.split(".", 1)[0] == "numpy" and hasattr(obj, "shape") and hasattr(obj, "dtype")


def _array_shape_ok(arr: Any) -> bool:
    shape = tuple(arr.shape)
    kind = getattr(arr.dtype, "kind", "")
    ok_shape = len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3, 4))
    return ok_shape and all(n > 0 for n in shape) and kind in "buif"


def _is_figure(obj: object) -> bool:
    # only a Figure if matplotlib is already loaded: never import it just to check
    module = sys.modules.get("matplotlib.figure")
    figure = getattr(module, "Figure", None) if module is not None else None
    return figure is not None and isinstance(obj, figure)


def _figure_png(fig: Any, label: str) -> bytes:
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", bbox_inches="tight")
    except Exception as exc:  # whatever the artists raise while drawing
        raise ImageInputError(
            f"{label}: the Figure could not be drawn ({_reason(exc)}); check that it displays"
        ) from None
    return buf.getvalue()


def _repr_image_method(obj: object) -> str | None:
    if isinstance(obj, type):
        return None
    for name in ("_repr_png_", "_repr_jpeg_"):
        try:
            if callable(getattr(obj, name, None)):
                return name
        except Exception:  # a property that raises means: not this protocol
            continue
    return None


def _call_repr(obj: object, method: str, label: str) -> bytes:
    try:
        data = getattr(obj, method)()
    except Exception as exc:  # third-party rendering code
        raise ImageInputError(
            f"{label}: {type(obj).__name__}.{method}() failed ({_reason(exc)}); "
            "pass a PIL image instead"
        ) from None
    if isinstance(data, tuple) and data:
        data = data[0]  # IPython allows (data, metadata)
    if isinstance(data, str):
        try:
            data = base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError):
            data = None
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes) or not data:
        raise ImageInputError(
            f"{label}: {type(obj).__name__}.{method}() gave no image data; pass a PIL image instead"
        )
    return data


def _array_to_pil(arr: Any, label: str) -> Image.Image:
    """A numpy array (HxW, HxWx1, HxWx3, HxWx4) -> an 8-bit PIL image (L, RGB or RGBA)."""
    import numpy as np

    a = np.asarray(arr)
    shape = tuple(a.shape)
    if not _array_shape_ok_shape(shape):
        raise ImageInputError(
            f"{label}: a numpy array of shape {shape} is not an image; {_shape_hint(shape)}"
        )
    if 0 in shape:
        raise ImageInputError(
            f"{label}: the array is empty (shape {shape}); pass an image with at least one pixel"
        )
    _check_pixels((shape[1], shape[0]), label, MAX_INPUT_PIXELS)
    if a.ndim == 3 and shape[2] == 1:
        a = a[:, :, 0]
    kind, size = a.dtype.kind, a.dtype.itemsize
    if kind == "b":
        a = a.astype(np.uint8) * 255
    elif kind == "u" and size == 1:
        pass
    elif kind in "ui":
        lo, hi = int(a.min()), int(a.max())
        if kind == "u" and size == 2 and a.ndim == 3:
            a = (a >> 8).astype(np.uint8)  # 16-bit colour uses the full 0..65535 range
        elif kind == "u" and size == 2:
            a = _stretch(a.astype(np.float64), lo, hi)  # like I;16: its actual range
        elif lo >= 0 and hi <= 255:
            a = a.astype(np.uint8)  # 8-bit values in a wider integer (np.array of ints)
        elif a.ndim == 2:
            a = _stretch(a.astype(np.float64), lo, hi)
        else:
            raise ImageInputError(
                f"{label}: {a.dtype} colour values range {lo}..{hi}, outside 0..255; "
                "convert with arr.astype(np.uint8) or scale to floats in [0, 1]"
            )
    elif kind == "f":
        f = a.astype(np.float32, copy=False)
        nan = np.isnan(f)
        if nan.all():
            raise ImageInputError(
                f"{label}: the array holds only NaN values; nothing to draw, check the data"
            )
        f = np.nan_to_num(f, nan=0.0, posinf=1.0, neginf=0.0)
        a = (np.clip(f, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    else:
        raise ImageInputError(
            f"{label}: a numpy array of dtype {a.dtype} is not an image; "
            "use uint8, uint16, bool or floats in [0, 1]"
        )
    return Image.fromarray(np.ascontiguousarray(a))


def _array_shape_ok_shape(shape: tuple[int, ...]) -> bool:
    return len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3, 4))


def _shape_hint(shape: tuple[int, ...]) -> str:
    if len(shape) == 3 and shape[0] in (1, 3, 4) and shape[2] > 4:
        return "it looks channel-first: pass arr.transpose(1, 2, 0)"
    if len(shape) == 4:
        return "for a batch pass list(arr); one image is HxW, HxWx1, HxWx3 or HxWx4"
    return "pass HxW, HxWx1, HxWx3 or HxWx4"


def _stretch(a: Any, lo: float, hi: float) -> Any:
    """Map lo..hi linearly onto 0..255 (uint8)."""
    import numpy as np

    if hi <= lo:
        return np.full(a.shape, int(min(max(lo, 0), 255)), dtype=np.uint8)
    return ((a - lo) * (255.0 / (hi - lo)) + 0.5).astype(np.uint8)
