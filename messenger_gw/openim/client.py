"""A typed async client for OpenIM's REST API (v3.8.3).

Every call is a POST with the ``operationID`` header; OpenIM answers HTTP 200
with the envelope ``{"errCode", "errMsg", "errDlt", "data"}`` even on errors
(``openim-contract.md``, section 1). The client turns that envelope into a
typed result or one of these exceptions:

* OpenIMError - anything that kept a call from returning a result.
  + OpenIMUnavailable - no usable answer: OpenIM could not be reached or was too slow.
    - OpenIMConnectError - the connection failed; the request was never sent.
    - OpenIMTimeout - connected, but no complete answer within the timeout.
  + OpenIMProtocolError - an answer that is not OpenIM's envelope (HTTP 404 text,
    an empty HTTP 500, non-JSON, or ``data`` missing its fields).
  + OpenIMAPIError - OpenIM answered ``errCode != 0``; ``code``, ``msg`` and ``detail`` carry it.
    - ArgsError (1001), NoPermissionError (1002), RecordNotFoundError (1004),
      UserIDNotFoundError (1101), RegisteredAlreadyError (1102),
      GroupIDNotFoundError (1201), DismissedAlreadyError (1204), MsgAlreadyRevokeError (1404)
    - TokenError (1501-1507): the token in the call is not usable; fetching a new
      one and retrying once is the remedy. Subclasses: TokenExpiredError (1501),
      TokenInvalidError (1502), TokenMalformedError (1503), TokenNotValidYetError (1504),
      TokenUnknownError (1505), TokenKickedError (1506), TokenNotExistError (1507).

Other codes raise ``OpenIMAPIError`` itself. Keying on ``errCode`` only is
deliberate: ``errMsg``/``errDlt`` differ between OpenIM patch releases.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from messenger_gw.metrics import Metrics

from ._transport import Answer, Deadline, Deadlines, UpstreamPool
from ._transport import pool as upstream

ADMIN_PLATFORM_ID = 10
USER_PLATFORM_IDS = range(1, 10)


# -- exceptions ---------------------------------------------------------------


class OpenIMError(Exception):
    """Base class: the call did not produce a result."""

    kind: ClassVar[str]  # the ``kind`` label of messenger_gw_openim_errors_total


class OpenIMUnavailable(OpenIMError):
    kind = "unavailable"


class OpenIMConnectError(OpenIMUnavailable):
    kind = "connect"


class OpenIMTimeout(OpenIMUnavailable):
    kind = "timeout"


class OpenIMProtocolError(OpenIMError):
    kind = "protocol"


class OpenIMAPIError(OpenIMError):
    """OpenIM answered with a non-zero ``errCode``."""

    kind = "errcode"
    code: ClassVar[int] = 0
    _by_code: ClassVar[dict[int, type[OpenIMAPIError]]] = {}

    def __init__(self, code: int, msg: str, detail: str = "") -> None:
        # errDlt may quote a token (1503: "jwt parse error, token=..."): it is kept
        # on the exception for callers but never put in the exception's text.
        super().__init__(f"OpenIM errCode {code} ({msg})")
        self.errcode = code
        self.msg = msg
        self.detail = detail

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.code:
            OpenIMAPIError._by_code[cls.code] = cls

    @staticmethod
    def from_envelope(code: int, msg: str, detail: str) -> OpenIMAPIError:
        cls = OpenIMAPIError._by_code.get(code)
        if cls is None:
            cls = TokenError if 1501 <= code <= 1507 else OpenIMAPIError
        return cls(code, msg, detail)


class ArgsError(OpenIMAPIError):
    code = 1001


class NoPermissionError(OpenIMAPIError):
    code = 1002


class RecordNotFoundError(OpenIMAPIError):
    code = 1004


class UserIDNotFoundError(OpenIMAPIError):
    code = 1101


class RegisteredAlreadyError(OpenIMAPIError):
    code = 1102


class GroupIDNotFoundError(OpenIMAPIError):
    code = 1201


class DismissedAlreadyError(OpenIMAPIError):
    code = 1204


class MsgAlreadyRevokeError(OpenIMAPIError):
    code = 1404


class TokenError(OpenIMAPIError):
    """Errors 1501-1507: the token sent with the call cannot be used."""


class TokenExpiredError(TokenError):
    code = 1501


class TokenInvalidError(TokenError):
    code = 1502


class TokenMalformedError(TokenError):
    code = 1503


class TokenNotValidYetError(TokenError):
    code = 1504


class TokenUnknownError(TokenError):
    code = 1505


class TokenKickedError(TokenError):
    code = 1506


class TokenNotExistError(TokenError):
    code = 1507


# -- typed results --------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token from get_admin_token / get_user_token; ``expires_in`` is a duration in seconds."""

    token: str = dataclasses.field(repr=False)
    expires_in: int


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedToken:
    """What parse_token says of a token; ``expires_at`` is an absolute unix time."""

    user_id: str
    platform_id: int
    expires_at: int


