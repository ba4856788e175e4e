"""The ``%%chatimg`` magics; ``ChatImg`` is also the traitlets configurable
behind ``%config ChatImg.<option>``."""

from __future__ import annotations

import json
import sys
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, needs_local_scope
from traitlets import Bool, CaselessStrEnum, Float, Int, List, Unicode, observe

from . import _config
from ._batch import run_batch
from ._chat import conversation, prepare_request, reset_conversation, send
from ._errors import ChatImgError, ConfigError, ImageInputError, StreamError
from ._images import is_image_like
from ._magic_args import MagicArgs, parse_cell_line, parse_line_magic
from ._messages import ImageRef, as_images, interpolate
from ._result import ChatResult

__all__ = ["ChatImg", "load_ipython_extension"]

_TRAITS = (
    "model", "base_url", "api_key_env", "stream", "timeout", "max_retries", "max_side", "detail",
    "update_interval", "show_stats", "trust_html", "image_hosts", "cache", "max_image_bytes",
    "max_reply_bytes", "connect_timeout", "debug", "cache_dir", "cache_max_bytes",
    "history_turns", "history_images",
)  # fmt: skip


@magics_class
class ChatImg(Magics):
    """``%%chatimg`` and friends. Every trait is a default for ``%config ChatImg.<name>``."""

    model = Unicode(
        None,
        allow_none=True,
        help="Model id (default: CHATIMG_MODEL, else the endpoint's default).",
    ).tag(config=True)
    base_url = Unicode(
        None, allow_none=True, help="Endpoint base URL, e.g. https://api.openai.com/v1."
    ).tag(config=True)
    api_key_env = Unicode(
        None,
        allow_none=True,
        help="NAME of the environment variable holding the key for base_url (never the key).",
    ).tag(config=True)
    stream = Bool(None, allow_none=True, help="Stream replies (default True).").tag(config=True)
    timeout = Float(None, allow_none=True, help="Read timeout in seconds (default 120).").tag(
        config=True
    )
    connect_timeout = Float(
        None, allow_none=True, help="Connect timeout in seconds (default 10)."
    ).tag(config=True)
    max_retries = Int(None, allow_none=True, help="Retries before the first byte (default 2).").tag(
        config=True
    )
    max_side = Int(
        None,
        allow_none=True,
        help="Downscale bound for sent images in pixels (0 = as is; default 2048).",
    ).tag(config=True)
    detail = CaselessStrEnum(
        ["auto", "low", "high"], None, allow_none=True, help="image_url.detail"
    ).tag(config=True)
    update_interval = Float(
        None, allow_none=True, help="Seconds between in-place updates (default 0.05)."
    ).tag(config=True)
    show_stats = Bool(
        None, allow_none=True, help="Show a footer with model, tokens and timings."
    ).tag(config=True)
    trust_html = Bool(
        None,
        allow_none=True,
        help="Let raw HTML in replies through (only for endpoints you trust; default False).",
    ).tag(config=True)
    image_hosts = List(
        Unicode(),
        None,
        allow_none=True,
        help="If set, returned image URLs are fetched only from these hosts.",
    ).tag(config=True)
    cache = Bool(
        None, allow_none=True, help="Answer identical requests from a local cache (default False)."
    ).tag(config=True)
    cache_dir = Unicode(
        None,
        allow_none=True,
        help="Directory of the reply cache (default: $CHATIMG_CACHE_DIR, else ~/.cache/jupyter_chatimg).",
    ).tag(config=True)
    cache_max_bytes = Int(
        None, allow_none=True, help="Size bound of the reply cache in bytes (default 200 MB)."
    ).tag(config=True)
    history_turns = Int(
        None,
        allow_none=True,
        help="Earlier turns a --chat conversation keeps; the oldest go first (default 20).",
    ).tag(config=True)
    history_images = Int(
        None,
        allow_none=True,
        help="Images a --chat conversation keeps; the oldest turns go first (default 16).",
    ).tag(config=True)
    max_image_bytes = Int(
        None, allow_none=True, help="Largest returned image download in bytes."
    ).tag(config=True)
    max_reply_bytes = Int(None, allow_none=True, help="Largest reply in bytes.").tag(config=True)
    debug = Bool(
        None, allow_none=True, help="Show full tracebacks instead of one-line errors."
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        for name in _TRAITS:
            self._push(name, getattr(self, name))

    @observe(*_TRAITS)
    def _on_change(self, change: dict[str, Any]) -> None:
        self._push(change["name"], change["new"])

    @staticmethod
    def _push(name: str, value: Any) -> None:
        if name == "image_hosts" and value is not None:
            value = tuple(h.lower() for h in value)
        _config.set_configured(name, value)

    # -- magics ------------------------------------------------------------------

    @needs_local_scope
    @line_cell_magic
    def chatimg(
        self, line: str, cell: str | None = None, local_ns: dict[str, Any] | None = None
    ) -> None:
        """Send the cell (or the rest of the line) as a prompt, with images.

        Options: --model/-m M, --image/-i EXPR (repeatable), --system/-s TEXT,
        --no-stream, --temperature/-t F, --top-p F, --n/-n N, --max-tokens N,
        --stop S (up to 4), --presence-penalty F, --frequency-penalty F,
        --seed N, --user ID, --json, --logit-bias JSON, --tools EXPR,
        --tool-choice V, --extra JSON, --detail {auto,low,high}, --max-side PX,
        --base-url URL, --api-key-env NAME, --out/-o NAME, --chat, --reset,
        --cache, --stats, --timeout S, --debug, --each EXPR, --concurrency/-j K.
        ``{name}`` in the prompt inserts a notebook variable (images in place;
        also ``{Out[3]}``, ``{imgs[0]}``). ``--each imgs`` sends the prompt once
        per image of ``imgs`` (K at a time) and shows a table of the replies;
        ``_`` (and ``--out``) is then the list of results.
        """
        namespace = dict(self.shell.user_ns) if self.shell is not None else {}
        if local_ns:
            namespace.update(local_ns)
        debug = bool(_config.configured().get("debug"))
        try:
            args = parse_cell_line(line, cell) if cell is not None else parse_line_magic(line)
            debug = debug or args.debug
            self._run(args, namespace)
        except ChatImgError as exc:
            if debug:
                raise
            self._say(exc)
        return None

    def _run(self, args: MagicArgs, namespace: dict[str, Any]) -> None:
        if args.reset:
            reset_conversation()
        if not args.prompt.strip() and not args.images and args.each is None:
            if args.reset:
                return
            raise ConfigError(
                "empty prompt: write a question in the cell, or attach an image with --image NAME"
            )
        # The cell's own leading and trailing newlines are not part of the prompt.
        parts: list[Any] = list(interpolate(args.prompt.strip("\n"), namespace))
        parts.extend(
            ImageRef(_evaluate(expr, namespace, "--image"), f"--image {expr}")
            for expr in args.images
        )
        params = dict(args.params)
        if args.tools_expr:
            params["tools"] = _tools(args.tools_expr, namespace)
        if args.extra is not None:
            params["extra"] = args.extra
        overrides = {
            "model": args.model,
            "base_url": args.base_url,
            "api_key_env": args.api_key_env,
            "timeout": args.timeout,
            "max_side": args.max_side,
            "detail": args.detail,
            "cache": args.cache,
            "show_stats": args.show_stats,
        }
        if args.each is not None:
            self._run_each(args, parts, namespace, params, overrides)
            return
        p = prepare_request(
            parts,
            (),
            system=args.system,
            chat=args.chat,
            stream=args.stream,
            params=params,
            settings_overrides=overrides,
        )
        settings = p.settings
        try:
            result = send(settings, p.body, user=p.user, chat=args.chat, notes=p.notes)
        except StreamError as exc:
            # Already shown in the reply's output, with the partial text.
            self._keep(exc.partial or ChatResult(error=exc), args)
            return
        except ChatImgError as exc:
            failed = ChatResult(error=exc, model=settings.model, endpoint=settings.host)
            self._keep(failed, args)
            return
        self._keep(result, args)

    def _run_each(
        self,
        args: MagicArgs,
        parts: list[Any],
        namespace: dict[str, Any],
        params: dict[str, Any],
        overrides: dict[str, Any],
    ) -> None:
        expr = args.each or ""
        value = as_images(_evaluate(expr, namespace, "--each"))
        if isinstance(value, (list, tuple)):
            images = list(value)
        elif is_image_like(value) and not isinstance(value, (str, bytes)):
            images = [value]
        else:
            raise ImageInputError(
                f"--each {expr}: a {type(value).__name__} is not a list of images; give a list, "
                "a tuple or a column of images"
            )
        items = [
            ([*parts, ImageRef(image, f"--each {expr}[{i}]")], ()) for i, image in enumerate(images)
        ]
        results = run_batch(
            items,
            concurrency=args.concurrency or 4,
            system=args.system,
            stream=args.stream,
            params=params,
            overrides=overrides,
        )
        if self.shell is not None:
            self.shell.user_ns["_"] = results
            if args.out:
                self.shell.user_ns[args.out] = results

    def _keep(self, result: ChatResult, args: MagicArgs) -> None:
        if self.shell is None:
            return
        self.shell.user_ns["_"] = result
        if args.out:
            self.shell.user_ns[args.out] = result

    @staticmethod
    def _say(exc: BaseException) -> None:
        print(f"chatimg: {exc}", file=sys.stderr)

    @line_magic
    def chatimg_reset(self, line: str = "") -> None:
        """Start this notebook's ``--chat`` conversation over."""
        reset_conversation()
        print("chatimg: conversation cleared")

    @line_magic
    def chatimg_history(self, line: str = "") -> Any:
        """The notebook's conversation (``--chat``), as a ``Conversation`` object."""
        return conversation()

    @line_magic
    def chatimg_models(self, line: str = "") -> list[str] | None:
        """List the endpoint's models (``GET /models``)."""
        from ._chat import list_models

        try:
            models = list_models(base_url=line.strip() or None)
        except ChatImgError as exc:
            self._say(exc)
            return None
        for name in models:
            print(name)
        return None

    @line_magic
    def chatimg_panel(self, line: str = "") -> Any:
        """Display a ChatPanel (the widget front end)."""
        from IPython.display import display

        from ._panel import ChatPanel

        panel = ChatPanel()
        display(panel)  # type: ignore[no-untyped-call]
        if self.shell is not None:
            self.shell.user_ns["_chatimg_panel"] = panel
        return None


class _Figures:
    """The matplotlib figure that was current when the last cell ended.

    The inline backend shows every open figure after a cell and then closes
    it, so by the next cell ``plt.gcf()`` would make a new, empty figure.
    Remembering the last one lets ``--image plt`` mean the figure just seen.
    """

    def __init__(self) -> None:
        self.last: Any = None

    def remember(self, *args: Any) -> None:
        if "matplotlib.pyplot" not in sys.modules:  # never import matplotlib for this
            return
        from matplotlib._pylab_helpers import Gcf

        manager = Gcf.get_active()
        if manager is not None:
            self.last = manager.canvas.figure

    def current(self, pyplot: Any) -> Any:
        if pyplot.get_fignums():
            return pyplot.gcf()
        if self.last is not None:
            return self.last
        raise ImageInputError(
            "--image plt: no matplotlib figure has been drawn; plot something first "
            "(or pass the Figure itself)"
        )


_figures = _Figures()


def _evaluate(expr: str, namespace: dict[str, Any], option: str) -> Any:
    try:
        value = eval(expr, namespace)
    except NameError as exc:
        raise ImageInputError(
            f"{option} {expr}: {exc}; define it in the notebook first (or pass a path or URL in quotes)"
        ) from None
    except Exception as exc:
        raise ImageInputError(
            f"{option} {expr}: evaluating it failed ({type(exc).__name__}: {exc})"
        ) from None
    module = getattr(value, "__name__", "")
    if module == "matplotlib.pyplot":
        value = _figures.current(value)
    return value


def _tools(expr: str, namespace: dict[str, Any]) -> Any:
    text = expr.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            pass
    try:
        return eval(text, namespace)
    except Exception as exc:
        raise ConfigError(
            f"--tools {expr}: {type(exc).__name__}: {exc}; give a list of tool dicts or a JSON list"
        ) from None


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(ChatImg(shell=ipython, config=ipython.config))
    # First in line, before the inline backend's own hook closes the figures.
    callbacks = ipython.events.callbacks["post_execute"]
    if _figures.remember in callbacks:
        callbacks.remove(_figures.remember)
    callbacks.insert(0, _figures.remember)
