"""The chat panel: an ipywidgets front end over its own ``Session``.

The only part of the package (with the batch's progress bar) that imports
ipywidgets: ``_widget`` (the ChatPanel), ``_sink`` (the transcript's reply
view), ``_tray`` (the image attachments), ``_keys`` (Ctrl/Cmd+Enter).
"""

from __future__ import annotations

from ._widget import ChatPanel, Turn

__all__ = ["ChatPanel", "Turn"]