@dataclasses.dataclass(frozen=True, slots=True)
class UserInfo:
    user_id: str
    nickname: str
    face_url: str
    ex: str
    create_time: int  # ms
    app_manager_level: int
    global_recv_msg_opt: int


@dataclasses.dataclass(frozen=True, slots=True)
class NewUser:
    user_id: str
    nickname: str
    face_url: str = ""
    ex: str = ""


# -- the client -------------------------------------------------------------------------


class Upstream(Protocol):
    """What an :class:`Exchange` runs on: OpenIM's client, or another service's behind a pool of its own
    (the legacy chat service), each counting and naming its failures its own way."""

    pool: UpstreamPool
    deadlines: Deadlines
    base_path: str

    def exchange_done(self, path: str, failure: BaseException | None, seconds: float) -> BaseException | None:
        """Count one exchange that took ``seconds``; the exception to raise instead of ``failure`` (a
        transport failure, or ``TimeoutError`` for a passed deadline), or ``failure`` itself."""


class Exchange:
    """:meth:`OpenIMClient.exchange`: a class rather than a generator-based context manager,
    which would add two frames to every wait on the upstream."""

    __slots__ = (
        "_answer", "_client", "_deadline", "_headers", "_label", "_method", "_payload", "_started",
        "_target",
    )  # fmt: skip

    def __init__(
        self,
        client: Upstream,
        path: str,
        payload: bytes,
        headers: Sequence[tuple[str, str]],
        query: str,
        method: str = "POST",
        label: str | None = None,
    ) -> None:
        """``label`` names the call to the client's ``exchange_done`` (a route template where the path
        holds parameters); by default, the path."""
        self._client = client
        self._label = label or path
        self._target = client.base_path + path + (f"?{query}" if query else "")
        self._payload = payload
        self._headers = headers
        self._method = method
        self._started = 0.0
        self._deadline: Deadline | None = None
        self._answer: Answer | None = None

    async def __aenter__(self) -> Answer:
        self._started = time.perf_counter()
        self._deadline = self._client.deadlines.start()
        request = self._client.pool.request
        try:
            try:
                self._answer = await request(self._method, self._target, self._headers, self._payload)
            except upstream.ConnectError:
                # A failed connect sent nothing, so one retry cannot apply a call twice.
                self._answer = await request(self._method, self._target, self._headers, self._payload)
        except BaseException as exc:
            self._finish(exc)
            raise
        self._deadline.pause()  # the peer's clock runs only while the caller waits on it: in read()
        return self._answer

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        assert self._answer is not None
        self._answer.close()
        self._finish(exc)

    async def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the answer (b"" at its end). Only the wait counts toward the deadlines:
        the read deadline starts again with each part, and the time the caller spends between parts
        (writing them to a slow client) is not the peer's."""
        assert self._answer is not None
        assert self._deadline is not None
        self._deadline.resume()
        data = await self._answer.read(size)
        self._deadline.pause()
        return data

    def _finish(self, exc: BaseException | None) -> None:
        """Stop the deadline and time the exchange; raise what the client makes of ``exc`` when it is a
        transport failure or the deadline's cancellation (it propagates as it is otherwise)."""
        assert self._deadline is not None
        failure = self._deadline.stop(exc)
        error = self._client.exchange_done(self._label, failure, time.perf_counter() - self._started)
        if error is not exc:
            assert error is not None
            raise error from exc


