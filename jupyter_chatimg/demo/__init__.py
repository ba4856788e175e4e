"""The offline demo endpoint: a real OpenAI-compatible server on 127.0.0.1.

It needs nothing but the standard library and Pillow, never touches the
network beyond loopback, and is deterministic: the same request gets the same
reply, text and pixels (``id`` and ``created`` are derived from a hash of the
request, so they repeat too).

Start it::

    from jupyter_chatimg.demo import serve_demo
    with serve_demo() as server:          # a free port; server.url ends in /v1
        ...                               # OpenAI(base_url=server.url, api_key="unused")

``ensure_demo_server()`` returns one process-wide server, started on first use;
or from a shell: ``python -m jupyter_chatimg.demo [--port 8765] [--batch-delay S]``, which
prints settings that work as printed (``export OPENAI_BASE_URL=http://127.0.0.1:P/v1
OPENAI_API_KEY=demo CHATIMG_MODEL=demo-vision``: the official client needs some key, and
real chat model names such as ``gpt-4o-mini`` are answered 404, naming the demo models).

Endpoints: ``GET /v1/models``, ``GET /v1/models/{id}``, ``POST /v1/chat/completions``
(streaming with ``data: [DONE]``, ``stream_options.include_usage``, ``n``,
``max_tokens``/``max_completion_tokens`` (finish_reason ``length``), ``stop``,
``response_format`` ``json_schema``, ``tools``/``tool_choice``/``parallel_tool_calls``),
``POST /v1/images/generations`` and ``POST /v1/images/edits`` (the Images API, below).
``Authorization`` is accepted but never required, logged or echoed. Requests are
never logged. The Files and Batch APIs are described below.

Models
------
``demo-vision``
    Streams a description measured on the pixels of the images in the last user
    message (or, when it has none, earlier ones): size, orientation, named
    dominant colours with shares, brightness, contrast, transparency, photo vs
    drawing, background and where the content sits, symmetry; with several images
    it describes each ("Image 1", "Image 2") and compares them. http(s) image URLs
    cannot be fetched offline and it says so. With ``response_format`` json_object
    it answers JSON. Without an image it says what it is (and does arithmetic).
    A palette image (mode ``P``, as clients often send RGB pictures to save bytes) is
    described as the RGB(A) picture it is.
``demo-image``
    Without an image: draws the prompt: colours (14 names plus synonyms such as
    navy, teal, gold; "light"/"dark" variants), shapes (circle, square, rectangle,
    triangle, star, line, ellipse, heart, diamond, ring; dots, boxes ...), counts
    ("three", "12"), sizes (tiny, small, large, huge), positions (left, right, top,
    bottom, center, corners such as "top left"), a background ("on a blue
    background", "on black") and the canvas ("800x600", "wide", "tall"). When it
    recognises nothing it draws a card with the prompt and says so.
    With an image in the last user message (or a prompt with an edit and an image
    earlier in the conversation): applies the edits it recognises, in order:
    grayscale / black and white, invert / negative, blur [N], sharpen, rotate N
    degrees (clockwise unless "counterclockwise"/"left"), flip (top to bottom),
    mirror (left to right), sepia, posterize [N bits], pixelate [N px], resize to WxH
    or by N%, crop to square or to WxH, add a [colour] border [N px], brighten,
    darken, increase/decrease contrast, thumbnail, find edges, emboss. With no edit
    it recognises it returns no image and lists what it can do.
    Reply style: by default like image-model gateways: progress lines
    (``> Progress **50%**`` ... ``> Done ✅``), then
    ``![demo-image](data:image/png;base64,...)`` spread over several deltas, then a
    sentence saying what was drawn or done. When the request has ``"modalities"``
    containing ``"image"`` (OpenRouter style), the image goes in
    ``message.images`` / ``delta.images`` as
    ``[{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}]``
    and the text has no markdown image.

Structured output (both models)
-------------------------------
``"response_format": {"type": "json_schema", "json_schema": {"name", "schema",
"strict"}}``: the reply text is JSON that always validates against ``schema`` (types,
``enum``, ``const``, ``properties``/``required``/``additionalProperties``,
``min/maxProperties``, ``items``/``prefixItems``/``min/maxItems``/``uniqueItems``/
``contains``, ``minimum``/``maximum`` (also exclusive)/``multipleOf``,
``min/maxLength``/``pattern``/``format``, ``allOf``/``anyOf``/``oneOf`` (the first
branch that works), local ``$ref`` to ``$defs``/``definitions``). Properties get
measured values by name, matched generously (camelCase, synonyms): width, height,
size/dimensions, aspect_ratio, orientation, is_landscape, dominant colour, colors
(names, or objects with name/share/percent/hex/rgb), background, brightness,
contrast (0-255, 0-1, percent, a word or a boolean, whichever the schema takes),
has_alpha, transparency, is_photo/is_drawing, kind, mode, format, symmetric,
caption/description/summary, count of images, an ``images`` array with one object
per image ...; after tool results, their JSON fields by name too. Everything else
gets a neutral value (``""``, ``0``, ``false``, the first enum value, ``minItems``
items). Streamed and not streamed alike.

Tool calls (both models)
------------------------
With function ``tools``, when the last user message names a tool (``get_weather``,
"get weather", ``getWeather``) the reply calls it: ``finish_reason`` ``tool_calls``,
``message.tool_calls`` (or, streamed as OpenAI does, a first delta with ``index``,
``id``, ``type`` and ``function.name`` and empty arguments, then the arguments in
several pieces). Several named tools are called in parallel in the prompt's order
(``parallel_tool_calls: false``: the first only). Arguments come from the prompt and
always validate against the tool's parameters: a value next to the parameter's name
(``width 300``, ``city: "Oslo"``), the enum option mentioned, the prompt's numbers in
order, quoted strings, colour words, capitalised names and other words; otherwise
neutral values. ``tool_choice``: ``none`` never calls, ``required`` calls the named
tools or the first one, ``{"type": "function", "function": {"name"}}`` calls that
one. Call ids are ``call_`` + a hash of the request. When the messages after the
last assistant tool calls are its ``tool`` answers (and user messages carrying
images the tools returned), the reply quotes each result (JSON objects field by
field) and describes those images. The demo checks the message order as OpenAI
does (400 when a ``tool`` message answers no call or a call has no answer).

Images API
----------
``POST /v1/images/generations`` (JSON) draws the prompt as ``demo-image`` does;
``POST /v1/images/edits`` (multipart: ``image`` or ``image[]`` up to 16 files, PNG,
JPEG or WebP; optional ``mask``, a PNG with alpha of the first image's size)
applies the recognised edits to the first image, or draws the shapes the prompt
names onto it, changing only where the mask is transparent (partial alpha
blends). Fields: ``prompt``, ``model``, ``n`` (1-10), ``size``, ``quality``,
``background`` (``transparent`` makes the drawn background transparent),
``output_format`` (png, jpeg, webp), ``output_compression``, ``response_format``,
``stream``, ``partial_images`` (0-3), ``moderation``, ``style``, ``user``,
``input_fidelity``. Models: ``demo-image`` (any size WxH from 16 to 4096, ``b64_json``
or ``url``, a ``revised_prompt`` saying what was done), the GPT image models
``gpt-image-1``, ``gpt-image-1-mini``, ``gpt-image-1.5``, ``gpt-image-2`` (and other
``gpt-image-*``), ``chatgpt-image-latest`` (sizes auto, 1024x1024, 1536x1024,
1024x1536, gpt-image-2 style WxH; always ``b64_json``), ``dall-e-2`` and ``dall-e-3``
(their own sizes; ``url`` by default, published on this server like the
``image-url`` fault; dall-e-3 adds ``revised_prompt``; no streaming). They are not
listed in ``/v1/models``. The reply: ``{"created", "data": [{"b64_json" | "url",
"revised_prompt"?}], "background", "output_format", "quality", "size", "usage":
{"input_tokens", "input_tokens_details": {"text_tokens", "image_tokens"},
"output_tokens", "total_tokens"}}`` (DALL-E: ``created`` and ``data`` only).
Streamed (``stream: true``): ``event: image_generation.partial_image`` (edits:
``image_edit.*``) events with ``{"type", "b64_json", "partial_image_index",
"created_at", "size", "quality", "background", "output_format"}``, then
``image_generation.completed`` with the final ``b64_json`` and ``usage``; no
``[DONE]``. The partial images are the final image pixelated with blocks that
shrink step by step, so each is closer to the final one. Invalid input (unknown
size, ``n`` or ``partial_images`` out of range, more than 16 images, a mask of
another size or without alpha, jpeg with a transparent background ...) is a 400
``invalid_request_error`` naming the ``param``; an unknown model is a 404.

Batch API
---------
Shaped like OpenAI's (``/v1`` may be left out of every path, as for chat):

``POST /v1/files``
    multipart/form-data with ``purpose`` (assistants, batch, fine-tune, vision,
    user_data, evals), ``file`` and optionally ``expires_after[anchor]=created_at`` +
    ``expires_after[seconds]``; answers the ``file`` object (``id``, ``object``,
    ``bytes``, ``created_at``, ``expires_at`` (30 days for batch files), ``filename``,
    ``purpose``, ``status: "processed"``). A batch file must be named ``*.jsonl``
    ("Invalid file format for Batch API. Must be .jsonl", as OpenAI says). Files are
    kept in memory (uploads up to the 64 MB body limit).
``GET /v1/files`` (``purpose``, ``limit`` 1-10000, ``order`` asc/desc (default desc),
``after``), ``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``, ``DELETE /v1/files/{id}``
    the usual list / metadata / raw bytes / ``{"id", "object": "file", "deleted": true}``.
    ``GET /v1/files/NAME.png`` still serves the images of the ``image-url`` fault.
``POST /v1/batches``
    JSON ``input_file_id``, ``endpoint`` (``/v1/chat/completions`` or
    ``/v1/images/generations``), ``completion_window`` (``24h``), optional ``metadata`` (up to 16 string pairs); answers the ``batch`` object
    with status ``validating``. Refused at once: a missing or ill-typed field or an
    unsupported value (400), an unknown input file (404), a file whose purpose is not
    ``batch`` (400).
``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``, ``GET /v1/batches`` (newest
first; ``limit`` 1-100, default 20; ``after``; ``has_more``, ``first_id``, ``last_id``)
    cancelling a ``validating``/``in_progress`` batch makes it ``cancelling`` and soon
    ``cancelled``; cancelling a finished one is 409.

Each batch runs in a background thread: ``validating`` (every line is checked; any
problem makes the batch ``failed`` with ``errors.data[]`` entries ``{code, message,
param, line}``: ``invalid_json_line``, ``missing_required_parameter``, ``invalid_url``
(the line's ``url`` is not the batch endpoint), ``invalid_request`` (a method other than
POST, a non-object body, no ``model``, no ``messages`` (chat) or ``prompt`` (images)),
``streaming_unsupported``, ``model_not_found`` (chat: the demo models, with an optional
``@`` fault suffix; images: the Images API models, no suffix), ``mismatched_model``
(one model per file), ``duplicate_custom_id``,
``empty_file``, ``too_many_tasks`` (over 50,000)) -> ``in_progress`` (each line takes
``batch_delay`` seconds, then is answered in-process by the very code that answers
``POST /v1/chat/completions`` (or ``POST /v1/images/generations``) without streaming,
so ``response.body`` is the live reply, tool calls and structured output included, but
for a chat completion's ``id``/``created`` (an images reply is identical; its ``url``
images are published on this server); ``request_counts`` and ``usage`` (input and
output tokens; DALL-E replies add none) grow as it goes) ->
``finalizing`` (``batch_delay`` seconds) -> ``completed``. Output lines, in input order::

    {"id": "batch_req_...", "custom_id": "...", "response": {"status_code": 200,
     "request_id": "req_...", "body": {...the chat.completion or images reply...}},
     "error": null}

Lines that the live route would answer with an error status (a body it rejects, or a
``"model": "demo-vision@status=CODE"`` fault on chat) go to the error file with that
``status_code`` and the ``{"error": {...}}`` body, and count as ``failed``. When a
batch is cancelled or expires, the lines it did not run go to the error file with
``"response": null`` and ``"error": {"code": "batch_cancelled" | "batch_expired",
"message"}`` (they count as neither completed nor failed); the lines it finished are
in the output file. ``output_file_id`` / ``error_file_id`` are null when that file
would be empty. ``DemoServer`` counts ``batches_created``, ``files_created`` and
``batch_answers`` (times each ``custom_id`` was answered, over all batches).

Fault injection
---------------
Select faults with the request header ``X-Demo-Fault: <spec>`` (any endpoint) or a
model suffix ``"model": "demo-vision@<spec>"`` (chat only; both merge). A spec is
``;``-separated items, each ``key=value`` or a bare flag::

    status=CODE        answer CODE (429, 500, 503, 408 ...) with an OpenAI error body
                       {"error": {"message": "demo fault: injected 429 Too Many Requests",
                       "type", "param", "code"}}
    retry-after=S      send a Retry-After header (seconds or an HTTP date) with status/html
    retry-after-ms=MS  send a retry-after-ms header with status/html
    times=N            only the first N requests carrying this exact spec string get any
                       fault; later ones are answered normally (counted per server)
    html=CODE          answer CODE with an HTML error page (like a proxy's 502)
    cut=N              stream N content chunks, then close the connection abruptly
                       (chunked body left unterminated: no finish_reason, no [DONE]);
                       not streaming: half the JSON body, then close
    eof=N              stream N content chunks, then end the body cleanly with no
                       finish_reason and no [DONE] (not streaming: same as cut)
    error=N            after N content chunks send
                       data: {"error": {"message": "demo fault: injected error after N
                       tokens", "type": "server_error", "param": null, "code": "demo_fault"}}
                       and end the stream (no [DONE]); not streaming: HTTP 200 whose body
                       is that error object
    event-error=N      the same, as an ``event: error`` SSE event
    malformed=N        after N content chunks send one data line that is not valid JSON,
                       then continue normally; not streaming: a truncated JSON body
    slow=S             wait S seconds between content chunks (streaming)
    delay=S            wait S seconds before the response headers
    hang               read the request and never answer, until the client disconnects
                       or the server closes
    long=N             the reply is N word tokens streamed as fast as possible (batched
                       writes; for benchmarks)
    huge=PX            demo-image returns a PX x PX image (up to 20000; above 4000x4000
                       it is a flat colour; edits are resized to at most 4000x4000)
    mdinject           the reply ends with markdown/HTML injection payloads (below)
    ping               send an SSE comment line ``: ping`` before every content chunk
    image-url[=MODE]   demo-image returns its images as http URLs on this server
                       (GET /v1/files/NAME.png, the last 64 kept in memory) instead of data
                       URIs, plus a markdown download link after each, as gateways do;
                       MODE ok (default), 404 (the URL is not served) or notimage (it serves
                       HTML labelled image/png)
    tag=ANY            no effect; makes a spec string unique, so its times=N count is fresh
    batch-fail         POST /v1/batches: the batch ends ``failed`` after validating, with
                       errors.data [{"code": "demo_fault", "message": "demo fault: injected
                       batch failure (batch-fail)", "param": null, "line": null}]
    batch-expire=N     POST /v1/batches: the batch ends ``expired`` after answering N lines
                       (0: before the first; N >= the number of lines: it completes)

On the Images API (header only) ``status``, ``retry-after``, ``retry-after-ms``,
``times``, ``html``, ``delay``, ``hang``, ``slow`` and ``ping`` work as above; in a
stream ``cut=N``, ``eof=N``, ``error=N``, ``event-error=N`` and ``malformed=N`` count
events (partial images) instead of content chunks, so a large N cuts or fails just
before the last ``completed`` event, and the error event is
``{"type": "error", "error": {"message", "type", "param", "code"}}``; whole replies
are cut, truncated or replaced by an error body as for chat; ``image-url=404`` or
``notimage`` spoils ``url`` replies. Streamed tool calls count their argument pieces
as content chunks.

For example ``X-Demo-Fault: status=429;retry-after=1;times=2`` fails twice, then
succeeds; ``demo-vision@cut=5`` breaks off after five chunks. "N content chunks"
counts content deltas over all choices; a fault due after the end of the reply
fires just before the finish chunk. A spec that cannot be parsed is answered 400. ``DemoServer.fault_hits(spec)`` counts
the requests that carried a spec (to check a client's retries).

The batch faults may also come in the batch's metadata, ``"metadata": {"demo_fault":
"batch-expire=3"}`` (merged with the header; a bad spec there is a 400 naming
``metadata.demo_fault``). In a batch line, the model suffix selects faults for that line
alone: ``status=CODE`` (with ``times``, counted with live requests) makes the line answer
CODE; ``long``, ``huge``, ``mdinject`` and ``image-url`` shape its reply as they would live;
the transport faults (``cut``, ``eof``, ``error``, ``event-error``, ``malformed``,
``html``, ``delay``, ``slow``, ``hang``, ``ping``, ``retry-after``) do not apply.

The ``mdinject`` payloads, each a paragraph of the reply (``PORT`` is the server's
port; requests to ``/leak`` are recorded in ``DemoServer.leaks``)::

    <img src=x onerror=alert(1)>
    <script>alert(2)</script>
    [click](javascript:alert(3))
    ![x](http://127.0.0.1:PORT/leak?q=secret)
    ![ref][leak]

    [leak]: http://127.0.0.1:PORT/leak?q=ref
    <http://127.0.0.1:PORT/leak?q=autolink>
    <!--><img src=x onerror=alert(4)>-->
    <!-- --!><img src=x onerror=alert(5)>
    <a href="data:text/html,<script>alert(6)</script>">data link</a>
    [data](data:text/html;base64,PHNjcmlwdD5hbGVydCg3KTwvc2NyaXB0Pg==)
    [vb](vbscript:msgbox(8))
    <svg onload=alert(9)>
    <iframe src="javascript:alert(10)"></iframe>
    `<b>inline code stays literal</b>`
    ```html
    <script>alert("fenced code stays literal")</script>
    ```

(``jupyter_chatimg.demo._faults.MDINJECT_PAYLOADS`` holds them as a tuple.)
"""

from __future__ import annotations

from ._models import DEMO_MODELS
from ._server import DemoServer, ensure_demo_server, serve_demo

__all__ = ["DEMO_MODELS", "DemoServer", "ensure_demo_server", "serve_demo"]
