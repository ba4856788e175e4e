"""A real IPython kernel (jupyter_client), cells run and their iopub messages collected."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jupyter_client.manager import KernelManager, start_new_kernel

from ._common import scrubbed_env

DISPLAY_TYPES = ("display_data", "update_display_data")


@dataclass
class Msg:
    """One iopub message, when this process received it, and its size on the wire."""

    msg: dict[str, Any]
    received: float  # time.time() here

    @property
    def type(self) -> str:
        return str(self.msg["msg_type"])

    @property
    def sent(self) -> float:
        """When the kernel made it (its header date, time.time() scale)."""
        date = self.msg["header"]["date"]
        when = date if isinstance(date, datetime) else datetime.fromisoformat(str(date))
        return when.timestamp()

    @property
    def size(self) -> int:
        """Bytes of its JSON parts (header, parent header, metadata, content) as sent."""
        parts = ("header", "parent_header", "metadata", "content")
        return sum(len(json.dumps(self.msg[p], default=str).encode()) for p in parts)

    @property
    def shown(self) -> str:
        """The text it shows: its HTML (or, from older versions of the package, its markdown)."""
        data = self.msg["content"].get("data", {})
        return str(data.get("text/html", data.get("text/markdown", "")))


@dataclass
class Cell:
    """What running one cell produced."""

    messages: list[Msg] = field(default_factory=list)
    wall: float = 0.0  # execute_request sent -> idle status received

    @property
    def displays(self) -> list[Msg]:
        return [m for m in self.messages if m.type in DISPLAY_TYPES]

    @property
    def errors(self) -> list[str]:
        out = []
        for m in self.messages:
            if m.type == "error":
                out.append(f"{m.msg['content'].get('ename')}: {m.msg['content'].get('evalue')}")
            elif m.type == "stream" and m.msg["content"].get("name") == "stderr":
                out.append(str(m.msg["content"].get("text", "")))
        return out

    def text(self) -> str:
        return "".join(
            str(m.msg["content"].get("text", "")) for m in self.messages if m.type == "stream"
        )


class Kernel:
    """A kernel and its client (use ``with Kernel.start() as k``)."""

    def __init__(self, km: KernelManager, kc: Any, started_in: float) -> None:
        self.km = km
        self.kc = kc
        self.started_in = started_in

    @classmethod
    @contextmanager
    def start(cls) -> Iterator[Kernel]:
        with scrubbed_env():
            t = time.perf_counter()
            km, kc = start_new_kernel(kernel_name="python3")
            started_in = time.perf_counter() - t
        try:
            yield cls(km, kc, started_in)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)

    def run(self, code: str, timeout: float = 300, check: bool = True) -> Cell:
        """Execute ``code``; collect every iopub message of it until the kernel is idle."""
        cell = Cell()
        start = time.perf_counter()
        msg_id = self.kc.execute(code)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            now = time.time()
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                cell.wall = time.perf_counter() - start
                if check and cell.errors:
                    raise RuntimeError(f"cell failed: {code[:60]!r}: {cell.errors[:3]}")
                return cell
            cell.messages.append(Msg(msg, now))
        raise TimeoutError(f"cell did not finish in {timeout} s: {code[:60]!r}")
