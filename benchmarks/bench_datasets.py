"""Benchmark: datasets (``chat_many`` with a journal, lazy items, the Batch API).

Rows, ratios from the same run (``run(small)``; ``python -m benchmarks.bench_datasets``):

- 10,000 items (400 with ``small``) at 30 ms latency, concurrency 32: the
  ideal is items / 32 * 30 ms (9.4 s); target within 1.25x. The server is an
  asyncio process of its own (one write per answer), so that its work does
  not share the client's interpreter.
- the same with ``journal=``: at most 5 % slower than without (the two runs
  alternate, best of two each).
- peak RSS of a process that runs 10,000 items whose images are read from
  paths (PNG files on disk, one per item) against that of 1,000 items: at
  most 1.3x (items are read lazily, images only when sent).
- a 10,000-line captioning job in the demo's Batch API (``mode="batch"``,
  one 96 x 64 picture per line, read from its path): built, uploaded and
  mapped back (the client's time: the server's processing is excluded) in at
  most 2x the time it takes to write the JSONL alone (the same requests
  prepared and written by a bare loop).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._common import clean_env, scrubbed_env

LATENCY = 0.03
CONCURRENCY = 32
HERE = Path(__file__).resolve().parent

SERVER = r"""
import asyncio, json, sys
LAT = float(sys.argv[1])
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = json.loads(await reader.readexactly(length)) if length else {}
            if LAT:
                await asyncio.sleep(LAT)  # the model's latency
            content = (body.get("messages") or [{}])[-1].get("content")
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content if p.get("type") == "text")
            reply = {"id": "bench", "object": "chat.completion", "model": body.get("model"),
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": f"echo {content}"}}],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
            data = json.dumps(reply).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(data) + data)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=512)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()
asyncio.run(main())
"""


class _Server:
    def __init__(self, latency: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(latency)], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}/v1"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _live(url: str, n: int, journal: Path | None) -> tuple[float, bool]:
    import jupyter_chatimg as ci

    prompts = (f"item {i}" for i in range(n))
    started = time.perf_counter()
    results = ci.chat_many(
        prompts,
        concurrency=CONCURRENCY,
        base_url=url,
        stream=False,
        display=False,
        journal=journal,
        max_retries=0,
    )
    elapsed = time.perf_counter() - started
    ok = [r.text for r in results] == [f"echo item {i}" for i in range(n)]
    return elapsed, ok


RSS_CHILD = r"""
import resource, sys, time
from pathlib import Path
import jupyter_chatimg as ci
folder, n, url = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
paths = (str(folder / f"{i % 10000:05d}.png") for i in range(n))
results = ci.chat_many(paths, prompt="Caption this.", concurrency=8, base_url=url,
                       stream=False, display=False)
assert len(results) == n and all(r.ok for r in results), [r.error for r in results if r.error][:2]
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _images(folder: Path, n: int) -> None:
    from PIL import Image

    for i in range(n):
        path = folder / f"{i:05d}.png"
        if not path.exists():
            # photo-like noise, 256 x 192: about 150 KB as PNG, as a data URI more
            Image.effect_noise((256, 192), 40 + i % 50).convert("RGB").save(path)


def _cards(folder: Path, n: int) -> list[str]:
    """``n`` small product-style pictures (a coloured shape on white, 96 x 64) as PNG files."""
    from PIL import Image, ImageDraw

    paths = []
    for i in range(n):
        path = folder / f"card{i:05d}.png"
        img = Image.new("RGB", (96, 64), "white")
        colour = ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)
        ImageDraw.Draw(img).ellipse((20 + i % 10, 10, 70, 54), fill=colour)
        img.save(path)
        paths.append(str(path))
    return paths


def _peak_rss(folder: Path, n: int, url: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, str(folder), str(n), url],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=True,
    ).stdout
    return int(out.strip().splitlines()[-1])


