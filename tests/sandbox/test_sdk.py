"""The official OpenIM SDK (@openim/client-sdk 0.0.14, in Node) against the sandbox: each test
asserts on what the SDK reports, its events and its return values."""

from __future__ import annotations

from pathlib import Path

import pytest

from messenger_gw.sandbox import FakeClock, Sandbox
from tests.conftest import StartGateway
from tests.openim_sdk import run_scenario
from tests.sandbox.fixtures import IM, im, ws_url  # noqa: F401 - fixtures

HOOK_SECRET = "sdk-hook-secret-0123456789"

pytestmark = pytest.mark.slow


@pytest.fixture
async def chat(im: IM) -> IM:  # noqa: F811 - the imported fixture
    await im.register("alice", "bob")
    return im


async def test_two_users_chat_read_and_answer(chat: IM) -> None:
    result = await run_scenario("chat.mjs", {"alice": await chat.login("alice"), "bob": await chat.login("bob")})
    assert result["failures"] == []
    assert result["sent"]["ok"]
    assert len(result["sent"]["serverMsgID"]) == 32
    assert result["bobReceived"] == [
        {"sendID": "alice", "recvID": "bob", "seq": 1, "text": "hello bob", "msgFrom": 100}
    ]
    assert result["bobList"] == [
        {"conversationID": "si_alice_bob", "showName": "Alice", "unreadCount": 1, "latest": "hello bob"}
    ]
    assert result["marked"]["ok"]
    assert result["bobListAfterRead"][0]["unreadCount"] == 0
    assert [m["text"] for m in result["history"]] == ["hello bob"]
    assert result["answered"]["ok"]
    assert result["aliceReceived"] == [
        {"sendID": "bob", "recvID": "alice", "seq": 2, "text": "hi alice", "msgFrom": 100}
    ]
    assert result["aliceNewMessageEvents"] == [result["aliceReceived"]], "her own message's echo stays silent"
    assert result["aliceList"][0]["latest"] == "hi alice"
    assert result["unhandled"] == []


async def test_a_rest_send_msg_reaches_the_sdk_as_a_push(chat: IM) -> None:
    result = await run_scenario("rest_push.mjs", {"bob": await chat.login("bob"), "admin": chat.admin})
    assert result["reply"]["errCode"] == 0
    assert result["received"] == [{"sendID": "alice", "seq": 1, "text": "from rest", "msgFrom": 200}]
    assert result["conversation"] == [{"conversationID": "si_alice_bob", "showName": "Alice", "unreadCount": 1}]
    assert result["unhandled"] == []


async def test_a_second_login_on_the_same_platform_kicks_the_first(chat: IM) -> None:
    result = await run_scenario(
        "kick.mjs", {"mode": "second-login", "user": await chat.login("alice"), "admin": chat.admin}
    )
    assert result["first"] == [{"event": "OnKickedOffline", "errCode": 0, "errMsg": ""}]
    assert result["second"] == []


async def test_force_logout_kicks_the_live_connection(chat: IM) -> None:
    result = await run_scenario(
        "kick.mjs", {"mode": "force-logout", "user": await chat.login("bob"), "admin": chat.admin}
    )
    assert result["forceLogout"] == 0
    assert result["first"] == [{"event": "OnKickedOffline", "errCode": 0, "errMsg": ""}]


async def test_an_expired_token_gives_the_sdks_expiry_event(chat: IM, fake_clock: FakeClock) -> None:
    login = await chat.login("alice")
    fake_clock.advance(91 * 86400)
    result = await run_scenario("kick.mjs", {"mode": "bad-token", "user": login, "admin": chat.admin})
    assert result["login"]["ok"], "login() resolves when the socket opens, before the handshake answer"
    assert result["events"][:2] == [
        {"event": "OnConnectFailed", "errCode": 1501, "errMsg": "TokenExpiredError"},
        {"event": "OnUserTokenExpired", "errCode": 1501, "errMsg": "TokenExpiredError"},
    ]


async def test_a_malformed_token_gives_the_sdks_invalid_token_event(chat: IM) -> None:
    login = await chat.login("alice") | {"token": "not-a-jwt"}
    result = await run_scenario("kick.mjs", {"mode": "bad-token", "user": login, "admin": chat.admin})
    assert result["events"][:2] == [
        {"event": "OnConnectFailed", "errCode": 1503, "errMsg": "TokenMalformedError"},
        {"event": "OnUserTokenInvalid", "errCode": 1503, "errMsg": "TokenMalformedError"},
    ]


async def test_after_a_dropped_socket_the_sdk_reconnects_and_receives_what_it_missed(chat: IM) -> None:
    result = await run_scenario("reconnect.mjs", {"alice": await chat.login("alice"), "bob": await chat.login("bob")})
    assert result["stillAway"], "bob was still disconnected when alice's message was stored"
    assert result["missedWhileDown"] == 0
    assert result["reconnectEvents"][-3:] == ["OnConnectSuccess", "OnSyncServerStart", "OnSyncServerFinish"]
    assert result["received"] == [{"sendID": "alice", "seq": 1, "text": "while you were away"}]
    assert result["unhandled"] == []


async def test_the_gateways_moderation_blocks_an_sdk_send_with_its_errcode(
    chat: IM, sandbox: Sandbox, start_gateway: StartGateway, tmp_path: Path
) -> None:
    banned = tmp_path / "banned.txt"
    banned.write_text("scam\n")
    gateway = await start_gateway(
        WEBHOOK_SECRETS=HOOK_SECRET,
        WEBHOOK_BANNED_WORDS_FILE=str(banned),
        WEBHOOK_BLOCK_ERRCODE="20777",
        WEBHOOK_SPOOL_DIR=str(tmp_path / "spool"),
    )
    sandbox.webhook_url = f"{gateway.url}/webhooks/openim/{HOOK_SECRET}"  # as OpenIM's webhooks.yml url
    args = {"alice": await chat.login("alice"), "bob": await chat.login("bob"), "banned": "scam"}
    result = await run_scenario("moderation.mjs", args)
    assert result["blocked"]["ok"] is False
    assert result["blocked"]["errCode"] == 20777
    assert result["clean"] == {"ok": True, "errCode": 0}
    assert result["received"] == ["good morning"]
    assert result["bobNewMessageEvents"] == 1, "the blocked message never reached bob"
