"""The webhook receiver and consumer: authentication, strict input, moderation, durable events."""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from messenger_gw import keys
from messenger_gw.admin import AuditLog
from messenger_gw.keys import MODERATION_FLAGS as FLAGS
from messenger_gw.keys import WEBHOOK_DEAD_STREAM as DEAD_STREAM
from messenger_gw.keys import WEBHOOK_REJECTED_STREAM as REJECTED_STREAM
from messenger_gw.keys import WEBHOOK_STREAM as STREAM
from messenger_gw.metrics import METRICS, Metrics
from messenger_gw.moderation import Ban, Bans, WordRules
from messenger_gw.settings import SETTINGS, Settings
from messenger_gw.store import STORE, Invalidation, MemoryStore, Store, StoreError
from messenger_gw.webhooks import Spool
from messenger_gw.webhooks.consumer import GROUP, WEBHOOK_CONSUMER, WebhookConsumer
from messenger_gw.webhooks.models import COMMANDS, ECHOED
from messenger_gw.webhooks.receiver import REPLAY_INTERVAL, WebhookReceiver, replaying
from tests.conftest import Gateway, RedisProcess, StartGateway, sample

SECRET, OLD_SECRET = "hook-secret-0123456789", "old-secret-0123456789"
BLOCK = 20777
MAX_BODY = 6 * 1024 * 1024  # WEBHOOK_MAX_BODY_BYTES's default: 6 x the 1,000,000 bytes Kafka lets OpenIM send


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
            data=parts() if in_parts > 1 else io.BytesIO(raw) if len(raw) > 1024 * 1024 else raw,
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


async def test_an_after_event_with_a_wrong_or_missing_secret_is_a_plain_404_and_not_stored(
    gateway: Gateway, clean_redis: RedisProcess
) -> None:
    for secret in ("wrong-secret-0123456789", "x"):
        status, body = await hook(
            gateway, "callbackAfterSendSingleMsgCommand", message("callbackAfterSendSingleMsgCommand"), secret=secret
        )
        assert (status, body) == (404, {"errCode": 40400, "errMsg": "Not Found", "errDlt": ""})
    assert (
        sample(gateway.app[METRICS], "messenger_gw_webhook_requests_total", command="unknown", outcome="wrong_secret")
        == 2
    )
    assert stream(clean_redis, STREAM) == []
    assert not gateway.app[SETTINGS].webhooks.spool_dir.exists(), "not spooled either"


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
            b'{"callbackCommand":"x","pad":"' + b"x" * MAX_BODY + b'"}',
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


BANNED = {"actionCode": 0, "nextCode": 1, "errCode": BLOCK, "errMsg": "the sender is banned", "errDlt": ""}
UNAVAILABLE = {"actionCode": 0, "nextCode": 1, "errCode": BLOCK, "errMsg": "moderation is unavailable", "errDlt": ""}


def ban(redis: RedisProcess, user_id: str) -> None:
    with redis.client() as c:
        c.set(keys.ban(user_id), Ban(user_id, "spam", "t", 0, None).encode())


