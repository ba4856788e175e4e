"""Wire dialects: one pure module per API the client speaks (no I/O here).

A dialect knows the path it posts to, how to build the body, how to read a
streamed reply (an incremental parser fed one Server-Sent Event at a time) and
a whole one. The HTTP layer only moves bytes; the session picks the dialect.

- ``chat``: ``/chat/completions`` (DESIGN 4.1)
- ``images``: ``/images/generations`` (JSON) and ``/images/edits`` (multipart) (DESIGN 4.2)
- ``errors``: error bodies and ``Retry-After``, shared by every dialect
- ``base``: what a dialect provides (``Dialect``, ``ReplyParser``, ``Delta``)
"""

from __future__ import annotations

from .base import Delta, Dialect, ReplyParser

__all__ = ["Delta", "Dialect", "ReplyParser"]
