"""The sandbox's /object/* and /third/* as OpenIM v3.8.3 answers them: uploads under the caller's name, the URLs
built from X-Request-Api (else the Host), the object store's presigned requests, and v3.8.3's holes."""

from __future__ import annotations

import base64
import hashlib
import io
from typing import Any

import aiohttp
import orjson
import pytest

from messenger_gw.sandbox import Sandbox
from tests.conftest import Wire, assert_error

CONTENT = b"a picture, as far as the sandbox can tell"


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def upload_hash(*parts: bytes) -> str:
    """What the SDK sends as ``hash``: the MD5 of the parts' MD5s joined by commas."""
    return md5(",".join(md5(p) for p in parts).encode())


@pytest.fixture
async def tokens(wire: Wire) -> dict[str, str]:
    admin = await wire.admin_token()
    await wire.register(admin, "alice", "bob")
    return {"admin": admin} | {u: await wire.user_token(admin, u, 5) for u in ("alice", "bob")}


async def call(wire: Wire, path: str, body: Any, token: str, **headers: str) -> dict[str, Any]:
    status, _, raw = await wire.raw(
        path, body, headers={"operationID": "op-1", "token": token, "Accept-Encoding": "identity"} | headers
    )
    assert status == 200, raw
    reply: dict[str, Any] = orjson.loads(raw)
    return reply


