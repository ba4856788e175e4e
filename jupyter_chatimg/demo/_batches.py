"""The Batch API of the demo (``/v1/batches`` and, through ``FileStore``, ``/v1/files``).

A batch is validated and run in a background thread of its own: ``validating`` ->
``in_progress`` (each line takes ``batch_delay`` seconds, then is answered in-process
by ``answer_chat`` or ``answer_images``, exactly as ``POST /v1/chat/completions`` or
``POST /v1/images/generations`` answers the same body without streaming) ->
``finalizing`` -> ``completed``; or ``failed`` (the input file
does not validate), ``expired`` (``batch-expire`` fault), ``cancelling`` ->
``cancelled``. Output and error files are JSONL in input order, one line per
``custom_id``: answered lines with status 200 in the output file; lines answered
with an error status, and lines never run (``batch_expired``/``batch_cancelled``),
in the error file.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from ._answer import Publisher, answer_chat, answer_images
from ._faults import FaultCounter, Faults, FaultSyntaxError, injected_error, parse_faults
from ._files import (
    FileStore,
    Response,
    invalid_value,
    missing,
    not_allowed,
    paginate,
    query_int,
    query_str,
)
from ._images_request import IMAGE_MODELS, known_model
from ._models import DEMO_MODELS
from ._protocol import dumps
from ._request import DemoHTTPError

CHAT_ENDPOINT = "/v1/chat/completions"
IMAGES_ENDPOINT = "/v1/images/generations"
SUPPORTED_ENDPOINTS = (CHAT_ENDPOINT, IMAGES_ENDPOINT)
COMPLETION_WINDOWS = ("24h",)
WINDOW_SECONDS = 24 * 3600
MAX_REQUESTS = 50_000
MAX_LISTED_ERRORS = 100
METADATA_FAULT_KEY = "demo_fault"
_BOM = b"\xef\xbb\xbf"
_CANCELLABLE = ("validating", "in_progress")
_STAMPED = (
    "in_progress",
    "finalizing",
    "completed",
    "failed",
    "expired",
    "cancelling",
    "cancelled",
)
_UNRUN = {
    "expired": (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
    "cancelled": (
        "batch_cancelled",
        "This request was not executed because the batch was cancelled.",
    ),
}


def batch_error(
    code: str, message: str, line: int | None = None, param: str | None = None
) -> dict[str, Any]:
    """One entry of ``batch.errors.data``."""
    return {"code": code, "message": message, "param": param, "line": line}


@dataclass(frozen=True)
class BatchLine:
    """A validated input line: where it was, its ``custom_id``, its body (compact JSON)."""

    line: int
    custom_id: str
    body: bytes
    model: str

    @property
    def base_model(self) -> str:
        """The model without a ``@fault`` suffix."""
        return self.model.split("@", 1)[0]


LineCheck = BatchLine | dict[str, Any]  # a line, or the batch error it causes


def _check_body(body: dict[str, Any], no: int, custom_id: str, endpoint: str) -> LineCheck:
    images = endpoint == IMAGES_ENDPOINT
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return batch_error("invalid_request", "Model parameter is required.", no, "body.model")
    required = "prompt" if images else "messages"
    if required not in body:
        return batch_error(
            "invalid_request",
            f"{required.capitalize()} parameter is required.",
            no,
            f"body.{required}",
        )
    if body.get("stream"):
        return batch_error(
            "streaming_unsupported",
            f"{'Images' if images else 'Chat Completions'}: Streaming is not supported in "
            "the Batch API.",
            no,
            "body.stream",
        )
    # chat lines take faults from a model suffix (``demo-vision@status=429``), as the
    # live chat route does; the live Images API does not, so neither do its lines
    known = known_model(model) if images else model.split("@", 1)[0] in DEMO_MODELS
    if not known:
        return batch_error(
            "model_not_found",
            f"The provided model '{model}' is not supported by the Batch API "
            f"(this offline demo has: {', '.join(IMAGE_MODELS if images else DEMO_MODELS)}).",
            no,
            "body.model",
        )
    return BatchLine(no, custom_id, dumps(body), model)


def check_line(raw: bytes, no: int, endpoint: str) -> LineCheck:
    """Validate one input line (``BatchRequestInput``) against the batch's ``endpoint``."""
    try:
        obj = json.loads(raw)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        return batch_error("invalid_json_line", "This line is not parseable as valid JSON.", no)
    for key in ("custom_id", "method", "url", "body"):
        if obj.get(key) is None:
            return batch_error(
                "missing_required_parameter", f"Missing required parameter: '{key}'.", no, key
            )
    custom_id, method, url, body = obj["custom_id"], obj["method"], obj["url"], obj["body"]
    if not isinstance(custom_id, str) or not custom_id:
        return batch_error(
            "invalid_request", "'custom_id' must be a non-empty string.", no, "custom_id"
        )
    if method != "POST":
        return batch_error(
            "invalid_request",
            f"Only the POST method is supported in the Batch API (got {method!r}).",
            no,
            "method",
        )
    if url != endpoint:
        return batch_error(
            "invalid_url",
            "The URL provided for this request does not match the batch endpoint.",
            no,
            "url",
        )
    if not isinstance(body, dict):
        return batch_error("invalid_request", "'body' must be a JSON object.", no, "body")
    return _check_body(body, no, custom_id, endpoint)


