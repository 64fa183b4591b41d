"""Processing after-events from ``gw:webhooks``: at least once, with effects applied once.

Every gateway process is a consumer in the group ``gateway``. An entry is
acknowledged only after its effects succeeded; one that fails stays pending
and is retried after ``RETRY_AFTER`` seconds by whichever consumer claims it;
after ``MAX_DELIVERIES`` it moves to ``gw:webhooks:dead`` with its error.
Effects survive redelivery and OpenIM's duplicate deliveries (same command
and message or operation ID) because each is idempotent by the event's key:

* analytics: ``messenger_gw_webhook_events_total`` counted once per key;
* moderation follow-up: a message matching the flag list is recorded in the
  hash ``gw:moderation:flags`` (field = the event key);
* audit: group dismissals and kicks are written to the admin audit log once per key;
* membership: a kick, quit, join or dismissal makes every replica forget what it
  remembered of that group's members (``ConversationAccess.forget_groups``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Any

import orjson
from aiohttp import web

from messenger_gw import keys
from messenger_gw.admin import AuditEntry, AuditLog
from messenger_gw.background import running
from messenger_gw.metrics import Metrics
from messenger_gw.moderation import WordRules
from messenger_gw.openim import ConversationAccess
from messenger_gw.store import Store, StoreError, StreamEntry

from .models import Event, GroupDismissEvent, GroupKickEvent, GroupMemberEvent, MessageEvent, parse_event
from .receiver import command_label

log = logging.getLogger(__name__)

# The after-callbacks that say a group's members changed.
MEMBERSHIP_CALLBACKS = frozenset(
    {
        "callbackAfterKickGroupCommand",
        "callbackAfterQuitGroupCommand",
        "callbackAfterJoinGroupCommand",
        "callbackAfterDisMissGroupCommand",
    }
)

GROUP = "gateway"
MAX_DELIVERIES = 5
RETRY_AFTER = 2.0
EFFECT_MARK_TTL = 7 * 86400.0
READ_BLOCK = 1.0
BATCH = 100


class WebhookConsumer:
    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        flagged: WordRules,
        *,
        metrics: Metrics,
        name: str | None = None,
        retry_after: float = RETRY_AFTER,
        memberships: ConversationAccess | None = None,
    ) -> None:
        self._store = store
        self._memberships = memberships
        self._audit = audit
        self._flagged = flagged
        self._metrics = metrics
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.retry_after = retry_after
        self._errors: dict[str, str] = {}
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    async def run_forever(self) -> None:
        # The flag is checked after every store call: redis-py can lose a cancellation that
        # lands while it is still connecting (see invalidation.listening).
        while not self._stopping:
            try:
                await self._store.ensure_group(keys.WEBHOOK_STREAM, GROUP)
                while not self._stopping:
                    await self.step()
            except StoreError as exc:
                log.warning("webhook consumer waiting for the store: %s", exc)
                await asyncio.sleep(1.0)

    async def step(self, *, block: float | None = READ_BLOCK) -> int:
        """Process new entries, then retry or dead-letter stale ones; the number handled."""
        handled = 0
        fresh = await self._store.read_group(keys.WEBHOOK_STREAM, GROUP, self.name, count=BATCH, block=block)
        if self._stopping:
            return 0  # unacknowledged: another consumer, or the next start, takes them
        for entry in fresh:
            await self._handle(entry)
            handled += 1
        for stale in await self._store.pending(keys.WEBHOOK_STREAM, GROUP, min_idle=self.retry_after, count=BATCH):
            claimed = await self._store.claim(
                keys.WEBHOOK_STREAM, GROUP, self.name, [stale.id], min_idle=self.retry_after
            )
            for entry in claimed:
                if stale.deliveries >= MAX_DELIVERIES:
                    await self._dead_letter(entry, stale.deliveries)
                else:
                    await self._handle(entry)
                handled += 1
        return handled

    async def _handle(self, entry: StreamEntry) -> None:
        try:
            await self.apply(entry)
        except StoreError:
            raise  # the store itself: the loop waits for it; the entry stays pending
        except Exception as exc:
            self._errors[entry.id] = f"{type(exc).__name__}: {exc}"
            log.warning("webhook event %s failed, will retry: %s", entry.id, self._errors[entry.id])
            return
        await self._store.ack(keys.WEBHOOK_STREAM, GROUP, entry.id)
        self._errors.pop(entry.id, None)

    async def apply(self, entry: StreamEntry) -> None:
        command = entry.fields["command"].decode()
        body = orjson.loads(entry.fields["body"])
        _, event = parse_event(command, body, operation_id=entry.fields.get("operationID", b"").decode())
        if (
            self._memberships is not None
            and event.command in MEMBERSHIP_CALLBACKS
            and isinstance(event, GroupKickEvent | GroupMemberEvent | GroupDismissEvent)
            and event.group_id
        ):
            await self._memberships.forget_groups([event.group_id])  # once, here; pub/sub reaches every replica
        await self._count(event)
        if isinstance(event, MessageEvent) and self._flagged.match(event.text):
            await self._store.hset(keys.MODERATION_FLAGS, {event.key: orjson.dumps(_flag(event, entry))})
        if isinstance(event, GroupDismissEvent | GroupKickEvent):
            await self._audit_once(event)

    async def _count(self, event: Event) -> None:
        if await self._store.set_if_absent(keys.webhook_effect("counted", event.key), b"", ttl=EFFECT_MARK_TTL):
            content_type = str(event.content_type) if isinstance(event, MessageEvent) else ""
            session_type = str(event.session_type) if isinstance(event, MessageEvent) else ""
            self._metrics.webhook_events.labels(command_label(event.command), content_type, session_type).inc()

    async def _audit_once(self, event: GroupDismissEvent | GroupKickEvent) -> None:
        if not await self._store.set_if_absent(keys.webhook_effect("audited", event.key), b"", ttl=EFFECT_MARK_TTL):
            return
        if isinstance(event, GroupDismissEvent):
            entry = AuditEntry(
                operation="openim.group.dismissed",
                actor="openim",
                target=event.group_id,
                detail={"owner": event.owner_id, "members": len(event.member_ids)},
            )
        else:
            entry = AuditEntry(
                operation="openim.group.kicked",
                actor="openim",
                target=f"{event.group_id}:{','.join(event.kicked_user_ids)}",
                reason=event.reason,
            )
        await self._audit.append(entry)

    async def _dead_letter(self, entry: StreamEntry, deliveries: int) -> None:
        error = self._errors.pop(entry.id, "failed on another consumer")
        fields = dict(entry.fields) | {
            "entryID": entry.id.encode(),
            "deliveries": str(deliveries).encode(),
            "error": error.encode(),
        }
        await self._store.append(keys.WEBHOOK_DEAD_STREAM, fields, max_len=100_000)
        await self._store.ack(keys.WEBHOOK_STREAM, GROUP, entry.id)
        command = entry.fields.get("command", b"").decode()
        self._metrics.webhook_dead_letters.labels(command_label(command)).inc()
        log.error("webhook event %s dead-lettered after %d deliveries: %s", entry.id, deliveries, error)


def _flag(event: MessageEvent, entry: StreamEntry) -> dict[str, Any]:
    return {
        "entryID": entry.id,
        "command": event.command,
        "sendID": event.send_id,
        "recvID": event.recv_id,
        "groupID": event.group_id,
        "serverMsgID": event.server_msg_id,
        "sendTime": event.send_time,
        "text": event.text,
    }


def consuming(consumer: WebhookConsumer) -> contextlib.AbstractAsyncContextManager[asyncio.Task[None]]:
    return running(consumer.run_forever(), name="webhook-consumer", stop=consumer.stop, stop_within=READ_BLOCK + 1.0)


WEBHOOK_CONSUMER: web.AppKey[WebhookConsumer] = web.AppKey("webhook_consumer", WebhookConsumer)
