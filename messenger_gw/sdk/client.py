"""An async Python client for messenger-gw: handshake, RFC 9421 signed requests, login, /im calls.

    async with GatewayClient("http://127.0.0.1:8080") as gw:
        await gw.handshake(platform_id=5)
        login = await gw.login({"userID": "alice", "code": "000000"})
        info = await gw.call("/im/user/get_self_user_info", {})

:class:`SessionState` (the session ID and its key) can be saved to a file
with owner-only permissions and loaded again, which is how the
``messenger-gw client`` command keeps a session between invocations.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from messenger_gw.auth import (
    b64url_decode,
    b64url_encode,
    decode_public_key,
    derive_session_key,
    public_key_text,
    signatures,
)


class GatewayResponseError(Exception):
    """The gateway (or OpenIM behind it) answered with an error envelope or a non-2xx status."""

    def __init__(self, status: int, err_code: int, err_msg: str) -> None:
        super().__init__(f"HTTP {status}, errCode {err_code}: {err_msg}")
        self.status = status
        self.err_code = err_code
        self.err_msg = err_msg


@dataclasses.dataclass(frozen=True, slots=True)
class SessionState:
    session_id: str
    key: bytes = dataclasses.field(repr=False)
    platform_id: int
    expires_at: int

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "sessionId": self.session_id,
            "key": b64url_encode(self.key),
            "platformID": self.platform_id,
            "expiresAt": self.expires_at,
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(orjson.dumps(data))

    @classmethod
    def load(cls, path: Path) -> SessionState:
        data = orjson.loads(path.read_bytes())
        return cls(data["sessionId"], b64url_decode(data["key"]), data["platformID"], data["expiresAt"])


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None


class GatewayClient:
    def __init__(
        self,
        base_url: str,
        *,
        state: SessionState | None = None,
        http: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.state = state
        self._http = http or aiohttp.ClientSession()
        self._owns_http = http is None
        self._clock = clock
        parts = urlsplit(self.base_url)
        self._authority, self._scheme = parts.netloc, parts.scheme

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_http:
            await self._http.close()

    async def handshake(self, platform_id: int) -> SessionState:
        private = X25519PrivateKey.generate()
        body = {"clientPublicKey": public_key_text(private), "platformID": platform_id}
        reply = _checked(await self._send("POST", "/auth/handshake", orjson.dumps(body), {}))
        session_id = reply["sessionId"]
        key = derive_session_key(private, decode_public_key(reply["serverPublicKey"]), session_id)
        self.state = SessionState(session_id, key, platform_id, reply["expiresAt"])
        return self.state

    async def login(self, credentials: Mapping[str, Any]) -> Any:
        """Log the session in; answers ``{"userID", "imToken", "wsURL", "apiAddr", "expiresAt"}``: an OpenIM SDK
        client logs in to OpenIM with ``imToken``, ``wsURL`` as its ``wsAddr`` and ``apiAddr`` as its ``apiAddr``."""
        return _checked(await self.request("POST", "/auth/login", {"credentials": dict(credentials)}))

    async def logout(self) -> None:
        _checked(await self.request("POST", "/auth/logout"))
        self.state = None

    async def call(self, path: str, body: Any = None) -> Any:
        """POST a JSON body to a route such as ``/im/user/get_users_info``; answers the JSON reply."""
        return _checked(await self.request("POST", path, {} if body is None else body))

    async def request(self, method: str, path: str, body: Any = None) -> Response:
        """A signed request; ``body`` is JSON-encoded unless it is bytes already."""
        raw = body if isinstance(body, bytes) else (b"" if body is None else orjson.dumps(body))
        headers = self.signed_headers(method, path, raw)
        if raw:
            headers["Content-Type"] = "application/json"
        return await self._send(method, path, raw, headers)

    def signed_headers(self, method: str, path: str, body: bytes, *, nonce: str | None = None) -> dict[str, str]:
        """``Content-Digest``, ``Signature-Input`` and ``Signature`` for one request (``path`` may hold a query)."""
        if self.state is None:
            raise RuntimeError("no session: call handshake() first")
        target_path, _, query = path.partition("?")
        digest = signatures.content_digest(body)
        message = signatures.Message(
            method=method.upper(),
            path=target_path,
            query=query,
            headers={"content-digest": digest},
            authority=self._authority,
            scheme=self._scheme,
        )
        signed = signatures.sign(
            message,
            key=self.state.key,
            keyid=self.state.session_id,
            created=int(self._clock()),
            nonce=nonce or b64url_encode(os.urandom(16)),
        )
        return {"Content-Digest": digest, **signed}

    async def _send(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> Response:
        async with self._http.request(method, self.base_url + path, data=body or None, headers=headers) as response:
            return Response(response.status, dict(response.headers), await response.read())


def _checked(response: Response) -> Any:
    reply = response.json() if response.body else None
    if response.status >= 400:
        code = reply.get("errCode", 0) if isinstance(reply, dict) else 0
        msg = reply.get("errMsg", "") if isinstance(reply, dict) else response.body[:200].decode(errors="replace")
        raise GatewayResponseError(response.status, code, msg)
    if isinstance(reply, dict) and reply.get("errCode", 0) != 0:
        raise GatewayResponseError(response.status, reply["errCode"], reply.get("errMsg", ""))
    return reply
