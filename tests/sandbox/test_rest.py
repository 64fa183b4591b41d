"""The sandbox against ``openim-contract.md``: each test names the rule it checks."""

from __future__ import annotations

import gzip
from typing import Any

import aiohttp
import orjson
from aiohttp.test_utils import TestServer

from messenger_gw.sandbox import FakeClock, Sandbox, SandboxConfig, TokenState, create_sandbox_app
from messenger_gw.sandbox.state import sign_token
from tests.conftest import LOOPBACK, Wire, assert_error, base_url, decode

DAY = 86400


# -- envelope and headers (contract 1.2-1.5, checklist 1-2) ------------------------------------


async def test_success_envelope_carries_data(wire: Wire) -> None:
    reply = await wire.post("/auth/get_admin_token", {"secret": "openIM123", "userID": "imAdmin"})
    assert reply["errCode"] == 0
    assert reply["errMsg"] == ""
    assert reply["errDlt"] == ""
    assert set(reply["data"]) == {"token", "expireTimeSeconds"}


async def test_empty_reply_omits_data(wire: Wire) -> None:
    admin = await wire.admin_token()
    reply = await wire.post("/user/user_register", {"users": [{"userID": "u1", "nickname": "A"}]}, token=admin)
    assert reply == {"errCode": 0, "errMsg": "", "errDlt": ""}


async def test_operation_id_is_required_on_every_post_even_token_free_routes(wire: Wire) -> None:
    reply = await wire.post("/auth/get_admin_token", {"secret": "openIM123", "userID": "imAdmin"}, op="")
    assert_error(reply, 1001, "ArgsError")
    assert reply["errDlt"] == ""


async def test_operation_id_is_checked_before_token(wire: Wire) -> None:
    reply = await wire.post("/user/get_users_info", {"userIDs": []}, op="")
    assert_error(reply, 1001)


async def test_missing_token_is_args_error_with_empty_detail(wire: Wire) -> None:
    reply = await wire.post("/user/get_users_info", {"userIDs": []})
    assert reply == {"errCode": 1001, "errMsg": "ArgsError", "errDlt": ""}


async def test_unknown_route_without_headers_is_args_error_not_404(wire: Wire) -> None:
    assert_error(await wire.get_json("/no/such/route", {}), 1001)


async def test_unknown_route_with_valid_headers_is_gin_404_text(wire: Wire) -> None:
    admin = await wire.admin_token()
    status, headers, raw = await wire.raw("/no/such/route", {}, headers={"operationID": "o", "token": admin})
    assert status == 404
    assert raw == b"404 page not found"
    assert headers["Content-Type"].startswith("text/plain")


async def test_get_requests_skip_header_checks_and_find_no_route(wire: Wire) -> None:
    status, _, raw = await wire.raw("/user/get_users_info", method="GET")
    assert (status, raw) == (404, b"404 page not found")


async def test_options_answers_200_with_cors(wire: Wire) -> None:
    status, headers, raw = await wire.raw("/user/get_users_info", method="OPTIONS")
    assert status == 200
    assert raw == b'"Options Request!"'
    assert headers["Access-Control-Allow-Origin"] == "*"


async def test_bad_json_is_args_error(wire: Wire) -> None:
    status, _, raw = await wire.raw(
        "/auth/get_admin_token", b"{not json", headers={"operationID": "o", "Accept-Encoding": "identity"}
    )
    assert status == 200
    assert_error(orjson.loads(raw), 1001)


async def test_json_keys_match_case_insensitively(wire: Wire) -> None:
    data = await wire.ok("/auth/get_admin_token", {"Secret": "openIM123", "USERID": "imAdmin"})
    assert data["token"]


async def test_wrong_json_type_fails_the_decode(wire: Wire) -> None:
    reply = await wire.post("/auth/get_admin_token", {"secret": 123, "userID": "imAdmin"})
    assert_error(reply, 1001)


async def test_gzip_when_the_caller_accepts_it(wire: Wire) -> None:
    body = {"secret": "openIM123", "userID": "imAdmin"}
    headers = {"operationID": "o", "Accept-Encoding": "gzip, deflate"}
    status, response_headers, raw = await wire.raw("/auth/get_admin_token", body, headers=headers)
    assert status == 200
    assert response_headers["Content-Encoding"] == "gzip"
    assert orjson.loads(gzip.decompress(raw))["errCode"] == 0


