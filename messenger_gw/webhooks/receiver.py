"""``/webhooks/openim/<secret>/<callbackCommand>``: OpenIM's callbacks (documented in ``docs/webhooks.md``).

A sub-application of its own, with no client or admin authentication. OpenIM
signs nothing (contract 8.2), so the path carries a secret, compared in
constant time with every configured one (rotation); a wrong one is a 404. An
optional CIDR allowlist narrows who may call.

* **before-callbacks** are answered at once by the moderation rules: allow
  ``{"actionCode":0,"errCode":0,...,"nextCode":0}`` or block
  ``{"actionCode":0,"nextCode":1,"errCode":<WEBHOOK_BLOCK_ERRCODE>,...}``.
  OpenIM reads only the body, never the status (contract 8.6), so one that
  cannot be evaluated (wrong secret or address, too large, malformed, the
  store down) is answered by ``WEBHOOK_FAIL_POLICY``: closed answers the block.
* **after-callbacks** are appended to the stream ``gw:webhooks`` before the
  200 answer (or, while the store is unreachable, to the local spool, replayed
  later); :mod:`messenger_gw.webhooks.consumer` processes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from messenger_gw import errors, keys
from messenger_gw.background import running
from messenger_gw.edge import client_ip, error_response, within
from messenger_gw.metrics import METRICS, Metrics
from messenger_gw.moderation import BLOCK_MESSAGES, Bans, MessageRules, RateLimit, WordRules
from messenger_gw.settings import SETTINGS, WebhookSettings
from messenger_gw.store import Store, StoreError

from ._spool import Spool, SpoolFull
from .models import COMMANDS, Event, InvalidEvent, MessageEvent, is_before, parse_event

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STREAM_MAX_ENTRIES = 1_000_000
REJECTED_MAX_ENTRIES = 10_000
REJECTED_BODY_BYTES = 16 * 1024
REPLAY_INTERVAL = 1.0

ALLOWED: dict[str, Any] = {"actionCode": 0, "errCode": 0, "errMsg": "", "errDlt": "", "nextCode": 0}
ALLOW = orjson.dumps(ALLOWED)


def command_label(command: str) -> str:
    """A bounded metric label: the known commands, else "unknown"."""
    return command if command in COMMANDS else "unknown"


class WebhookReceiver:
    def __init__(
        self,
        settings: WebhookSettings,
        store: Store,
        bans: Bans,
        *,
        metrics: Metrics,
        spool: Spool,
        message_rules: MessageRules | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._bans = bans
        self._metrics = metrics
        self.spool = spool
        # The WebSocket guard holds client frames to the same rules: the app hands both one MessageRules.
        self._message_rules = message_rules or MessageRules(bans, WordRules(settings.banned_words_file))
        self._message_rate = RateLimit(store, "messages", settings.max_messages_per_minute)
        self._spooled = asyncio.Event()

    # -- the pieces the route uses ----------------------------------------------------------------

    def secret_matches(self, candidate: str) -> bool:
        matched = False
        for secret in self._settings.secrets:  # all compared: timing says nothing about which
            matched |= hmac.compare_digest(secret.reveal().encode(), candidate.encode())
        return matched

    async def decide(self, event: Event) -> bytes:
        """A before-callback's answer: allow (echoing what OpenIM copies back), or block with the configured errCode."""
        reason = None
        try:
            reason = await self._blocking_reason(event)
        except StoreError as exc:
            self._count_rule_failure()
            log.warning("moderation rules not evaluated (%s), failing %s", exc, self._policy)
            reason = None if self._settings.fail_open else "unavailable"
        if reason is None:
            self._metrics.webhook_requests.labels(command_label(event.command), "allowed").inc()
            echoed = event.echoed
            return orjson.dumps(ALLOWED | echoed) if echoed else ALLOW
        self._metrics.webhook_requests.labels(command_label(event.command), f"blocked_{reason}").inc()
        return self._block(reason)

    def unevaluated(self, refusal: web.Response) -> web.Response:
        """A before-callback that failed before its rules ran: ``refusal`` would let the action through
        (OpenIM reads no status), so the fail policy answers; closed, the block, with ``refusal``'s status."""
        self._count_rule_failure()
        if self._settings.fail_open:
            return refusal  # an error envelope, no nextCode: OpenIM goes on, as "open" says
        return web.Response(status=refusal.status, body=self._block("unavailable"), content_type="application/json")

    @property
    def _policy(self) -> str:
        return "open" if self._settings.fail_open else "closed"

    def _count_rule_failure(self) -> None:
        self._metrics.webhook_rule_failures.labels(self._policy).inc()

    def _block(self, reason: str) -> bytes:
        return orjson.dumps(
            {
                "actionCode": 0,
                "nextCode": 1,
                "errCode": self._settings.block_errcode,
                "errMsg": BLOCK_MESSAGES[reason],
                "errDlt": "",
            }
        )

    async def _blocking_reason(self, event: Event) -> str | None:
        if event.is_notification:
            return None  # OpenIM's own words about a change already made, in the operator's name
        if isinstance(event, MessageEvent):  # its actor is its sender
            reason = await self._message_rules.refusal(event.send_id, event.content_type, event.content)
            if reason is not None:
                return reason
            # once per message: beforeMsgModify follows beforeSend* for the same text message
            if event.send_id and await self._message_rate.exceeded(event.send_id, once_per=event.message_id):
                return "rate"
            return None
        for user_id in event.actors:
            if await self._bans.is_banned(user_id):
                return "banned"
        return None

    async def keep(self, record: dict[str, Any]) -> str:
        """Store an after-event durably: the stream, else the spool. Answers where it went."""
        try:
            await self.append(record)
            return "stored"
        except StoreError as exc:
            log.warning("store unreachable, spooling the %s event: %s", record["command"], exc)
        await self.spool.append(record)  # SpoolFull propagates: better a 503 than a pretended 200
        self._spooled.set()
        return "spooled"

    async def append(self, record: dict[str, Any]) -> None:
        await self._store.append(
            keys.WEBHOOK_STREAM, {k: str(v).encode() for k, v in record.items()}, max_len=STREAM_MAX_ENTRIES
        )

    async def reject(self, command: str, reason: str, body: bytes) -> None:
        self._metrics.webhook_requests.labels(command_label(command), f"rejected_{reason}").inc()
        with contextlib.suppress(StoreError):
            await self._store.append(
                keys.WEBHOOK_REJECTED_STREAM,
                {
                    "time": str(int(time.time() * 1000)).encode(),
                    "command": command.encode(),
                    "reason": reason.encode(),
                    "body": body[:REJECTED_BODY_BYTES],
                },
                max_len=REJECTED_MAX_ENTRIES,
            )

    async def replay_forever(self) -> None:
        """Move spooled events into the stream once the store answers again."""
        self._spooled.set()  # spool files left by an earlier run are replayed too
        while True:
            await self._spooled.wait()
            try:
                await self._store.ping()
                # Cleared before the replay, not after: an event spooled while it runs sets it again.
                self._spooled.clear()
                moved = await self.spool.replay(self.append)
                if moved:
                    log.info("replayed spooled webhook events", extra={"events": moved})
            except (StoreError, OSError) as exc:
                if isinstance(exc, OSError):  # the spool's disk: what was not delivered stays spooled
                    log.error("webhook spool replay failed, will retry: %s", exc)
                self._spooled.set()
                await asyncio.sleep(REPLAY_INTERVAL)


