"""The webhook receiver and consumer: authentication, strict input, moderation, durable events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from messenger_gw import keys
from messenger_gw.audit import AuditLog
from messenger_gw.bans import Ban
from messenger_gw.keys import MODERATION_FLAGS as FLAGS
from messenger_gw.keys import WEBHOOK_DEAD_STREAM as DEAD_STREAM
from messenger_gw.keys import WEBHOOK_REJECTED_STREAM as REJECTED_STREAM
from messenger_gw.keys import WEBHOOK_STREAM as STREAM
from messenger_gw.memory_store import MemoryStore
from messenger_gw.metrics import METRICS, Metrics
from messenger_gw.settings import Settings
from messenger_gw.spool import Spool
from messenger_gw.store import STORE, StoreError
from messenger_gw.webhook_consumer import GROUP, WEBHOOK_CONSUMER, WebhookConsumer
from messenger_gw.webhooks import WebhookReceiver
from messenger_gw.word_rules import WordRules

from .conftest import Gateway, RedisProcess, StartGateway, sample

SECRET, OLD_SECRET = "hook-secret-0123456789", "old-secret-0123456789"
BLOCK = 20777


def message(command: str, text: str = "hello", sender: str = "u1", **extra: Any) -> dict[str, Any]:
    return {
        "sendID": sender,
        "callbackCommand": command,
        "serverMsgID": f"srv-{text}-{sender}",
        "clientMsgID": "c",
        "operationID": "op-1",
        "senderPlatformID": 1,
        "senderNickname": "U",
        "sessionType": 1,
        "msgFrom": 100,
        "contentType": 101,
        "status": 0,
        "sendTime": 1,
        "createTime": 1,
        "content": orjson.dumps({"content": text}).decode(),
        "seq": 0,
        "atUserList": None,
        "faceURL": "",
        "ex": "",
        "recvID": "u2",
    } | extra


@pytest.fixture
def word_files(tmp_path: Path) -> dict[str, str]:
    banned, flagged = tmp_path / "banned.txt", tmp_path / "flagged.txt"
    banned.write_text("scam\nre:free\\s+money\n")
    flagged.write_text("refund\n")
    return {"WEBHOOK_BANNED_WORDS_FILE": str(banned), "WEBHOOK_FLAGGED_WORDS_FILE": str(flagged)}


@pytest.fixture
async def gateway(start_gateway: StartGateway, word_files: dict[str, str], tmp_path: Path) -> Gateway:
    return await start_gateway(
        WEBHOOK_SECRETS=f"{SECRET},{OLD_SECRET}",
        WEBHOOK_BLOCK_ERRCODE=str(BLOCK),
        WEBHOOK_MAX_MESSAGES_PER_MINUTE="3",
        WEBHOOK_SPOOL_DIR=str(tmp_path / "spool"),
        PHASE="4",
        **word_files,
    )


async def hook(
    gateway: Gateway,
    command: str,
    body: Any,
    *,
    secret: str = SECRET,
    headers: dict[str, str] | None = None,
    in_parts: int = 1,
) -> tuple[int, Any]:
    """POST as OpenIM does: JSON with a trailing newline, Operationid header, a charset.

    ``in_parts`` > 1 sends the body chunked, in that many parts a little apart, as a proxy may.
    """
    raw = body if isinstance(body, bytes) else orjson.dumps(body) + b"\n"

    async def parts() -> AsyncIterator[bytes]:
        size = -(-len(raw) // in_parts)
        for start in range(0, len(raw), size):
            yield raw[start : start + size]
            await asyncio.sleep(0.02)

    sent = {
        "Content-Type": "application/json; charset=utf-8",
        "Operationid": "op-1",
        "User-Agent": "Go-http-client/1.1",
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.url}/webhooks/openim/{secret}/{command}",
            data=raw if in_parts == 1 else parts(),
            headers=sent | (headers or {}),
        ) as response,
    ):
        payload = await response.read()
        return response.status, orjson.loads(payload) if payload else None


def stream(redis: RedisProcess, name: str) -> list[dict[bytes, bytes]]:
    with redis.client() as c:
        return [fields for _, fields in c.xrange(name)]


async def drain(gateway: Gateway) -> None:
    """Until the consumers (the app's own and this one) have handled and acknowledged everything."""
    consumer, store = gateway.app[WEBHOOK_CONSUMER], gateway.app[STORE]
    async with asyncio.timeout(5):
        busy = True
        while busy:  # a step that handled nothing, with nothing pending: caught up
            handled = await consumer.step(block=0.05)
            busy = bool(handled or await store.pending(STREAM, GROUP, min_idle=0, count=1))


# -- who may call, and what ------------------------------------------------------------------------------


async def test_a_wrong_or_missing_secret_is_a_plain_404(gateway: Gateway) -> None:
    for secret in ("wrong-secret-0123456789", "x"):
        status, body = await hook(
            gateway, "callbackAfterSendSingleMsgCommand", message("callbackAfterSendSingleMsgCommand"), secret=secret
        )
        assert (status, body["errCode"]) == (404, 40400)
    assert (
        sample(gateway.app[METRICS], "messenger_gw_webhook_requests_total", command="unknown", outcome="wrong_secret")
        == 2
    )


async def test_every_configured_secret_is_accepted_for_rotation(gateway: Gateway) -> None:
    for secret in (SECRET, OLD_SECRET):
        status, _ = await hook(
            gateway, "callbackBeforeSendSingleMsgCommand", message("callbackBeforeSendSingleMsgCommand"), secret=secret
        )
        assert status == 200


async def test_senders_outside_the_allowlist_get_404(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(WEBHOOK_SECRETS=SECRET, WEBHOOK_ALLOWED_CIDRS="10.0.0.0/8")
    status, _ = await hook(gateway, "callbackBeforeSendSingleMsgCommand", message("callbackBeforeSendSingleMsgCommand"))
    assert status == 404


async def test_the_receiver_is_off_without_secrets(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    assert (await hook(gateway, "callbackAfterSendSingleMsgCommand", {}))[0] == 404


@pytest.mark.parametrize(
    ("command", "body", "status", "reason"),
    [
        ("callbackAfterSendSingleMsgCommand", b"{not json", 400, "malformed"),
        ("callbackAfterSendSingleMsgCommand", b'{"sendID":"u1"}', 400, "no_command"),
        (
            "callbackAfterSendSingleMsgCommand",
            b'{"callbackCommand":"callbackAfterSendGroupMsgCommand"}',
            400,
            "command_mismatch",
        ),
        (
            "callbackAfterSendSingleMsgCommand",
            b'{"callbackCommand":"callbackAfterSendSingleMsgCommand","sendID":5}',
            400,
            "invalid",
        ),
        (
            "callbackAfterSendSingleMsgCommand",
            b'{"callbackCommand":"x","pad":"' + b"x" * 300_000 + b'"}',
            413,
            "too_large",
        ),
    ],
)
async def test_bad_input_is_refused_counted_and_kept_for_inspection(
    gateway: Gateway, clean_redis: RedisProcess, command: str, body: bytes, status: int, reason: str
) -> None:
    reply_status, reply = await hook(gateway, command, body)
    assert reply_status == status
    assert set(reply) == {"errCode", "errMsg", "errDlt"}
    [kept] = stream(clean_redis, REJECTED_STREAM)
    assert kept[b"reason"] == reason.encode()
    assert kept[b"body"] == body[: 16 * 1024]
    assert stream(clean_redis, STREAM) == [], "nothing half-stored"
    assert (
        sample(
            gateway.app[METRICS],
            "messenger_gw_webhook_requests_total",
            command="callbackAfterSendSingleMsgCommand",
            outcome=f"rejected_{reason}",
        )
        == 1
    )


# -- before-callbacks: moderation -------------------------------------------------------------------------------

ALLOW = {"actionCode": 0, "errCode": 0, "errMsg": "", "errDlt": "", "nextCode": 0}


@pytest.mark.parametrize("command", ["callbackBeforeSendSingleMsgCommand", "callbackBeforeSendGroupMsgCommand"])
async def test_clean_messages_are_allowed_and_banned_words_blocked(gateway: Gateway, command: str) -> None:
    assert await hook(gateway, command, message(command, "see you at noon")) == (200, ALLOW)
    for text in ("this is a SCAM", "get free   money now"):
        status, body = await hook(gateway, command, message(command, text))
        assert status == 200
        assert body == {
            "actionCode": 0,
            "nextCode": 1,
            "errCode": BLOCK,
            "errMsg": "the message contains a banned word",
            "errDlt": "",
        }


async def test_banned_senders_are_blocked_everywhere_they_act(gateway: Gateway, clean_redis: RedisProcess) -> None:
    with clean_redis.client() as c:
        c.set(keys.ban("mallory"), Ban("mallory", "spam", "t", 0, None).encode())
    blocked = {"actionCode": 0, "nextCode": 1, "errCode": BLOCK, "errMsg": "the sender is banned", "errDlt": ""}
    calls = [
        ("callbackBeforeSendSingleMsgCommand", message("callbackBeforeSendSingleMsgCommand", sender="mallory")),
        (
            "callbackBeforeCreateGroupCommand",
            {"callbackCommand": "callbackBeforeCreateGroupCommand", "ownerUserID": "mallory", "initMemberList": []},
        ),
        (
            "callbackBeforeInviteJoinGroupCommand",
            {"callbackCommand": "callbackBeforeInviteJoinGroupCommand", "groupID": "g", "invitedUserIDs": ["mallory"]},
        ),
        (
            "callbackBeforeMembersJoinGroupCommand",
            {
                "callbackCommand": "callbackBeforeMembersJoinGroupCommand",
                "groupID": "g",
                "memberList": [{"userID": "mallory", "ex": ""}],
            },
        ),
    ]
    for command, body in calls:
        assert await hook(gateway, command, body) == (200, blocked), command


async def test_a_sender_over_the_rate_is_blocked(gateway: Gateway) -> None:
    command = "callbackBeforeSendSingleMsgCommand"
    answers = [
        (await hook(gateway, command, message(command, f"m{i}", sender="fast")))[1]["nextCode"] for i in range(5)
    ]
    assert answers == [0, 0, 0, 1, 1]


@pytest.mark.parametrize(("policy", "next_code"), [("open", 0), ("closed", 1)])
async def test_when_the_store_is_down_the_configured_policy_decides(
    start_gateway: StartGateway, policy: str, next_code: int
) -> None:
    gateway = await start_gateway(WEBHOOK_SECRETS=SECRET, WEBHOOK_FAIL_POLICY=policy, REDIS_URL="redis://127.0.0.1:1/0")
    command = "callbackBeforeSendSingleMsgCommand"
    status, body = await hook(gateway, command, message(command))
    assert (status, body["nextCode"]) == (200, next_code)
    assert sample(gateway.app[METRICS], "messenger_gw_webhook_rule_failures_total", policy=policy) == 1


# -- after-callbacks: durable, processed once ------------------------------------------------------------------


async def test_an_after_event_arriving_in_parts_is_read_whole(gateway: Gateway, clean_redis: RedisProcess) -> None:
    command = "callbackAfterSendSingleMsgCommand"
    text = "x" * 200_000  # under WEBHOOK_MAX_BODY_BYTES (256 KiB), over what one read of the socket brings
    body = message(command, text, serverMsgID="srv-long")
    assert await hook(gateway, command, body, in_parts=4) == (200, ALLOW)
    [stored] = stream(clean_redis, STREAM)
    assert orjson.loads(orjson.loads(stored[b"body"])["content"])["content"] == text


async def test_an_after_event_is_stored_before_the_answer_and_processed(
    gateway: Gateway, clean_redis: RedisProcess
) -> None:
    command = "callbackAfterSendSingleMsgCommand"
    assert await hook(gateway, command, message(command, "please refund me")) == (200, ALLOW)
    [stored] = stream(clean_redis, STREAM)
    assert stored[b"command"] == command.encode()
    assert stored[b"operationID"] == b"op-1", "Go's Operationid header"
    assert orjson.loads(stored[b"body"])["sendID"] == "u1"
    await drain(gateway)
    metrics = gateway.app[METRICS]
    assert (
        sample(metrics, "messenger_gw_webhook_events_total", command=command, content_type="101", session_type="1") == 1
    )
    with clean_redis.client() as c:
        flag = orjson.loads(c.hget(FLAGS, f"{command}:serverMsgID=srv-please refund me-u1") or b"{}")
    assert flag["text"] == "please refund me"


async def test_a_duplicate_delivery_is_processed_once(gateway: Gateway, clean_redis: RedisProcess) -> None:
    command = "callbackAfterDisMissGroupCommand"
    body = {
        "callbackCommand": command,
        "groupID": "g1",
        "ownerID": "u1",
        "groupType": "\u0002",
        "membersID": ["u1", "u2"],
    }
    for _ in range(2):
        assert (await hook(gateway, command, body))[0] == 200
    await drain(gateway)
    assert (
        sample(
            gateway.app[METRICS], "messenger_gw_webhook_events_total", command=command, content_type="", session_type=""
        )
        == 1
    )
    entries, _ = await gateway.app[STORE].read_range_reverse("gw:audit", count=10), None
    audited = [e for e in entries if e.fields["operation"] == b"openim.group.dismissed"]
    assert len(audited) == 1
    assert audited[0].fields["target"] == b"g1"


async def test_kicks_are_audited_and_unknown_commands_kept(gateway: Gateway, clean_redis: RedisProcess) -> None:
    kick = {
        "callbackCommand": "callbackAfterKickGroupCommand",
        "groupID": "g2",
        "kickedUserIDs": ["u3"],
        "reason": "spam",
    }
    assert (await hook(gateway, "callbackAfterKickGroupCommand", kick))[0] == 200
    novel = {"callbackCommand": "callbackAfterSomethingNewCommand", "x": 1}
    assert await hook(gateway, "callbackAfterSomethingNewCommand", novel) == (200, ALLOW)
    await drain(gateway)
    assert [f[b"command"] for f in stream(clean_redis, STREAM)] == [
        b"callbackAfterKickGroupCommand",
        b"callbackAfterSomethingNewCommand",
    ]
    assert (
        sample(
            gateway.app[METRICS],
            "messenger_gw_webhook_events_total",
            command="unknown",
            content_type="",
            session_type="",
        )
        == 1
    )
    entries = await gateway.app[STORE].read_range_reverse("gw:audit", count=10)
    assert [(e.fields["operation"], e.fields["target"]) for e in entries] == [(b"openim.group.kicked", b"g2:u3")]


# -- consumer failures and the spool, driven step by step ----------------------------------------------------


class FlakyStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def append(self, stream: str, fields: Any, *, max_len: int | None = None) -> str:
        if self.down:
            raise StoreError("ConnectionError: down")
        return await super().append(stream, fields, max_len=max_len)


async def test_a_poison_event_is_retried_then_dead_lettered() -> None:
    store = MemoryStore()
    await store.ensure_group(STREAM, GROUP)
    await store.append(STREAM, {"command": b"callbackAfterSendSingleMsgCommand", "body": b"not json", "key": b"k"})
    await store.append(
        STREAM,
        {
            "command": b"callbackAfterQuitGroupCommand",
            "body": b'{"callbackCommand":"callbackAfterQuitGroupCommand","groupID":"g","userID":"u"}',
            "key": b"q",
        },
    )
    metrics = Metrics()
    consumer = WebhookConsumer(
        store, AuditLog(store, max_entries=1000), WordRules(None), metrics=metrics, retry_after=0
    )
    for _ in range(8):
        await consumer.step(block=None)
    [dead] = await store.read_range(DEAD_STREAM, count=10)
    assert dead.fields["body"] == b"not json"
    assert dead.fields["error"].startswith(b"JSONDecodeError")
    assert int(dead.fields["deliveries"]) >= 5
    assert await store.pending(STREAM, GROUP, min_idle=0, count=10) == [], (
        "the good event was acknowledged, the bad one dead-lettered"
    )
    assert sample(metrics, "messenger_gw_webhook_dead_letters_total", command="callbackAfterSendSingleMsgCommand") == 1


async def test_events_arriving_while_the_store_is_down_are_spooled_and_replayed(tmp_path: Path) -> None:
    store = FlakyStore()
    settings = Settings.from_env({"MESSENGER_GW_WEBHOOK_SECRETS": SECRET}, dev=True).webhooks
    from messenger_gw.bans import Bans
    from messenger_gw.invalidation import Invalidation

    receiver = WebhookReceiver(
        settings, store, Bans(store, Invalidation(store)), metrics=Metrics(), spool=Spool(tmp_path)
    )
    store.down = True
    records = [
        {"command": "callbackAfterUserOnlineCommand", "key": f"k{i}", "body": "{}", "operationID": "", "receivedAt": i}
        for i in range(3)
    ]
    assert [await receiver.keep(r) for r in records] == ["spooled"] * 3
    assert receiver.spool.pending() == 3
    store.down = False
    assert await receiver.spool.replay(receiver.append) == 3
    assert [e.fields["key"] for e in await store.read_range(STREAM, count=10)] == [b"k0", b"k1", b"k2"]
    assert receiver.spool.pending() == 0


# -- end to end: the sandbox fires OpenIM's callbacks at the gateway ---------------------------------------


async def test_end_to_end_a_banned_word_is_refused_and_a_clean_message_recorded(
    gateway: Gateway, sandbox: Any, clean_redis: RedisProcess
) -> None:
    from .conftest import GOOD_CODE

    sandbox.webhook_url = f"{gateway.url}/webhooks/openim/{SECRET}"
    sandbox.add_user("bob", nickname="bob")
    async with gateway.client() as alice:
        await alice.handshake(platform_id=5)
        await alice.login({"userID": "alice", "code": GOOD_CODE})
        text = {"recvID": "bob", "contentType": 101, "sessionType": 1}
        refused = await alice.request("POST", "/im/msg/send_msg", text | {"content": {"content": "a scam offer"}})
        assert refused.status == 200, "OpenIM's own answer, passed on"
        assert refused.json() == {"errCode": BLOCK, "errMsg": "the message contains a banned word", "errDlt": ""}
        sent = await alice.request("POST", "/im/msg/send_msg", text | {"content": {"content": "lunch at noon?"}})
        assert sent.json()["errCode"] == 0
    assert [m["sendID"] for m in sandbox.messages["si_alice_bob"]] == ["alice"], "only the clean message was stored"
    await sandbox.webhooks.flush()
    await drain(gateway)
    commands = [f[b"command"] for f in stream(clean_redis, STREAM)]
    assert b"callbackAfterSendSingleMsgCommand" in commands
    assert b"callbackAfterUserRegisterCommand" in commands, "alice's registration at login"
    metrics = gateway.app[METRICS]
    assert (
        sample(
            metrics,
            "messenger_gw_webhook_events_total",
            command="callbackAfterSendSingleMsgCommand",
            content_type="101",
            session_type="1",
        )
        == 1
    )
    assert (
        sample(
            metrics,
            "messenger_gw_webhook_requests_total",
            command="callbackBeforeSendSingleMsgCommand",
            outcome="blocked_banned_word",
        )
        == 1
    )