class OpenIMClient:
    """Calls OpenIM through one bounded pool of keep-alive connections.

    The pool is the transport seam: the app builds it with its connection limit
    and its connect and pool timeouts (``openim/_transport/pool.py``); tests may hand in any
    pool. Every call's read and total bounds are ``deadlines``. ``base_url`` may
    carry a path prefix (OpenIM behind a path-routing proxy); calls go under it.
    """

    def __init__(self, pool: UpstreamPool, base_url: str, *, metrics: Metrics, deadlines: Deadlines) -> None:
        self.pool = pool
        self._base_url = base_url.rstrip("/")
        self.base_path = self._base_url[len(pool.origin) :]
        if self._base_url[: len(pool.origin)] != pool.origin:
            raise ValueError(f"{base_url} is not under the pool's origin {pool.origin}")
        self.metrics = metrics
        self.deadlines = deadlines

    @property
    def base_url(self) -> str:
        return self._base_url

    def exchange_done(self, path: str, failure: BaseException | None, seconds: float) -> BaseException | None:
        """Time the call; a transport failure or a passed deadline becomes an :class:`OpenIMError`, and
        every OpenIM failure is counted by kind."""
        self.metrics.openim_call_done(path, seconds)
        error: BaseException | None
        if isinstance(failure, upstream.ConnectError):
            error = OpenIMConnectError(f"cannot connect to OpenIM at {self.base_url}: {failure.__cause__}")
        elif isinstance(failure, (TimeoutError, upstream.ConnectTimeout)):
            error = OpenIMTimeout(f"OpenIM at {self.base_url} did not answer {path} in time")
        elif isinstance(failure, upstream.UpstreamError):
            error = OpenIMUnavailable(f"OpenIM at {self.base_url} failed on {path}: {failure}")
        else:
            error = failure
        if isinstance(error, OpenIMError):
            errcode = error.errcode if isinstance(error, OpenIMAPIError) else None
            # A transport failure is counted by what the pool saw: connect, timeout, or the rule an answer broke.
            kind = failure.kind if isinstance(failure, upstream.UpstreamError) else error.kind
            self.metrics.openim_failed(path, kind, errcode)
        return error

    async def call(self, path: str, body: Mapping[str, Any], *, operation_id: str, token: str | None = None) -> Any:
        """POST ``body`` to ``path``; return the envelope's ``data`` (None when absent)."""
        headers = [("operationID", operation_id), ("Content-Type", "application/json")]
        if token is not None:
            headers.append(("token", token))
        exchange = self.exchange(path, orjson.dumps(body), headers)
        async with exchange as answer:
            return _parse_envelope(answer.status, await exchange.read(-1))

    def exchange(self, path: str, payload: bytes, headers: Sequence[tuple[str, str]], *, query: str = "") -> Exchange:
        """One POST to OpenIM, its answer open for reading; both :meth:`call` and the /im proxy use it.

        Transport failures, in sending or in reading the answer, become
        :class:`OpenIMUnavailable`, and a passed read or total deadline
        :class:`OpenIMTimeout`; every :class:`OpenIMError` raised inside is
        counted by kind, and the whole exchange is timed. The deadlines count
        only the time spent waiting on OpenIM: up to the answer's head, then
        within :meth:`Exchange.read`, which gets ``read`` seconds for each part.
        """
        return Exchange(self, path, payload, headers, query)

    # -- auth ----------------------------------------------------------------------

    async def get_admin_token(self, secret: str, user_id: str, *, operation_id: str) -> IssuedToken:
        data = await self.call(
            "/auth/get_admin_token", {"secret": secret, "userID": user_id}, operation_id=operation_id
        )
        return _issued_token(data)

    async def get_user_token(
        self, admin_token: str, user_id: str, platform_id: int, *, operation_id: str
    ) -> IssuedToken:
        data = await self.call(
            "/auth/get_user_token",
            {"userID": user_id, "platformID": platform_id},
            operation_id=operation_id,
            token=admin_token,
        )
        return _issued_token(data)

    async def parse_token(self, token: str, *, operation_id: str) -> ParsedToken:
        data = _object(await self.call("/auth/parse_token", {"token": token}, operation_id=operation_id))
        return ParsedToken(
            user_id=_field(data, "userID", str),
            platform_id=_field(data, "platformID", int),
            expires_at=_field(data, "expireTimeSeconds", int),
        )

    async def force_logout(self, admin_token: str, user_id: str, platform_id: int, *, operation_id: str) -> None:
        await self.call(
            "/auth/force_logout",
            {"userID": user_id, "platformID": platform_id},
            operation_id=operation_id,
            token=admin_token,
        )

    # -- users ---------------------------------------------------------------------

    async def user_register(self, admin_token: str, users: Sequence[NewUser], *, operation_id: str) -> None:
        body = {
            "users": [{"userID": u.user_id, "nickname": u.nickname, "faceURL": u.face_url, "ex": u.ex} for u in users]
        }
        await self.call("/user/user_register", body, operation_id=operation_id, token=admin_token)

    async def get_users_info(self, token: str, user_ids: Sequence[str], *, operation_id: str) -> list[UserInfo]:
        data = _object(
            await self.call("/user/get_users_info", {"userIDs": list(user_ids)}, operation_id=operation_id, token=token)
        )
        return [_user_info(_object(item)) for item in _list(data, "usersInfo")]

    async def account_check(self, admin_token: str, user_ids: Sequence[str], *, operation_id: str) -> dict[str, bool]:
        """Whether each user ID is registered."""
        data = _object(
            await self.call(
                "/user/account_check", {"checkUserIDs": list(user_ids)}, operation_id=operation_id, token=admin_token
            )
        )
        results = (_object(item) for item in _list(data, "results"))
        return {_field(r, "userID", str): _field(r, "accountStatus", int) == 1 for r in results}

    # -- misc ----------------------------------------------------------------------

    async def get_server_time(self, token: str, *, operation_id: str) -> int:
        """OpenIM's clock in unix milliseconds; a cheap authenticated round trip."""
        data = _object(await self.call("/msg/get_server_time", {}, operation_id=operation_id, token=token))
        server_time: int = _field(data, "serverTime", int)
        return server_time