# Each before-callback as OpenIM v3.8.3 sends it (contract 8.5, 8.6), with mallory where the body
# names a user, and whether mallory is the user acting there.
ACTING: list[tuple[str, dict[str, Any], bool]] = [
    ("callbackBeforeSendSingleMsgCommand", message("callbackBeforeSendSingleMsgCommand", sender="mallory"), True),
    ("callbackBeforeSendGroupMsgCommand", message("callbackBeforeSendGroupMsgCommand", sender="mallory"), True),
    ("callbackBeforeMsgModifyCommand", message("callbackBeforeMsgModifyCommand", sender="mallory"), True),
    (
        "callbackBeforeCreateGroupCommand",  # as the SDK sends it: the flattened ownerUserID empty
        {
            "operationID": "op-1",
            "callbackCommand": "callbackBeforeCreateGroupCommand",
            "groupID": "",
            "ownerUserID": "",
            "creatorUserID": "mallory",
            "initMemberList": [{"userID": "mallory", "roleLevel": 100}, {"userID": "u2", "roleLevel": 20}],
        },
        True,
    ),
    (
        "callbackBeforeJoinGroupCommand",
        {
            "callbackCommand": "callbackBeforeJoinGroupCommand",
            "groupID": "g",
            "groupType": "\u0002",
            "applyID": "mallory",
            "reqMessage": "let me in",
            "ex": "",
        },
        True,
    ),
    (
        "callbackBeforeAddFriendCommand",
        {
            "callbackCommand": "callbackBeforeAddFriendCommand",
            "fromUserID": "mallory",
            "toUserID": "u2",
            "reqMsg": "",
            "ex": "",
        },
        True,
    ),
    (
        "callbackBeforeAddFriendAgreeCommand",  # mallory answering u2's request travels as blackUserID
        {
            "callbackCommand": "callbackBeforeAddFriendAgreeCommand",
            "fromUserID": "u2",
            "blackUserID": "mallory",
            "HandleResult": 1,
            "HandleMsg": "",
        },
        True,
    ),
    (
        "callbackBeforeAddFriendAgreeCommand",
        {
            "callbackCommand": "callbackBeforeAddFriendAgreeCommand",
            "fromUserID": "mallory",
            "blackUserID": "u2",
            "HandleResult": 1,
            "HandleMsg": "",
        },
        False,
    ),
    (
        "callbackBeforeSetFriendRemarkCommand",
        {
            "callbackCommand": "callbackBeforeSetFriendRemarkCommand",
            "ownerUserID": "mallory",
            "friendUserID": "u2",
            "remark": "x",
        },
        True,
    ),
    (
        "callbackBeforeAddBlackCommand",
        {"callbackCommand": "callbackBeforeAddBlackCommand", "ownerUserID": "mallory", "blackUserID": "u2"},
        True,
    ),
    (
        "callbackBeforeOnlinePushCommand",
        {
            "callbackCommand": "callbackBeforeOnlinePushCommand",
            "operationID": "op-1",
            "platformID": 1,
            "platform": "iOS",
            "userIDList": ["u2"],
            "clientMsgID": "c",
            "sendID": "mallory",
            "groupID": "",
            "contentType": 101,
            "sessionType": 1,
            "atUserIDList": None,
            "content": "{}",
        },
        True,
    ),
    # The body names only the user acted upon: an admin editing, inviting or adding a banned user.
    (
        "callbackBeforeUpdateUserInfoCommand",
        {
            "callbackCommand": "callbackBeforeUpdateUserInfoCommand",
            "userID": "mallory",
            "nickName": "M",
            "faceURL": "",
            "ex": None,
        },
        False,
    ),
    (
        "callbackBeforeUpdateUserInfoExCommand",
        {
            "callbackCommand": "callbackBeforeUpdateUserInfoExCommand",
            "userID": "mallory",
            "nickName": "M",
            "faceURL": None,
            "ex": None,
        },
        False,
    ),
    (
        "callbackBeforeSetGroupMemberInfoCommand",
        {
            "callbackCommand": "callbackBeforeSetGroupMemberInfoCommand",
            "groupID": "g",
            "userID": "mallory",
            "nickName": "muted",
            "faceURL": None,
            "roleLevel": None,
            "ex": None,
        },
        False,
    ),
    (
        "callbackBeforeInviteJoinGroupCommand",
        {
            "callbackCommand": "callbackBeforeInviteJoinGroupCommand",
            "operationID": "op-1",
            "groupID": "g",
            "reason": "",
            "invitedUserIDs": ["mallory"],
        },
        False,
    ),
    (
        "callbackBeforeMembersJoinGroupCommand",
        {
            "callbackCommand": "callbackBeforeMembersJoinGroupCommand",
            "groupID": "g",
            "memberList": [{"userID": "mallory", "ex": ""}],
            "groupEx": "",
        },
        False,
    ),
    (
        "callbackBeforeUserRegisterCommand",
        {"callbackCommand": "callbackBeforeUserRegisterCommand", "users": [{"userID": "mallory", "nickname": "M"}]},
        False,
    ),
    (
        "callbackBeforeImportFriendsCommand",
        {"callbackCommand": "callbackBeforeImportFriendsCommand", "ownerUserID": "mallory", "friendUserIDs": ["u2"]},
        False,
    ),
]


@pytest.mark.parametrize(
    ("command", "body", "acting"), ACTING, ids=[f"{c}-{'acting' if a else 'acted-upon'}" for c, _, a in ACTING]
)
async def test_the_ban_rule_refuses_a_banned_user_acting_and_lets_others_act_on_one(
    gateway: Gateway, clean_redis: RedisProcess, command: str, body: dict[str, Any], acting: bool
) -> None:
    ban(clean_redis, "mallory")
    assert await hook(gateway, command, body) == (200, BANNED if acting else ALLOW)