WEBHOOK_RECEIVER: web.AppKey[WebhookReceiver] = web.AppKey("webhook_receiver", WebhookReceiver)


# -- the route ----------------------------------------------------------------------------------------


def create_webhook_app() -> web.Application:
    app = web.Application(middlewares=[check_sender])
    app.router.add_post("/{secret}/{command}", receive)
    return app


class NotHere(errors.NotFound):
    pass


class BodyTooLarge(errors.GatewayError):
    status = 413
    code = errors.PAYLOAD_TOO_LARGE


@web.middleware
async def check_sender(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Who may call; and whatever refuses a before-callback, an answer OpenIM reads as the fail policy says.

    A wrong secret or address on a before-callback is answered so too: a 404 envelope would let every
    action through while the deployment's secret is wrong, where "closed" means refuse them.
    """
    config = request.config_dict
    receiver, settings = config[WEBHOOK_RECEIVER], config[SETTINGS]
    metrics = config[METRICS]
    try:
        if not receiver.secret_matches(request.match_info.get("secret", "")):
            metrics.webhook_requests.labels("unknown", "wrong_secret").inc()
            raise NotHere("Not Found", detail="webhook with a wrong secret")
        allowed = settings.webhooks.allowed_networks
        if allowed:
            address = client_ip(request, settings.trusted_proxies)
            if not within(address, allowed):
                metrics.webhook_requests.labels("unknown", "wrong_address").inc()
                raise NotHere("Not Found", detail=f"webhook from an address outside WEBHOOK_ALLOWED_CIDRS: {address}")
        return await handler(request)
    except Exception as exc:
        if isinstance(exc, web.HTTPException) or not is_before(request.match_info.get("command", "")):
            raise
        return receiver.unevaluated(error_response(request, exc))


async def receive(request: web.Request) -> web.Response:
    config = request.config_dict
    receiver, settings = config[WEBHOOK_RECEIVER], config[SETTINGS].webhooks
    command = request.match_info["command"]
    raw = await _read_at_most(request, settings.max_body_bytes + 1)  # one byte more tells a body too large
    if len(raw) > settings.max_body_bytes:
        await receiver.reject(command, "too_large", raw)
        raise BodyTooLarge("The body is too large")
    try:
        body = orjson.loads(raw)  # OpenIM's trailing newline is whitespace JSON allows
    except orjson.JSONDecodeError:
        await receiver.reject(command, "malformed", raw)
        raise errors.InvalidJSON("The body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("callbackCommand"), str):
        await receiver.reject(command, "no_command", raw)
        raise errors.InvalidField("The body has no callbackCommand")
    if body["callbackCommand"] != command:
        await receiver.reject(command, "command_mismatch", raw)
        raise errors.InvalidField("callbackCommand in the body differs from the path")
    operation_id = request.headers.get("operationID", "")  # Go sends it as "Operationid"
    try:
        kind, event = parse_event(command, body, operation_id=operation_id)
    except InvalidEvent as exc:
        await receiver.reject(command, "invalid", raw)
        raise errors.InvalidField(f"{command}: {exc}") from None
    if kind == "before":
        return web.Response(body=await receiver.decide(event), content_type="application/json")
    record = {
        "command": command,
        "key": event.key,
        "body": raw.decode("utf-8", errors="replace"),
        "operationID": operation_id,
        "receivedAt": int(time.time() * 1000),
    }
    try:
        where = await receiver.keep(record)
    except (SpoolFull, OSError) as exc:
        log.error("after-event %s neither stored nor spooled: %s", command, exc)
        raise errors.Unavailable("The event could not be kept") from None
    config[METRICS].webhook_requests.labels(command_label(command), where).inc()
    return web.Response(body=ALLOW, content_type="application/json")


async def _read_at_most(request: web.Request, limit: int) -> bytes:
    """The body, or its first ``limit`` bytes: one read returns only what has arrived so far."""
    parts: list[bytes] = []
    size = 0
    while size < limit and (part := await request.content.read(limit - size)):
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def replaying(receiver: WebhookReceiver) -> contextlib.AbstractAsyncContextManager[asyncio.Task[None]]:
    return running(receiver.replay_forever(), name="webhook-spool-replay")
