"""pytest plugin: let nbval apply ``update_display_data`` the way a front end does.

nbval 0.11.0 drops ``update_display_data`` ("unhandled iopub msg") and so
compares the *first* state of an output shown with ``display_id`` against the
*final* state saved in the notebook: every cell that streams in place fails.

A front end replaces ``data`` and ``metadata`` of every earlier output that was
displayed with the same ``transient.display_id``. This plugin does the same for
the outputs nbval collects for the running cell, then lets nbval compare as
usual: the comparison itself is untouched.

How it hooks in (nbval 0.11.0 internals, checked at import):
``IPyNbCell.runtest`` reads every iopub message through
``IPyNbFile.get_kernel_message`` and appends the outputs it builds to the list
it has already stored as ``item.test_outputs``. We wrap that method: after a
display with an id is handed out, the next call sees which output nbval
appended for it; an update is applied to those outputs and never reaches
nbval. Loaded by the root ``conftest.py``; elsewhere use
``-p tests._nbval_updates`` (with the repository root on ``sys.path``).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Generator
from copy import deepcopy
from typing import Any

import nbformat
import pytest
from nbval.plugin import IPyNbCell, IPyNbFile

__all__ = ["DisplayTracker"]

_DISPLAY_TYPES = frozenset({"display_data", "execute_result"})


def _display_id(content: dict[str, Any]) -> str | None:
    transient = content.get("transient") or {}
    display_id = transient.get("display_id")
    return display_id if isinstance(display_id, str) else None


class DisplayTracker:
    """The outputs of one running cell that carry a ``display_id``."""

    def __init__(self, earlier_ids: set[str]) -> None:
        self.displays: list[tuple[str, Any]] = []
        self.earlier_ids = earlier_ids
        self._pending: tuple[str, int] | None = None

    def settle(self, outputs: list[Any] | None) -> None:
        """Bind the display handed out last to the output nbval built from it."""
        if self._pending is None or outputs is None:
            return
        display_id, index = self._pending
        self._pending = None
        if len(outputs) > index:
            self.displays.append((display_id, outputs[index]))

    def handing_out(self, msg: dict[str, Any], outputs: list[Any] | None) -> None:
        """Remember a display with an id that nbval is about to receive."""
        if msg["msg_type"] not in _DISPLAY_TYPES or outputs is None:
            return
        display_id = _display_id(msg["content"])
        if display_id is not None:
            self._pending = (display_id, len(outputs))

    def update(self, content: dict[str, Any]) -> None:
        """Apply one ``update_display_data`` to every output shown with its id."""
        display_id = _display_id(content)
        if display_id is None:
            return
        hits = 0
        for shown_id, output in self.displays:
            if shown_id == display_id:
                output["data"] = nbformat.from_dict(deepcopy(content.get("data", {})))
                output["metadata"] = nbformat.from_dict(deepcopy(content.get("metadata", {})))
                hits += 1
        if not hits and display_id in self.earlier_ids:
            warnings.warn(
                f"update_display_data for display_id {display_id!r} shown in an earlier cell: "
                "nbval has already compared that cell; update displays in the cell that made them",
                stacklevel=1,
            )

    def ids(self) -> set[str]:
        """The display ids this cell has shown."""
        return {display_id for display_id, _ in self.displays}


def _already_handled_by_nbval() -> bool:
    return "update_display_data" in inspect.getsource(IPyNbCell.runtest)


_original_get_kernel_message: Callable[..., dict[str, Any]] = IPyNbFile.get_kernel_message


def _get_kernel_message(
    self: IPyNbFile, timeout: float | None = None, stream: str = "iopub"
) -> dict[str, Any]:
    cell = getattr(self, "_chatimg_cell", None)
    tracker: DisplayTracker | None = getattr(cell, "_chatimg_displays", None)
    if stream != "iopub" or tracker is None:
        return _original_get_kernel_message(self, timeout=timeout, stream=stream)
    while True:
        tracker.settle(cell.test_outputs)
        msg = _original_get_kernel_message(self, timeout=timeout, stream=stream)
        if msg["msg_type"] == "update_display_data":
            tracker.update(msg["content"])
            continue
        tracker.handing_out(msg, cell.test_outputs)
        return msg


_ACTIVE = not _already_handled_by_nbval()
if _ACTIVE:
    IPyNbFile.get_kernel_message = _get_kernel_message


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Track display ids while an nbval cell runs."""
    if not (_ACTIVE and isinstance(item, IPyNbCell)):
        return (yield)
    notebook = item.parent
    earlier: set[str] = notebook.__dict__.setdefault("_chatimg_earlier_ids", set())
    tracker = DisplayTracker(earlier)
    item._chatimg_displays = tracker  # type: ignore[attr-defined]
    notebook._chatimg_cell = item  # type: ignore[attr-defined]
    try:
        return (yield)
    finally:
        notebook._chatimg_cell = None  # type: ignore[attr-defined]
        earlier.update(tracker.ids())
