"""The demo's answer to one request body, shared by the live routes and batches.

``POST /v1/chat/completions`` and each line of a ``/v1/chat/completions`` batch go
through ``answer_chat``, so a batch line's ``response.body`` is what a live
non-streaming request with the same body gets (only ``id``/``created`` differ, as
they are derived from the request bytes). That holds for tool calls (``tools``,
``tool_choice``, answers from ``tool`` messages) and structured output
(``response_format`` ``json_schema``) too: ``build_reply`` makes them, and the call
ids are derived from the parsed request, not its bytes.

``POST /v1/images/generations`` and ``/v1/images/edits`` go through ``answer_images``
the same way, and ``/v1/images/generations`` batch lines through ``ImagesAnswer.body``,
so their ``response.body`` is the live non-streaming reply byte for byte (``created``
and the request id come from a digest of the parsed fields).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._faults import Faults
from ._images_reply import Rendered, render, response_body
from ._images_request import ImageJob, parse_edit, parse_generation
from ._models import DEMO_MODELS, Reply, build_reply, finalize
from ._protocol import Envelope, completion, usage
from ._request import ChatRequest, parse_request

#: ``publish(png, mode)`` keeps an image on the server and returns its http URL.
Publisher = Callable[[bytes, str], str]


@dataclass(frozen=True)
class ChatAnswer:
    """A validated request and everything its reply is made of."""

    req: ChatRequest
    env: Envelope
    replies: list[Reply]
    usage: dict[str, Any]

    @property
    def request_id(self) -> str:
        """The ``x-request-id`` of this answer."""
        return "req_" + self.env.id[-24:]

    @property
    def headers(self) -> dict[str, str]:
        """Response headers that go with the reply."""
        return {"x-request-id": self.request_id}

    def completion(self) -> dict[str, Any]:
        """The whole ``chat.completion`` object (the non-streaming body)."""
        return completion(self.env, self.replies, self.usage)


def answer_chat(body: bytes, faults: Faults, port: int, publish: Publisher) -> ChatAnswer:
    """Validate ``body`` (raises ``DemoHTTPError``) and compute the reply to it."""
    req = parse_request(body, DEMO_MODELS)
    env = Envelope.for_request(body, faults.spec, req.model, req.include_usage)
    mode = faults.image_url or "ok"
    base = build_reply(req, faults, port, lambda png: publish(png, mode))
    if base.tool_calls:  # every choice makes the same calls; stop/max_tokens cut no text
        replies = [base] * req.n
    else:  # text, structured output (json_schema) included
        replies = []
        for _ in range(req.n):
            tokens, finish = finalize(base.tokens, req.stop, req.max_tokens)
            replies.append(Reply(tokens=tokens, images=base.images, finish_reason=finish))
    return ChatAnswer(req, env, replies, usage(req.prompt_tokens(), replies))


@dataclass(frozen=True)
class ImagesAnswer:
    """A validated Images API request and the images drawn for it."""

    job: ImageJob
    rendered: Rendered

    @property
    def request_id(self) -> str:
        """The ``x-request-id`` of this answer."""
        return "req_" + self.job.digest[:24]

    @property
    def headers(self) -> dict[str, str]:
        """Response headers that go with the reply."""
        return {"x-request-id": self.request_id}

    def body(self, publish: Publisher, mode: str = "ok") -> dict[str, Any]:
        """The whole ``ImagesResponse`` (the non-streaming body); ``url`` replies are
        published with ``publish(png, mode)``."""
        return response_body(self.job, self.rendered, lambda raw: publish(raw, mode))


def answer_images(
    body: bytes, content_type: str | None = None, *, edit: bool = False
) -> ImagesAnswer:
    """Validate an Images API body (JSON for a generation, multipart with
    ``content_type`` for an ``edit``; raises ``DemoHTTPError``) and draw its images."""
    job = parse_edit(body, content_type or "") if edit else parse_generation(body)
    return ImagesAnswer(job, render(job))
