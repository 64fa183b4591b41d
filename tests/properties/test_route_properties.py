"""The /im route table, by property: for every route it lists, any JSON body is either refused before OpenIM
or reaches OpenIM with every bound field the caller's and every pinned field as the table pins it, as
OpenIM's Go decoder reads the bytes forwarded."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from hypothesis import event, given, settings
from hypothesis import strategies as st

from messenger_gw.im.route_policy import FieldPath, Route, RouteTable
from messenger_gw.sandbox import Sandbox
from messenger_gw.sdk import GatewayClient
from tests.conftest import Recorder
from tests.properties.route_bodies import (
    CALLER,
    PLATFORM,
    GoObject,
    bodies,
    go_decode,
    go_present,
    go_values,
    values_for,
)

TABLE = RouteTable.load()
ROUTES = {route.path: route for route in TABLE}
# Fewer examples per route than the profile's: every route of the table is a test of its own.
PER_ROUTE = settings(max_examples=max(10, settings().max_examples // 2))


async def answered(request: web.Request) -> web.Response:
    """OpenIM's success envelope: what the route does in OpenIM is not what these properties check."""
    return web.json_response({"errCode": 0, "errMsg": "", "errDlt": "", "data": {}})


@pytest.fixture
async def groups(alice: GatewayClient, sandbox: Sandbox) -> list[str]:
    """A group the caller is in, then one she is not in."""
    sandbox.add_user("bob", nickname="Bob")
    sandbox.add_user("carol", nickname="Carol")
    created = await alice.call("/im/group/create_group", {"memberUserIDs": ["bob"], "groupInfo": {"groupType": 2}})
    mine = created["data"]["groupInfo"]["groupID"]
    other = sandbox.new_group_id()
    sandbox.groups[other] = dict(sandbox.groups[mine], groupID=other, ownerUserID="bob")
    sandbox.members[other] = {"bob": dict(sandbox.members[mine]["bob"], groupID=other, roleLevel=100)}
    return [mine, other]


# What the rules pin beyond the table's binding (openim-route-surface.md): the routes that
# take deleteSyncOpt, where IsSyncOther true acts for every party; and set_conversations, where with
# isPrivateChat OpenIM writes conversation.userID's conversation too.
IS_SYNC_OTHER = FieldPath.parse("deleteSyncOpt.IsSyncOther")
DELETING = frozenset({"/msg/delete_msgs", "/msg/clear_conversation_msg", "/msg/user_clear_all_msg"})
PEER, PEER_CONVERSATION = FieldPath.parse("conversation.userID"), FieldPath.parse("conversation.conversationID")


def named_fields(route: Route, group_ids: list[str]) -> list[tuple[FieldPath, st.SearchStrategy[Any]]]:
    extra: list[tuple[FieldPath, st.SearchStrategy[Any]]] = []
    if route.path in DELETING:
        sync = st.sampled_from([True, True, False, None, 1, "true"])
        extra += [(IS_SYNC_OTHER, sync), (FieldPath.parse("deleteSyncOpt.IsSyncSelf"), sync)]
    if route.path == "/conversation/set_conversations":
        extra += [(PEER, st.sampled_from(["bob", "bob", "carol", ""]) | values_for("bind", group_ids))]
        extra += [(FieldPath.parse("isPrivateChat"), st.booleans())]
    return [
        *extra,
        *((f, values_for("bind", group_ids)) for f in route.bind),
        *((f, values_for("bind", group_ids)) for f in route.bind_any),
        *((f, values_for("object_names", group_ids)) for f in route.object_names),
        *((f, values_for("form_data_ids", group_ids)) for f in route.form_data_ids),
        *((f, values_for("bind_each", group_ids)) for f in route.bind_each),
        *((f, values_for("bind_platform", group_ids)) for f in route.bind_platform),
        *((f, values_for("allow", group_ids, tuple(allowed))) for f, allowed in route.allow),
        *((f, values_for("drop", group_ids)) for f in route.drop),
        *((f, values_for("conversations", group_ids)) for f in route.conversations),
        *((f, values_for("groups", group_ids)) for f in route.groups),
    ]


async def post(client: GatewayClient, http: aiohttp.ClientSession, path: str, raw: bytes) -> tuple[int, Any]:
    headers = client.signed_headers("POST", path, raw) | {"Content-Type": "application/json"}
    async with http.post(client.base_url + path, data=raw, headers=headers) as response:
        return response.status, orjson.loads(await response.read())


@pytest.mark.parametrize("path", sorted(ROUTES))
@PER_ROUTE
@given(data=st.data())
async def test_a_body_is_refused_or_reaches_openim_as_the_table_binds_it(
    alice: GatewayClient,
    http: aiohttp.ClientSession,
    recorder: Recorder,
    sandbox: Sandbox,
    groups: list[str],
    path: str,
    data: st.DataObject,
) -> None:
    route = ROUTES[path]
    upstream = "/user/get_users_info" if route.answer == "self_user_info" else route.path
    if upstream != "/user/get_users_info":
        recorder.overrides[upstream] = answered
    raw = data.draw(bodies(named_fields(route, groups)), label="body")
    member_of = {g for g in groups if CALLER in sandbox.members.get(g, {})}
    before = len(recorder.to(upstream))
    status, reply = await post(alice, http, "/im" + route.path, raw)
    assert status < 500, reply
    forwarded = recorder.to(upstream)[before:]
    event("forwarded" if forwarded else f"refused with {status}")
    if not forwarded:
        assert 400 <= status < 500, (status, reply)
        assert set(reply) == {"errCode", "errMsg", "errDlt"}
    for seen in forwarded:
        if route.answer == "self_user_info":
            assert seen.json() == {"userIDs": [CALLER]}
        elif route.opaque:
            assert seen.body == raw, "an opaque body reaches OpenIM as it came"
        else:
            bound_as_the_table_says(route, go_decode(seen.body), member_of, set(sandbox.users))


