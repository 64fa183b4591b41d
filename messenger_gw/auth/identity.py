"""Who a user is at login: the pluggable identity verifier.

* :class:`UserServiceVerifier` asks the app's user-service (contract in
  ``docs/user-service.md``).
* :class:`DevOTPVerifier`, in dev mode only, accepts one configured code.

Either answers a :class:`VerifiedUser` or raises :class:`InvalidCredentials`
(the client should ask the user again) or :class:`VerifierUnavailable`.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
import orjson
from aiohttp import web

from messenger_gw import errors
from messenger_gw.settings import Secret

log = logging.getLogger(__name__)

VERIFY_PATH = "/v1/identity/verify"


@dataclasses.dataclass(frozen=True, slots=True)
class VerifiedUser:
    user_id: str
    nickname: str
    face_url: str = ""


class InvalidCredentials(errors.GatewayError):
    status = 401
    code = errors.INVALID_CREDENTIALS

    def __init__(self, detail: str) -> None:
        super().__init__("The credentials were not accepted", detail=detail)


class VerifierUnavailable(errors.GatewayError):
    status = 503
    code = errors.IDENTITY_VERIFIER_UNAVAILABLE
    level = logging.ERROR

    def __init__(self, detail: str) -> None:
        super().__init__("Login is unavailable right now; try again shortly", detail=detail)


class IdentityVerifier(Protocol):
    async def verify(self, credentials: Mapping[str, Any], platform_id: int, operation_id: str) -> VerifiedUser: ...


def valid_user_id(value: object) -> bool:
    # OpenIM's rule (protocol:util/datautil): Unicode letters, digits and '_'.
    return isinstance(value, str) and 0 < len(value) <= 64 and all(c.isalnum() or c == "_" for c in value)


class UserServiceVerifier:
    def __init__(self, session: aiohttp.ClientSession, url: str, token: Secret, *, timeout: float) -> None:
        self._session = session
        self._url = url.rstrip("/") + VERIFY_PATH
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def verify(self, credentials: Mapping[str, Any], platform_id: int, operation_id: str) -> VerifiedUser:
        body = orjson.dumps({"credentials": credentials, "platformID": platform_id})
        headers = {
            "Authorization": f"Bearer {self._token.reveal()}",
            "Content-Type": "application/json",
            "X-Request-ID": operation_id,
        }
        try:
            async with self._session.post(self._url, data=body, headers=headers, timeout=self._timeout) as response:
                status, raw = response.status, await response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise VerifierUnavailable(f"user-service unreachable: {type(exc).__name__}") from None
        if status in (400, 401, 404, 422):
            raise InvalidCredentials(f"user-service answered {status}")
        if status == 403:
            raise VerifierUnavailable("user-service refused the gateway's service token (USER_SERVICE_TOKEN)")
        if status != 200:
            raise VerifierUnavailable(f"user-service answered {status}")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise VerifierUnavailable("user-service answered non-JSON") from None
        if not isinstance(data, dict) or not valid_user_id(data.get("userID")):
            raise VerifierUnavailable("user-service answered without a valid userID")
        nickname = data.get("nickname")
        face_url = data.get("faceURL")
        return VerifiedUser(
            user_id=data["userID"],
            nickname=nickname if isinstance(nickname, str) and nickname else data["userID"],
            face_url=face_url if isinstance(face_url, str) else "",
        )


class DevOTPVerifier:
    """Dev mode only: ``{"userID": ..., "code": <the configured code>}`` logs in as that user."""

    def __init__(self, code: Secret) -> None:
        self._code = code.reveal().encode()

    async def verify(self, credentials: Mapping[str, Any], platform_id: int, operation_id: str) -> VerifiedUser:
        user_id, code = credentials.get("userID"), credentials.get("code")
        if not valid_user_id(user_id) or not isinstance(code, str):
            raise errors.InvalidField('Dev login takes credentials {"userID": <letters, digits, _>, "code": "..."}')
        if not hmac.compare_digest(code.encode(), self._code):
            raise InvalidCredentials("wrong dev OTP code")
        assert isinstance(user_id, str)
        return VerifiedUser(user_id=user_id, nickname=user_id)


IDENTITY_VERIFIER: web.AppKey[IdentityVerifier] = web.AppKey("identity_verifier", IdentityVerifier)
