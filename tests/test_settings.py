"""Configuration from MESSENGER_GW_* variables: defaults, validation, masking."""

from __future__ import annotations

import pytest

from messenger_gw.settings import ConfigError, HostPort, Secret, SentinelURL, Settings

PRODUCTION = {
    "MESSENGER_GW_REDIS_URL": "redis://:hunter2@redis:6379/0",
    "MESSENGER_GW_OPENIM_API_URL": "http://openim-api:10002",
    "MESSENGER_GW_OPENIM_SECRET": "s3cr3t-value",
    "MESSENGER_GW_OPENIM_WS_URL": "wss://chat.example.com/ws",
    "MESSENGER_GW_PUBLIC_IM_URL": "https://chat.example.com/im",
    "MESSENGER_GW_USER_SERVICE_URL": "http://users:8000",
    "MESSENGER_GW_USER_SERVICE_TOKEN": "user-service-token-value",
}


def test_dev_mode_needs_no_variables() -> None:
    settings = Settings.from_env({}, dev=True)
    assert settings.redis_url is None
    assert settings.openim_api_url is None
    assert settings.openim_secret == Secret("openIM123")
    assert settings.openim_admin_user_id == "imAdmin"
    assert settings.listen == HostPort("127.0.0.1", 8080)


def test_the_public_base_of_im_is_dev_modes_own_and_has_no_trailing_slash() -> None:
    dev = Settings.from_env({"MESSENGER_GW_LISTEN": "127.0.0.1:9090"}, dev=True)
    assert dev.public_im_url == "http://127.0.0.1:9090/im"
    given = PRODUCTION | {"MESSENGER_GW_PUBLIC_IM_URL": "https://chat.example.com/im/"}
    assert Settings.from_env(given, dev=False).public_im_url == "https://chat.example.com/im", (
        "the SDK appends each path to it: a trailing / would make //"
    )
    with pytest.raises(ConfigError, match="PUBLIC_IM_URL"):
        Settings.from_env(PRODUCTION | {"MESSENGER_GW_PUBLIC_IM_URL": "wss://chat.example.com/im"}, dev=False)


def test_dev_modes_websocket_url_is_its_own_guard_unless_one_is_given() -> None:
    listen = {"MESSENGER_GW_LISTEN": "127.0.0.1:9090"}
    assert Settings.from_env(listen, dev=True).openim_ws_url == "ws://127.0.0.1:9090/ws"
    given = listen | {"MESSENGER_GW_OPENIM_WS_URL": "ws://127.0.0.1:8080/ws"}  # another gateway's, set by hand
    assert Settings.from_env(given, dev=True).openim_ws_url == "ws://127.0.0.1:8080/ws"


def test_production_reads_every_variable() -> None:
    env = PRODUCTION | {
        "MESSENGER_GW_LISTEN": "[::1]:9000",
        "MESSENGER_GW_OPENIM_ADMIN_USER_ID": "root_admin",
        "MESSENGER_GW_OPENIM_CONNECT_TIMEOUT": "0.5",
        "MESSENGER_GW_OPENIM_READ_TIMEOUT": "3",
        "MESSENGER_GW_OPENIM_TOTAL_TIMEOUT": "4",
        "MESSENGER_GW_OPENIM_MAX_CONNECTIONS": "50",
        "MESSENGER_GW_ADMIN_TOKEN_MAX_AGE": "200",
        "MESSENGER_GW_LOG_LEVEL": "DEBUG",
    }
    settings = Settings.from_env(env, dev=False)
    assert settings.listen == HostPort("::1", 9000)
    assert str(settings.listen) == "[::1]:9000"
    assert settings.openim_api_url == "http://openim-api:10002"
    assert settings.openim_admin_user_id == "root_admin"
    assert settings.openim_timeouts.connect == 0.5
    assert settings.openim_timeouts.total == 4
    assert settings.openim_max_connections == 50
    assert settings.admin_token_max_age == 200
    assert settings.log_level == "debug"


