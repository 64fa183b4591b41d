"""The object store behind ``/object/*``: OpenIM's controller (``tools s3/cont``) over a stand-in for MinIO.

OpenIM keeps an object record per name (``model.Object``: the name a user uploaded under, the
storage key it points at, its size, hash and content type) and leaves the bytes to MinIO, which
the client reaches directly through presigned URLs. Here the bytes live in memory, and the
sandbox's own app answers the presigned requests under ``/<bucket>/`` (``storage_handler``), with
the sandbox's own HMAC as the signature where MinIO checks AWS SigV4: a URL or header the
sandbox did not sign, or one past its expiry, is refused as MinIO refuses it (403). The key
layout, the upload IDs (base64 JSON, unsigned) and the hash deduplication are v3.8.3's.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import math
import os
import time
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from aiohttp import web

from .envelope import CodeError

BUCKET = "openim"  # config/minio.yml bucket
MIN_PART_SIZE, MAX_PART_SIZE, MAX_NUM_SIZE = 5 * 1024 * 1024, 5 * 1024 * 1024 * 1024, 10_000  # s3/minio
HASH_PATH, TEMP_PATH, DIRECT_PATH = "openim/data/hash/", "openim/temp/", "openim/direct"  # s3/cont/consts.go
PRESIGNED, MULTIPART = 2, 1  # the upload ID's type
DEFAULT_EXPIRE = 7 * 86400  # internal/rpc/third: defaultExpire, the access URLs' lifetime
PART_SIGN_EXPIRE = 86400  # AuthSign's expiry for part uploads
FORM_DATA_EXPIRE = 600  # InitiateFormData: 10 minutes for a user


class StorageError(CodeError):
    """What the object store (MinIO) answers: a plain error to OpenIM, which reports it as a 500."""

    def __init__(self, message: str) -> None:
        super().__init__(500, "", msg=message)


@dataclasses.dataclass
class Stored:
    data: bytes

    @property
    def etag(self) -> str:
        return hashlib.md5(self.data, usedforsecurity=False).hexdigest()


@dataclasses.dataclass
class ObjectStore:
    """The bucket, its multipart uploads in progress, and OpenIM's object records by name."""

    clock: Callable[[], float] = time.time
    secret: bytes = dataclasses.field(default_factory=lambda: os.urandom(16))
    keys: dict[str, Stored] = dataclasses.field(default_factory=dict)
    uploads: dict[str, dict[int, Stored]] = dataclasses.field(default_factory=dict)  # uploadId -> part -> bytes
    records: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # name -> model.Object

    # -- OpenIM's controller ---------------------------------------------------------------------

    @staticmethod
    def part_size(size: int) -> int:
        """``Minio.PartSize``."""
        if size <= 0:
            raise StorageError("size must be greater than 0")
        if size > MAX_PART_SIZE * MAX_NUM_SIZE:
            raise StorageError("MINIO size must be less than the maximum allowed limit")
        if size <= MIN_PART_SIZE * MAX_NUM_SIZE:
            return MIN_PART_SIZE
        return math.ceil(size / MAX_NUM_SIZE)

    def new_upload_id(self) -> str:
        return os.urandom(16).hex()

    def stat(self, key: str) -> Stored:
        stored = self.keys.get(key)
        if stored is None:
            raise StorageError(f"The specified key does not exist: {key}")
        return stored

    def now_path(self) -> str:
        """``Controller.NowPath``: yyyy/mm/dd/hh/mm/ss."""
        return time.strftime("%Y/%m/%d/%H/%M/%S", time.gmtime(self.clock()))

    # -- presigning, as MinIO's client does it (with the sandbox's own signature) -----------------

    def _signature(self, *parts: object) -> str:
        message = "\n".join(str(p) for p in parts).encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def presigned(self, endpoint: str, method: str, key: str, expires: int) -> str:
        """A presigned ``method`` URL for ``key``, valid ``expires`` seconds from now."""
        date = int(self.clock())
        signature = self._signature(method, key, date, expires)
        query = {"X-Amz-Date": date, "X-Amz-Expires": expires, "X-Amz-Signature": signature}
        return f"{endpoint}/{BUCKET}/{quote(key)}?{urlencode(query)}"

    def part_headers(self, key: str, upload_id: str, part_number: int) -> dict[str, list[str]]:
        """The headers ``AuthSign`` hands out for one part's PUT (``signer.SignV4Trailer``'s, here the sandbox's)."""
        date = int(self.clock())
        signature = self._signature("PUT", key, upload_id, part_number, date)
        return {"Authorization": [f"SANDBOX-HMAC-SHA256 Date={date}, Signature={signature}"],
                "X-Amz-Content-Sha256": ["UNSIGNED-PAYLOAD"]}  # fmt: skip

    def form_policy(self, endpoint: str, key: str, size: int, content_type: str, expires: float) -> dict[str, Any]:
        """``Minio.FormData``: a POST policy for ``key``, its fields and where to post them."""
        conditions: list[Any] = [["eq", "$key", key], ["eq", "$bucket", BUCKET]]
        conditions.append(["eq", "$success_action_status", "200"])
        if size > 0:
            conditions.append(["content-length-range", 0, size])
        if content_type:
            conditions.append(["eq", "$Content-Type", content_type])
        policy = base64.b64encode(orjson.dumps({"expiration": int(expires), "conditions": conditions})).decode()
        fields = {"key": key, "bucket": BUCKET, "policy": policy, "success_action_status": "200",
                  "x-amz-signature": self._signature("POST", policy)}  # fmt: skip
        if content_type:
            fields["Content-Type"] = content_type
        return {"url": f"{endpoint}/{BUCKET}", "file": "file", "formData": fields}

    # -- the storage's side of those URLs -------------------------------------------------------

    def _valid_url(self, method: str, key: str, query: Any) -> bool:
        try:
            date, expires = int(query.get("X-Amz-Date", "")), int(query.get("X-Amz-Expires", ""))
        except ValueError:
            return False
        good = self._signature(method, key, date, expires)
        return hmac.compare_digest(good, query.get("X-Amz-Signature", "")) and self.clock() <= date + expires

    def _valid_part(self, key: str, upload_id: str, part_number: int, authorization: str) -> bool:
        pairs = authorization.removeprefix("SANDBOX-HMAC-SHA256 ").split(",")
        fields = dict(pair.strip().split("=", 1) for pair in pairs if "=" in pair)
        try:
            date = int(fields.get("Date", ""))
        except ValueError:
            return False
        good = self._signature("PUT", key, upload_id, part_number, date)
        return hmac.compare_digest(good, fields.get("Signature", "")) and self.clock() <= date + PART_SIGN_EXPIRE

    def _valid_form(self, form: Any) -> dict[str, Any] | None:
        policy = str(form.get("policy", ""))
        if not hmac.compare_digest(self._signature("POST", policy), str(form.get("x-amz-signature", ""))):
            return None
        try:
            decoded: dict[str, Any] = orjson.loads(base64.b64decode(policy))
        except ValueError:
            return None
        return decoded if self.clock() <= decoded["expiration"] else None

    async def storage_handler(self, request: web.Request) -> web.StreamResponse:
        """MinIO's answers to the presigned requests: PUT an object or a part, POST a form, GET an object."""
        key = request.path.removeprefix(f"/{BUCKET}").removeprefix("/")
        query = request.query
        if request.method == "PUT" and "uploadId" in query:
            upload_id, number = query["uploadId"], query.get("partNumber", "")
            parts = self.uploads.get(upload_id)
            authorization = request.headers.get("Authorization", "")
            if not number.isdigit() or not self._valid_part(key, upload_id, int(number), authorization):
                return _s3_error(403, "AccessDenied")
            if parts is None:
                return _s3_error(404, "NoSuchUpload")
            parts[int(number)] = stored = Stored(await request.read())
            return web.Response(headers={"ETag": f'"{stored.etag}"'})
        if request.method == "PUT" and self._valid_url("PUT", key, query):
            self.keys[key] = stored = Stored(await request.read())
            return web.Response(headers={"ETag": f'"{stored.etag}"'})
        if request.method == "GET" and self._valid_url("GET", key, query):
            found = self.keys.get(key)
            return _s3_error(404, "NoSuchKey") if found is None else web.Response(body=found.data)
        if request.method == "POST" and not key:
            form = _form_fields(request.headers.get("Content-Type", ""), await request.read())
            policy = self._valid_form(form)
            data = form.get("file")
            if policy is None or not isinstance(data, bytes):
                return _s3_error(403, "AccessDenied")
            limits = [c for c in policy["conditions"] if c[0] == "content-length-range"]
            if limits and len(data) > limits[0][2]:
                return _s3_error(400, "EntityTooLarge")
            self.keys[str(form["key"])] = Stored(data)
            return web.Response(status=200)
        return _s3_error(403, "AccessDenied")


def _form_fields(content_type: str, body: bytes) -> dict[str, Any]:
    """A multipart/form-data body's fields: text, and bytes for the file. Parsed from the bytes read, which
    a middleware may have read before."""
    message = BytesParser(policy=policy.HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields: dict[str, Any] = {}
    for part in message.iter_parts() if message.is_multipart() else []:
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            fields[name] = payload if part.get_filename() else payload.decode() if isinstance(payload, bytes) else ""
    return fields


def _s3_error(status: int, code: str) -> web.Response:
    return web.Response(status=status, text=f"<Error><Code>{code}</Code></Error>", content_type="application/xml")
