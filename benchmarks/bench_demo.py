"""What the client observes against the offline demo server: time to first token
and tokens per second (reported, no target)."""

from __future__ import annotations

import sys

from PIL import Image

import jupyter_chatimg as ci
from jupyter_chatimg.demo import serve_demo

from ._common import Row, median, ms, row, scrubbed_env


def run(small: bool) -> list[Row]:
    image = Image.radial_gradient("L").convert("RGB").resize((640, 480))
    firsts: list[float] = []
    totals: list[float] = []
    rates: list[float] = []
    n_long = 500 if small else 20_000
    tokens = 0
    with scrubbed_env(), serve_demo() as server:
        for _ in range(1 if small else 5):
            r = ci.chat(
                "Describe this picture.",
                [image],
                model="demo-vision",
                base_url=server.url,
                display=False,
            )
            assert r.timings.first_token is not None and r.timings.total is not None
            firsts.append(r.timings.first_token)
            totals.append(r.timings.total)
        for _ in range(1 if small else 3):
            r = ci.chat(
                "Count.", model=f"demo-vision@long={n_long}", base_url=server.url, display=False
            )
            assert r.timings.first_token is not None and r.timings.total is not None
            tokens = int((r.usage or {}).get("completion_tokens") or n_long)
            rates.append(tokens / max(1e-9, r.timings.total - r.timings.first_token))
    return [
        row(
            "time to first token, demo-vision describing a 640x480 image (client-observed)",
            "-",
            f"{ms(median(firsts))} (whole reply {ms(median(totals))})",
        ),
        row(
            f"tokens per second the client reads, demo `long={n_long}` (as fast as it sends)",
            "-",
            f"{median(rates):,.0f} tokens/s ({tokens:,} tokens, no rendering)",
        ),
    ]


if __name__ == "__main__":  # pragma: no cover
    for r in run(small="--small" in sys.argv):
        print(r)