def parse_input(data: bytes, endpoint: str) -> tuple[list[BatchLine], list[dict[str, Any]]]:
    """The valid lines of a JSONL input file and the errors that fail the batch."""
    lines: list[BatchLine] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    model: str | None = None
    for no, raw in enumerate(data.removeprefix(_BOM).split(b"\n"), 1):
        if not raw.strip():
            continue
        item = check_line(raw, no, endpoint)
        if isinstance(item, dict):
            errors.append(item)
        elif item.custom_id in seen:
            errors.append(
                batch_error(
                    "duplicate_custom_id",
                    "The custom_id for this request is a duplicate of another request. The "
                    "custom_id parameter must be unique for each request in a batch.",
                    no,
                    "custom_id",
                )
            )
        elif model is not None and item.base_model != model:
            errors.append(
                batch_error(
                    "mismatched_model",
                    f"The provided model '{item.base_model}' does not match the model of the "
                    f"other requests ('{model}'): a batch input file can only include "
                    "requests to a single model.",
                    no,
                    "body.model",
                )
            )
        else:
            seen.add(item.custom_id)
            model = item.base_model
            lines.append(item)
    if not lines and not errors:
        errors.append(batch_error("empty_file", "The input file is empty.", None))
    if len(lines) > MAX_REQUESTS:
        errors.append(
            batch_error(
                "too_many_tasks",
                f"The input file has {len(lines)} requests; the limit is {MAX_REQUESTS}.",
            )
        )
    return lines, errors[:MAX_LISTED_ERRORS]


@dataclass(frozen=True)
class BatchFaults:
    """Batch-level faults: ``batch-fail`` and ``batch-expire=N`` (see the package docs)."""

    fail: bool = False
    expire_after: int | None = None

    @classmethod
    def merge(cls, header: Faults, metadata: dict[str, str] | None) -> BatchFaults:
        """From the ``X-Demo-Fault`` header and the ``demo_fault`` metadata value."""
        spec = (metadata or {}).get(METADATA_FAULT_KEY)
        try:
            meta = parse_faults(spec)
        except FaultSyntaxError as e:
            raise DemoHTTPError(400, str(e), param=f"metadata.{METADATA_FAULT_KEY}") from None
        expire = header.batch_expire if header.batch_expire is not None else meta.batch_expire
        return cls(header.batch_fail or meta.batch_fail, expire)


@dataclass
class Batch:
    """A batch and its progress (mutated by its worker under the service lock)."""

    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    created_at: int
    faults: BatchFaults = field(default_factory=BatchFaults)
    status: str = "validating"
    model: str | None = None
    errors: list[dict[str, Any]] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    times: dict[str, int] = field(default_factory=dict)
    total: int = 0
    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)

    def mark(self, status: str) -> None:
        """Enter ``status`` and stamp its ``<status>_at`` time."""
        self.status = status
        self.times[f"{status}_at"] = int(time.time())

    def to_json(self) -> dict[str, Any]:
        """The ``batch`` object."""
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": self.model,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "expires_at": self.created_at + WINDOW_SECONDS,
            **{f"{s}_at": self.times.get(f"{s}_at") for s in _STAMPED},
            "request_counts": {
                "total": self.total,
                "completed": self.completed,
                "failed": self.failed,
            },
            "usage": {
                "input_tokens": self.input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": self.output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.input_tokens + self.output_tokens,
            },
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class Outcome:
    """How one line was answered: an HTTP status, a JSON body, a request id, and its
    (input, output) tokens."""

    status: int
    body: dict[str, Any]
    request_id: str
    tokens: tuple[int, int] | None = None


