"""The journal of ``chat_many(..., journal=PATH)``: a JSON-lines file that makes a job resumable.

Line 1 says what the job is (model, endpoint, parameters; never the key)::

    {"chatimg_journal": 1, "model": ..., "endpoint": "demo" | base URL,
     "api_key_env": NAME | null, "params": {...}}

Then one line per finished item, appended as it finishes::

    {"i": 7, "d": "<digest of the item>", "r": {<the result, as the reply cache stores it>}}
    {"i": 8, "d": "...", "error": "one line", "kind": "RateLimitError", "status": 429}

Images that replies returned are files in the folder ``PATH.d/``: decoded
images as ``<item>-<n>.png``, and every ``data:`` URI in a result (a markdown
image in the text, an image URL) as its bytes under the name of their digest,
written ``chatimg-journal:<mime>;<name>`` in the line; so lines stay small and
read back exactly.
A failed item is finished too, but a re-run sends it again (the last line of
an item wins). In Batch API mode there are also records of the remote
batches, written (and fsync'd) before anything waits for them::

    {"upload": "<input file id>", "part": 0, "runs": [[0, 999]], "d": ...}   before POST /batches
    {"batch": "<batch id>", "part": 0, "input_file_id": ..., "runs": [[0, 999]], "d": ...}
    {"collected": "<batch id>", "status": "completed", "total": 1000, "completed": 998, "failed": 2}
    {"total": 1000}

Lines are written with one ``write`` each (a SIGKILL loses only the items in
flight) and fsync'd at least once a second and at the end (an OS crash loses
at most that second). A torn last line is cut off when the journal is opened
again, and its item is redone.

An item's digest covers its prompt text and its images: for a path, the path
as given with the file's size and modification time (the file is not read); for
bytes, PIL images and arrays, their content; for a URL, the URL.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ._cache import entry_result, result_entry
from ._errors import APIError, ChatImgError, ConfigError, one_line
from ._image_inputs import to_image_urls
from ._images import decode_image_bytes
from ._request import ImageRef
from ._result import ChatResult

__all__ = ["FORMAT", "JobKey", "Journal", "item_digest", "new_path"]

FORMAT = 1
_DATA_URI = re.compile(r"data:(image/[A-Za-z0-9.+-]+);base64,([A-Za-z0-9+/]+={0,2})")
_REF = "chatimg-journal:"
_REF_PATTERN = re.compile(re.escape(_REF) + r"(image/[A-Za-z0-9.+-]+);([0-9a-f]+\.[a-z]+)")
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
SYNC_SECONDS = 1.0
"""At most this long between a finished item and its line reaching the disk."""
SYNC_LINES = 1000
_ERROR_KINDS: dict[str, type[ChatImgError]] = {}


@dataclass(frozen=True)
class JobKey:
    """What a journal is written for: the job's model, endpoint and parameters."""

    model: str
    endpoint: str
    params: Mapping[str, Any]
    api_key_env: str | None = None

    def header(self) -> dict[str, Any]:
        return {
            "chatimg_journal": FORMAT,
            "model": self.model,
            "endpoint": self.endpoint,
            "api_key_env": self.api_key_env,
            "params": canonical(self.params),
        }


def canonical(value: Any) -> Any:
    """``value`` as plain JSON data that is the same from one run to the next."""
    return json.loads(json.dumps(value, sort_keys=True, default=_stable, ensure_ascii=False))


def _stable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    name = getattr(value, "__qualname__", None)
    if name is not None:  # a function or a class (a schema, a tool)
        return f"{getattr(value, '__module__', '')}.{name}"
    return type(value).__name__


def _sha(*pieces: bytes) -> str:
    h = hashlib.sha256()
    for piece in pieces:
        h.update(piece)
    return h.hexdigest()[:32]


