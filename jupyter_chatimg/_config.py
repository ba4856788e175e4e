"""Settings: built-in defaults, environment, ``%config``, per-call overrides.

Precedence, highest first: cell option / call keyword > ``%config ChatImg.*``
> ``CHATIMG_*`` > ``OPENAI_*`` > built-in default.  With no key and no base URL
configured anywhere, the offline demo endpoint is used.

The API key is held in a :class:`Secret` that never shows itself in a repr,
a str, an error, a log or an output, and is paired with the host it belongs to
(DESIGN.md section 8): a base URL for another host gets no key unless one is
named for it with ``api_key_env``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlsplit

from ._errors import ConfigError

__all__ = [
    "DEFAULTS",
    "OPENAI_DEFAULT_BASE_URL",
    "SETTINGS",
    "SETTING_NAMES",
    "Secret",
    "Settings",
    "configured",
    "host_of",
    "origin_of",
    "resolve_settings",
    "set_configured",
    "settings_table",
]

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEMO_VISION_MODEL = "demo-vision"
REAL_DEFAULT_MODEL = "gpt-4o-mini"
DEMO_BASE_URL = "demo"
"""``base_url = "demo"`` selects the built-in demo whatever keys the environment holds."""

# Hosts that always need a key: sending to them without one can only fail.
_KEYED_HOSTS = ("api.openai.com", "openrouter.ai")


class Secret:
    """An API key that never reveals itself by accident."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The key itself; only the HTTP client calls this, to build a header."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> Any:
        raise TypeError("an API key cannot be pickled or saved")

    # Copies stay in memory, so they are allowed (dataclasses.asdict deep-copies fields).
    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self


def _setting(
    default: Any,
    doc: str,
    *,
    env: str | None = None,
    choices: tuple[str, ...] | None = None,
    shown: str | None = None,
    user: bool = True,
) -> Any:
    """Declare one setting: its default, what it means, and where else it may come from.

    Everything else is derived from these declarations: the ``%config
    ChatImg.<name>`` traits, the keywords ``chat()`` accepts, and the README's
    settings table (``settings_table()``). ``user=False`` marks resolved values
    that are not user settings (the key, where it came from, demo mode).
    """
    meta = {"doc": doc, "env": env, "choices": choices, "shown": shown, "user": user}
    if isinstance(default, (list, dict, set)):
        raise TypeError("settings are immutable: use a tuple")
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """The resolved settings for one request. ``repr`` never shows the key."""

    model: str = _setting(
        DEMO_VISION_MODEL,
        "Model id.",
        env="CHATIMG_MODEL",
        shown="`CHATIMG_MODEL`, else `demo-vision` on the demo, `gpt-4o-mini` elsewhere",
    )
    image_models: tuple[str, ...] = _setting(
        (),
        "Model ids served by the Images API besides `gpt-image*`, `dall-e*` and "
        "`chatgpt-image*` (`--api auto` sends them to `/images/generations` and "
        '`/images/edits`), e.g. a gateway\'s FLUX: `["flux-schnell"]`.',
        shown="none",
    )
    base_url: str = _setting(
        OPENAI_DEFAULT_BASE_URL,
        "Endpoint base URL, e.g. `https://api.openai.com/v1`; `demo` selects the built-in "
        "demo whatever keys the environment holds.",
        env="CHATIMG_BASE_URL",
        shown="`CHATIMG_BASE_URL`, else `OPENAI_BASE_URL`, else OpenAI (or the demo when "
        "there is no key either)",
    )
    api_key: Secret | None = field(
        default=None, repr=False, compare=False, metadata={"user": False}
    )
    key_source: str | None = field(default=None, metadata={"user": False})
    """Where the key came from (the environment variable's NAME), for messages."""
    api_key_env: str | None = _setting(
        None,
        "NAME of the environment variable holding the key for `base_url` (never the key).",
        shown="none",
    )
    stream: bool = _setting(True, "Stream replies as they are written.")
    timeout: float = _setting(
        120.0,
        "Seconds without data before a request or a stream is given up (headers included).",
        shown="`120`",
    )
    total_timeout: float | None = _setting(
        None, "Seconds a whole reply may take.", shown="none (no limit while data keeps coming)"
    )
    connect_timeout: float = _setting(10.0, "Seconds to connect to the endpoint.", shown="`10`")
    max_retries: int = _setting(
        2, "Retries on 408/409/429/5xx and connection errors, only before the reply begins."
    )
    max_side: int = _setting(
        2048, "Downscale bound for sent images, long side in pixels (0 = send as is)."
    )
    detail: str | None = _setting(
        None,
        "`image_url.detail` of sent images.",
        choices=("auto", "low", "high"),
        shown="not sent",
    )
    update_interval: float = _setting(0.05, "Seconds between in-place updates of a reply.")
    show_stats: bool = _setting(
        False, "Show a footer with model, tokens and timings (`--stats` for one cell)."
    )
    trust_html: bool = _setting(
        False, "Let raw HTML in replies through (only for endpoints you trust)."
    )
    image_hosts: tuple[str, ...] = _setting(
        (),
        "If set, returned image URLs are fetched only from these hosts.",
        shown="any public host",
    )
    image_timeout: float = _setting(
        30.0,
        "Seconds a returned image's download may take in all (headers included).",
        shown="`30`",
    )
    max_image_bytes: int = _setting(
        50_000_000, "Largest returned image download, in bytes.", shown="50 MB"
    )
    max_reply_bytes: int = _setting(200_000_000, "Largest reply, in bytes.", shown="200 MB")
    max_display_chars: int = _setting(
        1_000_000,
        "Characters of a reply shown in the notebook (the rest stays in `result.text`).",
        shown="1,000,000",
    )
    cache: bool = _setting(False, "Answer identical requests from a local cache.")
    cache_dir: str | None = _setting(
        None,
        "Where the reply cache lives.",
        shown="`$CHATIMG_CACHE_DIR`, else `~/.cache/jupyter_chatimg`",
    )
    cache_max_bytes: int = _setting(
        200_000_000, "Size bound of the cache (oldest entries go first).", shown="200 MB"
    )
    batch_max_bytes: int = _setting(
        200_000_000,
        'Largest Batch API input file (`mode="batch"`); a bigger job is split into several batches.',
        shown="200 MB",
    )
    batch_max_requests: int = _setting(
        50_000, 'Most requests in one Batch API batch (`mode="batch"`); a bigger job is split.'
    )
    batch_poll_interval: float = _setting(
        10.0,
        'Longest wait in seconds between status checks of a Batch API job (`mode="batch"`); '
        "the first checks come sooner.",
    )
    history_turns: int = _setting(
        20, "Earlier turns a `--chat` conversation keeps (the oldest go first)."
    )
    history_images: int = _setting(
        16, "Images a `--chat` conversation keeps (the oldest turns go first)."
    )
    max_tool_rounds: int = _setting(
        8,
        "Rounds of running the Python functions passed as tools before the loop stops "
        "(the model is asked at most this many times plus one).",
    )
    demo: bool = field(default=False, metadata={"user": False})
    debug: bool = _setting(False, "Full tracebacks instead of one-line errors.")

    @property
    def host(self) -> str:
        return host_of(self.base_url)

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


