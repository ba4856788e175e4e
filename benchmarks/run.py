"""Run every benchmark, print the table, write ``benchmarks/RESULTS.md``.

.venv/bin/python -m benchmarks            # all, full size (a few minutes)
.venv/bin/python -m benchmarks --small    # tiny sizes, nothing written
.venv/bin/python -m benchmarks --only images,parser
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.metadata
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from ._common import Row, row

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
# In the order they run; bench_batch is another engineer's and is used when present.
MODULES = (
    "stream",
    "render",
    "images",
    "partials",
    "memory",
    "parser",
    "startup",
    "demo",
    "batch",
    "datasets",
)
PACKAGES = (
    "jupyter_chatimg",
    "httpx",
    "httpx-sse",
    "pillow",
    "ipython",
    "ipykernel",
    "jupyter_client",
    "numpy",
)


def available() -> dict[str, Callable[[bool], list[Row]]]:
    """name -> run(small) for every benchmark module that exists."""
    out: dict[str, Callable[[bool], list[Row]]] = {}
    for name in MODULES:
        if not (HERE / f"bench_{name}.py").exists():
            continue
        module = importlib.import_module(f"benchmarks.bench_{name}")
        out[name] = module.run
    return out


def machine() -> list[str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = []
    for pkg in PACKAGES:
        try:
            versions.append(f"{pkg} {importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{pkg} -")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return [
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- CPU: {cpu}, {os.cpu_count()} logical cores; load average at start {load}",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()})",
        "- " + ", ".join(versions),
    ]


def table(rows: list[Row]) -> list[str]:
    out = [
        "| what | baseline (same run) | value | ratio | target | ok |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ok = {True: "yes", False: "**no**", None: "-"}[r["ok"]]
        cells = [str(r[k]).replace("|", "\\|") for k in ("what", "baseline", "value", "ratio")]
        out.append("| " + " | ".join([*cells, str(r["target"]), ok]) + " |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--small", action="store_true", help="tiny sizes (checks that they run)")
    parser.add_argument("--only", default="", help="comma-separated: " + ",".join(MODULES))
    parser.add_argument("--out", type=Path, default=None, help="where to write the table")
    args = parser.parse_args(argv)
    benches = available()
    chosen = [n for n in args.only.split(",") if n] or list(benches)
    unknown = [n for n in chosen if n not in benches]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {sorted(benches)}")
    info = machine()
    print("\n".join(info), flush=True)
    rows: list[Row] = []
    started = time.perf_counter()
    for name in chosen:
        t = time.perf_counter()
        print(f"\n== {name} ...", flush=True)
        try:
            got = benches[name](args.small)
        except Exception as exc:  # one broken benchmark must not hide the others' numbers
            traceback.print_exc()
            got = [row(f"{name}: failed", "-", f"{type(exc).__name__}: {exc}", ok=False)]
        for r in got:
            print(f"   {r['what']}: {r['value']} [{r['ratio']}; target {r['target']}]")
        print(f"   ({time.perf_counter() - t:.0f} s)", flush=True)
        rows.extend(got)
    lines = table(rows)
    print("\n" + "\n".join(lines))
    out = args.out or (None if args.small or args.only else RESULTS)
    if out is not None:
        text = [
            "# Benchmark results",
            "",
            "Written by `.venv/bin/python -m benchmarks` "
            f"(all benchmarks, {time.perf_counter() - started:.0f} s). Every ratio is against "
            "a baseline measured in the same run; times are medians of repeated runs.",
            "",
            *info,
            "",
            *lines,
            "",
            *NOTES,
        ]
        out.write_text("\n".join(text) + "\n", encoding="utf-8")
        print(f"\nwritten to {out}")
    failed = [r for r in rows if r["ok"] is False]
    return 1 if failed and not args.small else 0


NOTES = [
    "## How each number is measured",
    "",
    "- Streams come from a loopback server in the benchmark process (`benchmarks/_server.py`) "
    "that writes 64 KB pieces as fast as it can, or paces events at a given rate. "
    "Kernel benchmarks run cells in a real IPython kernel through jupyter_client and count "
    "the iopub messages of each cell; a message's size is the JSON of its header, parent "
    "header, metadata and content. Cell wall time is from `execute_request` to the idle status.",
    "- Wall time: the baseline cell reads the same stream with httpx + httpx-sse and "
    "`json.loads` per event, rendering nothing; both cells create their own `httpx.Client`. "
    "Warm-up runs first, then the cells alternate; medians. The client reads with httpx-sse "
    "too, and builds its TLS context once per process (every new `httpx.Client` otherwise "
    "loads the CA bundle again, 15-40 ms); the second row shows the ratio against a bare loop "
    "that also reuses its TLS context, i.e. the per-event cost of parsing and rendering alone.",
    "- Bytes: the per-token full redraw baseline is computed (one message per token carrying "
    "the whole text so far, with our measured per-message overhead).",
    "- First token: the server pauses 0.3 s before the first content event and records "
    "when it sent it; the delay is the kernel's header date of the first display message "
    "holding that token minus that time (same machine clock).",
    "- Photo: a synthetic 12 MP camera-like image (sky/ground gradients, soft large-scale "
    "variation, fine texture, hard-edged objects, Gaussian sensor noise sigma 4). "
    "Chart: 1600x1200, axes, grid, three line series, bars, crisp (not antialiased) text.",
    "- Partial images: the server streams a 1024x1024 generation as the Images API does "
    "(three `image_generation.partial_image` events, each a full-size PNG blurred less and "
    "less, then `image_generation.completed`), 0.3 s apart. Bytes are every display message "
    "of the cell (text included) against the final PNG's bytes as the server sent them. The "
    "first partial goes to the front end as the server encoded it (no decoding: a 1024x1024 "
    "PNG takes 70-130 ms to decode here); later large partials go as half-size previews shown "
    "at full size, the final image as every returned image is shown. The flat drawing's "
    "final PNG is 9 KB while its blurred partials are up to 100 KB, so no ratio to the final "
    "can hold there: that row has no target and shows the ratio to re-sending every image.",
    "- Memory: the client runs in a fresh subprocess against the server here; the RSS "
    "number is the process's peak RSS minus its RSS just before the call (it includes "
    "Pillow's pixel buffers), and a second run reports tracemalloc's peak.",
    "- Parser: `StreamParser.feed` for every event, then `result()` (which also scans the "
    "text for markdown images), on markdown text cut into 16-character deltas.",
    "- Render: a 200 KB markdown reply as models write it (headings, prose, lists, code, "
    "tables, math, quotes; one word per token) streamed into a `%%chatimg` cell at 500 and "
    "5,000 tokens/s. The kernel's `LiveReply._compose` (where each update is rendered) is "
    "wrapped to add up its thread CPU time; the stream's wall time is from its first update "
    "to its last, on the kernel's clock. Baseline: rendering the whole text again at every "
    "one of those updates with markdown-it-py + nh3 (cost per byte measured on the whole "
    "reply in the same kernel). The wrapper needs only `_compose` and `_texts`, so the same "
    "benchmark runs against an older checkout too (`PYTHONPATH=<checkout>`).",
]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