def _tokens(usage: dict[str, Any] | None) -> tuple[int, int] | None:
    """(input, output) tokens of a chat ``usage`` (``prompt_tokens``/``completion_tokens``)
    or an Images API one (``input_tokens``/``output_tokens``; DALL-E replies have none)."""
    if not usage:
        return None
    if "prompt_tokens" in usage:
        return usage["prompt_tokens"], usage["completion_tokens"]
    return usage["input_tokens"], usage["output_tokens"]


def _record_id(batch_id: str, index: int) -> str:
    return "batch_req_" + hashlib.sha256(f"{batch_id}\0{index}".encode()).hexdigest()[:24]


def output_record(batch_id: str, index: int, custom_id: str, out: Outcome) -> bytes:
    """One ``BatchRequestOutput`` line for an answered request."""
    response = {"status_code": out.status, "request_id": out.request_id, "body": out.body}
    record = {
        "id": _record_id(batch_id, index),
        "custom_id": custom_id,
        "response": response,
        "error": None,
    }
    return dumps(record) + b"\n"


def unrun_record(batch_id: str, index: int, custom_id: str, why: str) -> bytes:
    """The error-file line of a request that never ran (``why``: expired or cancelled)."""
    code, message = _UNRUN[why]
    record = {
        "id": _record_id(batch_id, index),
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }
    return dumps(record) + b"\n"


