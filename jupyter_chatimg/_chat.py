"""``chat`` / ``achat`` / ``list_models``: thin wrappers over the notebook's ``Session``.

The notebook's session is the only module-level state: ``chat(..., chat=True)``
and ``%%chatimg --chat`` continue its conversation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from . import _cache
from ._render import Sink
from ._request import build_request
from ._result import ChatResult
from ._session import Cancel, Conversation, Session

__all__ = [
    "achat",
    "chat",
    "clear_cache",
    "conversation",
    "default_session",
    "list_models",
    "reset_conversation",
]

_session = Session()


def default_session() -> Session:
    """The notebook's session (shared by ``chat()`` and the magic)."""
    return _session


def conversation() -> Conversation:
    """The notebook's conversation (what ``chat=True`` / ``--chat`` continues)."""
    return _session.conversation


def reset_conversation() -> None:
    """Start the notebook's conversation over."""
    _session.reset()


def clear_cache() -> int:
    """Remove every cached reply (``cache=True`` / ``--cache``); return how many there were."""
    return _cache.clear_cache()


def chat(
    prompt: str | Sequence[Any],
    images: Any = (),
    *,
    model: str | None = None,
    stream: bool | None = None,
    system: str | None = None,
    display: bool = True,
    chat: bool = False,
    base_url: str | None = None,
    api_key_env: str | None = None,
    timeout: float | None = None,
    sink: Sink | None = None,
    cancel: Cancel | None = None,
    **params: Any,
) -> ChatResult:
    """Send a prompt (and images) to the endpoint; show the reply as it streams.

    ``prompt`` is text, or a list mixing text and images sent in that order;
    ``images`` go after it (paths, URLs and ``data:`` URIs there are images,
    never text). ``**params`` are request fields (``temperature=``,
    ``max_tokens=``, ``response_format=`` ...) and ``extra=`` a dict merged
    into the request; the settings keywords (``max_retries``, ``max_side``,
    ``detail``, ``update_interval``, ``show_stats`` ...) override the
    configuration for this call. Returns a ``ChatResult``; a failure raises a
    ``ChatImgError`` whose ``.partial`` holds what arrived (a reply cut short
    raises ``StreamError``).
    """
    request = build_request(
        prompt,
        images,
        system=system,
        stream=stream,
        chat=chat,
        model=model,
        base_url=base_url,
        api_key_env=api_key_env,
        timeout=timeout,
        **params,
    )
    return _session.ask(request, sink, display=display, cancel=cancel)


async def achat(*args: Any, **kwargs: Any) -> ChatResult:
    """``chat`` for ``await``: runs in a worker thread; cancelling closes the connection."""
    cancel = kwargs.pop("cancel", None) or Cancel()
    task = asyncio.ensure_future(asyncio.to_thread(chat, *args, cancel=cancel, **kwargs))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        cancel.set("cancelled")
        raise


def list_models(*, base_url: str | None = None, api_key_env: str | None = None) -> list[str]:
    """The endpoint's model ids (``GET /models``)."""
    return Session.list_models({"base_url": base_url, "api_key_env": api_key_env})