async def test_no_gzip_when_not_accepted(wire: Wire) -> None:
    headers = {"operationID": "o", "Accept-Encoding": "identity"}
    _, response_headers, raw = await wire.raw("/auth/get_admin_token", {}, headers=headers)
    assert "Content-Encoding" not in response_headers
    assert orjson.loads(raw)["errCode"] == 1001


# -- tokens (contract 1.5, 2.2-2.7, 11) ----------------------------------------------------


async def test_admin_token_is_hs256_jwt_with_openim_claims(wire: Wire, fake_clock: FakeClock) -> None:
    data = await wire.ok("/auth/get_admin_token", {"secret": "openIM123", "userID": "imAdmin"})
    claims = decode(data["token"], "openIM123")
    now = int(fake_clock())
    assert claims == {"UserID": "imAdmin", "PlatformID": 10, "exp": now + 90 * DAY, "iat": now - 5}
    assert data["expireTimeSeconds"] == 90 * DAY


async def test_expire_time_is_a_duration_in_get_token_and_absolute_in_parse_token(
    wire: Wire, fake_clock: FakeClock
) -> None:
    admin = await wire.admin_token()
    await wire.register(admin, "u1")
    issued = await wire.ok("/auth/get_user_token", {"userID": "u1", "platformID": 5}, token=admin)
    assert issued["expireTimeSeconds"] == 90 * DAY
    parsed = await wire.ok("/auth/parse_token", {"token": issued["token"]})
    assert parsed == {"userID": "u1", "platformID": 5, "expireTimeSeconds": int(fake_clock()) + 90 * DAY}


async def test_parse_token_needs_no_token_header(wire: Wire) -> None:
    admin = await wire.admin_token()
    parsed = await wire.ok("/auth/parse_token", {"token": admin})
    assert parsed["userID"] == "imAdmin"
    assert parsed["platformID"] == 10


async def test_malformed_token_is_1503(wire: Wire) -> None:
    assert_error(await wire.post("/msg/get_server_time", token="abc"), 1503, "TokenMalformedError")


async def test_expired_token_is_1501(wire: Wire, fake_clock: FakeClock) -> None:
    admin = await wire.admin_token()
    await wire.register(admin, "u1")
    user = await wire.user_token(admin, "u1", 1)
    fake_clock.advance(90 * DAY + 1)
    assert_error(await wire.post("/msg/get_server_time", token=user), 1501, "TokenExpiredError")


async def test_wrong_signature_is_1505(wire: Wire, fake_clock: FakeClock) -> None:
    forged = sign_token({"UserID": "imAdmin", "PlatformID": 10, "exp": int(fake_clock()) + 60}, "not-the-secret")
    assert_error(await wire.post("/msg/get_server_time", token=forged), 1505, "signature is invalid")


async def test_valid_jwt_unknown_to_the_server_is_1507(wire: Wire, fake_clock: FakeClock) -> None:
    admin = await wire.admin_token()
    await wire.register(admin, "u1")
    unknown = sign_token({"UserID": "u1", "PlatformID": 1, "exp": int(fake_clock()) + 60, "iat": 0}, "openIM123")
    assert_error(await wire.post("/msg/get_server_time", token=unknown), 1507, "TokenNotExistError")


async def test_other_token_states_are_1505(wire: Wire, sandbox: Sandbox) -> None:
    admin = await wire.admin_token()
    await wire.register(admin, "u1")
    user = await wire.user_token(admin, "u1", 1)
    sandbox.tokens[user].state = TokenState.INVALID
    assert_error(await wire.post("/msg/get_server_time", token=user), 1505)


async def test_new_token_kicks_older_tokens_of_the_same_platform(wire: Wire, fake_clock: FakeClock) -> None:
    admin = await wire.admin_token()
    await wire.register(admin, "u1")
    ios_1 = await wire.user_token(admin, "u1", 1)
    web = await wire.user_token(admin, "u1", 5)
    fake_clock.advance(1)
    ios_2 = await wire.user_token(admin, "u1", 1)
    assert ios_2 != ios_1
    assert_error(await wire.post("/msg/get_server_time", token=ios_1), 1506, "TokenKickedError")
    assert (await wire.ok("/msg/get_server_time", token=ios_2))["serverTime"]
    assert (await wire.ok("/msg/get_server_time", token=web))["serverTime"], "other platforms keep their newest"


