"""The official OpenIM SDK (@openim/client-sdk 0.0.14, in Node) with its WebSocket through the guard."""

from __future__ import annotations

from pathlib import Path

import pytest

from messenger_gw.sandbox import Sandbox
from tests.openim_sdk import run_scenario
from tests.sandbox.fixtures import IM
from tests.ws.conftest import ADMIN_KEY, StartGuarded, log_in, ws_address
from tests.ws.test_guard import openim_kicks_nobody  # noqa: F401 - fixture

pytestmark = pytest.mark.slow


def sdk_login(user_id: str, token: str, im: IM, ws_addr: str) -> dict[str, object]:
    """What the SDK is handed: the imToken, the guard's /ws, and (here) the sandbox's REST API."""
    return {"userID": user_id, "token": token, "platformID": 5, "apiAddr": im.api_addr, "wsAddr": ws_addr}


async def test_a_ban_on_one_replica_kicks_the_sdk_held_by_another_within_a_second_and_it_cannot_come_back(
    start_guarded: StartGuarded,
    im: IM,
    openim_kicks_nobody: None,  # noqa: F811 - the imported fixture
) -> None:
    first, second = await start_guarded(), await start_guarded()  # one redis-server
    login = await log_in(first, "mallory")
    user = sdk_login("mallory", login.token, im, ws_address(second))
    result = await run_scenario("ban.mjs", {"user": user, "ban": {"url": first.url, "key": ADMIN_KEY}})
    assert result["banStatus"] in (200, 207), "OpenIM's force_logout fails here: only the guard can kick"
    assert result["first"] == [{"event": "OnKickedOffline", "errCode": 0, "errMsg": ""}]
    assert result["kickedAfterMs"] < 1000
    assert result["again"][0] == {"event": "OnConnectFailed", "errCode": 1506, "errMsg": "TokenKickedError"}
    assert result["unhandled"] == []


async def test_a_banned_word_sent_through_the_sdk_is_refused_by_the_guard_with_the_moderation_errcode(
    start_guarded: StartGuarded, im: IM, sandbox: Sandbox, tmp_path: Path
) -> None:
    words = tmp_path / "banned.txt"
    words.write_text("scam\n")
    gateway = await start_guarded(WEBHOOK_BANNED_WORDS_FILE=str(words), WEBHOOK_BLOCK_ERRCODE="20777")
    assert sandbox.webhook_url is None, "no callback from OpenIM: the guard blocks alone"
    args = {
        user: sdk_login(user, (await log_in(gateway, user)).token, im, ws_address(gateway)) for user in ("alice", "bob")
    }
    result = await run_scenario("moderation.mjs", args | {"banned": "scam"})
    assert result["blocked"] == {"ok": False, "errCode": 20777, "errMsg": "the message contains a banned word"}
    assert result["clean"] == {"ok": True, "errCode": 0}
    assert result["received"] == ["good morning"]
    assert result["bobNewMessageEvents"] == 1, "the blocked message never reached bob"
