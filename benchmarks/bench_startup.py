"""Start-up costs: ``%load_ext jupyter_chatimg`` in a fresh kernel (against starting
the kernel) and the package's import time (``python -X importtime``)."""

from __future__ import annotations

import subprocess
import sys

from ._common import Row, clean_env, median, ms, row
from ._kernel import Kernel


def load_ext(small: bool) -> list[Row]:
    starts: list[float] = []
    loads: list[float] = []
    for _ in range(1 if small else 5):
        with Kernel.start() as k:
            starts.append(k.started_in)
            empty = k.run("pass").wall
            loads.append(k.run("%load_ext jupyter_chatimg").wall - empty)
    start, load = median(starts), median(loads)
    return [
        row(
            "`%load_ext jupyter_chatimg` in a fresh kernel (cell time minus an empty cell)",
            f"starting the kernel: {ms(start)}",
            f"+{ms(load)}",
            f"{load / start:.2f}x of start-up",
            "adds <= 0.3 s",
            load <= 0.3,
        )
    ]


def _python(code: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *flags, "-c", code],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
        check=True,
    )


def import_time(small: bool) -> list[Row]:
    runs = 1 if small else 7
    bare: list[float] = []
    ours: list[float] = []
    probe = "import time; t = time.perf_counter(); {}; print(time.perf_counter() - t)"
    for _ in range(runs):
        bare.append(float(_python(probe.format("pass")).stdout))
        ours.append(float(_python(probe.format("import jupyter_chatimg")).stdout))
    total = 0
    top: list[tuple[int, str]] = []
    for line in _python("import jupyter_chatimg", "-X", "importtime").stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _self, cumulative, name = line.removeprefix("import time:").split("|")
        if not cumulative.strip().isdigit():
            continue
        name = name.rstrip()
        if name.strip() == "jupyter_chatimg":
            total = int(cumulative)
        elif not name.strip().startswith(("jupyter_chatimg", "_")):
            top.append((int(cumulative), name.strip()))
    top.sort(reverse=True)
    heads: list[tuple[int, str]] = []
    for us, name in top:  # the largest entry of each top-level package
        if not any(name.split(".")[0] == h.split(".")[0] for _, h in heads):
            heads.append((us, name))
    heads = heads[:6]
    rows = [
        row(
            "`import jupyter_chatimg` in a fresh interpreter (no IPython imported)",
            "-",
            ms(median(ours)),
            "-",
            "-",
        ),
        row(
            "import time, largest packages (`python -X importtime`, cumulative)",
            "-",
            f"jupyter_chatimg {total / 1000:.0f} ms, of which "
            + ", ".join(f"{name} {us / 1000:.0f} ms" for us, name in heads),
            "-",
            "-",
        ),
    ]
    return rows


def run(small: bool) -> list[Row]:
    return load_ext(small) + import_time(small)


if __name__ == "__main__":  # pragma: no cover
    for r in run(small="--small" in sys.argv):
        print(r)
