"""``/third/*`` and ``/object/*`` (``internal/api/third.go``, ``internal/rpc/third`` of v3.8.3).

The upload routes build the URLs they answer from ``X-Request-Api``, or from the ``Host`` the
request came to (``setURLPrefix``: ``<X-Request-Api>/object/<name>``), whatever ``urlPrefix`` the
body held. A user may upload only under ``<userID>/`` (``checkUploadName``); admins anywhere.
The objects and their bytes are ``objects.py``'s.

v3.8.3's holes are kept: ``fcm_update_token`` and ``set_app_badge`` take any account,
``auth_sign`` signs parts for any upload ID and ``access_url`` presigns any object name, the
upload IDs of both kinds are unsigned base64 JSON that ``complete_*`` believe (storage key
included), ``GET /object/<name>`` needs no token, and the "too many parts" check is the wrong way
round (``maxParts`` above the part count is refused, not below).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import os
import posixpath
import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from .envelope import Body, CodeError
from .objects import (
    BUCKET,
    DEFAULT_EXPIRE,
    DIRECT_PATH,
    FORM_DATA_EXPIRE,
    HASH_PATH,
    MAX_NUM_SIZE,
    MAX_PART_SIZE,
    MIN_PART_SIZE,
    MULTIPART,
    PRESIGNED,
    TEMP_PATH,
    Stored,
)
from .routing import caller_of, check, route
from .state import STORAGE_ENDPOINT, URL_PREFIX, Caller, Sandbox

IOS_PLATFORM, ADMIN_PLATFORM = 1, 10  # FcmUpdateTokenReq.Check: 1 to 10


def url_prefix(headers: Mapping[str, str], host: str, secure: bool) -> str:
    """``setURLPrefix``: the base of the URLs an upload route answers."""
    given = headers.get("X-Request-Api", "")
    if given:
        return given + ("object/" if given.endswith("/") else "/object/")
    return f"{'https' if secure else 'http'}://{host}/object/"


# -- /third --------------------------------------------------------------------------------------------


@route("/third/fcm_update_token")
def fcm_update_token(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    # No check in v3.8.3: the caller's FCM token goes to whatever account the body names.
    platform, account = body.integer("platformID"), body.string("account")
    check(IOS_PLATFORM <= platform <= ADMIN_PLATFORM and bool(body.string("fcmToken")) and bool(account))
    sb.fcm_tokens[(account, platform)] = {"fcmToken": body.string("fcmToken"), "expireTime": body.integer("expireTime")}
    return None


@route("/third/set_app_badge")
def set_app_badge(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    user_id = body.string("userID")  # no check in v3.8.3
    check(bool(user_id))
    sb.app_badges[user_id] = body.integer("appUnreadCount")
    return None


# -- /object: OpenIM's side ---------------------------------------------------------------------------------


def _check_upload_name(sb: Sandbox, who: Caller, name: str) -> None:
    """``checkUploadName``."""
    if not name:
        raise CodeError(1001, "name is empty")
    if name.startswith("/"):
        raise CodeError(1001, "name cannot start with `/`")
    if not name.strip():
        raise CodeError(1001, "object name cannot be empty")
    if len(name) > 1024:
        raise CodeError(1001, "object name cannot be longer than 1024 characters")
    if not who.is_admin and not name.startswith(who.user_id + "/"):
        raise CodeError(1002, f"name must start with `{who.user_id}/`")


def _set_object(sb: Sandbox, who: Caller, name: str, **fields: Any) -> None:
    """``SetObject``: the record of ``name``, replacing any earlier one."""
    sb.objects.records[name] = {"name": name, "userID": who.user_id, "createTime": sb.now_ms()} | fields


def _upload_id(kind: int, upload: str, key: str, size: int, md5: str) -> str:
    """``newMultipartUploadID``: standard base64 of its JSON, empty fields left out, unsigned."""
    fields = {"a": kind, "b": upload, "c": key, "d": size, "e": md5}
    return base64.b64encode(orjson.dumps({k: v for k, v in fields.items() if v})).decode()


def _parse_upload_id(upload_id: str) -> dict[str, Any]:
    try:
        fields = orjson.loads(base64.b64decode(upload_id, validate=True))
    except (binascii.Error, orjson.JSONDecodeError) as exc:
        raise CodeError(500, "", msg=f"invalid multipart upload id: {exc}") from None
    if not isinstance(fields, dict):
        raise CodeError(500, "", msg="invalid multipart upload id")
    return fields


def _sign_parts(sb: Sandbox, endpoint: str, key: str, upload: str, numbers: list[int]) -> dict[str, Any]:
    """``Minio.AuthSign``: where to PUT each part, and the headers that sign it."""
    return {
        "url": f"{endpoint}/{BUCKET}/{key}",
        "query": [{"key": "uploadId", "values": [upload]}],
        "header": None,
        "parts": [
            {"partNumber": n, "url": "", "query": [{"key": "partNumber", "values": [str(n)]}],
             "header": [{"key": k, "values": v} for k, v in sb.objects.part_headers(key, upload, n).items()]}
            for n in numbers
        ],
    }  # fmt: skip


@route("/object/part_limit")
def part_limit(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    return {"minPartSize": MIN_PART_SIZE, "maxPartSize": MAX_PART_SIZE, "maxNumSize": MAX_NUM_SIZE}


@route("/object/part_size")
def part_size(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    return {"size": sb.objects.part_size(body.integer("size"))}


@route("/object/initiate_multipart_upload")
def initiate_multipart_upload(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    who, name, prefix = caller_of(caller), body.string("name"), URL_PREFIX.get()
    _check_upload_name(sb, who, name)
    md5, size, max_parts = body.string("hash"), body.integer("size"), body.integer("maxParts")
    expire_time = sb.now_ms() + DEFAULT_EXPIRE * 1000
    store, endpoint = sb.objects, STORAGE_ENDPOINT.get()
    # Controller.InitiateUpload
    if size < 0:
        raise CodeError(500, "", msg="invalid size")
    try:
        digest = bytes.fromhex(md5)
    except ValueError:
        raise CodeError(500, "", msg="encoding/hex: invalid byte") from None
    if len(digest) != hashlib.md5(usedforsecurity=False).digest_size:
        raise CodeError(500, "", msg="invalid md5")
    size_of_part = store.part_size(size)
    parts = math.ceil(size / size_of_part)
    if max_parts > 0 and 0 < parts < max_parts:  # sic: v3.8.3 refuses fewer parts than maxParts
        raise CodeError(500, "", msg=f"too many parts: {parts}")
    stored = store.keys.get(HASH_PATH + md5)
    if stored is not None:  # HashAlreadyExistsError: the bytes are there already, under their hash
        _set_object(sb, who, name, hash=md5, key=HASH_PATH + md5, size=len(stored.data),
                    contentType=body.string("contentType"), group=body.string("cause"))  # fmt: skip
        return {"url": prefix + name}
    if size <= size_of_part:  # one presigned PUT
        key = posixpath.join(TEMP_PATH, store.now_path(), f"{md5}_{size}_{os.urandom(16).hex()}.presigned")
        url = store.presigned(endpoint, "PUT", key, DEFAULT_EXPIRE)
        upload_id = _upload_id(PRESIGNED, "", key, size, md5)
        sign: dict[str, Any] | None = {
            "url": "", "query": None, "header": None,
            "parts": [{"partNumber": 1, "url": url, "query": None, "header": None}],
        }  # fmt: skip
    else:  # a multipart upload of the hash's key
        upload = store.new_upload_id()
        store.uploads[upload] = {}
        numbers = list(range(1, (parts if max_parts < 0 else max_parts) + 1))
        sign = _sign_parts(sb, endpoint, HASH_PATH + md5, upload, numbers) if numbers else None
        upload_id = _upload_id(MULTIPART, upload, HASH_PATH + md5, size, md5)
    upload_info = {"uploadID": upload_id, "partSize": size_of_part, "sign": sign, "expireTime": expire_time}
    return {"url": "", "upload": upload_info}


@route("/object/auth_sign")
def auth_sign(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    # No check in v3.8.3: any upload ID, whoever began it.
    upload = _parse_upload_id(body.string("uploadID"))
    if upload.get("a") == PRESIGNED:
        raise CodeError(500, "", msg="presigned id not support auth sign")
    if upload.get("a") != MULTIPART:
        raise CodeError(500, "", msg="invalid upload id type")
    numbers = [int(n) for n in body.get("partNumbers") or []]
    return _sign_parts(sb, STORAGE_ENDPOINT.get(), str(upload.get("c", "")), str(upload.get("b", "")), numbers)


@route("/object/complete_multipart_upload")
def complete_multipart_upload(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    who, name, prefix = caller_of(caller), body.string("name"), URL_PREFIX.get()
    _check_upload_name(sb, who, name)
    store, part_hashes = sb.objects, body.strings("parts") or []
    # Controller.CompleteUpload
    upload = _parse_upload_id(body.string("uploadID"))
    md5, key, size = str(upload.get("e", "")), str(upload.get("c", "")), int(upload.get("d", 0))
    if hashlib.md5(",".join(part_hashes).encode(), usedforsecurity=False).hexdigest() != md5:
        raise CodeError(500, "", msg="md5 mismatching")
    target = HASH_PATH + md5
    if target not in store.keys:
        if upload.get("a") == MULTIPART:
            uploaded = store.uploads.get(str(upload.get("b", "")))
            if uploaded is None:
                raise CodeError(500, "", msg="The specified multipart upload does not exist.")
            if [uploaded[n].etag if n in uploaded else None for n in range(1, len(part_hashes) + 1)] != part_hashes:
                raise CodeError(500, "", msg="One or more of the specified parts could not be found.")
            # v3.8.3 leaves the size unchecked here ("todo: Validation size").
            store.keys[key] = Stored(b"".join(uploaded[n].data for n in range(1, len(part_hashes) + 1)))
            del store.uploads[str(upload["b"])]
            target = key
        elif upload.get("a") == PRESIGNED:
            stored = store.stat(key)
            store.keys.pop(key)  # cleanObject: the temporary copy goes whatever happens next
            if len(stored.data) != size:
                raise CodeError(500, "", msg="upload size mismatching")
            got = hashlib.md5(stored.etag.encode(), usedforsecurity=False).hexdigest()
            if got != md5:
                raise CodeError(1001, f"md5 mismatching {got} != {md5}")
            store.keys[target] = stored
        else:
            raise CodeError(500, "", msg="invalid upload id type")
    _set_object(sb, who, name, hash=md5, key=target, size=len(store.keys[target].data),
                contentType=body.string("contentType"), group=body.string("cause"))  # fmt: skip
    return {"url": prefix + name}


def access_url(sb: Sandbox, name: str, kind: str) -> dict[str, Any]:
    """``AccessURL``: a presigned download of ``name``'s bytes, valid 7 days (thumbnails not reproduced)."""
    if kind not in ("", "image"):
        raise CodeError(1001, "invalid query type")
    record = sb.objects.records.get(name)
    if record is None:
        raise CodeError(1004, "mongo: no documents in result")
    url = sb.objects.presigned(STORAGE_ENDPOINT.get(), "GET", record["key"], DEFAULT_EXPIRE)
    return {"url": url, "expireTime": sb.now_ms() + DEFAULT_EXPIRE * 1000}