async def test_a_sender_over_the_rate_is_blocked(gateway: Gateway) -> None:
    command = "callbackBeforeSendSingleMsgCommand"
    answers = [
        (await hook(gateway, command, message(command, f"m{i}", sender="fast")))[1]["nextCode"] for i in range(5)
    ]
    assert answers == [0, 0, 0, 1, 1]


async def test_a_text_message_counts_once_against_the_rate_though_beforeMsgModify_asks_again(
    gateway: Gateway,
) -> None:
    """OpenIM calls beforeSendSingleMsg, then beforeMsgModify, for each text message (contract 8.6)."""
    answers = []
    for i in range(4):
        for command in ("callbackBeforeSendSingleMsgCommand", "callbackBeforeMsgModifyCommand"):
            body = message(command, f"m{i}", sender="chatty")  # the same serverMsgID in both
            answers.append((await hook(gateway, command, body))[1]["nextCode"])
            if answers[-1]:
                break  # refused: OpenIM asks no further
    assert answers == [0, 0, 0, 0, 0, 0, 1], "3 a minute: the fourth message is refused at its first callback"


async def test_group_notifications_are_neither_counted_nor_judged_as_the_operators_messages(
    gateway: Gateway, clean_redis: RedisProcess
) -> None:
    """OpenIM sends group notifications (1000-5000) through beforeSendGroupMsg in the operator's name."""
    command = "callbackBeforeSendGroupMsgCommand"
    for n in range(5):  # the operator kicks five members: five MemberKicked notifications (1508)
        tips = orjson.dumps({"detail": "a scam group"}).decode()
        notification = message(command, sender="owner", serverMsgID=f"srv-n{n}", contentType=1508, content=tips)
        assert await hook(gateway, command, notification | {"groupID": "g1"}) == (200, ALLOW)
    assert await hook(gateway, command, message(command, "hi all", sender="owner")) == (200, ALLOW), (
        "the notifications did not use up the operator's 3 messages a minute"
    )
    ban(clean_redis, "owner")
    notification = message(command, sender="owner", serverMsgID="srv-n9", contentType=1504)
    assert await hook(gateway, command, notification) == (200, ALLOW), "the change it reports is already made"


SET_GROUP_INFO = {
    "callbackCommand": "callbackBeforeSetGroupInfoCommand",
    "operationID": "op-1",
    "groupID": "g1",
    "groupName": "Climbers",
    "notification": "",
    "introduction": "we climb",
    "faceURL": "https://x/face.png",
    "ex": "",
    "needVerification": 0,
    "lookMemberInfo": 0,
    "applyMemberFriend": 0,
}
SET_GROUP_INFO_EX = {
    "callbackCommand": "callbackBeforeSetGroupInfoExCommand",
    "operationID": "op-1",
    "groupID": "g1",
    "groupName": "Climbers",
    "notification": None,
    "introduction": None,
    "faceURL": None,
    "ex": "{}",
    "needVerification": None,
    "lookMemberInfo": 1,
    "applyMemberFriend": None,
}


@pytest.mark.parametrize(
    ("body", "echoed"),
    [
        (
            SET_GROUP_INFO,
            {"groupID": "g1", "groupName": "Climbers", "faceURL": "https://x/face.png", "introduction": "we climb"},
        ),
        (
            SET_GROUP_INFO_EX,
            {
                "groupID": "g1",
                "groupName": "Climbers",
                "faceURL": None,
                "introduction": None,
                "ex": "{}",
                "needVerification": None,
                "lookMemberInfo": 1,
                "applyMemberFriend": None,
            },
        ),
    ],
    ids=["beforeSetGroupInfo", "beforeSetGroupInfoEx"],
)
async def test_allowing_a_group_info_update_echoes_what_openim_copies_back(
    gateway: Gateway, body: dict[str, Any], echoed: dict[str, Any]
) -> None:
    """OpenIM copies these fields from the answer unconditionally: without them it would update group ""."""
    assert await hook(gateway, body["callbackCommand"], body) == (200, ALLOW | echoed)


