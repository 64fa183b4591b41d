"""`make run`'s try-it steps for the media routes: the shipped sticker pack, and GIF search off without a key."""

from __future__ import annotations

import dataclasses

from messenger_gw import server
from messenger_gw.settings import HostPort, Settings

GATEWAY = HostPort("127.0.0.1", 8080)


def banner(**env: str) -> str:
    settings = Settings.from_env({"MESSENGER_GW_" + k: v for k, v in env.items()}, dev=True)
    return server._banner(dataclasses.replace(settings, openim_api_url="http://127.0.0.1:10002"), GATEWAY)


def test_dev_mode_says_gif_search_is_off_without_a_key_and_shows_the_example_pack() -> None:
    text = banner()
    assert "GIF search is off: set MESSENGER_GW_GIF_API_KEY" in text
    assert "/gifs/search" not in text
    assert ".venv/bin/messenger-gw client call /stickers/packs --method GET   # the shipped example pack" in text
    assert ".venv/bin/messenger-gw client call /stickers/packs/twemoji-hello --method GET" in text


def test_dev_mode_with_a_key_shows_a_search_to_try() -> None:
    text = banner(GIF_API_KEY="a-key-of-klipy", GIF_PROVIDER="klipy", GIF_RATING="pg")
    assert "client call '/gifs/search?q=hello&limit=8' --method GET   # klipy, rating pg" in text
    assert "GIF search is off" not in text
    assert "a-key-of-klipy" not in text