@pytest.mark.parametrize("variable", ["REDIS_URL", "OPENIM_API_URL", "OPENIM_SECRET", "OPENIM_WS_URL", "PUBLIC_IM_URL"])
def test_production_requires_each_connection_variable(variable: str) -> None:
    env = dict(PRODUCTION)
    del env["MESSENGER_GW_" + variable]
    with pytest.raises(ConfigError) as error:
        Settings.from_env(env, dev=False)
    assert error.value.variable == "MESSENGER_GW_" + variable
    assert "required" in str(error.value)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("LISTEN", "8080", "expected host:port"),
        ("LISTEN", "0.0.0.0:99999", "port must be a number from 0 to 65535"),
        ("LISTEN", "::1:80", "IPv6 host in brackets"),
        ("REDIS_URL", "http://redis:6379", "scheme must be one of"),
        ("REDIS_URL", "redis://", "needs a host"),
        ("REDIS_URL", "redis://redis:port", "invalid port"),
        ("REDIS_URL", "redis+sentinel://s1:26379,s2:26379", "names the master after the hosts"),
        ("REDIS_URL", "redis+sentinel://s1:26379,:26379/gw", "every sentinel needs a host"),
        ("REDIS_URL", "redis+sentinel://s1:263790/gw", "port must be a number from 1 to 65535"),
        ("REDIS_URL", "redis+sentinel://s1/gw/zero", "database after the master's name must be a number"),
        ("OPENIM_API_URL", "openim:10002", "expected a http:// or https:// URL"),
        ("OPENIM_API_URL", "http://openim:10002/?x=1", "must not carry a query"),
        ("OPENIM_API_URL", "http://admin:hunter2@openim:10002", "must not carry credentials"),
        ("OPENIM_WS_URL", "http://openim:10001", "expected a ws:// or wss:// URL"),
        ("OPENIM_ADMIN_USER_ID", "im admin", "only letters, digits and '_'"),
        ("OPENIM_CONNECT_TIMEOUT", "fast", "expected a number of seconds"),
        ("OPENIM_READ_TIMEOUT", "-1", "must be between"),
        ("OPENIM_MAX_CONNECTIONS", "0", "must be between 1 and 10000"),
        ("OPENIM_MAX_CONNECTIONS", "lots", "expected a whole number"),
        ("ADMIN_TOKEN_MAX_AGE", "300", "must be between 30 and 299"),
        ("LOG_LEVEL", "loud", "must be one of debug, info, warning, error"),
        ("TOKEN_TTL", "5", "is not a known setting"),
    ],
)
def test_malformed_values_name_the_variable_and_the_problem(variable: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env(PRODUCTION | {"MESSENGER_GW_" + variable: value}, dev=False)
    assert error.value.variable == "MESSENGER_GW_" + variable
    assert expected in error.value.problem


def test_total_timeout_must_cover_the_phases() -> None:
    env = PRODUCTION | {"MESSENGER_GW_OPENIM_READ_TIMEOUT": "20", "MESSENGER_GW_OPENIM_TOTAL_TIMEOUT": "15"}
    with pytest.raises(ConfigError, match="OPENIM_TOTAL_TIMEOUT"):
        Settings.from_env(env, dev=False)


@pytest.mark.parametrize(
    "url", ["ftp://user:hunter2@redis", "redis+sentinel://user:hunter2/gw", "redis+sentinel://:hunter2@/gw"]
)
def test_errors_never_repeat_a_secret(url: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env(PRODUCTION | {"MESSENGER_GW_REDIS_URL": url}, dev=False)
    assert "hunter2" not in str(error.value)


def test_describe_masks_secrets() -> None:
    described = dict(Settings.from_env(PRODUCTION, dev=False).describe())
    text = repr(described)
    assert "hunter2" not in text
    assert "s3cr3t-value" not in text
    assert described["MESSENGER_GW_REDIS_URL"] == "redis://:********@redis:6379/0"
    assert described["MESSENGER_GW_OPENIM_SECRET"] == "********"


def test_a_sentinel_url_names_its_sentinels_master_and_database_and_hides_its_password() -> None:
    url = "rediss+sentinel://app:p%40ss@s1:26380,s2,[::1]:26381/gw-master/3"
    settings = Settings.from_env(PRODUCTION | {"MESSENGER_GW_REDIS_URL": url}, dev=False)
    assert dict(settings.describe())["MESSENGER_GW_REDIS_URL"] == (
        "rediss+sentinel://app:********@s1:26380,s2,[::1]:26381/gw-master/3"
    )
    assert SentinelURL.parse(url) == SentinelURL(
        sentinels=(("s1", 26380), ("s2", 26379), ("::1", 26381)),
        master="gw-master",
        db=3,
        username="app",
        password="p@ss",
        tls=True,
    )
    assert SentinelURL.parse("redis+sentinel://s1/gw") == SentinelURL((("s1", 26379),), "gw", 0, None, None, False)


def test_secret_does_not_show_itself() -> None:
    secret = Secret("value")
    assert "value" not in repr(secret)
    assert "value" not in str(secret)
    assert "value" not in repr(Settings.from_env({"MESSENGER_GW_OPENIM_SECRET": "value"}, dev=True))
    assert secret.reveal() == "value"
