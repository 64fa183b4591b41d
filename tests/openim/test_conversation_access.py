"""Group membership the gateway remembers is forgotten on every replica the moment it may change."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from messenger_gw.openim.conversation_access import Memberships
from messenger_gw.sandbox import FakeClock, Sandbox
from messenger_gw.sdk import GatewayClient
from tests.conftest import GOOD_CODE, Gateway, StartGateway, Wire

SECRET = "hook-secret-0123456789"
MEMBER = 20
PAGE = {"pageNumber": 1, "showNumber": 10}


# -- the remembered answers ---------------------------------------------------------------------------


def memberships(clock: FakeClock, *, max_size: int = 100) -> Memberships:
    return Memberships(ttl=10, max_size=max_size, clock=clock)


def test_a_drop_overrules_a_lookup_that_was_under_way(fake_clock: FakeClock) -> None:
    members = memberships(fake_clock)
    before = members.ticket()  # asked of OpenIM before the change ...
    members.drop("g")  # ... the change ...
    members.put("g", "carol", True, asked=before)  # ... answered after it
    assert members.get("g", "carol") is None
    after = members.ticket()
    members.put("g", "carol", False, asked=after)
    assert members.get("g", "carol") is False
    members.put("other", "carol", True, asked=before)
    assert members.get("other", "carol") is True, "a drop is one group's"


def test_a_clear_overrules_everything_asked_before_it(fake_clock: FakeClock) -> None:
    members = memberships(fake_clock)
    before = members.ticket()
    members.put("g", "carol", True, asked=before)
    members.clear()
    assert members.get("g", "carol") is None
    members.put("h", "carol", True, asked=before)
    assert members.get("h", "carol") is None


def test_an_answer_lives_from_when_it_was_asked(fake_clock: FakeClock) -> None:
    members = memberships(fake_clock)
    asked = members.ticket()
    fake_clock.advance(6)
    members.put("g", "carol", True, asked=asked)
    fake_clock.advance(3)
    assert members.get("g", "carol") is True
    fake_clock.advance(2)
    assert members.get("g", "carol") is None
    late = members.ticket()
    fake_clock.advance(11)
    members.put("g", "carol", True, asked=late)
    assert members.get("g", "carol") is None, "asked longer ago than an answer may live"


def test_a_full_table_of_drops_clears_rather_than_forgets_a_drop(fake_clock: FakeClock) -> None:
    members = memberships(fake_clock, max_size=3)
    asked = members.ticket()
    members.drop("g")
    for other in ("h", "i", "j"):  # evicting g's drop would let an answer it overruled back in
        members.drop(other)
    members.put("g", "carol", True, asked=asked)
    assert members.get("g", "carol") is None


# -- through the gateway, on two replicas sharing one redis-server ----------------------------------


@contextlib.asynccontextmanager
async def logged_in(gateway: Gateway, user_id: str) -> AsyncIterator[GatewayClient]:
    async with gateway.client() as client:
        await client.handshake(platform_id=5)
        await client.login({"userID": user_id, "code": GOOD_CODE})
        yield client


async def reads(client: GatewayClient, group_id: str) -> tuple[int, int]:
    """The statuses of pulling the group's messages and of listing its members."""
    seq_range = {"conversationID": f"sg_{group_id}", "begin": 1, "end": 10, "num": 10}
    pulled = await client.request("POST", "/im/msg/pull_msg_by_seq", {"seqRanges": [seq_range]})
    listed = await client.request("POST", "/im/group/get_group_member_list", {"groupID": group_id, "pagination": PAGE})
    return pulled.status, listed.status


async def soon(client: GatewayClient, group_id: str, expected: tuple[int, int]) -> None:
    """``reads`` answers ``expected`` within a second: far below the 10 s an answer is remembered."""
    async with asyncio.timeout(1):
        while True:
            if await reads(client, group_id) == expected:
                return
            await asyncio.sleep(0.01)


@pytest.fixture
async def replicas(start_gateway: StartGateway) -> tuple[Gateway, Gateway]:
    settings = {"PHASE": "4", "WEBHOOK_SECRETS": SECRET}
    return await start_gateway(**settings), await start_gateway(**settings)


async def new_group(owner: GatewayClient, *members: str) -> str:
    created = await owner.call(
        "/im/group/create_group", {"memberUserIDs": list(members), "groupInfo": {"groupType": 2}}
    )
    group_id: str = created["data"]["groupInfo"]["groupID"]
    return group_id