@route("/object/access_url")
def access_url_route(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    # No check in v3.8.3: any object's name.
    query = body.get("query") or {}
    return access_url(sb, body.string("name"), str(query.get("type", "")) if isinstance(query, dict) else "")


@route("/object/initiate_form_data")
def initiate_form_data(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    who, name, size = caller_of(caller), body.string("name"), body.integer("size")
    if not name:
        raise CodeError(1001, "name is empty")
    if size <= 0:
        raise CodeError(1001, "size must be greater than 0")
    _check_upload_name(sb, who, name)
    duration, key = float(FORM_DATA_EXPIRE), ""
    if who.is_admin:  # an admin picks the lifetime and may name the storage key itself
        millis = body.integer("millisecond")
        duration = millis / 1000 if millis > 0 else FORM_DATA_EXPIRE
        key = name if body.boolean("absolute") else ""
    if not key:
        date = time.strftime("%Y%m%d", time.gmtime(sb.clock()))
        key = posixpath.join(DIRECT_PATH, date, who.user_id, os.urandom(16).hex() + posixpath.splitext(name)[1])
    content_type = body.string("contentType")
    mate = {"name": name, "size": size, "contentType": content_type, "group": body.string("group"), "key": key}
    expires = sb.clock() + duration
    form = sb.objects.form_policy(STORAGE_ENDPOINT.get(), key, size, content_type, expires)
    upload_id = base64.b64encode(orjson.dumps(mate)).decode().rstrip("=")  # RawStdEncoding
    return {"id": upload_id, "url": form["url"], "file": form["file"], "header": None, "formData": form["formData"],
            "expires": int(expires * 1000), "successCodes": [200]}  # fmt: skip


@route("/object/complete_form_data")
def complete_form_data(sb: Sandbox, caller: Caller | None, body: Body) -> Any:
    who, upload_id, prefix = caller_of(caller), body.string("id"), URL_PREFIX.get()
    if not upload_id:
        raise CodeError(1001, "id is empty")
    if "=" in upload_id or len(upload_id.replace("\r", "").replace("\n", "")) % 4 == 1:
        raise CodeError(1001, "invalid id illegal base64 data")
    try:
        raw = upload_id.replace("\r", "").replace("\n", "")  # Go's base64 decoder skips them
        mate = Body(orjson.loads(base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)))
        name, size, key = mate.string("name"), mate.integer("size"), mate.string("key")
    except (binascii.Error, orjson.JSONDecodeError, CodeError, AttributeError, TypeError) as exc:
        raise CodeError(1001, f"invalid id {exc}") from None
    _check_upload_name(sb, who, name)  # the name only: the key is believed as it stands
    stored = sb.objects.stat(key)
    if stored.data and len(stored.data) != size:
        raise CodeError(90007, "file size mismatch")
    _set_object(sb, who, name, hash="etag_" + stored.etag, key=key, size=len(stored.data),
                contentType=mate.string("contentType"), group=mate.string("group"))  # fmt: skip
    return {"url": prefix + name}


def object_redirect(sb: Sandbox, request: web.Request) -> web.Response:
    """``GET /object/*name`` (``ObjectRedirect``): no token, no operationID; a 302 to a 7-day download."""
    name = request.path.removeprefix("/object/")
    if not name:
        return web.Response(status=400, text="name is empty")
    try:
        found = access_url(sb, name, request.query.get("type", ""))
    except CodeError as exc:
        status = {1001: 400, 1004: 404}.get(exc.code, 500)
        return web.Response(status=status, text=exc.detail or exc.msg)
    return web.Response(status=302, headers={"Location": found["url"]})