def _identity(value: Any) -> Any:
    """What stands for an image in an item's digest (cheap: a path is not read)."""
    if isinstance(value, ImageRef):
        value = value.value
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if not text.startswith(("http://", "https://", "data:")):
            with contextlib.suppress(OSError, ValueError):
                st = os.stat(os.path.expanduser(text))
                return ["path", text, st.st_size, st.st_mtime_ns]
        return ["str", _sha(text.encode("utf-8", "surrogatepass"))]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ["bytes", _sha(bytes(value))]
    if isinstance(value, Image.Image):
        return ["pil", value.mode, list(value.size), _sha(value.tobytes())]
    if isinstance(value, (list, tuple)):
        return [_identity(v) for v in value]
    shape, tobytes = getattr(value, "shape", None), getattr(value, "tobytes", None)
    if shape is not None and callable(tobytes):
        return ["array", list(shape), str(getattr(value, "dtype", "")), _sha(tobytes())]
    # Anything else (a figure, an object with _repr_png_): its pixels, encoded.
    urls = to_image_urls(value, max_side=0, label="item")
    return ["image", _sha(*(u.encode() for u in urls))]


def item_digest(parts: Iterable[Any]) -> str:
    """The digest of one item's prompt parts (text and images, in order)."""
    ident = [p if isinstance(p, str) else _identity(p) for p in parts]
    return _sha(json.dumps(ident, ensure_ascii=False, separators=(",", ":")).encode())


def new_path(path: Path) -> Path:
    """A journal path next to ``path`` that does not exist yet (``captions-2.jsonl``)."""
    stem, suffix = path.stem, path.suffix
    for n in range(2, 10_000):
        candidate = path.with_name(f"{stem}-{n}{suffix}")
        if not candidate.exists():
            return candidate
    return path.with_name(f"{stem}-{os.getpid()}{suffix}")


def _mismatch(path: Path, what: str) -> ConfigError:
    return ConfigError(
        f"journal {path.name} was written for {what}; run with journal="
        f'"{new_path(path).name}" for a new job, or delete {path.name} to start this one over'
    )


def runs_of(indices: Iterable[int]) -> list[list[int]]:
    """Sorted indices as ``[first, last]`` runs of consecutive ones."""
    out: list[list[int]] = []
    for i in indices:
        if out and out[-1][1] == i - 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


def in_runs(runs: list[list[int]]) -> Iterator[int]:
    for first, last in runs:
        yield from range(first, last + 1)


@dataclass
class BatchRecord:
    """A remote batch the journal knows of."""

    id: str
    part: int
    runs: list[list[int]]
    digest: str
    input_file_id: str | None = None
    collected: str | None = None
    """The batch's final status once its results were written here."""
    counts: tuple[int, int, int] = (0, 0, 0)
    """(total, completed, failed) as the batch reported them when collected."""

    def indices(self) -> Iterator[int]:
        return in_runs(self.runs)


