"""The SDK's group writes through /im forget what every replica remembered of the group's members, as the
other group writes do: a join, an approved join request, an ownership transfer."""

from __future__ import annotations

from messenger_gw.sandbox import Sandbox
from messenger_gw.sdk import GatewayClient
from tests.conftest import Gateway, Recorder
from tests.openim.test_conversation_access import logged_in, new_group, reads, replicas, soon  # noqa: F401 - fixture

DIRECTLY, ALL_NEED_VERIFICATION = 2, 1  # a group's needVerification


async def group_open_to(owner: GatewayClient, need_verification: int) -> str:
    info = {"groupType": 2, "needVerification": need_verification}
    created = await owner.call("/im/group/create_group", {"memberUserIDs": [], "groupInfo": info})
    group_id: str = created["data"]["groupInfo"]["groupID"]
    return group_id


async def test_a_user_who_joins_through_one_replica_gains_the_group_on_both(
    replicas: tuple[Gateway, Gateway],  # noqa: F811 - the imported fixture
    sandbox: Sandbox,
) -> None:
    replica_a, replica_b = replicas
    sandbox.add_user("dave", nickname="Dave")
    async with (
        logged_in(replica_a, "alice") as alice,
        logged_in(replica_a, "dave") as dave_on_a,
        logged_in(replica_b, "dave") as dave_on_b,
    ):
        group_id = await group_open_to(alice, DIRECTLY)
        assert await reads(dave_on_a, group_id) == (403, 403)  # "not a member", remembered on A ...
        assert await reads(dave_on_b, group_id) == (403, 403)  # ... and on B
        assert (await dave_on_a.call("/im/group/join_group", {"groupID": group_id, "joinSource": 3}))["errCode"] == 0
        assert await reads(dave_on_a, group_id) == (200, 200), "at once on the replica that wrote"
        await soon(dave_on_b, group_id, (200, 200))


async def test_a_join_request_approved_through_one_replica_admits_the_user_on_both(
    replicas: tuple[Gateway, Gateway],  # noqa: F811 - the imported fixture
    sandbox: Sandbox,
) -> None:
    replica_a, replica_b = replicas
    sandbox.add_user("dave", nickname="Dave")
    async with (
        logged_in(replica_a, "alice") as alice,
        logged_in(replica_a, "dave") as dave_on_a,
        logged_in(replica_b, "dave") as dave_on_b,
    ):
        group_id = await group_open_to(alice, ALL_NEED_VERIFICATION)
        joined = await dave_on_b.call("/im/group/join_group", {"groupID": group_id, "joinSource": 3})
        assert joined["errCode"] == 0
        assert await reads(dave_on_a, group_id) == (403, 403), "a request is no membership"
        assert await reads(dave_on_b, group_id) == (403, 403)
        answer = {"groupID": group_id, "fromUserID": "dave", "handledMsg": "welcome", "handleResult": 1}
        assert (await alice.call("/im/group/group_application_response", answer))["errCode"] == 0
        assert await reads(dave_on_a, group_id) == (200, 200)
        await soon(dave_on_b, group_id, (200, 200))


async def test_a_transfer_forgets_what_was_remembered_of_the_group(
    replicas: tuple[Gateway, Gateway],  # noqa: F811 - the imported fixture
    sandbox: Sandbox,
    recorder: Recorder,
) -> None:
    replica_a, _ = replicas
    sandbox.add_user("carol", nickname="Carol")
    async with logged_in(replica_a, "alice") as alice, logged_in(replica_a, "carol") as carol:
        group_id = await new_group(alice, "carol")
        assert await reads(carol, group_id) == (200, 200)
        asked = len(recorder.to("/group/get_group_members_info"))
        assert await reads(carol, group_id) == (200, 200)
        assert len(recorder.to("/group/get_group_members_info")) == asked, "remembered"
        transfer = {"groupID": group_id, "newOwnerUserID": "carol"}
        assert (await alice.call("/im/group/transfer_group", transfer))["errCode"] == 0
        assert await reads(carol, group_id) == (200, 200)
        assert len(recorder.to("/group/get_group_members_info")) > asked, "asked of OpenIM again"
        assert sandbox.group_owner(group_id) == "carol"
