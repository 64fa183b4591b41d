"""The legacy route table: its phases by default and per route, and every mistake refused at start-up."""

from __future__ import annotations

import pytest

from messenger_gw.legacy import LegacyRouteTable, LegacyRouteTableError

IM_ROUTES = {"/im/msg/send_msg", "/im/msg/pull_msg_by_seq"}
READ = '[[route]]\npath = "/v1/messages/{id}"\nmethods = ["GET"]\naccess = "read"\n'
WRITE = '[[route]]\npath = "/v1/messages"\nmethods = ["POST"]\naccess = "write"\nreplaced_by = "/im/msg/send_msg"\n'


def parse(text: str) -> LegacyRouteTable:
    return LegacyRouteTable.parse(text, "legacy.toml", im_routes=IM_ROUTES)


def test_by_default_reads_pass_up_to_phase_five_and_writes_up_to_phase_two() -> None:
    read, write = parse(READ + WRITE)
    assert [phase for phase in range(1, 7) if read.live(phase)] == [1, 2, 3, 4, 5]
    assert [phase for phase in range(1, 7) if write.live(phase)] == [1, 2]
    assert read.label == "/legacy/v1/messages/{id}"
    assert (read.replaced_by, write.replaced_by) == (None, "/im/msg/send_msg")


def test_a_route_names_its_own_phases() -> None:
    [route] = parse(WRITE + "phases = [1, 2, 3, 6]\n")
    assert [phase for phase in range(1, 7) if route.live(phase)] == [1, 2, 3, 6]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (READ + "acess = 'read'\n", "unknown key(s) ['acess']"),
        (READ.replace('"/v1/messages/{id}"', '"v1/messages"'), "path must be a path pattern"),
        (READ.replace("{id}", "{id:[}"), "path is not a valid pattern"),
        (READ.replace('["GET"]', '["HEAD"]'), "methods must be a non-empty list of GET, POST, PUT, PATCH, DELETE"),
        (READ.replace('["GET"]', "[]"), "methods must be a non-empty list"),
        (READ.replace('["GET"]', '["GET", "GET"]'), "lists a method twice"),
        (READ.replace('"read"', '"delete"'), 'access must be "read" or "write"'),
        (READ + "phases = [0, 1]\n", "phases must list distinct phases from 1 to 6"),
        (READ + "phases = [7]\n", "phases must list distinct phases from 1 to 6"),
        (READ + "phases = [true]\n", "phases must list distinct phases from 1 to 6"),
        (WRITE.replace('replaced_by = "/im/msg/send_msg"\n', ""), "a write needs replaced_by"),
        (WRITE.replace("/im/msg/send_msg", "/im/msg/no_such_route"), "replaced_by must name a route of the /im table"),
        (READ + READ.replace("{id}", "{id}"), "GET /v1/messages/{id} is listed twice"),
        ("", "no routes"),
        ("[route]\npath = 1", "routes are [[route]] tables"),
        ("[[route]\n", "not valid TOML"),
    ],
)
def test_a_mistake_stops_start_up_naming_the_route(text: str, message: str) -> None:
    with pytest.raises(LegacyRouteTableError) as raised:
        parse(text)
    assert message in str(raised.value)
    assert str(raised.value).startswith("legacy.toml")


def test_one_path_may_have_a_read_and_a_write_route() -> None:
    text = READ + WRITE.replace('"/v1/messages"', '"/v1/messages/{id}"')
    assert [route.access for route in parse(text)] == ["read", "write"]