OPENIM: web.AppKey[OpenIMClient] = web.AppKey("openim", OpenIMClient)


def new_pool(
    base_url: str, *, max_connections: int, connect: float, pool: float, kept_headers: frozenset[str] = frozenset()
) -> UpstreamPool:
    """The pool of connections to the service at ``base_url`` (OpenIM; the legacy chat service has one
    of its own): bounded in size, in the wait for a free connection and in connecting. The read and
    total bounds of each call are the :class:`Deadlines` of its client."""
    parts = urlsplit(base_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return UpstreamPool(origin, max_connections=max_connections, connect=connect, pool=pool, kept_headers=kept_headers)


# -- envelope parsing -------------------------------------------------------------------


def read_envelope(status: int, raw: bytes) -> dict[str, Any]:
    """OpenIM's envelope from an answer's body, or :class:`OpenIMProtocolError`."""
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise OpenIMProtocolError(f"OpenIM answered HTTP {status} with a body that is not JSON") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("errCode"), int):
        raise OpenIMProtocolError(f"OpenIM answered HTTP {status} with JSON that is not its envelope")
    return envelope


def _parse_envelope(status: int, raw: bytes) -> Any:
    envelope = read_envelope(status, raw)
    code = envelope["errCode"]
    if code != 0:
        raise OpenIMAPIError.from_envelope(code, str(envelope.get("errMsg", "")), str(envelope.get("errDlt", "")))
    if status != 200:
        raise OpenIMProtocolError(f"OpenIM answered HTTP {status} with errCode 0")
    return envelope.get("data")


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise OpenIMProtocolError(f"expected an object in data, got {type(data).__name__}")
    return data


def _field(data: Mapping[str, Any], name: str, kind: type[Any]) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise OpenIMProtocolError(f"data.{name}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def _list(data: Mapping[str, Any], name: str) -> list[Any]:
    value = data.get(name)
    if value is None:  # OpenIM sends empty repeated fields as null
        return []
    if not isinstance(value, list):
        raise OpenIMProtocolError(f"data.{name}: expected a list, got {type(value).__name__}")
    return value


def _issued_token(data: Any) -> IssuedToken:
    data = _object(data)
    return IssuedToken(token=_field(data, "token", str), expires_in=_field(data, "expireTimeSeconds", int))


def _user_info(item: Mapping[str, Any]) -> UserInfo:
    return UserInfo(
        user_id=_field(item, "userID", str),
        nickname=_field(item, "nickname", str),
        face_url=_field(item, "faceURL", str),
        ex=_field(item, "ex", str),
        create_time=_field(item, "createTime", int),
        app_manager_level=_field(item, "appMangerLevel", int),
        global_recv_msg_opt=_field(item, "globalRecvMsgOpt", int),
    )
