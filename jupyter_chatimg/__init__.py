"""jupyter_chatimg: talk to vision and image-generation models from Jupyter.

``%load_ext jupyter_chatimg`` adds the ``%%chatimg`` magic; from Python,
``jupyter_chatimg.chat(prompt, images)`` does the same. With no key and no base
URL configured, an offline demo endpoint inside the package answers.
"""

from __future__ import annotations

from typing import Any

from ._batch import batch_cancel, batch_status, chat_many
from ._chat import achat, chat, clear_cache, conversation, list_models, reset_conversation
from ._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ChatImgError,
    ConfigError,
    ImageInputError,
    NotFoundError,
    RateLimitError,
    ServerError,
    StreamError,
)
from ._result import BatchResults, ChatResult, Choice, Timings
from ._session import Cancel

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BatchResults",
    "Cancel",
    "ChatImgError",
    "ChatPanel",
    "ChatResult",
    "Choice",
    "ConfigError",
    "ImageInputError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
    "StreamError",
    "Timings",
    "__version__",
    "achat",
    "batch_cancel",
    "batch_status",
    "chat",
    "chat_many",
    "clear_cache",
    "conversation",
    "list_models",
    "load_ipython_extension",
    "reset_conversation",
    "serve_demo",
]


def serve_demo(port: int = 0, batch_delay: float = 0.0) -> Any:
    """Start the offline demo endpoint on 127.0.0.1 (``.url``, ``.close()``).

    ``batch_delay``: seconds each line of a Batch API job takes (tests use it
    to catch a batch while it runs).
    """
    from .demo import serve_demo as _serve

    return _serve(port, batch_delay=batch_delay)


def __getattr__(name: str) -> Any:
    # ipywidgets is imported only when the panel is used.
    if name == "ChatPanel":
        from .panel import ChatPanel

        return ChatPanel
    raise AttributeError(f"module 'jupyter_chatimg' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jupyter_chatimg``: register the magics (IPython imported only now)."""
    from ._magic import load_ipython_extension as _load

    _load(ipython)
