"""The route table's ``class`` key: which rate limit each /im route counts against."""

from __future__ import annotations

import pytest

from messenger_gw.im import RouteTable, RouteTableError
from messenger_gw.settings import RATE_CLASSES


def test_a_route_names_its_class_and_routes_without_one_are_not_limited() -> None:
    table = RouteTable.parse(
        '[[route]]\npath = "/msg/send_msg_x"\nphase = 3\nclass = "send"\n\n[[route]]\npath = "/msg/other"\nphase = 3\n',
        "t.toml",
    )
    assert [(route.path, route.rate_class) for route in table] == [("/msg/send_msg_x", "send"), ("/msg/other", None)]


@pytest.mark.parametrize("value", ['"sned"', '["send", "sync"]', "1"])
def test_a_class_the_rate_limits_do_not_know_stops_start_up_naming_the_route(value: str) -> None:
    with pytest.raises(RouteTableError, match=r"t\.toml: route 1 \(/msg/x\): class must be one of send, sync"):
        RouteTable.parse(f'[[route]]\npath = "/msg/x"\nphase = 3\nclass = {value}\n', "t.toml")


def test_the_packaged_table_puts_sending_pulls_and_group_writes_in_their_classes() -> None:
    classes = {route.path: route.rate_class for route in RouteTable.load()}
    assert {classes[path] for path in classes} <= {*RATE_CLASSES, None}
    assert classes["/msg/send_msg"] == "send"
    assert classes["/msg/pull_msg_by_seq"] == classes["/msg/get_conversations_has_read_and_max_seq"] == "sync"
    assert classes["/group/create_group"] == classes["/group/kick_group"] == "group_write"
    assert classes["/group/join_group"] == classes["/group/mute_group_member"] == "group_write"
    assert classes["/friend/get_incremental_friends"] == classes["/group/get_full_join_group_ids"] == "sync"
    assert {classes[path] for path in classes if path.startswith("/object/")} == {"upload"}
    assert classes["/msg/get_server_time"] is None
