"""Peak memory while receiving a non-streamed reply that carries a 20 MB base64 image.

The client runs in a fresh subprocess (so nothing else is in its memory); the
server runs here. Two numbers: the peak resident set size above the RSS just
before the call (everything: Python objects and Pillow's pixel buffers; Linux
``VmHWM``, reset through ``/proc/self/clear_refs`` after a warm-up request with a
small image of the same kind), and tracemalloc's peak (Python allocations only) in a
second subprocess.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys

import numpy as np
from PIL import Image

from ._common import Row, clean_env, row, size
from ._server import BenchServer, completion_body

CHILD = r"""
import json, re, sys, tracemalloc
import jupyter_chatimg as ci
url, warm_url, mode = sys.argv[1:4]

def status(field):
    with open("/proc/self/status") as fh:
        return int(re.search(field + r":\s+(\d+) kB", fh.read()).group(1)) * 1024

ci.chat("warm up", base_url=warm_url, stream=False, display=False, max_retries=0)
if mode == "trace":
    tracemalloc.start()
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak RSS (VmHWM) to the current RSS
before = status("VmRSS")
r = ci.chat("draw", base_url=url, stream=False, display=False, max_retries=0)
peak_rss = status("VmHWM") - before
traced = tracemalloc.get_traced_memory()[1] if mode == "trace" else 0
print(json.dumps({"rss": peak_rss, "traced": traced, "images": [im.size for im in r.images],
                  "text": r.text[:40]}))
"""


def _payload(nbytes: int) -> str:
    """A data URI of about ``nbytes`` base64 characters (a noise PNG: incompressible)."""
    pixels = nbytes * 3 // 4 // 3
    side = int(pixels**0.5)
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def run(small: bool) -> list[Row]:
    uri = _payload(200_000 if small else 20_000_000)
    body = completion_body(f"Here is your image.\n\n![image]({uri})\n")
    # The warm-up reply has the same shape (a small image in the text), so that what is
    # done once per process (first use of the markdown parser, of the image decoder, the
    # allocator's thresholds) is not counted as the cost of the 20 MB reply.
    small_body = completion_body(f"warm\n\n![w]({_payload(2000)})\n")
    with BenchServer() as srv, BenchServer() as warm:
        srv.set_reply(body, content_type="application/json")
        warm.set_reply(small_body, content_type="application/json")
        rss = _run_child(srv.url, warm.url, "rss")
        traced = _run_child(srv.url, warm.url, "trace")
    payload = len(uri)
    ratio = float(rss["rss"]) / payload  # type: ignore[arg-type]
    return [
        row(
            f"peak memory receiving a non-streamed reply with a {size(payload)} base64 image "
            f"(decoded {rss['images'][0][0]}x{rss['images'][0][1]})",  # type: ignore[index]
            f"payload: {size(payload)}",
            f"RSS +{size(float(rss['rss']))} (tracemalloc peak {size(float(traced['traced']))})",  # type: ignore[arg-type]
            f"{ratio:.2f}x",
            "<= 4x the payload",
            ratio <= 4,
        )
    ]


def _run_child(url: str, warm_url: str, mode: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, url, warm_url, mode],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=300,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"memory child failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


if __name__ == "__main__":  # pragma: no cover
    for r in run(small="--small" in sys.argv):
        print(r)