def _batch_job(n: int, folder: Path) -> tuple[float, float, bool]:
    """(seconds to write the JSONL alone, client seconds of the batch job, texts right)."""
    import jupyter_chatimg as ci
    from jupyter_chatimg import _jobs
    from jupyter_chatimg._dialects.batch import input_line
    from jupyter_chatimg._request import ImageRef, build_request
    from jupyter_chatimg._session import Session, settings_for

    paths = _cards(folder, n)
    prompt = "Write a one-line caption."
    with ci.serve_demo() as demo:
        session = Session()
        template = build_request(prompt, base_url=demo.url, model="demo-vision", stream=False)
        settings = settings_for(template.settings_overrides())
        started = time.perf_counter()
        with (folder / "alone.jsonl").open("wb") as fh:
            for i, path in enumerate(paths):
                parts = (prompt, ImageRef(path, "item"))
                body = session.prepare(template.evolve(parts=parts), settings).body
                fh.write(input_line(i, body))
        alone = time.perf_counter() - started

        waited = [0.0]
        real_wait = _jobs.BatchRunner.wait

        def timed_wait(self: Any, *args: Any, **kwargs: Any) -> None:
            t = time.perf_counter()
            try:
                real_wait(self, *args, **kwargs)
            finally:
                waited[0] += time.perf_counter() - t

        _jobs.BatchRunner.wait = timed_wait  # type: ignore[method-assign]
        try:
            started = time.perf_counter()
            results = ci.chat_many(
                paths,
                prompt=prompt,
                base_url=demo.url,
                model="demo-vision",
                display=False,
                journal=folder / "job.jsonl",
                mode="batch",
            )
            total = time.perf_counter() - started - waited[0]
        finally:
            _jobs.BatchRunner.wait = real_wait  # type: ignore[method-assign]
        right = all(r.ok for r in results) and len(results) == n
        right = right and "96" in results[7].text  # the demo describes the picture it got
    return alone, total, right


def run(small: bool = False) -> list[dict[str, Any]]:
    """Measure; one row per case."""
    items = 400 if small else 10_000
    rows: list[dict[str, Any]] = []
    with scrubbed_env(), tempfile.TemporaryDirectory(prefix="chatimg-bench-") as tmp:
        folder = Path(tmp)
        server = _Server(LATENCY)
        try:
            _live(server.url, 64, None)  # warm-up: imports, threads, connections
            plain: list[float] = []
            journaled: list[float] = []
            complete = True
            for round_ in range(2):
                t, ok = _live(server.url, items, None)
                plain.append(t)
                complete &= ok
                t, ok = _live(server.url, items, folder / f"j{round_}.jsonl")
                journaled.append(t)
                complete &= ok
        finally:
            server.close()
        ideal = items / CONCURRENCY * LATENCY
        best, best_j = min(plain), min(journaled)
        rows.append(
            {
                "what": f"chat_many: {items} items, 30 ms latency, concurrency {CONCURRENCY}",
                "baseline": f"ideal {ideal:.2f} s",
                "value": f"{best:.2f} s" + ("" if complete else " (items wrong)"),
                "ratio": f"{best / ideal:.2f}x",
                "target": "<= 1.25x",
                "ok": complete and best / ideal <= 1.25,
            }
        )
        rows.append(
            {
                "what": f"chat_many with journal=: {items} items (as above)",
                "baseline": f"without a journal {best:.2f} s",
                "value": f"{best_j:.2f} s",
                "ratio": f"{best_j / best:.3f}x",
                "target": "<= 1.05x",
                "ok": complete and best_j / best <= 1.05,
            }
        )
        big, few = (1000, 100) if small else (10_000, 1_000)
        _images(folder, big)
        server = _Server(0.0)
        try:
            rss_few = _peak_rss(folder, few, server.url)
            rss_big = _peak_rss(folder, big, server.url)
        finally:
            server.close()
        rows.append(
            {
                "what": f"peak RSS, {big} items with images read from paths",
                "baseline": f"{few} items: {rss_few / 1024:.0f} MB",
                "value": f"{rss_big / 1024:.0f} MB",
                "ratio": f"{rss_big / rss_few:.2f}x",
                "target": "<= 1.3x",
                "ok": rss_big / rss_few <= 1.3,
            }
        )
        lines = 500 if small else 10_000
        alone, total, right = _batch_job(lines, folder)
        rows.append(
            {
                "what": f'mode="batch": {lines} lines built, uploaded and mapped back (demo)',
                "baseline": f"writing the JSONL alone {alone:.2f} s",
                "value": f"{total:.2f} s" + ("" if right else " (results wrong)"),
                "ratio": f"{total / alone:.2f}x",
                "target": "<= 2x",
                "ok": right and total / alone <= 2.0,
            }
        )
    return rows


if __name__ == "__main__":
    os.environ.update(clean_env())
    for row in run(small="--small" in sys.argv[1:]):
        print(json.dumps(row))