DEFAULTS = Settings()
SETTINGS: tuple[Field[Any], ...] = tuple(
    f for f in fields(Settings) if f.metadata.get("user", True)
)
"""The user settings, in declaration order (the one list everything else is derived from)."""
SETTING_NAMES = frozenset(f.name for f in SETTINGS)


def settings_table() -> str:
    """The README's settings table (markdown), derived from the declarations."""
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    for f in SETTINGS:
        shown = f.metadata.get("shown") or f"`{f.default!r}`"
        doc = f.metadata["doc"]
        if f.metadata.get("choices"):
            doc += " One of " + ", ".join(f"`{c}`" for c in f.metadata["choices"]) + "."
        rows.append(f"| `{f.name}` | {shown} | {doc} |")
    return "\n".join(rows) + "\n"


# Values set with %config ChatImg.<name>; the ChatImg configurable writes here.
_configured: dict[str, Any] = {}


def set_configured(name: str, value: Any) -> None:
    """Record a ``%config ChatImg.<name>`` value (None removes it)."""
    if value is None:
        _configured.pop(name, None)
    else:
        _configured[name] = value


def configured() -> dict[str, Any]:
    """A copy of the ``%config`` values in force."""
    return dict(_configured)


def host_of(url: str) -> str:
    """The lower-cased host[:port] of ``url`` ('' when it has none)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        port = None
    if port and port != default_port:
        return f"{host}:{port}"
    return host


def _clean_base_url(url: str, origin: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{origin}: {url!r} is not an http(s) URL; "
            "give the endpoint's base URL, e.g. https://api.openai.com/v1"
        )
    if url.endswith("/chat/completions"):
        url = url[: -len("/chat/completions")]
    return url


class _QuietEnv(Mapping[str, str]):
    """The environment, read-only, with a repr that shows no values.

    A traceback that prints local variables (IPython's ``%xmode Verbose``) would
    otherwise print ``os.environ``, keys included.
    """

    __slots__ = ("_env",)

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def __getitem__(self, name: str) -> str:
        return self._env[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)

    def __repr__(self) -> str:
        return f"<environment: {len(self._env)} variables>"


def _key_from_env(name: str, env: Mapping[str, str]) -> Secret | None:
    value = env.get(name, "").strip()
    return Secret(value) if value else None


def origin_of(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``, the port filled in for http and https.

    A key is paired with all three: never sent in clear text to an ``http://``
    URL of the host it was given for over ``https://``.
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port or default


@dataclass(frozen=True)
class _Endpoints:
    """The base URLs the environment and ``%config`` name, cleaned (None: not set)."""

    chatimg: str | None
    openai: str | None
    configured: str | None

    @property
    def openai_home(self) -> str:
        """Where ``OPENAI_API_KEY`` belongs."""
        return self.openai or OPENAI_DEFAULT_BASE_URL

    @property
    def chatimg_home(self) -> str:
        """Where ``CHATIMG_API_KEY`` belongs (where OPENAI_* would send it when unset)."""
        return self.chatimg or self.openai_home


def _endpoints(env: Mapping[str, str], config: Mapping[str, Any]) -> _Endpoints:
    def clean(value: Any, origin: str) -> str | None:
        text = str(value or "").strip()
        if not text or text.lower() == DEMO_BASE_URL:
            return None
        return _clean_base_url(text, origin)

    return _Endpoints(
        chatimg=clean(env.get("CHATIMG_BASE_URL"), "CHATIMG_BASE_URL"),
        openai=clean(env.get("OPENAI_BASE_URL"), "OPENAI_BASE_URL"),
        configured=clean(config.get("base_url"), "%config ChatImg.base_url"),
    )


def _wants_demo(
    given: Mapping[str, Any], config: Mapping[str, Any], env: Mapping[str, str]
) -> bool:
    """``base_url = "demo"`` at the highest level that sets a base URL."""
    for value in (given.get("base_url"), config.get("base_url"), env.get("CHATIMG_BASE_URL")):
        if value is not None and str(value).strip():
            return str(value).strip().lower() == DEMO_BASE_URL
    return False


def resolve_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve the settings for one request.

    ``overrides`` are the cell options / call keywords (None values ignored),
    ``config`` the ``%config`` values (default: those recorded by the
    configurable), ``env`` the environment (default: ``os.environ``).
    """
    env = _QuietEnv(os.environ if env is None else env)
    config = _configured if config is None else config
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(given) - SETTING_NAMES
    if unknown:
        raise ConfigError(
            f"unknown setting {sorted(unknown)[0]!r}; known: {', '.join(sorted(SETTING_NAMES))}"
        )
    chosen = {n: given[n] if n in given else config.get(n) for n in SETTING_NAMES}
    chosen = {k: v for k, v in chosen.items() if v is not None}
    if _wants_demo(given, config, env):
        return _demo_settings(chosen, env)
    ends = _endpoints(env, config)
    explicit = given.get("base_url") or config.get("base_url")
    if explicit:
        base_url = _clean_base_url(str(explicit), "base_url")
    else:
        base_url = ends.chatimg or ends.openai or OPENAI_DEFAULT_BASE_URL
    api_key_env = chosen.get("api_key_env")
    if api_key_env and "api_key_env" not in given and "base_url" in given:
        # A key named by %config belongs to the endpoint %config (or the environment)
        # points at; a base URL given in the cell for another endpoint does not get it.
        named_for = ends.configured or ends.chatimg_home
        if origin_of(named_for) != origin_of(base_url):
            api_key_env = None
    key, key_source = _pair_key(api_key_env, base_url, env, ends)
    if key is None and not explicit and not ends.chatimg and not ends.openai:
        return _demo_settings(chosen, env)
    model = chosen.get("model") or env.get("CHATIMG_MODEL", "").strip() or REAL_DEFAULT_MODEL
    if key is None and host_of(base_url) in _KEYED_HOSTS:
        raise ConfigError(_no_key_message(base_url, env, ends))
    return _build(chosen, model=str(model), base_url=base_url, api_key=key, key_source=key_source)


def _demo_settings(chosen: Mapping[str, Any], env: Mapping[str, str]) -> Settings:
    """The built-in demo: no key ever; its URL is filled in once the server runs."""
    model = chosen.get("model") or env.get("CHATIMG_MODEL", "").strip() or DEMO_VISION_MODEL
    return _build(chosen, model=str(model), base_url="", api_key=None, key_source=None, demo=True)


def _build(chosen: Mapping[str, Any], **resolved: Any) -> Settings:
    values = {k: v for k, v in chosen.items() if k != "base_url"}
    values.update(resolved)
    settings = Settings(**values)
    _validate(settings)
    return settings


def _no_key_message(base_url: str, env: Mapping[str, str], ends: _Endpoints) -> str:
    host = host_of(base_url)
    paired = [
        f"{name} is set for {host_of(home)}"
        for name, home in (
            ("CHATIMG_API_KEY", ends.chatimg_home),
            ("OPENAI_API_KEY", ends.openai_home),
        )
        if env.get(name, "").strip()
    ]
    if paired:
        return (
            f"no API key for {base_url}: {'; '.join(paired)}, not for this endpoint "
            "(a key goes only to the scheme, host and port it was given for); name the "
            "variable that holds this endpoint's key with --api-key-env NAME"
        )
    return (
        f"no API key for {host}: set OPENAI_API_KEY (or CHATIMG_API_KEY) in the kernel's "
        "environment, or name the variable that holds it with --api-key-env NAME"
    )


def _pair_key(
    api_key_env: Any, base_url: str, env: Mapping[str, str], ends: _Endpoints
) -> tuple[Secret | None, str | None]:
    if api_key_env:
        name = str(api_key_env)
        if name.startswith(("sk-", "sk_")) or len(name) > 64:
            raise ConfigError(
                "api_key_env takes the NAME of an environment variable, not the key itself "
                "(a cell's source is saved in the notebook); e.g. --api-key-env MY_KEY"
            )
        key = _key_from_env(name, env)
        if key is None:
            raise ConfigError(
                f"the environment variable {name} named by api_key_env is not set in the "
                "kernel; set it (os.environ or the shell that started Jupyter) and re-run"
            )
        return key, name
    target = origin_of(base_url)
    for name, home in (
        ("CHATIMG_API_KEY", ends.chatimg_home),
        ("OPENAI_API_KEY", ends.openai_home),
    ):
        key = _key_from_env(name, env)
        if key is not None and origin_of(home) == target:
            return key, name
    return None, None


def _validate(s: Settings) -> None:
    def bad(name: str, why: str) -> ConfigError:
        return ConfigError(f"{name}: {why}")

    if s.detail not in (None, "auto", "low", "high"):
        raise bad("detail", f"{s.detail!r} is not one of auto, low, high")
    if s.total_timeout is not None and (
        not isinstance(s.total_timeout, (int, float)) or s.total_timeout <= 0
    ):
        raise bad("total_timeout", f"{s.total_timeout!r} must be a positive number of seconds")
    if not isinstance(s.max_display_chars, int) or s.max_display_chars < 1000:
        raise bad("max_display_chars", f"{s.max_display_chars!r} must be a whole number >= 1000")
    for name in ("batch_max_bytes", "batch_max_requests"):
        value = getattr(s, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise bad(name, f"{value!r} must be a whole number >= 1")
    for name in (
        "timeout",
        "connect_timeout",
        "update_interval",
        "image_timeout",
        "batch_poll_interval",
    ):
        value = getattr(s, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise bad(name, f"{value!r} must be a positive number of seconds")
    if (
        not isinstance(s.max_tool_rounds, int)
        or isinstance(s.max_tool_rounds, bool)
        or s.max_tool_rounds < 0
    ):
        raise bad("max_tool_rounds", f"{s.max_tool_rounds!r} must be a whole number >= 0")
    if not isinstance(s.max_retries, int) or s.max_retries < 0:
        raise bad("max_retries", f"{s.max_retries!r} must be a whole number >= 0")
    if not isinstance(s.max_side, int) or isinstance(s.max_side, bool) or s.max_side < 0:
        raise bad(
            "max_side", f"{s.max_side!r} must be a whole number of pixels >= 0 (0 = send as is)"
        )
    if isinstance(s.image_models, str) or not all(isinstance(m, str) for m in s.image_models):
        raise bad("image_models", f"{s.image_models!r} must be a list of model ids")
    if not s.model.strip():
        raise bad("model", "is empty; give a model id such as gpt-4o-mini")
