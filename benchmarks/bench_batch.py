"""Benchmark: ``chat_many`` against a loopback server with 200 ms of latency.

Rows (``run(small)`` returns them; ``python benchmarks/bench_batch.py [--small]`` prints them):

- 64 items (16 with ``small``), concurrency 8, every reply 200 ms late: the
  ideal is items / 8 * 0.2 s (1.6 s); the target is within 1.3x of it.
- the same against a server that takes at most 4 requests at a time and
  answers 429 with ``Retry-After: 0.2`` to the rest: the ideal is
  items / 4 * 0.2 s (3.2 s); every item must complete, in order, and the
  target is within 1.5x of the ideal (the client has to find the limit by
  backing off, and every 429 costs a pause).

A warm-up batch of two items runs first: the first call in a process also
pays for imports and loading the CA bundle once (about 0.3 s here), which is
not what these rows measure.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LATENCY = 0.2


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # socketserver's 5 drops SYNs from 8 clients: 1 s retransmits

    def __init__(self, latency: float, capacity: int | None) -> None:
        self.latency = latency
        self.capacity = capacity
        self.in_flight = 0
        self.limited = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        srv = self.server
        with srv.lock:
            refuse = srv.capacity is not None and srv.in_flight >= srv.capacity
            if refuse:
                srv.limited += 1
            else:
                srv.in_flight += 1
        if refuse:
            error = {"error": {"message": "rate limited", "type": "rate_limit", "code": None}}
            self._send(429, error, {"Retry-After": "0.2"})
            return
        try:
            time.sleep(srv.latency)  # the simulated model's latency
            prompt = body["messages"][-1]["content"]
            reply = {
                "id": "bench",
                "object": "chat.completion",
                "model": body.get("model", "bench"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"echo {prompt}"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            }
        finally:
            with srv.lock:
                srv.in_flight -= 1
        self._send(200, reply, {})

    def _send(self, status: int, obj: Any, headers: dict[str, str]) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _measure(items: int, concurrency: int, capacity: int | None) -> tuple[float, bool, int]:
    import jupyter_chatimg as ci

    server = _Server(LATENCY, capacity)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        prompts = [f"item {i}" for i in range(items)]
        started = time.perf_counter()
        results = ci.chat_many(
            prompts, concurrency=concurrency, base_url=url, stream=False, display=False
        )
        elapsed = time.perf_counter() - started
        ok = [r.text for r in results] == [f"echo {p}" for p in prompts]
        return elapsed, ok, server.limited
    finally:
        server.shutdown()
        server.server_close()


def run(small: bool = False) -> list[dict[str, Any]]:
    """Measure; one row per case (what, baseline, value, ratio, target as text; ok a bool)."""
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "CHATIMG_")) and name != "CHATIMG_CACHE_DIR":
            os.environ.pop(name)
    items = 16 if small else 64
    _measure(2, 2, None)  # once per process: imports, the TLS context, the first threads
    rows = []
    for concurrency, capacity, target in ((8, None, 1.3), (8, 4, 1.5)):
        lanes = capacity or concurrency
        ideal = items / lanes * LATENCY
        elapsed, complete, limited = _measure(items, concurrency, capacity)
        ratio = elapsed / ideal
        what = f"chat_many: {items} items, 200 ms latency, concurrency {concurrency}"
        if capacity:
            what += f", server takes {capacity} at a time (429 + Retry-After; {limited} 429s)"
        rows.append(
            {
                "what": what,
                "baseline": f"ideal {ideal:.2f} s",
                "value": f"{elapsed:.2f} s"
                + ("" if complete else " (items missing or out of order)"),
                "ratio": f"{ratio:.2f}x",
                "target": f"<= {target}x, every item in order",
                "ok": complete and ratio <= target,
            }
        )
    return rows


if __name__ == "__main__":
    for row in run(small="--small" in sys.argv[1:]):
        print(json.dumps(row))