def bound_as_the_table_says(route: Route, body: GoObject, member_of: set[str], users: set[str]) -> None:
    for field in route.bind:
        values = list(go_values(body, field))
        assert all(v == CALLER for v in values), (field.text, values)
        if field.text in route.fill:
            assert_filled(body, field)
    if route.bind_any:
        named = [v for field in route.bind_any for v in go_values(body, field)]
        assert CALLER in named, ([f.text for f in route.bind_any], named)
    for field in route.object_names:
        values = list(go_values(body, field))
        assert values, f"{field.text} is required"
        assert all(isinstance(v, str) and v.startswith(CALLER + "/") for v in values), (field.text, values)
    for field in route.form_data_ids:
        values = list(go_values(body, field))
        assert values, f"{field.text} is required"
        for value in values:
            assert isinstance(value, str), (field.text, value)
            name, key = form_data_id_as_go_reads_it(value)
            assert name.startswith(CALLER + "/"), (field.text, name)
            # Where OpenIM puts the caller's own form-data upload: openim/direct/<date>/<caller>/<file>.
            assert key.split("/")[:2] == ["openim", "direct"], (field.text, key)
            assert key.split("/")[3:-1] == [CALLER], (field.text, key)
            assert key.split("/")[2].isdigit(), (field.text, key)
    for field in route.bind_each:
        for value in go_values(body, field):
            assert isinstance(value, list), (field.text, value)
            assert all(v == CALLER for v in value), (field.text, value)
        assert_filled(body, field)
    for field in route.bind_platform:
        for value in go_values(body, field):
            assert value == PLATFORM, (field.text, value)
            assert not isinstance(value, bool), field.text
        assert_filled(body, field)
    for field, allowed in route.allow:
        values = list(go_values(body, field))
        assert values, f"{field.text} is required"
        assert all(any(type(v) is type(a) and v == a for a in allowed) for v in values), (field.text, values)
    for field in route.drop:
        assert not go_present(body, field), field.text
    for field in route.conversations:
        for value in go_values(body, field):
            if isinstance(value, str):  # any other type: OpenIM's decoder refuses the request
                assert may_read(value, member_of, users), (field.text, value)
    for field in route.groups:
        for value in go_values(body, field):
            if isinstance(value, str):
                assert value in member_of, (field.text, value)
    if route.path in DELETING:
        # Typed: 1 is not true to Go (a number does not decode into a bool), though 1 == True in Python.
        assert not any(v is True for v in go_values(body, IS_SYNC_OTHER)), "IsSyncOther acts for every party"
    if route.path == "/conversation/set_conversations":
        conversations = [v for v in go_values(body, PEER_CONVERSATION) if isinstance(v, str)]
        for value in go_values(body, PEER):
            if value != "":  # "" is no user to Go
                assert conversations, "conversation.userID without the conversation it belongs to"
                assert value in peers(conversations[0]), (value, conversations[0])


def form_data_id_as_go_reads_it(value: str) -> tuple[str, str]:
    """OpenIM's CompleteFormData: ``base64.RawStdEncoding`` (CR and LF skipped), then JSON into a struct."""
    raw = value.replace("\r", "").replace("\n", "")
    assert "=" not in raw, "RawStdEncoding refuses padding"
    mate = go_decode(base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True))
    name, key = mate.lookup("name"), mate.lookup("key")
    assert isinstance(name, str), name
    assert isinstance(key, str), key
    return name, key


def assert_filled(body: GoObject, field: FieldPath) -> None:
    """A field the gateway fills is there wherever its parent object is (a missing parent: nothing to fill)."""
    if field.has_lists:
        return
    parents = [body]
    for name, _ in field.segments[:-1]:
        parents = [child for parent in parents if isinstance(child := parent.lookup(name), GoObject)]
    last = field.segments[-1][0]
    for parent in parents:
        assert parent.lookup(last) is not None, f"{field.text} was not filled"


def _pairs(rest: str) -> list[tuple[str, str]]:
    """Every reading of a single chat's ``<low>_<high>`` (user IDs may hold ``_`` too)."""
    cuts = [(rest[:i], rest[i + 1 :]) for i, c in enumerate(rest) if c == "_" and rest[:i] and rest[i + 1 :]]
    return [(low, high) for low, high in cuts if low <= high]


def peers(conversation_id: str) -> set[str]:
    prefix, _, rest = conversation_id.partition("_")
    if prefix == "n":
        return peers(rest)
    if prefix not in ("si", "sn"):
        return set()
    return {high if low == CALLER else low for low, high in _pairs(rest) if CALLER in (low, high)}


def may_read(conversation_id: str, member_of: set[str], users: set[str]) -> bool:
    """The contract's rule (openim-route-surface.md), read here independently of openim/conversation_access.py."""
    prefix, _, rest = conversation_id.partition("_")
    if prefix == "n":
        return may_read(rest, member_of, users)
    if prefix == "sg":
        return rest in member_of
    if prefix not in ("si", "sn"):
        return False
    pairs = _pairs(rest)
    if not any(CALLER in pair for pair in pairs):
        return False
    return not any(low in users and high in users for low, high in pairs if CALLER not in (low, high))