@pytest.mark.parametrize(
    ("writer", "path", "body"),
    [
        ("carol", "/im/group/quit_group", {}),
        ("alice", "/im/group/kick_group", {"kickedUserIDs": ["carol"]}),
        ("alice", "/im/group/dismiss_group", {"deleteMember": True}),
    ],
)
async def test_a_member_removed_through_one_replica_loses_the_group_on_both(
    replicas: tuple[Gateway, Gateway], sandbox: Sandbox, writer: str, path: str, body: dict[str, Any]
) -> None:
    replica_a, replica_b = replicas
    sandbox.add_user("carol", nickname="Carol")
    async with (
        logged_in(replica_a, "alice") as alice,
        logged_in(replica_a, "carol") as carol_on_a,
        logged_in(replica_b, "carol") as carol_on_b,
    ):
        group_id = await new_group(alice, "carol")
        assert await reads(carol_on_a, group_id) == (200, 200)  # remembered on A ...
        assert await reads(carol_on_b, group_id) == (200, 200)  # ... and on B
        client = carol_on_a if writer == "carol" else alice
        assert (await client.call(path, body | {"groupID": group_id}))["errCode"] == 0
        assert await reads(carol_on_a, group_id) == (403, 403), "at once on the replica that wrote"
        await soon(carol_on_b, group_id, (403, 403))


async def test_a_user_invited_through_one_replica_gains_the_group_on_both(
    replicas: tuple[Gateway, Gateway], sandbox: Sandbox
) -> None:
    replica_a, replica_b = replicas
    sandbox.add_user("dave", nickname="Dave")
    async with logged_in(replica_a, "alice") as alice, logged_in(replica_b, "dave") as dave:
        group_id = await new_group(alice)
        assert await reads(dave, group_id) == (403, 403)  # "not a member", remembered on B
        await alice.call("/im/group/invite_user_to_group", {"groupID": group_id, "invitedUserIDs": ["dave"]})
        await soon(dave, group_id, (200, 200))


# -- OpenIM's own changes, told by its after-callbacks -----------------------------------------------------


@pytest.mark.parametrize("change", ["kick", "quit", "dismiss"])
async def test_openims_after_callback_for_a_removal_reaches_every_replica(
    replicas: tuple[Gateway, Gateway], sandbox: Sandbox, wire: Wire, change: str
) -> None:
    replica_a, replica_b = replicas
    sandbox.add_user("carol", nickname="Carol")
    async with logged_in(replica_a, "alice") as alice, logged_in(replica_b, "carol") as carol:
        group_id = await new_group(alice, "carol")
        assert await reads(carol, group_id) == (200, 200)  # remembered on B
        # An operator changes the group in OpenIM itself; OpenIM tells replica A.
        sandbox.webhook_url = f"{replica_a.url}/webhooks/openim/{SECRET}"
        admin = await wire.admin_token()
        if change == "kick":
            await wire.ok("/group/kick_group", {"groupID": group_id, "kickedUserIDs": ["carol"]}, token=admin)
        elif change == "quit":
            await wire.ok("/group/quit_group", {"groupID": group_id, "userID": "carol"}, token=admin)
        else:
            await wire.ok("/group/dismiss_group", {"groupID": group_id, "deleteMember": True}, token=admin)
        await soon(carol, group_id, (403, 403))


async def test_openims_after_callback_for_a_join_reaches_every_replica(
    replicas: tuple[Gateway, Gateway], sandbox: Sandbox, wire: Wire
) -> None:
    replica_a, replica_b = replicas
    sandbox.add_user("dave", nickname="Dave")
    async with logged_in(replica_a, "alice") as alice, logged_in(replica_b, "dave") as dave:
        group_id = await new_group(alice)
        assert await reads(dave, group_id) == (403, 403)  # "not a member", remembered on B
        # dave's join request was approved in OpenIM (no sandbox route): the member, then the callback.
        sandbox.members[group_id]["dave"] = dict(sandbox.members[group_id]["alice"], userID="dave", roleLevel=MEMBER)
        joined = {"operationID": "op-join", "groupID": group_id, "reqMessage": "", "joinSource": 3,
                  "inviterUserID": "dave"}  # fmt: skip
        async with wire.session.post(
            f"{replica_a.url}/webhooks/openim/{SECRET}/callbackAfterJoinGroupCommand",
            data=orjson.dumps({"callbackCommand": "callbackAfterJoinGroupCommand"} | joined) + b"\n",
            headers={"Content-Type": "application/json; charset=utf-8", "Operationid": "op-join"},
        ) as response:
            assert response.status == 200
        await soon(dave, group_id, (200, 200))