def _type_name(value: object) -> str:
    names = {list: "an array", dict: "an object", bool: "a boolean", int: "an integer"}
    names |= {float: "a number", str: "a string", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def check_metadata(value: object) -> dict[str, str] | None:
    """``metadata``: up to 16 string pairs (keys up to 64 characters, values up to 512)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DemoHTTPError(
            400,
            f"Invalid type for 'metadata': expected an object, but got {_type_name(value)} instead.",
            param="metadata",
            code="invalid_type",
        )
    if len(value) > 16:
        raise DemoHTTPError(
            400, "Invalid 'metadata': at most 16 key-value pairs.", param="metadata"
        )
    for key, item in value.items():
        if not isinstance(item, str):
            raise DemoHTTPError(
                400,
                f"Invalid type for 'metadata.{key}': expected a string, but got "
                f"{_type_name(item)} instead.",
                param=f"metadata.{key}",
                code="invalid_type",
            )
        if len(key) > 64 or len(item) > 512:
            raise DemoHTTPError(
                400,
                f"Invalid 'metadata.{key}': keys are up to 64 characters, values up to 512.",
                param=f"metadata.{key}",
            )
    return dict(value)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        obj = None
    if not isinstance(obj, dict):
        raise DemoHTTPError(
            400, "We could not parse the JSON body of your request: send an object."
        )
    return obj


def _required_str(req: dict[str, Any], key: str) -> str:
    value = req.get(key)
    if value is None:
        raise missing(key)
    if not isinstance(value, str):
        raise DemoHTTPError(
            400,
            f"Invalid type for '{key}': expected a string, but got {_type_name(value)} instead.",
            param=key,
            code="invalid_type",
        )
    return value


class BatchAPI:
    """Files and batches of one demo server; batches run in background threads."""

    def __init__(
        self, port: int, publish: Publisher, counter: FaultCounter, batch_delay: float = 0.0
    ) -> None:
        self.files = FileStore()
        self.batch_delay = batch_delay
        self.answered: Counter[str] = Counter()
        self.created = 0
        self._port = port
        self._publish = publish
        self._counter = counter
        self._lock = threading.Lock()
        self._batches: OrderedDict[str, Batch] = OrderedDict()
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()

    # -- HTTP --------------------------------------------------------------------------

    def route(
        self,
        method: str,
        path: str,
        query: str,
        content_type: str | None,
        body: bytes,
        faults: Faults,
    ) -> Response | None:
        """Answer ``/v1/files...`` and ``/v1/batches...`` (also without ``/v1``); else None."""
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["v1"]:
            parts = parts[1:]
        if not parts or parts[0] not in ("files", "batches"):
            return None
        if parts[0] == "files":
            return self.files.route(method, parts[1:], query, content_type, body)
        return self._batches_route(method, parts[1:], query, body, faults)

    def _batches_route(
        self, method: str, parts: list[str], query: str, body: bytes, faults: Faults
    ) -> Response:
        path = "/v1/batches" + "".join("/" + p for p in parts)
        if not parts:
            if method == "POST":
                return Response.json(self.create(body, faults))
            if method == "GET":
                return Response.json(self.listing(parse_qs(query)))
            raise not_allowed(method, path, "GET, POST")
        if len(parts) == 1:
            if method != "GET":
                raise not_allowed(method, path, "GET")
            return self._json(self.get(parts[0]))
        if len(parts) == 2 and parts[1] == "cancel":
            if method != "POST":
                raise not_allowed(method, path, "POST")
            return self._json(self.cancel(parts[0]))
        raise DemoHTTPError(404, f"Invalid URL ({method} {path}).", code="not_found")

    def _json(self, batch: Batch) -> Response:
        with self._lock:
            return Response.json(batch.to_json())

    # -- operations --------------------------------------------------------------------

    def create(self, body: bytes, faults: Faults) -> dict[str, Any]:
        """``POST /v1/batches``: check the request, start the batch in the background and
        return it as it was created (``validating``)."""
        req = _json_object(body)
        input_file_id = _required_str(req, "input_file_id")
        endpoint = _required_str(req, "endpoint")
        if endpoint not in SUPPORTED_ENDPOINTS:
            raise invalid_value("endpoint", endpoint, SUPPORTED_ENDPOINTS)
        window = _required_str(req, "completion_window")
        if window not in COMPLETION_WINDOWS:
            raise invalid_value("completion_window", window, COMPLETION_WINDOWS)
        metadata = check_metadata(req.get("metadata"))
        batch_faults = BatchFaults.merge(faults, metadata)
        source = self.files.get(input_file_id)
        if source.purpose != "batch":
            raise DemoHTTPError(
                400,
                f"The input file must have purpose 'batch'; {input_file_id} has purpose "
                f"'{source.purpose}'.",
                param="input_file_id",
            )
        with self._lock:
            self.created += 1
            seq = f"{self.created}\0{input_file_id}\0{endpoint}".encode()
            batch_id = "batch_" + hashlib.sha256(seq).hexdigest()[:24]
            batch = Batch(
                batch_id, endpoint, input_file_id, window, metadata, int(time.time()), batch_faults
            )
            self._batches[batch_id] = batch
            created = batch.to_json()
            worker = threading.Thread(
                target=self._run,
                args=(batch, source.data),
                name=f"chatimg-demo-{batch_id}",
                daemon=True,
            )
            self._threads = [t for t in self._threads if t.is_alive()] + [worker]
        worker.start()
        return created

    def get(self, batch_id: str) -> Batch:
        """The batch with this id; 404 when there is none."""
        with self._lock:
            batch = self._batches.get(batch_id)
        if batch is None:
            raise DemoHTTPError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
        return batch

    def cancel(self, batch_id: str) -> Batch:
        """``POST /v1/batches/{id}/cancel``: ``cancelling`` now, ``cancelled`` soon after."""
        batch = self.get(batch_id)
        with self._lock:
            if batch.status in _CANCELLABLE:
                batch.mark("cancelling")
                batch.cancel.set()
            elif batch.status not in ("cancelling", "cancelled"):
                raise DemoHTTPError(409, f"Cannot cancel a batch with status '{batch.status}'.")
        return batch

    def listing(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """``GET /v1/batches`` (newest first) with ``limit`` (1-100, default 20) and ``after``."""
        limit = query_int(query, "limit", 20, 1, 100)
        with self._lock:
            batches = list(reversed(self._batches.values()))
            return paginate(batches, limit, query_str(query, "after"))

    def close(self) -> None:
        """Stop every running batch (their state stays as it was) and wait for the threads."""
        self._closing.set()
        with self._lock:
            threads = list(self._threads)
            for b in self._batches.values():
                b.cancel.set()
        for t in threads:
            t.join(timeout=2)

    # -- the worker --------------------------------------------------------------------

    def _run(self, batch: Batch, data: bytes) -> None:
        try:
            self._process(batch, data)
        except Exception as e:  # a bug: the batch fails with one line, never a traceback
            message = f"demo server bug: {type(e).__name__}: {e}"
            if not self._closing.is_set():
                print(f"jupyter_chatimg {message}", file=sys.stderr)
            with self._lock:
                batch.errors = [batch_error("server_error", message)]
                batch.mark("failed")

    def _process(self, batch: Batch, data: bytes) -> None:
        lines, errors = parse_input(data, batch.endpoint)
        if batch.faults.fail:
            errors = [batch_error("demo_fault", "demo fault: injected batch failure (batch-fail)")]
        with self._lock:
            if errors:
                batch.errors = errors
                batch.mark("failed")
                return
            if batch.status == "cancelling":
                batch.mark("cancelled")
                return
            batch.model = lines[0].base_model
            batch.total = len(lines)
            batch.mark("in_progress")
        out: list[bytes] = []
        err: list[bytes] = []
        stop, done = self._run_lines(batch, lines, out, err)
        if self._closing.is_set():
            return
        if stop is not None:
            for i, item in enumerate(lines[done:], done):
                err.append(unrun_record(batch.id, i, item.custom_id, stop))
        self._finish(batch, out, err, stop)

    def _run_lines(
        self, batch: Batch, lines: list[BatchLine], out: list[bytes], err: list[bytes]
    ) -> tuple[str | None, int]:
        """Answer the lines in order, appending their records to ``out`` and ``err``.

        Returns why it stopped early (``expired``, ``cancelled``; None: it did not) and
        how many lines it answered."""
        expire = batch.faults.expire_after
        for i, item in enumerate(lines):
            if expire is not None and i >= expire:
                return "expired", i
            if batch.cancel.is_set() or (
                self.batch_delay > 0 and batch.cancel.wait(self.batch_delay)
            ):
                return "cancelled", i
            result = self._answer(item, batch.endpoint)
            (out if result.status == 200 else err).append(
                output_record(batch.id, i, item.custom_id, result)
            )
            with self._lock:
                self.answered[item.custom_id] += 1
                if result.status == 200:
                    batch.completed += 1
                else:
                    batch.failed += 1
                if result.tokens:
                    batch.input_tokens += result.tokens[0]
                    batch.output_tokens += result.tokens[1]
        return None, len(lines)

    def _finish(self, batch: Batch, out: list[bytes], err: list[bytes], stop: str | None) -> None:
        with self._lock:
            finalizing = stop is None and batch.status == "in_progress"
            if finalizing:
                batch.mark("finalizing")
        if finalizing and self._closing.wait(self.batch_delay):
            return
        name = batch.id
        out_file = (
            self.files.add(b"".join(out), f"{name}_output.jsonl", "batch_output") if out else None
        )
        err_file = (
            self.files.add(b"".join(err), f"{name}_error.jsonl", "batch_output") if err else None
        )
        with self._lock:
            batch.output_file_id = out_file.id if out_file else None
            batch.error_file_id = err_file.id if err_file else None
            if stop == "expired":
                batch.mark("expired")
            elif stop == "cancelled" or batch.status == "cancelling":
                batch.mark("cancelled")
            else:
                batch.mark("completed")

    def _answer(self, item: BatchLine, endpoint: str) -> Outcome:
        """Answer one line as the live ``endpoint`` answers it without streaming (chat
        lines take faults from ``model@``)."""
        fallback_id = "req_" + hashlib.sha256(item.body).hexdigest()[:24]
        try:
            if endpoint == IMAGES_ENDPOINT:
                images = answer_images(item.body)
                body = images.body(self._publish)
                return Outcome(200, body, images.request_id, _tokens(body.get("usage")))
            faults = parse_faults(item.model.split("@", 1)[1] if "@" in item.model else None)
            if not self._counter.active(faults):
                faults = Faults()
            if faults.status is not None:
                raise injected_error(faults.status)
            ans = answer_chat(item.body, faults, self._port, self._publish)
        except FaultSyntaxError as e:
            return Outcome(
                400, DemoHTTPError(400, str(e), param="X-Demo-Fault").body(), fallback_id
            )
        except DemoHTTPError as e:
            return Outcome(e.status, e.body(), fallback_id)
        except Exception as e:  # a bug: this line answers 500, as the live route would
            message = f"demo server bug: {type(e).__name__}: {e}"
            print(f"jupyter_chatimg {message}", file=sys.stderr)
            body = DemoHTTPError(500, message, type="server_error").body()
            return Outcome(500, body, fallback_id)
        return Outcome(200, ans.completion(), ans.request_id, _tokens(ans.usage))
