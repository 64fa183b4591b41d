"""``messenger-gw import`` against the sandbox: a whole export, a second run, bad lines, a run killed and resumed."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from messenger_gw.migration import Options, run_import
from messenger_gw.sandbox import Sandbox
from messenger_gw.settings import Settings
from tests.conftest import USER_SERVICE_TOKEN, Recorder, RedisProcess, base_url, gateway_settings
from tests.openim_sdk import run_scenario
from tests.sandbox.fixtures import IM, im, ws_url  # noqa: F401 - fixtures

USERS, PAIRS, GROUPS = 300, 150, 12
T0 = 1_600_000_000_000  # the history's first send time, ms
WRITES = ("/user/user_register", "/friend/import_friend", "/group/create_group", "/group/invite_user_to_group",
          "/msg/send_msg")  # fmt: skip


def uid(index: int) -> str:
    return f"u{index:03d}"


def write_export(folder: Path) -> dict[str, Any]:
    """An export of a few hundred users with a bad line of each kind; what OpenIM should hold after it."""
    folder.mkdir(exist_ok=True)
    users = [{"userID": uid(i), "nickname": f"User {i}", "faceURL": f"https://cdn/{i}.png"} for i in range(USERS)]
    bad_users = ['{"userID": "nonick"}', "not json at all", orjson.dumps(users[7]).decode()]
    pairs = [{"userID": uid(i), "friendUserID": uid((i * 7 + 1) % USERS)} for i in range(PAIRS)]
    bad_pairs = [orjson.dumps({"userID": uid(1), "friendUserID": uid(1)}).decode(),
                 orjson.dumps({"userID": uid(2), "friendUserID": "ghost"}).decode()]  # fmt: skip
    groups = []
    for g in range(GROUPS):
        base = g * 20
        members = [uid(base + k) for k in range(3, 20)]
        groups.append({"groupID": f"legacy_{g:02d}", "groupName": f"Group {g}", "ownerUserID": uid(base),
                       "adminUserIDs": [uid(base + 1), uid(base + 2)], "memberUserIDs": members,
                       "introduction": f"about {g}"})  # fmt: skip
    bad_groups = [orjson.dumps({"groupID": "legacy_ghost", "groupName": "G", "ownerUserID": "ghost"}).decode(),
                  orjson.dumps({"groupID": "legacy_dup", "groupName": "G", "ownerUserID": uid(0),
                                "memberUserIDs": [uid(0)]}).decode()]  # fmt: skip
    messages: list[dict[str, Any]] = []
    for n in range(200):
        t = T0 + n * 1000
        if n % 2:
            g = (n // 2) % GROUPS
            sender = uid(g * 20 + n % 20)
            messages.append({"messageID": f"m{n}", "sendID": sender, "groupID": f"legacy_{g:02d}", "sendTime": t,
                             "contentType": 101, "content": {"content": f"group message {n}"},
                             "senderPlatformID": 1})  # fmt: skip
        else:
            a, b = uid(n % 20), uid(n % 20 + 1)
            sender, receiver = (a, b) if n % 4 else (b, a)
            messages.append({"messageID": f"m{n}", "sendID": sender, "recvID": receiver, "sendTime": t,
                             "contentType": 101, "content": {"content": f"hello {n}"}})  # fmt: skip
    bad_messages = [
        orjson.dumps({"messageID": "x1", "sendID": uid(0), "recvID": uid(1), "sendTime": T0, "contentType": 999,
                      "content": {"a": 1}}).decode(),
        # a sender who is not in the group: OpenIM refuses it (1203), the rest of the history goes on
        orjson.dumps({"messageID": "x2", "sendID": uid(299), "groupID": "legacy_00", "sendTime": T0 + 5,
                      "contentType": 101, "content": {"content": "outsider"}}).decode(),
    ]  # fmt: skip
    _lines(folder / "users.jsonl", [orjson.dumps(u).decode() for u in users[:150]] + bad_users
           + [orjson.dumps(u).decode() for u in users[150:]])  # fmt: skip
    _lines(folder / "friendships.jsonl", [orjson.dumps(p).decode() for p in pairs] + bad_pairs)
    _lines(folder / "groups.jsonl", bad_groups + [orjson.dumps(g).decode() for g in groups])
    _lines(folder / "messages.jsonl", [orjson.dumps(m).decode() for m in messages[:100]] + bad_messages
           + [orjson.dumps(m).decode() for m in messages[100:]])  # fmt: skip
    expected_messages: dict[str, list[tuple[str, int, str]]] = {}
    for m in messages:
        single = "groupID" not in m
        conversation = "si_" + "_".join(sorted((m["sendID"], m["recvID"]))) if single else f"sg_{m['groupID']}"
        expected_messages.setdefault(conversation, []).append((m["sendID"], m["sendTime"], m["content"]["content"]))
    friends = {(p["userID"], p["friendUserID"]) for p in pairs} | {(p["friendUserID"], p["userID"]) for p in pairs}
    roles = {
        g["groupID"]: {g["ownerUserID"]: 100}
        | dict.fromkeys(g["adminUserIDs"], 60)
        | dict.fromkeys(g["memberUserIDs"], 20)
        for g in groups
    }
    return {"users": {u["userID"]: u["nickname"] for u in users}, "friends": friends, "roles": roles,
            "messages": expected_messages}  # fmt: skip


def _lines(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


def state(sandbox: Sandbox) -> dict[str, Any]:
    """What the sandbox holds of what an import creates: users, friendships, groups with roles, user messages."""
    messages = {
        conversation: [
            (m["sendID"], m["sendTime"], orjson.loads(base64.b64decode(m["content"]))["content"])
            for m in stored
            if m["contentType"] < 1000
        ]
        for conversation, stored in sandbox.messages.items()
        if conversation.startswith(("si_", "sg_"))
    }
    return {
        "users": {u: info["nickname"] for u, info in sandbox.users.items() if not sandbox.is_admin(u)},
        "friends": {(owner, friend) for owner, friends in sandbox.friends.items() for friend in friends},
        "roles": {g: {u: m["roleLevel"] for u, m in members.items()} for g, members in sandbox.members.items()},
        "messages": {c: ms for c, ms in messages.items() if ms},
    }


@pytest.fixture
def settings(sandbox_server: TestServer, clean_redis: RedisProcess) -> Settings:
    return gateway_settings(base_url(sandbox_server), redis_url=clean_redis.url)


@pytest.fixture
def export(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path / "export"
    return folder, write_export(folder)


def options(folder: Path, **extra: Any) -> Options:
    return Options(export_dir=folder, **({"messages": True, "concurrency": 4, "rate": 1000.0} | extra))


async def test_an_export_imports_whole_and_a_second_run_creates_nothing(
    settings: Settings, sandbox: Sandbox, export: tuple[Path, dict[str, Any]]
) -> None:
    folder, expected = export
    report = await run_import(settings, options(folder))
    assert state(sandbox) == expected
    counts = report.as_json()["kinds"]
    assert counts["users"] == {"created": USERS, "failed": 3}
    assert counts["friendships"] == {"created": PAIRS, "failed": 2}
    assert counts["groups"] == {"created": GROUPS, "failed": 2}
    assert counts["messages"] == {"created": 200, "failed": 2}
    failures = {(f["kind"], f["line"]): f["reason"] for f in report.as_json()["failures"]}
    assert failures[("users", 151)] == "nickname must be a non-empty string"
    assert failures[("users", 152)].startswith("not JSON")
    assert failures[("users", 153)] == "given twice: first at line 8"
    assert failures[("friendships", 151)] == "a user cannot be their own friend (OpenIM: 1301)"
    assert failures[("friendships", 152)].startswith("OpenIM answered 1004")
    assert failures[("groups", 1)] == "the owner not in OpenIM: ghost"
    assert failures[("groups", 2)] == "u000 listed twice among the owner, admins and members"
    assert failures[("messages", 101)].startswith("contentType 999")
    assert failures[("messages", 102)].startswith("OpenIM answered 1203")
    # What OpenIM v3.8.3 keeps of a message sent as its original sender: the send time, the sender's platform.
    [first] = [m for m in sandbox.messages["sg_legacy_00"] if m["contentType"] == 101][:1]
    assert (first["sendTime"], first["senderPlatformID"], first["msgFrom"]) == (T0 + 1000, 1, 200)
    assert first["options"] == {"offlinePush": False}, "history is sent without a push"
    assert {f["addSource"] for fs in sandbox.friends.values() for f in fs.values()} == {1}

    writes = {path: sandbox.calls[path] for path in WRITES}
    again = await run_import(settings, options(folder))
    assert {path: sandbox.calls[path] for path in WRITES} == writes, "the checkpoint skips everything"
    assert all("created" not in counts for counts in again.as_json()["kinds"].values())
    # Without the checkpoint, OpenIM itself tells which users, friendships and groups exist: none is made
    # twice. (History is the checkpoint's alone: another checkpoint is another import of it, docs/import.md.)
    fresh = await run_import(settings, options(folder, checkpoint="another", messages=False))
    assert state(sandbox) == expected
    assert all("created" not in counts for counts in fresh.as_json()["kinds"].values())
    writes["/friend/import_friend"] += 1  # the pair with an unknown user, refused again: no checkpoint says so
    assert {path: sandbox.calls[path] for path in WRITES} == writes


async def test_a_dry_run_reports_what_it_would_do_and_creates_nothing(
    settings: Settings, sandbox: Sandbox, export: tuple[Path, dict[str, Any]], clean_redis: RedisProcess
) -> None:
    folder, _ = export
    sandbox.add_user(uid(5), nickname="Already here")
    report = await run_import(settings, options(folder, dry_run=True))
    counts = report.as_json()["kinds"]
    assert counts["users"] == {"would_create": USERS - 1, "skipped": 1, "failed": 3}
    assert counts["groups"]["failed"] == 1 + 1, "a group whose owner is missing is known before creating it"
    assert {path: sandbox.calls[path] for path in WRITES} == dict.fromkeys(WRITES, 0)
    with clean_redis.client() as c:
        assert c.keys("gw:import:*") == [], "a dry run writes no checkpoint"


async def test_a_batch_holding_an_existing_user_is_split_and_the_user_never_registered_again(
    settings: Settings, sandbox: Sandbox, export: tuple[Path, dict[str, Any]], recorder: Recorder
) -> None:
    folder, _ = export
    for index in (3, 42, 250):
        sandbox.add_user(uid(index), nickname="Kept")

    async def nobody_registered(request: web.Request) -> web.Response:  # as if they registered meanwhile
        body = await request.json()
        results = [{"userID": u, "accountStatus": 0} for u in body["checkUserIDs"]]
        return web.json_response({"errCode": 0, "errMsg": "", "errDlt": "", "data": {"results": results}})

    recorder.overrides["/user/account_check"] = nobody_registered
    report = await run_import(settings, options(folder, messages=False))
    assert report.as_json()["kinds"]["users"] == {"created": USERS - 3, "skipped": 3, "failed": 3}
    assert [sandbox.users[uid(i)]["nickname"] for i in (3, 42, 250)] == ["Kept"] * 3
    registered = recorder.to("/user/user_register")
    assert len(registered) > USERS // 100, "the batches with an existing user were split"
    for index in (3, 42, 250):
        succeeded = [r for r in registered if uid(index) in {u["userID"] for u in r.json()["users"]}]
        assert all(len(r.json()["users"]) >= 1 for r in succeeded)
    assert sandbox.calls["/user/user_register"] == len(registered)


def _environment(settings_url: str, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESSENGER_GW_")}
    return env | {
        "MESSENGER_GW_OPENIM_API_URL": settings_url,
        "MESSENGER_GW_OPENIM_SECRET": "openIM123",
        "MESSENGER_GW_OPENIM_WS_URL": "ws://127.0.0.1:10001",
        "MESSENGER_GW_PUBLIC_IM_URL": "http://127.0.0.1:8080/im",
        "MESSENGER_GW_REDIS_URL": redis_url,
        "MESSENGER_GW_USER_SERVICE_URL": "http://127.0.0.1:9",
        "MESSENGER_GW_USER_SERVICE_TOKEN": USER_SERVICE_TOKEN,
        "MESSENGER_GW_LOG_LEVEL": "warning",
    }


async def _import_process(folder: Path, env: dict[str, str], report: Path, *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "messenger_gw", "import", str(folder), "--messages", "--no-progress",
        "--report", str(report), *extra,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _until(condition: Callable[[], bool], limit: float) -> None:
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 - the sandbox counts calls in this process: looking is all there is
            await asyncio.sleep(0.02)


@pytest.mark.slow
async def test_a_run_killed_halfway_and_resumed_ends_in_the_same_state(
    sandbox_server: TestServer,
    sandbox: Sandbox,
    clean_redis: RedisProcess,
    export: tuple[Path, dict[str, Any]],
    tmp_path: Path,
) -> None:
    folder, expected = export
    env = _environment(base_url(sandbox_server), clean_redis.url)
    report = tmp_path / "report.json"
    first = await _import_process(folder, env, report, "--rate", "150", "--concurrency", "3")

    def sent() -> int:
        return sandbox.calls["/msg/send_msg"]

    try:
        await _until(lambda: sent() >= 60 or first.returncode is not None, 60)
    finally:
        if first.returncode is None:
            first.send_signal(signal.SIGKILL)
        _, errors = await first.communicate()
    assert first.returncode == -signal.SIGKILL, errors.decode()[-2000:]
    assert sent() < 200, "killed halfway through the history"
    assert not report.exists(), "killed before it could report"
    second = await _import_process(folder, env, report, "--rate", "1000")
    stdout, stderr = await asyncio.wait_for(second.communicate(), 60)
    assert second.returncode == 1, stderr.decode()[-2000:]  # the bad lines of the export, reported
    assert state(sandbox) == expected, "nothing twice, nothing missing, each conversation in its order"
    written = orjson.loads(report.read_bytes())
    assert written["kinds"]["users"] == {"skipped": USERS, "failed": 3}
    assert written["kinds"]["messages"]["failed"] == 2
    assert written["kinds"]["messages"].get("created", 0) + written["kinds"]["messages"]["skipped"] == 200
    assert b"messages:" in stdout


@pytest.mark.slow
async def test_the_official_sdk_sees_an_imported_users_groups_friends_and_history(
    settings: Settings,
    sandbox: Sandbox,
    export: tuple[Path, dict[str, Any]],
    im: IM,  # noqa: F811 - the fixture
) -> None:
    folder, expected = export
    await run_import(settings, options(folder))
    user = uid(0)
    result = await run_scenario(
        "imported.mjs", {"user": await im.login(user), "single": "si_u000_u001", "group": "sg_legacy_00"}
    )
    assert result["failures"] == []
    assert result["groups"] == [
        {"groupID": "legacy_00", "groupName": "Group 0", "ownerUserID": user, "memberCount": 20}
    ]
    assert sorted(result["friends"]) == sorted(friend for owner, friend in expected["friends"] if owner == user)
    for conversation in ("single", "group"):
        sdk_id = {"single": "si_u000_u001", "group": "sg_legacy_00"}[conversation]
        seen = [(m["sendID"], m["sendTime"], m["text"]) for m in result[conversation]]
        assert seen == expected["messages"][sdk_id], f"the {conversation} history, in order, with its send times"
    assert result["unhandled"] == []