async def upload(
    wire: Wire, token: str, name: str, *, content: bytes = CONTENT, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """The SDK's single-part upload: initiate, PUT to the presigned URL, complete."""
    headers = headers or {}
    start = {"hash": upload_hash(content), "size": len(content), "partSize": 0, "maxParts": -1, "cause": "",
             "name": name, "contentType": "image/png"}  # fmt: skip
    begun = await call(wire, "/object/initiate_multipart_upload", start, token, **headers)
    assert begun["errCode"] == 0, begun
    if begun["data"]["url"]:  # stored already under its hash
        return begun
    upload_info = begun["data"]["upload"]
    [part] = upload_info["sign"]["parts"]
    async with wire.session.put(part["url"], data=content) as response:
        assert response.status == 200
    done = {"uploadID": upload_info["uploadID"], "parts": [md5(content)], "cause": "", "name": name,
            "contentType": "image/png"}  # fmt: skip
    return await call(wire, "/object/complete_multipart_upload", done, token, **headers)


async def test_an_upload_answers_its_url_under_x_request_api_and_serves_the_bytes_without_a_token(
    wire: Wire, tokens: dict[str, str]
) -> None:
    done = await upload(
        wire, tokens["alice"], "alice/pic.png", headers={"X-Request-Api": "https://chat.example.com/im"}
    )
    assert done["data"] == {"url": "https://chat.example.com/im/object/alice/pic.png"}
    async with wire.session.get(wire.url + "/object/alice/pic.png", allow_redirects=False) as response:
        assert response.status == 302, "no token, no operationID: OpenIM's redirect for anyone"
        location = response.headers["Location"]
    assert location.startswith(wire.url + "/openim/openim/data/hash/"), "presigned, in the object store"
    async with wire.session.get(location) as response:
        assert (response.status, await response.read()) == (200, CONTENT)
    async with wire.session.get(location.replace("X-Amz-Signature=", "X-Amz-Signature=0")) as response:
        assert response.status == 403


@pytest.mark.parametrize(
    ("headers", "prefix"),
    [({"X-Request-Api": "https://x.example/im/"}, "https://x.example/im/object/"), ({}, "{host}/object/")],
)
async def test_the_urls_base_is_x_request_api_else_the_host_whatever_the_body_says(
    wire: Wire, tokens: dict[str, str], headers: dict[str, str], prefix: str
) -> None:
    done = await upload(wire, tokens["alice"], "alice/a.png", headers=headers)
    assert done["data"]["url"] == prefix.format(host=wire.url) + "alice/a.png"


@pytest.mark.parametrize(
    ("name", "code"),
    [("bob/pic.png", 1002), ("alice", 1002), ("", 1001), ("/alice/pic.png", 1001), ("alice/" + "x" * 1100, 1001)],
)
async def test_a_user_uploads_only_under_their_own_name(
    wire: Wire, tokens: dict[str, str], sandbox: Sandbox, name: str, code: int
) -> None:
    start = {"hash": upload_hash(CONTENT), "size": len(CONTENT), "maxParts": -1, "name": name}
    assert_error(await call(wire, "/object/initiate_multipart_upload", start, tokens["alice"]), code)
    form = {"name": name, "size": 5}
    assert_error(await call(wire, "/object/initiate_form_data", form, tokens["alice"]), code)
    assert sandbox.objects.records == {}


async def test_an_admin_uploads_anywhere(wire: Wire, tokens: dict[str, str]) -> None:
    done = await upload(wire, tokens["admin"], "bob/from-the-admin.png")
    assert done["errCode"] == 0


async def test_the_same_bytes_again_are_known_by_their_hash(wire: Wire, tokens: dict[str, str]) -> None:
    await upload(wire, tokens["alice"], "alice/first.png")
    again = await upload(wire, tokens["bob"], "bob/second.png")
    assert again["data"]["url"].endswith("/object/bob/second.png")
    assert "upload" not in again["data"] or not again["data"]["upload"], "no upload: the hash is stored"


async def test_a_completion_whose_parts_do_not_make_its_hash_is_refused(wire: Wire, tokens: dict[str, str]) -> None:
    start = {"hash": upload_hash(CONTENT), "size": len(CONTENT), "maxParts": -1, "name": "alice/x.png"}
    begun = await call(wire, "/object/initiate_multipart_upload", start, tokens["alice"])
    done = {"uploadID": begun["data"]["upload"]["uploadID"], "parts": [md5(b"other")], "name": "alice/x.png"}
    assert_error(await call(wire, "/object/complete_multipart_upload", done, tokens["alice"]), 500)
    done["parts"] = [md5(CONTENT)]  # the right hash, but nothing was PUT
    assert_error(await call(wire, "/object/complete_multipart_upload", done, tokens["alice"]), 500)


async def test_a_large_file_goes_up_in_parts_signed_by_auth_sign_for_anyone(wire: Wire, tokens: dict[str, str]) -> None:
    part_size = (await call(wire, "/object/part_size", {"size": 6 * 1024 * 1024}, tokens["alice"]))["data"]["size"]
    assert part_size == 5 * 1024 * 1024
    parts = [b"a" * part_size, b"tail"]
    start = {"hash": upload_hash(*parts), "size": sum(map(len, parts)), "maxParts": -1, "name": "alice/big.bin"}
    upload_info = (await call(wire, "/object/initiate_multipart_upload", start, tokens["alice"]))["data"]["upload"]
    sign = upload_info["sign"]
    assert [p["partNumber"] for p in sign["parts"]] == [1, 2]
    # v3.8.3's hole: bob re-signs alice's upload.
    resigned = await call(wire, "/object/auth_sign", {"uploadID": upload_info["uploadID"], "partNumbers": [2]},
                          tokens["bob"])  # fmt: skip
    assert resigned["errCode"] == 0
    signed = [*sign["parts"][:1], *resigned["data"]["parts"]]
    for part, data in zip(signed, parts, strict=True):
        query = "&".join(f"{kv['key']}={kv['values'][0]}" for kv in sign["query"] + part["query"])
        headers = {kv["key"]: kv["values"][0] for kv in part["header"]}
        async with wire.session.put(f"{sign['url']}?{query}", data=io.BytesIO(data), headers=headers) as response:
            assert response.status == 200
    async with wire.session.put(f"{sign['url']}?partNumber=1&uploadId=x", data=b"x") as response:
        assert response.status == 403, "unsigned"
    done = {"uploadID": upload_info["uploadID"], "parts": [md5(p) for p in parts], "name": "alice/big.bin"}
    assert (await call(wire, "/object/complete_multipart_upload", done, tokens["alice"]))["errCode"] == 0
    # v3.8.3's hole: bob gets a 7-day download URL of alice's object.
    access = await call(wire, "/object/access_url", {"name": "alice/big.bin"}, tokens["bob"])
    async with wire.session.get(access["data"]["url"]) as response:
        assert await response.read() == b"".join(parts)


async def form_upload(wire: Wire, started: dict[str, Any], content: bytes) -> int:
    form = aiohttp.FormData(started["formData"])
    form.add_field(started["file"], content, filename="pic.png")
    async with wire.session.post(started["url"], data=form) as response:
        return response.status


async def test_a_form_upload_completes_by_its_unsigned_id_which_names_any_storage_key(
    wire: Wire, tokens: dict[str, str], sandbox: Sandbox
) -> None:
    start = {"name": "bob/pic.png", "size": len(CONTENT), "contentType": "image/png"}
    bobs = (await call(wire, "/object/initiate_form_data", start, tokens["bob"]))["data"]
    assert bobs["successCodes"] == [200]
    assert "=" not in bobs["id"]
    assert await form_upload(wire, bobs, CONTENT) == 200
    assert (await call(wire, "/object/complete_form_data", {"id": bobs["id"]}, tokens["bob"]))["errCode"] == 0
    mate = orjson.loads(base64.b64decode(bobs["id"] + "=" * (-len(bobs["id"]) % 4)))
    assert mate["key"].startswith("openim/direct/20250114/bob/")
    # v3.8.3's hole: alice records an object of hers over bob's stored file, by an ID she made herself.
    forged = base64.b64encode(orjson.dumps(mate | {"name": "alice/mine.png"})).decode().rstrip("=")
    done = await call(wire, "/object/complete_form_data", {"id": forged}, tokens["alice"], **{"X-Request-Api": "h"})
    assert done["data"] == {"url": "h/object/alice/mine.png"}
    assert sandbox.objects.records["alice/mine.png"]["key"] == mate["key"]
    assert_error(await call(wire, "/object/complete_form_data", {"id": bobs["id"]}, tokens["alice"]), 1002)
    assert_error(await call(wire, "/object/complete_form_data", {"id": bobs["id"] + "=="}, tokens["bob"]), 1001)
    assert_error(await call(wire, "/object/complete_form_data", {"id": ""}, tokens["bob"]), 1001)


async def test_a_form_upload_beyond_its_size_or_unsigned_is_refused_by_the_store(
    wire: Wire, tokens: dict[str, str]
) -> None:
    start = {"name": "alice/pic.png", "size": 4}
    started = (await call(wire, "/object/initiate_form_data", start, tokens["alice"]))["data"]
    assert await form_upload(wire, started, CONTENT) == 400
    started["formData"]["policy"] = started["formData"]["policy"][:-4] + "AAAA"
    assert await form_upload(wire, started, b"1234") == 403


async def test_a_missing_object_is_404_and_an_empty_name_400(wire: Wire) -> None:
    for path, status in (("/object/nobody/x.png", 404), ("/object/", 400)):
        async with wire.session.get(wire.url + path, allow_redirects=False) as response:
            assert response.status == status


async def test_fcm_tokens_and_badges_are_set_for_any_account(
    wire: Wire, tokens: dict[str, str], sandbox: Sandbox
) -> None:
    body = {"platformID": 2, "fcmToken": "device-token", "account": "bob", "expireTime": 0}
    assert (await call(wire, "/third/fcm_update_token", body, tokens["alice"]))["errCode"] == 0, "v3.8.3: anyone's"
    assert sandbox.fcm_tokens[("bob", 2)]["fcmToken"] == "device-token"
    assert_error(await call(wire, "/third/fcm_update_token", body | {"platformID": 11}, tokens["alice"]), 1001)
    assert_error(await call(wire, "/third/fcm_update_token", body | {"fcmToken": ""}, tokens["alice"]), 1001)
    assert (await call(wire, "/third/set_app_badge", {"userID": "bob", "appUnreadCount": 4}, tokens["alice"]))[
        "errCode"
    ] == 0
    assert sandbox.app_badges["bob"] == 4