async def test_every_other_before_callback_is_allowed_with_nothing_openim_would_copy(gateway: Gateway) -> None:
    """Any field beyond the five would modify the action (users, content, remark, userIDList ...)."""
    bodies = {command: body for command, body, _ in ACTING}
    for command, (kind, _) in COMMANDS.items():
        if kind == "before" and command not in ECHOED:
            body = bodies.get(command, {"callbackCommand": command})
            assert await hook(gateway, command, body) == (200, ALLOW), command


async def test_a_large_message_starting_with_a_banned_word_is_blocked(gateway: Gateway) -> None:
    """A 300 KiB text was over the old 256 KiB limit: answered 413, which OpenIM reads as allow."""
    command = "callbackBeforeSendSingleMsgCommand"
    big = message(command, "scam " + "and more words " * 20_000)
    assert len(orjson.dumps(big)) > 300_000
    status, body = await hook(gateway, command, big)
    assert (status, body["nextCode"], body["errMsg"]) == (200, 1, "the message contains a banned word")


UNEVALUATED = [
    ("too_large", 413, message("callbackBeforeSendSingleMsgCommand", "x" * MAX_BODY)),
    ("malformed", 400, b"{not json"),
    ("no_command", 400, b'{"sendID":"u1"}'),
    ("command_mismatch", 400, message("callbackBeforeSendGroupMsgCommand")),
    ("invalid", 400, message("callbackBeforeSendSingleMsgCommand", sendID=5)),
    ("wrong_secret", 404, message("callbackBeforeSendSingleMsgCommand")),
]


@pytest.mark.parametrize(("reason", "status", "body"), UNEVALUATED, ids=[u[0] for u in UNEVALUATED])
@pytest.mark.parametrize("policy", ["open", "closed"])
async def test_a_before_callback_that_cannot_be_evaluated_gets_the_fail_policy_in_a_shape_openim_reads(
    start_gateway: StartGateway, policy: str, reason: str, status: int, body: Any
) -> None:
    gateway = await start_gateway(WEBHOOK_SECRETS=SECRET, WEBHOOK_BLOCK_ERRCODE=str(BLOCK), WEBHOOK_FAIL_POLICY=policy)
    command = "callbackBeforeSendSingleMsgCommand"
    secret = "wrong-secret-0123456789" if reason == "wrong_secret" else SECRET
    answered_status, answer = await hook(gateway, command, body, secret=secret)
    assert answered_status == status, "the status still says what went wrong (OpenIM does not read it)"
    if policy == "closed":
        assert answer == UNAVAILABLE, "a block: OpenIM refuses the action"
    else:
        assert set(answer) == {"errCode", "errMsg", "errDlt"}, "the envelope, no nextCode: OpenIM goes on"
    outcome = "wrong_secret" if reason == "wrong_secret" else f"rejected_{reason}"
    label = "unknown" if reason == "wrong_secret" else command
    metrics = gateway.app[METRICS]
    assert sample(metrics, "messenger_gw_webhook_requests_total", command=label, outcome=outcome) == 1
    assert sample(metrics, "messenger_gw_webhook_rule_failures_total", policy=policy) == 1