@dataclass
class Journal:
    """An open journal: what it holds, and a lock-protected appender."""

    path: Path
    header: dict[str, Any]
    done: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Finished items that need not run again (index -> its line)."""
    failed: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Items whose last line is a failure (they are sent again)."""
    batches: list[BatchRecord] = field(default_factory=list)
    uploads: dict[int, tuple[str, list[list[int]], str]] = field(default_factory=dict)
    """part -> (input file id, runs, digest) of uploads whose batch is not recorded."""
    total: int | None = None
    skipped: int = 0
    """Lines that could not be read (not counting a torn last line)."""
    _fd: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _synced: float = 0.0
    _unsynced: int = 0

    # -- opening -------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], key: JobKey | None) -> Journal:
        """Read ``path`` (creating it for ``key`` when it does not exist) and open it for
        appending; ``key=None`` only reads (``batch_status``). A journal written for
        another job raises ``ConfigError`` (one line, naming what differs)."""
        where = Path(os.fspath(path)).expanduser()
        if where.is_dir():
            raise ConfigError(
                f"journal {where} is a directory; give a file name such as captions.jsonl"
            )
        raw = b""
        if key is None or where.exists():
            try:
                raw = where.read_bytes()
            except FileNotFoundError:
                raise ConfigError(
                    f"no journal at {where}; give the path chat_many(journal=...) wrote"
                ) from None
            except OSError as exc:
                raise ConfigError(
                    f"journal {where} cannot be read ({exc.strerror or exc}); check the path"
                ) from None
        keep = raw.rfind(b"\n") + 1  # a torn last line is cut off (its item is redone)
        journal = cls(where, {})
        lines = raw[:keep].split(b"\n")[:-1] if keep else []
        if lines:
            try:
                head = json.loads(lines[0])
            except ValueError:
                head = None
            if not isinstance(head, dict) or "chatimg_journal" not in head:
                raise ConfigError(
                    f"{where.name} is not a chat_many journal; give another path "
                    f'(e.g. journal="{new_path(where).name}")'
                )
            journal.header = head
            journal._read(lines[1:])
        if key is not None:
            if lines:
                journal._check(key)
            journal._open_for_append(keep if keep < len(raw) else None)
            if not lines:
                journal.header = key.header()
                journal._write(journal.header, sync=True)
        return journal

    def _check(self, key: JobKey) -> None:
        head, want = self.header, key.header()
        if head.get("chatimg_journal") != FORMAT:
            raise _mismatch(
                self.path, f"another version of this package (format {head.get('chatimg_journal')})"
            )
        if head.get("model") != want["model"]:
            raise _mismatch(self.path, f"another model ({head.get('model')}; now {want['model']})")
        if head.get("endpoint") != want["endpoint"]:
            raise _mismatch(
                self.path, f"another endpoint ({head.get('endpoint')}; now {want['endpoint']})"
            )
        old, new = head.get("params") or {}, want["params"]
        if old != new:
            names = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise _mismatch(self.path, f"other parameters ({', '.join(names)} differ)")

    def _open_for_append(self, truncate_at: int | None) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(
                f"journal {self.path} cannot be written ({exc.strerror or type(exc).__name__}); "
                "give a path in a folder you can write to"
            ) from None
        if truncate_at is not None:
            os.ftruncate(fd, truncate_at)
        self._fd = fd
        self._synced = time.monotonic()

    def _read(self, lines: list[bytes]) -> None:
        by_id: dict[str, BatchRecord] = {}
        for raw in lines:
            try:
                obj = json.loads(raw)
            except ValueError:
                self.skipped += 1
                continue
            if not isinstance(obj, dict):
                self.skipped += 1
            elif isinstance(obj.get("i"), int):
                index = obj["i"]
                if "r" in obj:
                    self.done[index] = obj
                    self.failed.pop(index, None)
                else:
                    self.failed[index] = obj
                    self.done.pop(index, None)
            elif isinstance(obj.get("batch"), str):
                record = BatchRecord(
                    obj["batch"],
                    int(obj.get("part", 0)),
                    [list(r) for r in obj.get("runs") or []],
                    str(obj.get("d", "")),
                    obj.get("input_file_id"),
                )
                by_id[record.id] = record
                self.batches.append(record)
                self.uploads.pop(record.part, None)
            elif isinstance(obj.get("upload"), str):
                runs = [list(r) for r in obj.get("runs") or []]
                self.uploads[int(obj.get("part", 0))] = (obj["upload"], runs, str(obj.get("d", "")))
            elif isinstance(obj.get("collected"), str):
                if obj["collected"] in by_id:
                    done = by_id[obj["collected"]]
                    done.collected = str(obj.get("status") or "completed")
                    counts = [obj.get(k) for k in ("total", "completed", "failed")]
                    done.counts = tuple(c if isinstance(c, int) else 0 for c in counts)  # type: ignore[assignment]
            elif isinstance(obj.get("total"), int):
                self.total = obj["total"]
            else:
                self.skipped += 1

    # -- reading -------------------------------------------------------------------

    @property
    def images_dir(self) -> Path:
        return Path(str(self.path) + ".d")

    def check_item(self, index: int, digest: str) -> None:
        """Refuse a journal whose line for ``index`` was written for another item."""
        line = self.done.get(index)
        if line is not None and line.get("d") != digest:
            raise _mismatch(self.path, f"other items (item {index} is not the same)")

    def result(self, index: int) -> ChatResult:
        """The finished result of item ``index``, read back."""
        line = self.done[index]

        def image(name: str) -> Image.Image:
            data = (self.images_dir / Path(name).name).read_bytes()
            return decode_image_bytes(data, label=f"journal image {name}")

        try:
            entry = line["r"]
            text = json.dumps(entry, ensure_ascii=False)
            if _REF in text:
                entry = json.loads(_REF_PATTERN.sub(self._file_to_uri, text))
            result = entry_result(entry, image, cached=False)
        except (OSError, KeyError, TypeError, ValueError, ChatImgError) as exc:
            return ChatResult.failed(
                ChatImgError(
                    f"item {index}: its journal line cannot be read back ({one_line(str(exc), 80)})"
                )
            )
        result.endpoint = self.header.get("endpoint")
        result.demo = self.header.get("endpoint") == "demo"
        return result

    def pending(self) -> list[BatchRecord]:
        """Recorded batches whose results are not written here yet."""
        return [b for b in self.batches if b.collected is None]

    # -- writing -------------------------------------------------------------------

    def _write(self, obj: Mapping[str, Any], *, sync: bool = False, uris: bool = False) -> None:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)
        if uris and "data:" in text:
            text = _DATA_URI.sub(self._uri_to_file, text)
        data = text.encode() + b"\n"
        fd = self._fd
        if fd is None:
            raise ConfigError(f"journal {self.path} is closed")
        with self._lock:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            self._unsynced += 1
            now = time.monotonic()
            due = sync or self._unsynced >= SYNC_LINES or now - self._synced >= SYNC_SECONDS
            if due:
                self._unsynced = 0
                self._synced = now
        if due:
            os.fsync(fd)

    def record(self, index: int, digest: str, result: ChatResult) -> None:
        """Append item ``index``'s result (its images as files beside the journal)."""
        if result.error is not None:
            exc = result.error
            line: dict[str, Any] = {
                "i": index,
                "d": digest,
                "error": one_line(str(exc), 300),
                "kind": type(exc).__name__,
                "status": getattr(exc, "status", None),
            }
            self._write(line)
            return
        counter = [0]

        def image(im: Image.Image) -> str:
            name = f"{index}-{counter[0]}.png"
            counter[0] += 1
            self.images_dir.mkdir(exist_ok=True)
            im_to_save = im
            if im_to_save.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
                im_to_save = im_to_save.convert("RGBA" if "A" in im_to_save.getbands() else "RGB")
            im_to_save.save(self.images_dir / name, format="PNG")
            return name

        entry = result_entry(result, image)
        entry.pop("stored", None)
        self._write({"i": index, "d": digest, "r": entry}, uris=True)

    def _uri_to_file(self, match: re.Match[str]) -> str:
        """A ``data:`` URI in a result (markdown image, image URL) -> a file beside the journal."""
        mime, payload = match.group(1), match.group(2)
        try:
            data = base64.b64decode(payload, validate=True)
        except ValueError:
            return match.group(0)
        ext = _EXTENSIONS.get(mime, "bin")
        name = f"{hashlib.sha256(data).hexdigest()[:24]}.{ext}"
        self.images_dir.mkdir(exist_ok=True)
        target = self.images_dir / name
        if not target.exists():
            target.write_bytes(data)
        return f"{_REF}{mime};{name}"

    def _file_to_uri(self, match: re.Match[str]) -> str:
        mime, name = match.group(1), match.group(2)
        data = (self.images_dir / Path(name).name).read_bytes()
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"

    def record_upload(
        self, part: int, input_file_id: str, runs: list[list[int]], digest: str
    ) -> None:
        self._write({"upload": input_file_id, "part": part, "runs": runs, "d": digest}, sync=True)
        self.uploads[part] = (input_file_id, runs, digest)

    def record_batch(self, record: BatchRecord) -> None:
        self._write(
            {
                "batch": record.id,
                "part": record.part,
                "input_file_id": record.input_file_id,
                "runs": record.runs,
                "d": record.digest,
            },
            sync=True,
        )
        self.batches.append(record)
        self.uploads.pop(record.part, None)

    def record_collected(self, record: BatchRecord, info: Any) -> None:
        """``info``: the final ``BatchInfo`` (status and request counts)."""
        counts = (info.total, info.completed, info.failed)
        line = {"collected": record.id, "status": info.status, "total": counts[0]}
        line.update(completed=counts[1], failed=counts[2])
        self._write(line, sync=True)
        record.collected = info.status
        record.counts = counts

    def record_total(self, total: int) -> None:
        if self.total != total:
            self._write({"total": total})
            self.total = total

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(fd)
            os.close(fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def error_of(line: Mapping[str, Any]) -> ChatImgError:
    """The error a journal line recorded (for status reports)."""
    return APIError(str(line.get("error") or "failed"), status=line.get("status"))
