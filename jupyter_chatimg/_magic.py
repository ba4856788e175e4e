"""The ``%%chatimg`` magics; ``ChatImg`` is also the traitlets configurable
behind ``%config ChatImg.<option>``."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import Field
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, needs_local_scope
from traitlets import Bool, CaselessStrEnum, Float, Int, List, Unicode, observe

from . import _config
from ._batch import run_batch
from ._chat import conversation, default_session, reset_conversation
from ._errors import ChatImgError, ConfigError, ImageInputError
from ._image_inputs import is_image_like
from ._magic_args import MagicArgs, parse_cell_line, parse_line_magic
from ._render import in_notebook
from ._request import EMPTY_PROMPT, ImageRef, Request, as_images, interpolate, request_fields
from ._result import ChatResult

__all__ = ["ChatImg", "load_ipython_extension"]

_TRAIT_KINDS: dict[str, Callable[..., Any]] = {
    "str": Unicode,
    "str | None": Unicode,
    "bool": Bool,
    "float": Float,
    "float | None": Float,
    "int": Int,
}


def _trait(setting: Field[Any]) -> Any:
    """The ``%config`` trait of one declared setting (None: not set, use the next level)."""
    doc = setting.metadata["doc"]
    choices = setting.metadata.get("choices")
    trait: Any
    if choices:
        trait = CaselessStrEnum(list(choices), None, allow_none=True, help=doc)
    elif setting.type == "tuple[str, ...]":
        trait = List(Unicode(), None, allow_none=True, help=doc)
    else:
        trait = _TRAIT_KINDS[str(setting.type)](None, allow_none=True, help=doc)
    return trait.tag(config=True)


_TRAITS = tuple(f.name for f in _config.SETTINGS)
# Each setting is declared once, in _config.Settings; the traits are made from that.
_metaclass: Any = type(Magics)
_SettingTraits: Any = _metaclass(
    "_SettingTraits", (Magics,), {f.name: _trait(f) for f in _config.SETTINGS}
)


@magics_class
class ChatImg(_SettingTraits):  # type: ignore[misc]
    """``%%chatimg`` and friends. Every trait is a default for ``%config ChatImg.<name>``."""

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
        if name == "image_models" and value is not None:
            value = tuple(value)
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
        --seed N, --user ID, --json, --logit-bias JSON, --tools EXPR (tool dicts,
        or Python functions the model may call: they run in the kernel),
        --max-tool-rounds N, --schema EXPR (a pydantic model, dataclass, TypedDict
        or JSON Schema dict: result.parsed is the validated object),
        --tool-choice V, --extra JSON, --detail {auto,low,high}, --max-side PX,
        --base-url URL, --api-key-env NAME, --out/-o NAME, --chat, --reset,
        --cache, --stats, --timeout S, --debug, --each EXPR, --concurrency/-j K;
        the Images API: --api {auto,chat,images}, --size WxH, --quality Q,
        --background {transparent,opaque,auto}, --output-format {png,jpeg,webp},
        --partial-images N, --mask EXPR (gpt-image*, dall-e*, chatgpt-image* and
        ChatImg.image_models use it by default; with --image it is an edit).
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
            raise ConfigError(EMPTY_PROMPT)
        request = self._request(args, namespace)
        if args.each is not None:
            self._run_each(args, request, namespace)
            return
        session = default_session()
        prepared = session.prepare(request)  # bad input: one line, nothing sent
        try:
            result = session.send(prepared)
        except ChatImgError as exc:
            # Already shown in the reply's output, with the partial text.
            result = exc.partial or ChatResult.failed(exc)
        except KeyboardInterrupt as interrupt:
            # The partial text and one line are on screen; the cell ends quietly.
            partial = getattr(interrupt, "partial", None)
            if partial is None:
                raise
            result = partial
        self._keep(result, args)

    def _request(self, args: MagicArgs, namespace: dict[str, Any]) -> Request:
        """The cell as a Request (pure apart from evaluating --image and --tools)."""
        # The cell's own leading and trailing newlines are not part of the prompt.
        parts: list[Any] = list(interpolate(args.prompt.strip("\n"), namespace))
        parts.extend(
            ImageRef(_evaluate(expr, namespace, "--image"), f"--image {expr}")
            for expr in args.images
        )
        params = dict(args.params)
        if args.mask is not None:
            params["mask"] = ImageRef(
                _evaluate(args.mask, namespace, "--mask"), f"--mask {args.mask}"
            )
        if args.tools_expr:
            params["tools"] = _tools(args.tools_expr, namespace)
        if args.schema_expr:
            params["schema"] = _schema(args.schema_expr, namespace)
        if args.extra is not None:
            params["extra"] = args.extra
        fields = request_fields(
            model=args.model,
            base_url=args.base_url,
            api_key_env=args.api_key_env,
            timeout=args.timeout,
            max_side=args.max_side,
            detail=args.detail,
            cache=args.cache,
            show_stats=args.show_stats,
            max_tool_rounds=args.max_tool_rounds,
            api=args.api,
            **params,
        )
        return Request(
            parts=tuple(parts), system=args.system, stream=args.stream, chat=args.chat, **fields
        )

    def _run_each(self, args: MagicArgs, request: Request, namespace: dict[str, Any]) -> None:
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
            ([*request.parts, ImageRef(image, f"--each {expr}[{i}]")], ())
            for i, image in enumerate(images)
        ]
        results = run_batch(items, request.evolve(chat=False), concurrency=args.concurrency or 4)
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
        # The same style as a request's error line under its reply: "⚠ what; what to do".
        print(f"⚠ {exc}", file=sys.stderr)

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

        if not in_notebook():
            self._say(
                ConfigError(
                    "the chat panel is a Jupyter widget: open this in JupyterLab, Notebook 7 "
                    "or VS Code; in a terminal, use %%chatimg or ci.chat()"
                )
            )
            return None
        from .panel import ChatPanel

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


_LOCATION = re.compile(r"(?i)^(?:https?://\S+|data:image/\S+|~?[\w.\-]*[/\\]\S*)$")
"""What ``-i`` takes as written when it is no Python expression: a path or an http(s)/data: URL."""


def _evaluate(expr: str, namespace: dict[str, Any], option: str) -> Any:
    try:
        code = compile(expr, option, "eval")
    except SyntaxError as exc:
        if _LOCATION.match(expr.strip()):
            return expr.strip()  # -i /data/cat.png: a path, as written
        raise ImageInputError(
            f"{option} {expr}: not a Python expression ({exc.msg}); give a variable, an "
            "expression, or a path or URL"
        ) from None
    try:
        value = eval(code, namespace)
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
    """``--tools EXPR``: a JSON list, or an expression giving a function, a tool dict or a
    list of them (anything else is refused here, before anything is sent)."""
    text = expr.strip()
    value: Any = None
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
    if value is None:
        try:
            value = eval(text, namespace)
        except Exception as exc:
            raise ConfigError(
                f"--tools {expr}: {type(exc).__name__}: {exc}; give a function, a list of "
                "functions and tool dicts, or a JSON list"
            ) from None
    if isinstance(value, dict):
        return [value]
    if (callable(value) and not isinstance(value, type)) or isinstance(value, (list, tuple)):
        return value
    kind = type(value).__name__
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    raise ConfigError(
        f"--tools {expr}: {article} {kind} is not a function or a list of tools; give "
        "a function, a list of functions and tool dicts, or a JSON list"
    )


def _schema(expr: str, namespace: dict[str, Any]) -> Any:
    """``--schema EXPR``: a JSON object written in the cell, or an expression (checked later,
    before anything is sent)."""
    text = expr.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            pass
    try:
        return eval(text, namespace)
    except Exception as exc:
        raise ConfigError(
            f"--schema {expr}: {type(exc).__name__}: {exc}; give a pydantic model class, a "
            "dataclass, a TypedDict or a JSON Schema dict from the notebook"
        ) from None


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(ChatImg(shell=ipython, config=ipython.config))
    # First in line, before the inline backend's own hook closes the figures.
    callbacks = ipython.events.callbacks["post_execute"]
    if _figures.remember in callbacks:
        callbacks.remove(_figures.remember)
    callbacks.insert(0, _figures.remember)
