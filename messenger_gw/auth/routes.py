"""``/auth/*`` for clients and ``/internal/provision`` for the user-service.

* ``POST /auth/handshake``: X25519 key agreement; answers the session.
* ``POST /auth/login`` (signed, or JWT): verify the user, provision OpenIM, bind the session.
* ``POST /auth/logout`` (signed): revoke the session, and the imToken its login handed out.
* ``GET /auth/session`` (signed, or JWT): who the caller is.
* ``POST /internal/provision`` (service token): provisioning for a given user and platform.
"""

from __future__ import annotations

import hmac
from typing import TypeGuard

import orjson
from aiohttp import web

from messenger_gw import errors
from messenger_gw.edge import client_ip, read_json_object
from messenger_gw.moderation import RateLimit
from messenger_gw.openim import IM_TOKENS
from messenger_gw.operation_id import OPERATION_ID
from messenger_gw.settings import SETTINGS

from .authenticator import AUTHENTICATOR
from .caller import Caller
from .handshake import InvalidPublicKey, decode_public_key
from .identity import IDENTITY_VERIFIER, valid_user_id
from .provisioning import PROVISIONER, Provisioned
from .sessions import SESSIONS

HANDSHAKE_RATE_LIMIT: web.AppKey[RateLimit] = web.AppKey("handshake_rate_limit", RateLimit)


class BadPublicKey(errors.BadRequest):
    code = errors.INVALID_PUBLIC_KEY


class LowOrderPublicKey(errors.BadRequest):
    code = errors.LOW_ORDER_PUBLIC_KEY


class UnknownPlatform(errors.BadRequest):
    code = errors.UNKNOWN_PLATFORM


class SessionOfAnotherUser(errors.Forbidden):
    code = errors.SESSION_OF_ANOTHER_USER


class ServiceTokenRefused(errors.GatewayError):
    status = 401
    code = errors.UNAUTHENTICATED


def add_routes(app: web.Application) -> None:
    app.router.add_post("/auth/handshake", handshake)
    app.router.add_post("/auth/login", login)
    app.router.add_post("/auth/logout", logout)
    app.router.add_get("/auth/session", session_info)
    app.router.add_post("/internal/provision", internal_provision)


async def handshake(request: web.Request) -> web.Response:
    app = request.app
    await app[HANDSHAKE_RATE_LIMIT].hit(client_ip(request, app[SETTINGS].trusted_proxies))
    body = await read_json_object(request)
    key_text, platform_id = body.get("clientPublicKey"), body.get("platformID")
    if not isinstance(key_text, str):
        raise BadPublicKey("clientPublicKey must be a base64url-encoded X25519 public key")
    if not _is_platform(platform_id):
        raise UnknownPlatform("platformID must be one of OpenIM's client platforms, 1 to 9")
    try:
        session, server_key = await app[SESSIONS].create(platform_id, decode_public_key(key_text))
    except InvalidPublicKey as exc:
        raise (LowOrderPublicKey if exc.low_order else BadPublicKey)(str(exc)) from None
    return _json({"sessionId": session.id, "serverPublicKey": server_key, "expiresAt": session.expires_at})


async def login(request: web.Request) -> web.Response:
    app = request.app
    caller = await app[AUTHENTICATOR].authenticate(request)
    operation_id = request[OPERATION_ID]
    if caller.via == "jwt":
        # The app's JWT already proves who this is.
        assert caller.user_id is not None
        return _provisioned(
            await app[PROVISIONER].provision(
                caller.user_id, caller.platform_id, nickname=caller.user_id, operation_id=operation_id
            )
        )
    session = caller.session
    assert session is not None
    credentials = (await read_json_object(request)).get("credentials")
    if not isinstance(credentials, dict):
        raise errors.InvalidField("credentials must be a JSON object")
    user = await app[IDENTITY_VERIFIER].verify(credentials, session.platform_id, operation_id)
    if session.user_id is not None and session.user_id != user.user_id:
        raise SessionOfAnotherUser("This session belongs to another user; start a new handshake")
    provisioned = await app[PROVISIONER].provision(
        user.user_id, session.platform_id, nickname=user.nickname, operation_id=operation_id
    )
    # Bound only once everything else worked, so a failed login leaves the session anonymous.
    if session.user_id is None:
        await app[SESSIONS].bind(session, user.user_id)
    return _provisioned(provisioned)


async def logout(request: web.Request) -> web.Response:
    caller = await request.app[AUTHENTICATOR].authenticate(request)
    session = caller.session
    if session is None:
        raise errors.BadRequest("Logout ends a signed session; a JWT simply expires")
    await request.app[SESSIONS].revoke(session)
    if session.user_id is not None:
        # The imToken its login handed out (an OpenIM SDK's credential on /im) ends with it.
        await request.app[IM_TOKENS].drop(session.user_id, session.platform_id)
    return web.Response(status=204)


async def session_info(request: web.Request) -> web.Response:
    caller: Caller = await request.app[AUTHENTICATOR].authenticate(request)
    info: dict[str, object] = {"userID": caller.user_id, "platformID": caller.platform_id, "via": caller.via}
    if caller.session is not None:
        info |= {"sessionId": caller.session.id, "expiresAt": caller.session.expires_at}
    return _json(info)


async def internal_provision(request: web.Request) -> web.Response:
    app = request.app
    expected = app[SETTINGS].login.internal_service_token
    if expected is None:
        raise web.HTTPNotFound()
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {expected.reveal()}".encode()):
        raise ServiceTokenRefused("Authentication failed", detail="bad service token on /internal/provision")
    body = await read_json_object(request)
    user_id, platform_id, nickname = body.get("userID"), body.get("platformID"), body.get("nickname")
    if not valid_user_id(user_id):
        raise errors.InvalidField("userID must be 1 to 64 letters, digits or '_'")
    if not _is_platform(platform_id):
        raise UnknownPlatform("platformID must be one of OpenIM's client platforms, 1 to 9")
    if nickname is not None and (not isinstance(nickname, str) or not nickname):
        raise errors.InvalidField("nickname, when given, must be a non-empty string")
    assert isinstance(user_id, str)
    provisioned = await app[PROVISIONER].provision(
        user_id, platform_id, nickname=nickname or user_id, operation_id=request[OPERATION_ID]
    )
    return _provisioned(provisioned)


def _is_platform(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 9


def _provisioned(result: Provisioned) -> web.Response:
    return _json(result.as_json())


def _json(body: object) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")
