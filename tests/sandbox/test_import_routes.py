"""The sandbox's routes the import needs, as OpenIM v3.8.3 answers them: /friend/import_friend above all."""

from __future__ import annotations

from messenger_gw.sandbox import Sandbox
from tests.conftest import Wire, assert_error


async def test_import_friend_befriends_both_ways_once_and_only_for_an_admin(wire: Wire, sandbox: Sandbox) -> None:
    admin = await wire.admin_token()
    await wire.register(admin, "ann", "ben", "cat")
    body = {"ownerUserID": "ann", "friendUserIDs": ["ben", "cat"]}
    assert_error(await wire.post("/friend/import_friend", body, token=await wire.user_token(admin, "ann", 5)), 1002)
    assert await wire.ok("/friend/import_friend", body, token=admin) is None
    assert set(sandbox.friends["ann"]) == {"ben", "cat"}
    assert {o for o, fs in sandbox.friends.items() if "ann" in fs} == {"ben", "cat"}
    assert {f["addSource"] for fs in sandbox.friends.values() for f in fs.values()} == {1}, "BecomeFriendByImport"
    version = sandbox.version_log("friend", "ann").version
    await wire.ok("/friend/import_friend", body, token=admin)
    assert sandbox.version_log("friend", "ann").version == version, "a friendship already there is left as it is"


async def test_import_friend_fails_the_whole_call_on_one_bad_friend(wire: Wire, sandbox: Sandbox) -> None:
    admin = await wire.admin_token()
    await wire.register(admin, "ann", "ben")
    assert_error(await wire.post("/friend/import_friend", {"ownerUserID": "ann", "friendUserIDs": ["ben", "ghost"]},
                                 token=admin), 1004)  # fmt: skip
    assert_error(await wire.post("/friend/import_friend", {"ownerUserID": "ann", "friendUserIDs": ["ben", "ann"]},
                                 token=admin), 1301)  # fmt: skip
    assert_error(await wire.post("/friend/import_friend", {"ownerUserID": "ann", "friendUserIDs": ["ben", "ben"]},
                                 token=admin), 1001)  # fmt: skip
    many = [f"u{i}" for i in range(1001)]
    assert_error(await wire.post("/friend/import_friend", {"ownerUserID": "ann", "friendUserIDs": many}, token=admin),
                 1001)  # fmt: skip
    assert "ann" not in sandbox.friends or not sandbox.friends["ann"]


async def test_user_register_fails_a_batch_holding_one_existing_user(wire: Wire, sandbox: Sandbox) -> None:
    admin = await wire.admin_token()
    await wire.register(admin, "ann")
    users = [{"userID": "new1", "nickname": "N"}, {"userID": "ann", "nickname": "A"}]
    assert_error(await wire.post("/user/user_register", {"users": users}, token=admin), 1102)
    assert "new1" not in sandbox.users


async def test_create_group_keeps_a_given_group_id_and_refuses_it_twice(wire: Wire, sandbox: Sandbox) -> None:
    admin = await wire.admin_token()
    await wire.register(admin, "ann", "ben")
    body = {"ownerUserID": "ann", "memberUserIDs": ["ben"], "groupInfo": {"groupID": "legacy_g1", "groupType": 2}}
    data = await wire.ok("/group/create_group", body, token=admin)
    assert data["groupInfo"]["groupID"] == "legacy_g1"
    assert_error(await wire.post("/group/create_group", body, token=admin), 1202)
