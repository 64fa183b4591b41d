"""The route table: validation at start-up, field paths, and the single-chat ID reading."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from messenger_gw import errors
from messenger_gw.conversation_access import single_chat_pairs
from messenger_gw.route_policy import FieldNamesAnotherUser, FieldPath, RouteTable, RouteTableError


def table(text: str) -> RouteTable:
    return RouteTable.parse(text, "test.toml")


def test_the_packaged_table_loads_and_covers_the_required_routes() -> None:
    routes = {route.path: route for route in RouteTable.load()}
    phase_1 = {"/user/get_self_user_info", "/user/get_users_info", "/user/update_user_info_ex"}
    phase_3 = {"/msg/send_msg", "/msg/pull_msg_by_seq", "/msg/get_conversations_has_read_and_max_seq",
               "/msg/revoke_msg", "/msg/delete_msgs", "/msg/mark_conversation_as_read",
               "/msg/get_server_time"}  # fmt: skip
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
    assert route.apply(body, "me", 1) is True
    assert body == {"a": {"userID": "me"}}
    assert route.apply({"a": {"USERID": "me"}}, "me", 1) is False
    with pytest.raises(FieldNamesAnotherUser):
        route.apply({"a": {"userid": "you"}}, "me", 1)
    with pytest.raises(errors.InvalidField, match="differ only in case"):
        route.apply({"a": {"userID": "me", "UserID": "you"}}, "me", 1)
    with pytest.raises(errors.InvalidField):
        route.apply({"a": {"userID": 7}}, "me", 1)


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
