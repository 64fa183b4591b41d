"""The GIF search and sticker catalog settings (GIF_*, STICKER_*): defaults, bounds, the key's secrecy."""

from __future__ import annotations

import pytest

from messenger_gw.settings import ConfigError, Secret, Settings

KEY = "a-provider-key-value"


def test_gif_search_is_off_until_a_key_is_set() -> None:
    gifs = Settings.from_env({}, dev=True).gifs
    assert (gifs.enabled, gifs.provider, gifs.api_url, gifs.rating) == (False, "giphy", "https://api.giphy.com", "g")
    described = dict(Settings.from_env({}, dev=True).describe())
    assert described["MESSENGER_GW_GIF_API_KEY"] == "(unset: GIF search off)"


def test_each_provider_has_its_own_default_address() -> None:
    env = {"MESSENGER_GW_GIF_PROVIDER": "KLIPY", "MESSENGER_GW_GIF_API_KEY": KEY}
    gifs = Settings.from_env(env, dev=True).gifs
    assert (gifs.provider, gifs.api_url, gifs.api_key) == ("klipy", "https://api.klipy.com", Secret(KEY))


def test_the_key_is_never_described() -> None:
    settings = Settings.from_env({"MESSENGER_GW_GIF_API_KEY": KEY}, dev=True)
    assert dict(settings.describe())["MESSENGER_GW_GIF_API_KEY"] == "********"
    assert KEY not in repr(settings)
    assert KEY not in repr(list(settings.describe()))


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://gifs.internal.example/v1", True),
        ("http://127.0.0.1:8081", True),
        ("http://[::1]:8081", True),
        ("http://localhost:8081", True),
        ("http://api.giphy.com", False),
        ("http://10.0.0.5", False),
        ("ftp://api.giphy.com", False),
        ("https://user:pw@api.giphy.com", False),
    ],
)
def test_the_providers_address_carries_the_key_so_only_https_leaves_the_machine(url: str, accepted: bool) -> None:
    env = {"MESSENGER_GW_GIF_API_URL": url}
    if accepted:
        assert Settings.from_env(env, dev=True).gifs.api_url == url.rstrip("/")
    else:
        with pytest.raises(ConfigError) as error:
            Settings.from_env(env, dev=True)
        assert error.value.variable == "MESSENGER_GW_GIF_API_URL"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GIF_PROVIDER", "tenor"),
        ("GIF_RATING", "nc-17"),
        ("GIF_CACHE_TTL", "0"),
        ("GIF_TIMEOUT", "61"),
        ("GIF_MAX_CONNECTIONS", "0"),
        ("STICKER_MAX_AGE", "86401"),
    ],
)
def test_a_media_setting_out_of_bounds_is_refused(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"MESSENGER_GW_" + variable: value}, dev=True)
    assert error.value.variable == "MESSENGER_GW_" + variable


def test_the_gif_routes_have_a_rate_class_of_their_own() -> None:
    gifs = Settings.from_env({"MESSENGER_GW_RATE_LIMITS": "gifs=2/s:5"}, dev=True).rate_limits.classes["gifs"]
    assert gifs is not None
    assert (gifs.rate, gifs.burst) == (2.0, 5)
    assert Settings.from_env({}, dev=True).rate_limits.classes["gifs"] is not None, "limited by default"


def test_dev_mode_describes_the_shipped_pack() -> None:
    assert dict(Settings.from_env({}, dev=True).describe())["MESSENGER_GW_STICKER_PACKS"] == (
        "(the shipped example pack)"
    )


def test_gif_rate_limit_is_not_a_setting_of_its_own() -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"MESSENGER_GW_GIF_RATE_LIMIT": "30"}, dev=True)
    assert error.value.problem.startswith("is not a known setting")
    assert all(name != "MESSENGER_GW_GIF_RATE_LIMIT" for name, _ in Settings.from_env({}, dev=True).describe())
