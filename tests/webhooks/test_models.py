"""The callback models read every field they declare from OpenIM's body, and refuse a wrong type."""

from __future__ import annotations

import dataclasses

import pytest

from messenger_gw.webhooks.models import (
    GroupKickEvent,
    InvalidEvent,
    MessageEvent,
    RevokeEvent,
    UnknownEvent,
    UserStatusEvent,
    parse_event,
)


def test_a_message_event_reads_each_field() -> None:
    body = {
        "sendID": "u1",
        "recvID": "u2",
        "groupID": "",
        "serverMsgID": "srv",
        "clientMsgID": "cli",
        "senderPlatformID": 5,
        "sessionType": 1,
        "contentType": 101,
        "content": '{"content":"hi"}',
        "sendTime": 1700000000000,
    }
    kind, event = parse_event("callbackAfterSendSingleMsgCommand", body)
    assert kind == "after"
    assert event == MessageEvent(
        "callbackAfterSendSingleMsgCommand",
        body,
        "u1",
        "u2",
        "",
        "srv",
        "cli",
        5,
        1,
        101,
        '{"content":"hi"}',
        1700000000000,
    )
    assert isinstance(event, MessageEvent)
    assert (event.text, event.key) == ("hi", "callbackAfterSendSingleMsgCommand:serverMsgID=srv")
    assert event.actors == (), "after-callbacks decide nothing"
    _, before = parse_event("callbackBeforeSendSingleMsgCommand", body)
    assert before.actors == ("u1",)


@pytest.mark.parametrize(
    ("command", "body", "expected"),
    [
        (
            "callbackBeforeAfterMsgCommand",
            {"conversationID": "si_u1_u2", "seq": 7, "userID": "u1"},
            RevokeEvent("callbackBeforeAfterMsgCommand", {}, "si_u1_u2", 7, "u1"),
        ),
        (
            "callbackAfterKickGroupCommand",
            {"groupID": "g1", "kickedUserIDs": ["u2", "u3"], "reason": "spam"},
            GroupKickEvent("callbackAfterKickGroupCommand", {}, "g1", ("u2", "u3"), "spam"),
        ),
        (
            "callbackAfterUserOnlineCommand",
            {"userID": "u1", "platformID": 2, "seq": 99, "connID": ""},
            UserStatusEvent("callbackAfterUserOnlineCommand", {}, "u1", 2, 99),
        ),
        ("callbackSomethingNew", {"x": 1}, UnknownEvent("callbackSomethingNew", {})),
    ],
)
def test_each_declared_field_is_read_from_its_wire_name(
    command: str, body: dict[str, object], expected: object
) -> None:
    _, event = parse_event(command, body)
    assert event == type(expected)(**{**vars_of(expected), "body": body})


def vars_of(event: object) -> dict[str, object]:

    assert dataclasses.is_dataclass(event)
    return {field.name: getattr(event, field.name) for field in dataclasses.fields(event)}


def test_absent_and_null_fields_take_their_defaults() -> None:
    _, event = parse_event("callbackAfterKickGroupCommand", {"groupID": None})
    assert event == GroupKickEvent("callbackAfterKickGroupCommand", {"groupID": None}, "", (), "")


@pytest.mark.parametrize(
    ("command", "body", "message"),
    [
        ("callbackAfterSendSingleMsgCommand", {"sendID": 5}, "sendID must be a string"),
        ("callbackAfterSendSingleMsgCommand", {"sessionType": "1"}, "sessionType must be an integer"),
        ("callbackAfterKickGroupCommand", {"kickedUserIDs": "u2"}, "kickedUserIDs must be a list of strings"),
        ("callbackAfterCreateGroupCommand", {"initMemberList": [1]}, "initMemberList must be a list of objects"),
        ("callbackBeforeJoinGroupCommand", {"applyID": ["u1"]}, "applyID must be a string"),
        ("callbackBeforeAddFriendAgreeCommand", {"blackUserID": 7}, "blackUserID must be a string"),
    ],
)
def test_a_field_of_the_wrong_type_is_an_invalid_event(command: str, body: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidEvent, match=message):
        parse_event(command, body)


def test_the_owner_of_a_new_group_is_the_member_with_role_level_100_when_the_sdk_leaves_owner_empty() -> None:
    body = {
        "ownerUserID": "",
        "initMemberList": [{"userID": "u2", "roleLevel": 20}, {"userID": "u1", "roleLevel": 100}],
    }
    _, event = parse_event("callbackBeforeCreateGroupCommand", body)
    assert event.actors == ("u1",)


def test_an_event_without_an_id_is_keyed_by_its_body_and_operation_id() -> None:
    body = {"groupID": "g1", "userID": "u2"}
    keys = {parse_event("callbackAfterQuitGroupCommand", body, operation_id=op)[1].key for op in ("a", "b", "a")}
    assert len(keys) == 2
    _, with_id = parse_event("callbackAfterSendSingleMsgCommand", {"serverMsgID": "srv"}, operation_id="a")
    assert with_id.key == "callbackAfterSendSingleMsgCommand:serverMsgID=srv", "an ID in the body is the key"