async def test_a_before_callback_from_outside_the_allowlist_fails_closed_when_told_to(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(
        WEBHOOK_SECRETS=SECRET,
        WEBHOOK_BLOCK_ERRCODE=str(BLOCK),
        WEBHOOK_FAIL_POLICY="closed",
        WEBHOOK_ALLOWED_CIDRS="10.0.0.0/8",
    )
    command = "callbackBeforeSendSingleMsgCommand"
    assert await hook(gateway, command, message(command)) == (404, UNAVAILABLE)


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


async def test_identical_bodies_under_different_operation_ids_are_two_events(
    gateway: Gateway, clean_redis: RedisProcess
) -> None:
    """A kick carries no event ID, and OpenIM never retries: the same kick again is a second kick."""
    command = "callbackAfterKickGroupCommand"
    kick = {"callbackCommand": command, "groupID": "g3", "kickedUserIDs": ["u3"], "reason": ""}
    for operation_id in ("op-kick-1", "op-kick-2", "op-kick-2"):  # the last: the same request delivered twice
        assert (await hook(gateway, command, kick, headers={"Operationid": operation_id}))[0] == 200
    await drain(gateway)
    entries = await gateway.app[STORE].read_range_reverse("gw:audit", count=10)
    assert [e.fields["target"] for e in entries if e.fields["operation"] == b"openim.group.kicked"] == [b"g3:u3"] * 2
    assert (
        sample(
            gateway.app[METRICS], "messenger_gw_webhook_events_total", command=command, content_type="", session_type=""
        )
        == 2
    )


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
        self.appending: Callable[[Any], Awaitable[None]] | None = None  # runs as each append starts

    async def append(self, stream: str, fields: Any, *, max_len: int | None = None) -> str:
        if self.appending is not None:
            await self.appending(fields)
        if self.down:
            raise StoreError("ConnectionError: down")
        return await super().append(stream, fields, max_len=max_len)


def receiver_over(store: Store, spool: Path) -> WebhookReceiver:
    settings = Settings.from_env({"MESSENGER_GW_WEBHOOK_SECRETS": SECRET}, dev=True).webhooks
    return WebhookReceiver(settings, store, Bans(store, Invalidation(store)), metrics=Metrics(), spool=Spool(spool))


def record(n: int) -> dict[str, Any]:
    return {
        "command": "callbackAfterUserOnlineCommand",
        "key": f"k{n}",
        "body": "{}",
        "operationID": "",
        "receivedAt": n,
    }


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
    receiver = receiver_over(store, tmp_path)
    store.down = True
    assert [await receiver.keep(record(n)) for n in range(3)] == ["spooled"] * 3
    assert receiver.spool.pending() == 3
    store.down = False
    assert await receiver.spool.replay(receiver.append) == 3
    assert [e.fields["key"] for e in await store.read_range(STREAM, count=10)] == [b"k0", b"k1", b"k2"]
    assert receiver.spool.pending() == 0


async def test_an_event_spooled_while_a_replay_runs_is_replayed_next(tmp_path: Path) -> None:
    store = FlakyStore()
    receiver = receiver_over(store, tmp_path)
    store.down = True
    assert await receiver.keep(record(0)) == "spooled"
    store.down = False

    async def store_blinks_during_the_replay(fields: Any) -> None:
        if fields["key"] == b"k0":  # the replay is delivering k0 when k1 arrives and fails to store
            store.appending, store.down = None, True
            assert await receiver.keep(record(1)) == "spooled"
            store.down = False

    store.appending = store_blinks_during_the_replay
    async with replaying(receiver):
        async with asyncio.timeout(3 * REPLAY_INTERVAL):
            while len(await store.read_range(STREAM, count=10)) < 2:  # noqa: ASYNC110 - the replay loop, watched from outside
                await asyncio.sleep(0.02)
    assert [e.fields["key"] for e in await store.read_range(STREAM, count=10)] == [b"k0", b"k1"]
    assert receiver.spool.pending() == 0


async def test_spooling_while_the_store_is_down_leaves_the_event_loop_free(
    start_gateway: StartGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow disk delays the spooled event's answer, never every other request of the worker."""
    spool = tmp_path / "spool"
    gateway = await start_gateway(
        WEBHOOK_SECRETS=SECRET, WEBHOOK_SPOOL_DIR=str(spool), REDIS_URL="redis://127.0.0.1:1/0"
    )
    fsync, synced = os.fsync, asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow_fsync(fd: int) -> None:
        time.sleep(0.5)
        fsync(fd)
        loop.call_soon_threadsafe(synced.set)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    stalls: list[float] = []

    async def watch_the_loop() -> None:
        while True:
            started = loop.time()
            await asyncio.sleep(0.01)
            stalls.append(loop.time() - started - 0.01)

    command = "callbackAfterSendSingleMsgCommand"
    watcher = asyncio.create_task(watch_the_loop())
    try:
        answer = await hook(gateway, command, message(command))
    finally:
        watcher.cancel()
    assert answer == (200, ALLOW)
    assert synced.is_set(), "answered only once the event was fsync'd"
    assert Spool(spool).pending() == 1
    assert max(stalls) < 0.25, f"the event loop stalled {max(stalls):.2f} s"


# -- end to end: the sandbox fires OpenIM's callbacks at the gateway ---------------------------------------


async def test_end_to_end_a_banned_word_is_refused_and_a_clean_message_recorded(
    gateway: Gateway, sandbox: Any, clean_redis: RedisProcess
) -> None:
    from tests.conftest import GOOD_CODE

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
