"""Settings precedence and the pairing of keys with hosts (DESIGN.md sections 2 and 8)."""

from __future__ import annotations

import pickle

import pytest

from jupyter_chatimg import ConfigError
from jupyter_chatimg._config import OPENAI_DEFAULT_BASE_URL, Secret, resolve_settings

KEY = "sk-test-config-abcdefghijklmnop"


def resolve(overrides=None, env=None, config=None):
    return resolve_settings(overrides or {}, env=env or {}, config=config or {})


def test_nothing_configured_means_demo() -> None:
    s = resolve()
    assert s.demo and s.api_key is None and s.model == "demo-vision"


def test_openai_key_goes_to_openai() -> None:
    s = resolve(env={"OPENAI_API_KEY": KEY})
    assert not s.demo and s.base_url == OPENAI_DEFAULT_BASE_URL
    assert s.api_key == Secret(KEY) and s.key_source == "OPENAI_API_KEY"
    assert s.model == "gpt-4o-mini"


def test_precedence_cell_over_config_over_chatimg_over_openai() -> None:
    env = {
        "OPENAI_BASE_URL": "http://a.test/v1",
        "CHATIMG_BASE_URL": "http://b.test/v1",
        "CHATIMG_MODEL": "env-model",
    }
    assert resolve(env=env).base_url == "http://b.test/v1"
    assert resolve(env=env).model == "env-model"
    assert resolve(env={"OPENAI_BASE_URL": "http://a.test/v1"}).base_url == "http://a.test/v1"
    assert (
        resolve(env=env, config={"base_url": "http://c.test/v1", "model": "cfg"}).base_url
        == "http://c.test/v1"
    )
    assert resolve(env=env, config={"model": "cfg"}).model == "cfg"
    cell = resolve(
        {"base_url": "http://d.test/v1/", "model": "cell"},
        env=env,
        config={"base_url": "http://c.test/v1"},
    )
    assert cell.base_url == "http://d.test/v1" and cell.model == "cell"
    assert resolve({"timeout": 5}, config={"timeout": 9}).timeout == 5
    assert resolve(config={"timeout": 9}).timeout == 9


def test_chatimg_key_wins_for_its_host() -> None:
    env = {
        "CHATIMG_BASE_URL": "http://gw.test/v1",
        "CHATIMG_API_KEY": KEY,
        "OPENAI_API_KEY": "sk-test-other-aaaaaaaaaaaaaaaaaaaa",
    }
    s = resolve(env=env)
    assert s.api_key == Secret(KEY) and s.key_source == "CHATIMG_API_KEY"


def test_chatimg_key_without_chatimg_base_goes_where_openai_would() -> None:
    s = resolve(env={"CHATIMG_API_KEY": KEY, "OPENAI_BASE_URL": "http://gw.test/v1"})
    assert s.base_url == "http://gw.test/v1" and s.api_key == Secret(KEY)


def test_key_not_sent_to_another_host() -> None:
    env = {"OPENAI_API_KEY": KEY}
    s = resolve({"base_url": "http://elsewhere.test/v1"}, env=env)
    assert s.api_key is None and not s.demo
    s = resolve(env=env, config={"base_url": "http://elsewhere.test/v1"})
    assert s.api_key is None


def test_named_key_goes_to_the_endpoint_it_is_named_for() -> None:
    env = {"OPENAI_API_KEY": KEY, "MY_GW_KEY": "sk-test-gw-key-aaaaaaaaaaaaaaaaaaaaaa"}
    s = resolve({"base_url": "http://gw.test/v1", "api_key_env": "MY_GW_KEY"}, env=env)
    assert (
        s.api_key == Secret("sk-test-gw-key-aaaaaaaaaaaaaaaaaaaaaa") and s.key_source == "MY_GW_KEY"
    )


@pytest.mark.parametrize(
    ("overrides", "env", "message"),
    [
        (
            {"base_url": "https://api.openai.com/v1"},
            {},
            "no API key for api.openai.com: set OPENAI_API_KEY",
        ),
        (
            {"api_key_env": "NOPE"},
            {},
            "the environment variable NOPE named by api_key_env is not set",
        ),
        (
            {"api_key_env": KEY},
            {},
            "api_key_env takes the NAME of an environment variable, not the key itself",
        ),
        ({"base_url": "ftp://x"}, {}, "base_url: 'ftp://x' is not an http(s) URL"),
        ({"detail": "medium"}, {}, "detail: 'medium' is not one of auto, low, high"),
        ({"timeout": -1}, {}, "timeout: -1 must be a positive number of seconds"),
        ({"max_side": -5}, {}, "max_side: -5 must be a whole number of pixels >= 0"),
        ({"colour": 1}, {}, "unknown setting 'colour'"),
    ],
)
def test_bad_settings_are_one_line(overrides, env, message) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(overrides, env=env)
    text = str(info.value)
    assert text.startswith(message) and "\n" not in text and KEY not in text


def test_the_key_never_shows() -> None:
    s = resolve(env={"OPENAI_API_KEY": KEY})
    for text in (repr(s), str(s), repr(s.api_key), str(s.api_key), f"{s.api_key}"):
        assert KEY not in text
    with pytest.raises(TypeError):
        pickle.dumps(s.api_key)


# -- issue 15: defects found by a hostile tester --------------------------------------------


@pytest.mark.parametrize(
    ("paired", "asked"),
    [
        ("https://127.0.0.1:8443/v1", "http://127.0.0.1:8443/v1"),  # same host and port
        ("https://api.openai.com/v1", "http://api.openai.com/v1"),
    ],
)
def test_a_key_paired_with_https_never_goes_to_http(paired: str, asked: str) -> None:
    # Issue 15 (2): pairing compared host and port, not the scheme: the key went in clear text.
    env = {"OPENAI_BASE_URL": paired, "OPENAI_API_KEY": KEY}
    if "api.openai.com" in asked:
        with pytest.raises(ConfigError, match=r"OPENAI_API_KEY is set for api\.openai\.com"):
            resolve({"base_url": asked}, env=env)
        return
    settings = resolve({"base_url": asked}, env=env)
    assert settings.api_key is None
    assert resolve({"base_url": paired}, env=env).api_key == Secret(KEY)


def test_the_no_key_message_says_which_key_is_paired_where() -> None:
    # Issue 15 (12): "set OPENAI_API_KEY (or CHATIMG_API_KEY)" although CHATIMG_API_KEY was set.
    env = {"CHATIMG_BASE_URL": "http://127.0.0.1:9999/v1", "CHATIMG_API_KEY": KEY}
    with pytest.raises(ConfigError) as info:
        resolve({"base_url": "https://api.openai.com/v1"}, env=env)
    message = str(info.value)
    assert "CHATIMG_API_KEY is set for 127.0.0.1:9999, not for this endpoint" in message
    assert "--api-key-env NAME" in message and KEY not in message


def test_base_url_demo_selects_the_demo_whatever_keys_are_set() -> None:
    env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": "https://api.openai.com/v1"}
    assert resolve({"base_url": "demo"}, env=env).demo
    assert resolve(config={"base_url": "demo"}, env=env).demo
    assert resolve(env={**env, "CHATIMG_BASE_URL": "demo"}).demo
    assert resolve(config={"base_url": "demo"}, env=env).api_key is None
    assert not resolve(env=env).demo
