"""The route table: validation at start-up, field paths, and the single-chat ID reading."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from messenger_gw import errors
from messenger_gw.im.route_policy import (
    FieldNamesAnotherUser,
    FieldPath,
    Route,
    RouteTable,
    RouteTableError,
    ValueNotAllowed,
)
from messenger_gw.openim import single_chat_pairs, single_chat_peers


def table(text: str) -> RouteTable:
    return RouteTable.parse(text, "test.toml")


def test_the_packaged_table_loads_and_covers_the_required_routes() -> None:
    routes = {route.path: route for route in RouteTable.load()}
    phase_1 = {"/user/get_self_user_info", "/user/get_users_info", "/user/update_user_info_ex"}
    phase_3 = {"/msg/send_msg", "/msg/pull_msg_by_seq", "/msg/get_conversations_has_read_and_max_seq",
               "/msg/revoke_msg", "/msg/delete_msgs", "/msg/mark_conversation_as_read",
               "/msg/get_server_time", "/msg/clear_conversation_msg", "/msg/user_clear_all_msg"}  # fmt: skip
    phase_4 = {"/conversation/get_sorted_conversation_list", "/conversation/get_conversations",
               "/conversation/set_conversations", "/group/create_group", "/group/get_groups_info",
               "/group/get_joined_group_list", "/group/get_group_member_list", "/group/invite_user_to_group",
               "/group/kick_group", "/group/quit_group", "/group/dismiss_group"}  # fmt: skip
    for phase, paths in ((1, phase_1), (3, phase_3), (4, phase_4)):
        for path in paths:
            assert routes[path].phase == phase, path
    assert routes["/msg/send_msg"].token_mode == "admin"
    assert {r.path for r in routes.values() if r.token_mode == "admin"} == {"/msg/send_msg"}
    for never in ("/msg/search_msg", "/group/get_groups", "/auth/get_user_token", "/user/user_register"):
        assert never not in routes


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[route]]\npath = "/msg/x"\nphase = 3\nbnid = ["userID"]', "unknown key(s) ['bnid']"),
        ('[[route]]\npath = "msg/x"\nphase = 3', "path must look like"),
        ('[[route]]\npath = "/msg/x"\nphase = 5', "phase must be"),
        ('[[route]]\npath = "/msg/x"\nphase = 3\ntoken = "root"', 'token must be "user" or "admin"'),
        ('[[route]]\npath = "/msg/x"\nphase = 3\nbind = ["user ID"]', "is not a field path"),
        ('[[route]]\npath = "/msg/x"\nphase = 3\nfill = ["userID"]', "every fill field must also be a bind field"),
        ('[[route]]\npath = "/msg/x"\nphase = 3\ntoken = "admin"', 'token = "admin" needs bind, fill and allow'),
        ('[[route]]\npath = "/msg/x"\nphase = 3\nallow = { a = [] }', "allow must map"),
        ('[[route]]\npath = "/msg/x"\nphase = 3\nrefuse = { a.b = [true] }', "refuse must map"),
        ('[[route]]\npath = "/msg/x"\nphase = 3\nrefuse = { a = [{ b = 1 }] }', "refuse must map"),
        ('[[route]]\npath = "/msg/x"\nphase = 3\npeer = { a = 1 }', "peer must map"),
        ('[[route]]\npath = "/msg/x"\nphase = 3\npeer = { "a[].userID" = "b" }', "no [] in their paths"),
        ('[[route]]\npath = "/msg/x"\nphase = 3\nchanges_members = "groupID"', "changes_members must be a list"),
        ('[[route]]\npath = "/msg/x"\nphase = 3\nanswer = "magic"', "answer must be one of"),
        ('[[route]]\npath = "/msg/x"\nphase = 3\n[[route]]\npath = "/msg/x"\nphase = 4', "listed twice"),
        ("[routes]\nx = 1", "unknown top-level key"),
        ("[[route]\n", "not valid TOML"),
        ("", "no routes"),
    ],
)
def test_mistakes_in_the_table_are_named(text: str, message: str) -> None:
    with pytest.raises(RouteTableError, match=r"^test\.toml") as error:
        table(text)
    assert message in str(error.value)


def test_a_route_is_live_from_its_phase_on() -> None:
    routes = table('[[route]]\npath = "/msg/x"\nphase = 3')
    assert routes.live("/msg/x", 2) is None
    assert routes.live("/msg/x", 3) is not None
    assert routes.live("/msg/y", 4) is None


def test_field_paths_walk_nested_objects_and_lists() -> None:
    body: dict[str, Any] = {"seqRanges": [{"conversationID": "a"}, {"conversationID": "b"}, {}], "x": {"y": 1}}
    assert FieldPath.parse("seqRanges[].conversationID").values(body) == ["a", "b"]
    assert FieldPath.parse("conversationIDs[]").values({"conversationIDs": ["c", "d"]}) == ["c", "d"]
    assert FieldPath.parse("x.y").values(body) == [1]
    assert FieldPath.parse("missing.y").values(body) == []
    with pytest.raises(errors.InvalidField):
        FieldPath.parse("x[].y").values(body)


def test_binding_fills_enforces_and_matches_keys_case_insensitively() -> None:
    route = table('[[route]]\npath = "/m/x"\nphase = 1\nbind = ["a.userID"]\nfill = ["a.userID"]').live("/m/x", 1)
    assert route is not None
    body: dict[str, Any] = {"a": {}}
    route.apply(body, "me", 1)
    assert body == {"a": {"userID": "me"}}
    spelled = {"a": {"USERID": "me"}}
    route.apply(spelled, "me", 1)
    assert spelled == {"a": {"USERID": "me"}}, "present in another case: not filled a second time"
    with pytest.raises(FieldNamesAnotherUser):
        route.apply({"a": {"userid": "you"}}, "me", 1)
    with pytest.raises(errors.InvalidField, match="differ only in case"):
        route.apply({"a": {"userID": "me", "UserID": "you"}}, "me", 1)
    with pytest.raises(errors.InvalidField):
        route.apply({"a": {"userID": 7}}, "me", 1)


def packaged(path: str) -> Route:
    route = RouteTable.load().live(path, 4)
    assert route is not None, path
    return route


DELETING_ROUTES = ("/msg/delete_msgs", "/msg/clear_conversation_msg", "/msg/user_clear_all_msg")


@pytest.mark.parametrize("path", DELETING_ROUTES)
@pytest.mark.parametrize(
    "options",
    [
        {"deleteSyncOpt": {"IsSyncOther": True}},
        {"deleteSyncOpt": {"isSyncOther": True, "IsSyncSelf": True}},
        {"deleteSyncOpt": {"ISSYNCOTHER": True}},
        {"DeleteSyncOpt": {"issyncother": True}},
        {"DELETESYNCOPT": {"I\u017fSyncOther": True}},  # the long s: Go folds it to s, as casefold does
    ],
)
def test_every_deleting_route_refuses_erasing_for_everyone_in_any_spelling(path: str, options: dict[str, Any]) -> None:
    with pytest.raises(ValueNotAllowed, match="IsSyncOther True is not allowed"):
        packaged(path).apply({"conversationIDs": ["si_me_you"], "conversationID": "si_me_you"} | options, "me", 1)


@pytest.mark.parametrize("path", DELETING_ROUTES)
def test_deleting_only_for_oneself_passes(path: str) -> None:
    route = packaged(path)
    for options in ({}, {"deleteSyncOpt": None}, {"deleteSyncOpt": {"IsSyncSelf": True, "IsSyncOther": False}}):
        body: dict[str, Any] = dict(options)
        route.apply(body, "me", 1)
        assert body["userID"] == "me"
    with pytest.raises(errors.InvalidField, match="differ only in case"):
        route.apply({"deleteSyncOpt": {"IsSyncOther": False, "isSyncOther": True}}, "me", 1)
    with pytest.raises(errors.InvalidField, match="must hold objects"):
        route.apply({"deleteSyncOpt": "everyone"}, "me", 1)


def test_refused_and_allowed_values_compare_as_typed_json() -> None:
    text = '[[route]]\npath = "/m/x"\nphase = 1\nrefuse = { a = [true] }\nallow = { b = [1] }'
    route = table(text).live("/m/x", 1)
    assert route is not None
    route.apply({"a": 1, "b": 1}, "me", 1)  # 1 is not true: Go's decoder refuses a number for a bool itself
    with pytest.raises(ValueNotAllowed):
        route.apply({"a": True, "b": 1}, "me", 1)
    with pytest.raises(ValueNotAllowed):
        route.apply({"b": True}, "me", 1)


@pytest.mark.parametrize(
    ("conversation", "outcome"),
    [
        ({"conversationID": "si_bob_me"}, None),
        ({"conversationID": "si_bob_me", "userID": ""}, None),  # "" is absent to Go
        ({"conversationID": "si_bob_me", "userID": "bob"}, None),
        ({"conversationID": "sn_bob_me", "UserID": "bob"}, None),
        ({"conversationID": "sg_team", "userID": ""}, None),
        ({"conversationID": "si_bob_me", "userID": "carol", "isPrivateChat": True}, ValueNotAllowed),
        ({"conversationID": "si_bob_me", "USERID": "carol"}, ValueNotAllowed),
        ({"conversationID": "si_bob_me", "userID": "me"}, ValueNotAllowed),
        ({"conversationID": "sg_team", "userID": "bob"}, ValueNotAllowed),
        ({"userID": "bob"}, ValueNotAllowed),
        ({"conversationID": "si_bob_me", "userID": 7}, errors.InvalidField),
        ({"conversationID": "si_bob_me", "userID": "bob", "UserId": "carol"}, errors.InvalidField),
    ],
)
def test_set_conversations_names_no_user_but_the_peer(
    conversation: dict[str, Any], outcome: type[Exception] | None
) -> None:
    route = packaged("/conversation/set_conversations")
    body = {"userIDs": ["me"], "conversation": conversation}
    if outcome is None:
        route.apply(body, "me", 1)
    else:
        with pytest.raises(outcome):
            route.apply(body, "me", 1)


@pytest.mark.parametrize(
    ("user", "conversation_id", "peers"),
    [
        ("me", "si_bob_me", {"bob"}),
        ("me", "sn_me_zed", {"zed"}),
        ("me", "n_si_bob_me", {"bob"}),
        ("me", "si_me_me", {"me"}),
        ("a", "si_a_b_c", {"b_c"}),
        ("me", "si_bob_carol", set()),
        ("me", "sg_me", set()),
        ("me", "", set()),
    ],
)
def test_the_peer_of_a_single_chat(user: str, conversation_id: str, peers: set[str]) -> None:
    assert single_chat_peers(user, conversation_id) == peers


@pytest.mark.parametrize(
    ("rest", "pairs"),
    [
        ("alice_bob", [("alice", "bob")]),
        ("a_b_c", [("a", "b_c"), ("a_b", "c")]),
        ("bob_alice", []),  # not sorted: OpenIM never builds it
        ("alice", []),
        ("_x", []),
    ],
)
def test_single_chat_ids_read_as_sorted_pairs(rest: str, pairs: list[tuple[str, str]]) -> None:
    assert single_chat_pairs(rest) == pairs


def test_a_broken_route_table_stops_start_up_with_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "routes.toml"
    broken.write_text('[[route]]\npath = "/msg/x"\nphase = 3\nbnid = ["userID"]\n')
    env = {"MESSENGER_GW_ROUTE_TABLE": str(broken), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "messenger_gw", "check-config", "--dev"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("messenger-gw: route table error: ")
    assert "unknown key(s) ['bnid']" in line


# -- the SDK surface's rules: a pair naming the caller, object names, form-data upload IDs, opaque bodies -------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[route]]\npath = "/m/x"\nphase = 3\nbind_any = ["a"]', "bind_any names two fields or more"),
        ('[[route]]\npath = "/m/x"\nphase = 3\nbind_any = ["a[]", "b"]', "none with [] in its path"),
        ('[[route]]\npath = "/m/x"\nphase = 3\nopaque = 1', "opaque must be true or false"),
        ('[[route]]\npath = "/m/x"\nphase = 3\nopaque = true\nbind = ["userID"]', "no rule may read it"),
        ('[[route]]\npath = "/m/x"\nphase = 3\nopaque = true\nanswer = "self_user_info"', "and no answer"),
        ('[[route]]\npath = "/m/x"\nphase = 3\nobject_names = "name"', "object_names must be a list"),
    ],
)
def test_mistakes_in_the_sdk_rules_are_named(text: str, message: str) -> None:
    with pytest.raises(RouteTableError, match=r"^test\.toml") as error:
        table(text)
    assert message in str(error.value)


def test_openims_capitalised_route_names_are_paths() -> None:
    assert table('[[route]]\npath = "/group/get_recv_group_applicationList"\nphase = 4').live(
        "/group/get_recv_group_applicationList", 4
    )


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        ({"fromUserID": "me", "toUserID": "bob"}, None),
        ({"fromUserID": "bob", "toUserID": "me"}, None),
        ({"FROMUSERID": "bob", "touserid": "me"}, None),
        ({"fromUserID": "bob", "toUserID": "carol"}, FieldNamesAnotherUser),
        ({"fromUserID": "bob"}, FieldNamesAnotherUser),
        ({}, FieldNamesAnotherUser),
        ({"fromUserID": "me", "FromUserID": "bob", "toUserID": "x"}, errors.InvalidField),
        ({"fromUserID": ["me"], "toUserID": "bob"}, errors.InvalidField),
    ],
)
def test_a_pair_must_include_the_caller(body: dict[str, Any], outcome: type[Exception] | None) -> None:
    route = packaged("/friend/get_designated_friend_apply")
    if outcome is None:
        route.apply(body, "me", 1)
    else:
        with pytest.raises(outcome):
            route.apply(body, "me", 1)


@pytest.mark.parametrize(
    ("name", "outcome"),
    [
        ("me/photo.png", None),
        ("me/a/b/c", None),
        ("bob/photo.png", FieldNamesAnotherUser),
        ("me", FieldNamesAnotherUser),
        ("meme/photo.png", FieldNamesAnotherUser),
        ("/me/photo.png", FieldNamesAnotherUser),
        ("ME/photo.png", FieldNamesAnotherUser),
        (None, errors.InvalidField),
        (7, errors.InvalidField),
    ],
)
@pytest.mark.parametrize(
    "path", ["/object/initiate_multipart_upload", "/object/complete_multipart_upload", "/object/initiate_form_data"]
)
def test_an_upload_names_an_object_under_the_callers_folder(
    path: str, name: object, outcome: type[Exception] | None
) -> None:
    route = packaged(path)
    body: dict[str, Any] = {} if name is None else {"Name": name}
    if outcome is None:
        route.apply(body, "me", 1)
    else:
        with pytest.raises(outcome):
            route.apply(body, "me", 1)


def raw_base64(value: object) -> str:
    return base64.b64encode(orjson.dumps(value)).decode().rstrip("=")


OWN_KEY = "openim/direct/20250114/me/" + "0f" * 16 + ".png"


@pytest.mark.parametrize(
    ("upload_id", "outcome"),
    [
        (raw_base64({"name": "me/x.png", "key": OWN_KEY, "size": 5}), None),
        (raw_base64({"NAME": "me/x.png", "Key": "openim/direct/20250114/me/" + "0f" * 16}), None),
        (raw_base64({"name": "bob/x.png", "key": OWN_KEY}), FieldNamesAnotherUser),
        (raw_base64({"name": "me/x.png", "key": OWN_KEY.replace("/me/", "/bob/")}), FieldNamesAnotherUser),
        (raw_base64({"name": "me/x.png", "key": "openim/data/hash/" + "0f" * 16}), FieldNamesAnotherUser),
        (raw_base64({"name": "me/x.png", "key": "openim/direct/2025011/me/" + "0f" * 16}), FieldNamesAnotherUser),
        (raw_base64({"name": "me/x.png", "key": OWN_KEY + "/../../bob/y"}), FieldNamesAnotherUser),
        (raw_base64({"name": "me/x.png", "key": "x/openim/direct/20250114/me/" + "0f" * 16}), FieldNamesAnotherUser),
        (raw_base64({"name": "me/x.png"}), errors.InvalidField),
        (raw_base64({"name": "me/x.png", "key": 7}), errors.InvalidField),
        (raw_base64({"key": OWN_KEY}), errors.InvalidField),
        (raw_base64({"name": "me/x.png", "Name": "bob/x.png", "key": OWN_KEY}), errors.InvalidField),
        (raw_base64(["me/x.png", OWN_KEY]), errors.InvalidField),
        (base64.b64encode(orjson.dumps({"name": "me/xx.png", "key": OWN_KEY})).decode(), errors.InvalidField),
        (raw_base64({"name": "me/x.png", "key": OWN_KEY})[:-1] + "\n", errors.InvalidField),
        ("bm90IGpzb24", errors.InvalidField),  # "not json"
        ("a", errors.InvalidField),
        (7, errors.InvalidField),
        (None, errors.InvalidField),
    ],
)
def test_a_form_data_upload_id_must_name_the_callers_object_and_storage_key(
    upload_id: object, outcome: type[Exception] | None
) -> None:
    route = packaged("/object/complete_form_data")
    body: dict[str, Any] = {} if upload_id is None else {"id": upload_id}
    if outcome is None:
        route.apply(body, "me", 1)
        assert body == {"id": upload_id}, "passed on as it came"
    else:
        with pytest.raises(outcome):
            route.apply(body, "me", 1)


def test_the_jssdk_routes_pass_their_bodies_untouched() -> None:
    for path in ("/jssdk/get_conversations", "/jssdk/get_active_conversations"):
        route = packaged(path)
        assert route.opaque
        assert not route.reads_body
