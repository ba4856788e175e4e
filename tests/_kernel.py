"""Running cells in a real kernel (jupyter_client) and collecting their iopub messages."""

from __future__ import annotations

import queue
import time
from typing import Any


def run_cell(kc: Any, code: str, timeout: float = 60) -> list[dict[str, Any]]:
    """Execute ``code``; return every iopub message of that execution."""
    msg_id = kc.execute(code)
    messages = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return messages
    raise TimeoutError(f"cell did not finish in {timeout} s")
