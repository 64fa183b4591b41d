"""Groups and friends in the sandbox: the official OpenIM SDK (@openim/client-sdk 0.0.14, in Node)
driving them, asserted on what the SDK reports (its events and return values), and the v3.8.3
rules those flows rest on, frame by frame and route by route."""

from __future__ import annotations

import pytest

from .sandbox_fixtures import IM, im, ws_url  # noqa: F401 - fixtures
from .sdk import run_scenario


@pytest.fixture
async def trio(im: IM) -> IM:  # noqa: F811 - the imported fixture
    await im.register("alice", "bob", "carol")
    return im


# -- the SDK ----------------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_group_made_in_the_sdk_carries_messages_lists_its_members_and_drops_who_quits(trio: IM) -> None:
    result = await run_scenario("groups.mjs", {u: await trio.login(u) for u in ("alice", "bob", "carol")})
    assert result["failures"] == []
    assert result["created"] == {"ok": True, "groupName": "trio", "ownerUserID": "alice", "memberCount": 3}
    assert result["joined"] == [{"groupName": "trio", "ownerUserID": "alice"}] * 3, "OnJoinedGroupAdded for all"
    assert len(result["bobGroups"]) == 1
    assert result["sent"] == {"ok": True, "sessionType": 3}
    assert result["members"] == [
        {"userID": "alice", "roleLevel": 100, "nickname": "Alice"},
        {"userID": "bob", "roleLevel": 20, "nickname": "Bob"},
        {"userID": "carol", "roleLevel": 20, "nickname": "Carol"},
    ]
    assert result["quit"] == {"ok": True, "errCode": 0}
    assert [m["userID"] for m in result["membersAfterQuit"]] == ["alice", "bob"]
    assert result["carolGroups"] == []
    assert result["sentLater"]["ok"]
    assert result["received"] == {
        "alice": [],  # her own messages' echoes stay silent
        "bob": ["hello trio", "without carol"],
        "carol": ["hello trio"],
    }
    assert result["groupEvents"] == {
        "alice": ["OnJoinedGroupAdded", "OnGroupInfoChanged", "OnGroupMemberDeleted:carol"],
        "bob": ["OnJoinedGroupAdded", "OnGroupInfoChanged", "OnGroupMemberDeleted:carol"],
        "carol": ["OnJoinedGroupAdded", "OnGroupInfoChanged", "OnJoinedGroupDeleted"],
    }
    assert result["unhandled"] == []


@pytest.mark.slow
async def test_a_friend_request_accepted_in_the_sdk_shows_in_both_friend_lists(trio: IM) -> None:
    result = await run_scenario("friends.mjs", {u: await trio.login(u) for u in ("alice", "bob")})
    assert result["failures"] == []
    assert result["before"] == [{"result": 0, "userID": "bob"}]
    assert result["added"] == {"ok": True, "errCode": 0}
    pending = {"fromUserID": "alice", "toUserID": "bob", "reqMsg": "hi bob, alice here", "handleResult": 0}
    assert result["application"] == pending, "bob's OnFriendApplicationAdded"
    assert result["aliceApplication"] == pending
    assert result["inbox"] == [pending]
    assert result["outbox"] == [pending]
    assert result["accepted"] == {"ok": True, "errCode": 0}
    assert result["aliceAccepted"] == pending | {"handleResult": 1}
    assert result["bobAdded"] == {"userID": "alice", "nickname": "Alice", "ownerUserID": "bob"}
    assert result["aliceFriends"] == [{"userID": "bob", "nickname": "Bob", "ownerUserID": "alice"}]
    assert result["bobFriends"] == [{"userID": "alice", "nickname": "Alice", "ownerUserID": "bob"}]
    assert result["after"] == [{"result": 1, "userID": "bob"}]
    assert result["friendEvents"] == {
        # The SDK never syncs the applicant's friends on the approval (see friends.mjs).
        "alice": ["OnFriendApplicationAdded", "OnFriendApplicationAccepted"],
        "bob": ["OnFriendApplicationAdded", "OnFriendApplicationAccepted", "OnFriendAdded"],
    }
    assert result["unhandled"] == []