async def test_parse_token_reports_kicked_tokens(wire: Wire, fake_clock: FakeClock) -> None:
    admin = await wire.admin_token()
    await wire.register(admin, "u1")
    first = await wire.user_token(admin, "u1", 2)
    fake_clock.advance(1)
    await wire.user_token(admin, "u1", 2)
    assert_error(await wire.post("/auth/parse_token", {"token": first}), 1506)


async def test_force_logout_kicks_every_token_of_that_platform_only(wire: Wire) -> None:
    admin = await wire.admin_token()
    await wire.register(admin, "u1")
    ios = await wire.user_token(admin, "u1", 1)
    web = await wire.user_token(admin, "u1", 5)
    reply = await wire.post("/auth/force_logout", {"userID": "u1", "platformID": 1}, token=admin)
    assert reply == {"errCode": 0, "errMsg": "", "errDlt": ""}
    assert_error(await wire.post("/msg/get_server_time", token=ios), 1506)
    assert (await wire.ok("/msg/get_server_time", token=web))["serverTime"]


async def test_force_logout_checks_its_arguments(wire: Wire) -> None:
    admin = await wire.admin_token()
    assert_error(await wire.post("/auth/force_logout", {"userID": "", "platformID": 1}, token=admin), 1001)
    assert_error(await wire.post("/auth/force_logout", {"userID": "u1", "platformID": 11}, token=admin), 1001)


async def test_new_admin_token_leaves_older_ones_valid_for_five_minutes(wire: Wire, fake_clock: FakeClock) -> None:
    first = await wire.admin_token()
    fake_clock.advance(10)
    second = await wire.admin_token()
    assert (await wire.ok("/msg/get_server_time", token=first))["serverTime"]
    fake_clock.advance(299)  # the grace runs from the newer token's mint
    assert (await wire.ok("/msg/get_server_time", token=first))["serverTime"]
    fake_clock.advance(2)
    assert_error(await wire.post("/msg/get_server_time", token=first), 1507)
    assert (await wire.ok("/msg/get_server_time", token=second))["serverTime"]


async def test_get_admin_token_rejects_a_wrong_secret_with_1002(wire: Wire) -> None:
    reply = await wire.post("/auth/get_admin_token", {"secret": "guess", "userID": "imAdmin"})
    assert reply == {"errCode": 1002, "errMsg": "NoPermissionError", "errDlt": "secret invalid"}


async def test_get_admin_token_rejects_a_non_admin_user_with_1001(wire: Wire) -> None:
    assert_error(await wire.post("/auth/get_admin_token", {"secret": "openIM123", "userID": "u1"}), 1001)
    assert_error(await wire.post("/auth/get_admin_token", {"secret": "openIM123", "userID": ""}), 1001)


async def test_admin_only_routes_answer_1002_to_user_tokens(wire: Wire) -> None:
    admin = await wire.admin_token()
    await wire.register(admin, "u1", "u2")
    user = await wire.user_token(admin, "u1", 1)
    calls: list[tuple[str, dict[str, Any]]] = [
        ("/auth/get_user_token", {"userID": "u2", "platformID": 1}),
        ("/auth/force_logout", {"userID": "u2", "platformID": 1}),
        ("/user/user_register", {"users": [{"userID": "u3", "nickname": "C"}]}),
        ("/user/account_check", {"checkUserIDs": ["u2"]}),
    ]
    for path, body in calls:
        assert_error(await wire.post(path, body, token=user), 1002, "NoPermissionError")


async def test_get_user_token_refuses_admin_platform_admin_users_and_unknown_users(wire: Wire) -> None:
    admin = await wire.admin_token()
    await wire.register(admin, "u1")
    assert_error(await wire.post("/auth/get_user_token", {"userID": "u1", "platformID": 10}, token=admin), 1002)
    assert_error(await wire.post("/auth/get_user_token", {"userID": "imAdmin", "platformID": 1}, token=admin), 1002)
    assert_error(await wire.post("/auth/get_user_token", {"userID": "nobody", "platformID": 1}, token=admin), 1004)


# -- users (contract section 3) --------------------------------------------------------------


async def test_registering_an_existing_user_fails_the_whole_batch_with_1102(wire: Wire) -> None:
    admin = await wire.admin_token()
    await wire.register(admin, "u1")
    users = [{"userID": "u2", "nickname": "B"}, {"userID": "u1", "nickname": "A"}]
    reply = await wire.post("/user/user_register", {"users": users}, token=admin)
    assert reply == {"errCode": 1102, "errMsg": "RegisteredAlreadyError", "errDlt": "userID registered already"}
    info = await wire.ok("/user/get_users_info", {"userIDs": ["u2"]}, token=admin)
    assert info == {"usersInfo": None}


