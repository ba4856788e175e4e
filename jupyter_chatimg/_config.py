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
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlsplit

from ._errors import ConfigError

__all__ = [
    "DEFAULTS",
    "OPENAI_DEFAULT_BASE_URL",
    "Secret",
    "Settings",
    "configured",
    "host_of",
    "resolve_settings",
    "set_configured",
]

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEMO_VISION_MODEL = "demo-vision"
REAL_DEFAULT_MODEL = "gpt-4o-mini"

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


@dataclass(frozen=True)
class Settings:
    """The resolved settings for one request. ``repr`` never shows the key."""

    model: str = DEMO_VISION_MODEL
    base_url: str = OPENAI_DEFAULT_BASE_URL
    api_key: Secret | None = field(default=None, repr=False, compare=False)
    key_source: str | None = None
    """Where the key came from (the environment variable's NAME), for messages."""
    api_key_env: str | None = None
    stream: bool = True
    timeout: float = 120.0
    connect_timeout: float = 10.0
    max_retries: int = 2
    max_side: int = 2048
    detail: str | None = None
    update_interval: float = 0.05
    show_stats: bool = False
    trust_html: bool = False
    image_hosts: tuple[str, ...] = ()
    max_image_bytes: int = 50_000_000
    max_reply_bytes: int = 200_000_000
    cache: bool = False
    cache_dir: str | None = None
    """Where cached replies live (default: $CHATIMG_CACHE_DIR, else the user's cache dir)."""
    cache_max_bytes: int = 200_000_000
    history_turns: int = 20
    """Earlier turns a ``--chat`` conversation keeps (oldest dropped first)."""
    history_images: int = 16
    """Images a ``--chat`` conversation keeps in its history (oldest turns dropped first)."""
    demo: bool = False
    debug: bool = False

    @property
    def host(self) -> str:
        return host_of(self.base_url)

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


DEFAULTS = Settings()
SETTING_NAMES = frozenset(f.name for f in fields(Settings)) - {"api_key", "key_source", "demo"}

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

    chosen: dict[str, Any] = {}
    for name in SETTING_NAMES:
        if name in given:
            chosen[name] = given[name]
        elif config.get(name) is not None:
            chosen[name] = config[name]

    # Which base URL, and where it came from.
    explicit_base = chosen.get("base_url")
    chatimg_base = env.get("CHATIMG_BASE_URL", "").strip() or None
    openai_base = env.get("OPENAI_BASE_URL", "").strip() or None
    if explicit_base:
        base_url = _clean_base_url(str(explicit_base), "base_url")
    elif chatimg_base:
        base_url = _clean_base_url(chatimg_base, "CHATIMG_BASE_URL")
    elif openai_base:
        base_url = _clean_base_url(openai_base, "OPENAI_BASE_URL")
    else:
        base_url = OPENAI_DEFAULT_BASE_URL
    host = host_of(base_url)

    api_key_env = chosen.get("api_key_env")
    if api_key_env and "api_key_env" not in given and "base_url" in given:
        # A key named by %config belongs to the endpoint %config (or the environment)
        # points at; a base URL given in the cell for another host does not get it.
        named_for = config.get("base_url") or chatimg_base or openai_base
        named_host = (
            host_of(_clean_base_url(str(named_for), "base_url"))
            if named_for
            else host_of(OPENAI_DEFAULT_BASE_URL)
        )
        if named_host != host:
            api_key_env = None
    key, key_source = _pair_key(api_key_env, host, env, chatimg_base, openai_base)

    demo = key is None and not explicit_base and not chatimg_base and not openai_base
    if demo:
        base_url = ""  # filled in by the caller once the demo server runs

    model = chosen.get("model") or env.get("CHATIMG_MODEL", "").strip() or None
    if model is None:
        model = DEMO_VISION_MODEL if demo else REAL_DEFAULT_MODEL

    if not demo and key is None and host in _KEYED_HOSTS:
        raise ConfigError(
            f"no API key for {host}: set OPENAI_API_KEY (or CHATIMG_API_KEY) in the kernel's "
            "environment, or name the variable that holds it with --api-key-env NAME"
        )

    values: dict[str, Any] = {k: v for k, v in chosen.items() if k not in ("base_url",)}
    values.update(
        model=str(model),
        base_url=base_url,
        api_key=key,
        key_source=key_source,
        demo=demo,
    )
    settings = Settings(**values)
    _validate(settings)
    return settings


def _pair_key(
    api_key_env: Any,
    host: str,
    env: Mapping[str, str],
    chatimg_base: str | None,
    openai_base: str | None,
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
    openai_host = (
        host_of(_clean_base_url(openai_base, "OPENAI_BASE_URL"))
        if openai_base
        else host_of(OPENAI_DEFAULT_BASE_URL)
    )
    chatimg_host = (
        host_of(_clean_base_url(chatimg_base, "CHATIMG_BASE_URL")) if chatimg_base else openai_host
    )
    for name, paired_host in (("CHATIMG_API_KEY", chatimg_host), ("OPENAI_API_KEY", openai_host)):
        key = _key_from_env(name, env)
        if key is not None and paired_host == host:
            return key, name
    return None, None


def _validate(s: Settings) -> None:
    def bad(name: str, why: str) -> ConfigError:
        return ConfigError(f"{name}: {why}")

    if s.detail not in (None, "auto", "low", "high"):
        raise bad("detail", f"{s.detail!r} is not one of auto, low, high")
    for name in ("timeout", "connect_timeout", "update_interval"):
        value = getattr(s, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise bad(name, f"{value!r} must be a positive number of seconds")
    if not isinstance(s.max_retries, int) or s.max_retries < 0:
        raise bad("max_retries", f"{s.max_retries!r} must be a whole number >= 0")
    if not isinstance(s.max_side, int) or isinstance(s.max_side, bool) or s.max_side < 0:
        raise bad(
            "max_side", f"{s.max_side!r} must be a whole number of pixels >= 0 (0 = send as is)"
        )
    if not s.model.strip():
        raise bad("model", "is empty; give a model id such as gpt-4o-mini")
