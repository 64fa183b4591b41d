"""``/ws``: OpenIM's client WebSocket through the gateway, every client frame checked (docs/websocket-guard.md).

**The upgrade** runs OpenIM v3.8.3's checks in OpenIM's order (``ws_server.go wsHandler``) and
answers as OpenIM does, so the SDK raises the events it raises against OpenIM:

1. too many connections (on this worker, or of this user): ``1601``;
2. ``token``, ``sendID``, an integer ``platformID``, and ``sdkType=js`` (the guard reads JSON
   frames; OpenIM would also take ``go``'s gob frames, which the guard cannot check): ``1602``;
3. the token, verified by the gateway itself (``auth.ImTokenVerifier``: OpenIM's signature and
   claims, the very token stored for its platform, its user not banned): ``1501``-``1507``,
   as a text frame after the upgrade and then a dropped connection when ``isMsgResp`` is true;
4. the token's user and platform must be ``sendID`` and ``platformID``: ``1502``.

Every other refusal is plain HTTP 200 with OpenIM's envelope and no upgrade. Only then is
OpenIM's msg-gateway (``OPENIM_WS_URL_INTERNAL``) dialled, with the same query; its own refusal
reaches the client as OpenIM sent it, and after the upgrade every frame it sends (its handshake
answer, the answers, the pushes, its pongs and its kick) is forwarded unchanged, unread
(:mod:`._openim_socket`).

**Client frames**: text frames (the SDK's ``{"type":"ping"}``) are relayed; each binary frame is
a request, decoded and checked (:mod:`.policy`) before it is relayed. A refused request is
answered with OpenIM's error answer for its ``reqIdentifier`` and ``msgIncr`` and never reaches
OpenIM; more than ``WS_MAX_REFUSALS`` in a minute close the connection (1008). A frame that is no
request at all closes it unanswered, as OpenIM does.

**The gateway holds every socket**, so it ends them: a ban, a force logout or a replaced imToken
(heard on the store's invalidation channel, on every replica) sends OpenIM's kick frame (2002)
and drops the connection, as OpenIM does; a client silent for ``WS_IDLE_TIMEOUT`` is dropped;
on shutdown every socket is closed with 1001 "going away" so its client reconnects elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping

from aiohttp import WSCloseCode, WSMsgType, web

from messenger_gw import errors
from messenger_gw.auth import ImTokenRejected, ImTokenVerifier
from messenger_gw.background import running
from messenger_gw.metrics import Metrics
from messenger_gw.moderation import BAN_INVALIDATION_KIND
from messenger_gw.openim import IM_TOKEN_INVALIDATION_KIND
from messenger_gw.settings import WsGuardSettings
from messenger_gw.store import Invalidation, StoreError

from . import frames
from ._openim_socket import OpenIMSocket, Refused, UpgradeFailed, connect, sendable_close_code
from .policy import DENIED, FramePolicy, Refusal

log = logging.getLogger(__name__)

GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})  # what strconv.ParseBool reads as true
GO_INT = re.compile(r"[+-]?[0-9]+\Z")  # what strconv.Atoi takes
REFUSAL_WINDOW = 60.0
CLOSE_TIMEOUT = 2.0  # for the other side's close frame, either way
RECHECK_CONCURRENCY = 50
UPGRADE_CONCURRENCY = 64  # upgrades verifying their token or dialling OpenIM at once, per worker
MAX_UPSTREAM_FRAME = 64 * 1024 * 1024  # OpenIM's answers to pulls carry many messages
_REQ_LABELS = {ident: str(ident) for ident in frames.KNOWN_REQUESTS}


class _Connection:
    """One guarded socket: the client's, OpenIM's, and what the guard keeps of them."""

    __slots__ = ("client", "ended", "gzip", "platform_id", "refusals", "refusals_since", "seen", "token", "transport",
                 "upstream", "user_id")  # fmt: skip

    def __init__(
        self,
        user_id: str,
        platform_id: int,
        token: str,
        client: web.WebSocketResponse,
        upstream: OpenIMSocket,
        transport: asyncio.BaseTransport,
        *,
        gzip: bool,
        now: float,
    ) -> None:
        self.user_id = user_id
        self.platform_id = platform_id
        self.token = token
        self.client = client
        self.upstream = upstream
        self.transport = transport
        self.gzip = gzip  # compression=gzip: binary frames are gzipped both ways
        self.seen = now
        self.refusals = 0
        self.refusals_since = now
        self.ended = False  # the guard has ended it: nothing more is relayed

    def end(self) -> None:
        """Nothing more relayed either way (OpenIM's frames included)."""
        self.ended = True
        self.upstream.stop_forwarding()


class WsGuard:
    def __init__(
        self,
        settings: WsGuardSettings,
        verifier: ImTokenVerifier,
        policy: FramePolicy,
        *,
        metrics: Metrics,
        origin_allowed: Callable[[str], bool] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        assert settings.upstream_url is not None
        self._settings = settings
        self._upstream_url = settings.upstream_url
        self._verifier = verifier
        self._policy = policy
        self._metrics = metrics
        self._origin_allowed = origin_allowed  # CORS_ALLOWED_ORIGINS, when set: browsers send Origin
        self._clock = clock or asyncio.get_running_loop().time
        self._by_user: dict[str, set[_Connection]] = {}
        self._upgrading_by_user: dict[str, int] = {}  # past the per-user check, not registered yet
        self._upgrading = 0
        self._open = 0
        self._draining = False
        self._recheck: set[str] = set()
        self._recheck_all = False
        self._rechecking = asyncio.Event()
        self._admission = asyncio.Semaphore(UPGRADE_CONCURRENCY)

    # -- the upgrade ----------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self._draining:
            raise errors.Unavailable("The gateway is shutting down; connect again")
        if self._open + self._upgrading >= self._settings.max_connections:
            return self._refused("connections", frames.CONN_OVER_MAX_NUM_LIMIT)
        self._upgrading += 1
        try:
            prepared = await self._upgrade(request)
        finally:
            self._upgrading -= 1
        if isinstance(prepared, _Connection):
            await self._serve(prepared)
            return prepared.client
        return prepared

    async def _upgrade(self, request: web.Request) -> _Connection | web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and self._origin_allowed is not None and not self._origin_allowed(origin):
            # No CORS for a WebSocket (browsers never preflight it): the page's origin is checked here.
            self._metrics.ws_upgrades.labels("refused_origin").inc()
            raise errors.Forbidden("Origin not allowed", detail=f"WebSocket upgrade from {origin[:100]!r}")
        query = request.query
        problem = _essential_args_problem(query)
        if problem is not None:
            return self._refused(problem, frames.CONN_ARGS_ERROR)
        token, user_id, platform_id = query["token"], query["sendID"], int(query["platformID"])
        # What reads the store and dials OpenIM, a bounded number at a time: after a replica's drain its clients
        # all reconnect at once, and unbounded they would overrun the store's connection pool.
        try:
            async with asyncio.timeout(self._settings.handshake_timeout):
                await self._admission.acquire()
        except TimeoutError:
            self._metrics.ws_upgrades.labels("refused_busy").inc()
            raise errors.Unavailable("Too many WebSocket upgrades at once; connect again") from None
        # Counted against the user until registered, so upgrades at once from one user cannot pass the cap together.
        counted = False
        try:
            try:
                try:
                    caller = await self._verifier.verify(token)
                except ImTokenRejected as exc:
                    return await self._token_refused(request, exc, query.get("isMsgResp", "") in GO_TRUE)
                if caller.user_id != user_id or caller.platform_id != platform_id:
                    return self._refused("token_mismatch", frames.TOKEN_INVALID)
                held = len(self._by_user.get(user_id, ())) + self._upgrading_by_user.get(user_id, 0)
                if held >= self._settings.max_connections_per_user:
                    return self._refused("user_connections", frames.CONN_OVER_MAX_NUM_LIMIT)
                self._upgrading_by_user[user_id] = self._upgrading_by_user.get(user_id, 0) + 1
                counted = True
                gzipped = query.get("compression") == "gzip" or request.headers.get("compression") == "gzip"
                upstream = await self._dial(request)
            finally:
                self._admission.release()
            if isinstance(upstream, web.Response):
                return upstream
            client = web.WebSocketResponse(compress=False, max_msg_size=frames.HARD_LIMIT, timeout=CLOSE_TIMEOUT)
            try:
                await client.prepare(request)
            except BaseException:
                upstream.close(WSCloseCode.GOING_AWAY)
                raise
        finally:
            if counted:
                left = self._upgrading_by_user.pop(user_id) - 1
                if left:
                    self._upgrading_by_user[user_id] = left
        assert request.transport is not None
        upstream.attach(request.transport)  # what OpenIM sent meanwhile (its handshake answer) first
        self._metrics.ws_upgrades.labels("accepted").inc()
        return _Connection(user_id, platform_id, token, client, upstream, request.transport, gzip=gzipped,
                           now=self._clock())  # fmt: skip

    async def _dial(self, request: web.Request) -> OpenIMSocket | web.Response:
        """OpenIM's msg-gateway with the client's query; OpenIM's own refusal as an answer to pass on."""
        gzip = request.headers.get("compression") == "gzip"
        try:
            async with asyncio.timeout(self._settings.handshake_timeout):
                return await connect(
                    self._upstream_url,
                    request.query.items(),
                    headers=[("compression", "gzip")] if gzip else (),
                    max_frame=MAX_UPSTREAM_FRAME,
                )
        except Refused as exc:
            self._metrics.ws_upgrades.labels("refused_by_openim").inc()
            log.info("OpenIM's msg-gateway refused an upgrade with HTTP %d", exc.status)
            return web.Response(status=exc.status, body=exc.body, headers={"Content-Type": exc.content_type})
        except UpgradeFailed as exc:
            raise errors.BadUpstream("OpenIM's msg-gateway refused the upgrade", detail=str(exc)) from None
        except TimeoutError:
            self._metrics.ws_upgrades.labels("openim_timeout").inc()
            raise errors.UpstreamTimeout("OpenIM's msg-gateway did not answer in time") from None
        except OSError as exc:
            self._metrics.ws_upgrades.labels("openim_unreachable").inc()
            raise errors.BadUpstream("OpenIM's msg-gateway is unreachable", detail=type(exc).__name__) from None

    def _refused(self, reason: str, err_code: int) -> web.Response:
        """``apiresp.HttpError``: HTTP 200 with OpenIM's envelope and no upgrade."""
        self._metrics.ws_upgrades.labels(f"refused_{reason}").inc()
        log.info("WebSocket upgrade refused: %s", reason, extra={"errCode": err_code})
        return web.Response(body=frames.handshake_answer(err_code).encode(), content_type="application/json",
                            charset="utf-8")  # fmt: skip

    async def _token_refused(self, request: web.Request, exc: ImTokenRejected, msg_resp: bool) -> web.StreamResponse:
        if not msg_resp:
            return self._refused(exc.reason, exc.openim_code)
        # RespondWithError: the upgrade, the envelope as a text frame, then the TCP connection closed.
        self._metrics.ws_upgrades.labels(f"refused_{exc.reason}").inc()
        log.info("WebSocket upgrade refused: %s", exc.reason, extra={"errCode": exc.openim_code})
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        await ws.send_str(frames.handshake_answer(exc.openim_code))
        if request.transport is not None:
            request.transport.close()
        return ws

    # -- the relay ------------------------------------------------------------------------------------

    async def _serve(self, conn: _Connection) -> None:
        if self._draining:  # upgraded while the drain closed the others: closed the same way
            conn.end()
            await _going_away(conn)
            conn.upstream.close(WSCloseCode.GOING_AWAY)
            return
        self._register(conn)
        # Each direction in a task of its own: a task resumes through every frame of its await chain, and the
        # handler's runs through aiohttp and the edge middleware, so relaying in it would pay them per frame.
        up = asyncio.create_task(self._relay_up(conn), name="ws-relay-up")
        down = asyncio.create_task(self._relay_down(conn), name="ws-relay-down")
        try:
            await up
        finally:
            self._unregister(conn)
            for task in (up, down):
                task.cancel()
            # Both ended before OpenIM's socket is closed, whatever either raised (up's is raised above).
            _, ended = await asyncio.gather(up, down, return_exceptions=True)
            if isinstance(ended, Exception):
                log.error("WebSocket relay from OpenIM failed", exc_info=ended)
            conn.upstream.close(sendable_close_code(conn.client.close_code or WSCloseCode.OK))

    async def _relay_up(self, conn: _Connection) -> None:
        """Each client frame, checked: a request relayed or answered as refused; pings and pongs relayed."""
        client, upstream, policy, metrics = conn.client, conn.upstream, self._policy, self._metrics
        while True:
            message = await client.receive()
            if conn.ended:  # kicked or dropped meanwhile: a frame read before it no longer goes to OpenIM
                return
            conn.seen = self._clock()
            kind = message.type
            try:
                if kind is WSMsgType.BINARY:  # a request: the hot path, written out here rather than called
                    payload = message.data
                    data = frames.gunzip(payload, frames.HARD_LIMIT) if conn.gzip else payload
                    request = frames.decode_request(data) if data is not None else None
                    if request is None:
                        metrics.ws_refusals.labels("envelope").inc()
                        metrics.ws_frame("other", "refused")
                        self._end(conn, "envelope")  # OpenIM closes the connection unanswered
                        return
                    if len(payload) > frames.READ_LIMIT:
                        refusal: Refusal | None = DENIED["too_large"]
                    else:
                        refusal = await policy.check(conn.user_id, conn.platform_id, request)
                    # kicked while its checks waited (the store, OpenIM): not for OpenIM now; mypy keeps the
                    # narrowing of the check above across the await
                    if conn.ended:
                        return  # type: ignore[unreachable]
                    if refusal is None:
                        relayed = payload if request.canonical else self._encoded(conn, frames.encode_request(request))
                        await upstream.send(relayed)
                        metrics.ws_frame(_REQ_LABELS.get(request.req_identifier, "other"), "relayed")
                    elif not await self._refuse(conn, request, refusal):
                        return
                elif kind is WSMsgType.TEXT:
                    if len(message.data) > frames.READ_LIMIT:  # OpenIM would drop the connection for it
                        conn.end()  # nothing of OpenIM's after the close frame
                        await client.close(code=WSCloseCode.MESSAGE_TOO_BIG)
                        return
                    await upstream.send(message.data)  # pings and pongs: OpenIM answers them
                else:  # a close, an error (a frame beyond HARD_LIMIT: aiohttp closed with 1009), or closed
                    return
            except (ConnectionError, RuntimeError):  # OpenIM's side is gone: relay_down ends the client's
                return

    async def _refuse(self, conn: _Connection, request: frames.Request, refusal: Refusal) -> bool:
        """Answer a refused request as OpenIM answers one; False when that was one refusal too many."""
        self._metrics.ws_frame(_REQ_LABELS.get(request.req_identifier, "other"), "refused")
        self._metrics.ws_refusals.labels(refusal.reason).inc()
        answer = frames.answer(
            request.req_identifier, request.msg_incr, request.operation_id, refusal.err_code, refusal.err_msg
        )
        conn.upstream.send_to_client(self._encoded(conn, answer))
        now = self._clock()
        if now - conn.refusals_since > REFUSAL_WINDOW:
            conn.refusals, conn.refusals_since = 0, now
        conn.refusals += 1
        if conn.refusals > self._settings.max_refusals:
            log.info("WebSocket closed after %d refused frames within a minute", conn.refusals)
            self._metrics.ws_disconnects.labels("refusals").inc()
            conn.end()
            await conn.client.close(code=WSCloseCode.POLICY_VIOLATION, message=b"too many refused requests")
            return False
        return True

    @staticmethod
    def _encoded(conn: _Connection, frame: bytes) -> bytes:
        return frames.gzip(frame) if conn.gzip else frame

    async def _relay_down(self, conn: _Connection) -> None:
        """OpenIM's frames reach the client as they come (:mod:`._openim_socket`); here, OpenIM's end: its close,
        the client's; its dropped connection, the client's dropped."""
        ended = await conn.upstream.ended
        if conn.ended:
            return
        self._metrics.ws_disconnects.labels("openim").inc()
        if ended is None:  # gorilla's Close() sends no close frame; or a frame that broke the protocol
            conn.transport.close()
            return
        code, reason = ended
        with contextlib.suppress(ConnectionError, RuntimeError):
            await conn.client.close(code=sendable_close_code(code), message=reason.encode())

    # -- who is connected, and ending their sockets ---------------------------------------------------

    def _register(self, conn: _Connection) -> None:
        self._by_user.setdefault(conn.user_id, set()).add(conn)
        self._open += 1
        self._metrics.ws_connections.set(self._open)

    def _unregister(self, conn: _Connection) -> None:
        conns = self._by_user.get(conn.user_id)
        if conns is None or conn not in conns:
            return
        conns.discard(conn)
        if not conns:
            del self._by_user[conn.user_id]
        self._open -= 1
        self._metrics.ws_connections.set(self._open)
        if not conn.ended:
            self._metrics.ws_disconnects.labels("client").inc()

    def connections(self) -> Iterator[_Connection]:
        for conns in list(self._by_user.values()):
            yield from list(conns)

    def _end(self, conn: _Connection, reason: str) -> None:
        """Drop the connection as OpenIM does (no close frame), once what is queued is written."""
        if conn.ended:
            return
        conn.end()
        self._metrics.ws_disconnects.labels(reason).inc()
        conn.transport.close()

    async def _kick(self, conn: _Connection, reason: str) -> None:
        """OpenIM's kick (2002), then the connection dropped: the SDK's OnKickedOffline, and no reconnect."""
        if conn.ended:
            return
        conn.ended = True  # from here nothing of the client's reaches OpenIM, and no new message of OpenIM's the client
        log.info("WebSocket of a user kicked: %s", reason)
        self._metrics.ws_disconnects.labels(reason).inc()
        conn.upstream.last_to_client(self._encoded(conn, frames.KICK))  # then the connection dropped

    # Invalidation's cache protocol: a ban or an imToken change of a user, or everything (a lost subscription).
    def drop(self, user_id: str) -> None:
        if user_id in self._by_user:
            self._recheck.add(user_id)
            self._rechecking.set()

    def clear(self) -> None:
        self._recheck_all = True
        self._rechecking.set()

    async def recheck_forever(self) -> None:
        """Verify again the tokens of the users whose ban or imToken changed; kick those no longer valid."""
        while True:
            await self._rechecking.wait()
            self._rechecking.clear()
            if self._recheck_all:
                self._recheck_all, self._recheck = False, set()
                conns = list(self.connections())
            else:
                users, self._recheck = self._recheck, set()
                conns = [c for user in users for c in list(self._by_user.get(user, ()))]
            for start in range(0, len(conns), RECHECK_CONCURRENCY):
                await asyncio.gather(*(self._recheck_one(c) for c in conns[start : start + RECHECK_CONCURRENCY]))

    async def _recheck_one(self, conn: _Connection) -> None:
        try:
            await self._verifier.verify(conn.token)
        except ImTokenRejected as exc:
            await self._kick(conn, exc.reason.removeprefix("im_token_"))
        except StoreError as exc:
            # Left open: a store that cannot answer says nothing about the token. The next change rechecks it.
            log.warning("WebSocket token not rechecked (store: %s)", exc)

    async def sweep_forever(self) -> None:
        """Drop the connections whose client has been silent for ``idle_timeout`` (OpenIM's read deadline)."""
        idle = self._settings.idle_timeout
        while True:
            await asyncio.sleep(min(5.0, idle / 3))
            silent_since = self._clock() - idle
            for conn in self.connections():
                if conn.seen < silent_since:
                    self._end(conn, "idle")

    async def drain(self) -> None:
        """Refuse new upgrades and close every socket with 1001 "going away", so clients reconnect elsewhere."""
        self._draining = True
        conns = list(self.connections())
        for conn in conns:
            conn.end()
        if conns:
            log.info("closing %d WebSockets: going away", len(conns))
            self._metrics.ws_disconnects.labels("drain").inc(len(conns))
        await asyncio.gather(*(_going_away(c) for c in conns))


async def _going_away(conn: _Connection) -> None:
    with contextlib.suppress(Exception):
        await conn.client.close(code=WSCloseCode.GOING_AWAY, message=b"going away")


def _essential_args_problem(query: Mapping[str, str]) -> str | None:
    """``ParseEssentialArgs``, and the guard's own: JSON frames only."""
    if not query.get("token"):
        return "no_token"
    if not query.get("sendID"):
        return "no_send_id"
    platform = query.get("platformID", "")
    if not platform or not GO_INT.match(platform):
        return "platform_id"
    sdk_type = query.get("sdkType", "")
    if sdk_type not in ("", "go", "js"):
        return "sdk_type"
    if sdk_type != "js":
        return "not_json"  # the default is gob, which the guard cannot read
    return None


WS_GUARD: web.AppKey[WsGuard] = web.AppKey("ws_guard", WsGuard)


@contextlib.asynccontextmanager
async def guarding(guard: WsGuard, invalidation: Invalidation) -> AsyncIterator[None]:
    """Hear bans and imToken changes, drop idle sockets; on exit, both stop."""
    invalidation.register(BAN_INVALIDATION_KIND, guard)
    invalidation.register(IM_TOKEN_INVALIDATION_KIND, guard)
    async with running(guard.recheck_forever(), name="ws-recheck"), running(guard.sweep_forever(), name="ws-sweep"):
        yield