async def test_user_register_checks_ids_and_nicknames(wire: Wire) -> None:
    admin = await wire.admin_token()
    for users in (
        [{"userID": "bad id", "nickname": "A"}],
        [{"userID": "u1", "nickname": ""}],
        [{"userID": "u1", "nickname": "A"}, {"userID": "u1", "nickname": "B"}],
        [],
    ):
        assert_error(await wire.post("/user/user_register", {"users": users}, token=admin), 1001)
    assert_error(await wire.post("/user/user_register", {}, token=admin), 1001)


async def test_get_users_info_omits_unknown_ids_and_answers_null_for_none(wire: Wire, fake_clock: FakeClock) -> None:
    admin = await wire.admin_token()
    await wire.register(admin, "u1")
    user = await wire.user_token(admin, "u1", 1)
    info = await wire.ok("/user/get_users_info", {"userIDs": ["u1", "ghost"]}, token=user)
    assert info["usersInfo"] == [
        {
            "userID": "u1",
            "nickname": "U1",
            "faceURL": "",
            "ex": "",
            "createTime": int(fake_clock() * 1000),
            "appMangerLevel": 0,
            "globalRecvMsgOpt": 0,
        }
    ]
    assert await wire.ok("/user/get_users_info", {"userIDs": ["ghost"]}, token=user) == {"usersInfo": None}
    assert_error(await wire.post("/user/get_users_info", {}, token=user), 1001)


async def test_account_check_reports_registration_and_rejects_duplicates(wire: Wire) -> None:
    admin = await wire.admin_token()
    await wire.register(admin, "u1")
    data = await wire.ok("/user/account_check", {"checkUserIDs": ["u1", "x"]}, token=admin)
    assert data == {"results": [{"userID": "u1", "accountStatus": 1}, {"userID": "x", "accountStatus": 0}]}
    assert_error(await wire.post("/user/account_check", {"checkUserIDs": ["u1", "u1"]}, token=admin), 1001)


async def test_update_user_info_ex_is_self_or_admin_and_null_leaves_fields(wire: Wire) -> None:
    admin = await wire.admin_token()
    await wire.register(admin, "u1", "u2")
    u1 = await wire.user_token(admin, "u1", 1)
    update = {"userInfo": {"userID": "u1", "nickname": "New", "faceURL": None, "ex": "{}"}}
    assert await wire.ok("/user/update_user_info_ex", update, token=u1) is None
    info = await wire.ok("/user/get_users_info", {"userIDs": ["u1"]}, token=u1)
    assert info["usersInfo"][0] | {"createTime": 0} == {
        "userID": "u1",
        "nickname": "New",
        "faceURL": "",
        "ex": "{}",
        "createTime": 0,
        "appMangerLevel": 0,
        "globalRecvMsgOpt": 0,
    }
    other = {"userInfo": {"userID": "u2", "nickname": "Hijack"}}
    assert_error(await wire.post("/user/update_user_info_ex", other, token=u1), 1002)
    ghost = {"userInfo": {"userID": "ghost", "nickname": "G"}}
    assert_error(await wire.post("/user/update_user_info_ex", ghost, token=admin), 1004)


async def test_get_server_time_is_the_clock_in_ms(wire: Wire, fake_clock: FakeClock) -> None:
    admin = await wire.admin_token()
    assert await wire.ok("/msg/get_server_time", token=admin) == {"serverTime": int(fake_clock() * 1000)}


# -- configuration -------------------------------------------------------------------------------


async def test_secret_admin_user_and_expiry_are_configurable() -> None:
    clock = FakeClock()
    config = SandboxConfig(secret="s3", admin_user_ids=("root",), token_expire_days=1, clock=clock)
    server = TestServer(create_sandbox_app(Sandbox(config)), host=LOOPBACK)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            wire = Wire(session, base_url(server))
            data = await wire.ok("/auth/get_admin_token", {"secret": "s3", "userID": "root"})
            assert data["expireTimeSeconds"] == DAY
            assert decode(data["token"], "s3")["UserID"] == "root"
            assert_error(await wire.post("/auth/get_admin_token", {"secret": "openIM123", "userID": "root"}), 1002)
    finally:
        await server.close()
